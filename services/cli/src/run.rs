//! `styxy run` (reserve a port, then become the command) and `styxy
//! shell-init` (load the bind() interposer into every command of a shell).

use crate::Ctx;
use crate::cli::{RunArgs, Shell};
use crate::discover::search_path;
use crate::elf::{self, Linkage};
use crate::output::{Failure, print, warn};
use crate::ports::session_from_env;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use styxy_proto::api::{AllocateRequest, AllocateResponse, ConfigResponse};
use styxy_proto::client::Method;
use styxy_proto::model::{LeaseKind, Source};
use styxy_proto::{paths, scope};

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

/// Reserves the command's port. When the preload can move the command
/// (`preload`), `PORT` is the canonical port even where another worktree's
/// server holds it: the preload moves the bind and records it for this
/// scope, so one checked-in configuration works in every worktree.
/// Otherwise `PORT` is a free port.
fn reserve(ctx: &Ctx, args: &RunArgs, scope: Option<&Path>, preload: bool) -> Result<Reserved, Failure> {
    let program = Path::new(&args.command[0]);
    let canonical = if preload { canonical_port(ctx, args) } else { args.port };
    let request = AllocateRequest {
        // With only a port, the allocator picks the type whose range holds it.
        service_type: args.service_type.clone().or_else(|| args.port.is_none().then(|| DEFAULT_RUN_TYPE.to_string())),
        service_name: args.name.clone().or_else(|| program.file_name().map(|n| n.to_string_lossy().into_owned())),
        preferred_port: canonical.map(serde_json::Value::from),
        instance_id: session_from_env(),
        project_path: std::env::current_dir().ok().map(|d| d.to_string_lossy().into_owned()),
        dry_run: false,
        // The command is exec'd in this very process: same pid, same start
        // time, so the lease follows it.
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
    match canonical.filter(|&p| preload && p != reply.port) {
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

/// Reserves a port and execs the command. Returns only when the command
/// cannot be executed (the status to exit with); it runs even when no port
/// could be reserved.
pub fn run(ctx: &Ctx, args: &RunArgs) -> u8 {
    let program = &args.command[0];
    let mut command = std::process::Command::new(program);
    command.args(&args.command[1..]);

    let preload = find_preload().ok().filter(|_| !preload_switched_off());
    let linkage = resolve_program(program).and_then(|p| elf::inspect(&p).ok().flatten());
    let why = match linkage {
        Some(Linkage::Static) => Some("is statically linked"),
        Some(Linkage::Go) => Some("is a Go program (Go makes its own system calls)"),
        _ => None,
    };
    let scope = scope::current();
    if let Some(scope) = &scope {
        // The command's processes keep this scope wherever they chdir to.
        command.env(scope::ENV_SCOPE, scope);
    }
    // A program the preload cannot reach gets a free port, not the
    // canonical one it could not be moved off.
    let moves = preload.is_some() && why.is_none();
    let port = match reserve(ctx, args, scope.as_deref(), moves) {
        Ok(r) => {
            command.env("PORT", r.port.to_string()).env("STYXY_PORT", r.port.to_string());
            match &r.lock_id {
                Some(lock_id) => command.env("STYXY_LOCK_ID", lock_id),
                None => command.env_remove("STYXY_LOCK_ID"),
            };
            if let Some(socket) = &ctx.discovery.socket {
                // The preloaded command must ask the same allocator.
                command.env(paths::ENV_SOCKET, socket);
            }
            Some(r.port)
        }
        Err(failure) => {
            warn(&format!("running without a reserved port: {failure}"));
            None
        }
    };
    if let Some(lib) = &preload {
        command.env("LD_PRELOAD", prepend_preload(lib, std::env::var_os("LD_PRELOAD").as_deref()));
    }
    if let Some(why) = why {
        let port_note = match port {
            Some(p) => format!("; it still gets PORT={p}"),
            None => String::new(),
        };
        warn(&format!("{} {why}: LD_PRELOAD cannot move its port{port_note}", program.to_string_lossy()));
    }

    let error = command.exec();
    warn(&format!("cannot run {}: {error}", program.to_string_lossy()));
    match error.kind() {
        std::io::ErrorKind::NotFound => EXIT_NOT_FOUND,
        _ => EXIT_NOT_EXECUTABLE,
    }
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
