//! The allocator's shared state: the engine behind one mutex (the single
//! writer), tokens, metrics, activity tracking for idle exit, and the pidfd
//! watches that free a port the moment its holder exits.

use std::collections::HashSet;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use styxy_core::api::{ErrorCode, Listener};
use styxy_core::engine::{Caller, Engine, EngineError};
use styxy_core::model::{Allocation, LeaseKind};
use styxy_core::observe::Observer;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

use crate::auth::Tokens;
use crate::metrics::Metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    User,
    System,
}

pub struct App {
    engine: Mutex<Engine>,
    observer: Mutex<Option<Observer>>,
    pub tokens: Tokens,
    pub metrics: Metrics,
    pub mode: Mode,
    pub socket: PathBuf,
    pub started: Instant,
    last_activity_ms: AtomicU64,
    connections: AtomicUsize,
    stop: Notify,
    watched: Mutex<HashSet<u32>>,
}

impl App {
    pub fn new(engine: Engine, tokens: Tokens, mode: Mode, socket: PathBuf) -> Arc<App> {
        Arc::new(App {
            engine: Mutex::new(engine),
            observer: Mutex::new(None),
            tokens,
            metrics: Metrics::default(),
            mode,
            socket,
            started: Instant::now(),
            last_activity_ms: AtomicU64::new(0),
            connections: AtomicUsize::new(0),
            stop: Notify::new(),
            watched: Mutex::new(HashSet::new()),
        })
    }

    /// The engine; a poisoned lock is recovered because every engine
    /// operation commits or leaves the state untouched.
    pub fn engine(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every listener on the machine, as `who` may see it.
    pub fn observe_all(&self, who: &Caller) -> Result<Vec<Listener>, EngineError> {
        self.observe(who, |o| o.listeners())
    }

    /// The listeners on one port, as `who` may see them.
    pub fn observe_port(&self, port: u16, who: &Caller) -> Result<Vec<Listener>, EngineError> {
        self.observe(who, |o| o.listeners_on(port))
    }

    fn observe(
        &self,
        who: &Caller,
        query: impl FnOnce(&mut Observer) -> Result<Vec<Listener>, styxy_core::observe::ObserveError>,
    ) -> Result<Vec<Listener>, EngineError> {
        let unavailable = |e: styxy_core::observe::ObserveError| {
            EngineError::new(ErrorCode::Unavailable, format!("cannot list the kernel's sockets: {e}"))
        };
        let mut guard = self.observer.lock().unwrap_or_else(|e| e.into_inner());
        let observer = match &mut *guard {
            Some(o) => o,
            slot @ None => slot.insert(Observer::new().map_err(unavailable)?),
        };
        let mut listeners = query(observer).map_err(unavailable)?;
        for l in &mut listeners {
            Observer::redact(l, who.uid);
        }
        Ok(listeners)
    }

    pub fn touch(&self) {
        self.last_activity_ms.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_activity_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    pub fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.touch();
    }

    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
        self.touch();
    }

    pub fn open_connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    pub fn request_stop(&self) {
        self.stop.notify_one();
    }

    pub async fn stop_requested(&self) {
        self.stop.notified().await
    }

    pub fn flush(&self) {
        if let Err(e) = self.engine().flush() {
            tracing::error!("writing the state at shutdown failed: {e}");
        }
    }

    pub fn log_released(&self, freed: &[Allocation], reason: &str) {
        for a in freed {
            self.metrics.reclaimed.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                port = a.port,
                lock_id = %a.lock_id,
                service_type = %a.service_type,
                reason,
                "released port {} ({})", a.port, reason
            );
        }
    }

    /// Watches every process owner already in the state (after a restart).
    pub fn watch_existing_owners(self: &Arc<Self>) {
        let pids: Vec<u32> = self
            .engine()
            .state()
            .allocations
            .values()
            .filter(|a| a.lease == LeaseKind::Process)
            .filter_map(|a| a.owner.pid)
            .collect();
        for pid in pids {
            self.watch_owner(pid);
        }
    }

    /// Frees `pid`'s process-lease ports as soon as it exits (pidfd becomes
    /// readable), not at the next lazy reap.
    pub fn watch_owner(self: &Arc<Self>, pid: u32) {
        if !self.watched.lock().unwrap_or_else(|e| e.into_inner()).insert(pid) {
            return;
        }
        let app = self.clone();
        // SAFETY: pidfd_open returns a new descriptor we own, or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
        // SAFETY: the OwnedFd is fresh and stays open as long as the AsyncFd.
        let watch = (fd >= 0)
            .then(|| unsafe { AsyncFd::register(OwnedFd::from_raw_fd(fd as i32)) }.ok())
            .flatten();
        tokio::spawn(async move {
            if let Some(watch) = watch {
                let _ = watch.readable().await;
            }
            app.watched.lock().unwrap_or_else(|e| e.into_inner()).remove(&pid);
            let freed = app.engine().reap_pid(pid);
            match freed {
                Ok(freed) => app.log_released(&freed, "holder exited"),
                Err(e) => tracing::error!("releasing the ports of exited pid {pid}: {e}"),
            }
        });
    }
}
