//! The command line, defined once: it drives parsing, `--help`, shell
//! completions and the man page.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

pub const EXIT_OK: u8 = 0;
/// The allocator refused, a check failed, or the request failed.
pub const EXIT_REFUSED: u8 = 1;
/// Bad command line (clap's own code).
pub const EXIT_USAGE: u8 = 2;
/// No allocator could be reached (or started).
pub const EXIT_UNREACHABLE: u8 = 3;

/// Exit statuses, for `--help` and the man page.
pub const EXIT_STATUSES: [(u8, &str); 4] = [
    (EXIT_OK, "success (`check` exits 0 whether the port is free or not)"),
    (EXIT_REFUSED, "refused: the allocator said no, a check failed, or the request failed"),
    (EXIT_USAGE, "usage error"),
    (EXIT_UNREACHABLE, "the allocator could not be reached or started"),
];
pub const RUN_EXIT_STATUS: &str = "`styxy run` exits with the status of the command it runs \
    (127 when the command cannot be found, 126 when it cannot be executed).";
pub const JSON_ERRORS: &str = "With --json, results and errors are JSON on stdout; a failure is \
    {\"success\":false,\"error\":CODE,\"message\":TEXT}.";

fn exit_status_help() -> String {
    let mut text = String::from("Exit status:\n");
    for (code, meaning) in EXIT_STATUSES {
        text.push_str(&format!("  {code}  {meaning}\n"));
    }
    format!("{text}\n{RUN_EXIT_STATUS}\n\n{JSON_ERRORS}")
}

#[derive(Debug, Parser)]
#[command(
    name = "styxy",
    version,
    about = "Port coordination for dev servers and AI coding agents",
    long_about = "Port coordination for dev servers and AI coding agents.\n\n\
        styxy talks to the styxy-allocator over its Unix socket: $STYXY_SOCKET, \
        then /run/styxy/api.sock (system mode), then the user socket. When none \
        answers, it starts `styxy-allocator --user` in the background.",
    after_help = exit_status_help(),
    arg_required_else_help = true,
    propagate_version = true
)]
pub struct Cli {
    /// Print the allocator's JSON answer instead of text
    #[arg(long, global = true)]
    pub json: bool,

