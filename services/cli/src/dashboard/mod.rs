//! `styxy ui` and `styxy top`: one view of every reserved port and
//! listener ([`model`]), read from the allocator while someone watches
//! ([`Watch`]), served to a browser on loopback ([`serve`]) or drawn in the
//! terminal ([`top`]). The actions (release, stop) are checked here, on the
//! serving side, for both.

pub mod model;
pub mod serve;
pub mod top;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use model::{Event, Liveness, Refusal, Reservation, Session, Snapshot, TypeRange, View};
use serde::Deserialize;
use std::net::IpAddr;
use styxy_observe::process;
use styxy_observe::sockdiag::SockDiag;
use styxy_proto::api::{ObserveAllResponse, ReleaseResponse, StatusResponse};
use styxy_proto::client::{Client, ClientError, Method};
use styxy_proto::model::now_millis;

use crate::discover::Discovery;
use crate::output::Failure;

/// A view younger than this is served again rather than read anew: many
/// open pages cost the allocator one reading per interval.
const FRESH_FOR: Duration = Duration::from_millis(100);
/// A view is built anew from what was read at least this often (an owner
/// may exit, a recent event age out) even when the state and the listeners
/// stay the same.
const REBUILD_EVERY: Duration = Duration::from_secs(2);

#[derive(Deserialize)]
struct AllocationsIn {
    allocations: Vec<Reservation>,
}

#[derive(Deserialize)]
struct ConfigIn {
    service_types: std::collections::BTreeMap<String, TypeRange>,
}

#[derive(Deserialize)]
struct InstancesIn {
    instances: Vec<Session>,
}

/// The listening sockets as the kernel lists them (port, address, inode),
/// sorted; empty when the kernel cannot be asked, which makes every reading
/// ask the allocator.
fn listening_sockets(diag: &mut Option<SockDiag>) -> Vec<(u16, IpAddr, u64)> {
    if diag.is_none() {
        *diag = SockDiag::open().ok();
    }
    let Some(listed) = diag.as_mut().and_then(|d| d.tcp_listeners().ok()) else {
        return Vec::new();
    };
    let mut key: Vec<_> = listed.iter().map(|l| (l.port, l.address, l.inode)).collect();
    key.sort_unstable();
    key
}

/// Process liveness from /proc.
struct ProcLiveness;

impl Liveness for ProcLiveness {
    fn runs(&self, pid: u32, start_time: Option<u64>) -> Option<bool> {
        Some(process::is_alive(pid, start_time))
    }
}

struct Cache {
    client: Option<Client>,
    /// The kernel's listening sockets, read here each time: only when they
    /// (or the state's generation) change is the allocator asked who they are.
    sockets: Option<SockDiag>,
    socket_key: Vec<(u16, IpAddr, u64)>,
    /// The state generation the reservations, types and sessions were read at.
    generation: Option<u64>,
    snapshot: Snapshot,
    recent: Vec<Event>,
    view: Option<(Instant, Arc<View>)>,
}

/// The allocator's state as the viewer may see it, read when asked (never
/// in the background) and at most once per [`FRESH_FOR`]; the moves and
/// releases between readings are kept as recent events.
pub struct Watch {
    discovery: Discovery,
    /// The user this process runs as: whose view it is and whose ports it may act on.
    pub viewer_uid: u32,
    cache: Mutex<Cache>,
}

/// Why an action was not done.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Failed(#[from] Failure),
    #[error("cannot stop pid {pid}: {source}")]
    Signal { pid: u32, source: std::io::Error },
}

impl Watch {
    pub fn new(discovery: Discovery) -> Watch {
        let cache = Cache {
            client: None,
            sockets: None,
            socket_key: Vec::new(),
            generation: None,
            snapshot: Snapshot::default(),
            recent: Vec::new(),
            view: None,
        };
        Watch { discovery, viewer_uid: styxy_proto::paths::uid(), cache: Mutex::new(cache) }
    }

