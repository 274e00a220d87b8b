//! `styxy run` (reserve a port, then become the command, or supervise it)
//! and `styxy shell-init` (load the bind() interposer into every command of
//! a shell).

use crate::Ctx;
use crate::cli::{Intercept, RunArgs, Shell};
use crate::discover::search_path;
use crate::elf::{self, Linkage};
use crate::output::{Failure, print, warn};
use crate::ports::session_from_env;
use crate::supervise::{self, SpawnError};
use libc::c_int;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use styxy_proto::api::{AllocateRequest, AllocateResponse, ConfigResponse};
use styxy_proto::client::Method;
use styxy_proto::model::{LeaseKind, Source};
use styxy_proto::{paths, scope};
use styxy_relocate::config::RunPort;

/// Names the preload library explicitly.
pub const ENV_PRELOAD_LIB: &str = "STYXY_PRELOAD_LIB";
const PRELOAD_NAME: &str = "libstyxy_preload.so";
const INSTALLED_PRELOAD: &str = "/usr/lib/styxy/libstyxy_preload.so";
/// The type `run` asks for when given neither a type nor a port.
const DEFAULT_RUN_TYPE: &str = "dev";
/// Shell conventions for a command that is missing or not executable.
const EXIT_NOT_FOUND: u8 = 127;
const EXIT_NOT_EXECUTABLE: u8 = 126;

/// The preload library's absolute path: `$STYXY_PRELOAD_LIB`, beside this
/// executable (a build tree), then the installed location. On failure, the
/// places looked at.
pub fn find_preload() -> Result<PathBuf, Vec<PathBuf>> {
    let looked = match std::env::var_os(ENV_PRELOAD_LIB).filter(|v| !v.is_empty()) {
        Some(explicit) => vec![PathBuf::from(explicit)],
        None => {
            let beside_exe = std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.join(PRELOAD_NAME)));
            beside_exe.into_iter().chain([PathBuf::from(INSTALLED_PRELOAD)]).collect()
        }
    };
    // Canonical, because LD_PRELOAD is read in other working directories.
    looked.iter().filter(|p| p.is_file()).find_map(|p| std::fs::canonicalize(p).ok()).ok_or(looked)
}

/// `lib` prepended to an existing LD_PRELOAD (unchanged when already there).
pub fn prepend_preload(lib: &Path, existing: Option<&OsStr>) -> OsString {
    let existing = existing.unwrap_or_default();
    let present =
        existing.as_bytes().split(|b| *b == b':' || *b == b' ').any(|entry| entry == lib.as_os_str().as_bytes());
    if present {
        return existing.to_os_string();
    }
    let mut value = lib.as_os_str().to_os_string();
    if !existing.is_empty() {
        value.push(":");
        value.push(existing);
    }
    value
}

/// The port a service of `args` has in every worktree (docs/design.md,
/// "Scopes"): `--port`, else its type's first preferred port.
fn canonical_port(ctx: &Ctx, args: &RunArgs) -> Option<u16> {
    if args.port.is_some() {
        return args.port;
    }
    let wanted = args.service_type.as_deref().unwrap_or(DEFAULT_RUN_TYPE);
    let config: ConfigResponse = ctx.client().ok()?.get("/config").ok()?;
    config.service_types.get(wanted)?.service_type.preferred_ports.first().copied()
}

/// What `run` hands the command: the port for `PORT` and the reservation
/// behind it, if it kept one.
struct Reserved {
    port: u16,
    lock_id: Option<String>,
}

