//! The argv resolver: where a command line leads once wrappers (`env`,
//! `nohup`, `npx`, `bundle exec`…) and interpreters (`node path/to/vite.js`,
//! `python3 -m http.server`) are stripped down to the program that will
//! listen, looked up in the tool table ([`crate::tools`]).
//!
//! Two readers share it: the observer's service-type guess from
//! `/proc/PID/cmdline` ([`crate::service_type`]) and the Bash command reader
//! of the Claude Code hook ([`crate::shellcmd`]).

use crate::tools::{PortSyntax, Subcommand, TOOLS, Tool};

/// Where a command line leads once wrappers and interpreters are stripped.
/// Indices are into the words given to [`resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Launch {
    /// A known tool: `program` is the index of the word naming it (the
    /// script for `node …/vite.js`), `args` the index of its first argument.
    Tool { tool: &'static Tool, program: usize, args: usize },
    /// A package-manager script run (`npm run dev`, `yarn dev`, `deno task x`).
    Script(ScriptCall),
    /// `sh -c STRING` and friends: `string` is the index of the script text.
    Shell { string: usize },
    /// A program that is none of the above (`kill`, `cd`, `concurrently`).
    Program { at: usize },
    /// Nothing to run, or a wrapper missing its command.
    Other,
}

/// A package-manager script run, as word indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScriptCall {
    pub manager: Manager,
    /// The package manager word.
    pub program: usize,
    /// The word naming the script.
    pub script: usize,
    /// The script's name (`npm t` runs `test`).
    pub name: String,
    /// The first argument passed on to the script.
    pub extra: usize,
    /// A `--prefix`/`-C`/`--cwd` directory word.
    pub dir: Option<usize>,
}

/// A JavaScript package manager or task runner that runs named scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    Npm,
    Pnpm,
    Yarn,
    Bun,
    Deno,
}

impl Manager {
    /// Whether arguments for the script must follow a `--`
    /// (`npm run dev -- --port 3001`); pnpm, yarn and bun pass them on as is.
    pub fn needs_double_dash(self) -> bool {
        matches!(self, Manager::Npm | Manager::Deno)
    }
}

/// A resolution, plus the environment assignments met on the way
/// (`PORT=1 cmd`, `env PORT=1 …`, `cross-env PORT=1 …`) as word indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub launch: Launch,
    pub env_words: Vec<usize>,
}

/// Resolve a command's words: a process's argv, or a shell simple command
/// without its redirections (leading assignments included).
pub(crate) fn resolve<S: AsRef<str>>(words: &[S]) -> Resolved {
    let words: Vec<&str> = words.iter().map(AsRef::as_ref).collect();
    let mut env_words = Vec::new();
    let launch = Resolver { words: &words, env: &mut env_words }.from(0, 0);
    Resolved { launch, env_words }
}

/// Wrapper and interpreter nesting is shallow in practice; the bound stops
/// a pathological command from looping.
const MAX_DEPTH: usize = 12;

struct Resolver<'w, 'e> {
    words: &'w [&'w str],
    env: &'e mut Vec<usize>,
}

