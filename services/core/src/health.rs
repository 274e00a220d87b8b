//! The health pass (docs/design.md, "Data flow"): is every allocation's holder still there?
//!
//! [`check`] decides from injected inputs (processes, listening sockets,
//! clock) and writes nothing: in system mode `styxy-health` runs it on a
//! state read without the lock and sends the [`Report`] to the allocator,
//! the single writer, which records it; in user mode the allocator checks
//! and records in-process. A report carries only what needs recording, so a
//! healthy machine costs the allocator nothing (it is not even started).
//!
//! Verdicts:
//! - the owner process exited, or its pid now names another process (same
//!   pid, other start time), or the session's instance expired: the holder
//!   is certainly gone and the port is released at once;
//! - a process owner runs but no socket of its uid listens on the port: it
//!   may be restarting, so the failure is counted in the state and the port
//!   is released after `health.max_failures` consecutive failures. Young
//!   allocations get [`LISTEN_GRACE_MS`] to start listening: a dev server
//!   may build for minutes before it binds. A reservation made with the CLI
//!   (`styxy allocate`) is not checked for a listener: it is held for a
//!   server still to come, as long as its holder (the calling shell, or
//!   `--pid`) runs, whether or not anything listens, as the README says.
//!
//! The listening test looks at the socket's uid, not its process: the
//! health service has no privileges to map other users' sockets to
//! processes, and the process that listens is often a child of the owner
//! (`npm run dev` starting `node`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use crate::host::Processes;
use styxy_observe::ObserveError;
use styxy_observe::sockdiag::SockDiag;
use styxy_proto::caller::may_see;
use styxy_proto::model::{Allocation, Instance, LeaseKind, Millis, Source, State};

/// How long a new process-lease allocation may go without listening before
/// that counts as a failure.
pub const LISTEN_GRACE_MS: Millis = 5 * 60 * 1000;

/// Why an allocation failed its check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// The owner process exited.
    Exited,
    /// The owner's pid now belongs to another process.
    PidReused,
    /// The session's instance expired or ended.
    SessionExpired,
    /// The owner runs, but no socket of its uid listens on the port.
    NotListening,
    /// A reservation awaiting its hand-off saw no listener of its uid
    /// within the grace.
    Unclaimed,
}

impl Failure {
    /// The holder is certainly gone: no point in counting.
    pub fn is_final(self) -> bool {
        self != Failure::NotListening
    }

    /// The stable name used in logs (`STYXY_REASON`) and on the bus.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Exited => "exited",
            Failure::PidReused => "pid_reused",
            Failure::SessionExpired => "session_expired",
            Failure::NotListening => "not_listening",
            Failure::Unclaimed => "unclaimed",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown health verdict {0:?} (expected exited, pid_reused, session_expired, not_listening or unclaimed)")]
pub struct UnknownFailure(pub String);

impl FromStr for Failure {
    type Err = UnknownFailure;

    fn from_str(s: &str) -> Result<Failure, UnknownFailure> {
        [Failure::Exited, Failure::PidReused, Failure::SessionExpired, Failure::NotListening, Failure::Unclaimed]
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| UnknownFailure(s.chars().take(50).collect()))
    }
}

/// Whether the holder of `a` is gone, by its lease: process leases by pid
/// and start time (one awaiting its hand-off by its deadline), session
/// leases by their instance. Manual leases have no holder to lose.
pub fn holder_failure(
    a: &Allocation,
    instances: &BTreeMap<String, Instance>,
    now: Millis,
    processes: &dyn Processes,
) -> Option<Failure> {
    match a.lease {
        LeaseKind::Manual => None,
        LeaseKind::Process => {
            let Some(pid) = a.owner.pid else {
                return a.handoff_until.is_some_and(|until| now >= until).then_some(Failure::Unclaimed);
            };
            match processes.running_start_time(pid) {
                None => Some(Failure::Exited),
                Some(now) if a.owner.start_time.is_some_and(|then| then != now) => Some(Failure::PidReused),
                Some(_) => None,
            }
        }
        LeaseKind::Session => match instances.get(&a.instance_id) {
            Some(i) if !i.expired(now) && in_session(a, i) => None,
            _ => Some(Failure::SessionExpired),
        },
    }
}