    /// Talk to the allocator on this socket only (default: $STYXY_SOCKET,
    /// the system socket, then the user socket)
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Never start a user allocator when none answers
    #[arg(long, global = true, env = "STYXY_NO_AUTOSTART",
          value_parser = clap::builder::FalseyValueParser::new())]
    pub no_autostart: bool,

    /// Give up on the allocator after this many seconds (connect, and each read)
    #[arg(long, global = true, env = "STYXY_TIMEOUT", value_name = "SECONDS",
          default_value = "5", value_parser = parse_timeout)]
    pub timeout: Duration,

    #[command(subcommand)]
    pub command: Command,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let secs: f64 = text.parse().map_err(|_| format!("not a number of seconds: {text}"))?;
    if !(secs > 0.0 && secs <= 3600.0) {
        return Err("must be more than 0 and at most 3600 seconds".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lease {
    /// Freed when the owner process exits
    Process,
    /// Freed when the session (instance) expires or ends
    Session,
    /// Kept until `styxy release`
    Manual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Reserve a port for a service type
    #[command(after_help = "\
Ownership: by default the port belongs to the process that ran styxy (your
shell or script) with a `process` lease, so it is freed when that process
exits. When $STYXY_SESSION is set, the default lease is `session` with that
instance id instead. Use --lease manual to keep it until `styxy release`.")]
    Allocate(AllocateArgs),

    /// Release a reserved port by its lock id
    Release {
        /// Lock id printed by `allocate`
        lock_id: String,
    },

    /// Say whether a port is free, and who holds it when it is not
    Check {
        #[arg(value_parser = clap::value_parser!(u16).range(1..))]
        port: u16,
    },

    /// List reserved ports
    List {
        /// Show project, instance, source, process and allocation time
        #[arg(short, long)]
        verbose: bool,
        /// Also list every listening TCP port on the machine, ours or not
        #[arg(long)]
        all: bool,
    },

    /// Show which ports of a range are in use, and by whom
    Scan {
        /// First port
        #[arg(short, long, default_value_t = 3000, value_parser = clap::value_parser!(u16).range(1..))]
        start: u16,
        /// Last port
        #[arg(short, long, default_value_t = 9999, value_parser = clap::value_parser!(u16).range(1..))]
        end: u16,
    },

    /// List registered sessions (instances)
    Instances,

    /// Free the reservations of processes that are gone and sessions that expired
    Cleanup {
        /// Free all of your reservations (root: everyone's)
        #[arg(short, long)]
        force: bool,
    },

    /// Show and check the configuration
    #[command(subcommand)]
    Config(ConfigCommand),

    /// Check that styxy works on this machine
    Doctor,

    /// Query or stop the allocator
    #[command(subcommand)]
    Daemon(DaemonCommand),

    /// Print your token for the loopback TCP API
    Token {
        /// Also write it to ~/.styxy/auth.token (0600), where the original
        /// Styxy's CLI, hooks and dashboards read it
        #[arg(long)]
        write_legacy: bool,
    },

    /// Serve a live dashboard of every port on a loopback URL and open it
    #[command(after_help = "\
The page lists every reservation by project and worktree, the other
listeners on the machine and how full each service type's range is, and
updates as they change. Its URL carries a one-time code that the browser
exchanges for a cookie; only your own browser session gets in. It runs until
interrupted (Ctrl-C). A desktop browser ($BROWSER, else xdg-open) is opened
when one is there.")]
    Ui {
        /// Loopback port to serve on (default: any free port)
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Print the URL only, do not open a browser
        #[arg(long)]
        no_open: bool,
    },

    /// The dashboard in the terminal (a plain table when stdout is not a terminal)
    #[command(after_help = "\
Keys: up/down (or j/k) select, r release, s stop the process (SIGTERM, asks
first), c copy the URL (OSC 52), q quit. Only your own ports can be released
or stopped.")]
    Top,

    /// Run a command with a reserved port in $PORT and the bind() interposer loaded
    #[command(after_help = "\
The command runs in this very process (exec), so the port belongs to it and
is freed when it exits. It gets PORT, STYXY_PORT and STYXY_LOCK_ID, and
LD_PRELOAD gains the styxy preload library, which moves a server whose port
is busy to a free one. Without -s and -p the service type is `dev`. When the
allocator cannot be reached or refuses, the command runs anyway without PORT.")]
    Run(RunArgs),

    /// Print the shell lines that load the bind() interposer for every command
    ShellInit { shell: Shell },

    /// Print a scope's port map (`STYXY_PORT_<canonical>=<actual>` lines) for
    /// what the preload does not reach: `eval "$(styxy env)"`
    Env {
        /// The worktree or project directory (default: this one's)
        #[arg(long, value_name = "DIR")]
        scope: Option<std::path::PathBuf>,
    },

    /// Answer a Claude Code hook event (the event's JSON on stdin)
    #[command(
        subcommand,
        after_help = "\
Claude Code runs these (see `styxy hooks install`). Each reads one event on
stdin and answers with Claude Code's hook protocol on stdout, always with
exit status 0: when the allocator cannot be reached or anything goes wrong it
answers nothing, so a broken styxy never stands in the agent's way."
    )]
    Hook(HookCommand),

    /// Install, remove or show styxy's hooks in Claude Code's settings
    #[command(subcommand)]
    Hooks(HooksCommand),

    /// Print a shell completion script
    Completions { shell: Shell },

    /// Print the man page (roff)
    #[command(hide = true)]
    Man,
}