impl<'w> Resolver<'w, '_> {
    fn word(&self, i: usize) -> Option<&'w str> {
        self.words.get(i).copied()
    }

    /// Resolve from word `i`, which names a program.
    fn from(&mut self, i: usize, depth: usize) -> Launch {
        let mut i = i;
        while self.word(i).is_some_and(is_assignment) {
            self.env.push(i);
            i += 1;
        }
        let Some(first) = self.word(i) else {
            return Launch::Other;
        };
        let name = program_name(first, self.words.len() - i == 1);
        self.named(i, name, depth)
    }

    /// Continue at word `to` (a wrapper's command), if there is one.
    fn then(&mut self, from: usize, to: usize, depth: usize) -> Launch {
        if to > from && depth < MAX_DEPTH { self.from(to, depth + 1) } else { Launch::Other }
    }

    /// Resolve word `i`, whose program name is `name`.
    fn named(&mut self, i: usize, name: &str, depth: usize) -> Launch {
        let words = self.words;
        match name {
            "env" => {
                let j = skip_options(words, i + 1, &["-u", "--unset", "-C", "--chdir"]);
                self.then(i, j, depth)
            }
            "nohup" | "time" | "exec" | "command" | "builtin" | "unbuffer" => self.then(i, i + 1, depth),
            "sudo" | "doas" => {
                let j = skip_options(words, i + 1, &["-u", "-g", "-h", "-p", "-C", "-D", "-r", "-t", "-U"]);
                self.then(i, j, depth)
            }
            "nice" => {
                let j = skip_options(words, i + 1, &["-n", "--adjustment"]);
                self.then(i, j, depth)
            }
            "ionice" => {
                let j = skip_options(words, i + 1, &["-c", "-n", "--class", "--classdata"]);
                self.then(i, j, depth)
            }
            "stdbuf" | "setsid" | "xvfb-run" | "dbus-run-session" => {
                let j = skip_options(words, i + 1, &["-s", "-n", "--server-args"]);
                self.then(i, j, depth)
            }
            "timeout" => {
                // Options, then the duration, then the command.
                let j = skip_options(words, i + 1, &["-s", "--signal", "-k", "--kill-after"]);
                self.then(i, j + 1, depth)
            }
            "cross-env" | "cross-env-shell" | "dotenv" | "env-cmd" | "doppler" | "infisical" => {
                let mut j = i + 1;
                if matches!(name, "doppler" | "infisical") {
                    if self.word(j) != Some("run") {
                        return Launch::Other;
                    }
                    j += 1;
                }
                let j = skip_options(
                    words,
                    j,
                    &["-e", "-f", "-c", "--file", "-r", "--env-file", "-p", "--project", "--config"],
                );
                self.then(i, j, depth)
            }
            "bundle" | "poetry" | "pipenv" | "pdm" | "hatch" | "rye" | "uv" | "pixi" | "conda" | "mamba"
            | "micromamba" => {
                // `bundle exec X`, `poetry run X`, `uv run X`, `conda run -n env X`
                if !matches!(self.word(i + 1), Some("exec" | "run")) {
                    return Launch::Other;
                }
                let j = skip_options(
                    words,
                    i + 2,
                    &[
                        "-n",
                        "--name",
                        "-p",
                        "--prefix",
                        "--with",
                        "--python",
                        "--env",
                        "-e",
                        "--project",
                        "--directory",
                        "--package",
                        "--extra",
                        "--group",
                    ],
                );
                self.then(i, j, depth)
            }
            "uvx" | "pipx" => {
                let j = if name == "pipx" {
                    if self.word(i + 1) != Some("run") {
                        return Launch::Other;
                    }
                    i + 2
                } else {
                    i + 1
                };
                let j = skip_options(words, j, &["--from", "--with", "--python", "--spec"]);
                self.then(i, j, depth)
            }
            "npx" | "bunx" | "pnpx" => {
                let j = skip_npx_options(words, i + 1);
                self.then(i, j, depth)
            }
            // `iex -S mix phx.server`
            "iex" if self.word(i + 1) == Some("-S") => self.then(i, i + 2, depth),
            "sh" | "bash" | "zsh" | "dash" | "ksh" | "ash" | "su" => self.shell(i, name),
            "npm" | "pnpm" | "yarn" | "bun" => self.package_manager(i, name, depth),
            "deno" => self.deno(i, depth),
            _ if is_node(name) => {
                let j = skip_interpreter_options(
                    words,
                    i + 1,
                    &[
                        "-r",
                        "--require",
                        "--import",
                        "--loader",
                        "--experimental-loader",
                        "-C",
                        "--conditions",
                        "--title",
                    ],
                    &["-e", "--eval", "-p", "--print", "-"],
                );
                self.script(i, j, depth)
            }
            _ if is_python(name) => self.python(i, depth),
            _ if is_versioned(name, "ruby") || name == "jruby" => {
                let j = skip_interpreter_options(words, i + 1, &["-I", "-r", "-C", "-E"], &["-e", "-"]);
                self.script(i, j, depth)
            }
            _ if is_versioned(name, "php") => {
                if words[i + 1..].contains(&"-S") {
                    tool_launch(name, words, i)
                } else {
                    let j = skip_interpreter_options(
                        words,
                        i + 1,
                        &["-c", "-d", "-z"],
                        &["-r", "-R", "-B", "-E", "-a", "-"],
                    );
                    self.script(i, j, depth)
                }
            }
            // Git-style dispatchers: `cargo leptos watch` runs `cargo-leptos
            // leptos watch`; `jupyter lab` runs `jupyter-lab`.
            "cargo" | "jupyter" => match self.word(i + 1) {
                Some(sub) if !sub.starts_with('-') => {
                    let program = format!("{name}-{sub}");
                    match lookup(&program, words, i + 2) {
                        Some(tool) => Launch::Tool { tool, program: i, args: i + 2 },
                        None => Launch::Other,
                    }
                }
                _ => Launch::Other,
            },
            "cargo-leptos" if self.word(i + 1) == Some("leptos") => match lookup(name, words, i + 2) {
                Some(tool) => Launch::Tool { tool, program: i, args: i + 2 },
                None => Launch::Other,
            },
            // `docker compose up`, `docker container run`
            "docker" | "podman" if matches!(self.word(i + 1), Some("compose" | "container")) => {
                let program = if self.word(i + 1) == Some("compose") { "docker-compose" } else { name };
                match lookup(program, words, i + 2) {
                    Some(tool) => Launch::Tool { tool, program: i, args: i + 2 },
                    None => Launch::Other,
                }
            }
            _ => tool_launch(name, words, i),
        }
    }

    /// `bash -c STRING`, `bash -lc STRING`, `su - user -c STRING`.
    fn shell(&self, i: usize, name: &str) -> Launch {
        let mut j = i + 1;
        while let Some(w) = self.word(j) {
            if w.starts_with('-') && !w.starts_with("--") && w.ends_with('c') {
                return if j + 1 < self.words.len() { Launch::Shell { string: j + 1 } } else { Launch::Other };
            }
            if !w.starts_with('-') && name != "su" {
                break;
            }
            j += 1;
        }
        Launch::Other
    }

    /// Word `j` is the script an interpreter runs (`node SCRIPT`): the
    /// script decides what starts.
    fn script(&mut self, i: usize, j: usize, depth: usize) -> Launch {
        let Some(script) = self.word(j) else {
            return Launch::Other;
        };
        if let Some(tool) = child_script_tool(script) {
            return Launch::Tool { tool, program: j, args: j + 1 };
        }
        if j <= i || depth >= MAX_DEPTH {
            return Launch::Other;
        }
        self.named(j, script_program(script), depth + 1)
    }

    fn python(&mut self, i: usize, depth: usize) -> Launch {
        let mut j = i + 1;
        while let Some(w) = self.word(j) {
            match w {
                // `python -m http.server`: the module is the program.
                "-m" => return self.then(i, j + 1, depth),
                "-c" | "-" => return Launch::Other,
                "-W" | "-X" => j += 2,
                _ if w.starts_with('-') => j += 1,
                _ => break,
            }
        }
        self.script(i, j, depth)
    }

    fn deno(&mut self, i: usize, depth: usize) -> Launch {
        let words = self.words;
        match self.word(i + 1) {
            Some("task") => match first_non_option(words, i + 2, &["--cwd", "--config", "-c"]) {
                Some(s) => Launch::Script(ScriptCall {
                    manager: Manager::Deno,
                    program: i,
                    script: s,
                    name: words[s].to_string(),
                    extra: s + 1,
                    dir: option_value_index(words, i + 2, s, &["--cwd"]),
                }),
                None => Launch::Other,
            },
            // `deno run -A npm:vite@5`, `deno run main.ts`
            Some("run") => {
                match first_non_option(words, i + 2, &["--config", "-c", "--import-map", "--location", "--env-file"]) {
                    Some(s) => {
                        let spec = words[s].strip_prefix("npm:").unwrap_or(words[s]);
                        if depth >= MAX_DEPTH {
                            return Launch::Other;
                        }
                        self.named(s, strip_version(script_program(spec)), depth + 1)
                    }
                    None => Launch::Other,
                }
            }
            _ => tool_launch("deno", words, i),
        }
    }

    fn package_manager(&mut self, i: usize, name: &str, depth: usize) -> Launch {
        let words = self.words;
        let manager = match name {
            "npm" => Manager::Npm,
            "pnpm" => Manager::Pnpm,
            "yarn" => Manager::Yarn,
            _ => Manager::Bun,
        };
        // Global options before the command; some name the project directory.
        let value_opts: &[&str] = &[
            "--prefix",
            "-C",
            "--dir",
            "--cwd",
            "--filter",
            "-F",
            "-w",
            "--workspace",
            "--loglevel",
            "--registry",
            "--userconfig",
            "--cache",
        ];
        let Some(cmd) = first_non_option(words, i + 1, value_opts) else {
            return Launch::Other;
        };
        let dir = option_value_index(words, i + 1, cmd, &["--prefix", "-C", "--dir", "--cwd"]);
        let script = |script: usize, name: &str| {
            Launch::Script(ScriptCall { manager, program: i, script, name: name.to_string(), extra: script + 1, dir })
        };
        match (manager, words[cmd]) {
            (_, "run" | "run-script" | "rum" | "urn") => {
                match first_non_option(words, cmd + 1, &["-w", "--workspace", "--filter", "-F"]) {
                    Some(s) => script(s, words[s]),
                    None => Launch::Other,
                }
            }
            (Manager::Npm, "start") => script(cmd, "start"),
            (Manager::Npm, "test" | "t" | "tst") => script(cmd, "test"),
            (Manager::Npm, "exec" | "x") | (Manager::Bun, "x") | (Manager::Pnpm | Manager::Yarn, "exec" | "dlx") => {
                let j = skip_npx_options(words, cmd + 1);
                self.then(i, j, depth)
            }
            (Manager::Npm, _) => Launch::Other,
            (Manager::Pnpm, c) if PNPM_BUILTINS.contains(&c) => Launch::Other,
            (Manager::Yarn, c) if YARN_BUILTINS.contains(&c) => Launch::Other,
            (Manager::Bun, c) if BUN_BUILTINS.contains(&c) => Launch::Other,
            // `pnpm dev`, `yarn dev`, `bun dev`: a script if package.json has
            // one, else a binary of node_modules/.bin.
            (_, c) => script(cmd, c),
        }
    }
}