/// Whether `a` is a session lease of instance `i`: tagged with its id and
/// owned by its user (or root), so an instance another user registers under
/// a familiar id neither keeps nor ends anyone else's ports.
pub fn in_session(a: &Allocation, i: &Instance) -> bool {
    a.lease == LeaseKind::Session && a.instance_id == i.instance_id && may_see(a.owner.uid, i.uid)
}

/// Who listens on which TCP port (IPv4 or IPv6): the sockets' uids.
#[derive(Debug, Clone, Default)]
pub struct Listening {
    uids: HashMap<u16, Vec<u32>>,
}

impl Listening {
    pub fn new(sockets: impl IntoIterator<Item = (u16, u32)>) -> Listening {
        let mut uids: HashMap<u16, Vec<u32>> = HashMap::new();
        for (port, uid) in sockets {
            let on_port = uids.entry(port).or_default();
            if !on_port.contains(&uid) {
                on_port.push(uid);
            }
        }
        Listening { uids }
    }

    /// One sock_diag dump of the kernel's TCP listeners (no privileges needed).
    pub fn dump() -> Result<Listening, ObserveError> {
        let sockets = SockDiag::open()?.tcp_listeners()?;
        Ok(Listening::new(sockets.into_iter().map(|s| (s.port, s.uid))))
    }

    pub fn by(&self, port: u16, uid: u32) -> bool {
        self.uids.get(&port).is_some_and(|uids| uids.contains(&uid))
    }
}

/// A reservation awaiting its hand-off whose uid now listens on its port:
/// adopted by the writer, never freed.
fn handoff_listened_to(a: &Allocation, listening: Option<&Listening>) -> bool {
    a.handoff_until.is_some() && listening.is_some_and(|l| l.by(a.port, a.owner.uid))
}

/// The verdict on one allocation: `None` when healthy. Without a listener
/// dump (`listening` is `None`) only the holder's existence is checked.
pub fn verdict(
    a: &Allocation,
    state: &State,
    now: Millis,
    processes: &dyn Processes,
    listening: Option<&Listening>,
) -> Option<Failure> {
    let claimed = |f: &Failure| *f == Failure::Unclaimed && handoff_listened_to(a, listening);
    holder_failure(a, &state.instances, now, processes).filter(|f| !claimed(f)).or_else(|| {
        let checked = a.lease == LeaseKind::Process
            && a.source != Source::Cli
            && now.saturating_sub(a.allocated_at) >= LISTEN_GRACE_MS;
        let silent = listening.is_some_and(|l| !l.by(a.port, a.owner.uid));
        (checked && silent).then_some(Failure::NotListening)
    })
}

/// One allocation whose health must be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub port: u16,
    pub lock_id: String,
    /// `None`: healthy again after counted failures (the count is reset).
    pub failure: Option<Failure>,
}

/// What a pass found that the writer must record: failing allocations,
/// recovered ones, and instances whose heartbeat stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub expired_instances: Vec<String>,
}

impl Report {
    /// Nothing to record: the writer need not be bothered (or started).
    pub fn is_empty(&self) -> bool {
        self.findings.is_empty() && self.expired_instances.is_empty()
    }

    /// Logs every decision with structured fields (STYXY_PORT,
    /// STYXY_LOCK_ID, STYXY_REASON in the journal).
    pub fn log(&self) {
        for f in &self.findings {
            match f.failure {
                Some(reason) => tracing::warn!(
                    port = f.port,
                    lock_id = %f.lock_id,
                    reason = reason.as_str(),
                    "port {} failed its health check: {reason}", f.port
                ),
                None => tracing::info!(
                    port = f.port,
                    lock_id = %f.lock_id,
                    reason = "healthy",
                    "port {} is healthy again", f.port
                ),
            }
        }
        for id in &self.expired_instances {
            tracing::info!(instance_id = %id, reason = Failure::SessionExpired.as_str(), "instance {id} stopped sending heartbeats");
        }
    }
}

/// Start times read once per pass (owners often hold several ports),
/// anything else read when asked.
struct Known<'a> {
    processes: &'a dyn Processes,
    start_times: HashMap<u32, Option<u64>>,
}

impl Processes for Known<'_> {
    fn running_start_time(&self, pid: u32) -> Option<u64> {
        match self.start_times.get(&pid) {
            Some(known) => *known,
            None => self.processes.running_start_time(pid),
        }
    }

    fn start_time(&self, pid: u32) -> Option<u64> {
        self.processes.start_time(pid)
    }

    fn uid_of(&self, pid: u32) -> Option<u32> {
        self.processes.uid_of(pid)
    }

    fn comm(&self, pid: u32) -> Option<String> {
        self.processes.comm(pid)
    }
}

