//! The binary's side: argument parsing and wiring, everything that must
//! happen before the runtime starts threads (systemd hands over sockets and
//! watchdog settings through the environment, which the helpers clear).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use listenfd::ListenFd;
use styxy_allocator::Listeners;
use styxy_allocator::app::{App, Mode};
use styxy_allocator::auth::Tokens;
use styxy_allocator::lifecycle;
use styxy_bus::daemon::Notifier;
use styxy_core::config::Config;
use styxy_core::engine::Engine;
use styxy_core::host::RealHost;
use styxy_core::portmap::PortMap;
use styxy_core::store::{Store, StoreError};
use styxy_proto::{dirs, paths};

#[derive(Parser, Debug)]
#[command(name = "styxy-allocator", version, about = "Styxy's port allocator (HTTP API)")]
struct Args {
    /// User mode: per-user socket and state, no TCP unless --tcp or the
    /// configuration's api.tcp gives an address.
    #[arg(long)]
    user: bool,
    /// Unix socket path (default: /run/styxy/api.sock, or with --user
    /// $XDG_RUNTIME_DIR/styxy/api.sock).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// State directory (default: by mode).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Also serve token-authenticated HTTP on this TCP address (system mode
    /// default: 127.0.0.1:9876).
    #[arg(long, value_name = "ADDR")]
    tcp: Option<String>,
    /// Do not serve TCP even in system mode.
    #[arg(long, conflicts_with = "tcp")]
    no_tcp: bool,
    /// Exit after this many idle seconds (0: never). Default from config.
    #[arg(long, value_name = "SECS")]
    idle_timeout: Option<u64>,
}

/// What systemd handed over through the environment.
struct Systemd {
    fds: ListenFd,
    listen_fds: usize,
    watchdog: Option<Duration>,
    notifier: Notifier,
}

impl Systemd {
    fn from_env() -> Systemd {
        let fds = ListenFd::from_env();
        let mut usec = 0;
        let watchdog = sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec));
        Systemd { listen_fds: fds.len(), fds, watchdog, notifier: Notifier::from_env() }
    }

    /// Sockets passed by systemd (the .socket unit's Unix and TCP streams).
    fn take_listeners(&mut self) -> Result<Listeners> {
        let fds = &mut self.fds;
        let mut out = Listeners { unix: Vec::new(), tcp: Vec::new() };
        for i in 0..self.listen_fds {
            if let Ok(Some(l)) = fds.take_unix_listener(i) {
                l.set_nonblocking(true)?;
                out.unix.push(l);
            } else if let Ok(Some(l)) = fds.take_tcp_listener(i) {
                l.set_nonblocking(true)?;
                out.tcp.push(l);
            }
        }
        Ok(out)
    }
}

/// Longest a stepping-down allocator keeps the state lock: requests in
/// flight (up to 1 s), then the final snapshot.
const STEP_DOWN_WAIT: Duration = Duration::from_secs(5);