/// Reserves the command's port. When the preload or the supervisor can
/// move the command (`moves`), `PORT` is the canonical port even where
/// another worktree's server holds it: the move of the bind is recorded for
/// this scope, so one checked-in configuration works in every worktree.
/// Otherwise `PORT` is a free port.
fn reserve(ctx: &Ctx, args: &RunArgs, scope: Option<&Path>, moves: bool) -> Result<Reserved, Failure> {
    let program = Path::new(&args.command[0]);
    let canonical = if moves { canonical_port(ctx, args) } else { args.port };
    let request = AllocateRequest {
        // With only a port, the allocator picks the type whose range holds it.
        service_type: args.service_type.clone().or_else(|| args.port.is_none().then(|| DEFAULT_RUN_TYPE.to_string())),
        service_name: args.name.clone().or_else(|| program.file_name().map(|n| n.to_string_lossy().into_owned())),
        preferred_port: canonical.map(serde_json::Value::from),
        instance_id: session_from_env(),
        project_path: std::env::current_dir().ok().map(|d| d.to_string_lossy().into_owned()),
        dry_run: false,
        // The command is exec'd in this very process (same pid, same start
        // time) or runs as its child while it waits: the lease lasts as
        // long as the command.
        pid: Some(std::process::id()),
        lease: Some(LeaseKind::Process),
        source: Some(Source::Run),
        handoff: false,
        scope: scope.map(|s| s.to_string_lossy().into_owned()),
        listening: false,
        replaces: None,
    };
    let client = ctx.client()?;
    let reply: AllocateResponse = client.call_json(Method::Post, "/allocate", &request)?.decode()?;
    match canonical.filter(|&p| moves && p != reply.port) {
        Some(port) => {
            client.call(Method::Delete, &format!("/allocate/{}", reply.lock_id))?;
            Ok(Reserved { port, lock_id: None })
        }
        None => Ok(Reserved { port: reply.port, lock_id: Some(reply.lock_id) }),
    }
}

/// The program `exec` would run: `name` itself when it has a slash, else the
/// first match in `$PATH`.
fn resolve_program(name: &OsStr) -> Option<PathBuf> {
    if name.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(name));
    }
    search_path(name.to_str()?)
}

/// The command with its scope and reservation in the environment.
fn command_with(args: &RunArgs, ctx: &Ctx, scope: Option<&Path>, reserved: Option<&Reserved>) -> std::process::Command {
    let mut command = std::process::Command::new(&args.command[0]);
    command.args(&args.command[1..]);
    if let Some(scope) = scope {
        // The command's processes keep this scope wherever they chdir to.
        command.env(scope::ENV_SCOPE, scope);
    }
    if let Some(r) = reserved {
        command.env("PORT", r.port.to_string()).env("STYXY_PORT", r.port.to_string());
        match &r.lock_id {
            Some(lock_id) => command.env("STYXY_LOCK_ID", lock_id),
            None => command.env_remove("STYXY_LOCK_ID"),
        };
        if let Some(socket) = &ctx.discovery.socket {
            // The moved command must ask the same allocator.
            command.env(paths::ENV_SOCKET, socket);
        }
    }
    command
}