/// Reads the start times of `pids` on a few threads: one /proc read per
/// owner is most of the cost of a pass.
fn start_times(processes: &dyn Processes, pids: &[u32]) -> HashMap<u32, Option<u64>> {
    let read = |chunk: &[u32]| chunk.iter().map(|&pid| (pid, processes.running_start_time(pid))).collect::<Vec<_>>();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    if threads == 1 || pids.len() < 128 {
        return read(pids).into_iter().collect();
    }
    std::thread::scope(|scope| {
        let parts: Vec<_> =
            pids.chunks(pids.len().div_ceil(threads)).map(|chunk| scope.spawn(move || read(chunk))).collect();
        // A part that failed is read again when asked (see `Known`).
        parts.into_iter().flat_map(|part| part.join().unwrap_or_default()).collect()
    })
}

/// Checks every allocation of `state`. Writes nothing.
pub fn check(state: &State, now: Millis, processes: &dyn Processes, listening: Option<&Listening>) -> Report {
    let mut owners: Vec<u32> =
        state.allocations.values().filter(|a| a.lease == LeaseKind::Process).filter_map(|a| a.owner.pid).collect();
    owners.sort_unstable();
    owners.dedup();
    let processes = &Known { processes, start_times: start_times(processes, &owners) };
    let findings = state
        .allocations
        .values()
        .filter_map(|a| {
            let failure = verdict(a, state, now, processes, listening);
            // Counted failures are listening failures: without a dump,
            // nothing says they are over. A reservation awaiting its
            // hand-off that its uid now listens on is reported so the writer
            // adopts the listener.
            let adoptable = handoff_listened_to(a, listening);
            let record = failure.is_some() || (a.health_failures > 0 && listening.is_some()) || adoptable;
            record.then(|| Finding { port: a.port, lock_id: a.lock_id.clone(), failure })
        })
        .collect();
    let expired_instances =
        state.instances.values().filter(|i| i.expired(now)).map(|i| i.instance_id.clone()).collect();
    Report { findings, expired_instances }
}

/// A port the writer released because of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    pub port: u16,
    pub lock_id: String,
    pub reason: Failure,
}

