//! The walker: every simple command of a Bash command line, resolved
//! through the tool table, following `cd`, `export`, `bash -c '…'`,
//! `concurrently` and package-manager scripts, with the plan that moves each
//! start to another port.

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::port::{Assign, Found, find_port};
use super::start::{Edit, Plan, PortSource, ServerStart};
use super::{manifest, publish};
use crate::lex::{self, Word};
use crate::resolve::{self, Launch, Manager, ScriptCall, is_assignment};
use crate::tools::{PortSyntax, Tool};

/// Recognise every server start in `command`, run from `cwd`.
pub fn recognise(command: &str, cwd: &Path) -> Vec<ServerStart> {
    let mut walker = Walker { command, bodies: Vec::new(), starts: Vec::new() };
    let mut ctx = Ctx {
        cwd: Some(cwd.to_path_buf()),
        shell_cwd: Some(cwd.to_path_buf()),
        env: Vec::new(),
        via: Via::Direct,
        append: true,
        top: true,
        depth: 0,
    };
    walker.list(lex::parse(command), &mut ctx);
    walker.starts
}

/// Package scripts call package scripts; past this depth the chain is
/// not followed.
const MAX_SCRIPT_DEPTH: usize = 4;

/// How the commands being walked were reached from the command line.
#[derive(Debug, Clone)]
enum Via {
    /// Written in the command line (possibly inside `bash -c '…'`).
    Direct,
    /// The package.json script of a script run written in the command line.
    Script(Box<ScriptRun>),
    /// A script run by a script: reached, but out of the command line's
    /// reach; starts still report the command-line span.
    Nested { span: Range<usize> },
}

/// A script run written in the command line (`npm run dev -- --host`).
#[derive(Debug, Clone)]
struct ScriptRun {
    manager: Manager,
    /// The `npm run dev …` simple command.
    span: Range<usize>,
    /// Where an environment prefix goes: the start of that command.
    prefix_at: usize,
    /// Where arguments are appended: the end of its last argument.
    args_end: usize,
    /// Its extra arguments already started with `--`.
    has_double_dash: bool,
    /// The source id of the script text.
    src: usize,
    /// The range (package manager word … last argument) a rewritten script
    /// can take the place of, with the extra arguments' text; None when the
    /// script is not one simple command, or runs in another directory.
    substitute: Option<(Range<usize>, String)>,
}

#[derive(Debug, Clone)]
struct Ctx {
    /// The directory commands run in (`cd` moves it), None once unknown.
    cwd: Option<PathBuf>,
    /// The shell's own directory in the command line.
    shell_cwd: Option<PathBuf>,
    /// Exported or inherited assignments, later ones win.
    env: Vec<Assign>,
    via: Via,
    /// Arguments appended to the script run reach this command (it is the
    /// script's last simple command).
    append: bool,
    /// A simple command of the script itself, not one run by a command in
    /// it (`bash -c`, `concurrently`): an environment prefix on the script
    /// run reaches it, and it alone could be run in the script's place.
    top: bool,
    depth: usize,
}

struct Walker<'c> {
    command: &'c str,
    /// Package scripts read so far; source id = index + 1.
    bodies: Vec<String>,
    starts: Vec<ServerStart>,
}