/// Reserves a port and runs the command: exec'd with the preload, or as a
/// supervised child while this process waits and passes its status on.
/// Returns the status to exit with; the command runs even when no port
/// could be reserved.
pub fn run(ctx: &Ctx, args: &RunArgs) -> u8 {
    let program = &args.command[0];
    let switched_off = preload_switched_off();
    let preload = find_preload().ok().filter(|_| !switched_off);
    let linkage = resolve_program(program).and_then(|p| elf::inspect(&p).ok().flatten());
    let preload_cannot = match linkage {
        Some(Linkage::Static) => Some("is statically linked"),
        Some(Linkage::Go) => Some("is a Go program (Go makes its own system calls)"),
        _ => None,
    };
    let supervise = match args.intercept {
        Intercept::Preload => false,
        Intercept::Seccomp => true,
        Intercept::Auto => preload_cannot.is_some(),
    };
    let supervise = supervise
        && match supervise::unavailable() {
            None => true,
            Some(why) => {
                warn(&format!("{why}: using the preload instead"));
                false
            }
        };
    let scope = scope::current();
    // A program nothing can move gets a free port, not the canonical one
    // it could not be moved off.
    let moves = !switched_off && (supervise || preload.is_some() && preload_cannot.is_none());
    let reserved = match reserve(ctx, args, scope.as_deref(), moves) {
        Ok(r) => Some(r),
        Err(failure) => {
            warn(&format!("running without a reserved port: {failure}"));
            None
        }
    };
    if supervise {
        let mut command = command_with(args, ctx, scope.as_deref(), reserved.as_ref());
        // The supervisor moves the whole tree; a preload a shell put in the
        // environment stays out of its way.
        command.env("STYXY_PRELOAD", "off");
        let run = reserved
            .as_ref()
            .map(|r| RunPort { port: r.port, lock_id: r.lock_id.as_deref().unwrap_or_default().as_bytes().into() });
        match supervise::spawn(&mut command, run) {
            Ok(child) => return wait_for(child),
            Err(SpawnError::Exec(error)) => return cannot_run(program, &error),
            Err(SpawnError::Install(why)) => warn(&format!("{why}: using the preload instead")),
            Err(SpawnError::Setup(error)) => {
                warn(&format!("cannot set up the seccomp supervisor ({error}): using the preload instead"))
            }
        }
    }

    let mut command = command_with(args, ctx, scope.as_deref(), reserved.as_ref());
    if let Some(lib) = &preload {
        command.env("LD_PRELOAD", prepend_preload(lib, std::env::var_os("LD_PRELOAD").as_deref()));
    }
    if let Some(why) = preload_cannot {
        let port_note = match &reserved {
            Some(r) => format!("; it still gets PORT={}", r.port),
            None => String::new(),
        };
        warn(&format!("{} {why}: LD_PRELOAD cannot move its port{port_note}", program.to_string_lossy()));
    }
    let error = command.exec();
    cannot_run(program, &error)
}

fn cannot_run(program: &OsStr, error: &std::io::Error) -> u8 {
    warn(&format!("cannot run {}: {error}", program.to_string_lossy()));
    match error.kind() {
        std::io::ErrorKind::NotFound => EXIT_NOT_FOUND,
        _ => EXIT_NOT_EXECUTABLE,
    }
}

/// The pid of the supervised child, for the forwarding signal handler.
static CHILD_PID: AtomicI32 = AtomicI32::new(0);
/// Signals a process manager or `kill` sends to `styxy run` that the
/// program should get.
const FORWARDED: [c_int; 4] = [libc::SIGTERM, libc::SIGHUP, libc::SIGUSR1, libc::SIGUSR2];

extern "C" fn forward(signal: c_int) {
    let pid = CHILD_PID.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, signal) };
    }
}

/// Waits for the supervised child as a shell waits for a foreground job,
/// and ends the way it ended: its exit status, or the same signal.
fn wait_for(child: std::process::Child) -> u8 {
    let pid = child.id() as libc::pid_t;
    CHILD_PID.store(pid, Ordering::Relaxed);
    // SAFETY: installing handlers; `forward` only calls kill. Ctrl-C and
    // Ctrl-\ reach the whole foreground process group, the program
    // included, so this process only ignores them.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
        for signal in FORWARDED {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = forward as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
    let mut status = 0;
    loop {
        // SAFETY: status is writable.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            break;
        }
        if rc < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return EXIT_NOT_EXECUTABLE;
        }
    }
    if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        // SAFETY: restore the default action and die of the same signal,
        // so the caller (a shell) sees what the program died of.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, signal);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::raise(signal);
        }
        return 128u8.saturating_add(signal as u8);
    }
    libc::WEXITSTATUS(status) as u8
}

/// `STYXY_PRELOAD=off` (or 0, false, no): the preload loads but does nothing.
pub fn preload_switched_off() -> bool {
    std::env::var("STYXY_PRELOAD").is_ok_and(|v| ["off", "0", "false", "no"].iter().any(|w| v.eq_ignore_ascii_case(w)))
}

/// Quotes `text` for a POSIX shell (bash, zsh) when it needs it.
pub fn sh_quote(text: &str) -> String {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._+-@%=".contains(&b)) {
        return text.to_string();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Quotes `text` for fish.
fn fish_quote(text: &str) -> String {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._+-@%=".contains(&b)) {
        return text.to_string();
    }
    format!("'{}'", text.replace('\\', r"\\").replace('\'', r"\'"))
}

