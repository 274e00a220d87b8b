//! The allocator's shared state: the engine behind one mutex (the single
//! writer), tokens, metrics, activity tracking for idle exit, the pidfd
//! watches that free a port the moment its holder exits, and the way to the
//! observer (the bus in system mode, the library in user mode).

use std::collections::HashSet;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use styxy_bus::daemon::Activity;
use styxy_bus::wire::ListenerRecord;
use styxy_bus::{AllocatorBackend, Observer1Proxy};
use styxy_core::config::Config;
use styxy_core::engine::Engine;
use styxy_core::health::{self, Listening, Released, Report};
use styxy_core::host::RealHost;
use styxy_core::recovery::Outcome;
use styxy_observe::process;
use styxy_observe::sockdiag::SockDiag;
use styxy_observe::{ObserveError, Observer};
use styxy_proto::api::{
    AllocateRequest, AllocateResponse, AllocationView, ErrorCode, Holder, Listener, ReleaseResponse,
};
use styxy_proto::caller::Caller;
use styxy_proto::error::ApiError;
use styxy_proto::model::{Allocation, LeaseKind, now_millis};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

use crate::auth::Tokens;
use crate::metrics::Metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    User,
    System,
}

/// How long the allocator waits for the observer (activation included)
/// before answering from its own, unprivileged view.
const OBSERVER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an allocation's answer waits to name who listens on the port it
/// moved from. A preloaded program gives up on the allocator after 90 ms,
/// and an observer activated by this very question can take longer: the
/// answer then goes out in time, without the name.
const HOLDER_LOOKUP_BUDGET: Duration = Duration::from_millis(20);

pub struct App {
    engine: Mutex<Engine>,
    /// In-process observer: user mode, or when the bus is unavailable.
    observer: Mutex<Option<Observer>>,
    /// The observer service on the system bus (system mode).
    observer_bus: OnceLock<Observer1Proxy<'static>>,
    /// Becomes true once joining the bus succeeded or failed (system mode).
    bus_settled: tokio::sync::watch::Sender<bool>,
    pub tokens: Tokens,
    pub metrics: Metrics,
    pub mode: Mode,
    pub socket: PathBuf,
    pub started: Instant,
    /// HTTP requests and bus calls in flight, for the idle exit.
    pub activity: Activity,
    connections: AtomicUsize,
    /// The state's generation after each commit that added or removed
    /// allocations (AllocationsChanged on the bus).
    allocations_changed: watch::Sender<u64>,
    watched: Mutex<HashSet<u32>>,
    stop: tokio::sync::Notify,
    /// This app, for watching the owners the engine hands out while locked.
    me: std::sync::Weak<App>,
}

/// The engine, locked. Dropping it publishes a change of the allocation
/// set and watches the processes that adopted a reservation, whichever
/// request made them.
pub struct EngineGuard<'a> {
    engine: MutexGuard<'a, Engine>,
    edits: u64,
    app: &'a App,
}

impl Deref for EngineGuard<'_> {
    type Target = Engine;

    fn deref(&self) -> &Engine {
        &self.engine
    }
}

impl DerefMut for EngineGuard<'_> {
    fn deref_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }
}

impl Drop for EngineGuard<'_> {
    fn drop(&mut self) {
        if self.engine.allocation_edits() != self.edits {
            self.app.allocations_changed.send_replace(self.engine.state().generation);
        }
        let adopted = self.engine.take_adopted();
        if let Some(app) = self.app.me.upgrade().filter(|_| !adopted.is_empty()) {
            for pid in adopted {
                app.watch_owner(pid);
            }
        }
    }
}

impl App {
    pub fn new(engine: Engine, tokens: Tokens, mode: Mode, socket: PathBuf) -> Arc<App> {
        let generation = engine.state().generation;
        Arc::new_cyclic(|me| App {
            engine: Mutex::new(engine),
            observer: Mutex::new(None),
            observer_bus: OnceLock::new(),
            bus_settled: tokio::sync::watch::Sender::new(false),
            tokens,
            metrics: Metrics::default(),
            mode,
            socket,
            started: Instant::now(),
            activity: Activity::default(),
            connections: AtomicUsize::new(0),
            allocations_changed: watch::Sender::new(generation),
            watched: Mutex::new(HashSet::new()),
            stop: tokio::sync::Notify::new(),
            me: me.clone(),
        })
    }