impl Walker<'_> {
    fn list(&mut self, commands: Vec<lex::Command>, ctx: &mut Ctx) {
        let count = commands.len();
        let append = ctx.append;
        for (i, c) in commands.into_iter().enumerate() {
            ctx.append = append && i + 1 == count;
            self.command(&c.words, &c.span, ctx);
        }
        ctx.append = append;
    }

    fn command(&mut self, words: &[Word], span: &Range<usize>, ctx: &mut Ctx) {
        let texts: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
        let resolved = resolve::resolve(&texts);
        let mut env = ctx.env.clone();
        env.extend(resolved.env_words.iter().map(|&i| Assign { word: words[i].clone() }));
        match resolved.launch {
            Launch::Tool { tool, args, .. } if tool.port == PortSyntax::Publish => {
                let cmd_span = self.report_span(span, ctx);
                let starts = if tool.name == "docker-run" {
                    publish::run_starts(tool, &words[args..], cmd_span)
                } else {
                    publish::compose_starts(tool, &words[args..], ctx.cwd.as_deref(), cmd_span)
                };
                self.starts.extend(starts);
            }
            Launch::Tool { tool, program, args } => self.tool_start(tool, words, span, program, args, &env, ctx),
            Launch::Script(call) => self.script(words, span, &call, env, ctx),
            Launch::Shell { string } => {
                let inner = &words[string];
                let commands = lex::remap(lex::parse(&inner.text), inner);
                // Arguments appended to a script reach `bash`, not the
                // commands of its script.
                let mut inner_ctx = Ctx { env, append: false, top: false, ..ctx.clone() };
                self.list(commands, &mut inner_ctx);
            }
            Launch::Program { at } => self.builtin(words, at, env, ctx),
            Launch::Other => {}
        }
    }

    /// Programs that change what follows (`cd`, `export`) or run other
    /// commands (`concurrently`, `npm-run-all`).
    fn builtin(&mut self, words: &[Word], at: usize, env: Vec<Assign>, ctx: &mut Ctx) {
        let name = words[at].text.rsplit('/').next().unwrap_or("");
        let args = &words[at + 1..];
        match name {
            "cd" | "pushd" => {
                let target = args.iter().find(|w| !w.text.starts_with('-'));
                ctx.cwd = match (target, &ctx.cwd) {
                    (Some(t), Some(cwd)) if !t.dynamic => expand_dir(cwd, &t.text),
                    _ => None,
                };
                if matches!(ctx.via, Via::Direct) {
                    ctx.shell_cwd = ctx.cwd.clone();
                }
            }
            "export" => {
                ctx.env.extend(args.iter().filter(|w| is_assignment(&w.text)).map(|w| Assign { word: w.clone() }))
            }
            "concurrently" => {
                // Each positional argument is a command line of its own.
                let value_opts = [
                    "-n",
                    "--names",
                    "-c",
                    "--prefix-colors",
                    "-p",
                    "--prefix",
                    "--name-separator",
                    "--kill-signal",
                    "-s",
                    "--success",
                    "--restart-tries",
                    "--restart-after",
                    "--max-processes",
                    "-m",
                    "--handle-input",
                    "--default-input-target",
                ];
                let mut j = 0;
                let mut inner_ctx = Ctx { env, append: false, top: false, ..ctx.clone() };
                while let Some(w) = args.get(j) {
                    if w.text.starts_with('-') {
                        j += if value_opts.contains(&w.text.as_str()) { 2 } else { 1 };
                        continue;
                    }
                    let commands = lex::remap(lex::parse(&w.text), w);
                    self.list(commands, &mut inner_ctx);
                    j += 1;
                }
            }
            "run-p" | "run-s" | "npm-run-all" | "npm-run-all2" => {
                let patterns: Vec<&str> =
                    args.iter().map(|w| w.text.as_str()).filter(|t| !t.starts_with('-')).collect();
                let Some(manifest) = ctx.cwd.as_deref().and_then(|d| manifest::find(d, Manager::Npm)) else {
                    return;
                };
                let span = self.report_span(&(words[0].raw.start..words[words.len() - 1].raw.end), ctx);
                for pattern in patterns {
                    for (_, body) in manifest.matching(pattern) {
                        let mut inner_ctx = Ctx {
                            cwd: Some(manifest.dir.clone()),
                            env: env.clone(),
                            via: Via::Nested { span: span.clone() },
                            append: false,
                            depth: ctx.depth + 1,
                            ..ctx.clone()
                        };
                        if inner_ctx.depth <= MAX_SCRIPT_DEPTH {
                            let src = self.add_body(body.to_string());
                            self.list(parse_body(body, src), &mut inner_ctx);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn add_body(&mut self, body: String) -> usize {
        self.bodies.push(body);
        self.bodies.len()
    }

    /// The span a start reports: the command-line command that leads to it.
    fn report_span(&self, span: &Range<usize>, ctx: &Ctx) -> Range<usize> {
        match &ctx.via {
            Via::Script(run) => run.span.clone(),
            Via::Nested { span } => span.clone(),
            Via::Direct => span.clone(),
        }
    }

    /// A package-manager script run: read the script and walk it.
    fn script(&mut self, words: &[Word], span: &Range<usize>, run: &ScriptCall, env: Vec<Assign>, ctx: &mut Ctx) {
        if ctx.depth >= MAX_SCRIPT_DEPTH {
            return;
        }
        let dir = match (run.dir, &ctx.cwd) {
            (Some(d), Some(cwd)) if !words[d].dynamic => {
                let text = &words[d].text;
                let text = text.split_once('=').map_or(text.as_str(), |(_, v)| v);
                expand_dir(cwd, text)
            }
            (None, cwd) => cwd.clone(),
            _ => None,
        };
        let manifest = dir.as_deref().and_then(|d| manifest::find(d, run.manager));
        let Some((manifest, body)) = manifest.and_then(|m| {
            let body = m.script(&run.name)?.to_string();
            Some((m, body))
        }) else {
            self.script_binary(words, span, run, &env, ctx);
            return;
        };
        let src = self.add_body(body.clone());
        let mut commands = parse_body(&body, src);
        // The package manager appends the extra arguments to the script.
        let mut extra: &[Word] = &words[run.extra.min(words.len())..];
        let has_double_dash = extra.first().is_some_and(|w| w.text == "--");
        if has_double_dash {
            extra = &extra[1..];
        }
        if let Some(last) = commands.last_mut() {
            last.words.extend_from_slice(extra);
        }
        let via = match &ctx.via {
            Via::Direct => {
                let args_end = words.last().map_or(span.end, |w| w.raw.end);
                let single = commands.len() == 1;
                let same_dir = ctx.shell_cwd.as_deref() == Some(manifest.dir.as_path());
                let extra_text = match extra.first() {
                    Some(first) => format!(" {}", &self.command[first.raw.start..args_end]),
                    None => String::new(),
                };
                let substitute = (single && same_dir && words[run.program].src == 0)
                    .then(|| (words[run.program].raw.start..args_end, extra_text));
                Via::Script(Box::new(ScriptRun {
                    manager: run.manager,
                    span: span.clone(),
                    prefix_at: words[0].raw.start,
                    args_end,
                    has_double_dash,
                    src,
                    substitute,
                }))
            }
            Via::Script(outer) => Via::Nested { span: outer.span.clone() },
            Via::Nested { span } => Via::Nested { span: span.clone() },
        };
        let mut inner_ctx = Ctx {
            cwd: Some(manifest.dir.clone()),
            shell_cwd: ctx.shell_cwd.clone(),
            env,
            via,
            append: true,
            top: true,
            depth: ctx.depth + 1,
        };
        self.list(commands, &mut inner_ctx);
    }

    /// `pnpm vite`, `yarn next dev`, `bun vite`: a binary of
    /// node_modules/.bin when there is no such script. npm has no such
    /// fallback.
    fn script_binary(&mut self, words: &[Word], span: &Range<usize>, run: &ScriptCall, env: &[Assign], ctx: &Ctx) {
        if matches!(run.manager, Manager::Npm | Manager::Deno) || words[run.script].text != run.name {
            return;
        }
        let mut rest = run_env_words(words, run.program);
        let first = rest.len();
        rest.extend_from_slice(&words[run.script..]);
        let texts: Vec<&str> = rest.iter().map(|w| w.text.as_str()).collect();
        if let Launch::Tool { tool, program, args } = resolve::resolve(&texts).launch
            && program == first
        {
            self.tool_start(tool, &rest, span, program, args, env, ctx);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn tool_start(
        &mut self,
        tool: &'static Tool,
        words: &[Word],
        span: &Range<usize>,
        program: usize,
        args: usize,
        env: &[Assign],
        ctx: &Ctx,
    ) {
        let arg_words = &words[args.min(words.len())..];
        let found = find_port(tool, arg_words, env);
        let report = self.report_span(span, ctx);
        let (port, port_source) = match &found {
            Some(f) if f.word.src != 0 => (f.port, PortSource::PackageJson),
            Some(f) if f.port.is_none() => (None, PortSource::Unknown),
            Some(f) => (f.port, f.kind),
            None => match tool.default_port {
                Some(p) => (Some(p), PortSource::FrameworkDefault),
                None => (None, PortSource::Unknown),
            },
        };
        // Words are appended after the last argument, or after the
        // subcommand the dispatcher consumed (`jupyter lab`).
        let last = &words[args.clamp(program + 1, words.len()) - 1];
        let plan = self.plan(tool, words, last, arg_words, found.as_ref(), ctx);
        self.starts.push(ServerStart { tool, service_type: tool.service_type, port, port_source, span: report, plan });
    }

    /// How to move this start: edit the port where it is written, or add it
    /// in the tool's syntax, with the flag that keeps the tool from moving on.
    fn plan(
        &self,
        tool: &'static Tool,
        words: &[Word],
        last: &Word,
        args: &[Word],
        found: Option<&Found>,
        ctx: &Ctx,
    ) -> Plan {
        let strict = tool.strict_flag.filter(|f| {
            !args.iter().any(|a| a.text == *f || a.text.strip_prefix(f).is_some_and(|r| r.starts_with('=')))
        });
        let last = args.last().unwrap_or(last);
        // Where words are appended: after the tool's last argument when it
        // is in the command line, else after the script run's arguments.
        let append = |text: String, port: bool, after: String| -> Option<Edit> {
            match &ctx.via {
                Via::Direct => Some(Edit::insert(last.raw.end, text, port, after)),
                Via::Script(run) if ctx.append => {
                    let dashes = if run.manager.needs_double_dash() && !run.has_double_dash { " --" } else { "" };
                    Some(Edit::insert(run.args_end, format!("{dashes}{text}"), port, after))
                }
                _ => None,
            }
        };
        let strict_edit = |in_body_end: Option<usize>| -> Option<Edit> {
            let flag = strict?;
            match in_body_end {
                Some(at) => Some(Edit::insert(at, format!(" {flag}"), false, String::new())),
                None => append(format!(" {flag}"), false, String::new()),
            }
        };
        if let Some(f) = found {
            let Some(range) = f.word.source_range(f.range.clone()) else {
                return Plan::None;
            };
            if f.word.src == 0 {
                let mut edits = vec![Edit::port_at(range)];
                if strict.is_some() {
                    match strict_edit(None) {
                        Some(e) => edits.push(e),
                        None => return Plan::None,
                    }
                }
                return Plan::Edit(edits);
            }
            // Written in the package.json script: run the edited script.
            let Via::Script(run) = &ctx.via else {
                return Plan::None;
            };
            if !ctx.top {
                return Plan::None;
            }
            let Some((replace, extra)) = &run.substitute else {
                return Plan::None;
            };
            if f.word.src != run.src {
                return Plan::None;
            }
            let body = &self.bodies[run.src - 1];
            let body_words: Vec<&Word> = words.iter().filter(|w| w.src == run.src).collect();
            let Some(program_at) = body_words.iter().find(|w| !is_assignment(&w.text)).map(|w| w.raw.start) else {
                return Plan::None;
            };
            let Some(runner) = runner(run.manager) else {
                return Plan::None;
            };
            let mut edits =
                vec![Edit::insert(program_at, format!("{runner} "), false, String::new()), Edit::port_at(range)];
            if strict.is_some() {
                let body_end = body_words.last().map_or(body.len(), |w| w.raw.end);
                edits.extend(strict_edit(Some(body_end)));
            }
            return Plan::Body { body: body.clone(), edits, replace: replace.clone(), extra: extra.clone() };
        }
        let strict_after = strict.map(|f| format!(" {f}")).unwrap_or_default();
        let edit = match tool.port {
            // `esbuild --serve` means the default port: give it a value.
            PortSyntax::Flag { names, joined: true } if args.iter().any(|a| a.text == names[0]) => args
                .iter()
                .rfind(|a| a.text == names[0] && a.src == 0 && matches!(ctx.via, Via::Direct))
                .and_then(|a| a.source_range(0..a.text.len()))
                .map(|r| Edit::insert(r.end, "=".to_string(), true, strict_after)),
            PortSyntax::Flag { names, joined } => {
                let sep = if joined { "=" } else { " " };
                append(format!(" {}{sep}", names[0]), true, strict_after)
            }
            PortSyntax::HostPortFlag { names, default_host } => {
                append(format!(" {} {default_host}:", names[0]), true, strict_after)
            }
            PortSyntax::Positional => append(" ".to_string(), true, strict_after),
            PortSyntax::Env(name) => {
                self.prefix(words, ctx).map(|at| Edit::insert(at, format!("{name}="), true, " ".to_string()))
            }
            PortSyntax::EnvHostPort { name, default_host } => self
                .prefix(words, ctx)
                .map(|at| Edit::insert(at, format!("{name}={default_host}:"), true, " ".to_string())),
            PortSyntax::ConfigFile | PortSyntax::Publish => None,
        };
        edit.map_or(Plan::None, |e| Plan::Edit(vec![e]))
    }

    /// Where an environment prefix goes for a command.
    fn prefix(&self, words: &[Word], ctx: &Ctx) -> Option<usize> {
        match &ctx.via {
            Via::Direct => words.first().filter(|w| w.src == 0).map(|w| w.raw.start),
            Via::Script(run) if ctx.top => Some(run.prefix_at),
            Via::Script(_) => None,
            Via::Nested { .. } => None,
        }
    }
}

/// The assignments that came before the package manager word.
fn run_env_words(words: &[Word], program: usize) -> Vec<Word> {
    words[..program].iter().filter(|w| is_assignment(&w.text)).cloned().collect()
}

/// The runner that executes a project binary the way the manager's
/// scripts do (node_modules/.bin on PATH).
fn runner(manager: Manager) -> Option<&'static str> {
    match manager {
        Manager::Npm => Some("npx"),
        Manager::Pnpm => Some("pnpm exec"),
        Manager::Yarn => Some("yarn"),
        Manager::Bun => Some("bunx"),
        Manager::Deno => None,
    }
}

fn parse_body(body: &str, src: usize) -> Vec<lex::Command> {
    let mut commands = lex::parse(body);
    for c in &mut commands {
        for w in &mut c.words {
            w.src = src;
        }
    }
    commands
}

fn expand_dir(cwd: &Path, target: &str) -> Option<PathBuf> {
    if target == "-" {
        return None;
    }
    let path = if target == "~" || target.starts_with("~/") {
        let home = std::env::var_os("HOME")?;
        PathBuf::from(home).join(target.trim_start_matches('~').trim_start_matches('/'))
    } else {
        cwd.join(target)
    };
    Some(normalize(&path))
}

/// `a/b/../c` → `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shellcmd::rewrite_port;

    fn one(command: &str) -> ServerStart {
        let starts = recognise(command, Path::new("/nonexistent"));
        assert_eq!(starts.len(), 1, "{command}: {starts:?}");
        starts.into_iter().next().unwrap()
    }

    #[test]
    fn direct_starts_and_rewrites() {
        let cmd = "cd web && vite --host 2>&1 | tee log";
        let s = one(cmd);
        assert_eq!((s.tool.name, s.port, s.port_source), ("vite", Some(5173), PortSource::FrameworkDefault));
        assert_eq!(&cmd[s.span.clone()], "vite --host 2>&1");
        assert_eq!(
            rewrite_port(cmd, &s, 5174).unwrap(),
            "cd web && vite --host --port 5174 --strictPort 2>&1 | tee log"
        );
        let cmd = "bash -c 'python3 -m http.server 8000'";
        let s = one(cmd);
        assert_eq!((s.port, s.port_source), (Some(8000), PortSource::Positional));
        assert_eq!(rewrite_port(cmd, &s, 8001).unwrap(), "bash -c 'python3 -m http.server 8001'");
    }
}