/// Whether `lib` can be named in LD_PRELOAD, which ld.so splits on spaces
/// and colons.
pub fn preloadable(lib: &Path) -> bool {
    !lib.to_string_lossy().contains([' ', ':', '\t', '\n'])
}

/// POSIX shell lines (bash, zsh) that prepend `lib` to LD_PRELOAD unless it
/// is there already.
pub fn posix_preload_lines(lib: &Path) -> String {
    let q = sh_quote(&lib.to_string_lossy());
    format!(
        "case \":$LD_PRELOAD:\" in\n  \
           *:{q}:*) ;;\n  \
           *) export LD_PRELOAD={q}\"${{LD_PRELOAD:+:$LD_PRELOAD}}\" ;;\n\
         esac\n"
    )
}

/// What to put in the shell's rc file so every command it starts gets `lib`
/// in LD_PRELOAD (prepended, once).
pub fn shell_init_script(shell: Shell, lib: &Path) -> String {
    let path = lib.to_string_lossy();
    let intro = "# styxy: load the bind() interposer into every command this shell starts, so a\n\
                 # server whose port is busy moves to a free one (it prints one line saying so).\n";
    match shell {
        Shell::Bash | Shell::Zsh => {
            let (rc, name) = if shell == Shell::Bash { ("~/.bashrc", "bash") } else { ("~/.zshrc", "zsh") };
            format!("{intro}# Add to {rc}:  eval \"$(styxy shell-init {name})\"\n{}", posix_preload_lines(lib))
        }
        Shell::Fish => {
            let q = fish_quote(&path);
            format!(
                "{intro}# Add to ~/.config/fish/config.fish:  styxy shell-init fish | source\n\
                 if not contains -- {q} (string split ':' -- \"$LD_PRELOAD\")\n    \
                     set -gx LD_PRELOAD (string join ':' -- {q} (string split --no-empty ':' -- \"$LD_PRELOAD\"))\n\
                 end\n"
            )
        }
    }
}

pub fn shell_init(shell: Shell) -> Result<u8, Failure> {
    let lib = find_preload().map_err(|looked| {
        let looked: Vec<String> = looked.iter().map(|p| p.display().to_string()).collect();
        Failure::local(
            "not_found",
            format!(
                "the preload library {PRELOAD_NAME} was not found (looked at {}); build it or set {ENV_PRELOAD_LIB}",
                looked.join(", ")
            ),
        )
    })?;
    if !preloadable(&lib) {
        return Err(Failure::local(
            "invalid_field",
            format!("{} cannot be preloaded: LD_PRELOAD cannot hold a path with a space or colon", lib.display()),
        ));
    }
    print(&shell_init_script(shell, &lib));
    Ok(crate::cli::EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preload_is_prepended_once() {
        let lib = Path::new("/usr/lib/styxy/libstyxy_preload.so");
        assert_eq!(prepend_preload(lib, None), OsString::from("/usr/lib/styxy/libstyxy_preload.so"));
        assert_eq!(
            prepend_preload(lib, Some(OsStr::new("/opt/other.so"))),
            OsString::from("/usr/lib/styxy/libstyxy_preload.so:/opt/other.so")
        );
        let already = OsStr::new("/opt/other.so /usr/lib/styxy/libstyxy_preload.so");
        assert_eq!(prepend_preload(lib, Some(already)), already.to_os_string());
    }

    #[test]
    fn paths_are_quoted_only_when_needed() {
        assert_eq!(sh_quote("/usr/lib/styxy/libstyxy_preload.so"), "/usr/lib/styxy/libstyxy_preload.so");
        assert_eq!(sh_quote("/home/o'neil/lib.so"), r"'/home/o'\''neil/lib.so'");
        assert_eq!(fish_quote("/home/o'neil/lib.so"), r"'/home/o\'neil/lib.so'");
    }
}
