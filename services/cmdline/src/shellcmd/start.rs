//! A recognised server start, and how it is rewritten for another port:
//! the edits the walker plans, applied back to front to the command line.

use std::ops::Range;

use crate::tools::Tool;

/// Where the port a start would take comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortSource {
    /// A flag on the command line (`--port 3001`, `-p 8080:80`).
    Flag,
    /// An environment assignment on the command line (`PORT=3001 npm start`).
    Env,
    /// A positional argument (`http.server 8001`, `runserver 0:8001`).
    Positional,
    /// The package.json script the command runs.
    PackageJson,
    /// The compose file of `docker compose up`.
    ComposeFile,
    /// Nothing says: the tool's documented default.
    FrameworkDefault,
    /// The tool picks a port itself (`cypress open`, `docker run -p 80`),
    /// or the command computes it (`--port $PORT`).
    Unknown,
}

/// A simple command that will start a listening server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStart {
    pub tool: &'static Tool,
    /// The tool's service type, or for a container the one its image names.
    pub service_type: &'static str,
    /// The port it would take, when known.
    pub port: Option<u16>,
    pub port_source: PortSource,
    /// The simple command in the original string (for a package script or
    /// `bash -c`, the command that runs it).
    pub span: Range<usize>,
    pub(super) plan: Plan,
}

impl ServerStart {
    /// Whether [`rewrite_port`] can move this start to another port.
    pub fn can_rewrite(&self) -> bool {
        !matches!(self.plan, Plan::None)
    }
}

/// How to move a start to another port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Plan {
    /// Edits in the command line itself.
    Edit(Vec<Edit>),
    /// The port is written in a package.json script: run the edited script
    /// directly through the package runner (`npx vite --port 5174`, the
    /// runner being one of the edits) in place of `replace` (`npm run
    /// dev`), followed by the extra arguments.
    Body { body: String, edits: Vec<Edit>, replace: Range<usize>, extra: String },
    /// The port is only in a configuration file, or out of reach.
    None,
}

/// Replace `range` with `before`, the new port (when `port`), then `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Edit {
    range: Range<usize>,
    before: String,
    port: bool,
    after: String,
}

impl Edit {
    pub(super) fn insert(at: usize, before: String, port: bool, after: String) -> Edit {
        Edit { range: at..at, before, port, after }
    }

    pub(super) fn port_at(range: Range<usize>) -> Edit {
        Edit { range, before: String::new(), port: true, after: String::new() }
    }
}

fn apply(text: &str, edits: &[Edit], port: u16) -> Option<String> {
    let mut edits: Vec<(usize, &Edit)> = edits.iter().enumerate().collect();
    // Back to front, so earlier offsets stay valid; at one offset the
    // later-planned edit goes in first, so the planned order is kept.
    edits.sort_by_key(|&(i, e)| std::cmp::Reverse((e.range.start, i)));
    let mut out = text.to_string();
    let mut last_start = usize::MAX;
    for (_, e) in edits {
        if e.range.end > last_start || out.get(e.range.clone()).is_none() {
            return None;
        }
        let mut piece = e.before.clone();
        if e.port {
            piece.push_str(&port.to_string());
        }
        piece.push_str(&e.after);
        out.replace_range(e.range.clone(), &piece);
        last_start = e.range.start;
    }
    Some(out)
}

/// `command` with `start` moved to `new_port`, everything else
/// byte-identical: `npm run storybook -- -p 6007`, `PORT=3001 npm start`,
/// `vite --port 5174 --strictPort`, `python3 -m http.server 8001`,
/// `docker run -p 8081:80 img`. None when the port is only in a
/// configuration file (firebase.json, a compose file) or cannot be reached
/// from the command line, or when `start` is not from this command.
pub fn rewrite_port(command: &str, start: &ServerStart, new_port: u16) -> Option<String> {
    match &start.plan {
        Plan::Edit(edits) => apply(command, edits, new_port),
        Plan::Body { body, edits, replace, extra } => {
            let text = format!("{}{extra}", apply(body, edits, new_port)?);
            let mut out = command.to_string();
            out.get(replace.clone())?;
            out.replace_range(replace.clone(), &text);
            Some(out)
        }
        Plan::None => None,
    }
}
