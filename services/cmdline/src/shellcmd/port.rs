//! Where a command gives a tool its port: a flag (`--port 3001`,
//! `-p3001`, `--bind host:3001`), a positional argument (`http.server
//! 8001`) or an environment assignment (`PORT=3001`), with the byte range a
//! rewrite replaces.

use std::ops::Range;

use super::start::PortSource;
use crate::lex::Word;
use crate::resolve::first_positional;
use crate::tools::{PortSyntax, Subcommand, Tool};

/// An environment assignment in effect: `word` is `NAME=value`.
#[derive(Debug, Clone)]
pub(super) struct Assign {
    pub word: Word,
}

impl Assign {
    fn name(&self) -> &str {
        self.word.text.split_once('=').map_or("", |(n, _)| n)
    }

    fn value_start(&self) -> usize {
        self.name().len() + 1
    }
}

/// A port found in a command: the word and the byte range in its text to
/// replace (digits, or the whole word when it is `$PORT`).
pub(super) struct Found {
    pub port: Option<u16>,
    pub kind: PortSource,
    pub word: Word,
    pub range: Range<usize>,
}

/// The byte range of a port in an option value: `3000`, `host:3000`,
/// `tcp://0.0.0.0:3000`, `[::1]:3000`, `${PORT:-3000}`.
fn port_in(text: &str) -> Option<(u16, Range<usize>)> {
    if let Some(inner) = text.strip_prefix("${").and_then(|t| t.strip_suffix('}')) {
        // `${PORT:-3000}` / `${PORT-3000}`: the default, when PORT is unset.
        let (name, default) = inner.split_once(":-").or_else(|| inner.split_once('-'))?;
        let start = 2 + name.len() + (inner.len() - name.len() - default.len());
        return digits(default).map(|p| (p, start..start + default.len()));
    }
    let start = text.rfind(':').map_or(0, |c| c + 1);
    digits(&text[start..]).map(|p| (p, start..text.len()))
}

pub(super) fn digits(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A value the port may be written in: a port, or `$PORT` to replace whole.
fn value_port(word: &Word, offset: usize, kind: PortSource) -> Option<Found> {
    let text = &word.text[offset..];
    match port_in(text) {
        Some((port, range)) => {
            Some(Found { port: Some(port), kind, word: word.clone(), range: offset + range.start..offset + range.end })
        }
        None if word.dynamic && text.starts_with('$') => {
            Some(Found { port: None, kind, word: word.clone(), range: offset..word.text.len() })
        }
        None => None,
    }
}

/// The port the tool's arguments and environment give, the last one
/// written winning, flags before the environment.
pub(super) fn find_port(tool: &Tool, args: &[Word], env: &[Assign]) -> Option<Found> {
    let from_args = match tool.port {
        PortSyntax::Flag { names, .. } | PortSyntax::HostPortFlag { names, .. } => flag_port(names, args),
        PortSyntax::Positional => positional_port(tool, args),
        _ => None,
    };
    let env_name = match tool.port {
        PortSyntax::Env(name) => Some(name),
        PortSyntax::EnvHostPort { name, .. } => Some(name),
        _ => tool.port_env,
    };
    from_args.or_else(|| {
        let assign = env.iter().rev().find(|a| Some(a.name()) == env_name)?;
        value_port(&assign.word, assign.value_start(), PortSource::Env)
    })
}

fn flag_port(names: &[&str], args: &[Word]) -> Option<Found> {
    let mut found = None;
    let mut k = 0;
    while let Some(w) = args.get(k) {
        let t = w.text.as_str();
        if t == "--" {
            break;
        }
        for name in names {
            if t == *name {
                if let Some(f) = args.get(k + 1).and_then(|v| value_port(v, 0, PortSource::Flag)) {
                    found = Some(f);
                }
            } else if let Some(rest) = t.strip_prefix(name) {
                let short = name.len() == 2 && !name.starts_with("--");
                if rest.starts_with('=') {
                    found = value_port(w, name.len() + 1, PortSource::Flag).or(found);
                } else if short && digits(rest).is_some() {
                    found = value_port(w, name.len(), PortSource::Flag).or(found);
                }
            }
        }
        k += 1;
    }
    found
}

fn positional_port(tool: &Tool, args: &[Word]) -> Option<Found> {
    let texts: Vec<&str> = args.iter().map(|w| w.text.as_str()).collect();
    let first = first_positional(tool, &texts)?;
    let at = match tool.subcommand {
        Subcommand::OneOf(_) | Subcommand::Goal(_) => first + 1 + first_positional(tool, &texts[first + 1..])?,
        Subcommand::Any | Subcommand::NoneOf(_) => first,
    };
    value_port(&args[at], 0, PortSource::Positional)
}