/// The tool named by word `i` with its arguments after it.
fn tool_launch(name: &str, words: &[&str], i: usize) -> Launch {
    match lookup(name, words, i + 1) {
        Some(tool) => Launch::Tool { tool, program: i, args: i + 1 },
        None => Launch::Program { at: i },
    }
}

const PNPM_BUILTINS: &[&str] = &[
    "add",
    "install",
    "i",
    "update",
    "up",
    "remove",
    "rm",
    "uninstall",
    "un",
    "link",
    "ln",
    "unlink",
    "import",
    "rebuild",
    "rb",
    "prune",
    "fetch",
    "patch",
    "patch-commit",
    "audit",
    "list",
    "ls",
    "outdated",
    "why",
    "publish",
    "pack",
    "store",
    "init",
    "create",
    "env",
    "setup",
    "config",
    "root",
    "bin",
    "licenses",
    "deploy",
    "install-test",
    "it",
    "dedupe",
    "self-update",
    "server",
    "recursive",
];

/// `bun test` is Bun's own test runner, not a script.
const BUN_BUILTINS: &[&str] = &[
    "test", "build", "install", "i", "add", "a", "remove", "rm", "update", "upgrade", "link", "unlink", "pm", "init",
    "create", "c", "outdated", "publish", "patch", "repl", "audit", "info",
];