    fn lock(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current view (read anew unless one younger than [`FRESH_FOR`] exists).
    pub fn view(&self) -> Result<Arc<View>, Failure> {
        let mut cache = self.lock();
        if let Some((at, view)) = &cache.view
            && at.elapsed() < FRESH_FOR
        {
            return Ok(view.clone());
        }
        self.read(&mut cache)
    }

    /// A view read now, whatever the cache holds (after an action).
    pub fn fresh_view(&self) -> Result<Arc<View>, Failure> {
        self.read(&mut self.lock())
    }

    fn read(&self, cache: &mut Cache) -> Result<Arc<View>, Failure> {
        let result = self.read_with_client(cache);
        if matches!(result, Err(Failure::Client(ClientError::Connect { .. }))) {
            // A user allocator exits when idle: find (or start) it again once.
            cache.client = None;
            return self.read_with_client(cache);
        }
        result
    }

    fn read_with_client(&self, cache: &mut Cache) -> Result<Arc<View>, Failure> {
        let client = match &cache.client {
            Some(client) => client.clone(),
            None => self.discovery.connect()?,
        };
        cache.client = Some(client.clone());
        let status: StatusResponse = client.get("/status")?;
        let socket_key = listening_sockets(&mut cache.sockets);
        let generation_changed = cache.generation != Some(status.generation);
        let sockets_changed = socket_key != cache.socket_key || cache.view.is_none();
        if let Some((built, view)) = &cache.view
            && !generation_changed
            && !sockets_changed
            && built.elapsed() < REBUILD_EVERY
        {
            return Ok(view.clone());
        }
        let now = now_millis();
        // Reservations, types and sessions change only with the generation.
        if generation_changed {
            let reservations = client.get::<AllocationsIn>("/allocations")?.allocations;
            let types = client.get::<ConfigIn>("/config")?.service_types;
            let sessions = client.get::<InstancesIn>("/instance/list")?.instances;
            if cache.generation.is_some() {
                model::record_changes(&mut cache.recent, &cache.snapshot.reservations, &reservations, now);
            }
            cache.snapshot.reservations = reservations;
            cache.snapshot.types = types;
            cache.snapshot.sessions = sessions;
            cache.generation = Some(status.generation);
        }
        if sockets_changed {
            cache.snapshot.listeners = client.get::<ObserveAllResponse>("/observe/all")?.observations;
            cache.socket_key = socket_key;
        }
        model::forget_old(&mut cache.recent, now);
        let view = model::build(&cache.snapshot, self.viewer_uid, &ProcLiveness, &cache.recent);
        // The same view keeps its Arc: an open stream then has nothing to send.
        let view = match cache.view.take() {
            Some((_, old)) if *old == view => old,
            _ => Arc::new(view),
        };
        cache.view = Some((Instant::now(), view.clone()));
        Ok(view)
    }

    /// Releases the viewer's own reservation `lock_id`. Checked against a
    /// fresh view here, and by the allocator again (it knows the caller's uid).
    pub fn release(&self, lock_id: &str) -> Result<String, ActionError> {
        let view = self.fresh_view()?;
        model::may_release(&view, lock_id)?;
        let client = self.lock().client.clone().ok_or_else(|| Failure::local("unreachable", "no allocator"))?;
        let path = format!("/allocate/{lock_id}");
        let answer: ReleaseResponse =
            client.call(Method::Delete, &path).and_then(|reply| reply.decode()).map_err(Failure::from)?;
        self.fresh_view()?;
        Ok(answer.message)
    }

    /// Sends SIGTERM to the process of the viewer's own reservation
    /// `lock_id`: only a process of the viewer's uid, named by pid and start
    /// time so a reused pid is never signalled.
    pub fn stop(&self, lock_id: &str) -> Result<String, ActionError> {
        let view = self.fresh_view()?;
        let pid = model::may_stop(&view, lock_id)?;
        let port = view.service(lock_id).map(|row| row.port).unwrap_or_default();
        let gone = || ActionError::Refused(Refusal::NoProcess(port));
        let start = process::running_start_time(pid).ok_or_else(gone)?;
        let pidfd = process::pidfd_open(pid).ok_or_else(gone)?;
        // The pidfd pins the process: if its uid and start time are right
        // now, the signal reaches that very process.
        if process::uid_of(pid) != Some(self.viewer_uid) || process::running_start_time(pid) != Some(start) {
            return Err(gone());
        }
        use std::os::fd::AsRawFd;
        // SAFETY: pidfd_send_signal with a pidfd we own and no siginfo.
        let rc = unsafe {
            libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), libc::SIGTERM, std::ptr::null::<u8>(), 0)
        };
        if rc != 0 {
            return Err(ActionError::Signal { pid, source: std::io::Error::last_os_error() });
        }
        Ok(format!("sent SIGTERM to pid {pid} (port {port})"))
    }
}
