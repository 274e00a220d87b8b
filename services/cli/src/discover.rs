//! Finding the allocator: the first socket that accepts a connection, and in
//! user mode starting `styxy-allocator --user` when none does.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use styxy_proto::client::{self, Client};
use styxy_proto::{dirs, paths};

/// Names the allocator executable explicitly.
pub const ENV_ALLOCATOR: &str = "STYXY_ALLOCATOR";
const ALLOCATOR_NAME: &str = "styxy-allocator";
const INSTALLED_ALLOCATOR: &str = "/usr/libexec/styxy/styxy-allocator";
/// How long a freshly started allocator gets to answer.
const START_WAIT: Duration = Duration::from_secs(3);
const POLL_EVERY: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
pub enum Unreachable {
    #[error("no allocator answers (tried {tried}) and starting one is disabled (--no-autostart or STYXY_NO_AUTOSTART)")]
    AutostartDisabled { tried: String },
    #[error(
        "no allocator answers (tried {tried}) and {ALLOCATOR_NAME} was not found (looked at {looked}; set {ENV_ALLOCATOR})"
    )]
    AllocatorNotFound { tried: String, looked: String },
    #[error("cannot open the allocator log {}: {source}", path.display())]
    Log { path: PathBuf, source: io::Error },
    #[error("cannot start {}: {source}", allocator.display())]
    Spawn { allocator: PathBuf, source: io::Error },
    /// A directory another user could control: nothing is started there.
    #[error(transparent)]
    UnsafeDir(#[from] dirs::UnsafeDir),
    /// Something answers on the socket, but as another user.
    #[error("cannot use {}: {source}", socket.display())]
    Untrusted { socket: PathBuf, source: io::Error },
    #[error("started {} but nothing answered on {} within {}s; see {}", allocator.display(), socket.display(), START_WAIT.as_secs(), log.display())]
    NoAnswer { allocator: PathBuf, socket: PathBuf, log: PathBuf },
}

/// How to find the allocator.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// `--socket`: only this socket (and autostart there).
    pub socket: Option<PathBuf>,
    pub autostart: bool,
    pub timeout: Duration,
}

impl Discovery {
    fn candidates(&self) -> Vec<PathBuf> {
        match &self.socket {
            Some(s) => vec![s.clone()],
            None => paths::socket_candidates(),
        }
    }

    /// The first candidate socket that accepts a connection from a server
    /// we trust (ourselves, root, the system service).
    pub fn find(&self) -> Option<Client> {
        self.probe().ok().flatten()
    }

    /// Like `find`; a socket where another user's server answers (and no
    /// trusted one answers before it) is an error naming it.
    fn probe(&self) -> Result<Option<Client>, Unreachable> {
        let mut untrusted = None;
        for socket in self.candidates() {
            match client::connect(&socket, self.timeout) {
                Ok(stream) => return Ok(Some(Client::connected(socket, self.timeout, stream))),
                // The client's own refusal, not the kernel's EACCES.
                Err(source) if client::is_untrusted_server(&source) && untrusted.is_none() => {
                    untrusted = Some(Unreachable::Untrusted { socket, source });
                }
                Err(_) => {}
            }
        }
        untrusted.map_or(Ok(None), Err)
    }

    /// Like [`find`](Self::find), starting a user allocator when none answers.
    pub fn connect(&self) -> Result<Client, Unreachable> {
        if let Some(client) = self.probe()? {
            return Ok(client);
        }
        let tried = join_paths(&self.candidates());
        if !self.autostart {
            return Err(Unreachable::AutostartDisabled { tried });
        }
        let socket = self.autostart_socket();
        let allocator = self.locate_allocator()?;
        let log = start_allocator(&allocator, &socket)?;
        // Several clients may start an allocator at once; the allocator's lock
        // on its state dir lets one win, so waiting for the socket is enough.
        let deadline = Instant::now() + START_WAIT;
        loop {
            if let Ok(stream) = client::connect(&socket, self.timeout) {
                return Ok(Client::connected(socket, self.timeout, stream));
            }
            if Instant::now() >= deadline {
                return Err(Unreachable::NoAnswer { allocator, socket, log });
            }
            std::thread::sleep(POLL_EVERY);
        }
    }