pub fn run() -> Result<ExitCode> {
    let args = Args::parse();
    keep_memory_small();
    // Read what systemd passed before any thread exists.
    let mut systemd = Systemd::from_env();
    styxy_bus::logging::init("styxy-allocator", None);

    let mode = if args.user { Mode::User } else { Mode::System };
    let state_dir = args.state_dir.clone().unwrap_or_else(|| match mode {
        Mode::User => paths::user_state_dir(),
        Mode::System => paths::system_state_dir(),
    });
    let socket = args.socket.clone().unwrap_or_else(|| match mode {
        Mode::User => paths::user_socket(),
        Mode::System => paths::system_socket(),
    });

    // In system mode we were started because a request waits (socket or
    // D-Bus activation); an allocator on its way out (idle exit) still holds
    // the lock for a moment, so wait for it rather than leave the request
    // unanswered.
    // Nothing another user made is used: in user mode the directories are
    // ours alone (0700), in system mode ours or the service user's.
    let policy = match mode {
        Mode::User => dirs::Policy::Private,
        Mode::System => dirs::Policy::Service,
    };
    dirs::ensure_dir(&state_dir, policy)?;
    if let Some(runtime_dir) = socket.parent() {
        dirs::ensure_dir(runtime_dir, policy)?;
    }
    let wait = match mode {
        Mode::System => STEP_DOWN_WAIT,
        Mode::User => Duration::ZERO,
    };
    let (store, report) = match Store::open_wait(&state_dir, wait) {
        Ok(opened) => opened,
        Err(StoreError::Locked { path }) if systemd.listen_fds == 0 => {
            // Another allocator owns this state: it serves the socket too.
            tracing::info!(path = %path.display(), "another allocator holds the state lock; exiting");
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e).context("opening the state store"),
    };
    log_open_report(&report);

    let config = Config::load().unwrap_or_else(|e| {
        tracing::error!("configuration rejected, using built-in service types: {e}");
        Config::builtin()
    });
    let idle = Duration::from_secs(args.idle_timeout.unwrap_or(config.allocator.idle_timeout_secs));

    let mut listeners = systemd.take_listeners()?;
    // A socket we bound ourselves is ours to remove; systemd's is not.
    let bound_here = listeners.unix.is_empty();
    if bound_here {
        listeners.unix.push(bind_unix(&socket, mode)?);
    }
    let tcp = match (&args.tcp, args.no_tcp, mode) {
        (Some(addr), _, _) => Some(addr.clone()),
        (None, false, Mode::System) if listeners.tcp.is_empty() => Some(paths::TCP_ADDR.to_string()),
        (None, false, Mode::User) if !config.api.tcp.is_empty() => Some(config.api.tcp.clone()),
        _ => None,
    };
    if let Some(addr) = tcp {
        match std::net::TcpListener::bind(&addr) {
            Ok(l) => {
                l.set_nonblocking(true)?;
                listeners.tcp.push(l);
            }
            // A user-mode allocator started on demand serves its socket
            // even when the configured port is taken (another user's
            // allocator, or anything else): `styxy doctor` names the holder.
            Err(e) if args.tcp.is_none() && mode == Mode::User => {
                tracing::error!("not serving TCP {addr} (api.tcp): {e}; the Unix socket is served");
            }
            Err(e) => return Err(e).with_context(|| format!("binding TCP {addr}")),
        }
    }
    let map_path = paths::port_map_for(&socket);
    let map = PortMap::create(&map_path, store.state())
        .map_err(|e| {
            tracing::warn!("no port map for the preload: {e}");
            // An old map would describe allocations that may be gone.
            let _ = std::fs::remove_file(&map_path);
        })
        .ok();
    let tokens = Tokens::load(&state_dir).context("loading API tokens")?;
    let engine = Engine::new(config, store, map, Box::new(RealHost)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let app = App::new(engine, tokens, mode, socket.clone());

    // One thread: every request takes the engine lock anyway, and cross-
    // thread wake-ups cost more than the work itself (measured).
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    let served = runtime.block_on(lifecycle::run(app.clone(), listeners, systemd.notifier, systemd.watchdog, idle));
    // `app` holds the state lock until it drops, after this: the socket is
    // removed before a successor waiting for the lock can bind its own.
    if bound_here {
        let _ = std::fs::remove_file(&socket);
    }
    served?;
    Ok(ExitCode::SUCCESS)
}

fn bind_unix(path: &std::path::Path, mode: Mode) -> Result<std::os::unix::net::UnixListener> {
    // We hold the state lock, so a socket file left here is a dead one.
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing stale socket {}", path.display()));
        }
        _ => {}
    }
    let l = std::os::unix::net::UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    let perm = if mode == Mode::System { 0o666 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(perm))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Repairs made while opening the state are loud: a user must learn that a
/// corrupt file was set aside, and where.
fn log_open_report(report: &styxy_core::store::OpenReport) {
    for repair in styxy_core::recovery::file_repairs(report) {
        tracing::error!(%repair, "state repaired while opening");
    }
}

/// A long-lived service that exits when idle should not keep peak memory:
/// one malloc arena, and large transient buffers (state snapshots) mapped
/// and unmapped instead of parked in the heap.
fn keep_memory_small() {
    // SAFETY: mallopt only tunes glibc's allocator; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 * 1024);
    }
}