#[derive(Debug, Args)]
pub struct AllocateArgs {
    /// Service type (e.g. dev, api, database); an unknown type gets a range of its own
    #[arg(short, long = "service", value_name = "TYPE")]
    pub service_type: String,
    /// Port to try first
    #[arg(short, long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Service name (shown in listings; singleton and sticky ports key on it)
    #[arg(short, long)]
    pub name: Option<String>,
    /// Project directory (default: the current directory)
    #[arg(long, value_name = "PATH")]
    pub project: Option<PathBuf>,
    /// Owner process (default: the process that ran styxy)
    #[arg(long)]
    pub pid: Option<u32>,
    /// How long the port stays reserved (default: process, or session when $STYXY_SESSION is set)
    #[arg(long, value_enum)]
    pub lease: Option<Lease>,
    /// Session (instance) id for a session lease (default: $STYXY_SESSION)
    #[arg(long, value_name = "ID")]
    pub instance: Option<String>,
    /// Show which port would be given, reserve nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Service type (default: dev, or the type whose range holds -p)
    #[arg(short, long = "service", value_name = "TYPE")]
    pub service_type: Option<String>,
    /// Service name (default: the command's name)
    #[arg(short, long)]
    pub name: Option<String>,
    /// Port to try first
    #[arg(short, long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// How a busy port is moved: the preload library, the seccomp supervisor
    /// (any program, its whole process tree), or auto (the supervisor for Go
    /// and statically linked programs, else the preload)
    #[arg(long, value_enum, default_value_t = Intercept::Auto)]
    pub intercept: Intercept,
    /// The command and its arguments
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Intercept {
    Auto,
    Preload,
    Seccomp,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Show the service types the allocator uses
    Show,
    /// Check the configuration files (runs locally)
    Validate,
    /// Turn the original Styxy's config.json into your config.toml: shows
    /// what it writes and what it leaves out; refuses an invalid file
    Import {
        /// Default: ~/.styxy/config.json
        #[arg(value_name = "PATH")]
        path: Option<std::path::PathBuf>,
        /// Show what would be written; write nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Automatic ranges for unknown service types
    AutoAllocation {
        #[command(subcommand)]
        action: Option<AutoAllocationCommand>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AutoAllocationCommand {
    /// Whether it is on, its settings, and the types it created (default)
    Status,
    /// Turn it on in your config file
    Enable,
    /// Turn it off in your config file
    Disable,
    /// Remove an automatically created type (refused while it has reservations)
    Undo {
        #[arg(value_name = "TYPE")]
        service_type: String,
    },
    /// List the automatically created types
    List,
}

#[derive(Debug, Subcommand)]
pub enum HookCommand {
    /// SessionStart: register the session, load the interposer into its
    /// Bash commands, and tell Claude which ports are whose
    SessionStart,
    /// PreToolUse (Bash): advise on a server start whose port is taken, ask
    /// before a kill of another session's server
    PreToolUse {
        /// Rewrite a server start whose port is taken onto a free port
        /// (`updatedInput`, for the user to confirm)
        #[arg(long)]
        rewrite: bool,
    },
    /// PostToolUse (Bash): explain a port conflict in the output
    PostToolUse,
    /// PostToolUseFailure (Bash): explain a port conflict in the failure
    PostToolUseFailure,
    /// SessionEnd: end the session and free its session reservations
    SessionEnd,
}

/// Which Claude Code settings file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookScope {
    /// ~/.claude/settings.json
    User,
    /// .claude/settings.json of the current directory
    Project,
}

#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct ScopeArgs {
    /// ~/.claude/settings.json (the default)
    #[arg(long)]
    pub user: bool,
    /// .claude/settings.json of the current directory
    #[arg(long)]
    pub project: bool,
}

impl ScopeArgs {
    /// The file to change: the user's unless --project.
    pub fn scope(&self) -> HookScope {
        if self.project { HookScope::Project } else { HookScope::User }
    }

    /// The files to look at: the one named, else both.
    pub fn scopes(&self) -> Vec<HookScope> {
        match (self.user, self.project) {
            (false, false) => vec![HookScope::User, HookScope::Project],
            _ => vec![self.scope()],
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum HooksCommand {
    /// Add styxy's hooks (SessionStart, PreToolUse, PostToolUse,
    /// PostToolUseFailure, SessionEnd) to Claude Code's settings
    #[command(after_help = "\
Every other setting and hook is kept; the previous file is copied aside and
the new one replaces it atomically. Running it again changes nothing. A file
that is not valid JSON is refused and left as it is.")]
    Install {
        #[command(flatten)]
        scope: ScopeArgs,
        /// Let PreToolUse rewrite a server start whose port is taken onto a
        /// free port (you confirm the rewritten command)
        #[arg(long)]
        rewrite: bool,
    },
    /// Remove exactly the hooks `install` added
    Uninstall {
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Show which of styxy's hooks are installed (both files by default)
    Status {
        #[command(flatten)]
        scope: ScopeArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Mode, pid, uptime and counts of the running allocator
    Status,
    /// Stop the user allocator (system mode: use systemctl)
    Stop,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
