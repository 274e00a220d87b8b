//! Server starts and kills in a Bash command line, as Claude Code's
//! PreToolUse hook receives it (`tool_input.command`), and rewriting a
//! start for another port in the tool's own syntax.
//!
//! A command is split into simple commands (`cd web && PORT=3001 npm run
//! dev | tee log`); each is resolved through the tool table
//! ([`crate::tools`]); package-manager scripts are read from the nearest
//! package.json; compose files give the ports of `docker compose up`.
//! Only the program position counts: a tool named inside another program's
//! argument (`git commit -m "vite"`) is not a start, except in the script
//! of `bash -c '…'`.

mod docker;
mod kill;
mod lex;
mod manifest;

use std::ops::Range;
use std::path::{Path, PathBuf};

pub use kill::{KillTarget, kill_targets};
use lex::Word;

use crate::tools::{self, Launch, Manager, PortSyntax, ScriptCall, Subcommand, Tool};

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
    plan: Plan,
}

impl ServerStart {
    /// Whether [`rewrite_port`] can move this start to another port.
    pub fn can_rewrite(&self) -> bool {
        !matches!(self.plan, Plan::None)
    }
}

/// How to move a start to another port.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
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
struct Edit {
    range: Range<usize>,
    before: String,
    port: bool,
    after: String,
}

impl Edit {
    fn insert(at: usize, before: String, port: bool, after: String) -> Edit {
        Edit { range: at..at, before, port, after }
    }

    fn port_at(range: Range<usize>) -> Edit {
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

/// The service type of the first tool a shell script starts, for argv of
/// the form `sh -c SCRIPT` (no package.json is read).
pub(crate) fn infer_from_script(script: &str) -> Option<&'static str> {
    lex::parse(script).into_iter().find_map(|c| {
        let texts: Vec<&str> = c.words.iter().map(|w| w.text.as_str()).collect();
        tools::infer_service_type(&texts)
    })
}

/// Package scripts call package scripts; past this depth the chain is
/// not followed.
const MAX_SCRIPT_DEPTH: usize = 4;

/// An environment assignment in effect: `word` is `NAME=value`.
#[derive(Debug, Clone)]
struct Assign {
    word: Word,
}

impl Assign {
    fn name(&self) -> &str {
        self.word.text.split_once('=').map_or("", |(n, _)| n)
    }

    fn value_start(&self) -> usize {
        self.name().len() + 1
    }
}

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

/// A port found in a command: the word and the byte range in its text to
/// replace (digits, or the whole word when it is `$PORT`).
struct Found {
    port: Option<u16>,
    kind: PortSource,
    word: Word,
    range: Range<usize>,
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
        let resolved = tools::resolve(&texts);
        let mut env = ctx.env.clone();
        env.extend(resolved.env_words.iter().map(|&i| Assign { word: words[i].clone() }));
        match resolved.launch {
            Launch::Tool { tool, args, .. } if tool.port == PortSyntax::Publish => {
                let cmd_span = self.report_span(span, ctx);
                let starts = if tool.name == "docker-run" {
                    docker::run_starts(tool, &words[args..], cmd_span)
                } else {
                    docker::compose_starts(tool, &words[args..], ctx.cwd.as_deref(), cmd_span)
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
            "export" => ctx
                .env
                .extend(args.iter().filter(|w| tools::is_assignment(&w.text)).map(|w| Assign { word: w.clone() })),
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
        if let Launch::Tool { tool, program, args } = tools::resolve(&texts).launch
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
            let Some(program_at) = body_words.iter().find(|w| !tools::is_assignment(&w.text)).map(|w| w.raw.start)
            else {
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
    words[..program].iter().filter(|w| tools::is_assignment(&w.text)).cloned().collect()
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

fn digits(text: &str) -> Option<u16> {
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
fn find_port(tool: &Tool, args: &[Word], env: &[Assign]) -> Option<Found> {
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
    let first = tools::first_positional(tool, &texts)?;
    let at = match tool.subcommand {
        Subcommand::OneOf(_) | Subcommand::Goal(_) => first + 1 + tools::first_positional(tool, &texts[first + 1..])?,
        Subcommand::Any | Subcommand::NoneOf(_) => first,
    };
    value_port(&args[at], 0, PortSource::Positional)
}

#[cfg(test)]
mod tests {
    use super::*;

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