    /// The engine; a poisoned lock is recovered because every engine
    /// operation commits or leaves the state untouched.
    pub fn engine(&self) -> EngineGuard<'_> {
        let engine = self.engine.lock().unwrap_or_else(|e| e.into_inner());
        let edits = engine.allocation_edits();
        EngineGuard { engine, edits, app: self }
    }

    /// The generation after each change of the allocation set.
    pub fn allocation_changes(&self) -> watch::Receiver<u64> {
        self.allocations_changed.subscribe()
    }

    /// From now on, ask the observer service on the bus.
    pub fn use_observer_bus(&self, proxy: Observer1Proxy<'static>) {
        let _ = self.observer_bus.set(proxy);
    }

    /// The bus join finished, one way or the other.
    pub fn bus_settled(&self) {
        self.bus_settled.send_replace(true);
    }

    /// The observer service, once the bus join has settled: HTTP is served
    /// before the bus is joined, but an early question about other users'
    /// sockets must still reach the privileged observer.
    async fn observer_service(&self) -> Option<&Observer1Proxy<'static>> {
        if self.mode == Mode::System {
            let mut settled = self.bus_settled.subscribe();
            let _ = tokio::time::timeout(OBSERVER_TIMEOUT, settled.wait_for(|s| *s)).await;
        }
        self.observer_bus.get()
    }

    /// Every listener on the machine, as `who` may see it.
    pub async fn observe_all(&self, who: &Caller) -> Result<Vec<Listener>, ApiError> {
        match self.observer_service().await {
            Some(bus) => self.observe_over_bus(who, bus.listeners(), |o| o.listeners()).await,
            None => self.observe_here(who, |o| o.listeners()),
        }
    }

    /// The listeners on one port, as `who` may see them.
    pub async fn observe_port(&self, port: u16, who: &Caller) -> Result<Vec<Listener>, ApiError> {
        match self.observer_service().await {
            Some(bus) => self.observe_over_bus(who, bus.observe(port), |o| o.listeners_on(port)).await,
            None => self.observe_here(who, |o| o.listeners_on(port)),
        }
    }

    /// Asks the observer service; when it cannot answer, says so in the log
    /// and answers from this process's own view (without other users'
    /// processes: the allocator has no privileges).
    async fn observe_over_bus(
        &self,
        who: &Caller,
        call: impl Future<Output = Result<Vec<ListenerRecord>, styxy_bus::BusError>>,
        fallback: impl FnOnce(&mut Observer) -> Result<Vec<Listener>, ObserveError>,
    ) -> Result<Vec<Listener>, ApiError> {
        let failure = match tokio::time::timeout(OBSERVER_TIMEOUT, call).await {
            Ok(Ok(records)) => {
                let mut listeners: Vec<Listener> = records.into_iter().map(Listener::from).collect();
                for l in &mut listeners {
                    Observer::redact(l, who.uid);
                }
                return Ok(listeners);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {OBSERVER_TIMEOUT:?}"),
        };
        tracing::warn!("the observer service did not answer ({failure}); answering from the allocator's own view");
        self.observe_here(who, fallback)
    }

    fn observe_here(
        &self,
        who: &Caller,
        query: impl FnOnce(&mut Observer) -> Result<Vec<Listener>, ObserveError>,
    ) -> Result<Vec<Listener>, ApiError> {
        let unavailable =
            |e: ObserveError| ApiError::new(ErrorCode::Unavailable, format!("cannot list the kernel's sockets: {e}"));
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

    /// Allocates for `who` (HTTP and bus alike): watches a process owner,
    /// names the holder of a busy requested port, counts and logs.
    pub async fn allocate(self: &Arc<Self>, who: &Caller, req: &AllocateRequest) -> Result<AllocateResponse, ApiError> {
        let (mut r, watch) = {
            let mut engine = self.engine();
            let r = engine.allocate(req, who)?;
            let watch = (!r.dry_run && !r.existing)
                .then(|| engine.state().allocations.get(&r.port))
                .flatten()
                .filter(|a| a.lease == LeaseKind::Process)
                .and_then(|a| a.owner.pid);
            (r, watch)
        };
        if let Some(pid) = watch {
            self.watch_owner(pid);
        }
        if let Some(port) = r.requested_port {
            r.requested_port_holder = self.busy_port_holder(port, who, r.requested_port_holder.take()).await;
        }
        if !r.dry_run && !r.existing {
            self.metrics.allocations.fetch_add(1, Ordering::Relaxed);
            if r.auto_allocated {
                self.metrics.auto_allocations.fetch_add(1, Ordering::Relaxed);
            }
            tracing::info!(
                port = r.port,
                lock_id = %r.lock_id,
                service_type = %r.service_type,
                service_name = %r.service_name,
                uid = who.uid,
                pid = ?req.pid.or(who.pid),
                "allocated port {} for {} ({})", r.port, r.service_type, r.service_name
            );
        }
        Ok(r)
    }

    /// Who keeps a requested port busy: the process listening there, unless
    /// styxy allocated the port and only that allocation's user listens (its
    /// own server, or nobody: a reservation); then `allocated`. The kernel is
    /// asked first, cheaply, so the observer is asked only about strangers,
    /// and within [`HOLDER_LOOKUP_BUDGET`]; when it cannot answer in time,
    /// the kernel's word still names the stranger's user.
    async fn busy_port_holder(&self, port: u16, who: &Caller, allocated: Option<Holder>) -> Option<Holder> {
        let stranger = |uid: u32| allocated.as_ref().is_none_or(|a| a.uid != uid);
        let mut stranger_uid = None;
        if allocated.is_some() {
            let listeners = SockDiag::open().and_then(|mut diag| diag.tcp_listeners_on(port));
            match listeners.map(|ls| ls.iter().map(|l| l.uid).find(|&uid| stranger(uid))) {
                Ok(None) => return allocated,
                Ok(uid) => stranger_uid = uid,
                Err(_) => {}
            }
        }
        let lookup = tokio::time::timeout(HOLDER_LOOKUP_BUDGET, self.observe_port(port, who)).await;
        let listener = lookup.ok().and_then(Result::ok).and_then(|ls| ls.into_iter().find(|l| stranger(l.uid)));
        let by_uid = stranger_uid.map(|uid| Holder { uid, user: process::user_name(uid), ..Holder::default() });
        listener.map(holder_from_listener).or(by_uid).or(allocated)
    }

    pub fn release(&self, who: &Caller, lock_id: &str) -> Result<ReleaseResponse, ApiError> {
        let r = self.engine().release(lock_id, who)?;
        self.metrics.releases.fetch_add(1, Ordering::Relaxed);
        tracing::info!(port = r.port, lock_id = %r.lock_id, uid = who.uid, "released port {}", r.port);
        Ok(r)
    }

    /// Hands the hand-offs that `report` finds listened to (styxy-health,
    /// system mode) to their listeners, which the observer service names:
    /// this unprivileged allocator sees only the sockets' uids. Each is then
    /// watched like any owner. The engine checks the pid runs as the
    /// hand-off's uid; a hand-off left unadopted stays held while its uid
    /// listens ([`Engine::holder_alive`]).
    async fn adopt_observed_listeners(&self, report: &Report) {
        for f in report.findings.iter().filter(|f| f.failure.is_none()) {
            let awaiting =
                self.engine().state().allocations.get(&f.port).filter(|a| a.handoff_until.is_some()).cloned();
            let Some(handoff) = awaiting else { continue };
            // Seen as its owner sees them: its own listeners' pids show.
            let viewer = Caller { uid: handoff.owner.uid, pid: None, start_time: None };
            let listeners = match self.observe_port(f.port, &viewer).await {
                Ok(listeners) => listeners,
                Err(e) => {
                    tracing::warn!(port = f.port, "cannot name the listener that claims port {}: {e}", f.port);
                    continue;
                }
            };
            let pids = listeners.into_iter().filter(|l| l.uid == handoff.owner.uid).filter_map(|l| l.pid);
            let mut engine = self.engine();
            for pid in pids {
                match engine.adopt(f.port, pid) {
                    Ok(true) => {
                        tracing::info!(port = f.port, lock_id = %handoff.lock_id, pid, "port {} adopted by pid {pid}", f.port);
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => tracing::error!(port = f.port, "recording the adoption of port {}: {e}", f.port),
                }
            }
        }
    }

    /// Records a health report (from styxy-health over the bus, or from the
    /// in-process pass in user mode).
    pub fn record_health(&self, report: &Report) -> Result<Vec<Released>, ApiError> {
        let released = self.engine().apply_health(report)?;
        health::log_released(&released);
        self.metrics.reclaimed.fetch_add(released.len() as u64, Ordering::Relaxed);
        Ok(released)
    }

    /// One health pass in this process (user mode, where no timer runs
    /// styxy-health). The state is copied so requests do not wait for it.
    pub fn health_pass(&self) {
        let state = self.engine().state().clone();
        let listening =
            Listening::dump().map_err(|e| tracing::warn!("health pass without the listening check: {e}")).ok();
        let report = health::check(&state, now_millis(), &RealHost, listening.as_ref());
        if report.is_empty() {
            return;
        }
        report.log();
        if let Err(e) = self.record_health(&report) {
            tracing::error!("recording the health pass: {e}");
        }
    }

    /// Re-reads the configuration files and the state (after recovery
    /// changed it), repairing what it finds.
    pub fn reload(&self) -> Result<Outcome, ApiError> {
        let base = Config::load().unwrap_or_else(|e| {
            tracing::error!("configuration rejected, using built-in service types: {e}");
            Config::builtin()
        });
        let outcome = self.engine().reload(base)?;
        for repair in outcome.repairs() {
            tracing::warn!(%repair, "state repaired on reload");
        }
        tracing::info!(verdict = outcome.verdict().as_str(), "state and configuration reloaded");
        Ok(outcome)
    }

    /// Recovery's request: repair the state in memory, rewrite damaged files.
    pub fn repair(&self) -> Result<Outcome, ApiError> {
        let outcome = self.engine().recover()?;
        for repair in outcome.repairs() {
            tracing::warn!(%repair, "state repaired at recovery's request");
        }
        Ok(outcome)
    }

    pub fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
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
        // SAFETY: the pidfd is fresh and owned by the AsyncFd, so it stays open as long as it is registered.
        let watch = process::pidfd_open(pid).and_then(|fd| unsafe { AsyncFd::register(fd) }.ok());
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

fn holder_from_listener(l: Listener) -> Holder {
    Holder {
        uid: l.uid,
        user: l.user,
        pid: l.pid,
        process: l.process,
        service_type: l.service_type,
        service_name: None,
        project: l.project,
        instance_id: None,
    }
}

/// The engine on the bus (org.styxy.Allocator1).
pub struct OnBus(pub Arc<App>);

impl AllocatorBackend for OnBus {
    async fn allocate(&self, caller: Caller, request: AllocateRequest) -> Result<AllocateResponse, ApiError> {
        self.0.allocate(&caller, &request).await
    }

    fn release(&self, caller: &Caller, lock_id: &str) -> Result<ReleaseResponse, ApiError> {
        self.0.release(caller, lock_id)
    }

    fn list(&self, caller: &Caller) -> Result<Vec<AllocationView>, ApiError> {
        self.0.engine().list(caller)
    }

    fn generation(&self) -> u64 {
        self.0.engine().state().generation
    }

    async fn report_health(&self, report: &Report) -> Result<Vec<Released>, ApiError> {
        self.0.adopt_observed_listeners(report).await;
        self.0.record_health(report)
    }

    fn reload(&self) -> Result<Outcome, ApiError> {
        self.0.reload()
    }

    fn repair(&self) -> Result<Outcome, ApiError> {
        self.0.repair()
    }

    fn activity(&self) -> &Activity {
        &self.0.activity
    }
}