const YARN_BUILTINS: &[&str] = &[
    "add",
    "install",
    "remove",
    "upgrade",
    "up",
    "init",
    "info",
    "cache",
    "config",
    "global",
    "link",
    "unlink",
    "pack",
    "publish",
    "why",
    "bin",
    "create",
    "npm",
    "plugin",
    "version",
    "versions",
    "workspaces",
    "set",
    "constraints",
    "audit",
    "outdated",
    "list",
    "login",
    "logout",
    "licenses",
    "import",
    "check",
    "autoclean",
    "owner",
    "team",
    "tag",
    "upgrade-interactive",
    "dedupe",
    "explain",
    "node",
    "patch",
    "patch-commit",
    "rebuild",
    "search",
    "stage",
    "unplug",
];

/// `npx [-y] [--package X] [-p X] [-c CMD] tool args`: the index of the tool word.
fn skip_npx_options(words: &[&str], from: usize) -> usize {
    let mut j = from;
    while let Some(w) = words.get(j) {
        match *w {
            "--" => return j + 1,
            "-p" | "--package" | "--registry" | "--cache" | "--prefix" | "-C" | "--node-options" | "--shell"
            | "--filter" | "-F" | "-w" | "--workspace" => j += 2,
            _ if w.starts_with('-') => j += 1,
            _ => return j,
        }
    }
    j
}