    /// Starts a user allocator and returns without waiting for it to answer
    /// (for callers on a tight budget: the next call finds it).
    pub fn start_in_background(&self) -> Result<(), Unreachable> {
        start_allocator(&self.locate_allocator()?, &self.autostart_socket()).map(drop)
    }

    fn locate_allocator(&self) -> Result<PathBuf, Unreachable> {
        find_allocator().map_err(|looked| Unreachable::AllocatorNotFound {
            tried: join_paths(&self.candidates()),
            looked: join_paths(&looked),
        })
    }

    /// Where a started allocator listens: `--socket`, else `$STYXY_SOCKET`,
    /// else the user socket.
    fn autostart_socket(&self) -> PathBuf {
        self.socket
            .clone()
            .or_else(|| std::env::var_os(paths::ENV_SOCKET).filter(|v| !v.is_empty()).map(PathBuf::from))
            .unwrap_or_else(paths::user_socket)
    }
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// True for a regular file with an execute bit.
pub fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `$STYXY_ALLOCATOR`, then beside this executable (a build tree), then the
/// installed location, then `$PATH`. On failure, the places looked at.
pub fn find_allocator() -> Result<PathBuf, Vec<PathBuf>> {
    if let Some(explicit) = std::env::var_os(ENV_ALLOCATOR).filter(|v| !v.is_empty()) {
        let explicit = PathBuf::from(explicit);
        return if is_executable(&explicit) { Ok(explicit) } else { Err(vec![explicit]) };
    }
    let mut looked = Vec::new();
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        looked.push(dir.join(ALLOCATOR_NAME));
    }
    looked.push(PathBuf::from(INSTALLED_ALLOCATOR));
    if let Some(found) = looked.iter().find(|p| is_executable(p)) {
        return Ok(found.clone());
    }
    match search_path(ALLOCATOR_NAME) {
        Some(found) => Ok(found),
        None => {
            looked.push(PathBuf::from(format!("$PATH/{ALLOCATOR_NAME}")));
            Err(looked)
        }
    }
}

/// The first executable `name` in `$PATH`.
pub fn search_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Starts `allocator --user --socket SOCKET [--state-dir DIR]` detached, its
/// output appended to `allocator.log` in the user state dir. Returns the log.
fn start_allocator(allocator: &Path, socket: &Path) -> Result<PathBuf, Unreachable> {
    let state_dir = paths::user_state_dir();
    let log_path = state_dir.join("allocator.log");
    let log_error = |source| Unreachable::Log { path: log_path.clone(), source };
    dirs::ensure_dir(&state_dir, dirs::Policy::Private)?;
    if let Some(runtime_dir) = socket.parent() {
        dirs::ensure_dir(runtime_dir, dirs::Policy::Private)?;
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&log_path)
        .map_err(log_error)?;
    let log_copy = log.try_clone().map_err(log_error)?;

    let mut command = Command::new(allocator);
    command.arg("--user").arg("--socket").arg(socket);
    if let Some(dir) = std::env::var_os(paths::ENV_STATE_DIR).filter(|v| !v.is_empty()) {
        command.arg("--state-dir").arg(dir);
    }
    command
        .current_dir("/")
        // The allocator must not run under the bind() interposer (it would
        // ask itself for ports).
        .env_remove("LD_PRELOAD")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_copy);
    // SAFETY: only async-signal-safe calls (setsid, fork, _exit) run between
    // fork and exec.
    unsafe {
        command.pre_exec(|| {
            // A session of its own: no controlling terminal, no SIGHUP or ^C
            // from the terminal that started it.
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            // Fork once more and let the middle process exit, so the allocator
            // is nobody's child here: `styxy run` execs the user's command in
            // this very process, which must not inherit a child.
            match libc::fork() {
                -1 => return Err(io::Error::last_os_error()),
                0 => {}
                _ => libc::_exit(0),
            }
            // Descriptors the caller inherited without close-on-exec (a
            // pipe a script reads our output from) must not stay open for
            // the allocator's lifetime. Marking instead of closing keeps
            // std's exec-error pipe working; old kernels lack the call.
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
            Ok(())
        });
    }
    let spawn_error = |source| Unreachable::Spawn { allocator: allocator.to_path_buf(), source };
    let mut middle = command.spawn().map_err(spawn_error)?;
    middle.wait().map_err(spawn_error)?;
    Ok(log_path)
}