/// Logs the ports the writer released for a report, with the same
/// structured fields as [`Report::log`].
pub fn log_released(released: &[Released]) {
    for r in released {
        tracing::info!(
            port = r.port,
            lock_id = %r.lock_id,
            reason = r.reason.as_str(),
            "released port {} ({})", r.port, r.reason
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use styxy_proto::model::Owner;

    const NOW: Millis = 1_000_000_000;
    const UID: u32 = 1000;

    fn allocation(port: u16, lease: LeaseKind, pid: Option<u32>, age: Millis) -> Allocation {
        let owner = Owner { uid: UID, pid, start_time: pid.map(|_| 500) };
        Allocation {
            instance_id: "session-1".into(),
            allocated_at: NOW - age,
            ..Allocation::new(port, "dev", "web", owner, lease)
        }
    }

    fn state_with(allocations: Vec<Allocation>) -> State {
        let mut state = State::new("boot".into());
        for a in allocations {
            state.allocations.insert(a.port, a);
        }
        state
    }

    fn instance(id: &str, last_heartbeat: Millis) -> Instance {
        Instance {
            instance_id: id.into(),
            uid: UID,
            working_directory: None,
            project_root: None,
            registered_at: last_heartbeat,
            last_heartbeat,
            ttl_secs: 120,
            metadata: serde_json::json!({}),
        }
    }

    fn old() -> Millis {
        LISTEN_GRACE_MS + 1
    }

    #[test]
    fn a_dead_owner_fails_for_good() {
        let procs = HashMap::new();
        let state = state_with(vec![allocation(3000, LeaseKind::Process, Some(42), 10)]);
        let report = check(&state, NOW, &procs, Some(&Listening::default()));
        assert_eq!(report.findings.len(), 1);
        assert_eq!(report.findings[0].failure, Some(Failure::Exited));
        assert!(Failure::Exited.is_final());
    }

    #[test]
    fn a_reused_pid_is_not_the_owner() {
        // Same pid, another start time: a new process took the number.
        let procs = HashMap::from([(42, 501)]);
        let a = allocation(3000, LeaseKind::Process, Some(42), 10);
        let state = state_with(vec![a.clone()]);
        let listening = Listening::new([(3000, UID)]);
        assert_eq!(verdict(&a, &state, NOW, &procs, Some(&listening)), Some(Failure::PidReused));
        let same = HashMap::from([(42, 500)]);
        assert_eq!(verdict(&a, &state, NOW, &same, Some(&listening)), None);
    }

    #[test]
    fn a_live_owner_that_stopped_listening_is_counted_not_released() {
        let procs = HashMap::from([(42, 500)]);
        let a = allocation(3000, LeaseKind::Process, Some(42), old());
        let state = state_with(vec![a.clone()]);
        let nobody = Listening::default();
        assert_eq!(verdict(&a, &state, NOW, &procs, Some(&nobody)), Some(Failure::NotListening));
        assert!(!Failure::NotListening.is_final());
        let someone_else = Listening::new([(3000, UID + 1)]);
        assert_eq!(verdict(&a, &state, NOW, &procs, Some(&someone_else)), Some(Failure::NotListening));
        let owner = Listening::new([(3000, UID + 1), (3000, UID)]);
        assert_eq!(verdict(&a, &state, NOW, &procs, Some(&owner)), None);
        assert_eq!(verdict(&a, &state, NOW, &procs, None), None, "no dump, no listening verdict");
    }

    #[test]
    fn a_cli_reservation_is_held_while_its_shell_runs_though_nothing_listens() {
        let procs = HashMap::from([(42, 500)]);
        let a = Allocation { source: Source::Cli, ..allocation(3000, LeaseKind::Process, Some(42), old()) };
        let state = state_with(vec![a.clone()]);
        assert_eq!(verdict(&a, &state, NOW, &procs, Some(&Listening::default())), None);
        let shell_gone = HashMap::new();
        assert_eq!(verdict(&a, &state, NOW, &shell_gone, Some(&Listening::default())), Some(Failure::Exited));
    }

    #[test]
    fn young_allocations_and_other_leases_need_not_listen() {
        let procs = HashMap::from([(42, 500)]);
        let young = allocation(3000, LeaseKind::Process, Some(42), LISTEN_GRACE_MS - 1);
        let manual = allocation(3001, LeaseKind::Manual, None, old());
        let mut state = state_with(vec![young, manual]);
        state.instances.insert("session-1".into(), instance("session-1", NOW));
        let session = allocation(3002, LeaseKind::Session, None, old());
        state.allocations.insert(3002, session);
        let report = check(&state, NOW, &procs, Some(&Listening::default()));
        assert!(report.is_empty(), "{report:?}");
    }

    #[test]
    fn expired_instances_fail_their_session_allocations() {
        let procs = HashMap::new();
        let mut state = state_with(vec![allocation(3000, LeaseKind::Session, None, 10)]);
        state.instances.insert("session-1".into(), instance("session-1", NOW - 121_000));
        state.instances.insert("alive".into(), instance("alive", NOW - 1_000));
        let report = check(&state, NOW, &procs, None);
        assert_eq!(report.expired_instances, vec!["session-1".to_string()]);
        assert_eq!(report.findings[0].failure, Some(Failure::SessionExpired));

        // An instance that is gone altogether fails its allocations too.
        state.instances.clear();
        assert_eq!(check(&state, NOW, &procs, None).findings[0].failure, Some(Failure::SessionExpired));
    }

    #[test]
    fn a_recovered_allocation_is_reported_so_its_count_resets() {
        let procs = HashMap::from([(42, 500)]);
        let mut a = allocation(3000, LeaseKind::Process, Some(42), old());
        a.health_failures = 2;
        let state = state_with(vec![a]);
        let report = check(&state, NOW, &procs, Some(&Listening::new([(3000, UID)])));
        assert_eq!(
            report.findings,
            vec![Finding { port: 3000, lock_id: state.allocations[&3000].lock_id.clone(), failure: None }]
        );
        assert!(check(&state, NOW, &procs, None).is_empty(), "no dump: the count stands");
    }

    #[test]
    fn verdict_names_round_trip() {
        for f in [Failure::Exited, Failure::PidReused, Failure::SessionExpired, Failure::NotListening] {
            assert_eq!(f.as_str().parse::<Failure>(), Ok(f));
        }
        assert!("healthy\n".parse::<Failure>().is_err());
    }
}