/// `opt value` pairs and flags up to the first plain word or `--` (consumed).
fn skip_options(words: &[&str], from: usize, value_opts: &[&str]) -> usize {
    let mut j = from;
    while let Some(w) = words.get(j) {
        if *w == "--" {
            return j + 1;
        }
        if is_assignment(w) {
            // `env A=1 B=2 cmd`: leave assignments for resolve_from to record.
            return j;
        }
        if !w.starts_with('-') || *w == "-" {
            return j;
        }
        j += if value_opts.contains(w) { 2 } else { 1 };
    }
    j
}

/// Interpreter options up to the script word; `code_opts` (`node -e`)
/// mean there is no script, answered as an index past the end.
fn skip_interpreter_options(words: &[&str], from: usize, value_opts: &[&str], code_opts: &[&str]) -> usize {
    let mut j = from;
    while let Some(w) = words.get(j) {
        if code_opts.contains(w) {
            return words.len();
        }
        if *w == "--" {
            return j + 1;
        }
        if !w.starts_with('-') {
            return j;
        }
        j += if value_opts.contains(w) { 2 } else { 1 };
    }
    j
}

fn first_non_option(words: &[&str], from: usize, value_opts: &[&str]) -> Option<usize> {
    let mut j = from;
    while let Some(w) = words.get(j) {
        if *w == "--" {
            return (j + 1 < words.len()).then_some(j + 1);
        }
        if !w.starts_with('-') {
            return Some(j);
        }
        j += if value_opts.contains(w) { 2 } else { 1 };
    }
    None
}

/// Index of the value of one of `opts` between `from` and `to` (`--prefix
/// dir`), or of the word holding it attached (`--prefix=dir`).
fn option_value_index(words: &[&str], from: usize, to: usize, opts: &[&str]) -> Option<usize> {
    let mut found = None;
    let mut j = from;
    while j < to {
        let w = words[j];
        if opts.contains(&w) && j + 1 < to {
            found = Some(j + 1);
            j += 2;
            continue;
        }
        if let Some((name, _)) = w.split_once('=')
            && opts.contains(&name)
        {
            found = Some(j);
        }
        j += 1;
    }
    found
}

pub(crate) fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// The basename of a program word. A process that set its own title
/// (`next-server (v14.2.3)`, `puma 6.4.0 (tcp://0.0.0.0:3000) [app]`,
/// `redis-server *:6379`, `postgres: checkpointer`) has one argv word; its
/// first token is the name.
pub(crate) fn program_name(word: &str, only_word: bool) -> &str {
    let word = if only_word && word.contains(' ') { word.split(' ').next().unwrap_or(word) } else { word };
    let base = word.rsplit('/').next().unwrap_or(word);
    base.strip_suffix(':').unwrap_or(base)
}

/// `node_modules/.bin/vite` → `vite`; `node_modules/vite/bin/vite.js` →
/// `vite`; `node_modules/@storybook/cli/bin/index.js` → `@storybook/cli`;
/// `/usr/local/bin/uvicorn` → `uvicorn`.
fn script_program(path: &str) -> &str {
    if let Some(pos) = path.rfind("node_modules/") {
        let rest = &path[pos + "node_modules/".len()..];
        if let Some(bin) = rest.strip_prefix(".bin/") {
            return bin;
        }
        let mut parts = rest.splitn(3, '/');
        let first = parts.next().unwrap_or(rest);
        if first.starts_with('@') {
            let second_len = parts.next().map_or(0, str::len);
            return &rest[..(first.len() + 1 + second_len).min(rest.len())];
        }
        return first;
    }
    path.rsplit('/').next().unwrap_or(path)
}

/// A node script that a tool runs in a child process, which is the one
/// listening (`react-scripts/scripts/start.js`).
fn child_script_tool(path: &str) -> Option<&'static Tool> {
    TOOLS.iter().find(|t| t.child_scripts.iter().any(|s| path.ends_with(s)))
}

/// `vite@5.0.0` → `vite`; `@storybook/cli@latest` → `@storybook/cli`.
pub(crate) fn strip_version(spec: &str) -> &str {
    match spec.char_indices().skip(1).find(|&(_, c)| c == '@') {
        Some((at, _)) => &spec[..at],
        None => spec,
    }
}

fn is_node(name: &str) -> bool {
    matches!(name, "node" | "nodejs" | "tsx" | "ts-node" | "ts-node-dev") || is_versioned(name, "node")
}

fn is_python(name: &str) -> bool {
    is_versioned(name, "python") || is_versioned(name, "pypy")
}

/// `python3.12` is `python`, `php8.2` is `php`.
fn is_versioned(name: &str, base: &str) -> bool {
    name.strip_prefix(base).is_some_and(|r| r.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

/// The tool a program name plus its arguments (from `args`) start.
fn lookup(program: &str, words: &[&str], args: usize) -> Option<&'static Tool> {
    let program = strip_version(program);
    let rest = &words[args.min(words.len())..];
    // `vite --help` prints and exits.
    if rest.iter().any(|a| *a == "--help" || *a == "--version") {
        return None;
    }
    TOOLS.iter().find(|tool| {
        tool.programs.contains(&program)
            && subcommand_matches(tool, rest)
            && (tool.requires.is_empty() || rest.iter().any(|a| tool.requires.contains(&option_name(a))))
    })
}

/// `--port=3000` → `--port`.
fn option_name(arg: &str) -> &str {
    if arg.starts_with('-') { arg.split_once('=').map_or(arg, |(n, _)| n) } else { arg }
}

fn subcommand_matches(tool: &Tool, args: &[&str]) -> bool {
    let first = first_positional(tool, args).map(|i| args[i]);
    match tool.subcommand {
        Subcommand::Any => true,
        Subcommand::OneOf(subs) => first.is_some_and(|f| subs.contains(&f)),
        Subcommand::NoneOf(subs) => first.is_none_or(|f| !subs.contains(&f)),
        Subcommand::Goal(goals) => args.iter().any(|a| goals.contains(a)),
    }
}

/// The index in `args` of the first positional argument, skipping options
/// and the values of the tool's value-taking options.
pub(crate) fn first_positional<S: AsRef<str>>(tool: &Tool, args: &[S]) -> Option<usize> {
    let mut j = 0;
    while let Some(arg) = args.get(j) {
        let a = arg.as_ref();
        if a == "--" {
            return (j + 1 < args.len()).then_some(j + 1);
        }
        if a.starts_with('-') && a.len() > 1 {
            j += if takes_value(tool, a) { 2 } else { 1 };
            continue;
        }
        return Some(j);
    }
    None
}

/// Whether `arg` is an option of `tool` whose value is the next word.
pub(crate) fn takes_value(tool: &Tool, arg: &str) -> bool {
    if arg.contains('=') {
        return false;
    }
    let port_names: &[&str] = match tool.port {
        PortSyntax::Flag { names, joined: false } | PortSyntax::HostPortFlag { names, .. } => names,
        _ => &[],
    };
    port_names.contains(&arg) || tool.value_flags.contains(&arg)
}

/// The tool that `argv` starts, looking through wrappers and interpreters.
pub fn find_tool<S: AsRef<str>>(argv: &[S]) -> Option<&'static Tool> {
    match resolve(argv).launch {
        Launch::Tool { tool, .. } => Some(tool),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    fn tool(words: &[&str]) -> Option<&'static str> {
        find_tool(&argv(words)).map(|t| t.name)
    }

    #[test]
    fn wrappers_are_looked_through() {
        assert_eq!(tool(&["env", "PORT=3001", "npx", "--yes", "next", "dev"]), Some("next"));
        assert_eq!(tool(&["nohup", "timeout", "-s", "KILL", "60", "uvicorn", "app:app"]), Some("uvicorn"));
        assert_eq!(
            tool(&["sudo", "-u", "postgres", "/usr/lib/postgresql/16/bin/postgres", "-D", "/data"]),
            Some("postgres")
        );
        assert_eq!(tool(&["pnpm", "dlx", "http-server@14", "-p", "8081"]), Some("http-server"));
        assert_eq!(tool(&["bunx", "vite"]), Some("vite"));
        assert_eq!(tool(&["yarn", "dlx", "serve", "dist"]), Some("serve"));
        assert_eq!(tool(&["poetry", "run", "uvicorn", "app:app"]), Some("uvicorn"));
        assert_eq!(tool(&["uv", "run", "--with", "fastapi", "fastapi", "dev"]), Some("fastapi"));
        assert_eq!(tool(&["iex", "-S", "mix", "phx.server"]), Some("phoenix"));
        assert_eq!(tool(&["./mvnw", "-q", "clean", "spring-boot:run"]), Some("spring-boot"));
        assert_eq!(tool(&["deno", "run", "-A", "npm:vite@5"]), Some("vite"));
        assert_eq!(tool(&["docker", "compose", "up", "-d"]), Some("docker-compose"));
        assert_eq!(tool(&["docker", "compose", "ps"]), None);
    }
}
