//! What the state must satisfy beyond being readable, and how to get it
//! back there (styxy-recovery; the allocator at start and on reload).
//!
//! Damaged files are the store's business: [`crate::store::Store::open`]
//! keeps an unreadable file aside and restores the newest valid backup. What
//! is left for this module is a state that reads but breaks an invariant:
//!
//! - one holder per port (an allocation filed under another port's key can
//!   shadow the real holder), and lock ids unique;
//! - no process or session allocation from a previous boot (those processes
//!   are gone, their pids will be reused);
//! - at most one live allocation of a single-instance type;
//! - auto-allocated ranges disjoint from each other and from configured ones;
//! - a generation at least as new as every backup the state replaced.
//!
//! [`examine`] finds the problems and the [`Change`]s that fix them, on a
//! working copy, so later checks see earlier fixes. Fixes drop records, never
//! invent them: a dropped allocation only makes a port look free to Styxy,
//! and the kernel probe still sees it in use while its process listens.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::config::{Config, InstanceBehavior};
use crate::health;
use crate::host::{Host, Processes, RealHost};
use crate::store::{self, OpenReport, Store, StoreError};
use styxy_observe::process;
use styxy_proto::model::{Allocation, AuditEntry, Change, LeaseKind, Millis, State};

/// The journal MESSAGE_ID of recovery's one-line verdict
/// (`journalctl MESSAGE_ID=21ccff387b784dc9949f7587098f05b8`). Never change
/// it: monitoring matches on it.
pub const VERDICT_MESSAGE_ID: &str = "21ccff387b784dc9949f7587098f05b8";

/// What the checks need besides the state, injectable for tests.
pub struct Context<'a> {
    /// This boot's id; empty when unknown (then no allocation is dropped for it).
    pub boot_id: String,
    pub now: Millis,
    /// Generation of the newest backup of the state directory.
    pub newest_backup: Option<u64>,
    pub processes: &'a dyn Processes,
}

impl Context<'static> {
    /// The real machine, for the state directory `dir`.
    pub fn current(dir: &Path) -> Result<Context<'static>, StoreError> {
        Context::of(&RealHost, dir)
    }
}

impl<'a> Context<'a> {
    /// `host`'s clock and process table, for the state directory `dir`.
    pub fn of(host: &'a dyn Host, dir: &Path) -> Result<Context<'a>, StoreError> {
        Ok(Context {
            boot_id: process::boot_id(),
            now: host.now(),
            newest_backup: store::newest_backup_generation(dir)?,
            processes: host,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Allocations filed under other keys claim the same port; `kept` stays.
    PortClaimedTwice { port: u16, kept: String, dropped: Vec<String> },
    /// An allocation filed under another port's key, alone in claiming its port.
    Misfiled { key: u16, port: u16, lock_id: String },
    /// One lock id on several ports; the one on `kept` stays.
    DuplicateLockId { lock_id: String, kept: u16, dropped: Vec<u16> },
    /// Allocations and instances recorded under another boot.
    PreviousBoot { boot_id: String, allocations: usize, instances: usize },
    /// A single-instance type held by several live allocations.
    SingletonHeldTwice { service_type: String, kept: u16, dropped: Vec<u16> },
    /// An auto-allocated range overlapping a configured or older auto range.
    OverlappingRange { service_type: String, range: [u16; 2], overlaps: String },
    /// The state is older than a snapshot it replaced.
    GenerationBehind { generation: u64, newest_backup: u64 },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::PortClaimedTwice { port, kept, dropped } => {
                write!(
                    f,
                    "port {port} was claimed by {} allocations; kept {kept}, dropped {}",
                    dropped.len() + 1,
                    dropped.join(", ")
                )
            }
            Problem::Misfiled { key, port, lock_id } => {
                write!(f, "allocation {lock_id} for port {port} was filed under port {key}; refiled")
            }
            Problem::DuplicateLockId { lock_id, kept, dropped } => {
                write!(f, "lock id {lock_id} was on ports {kept} and {dropped:?}; kept port {kept}")
            }
            Problem::PreviousBoot { boot_id, allocations, instances } => write!(
                f,
                "{allocations} allocation(s) and {instances} instance(s) belonged to a previous boot ({}); dropped",
                if boot_id.is_empty() { "unknown" } else { boot_id }
            ),
            Problem::SingletonHeldTwice { service_type, kept, dropped } => write!(
                f,
                "single-instance type {service_type} was held on ports {kept} and {dropped:?}; kept port {kept}"
            ),
            Problem::OverlappingRange { service_type, range, overlaps } => write!(
                f,
                "auto-allocated type {service_type} ({}-{}) overlapped {overlaps}; type removed",
                range[0], range[1]
            ),
            Problem::GenerationBehind { generation, newest_backup } => {
                write!(f, "generation {generation} was behind backup generation {newest_backup}; moved ahead")
            }
        }
    }
}

/// The problems of a state and what fixes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repair {
    pub problems: Vec<Problem>,
    /// Edits that fix the problems, in order.
    pub changes: Vec<Change>,
    /// The generation must move up to this (not expressible as a change).
    pub generation_floor: Option<u64>,
}

/// The problems of `state` (none for a sound state).
pub fn validate(state: &State, config: &Config, cx: &Context<'_>) -> Vec<Problem> {
    examine(state, config, cx).problems
}

/// Finds the problems of `state` and the changes that fix them. `config`
/// is the configuration from files (without auto-allocated types).
pub fn examine(state: &State, config: &Config, cx: &Context<'_>) -> Repair {
    let mut work = Work { state: state.clone(), repair: Repair::default() };
    work.one_claim_per_port();
    work.unique_lock_ids();
    work.current_boot(&cx.boot_id);
    work.single_instances(config, cx);
    work.disjoint_auto_ranges(config, cx.now);
    if let Some(newest) = cx.newest_backup.filter(|n| *n > state.generation) {
        work.repair.problems.push(Problem::GenerationBehind { generation: state.generation, newest_backup: newest });
        work.repair.generation_floor = Some(newest + 1);
    }
    work.repair
}

/// A working copy the checks fix as they go.
struct Work {
    state: State,
    repair: Repair,
}

impl Work {
    fn fix(&mut self, problem: Problem, changes: Vec<Change>) {
        for change in &changes {
            self.state.apply(change);
        }
        self.repair.problems.push(problem);
        self.repair.changes.extend(changes);
    }

    fn one_claim_per_port(&mut self) {
        let mut claims: std::collections::BTreeMap<u16, Vec<(u16, Allocation)>> = Default::default();
        for (key, a) in &self.state.allocations {
            claims.entry(a.port).or_default().push((*key, a.clone()));
        }
        for (port, mut claimants) in claims {
            if claimants.len() == 1 && claimants[0].0 == port {
                continue;
            }
            // The record filed under its own port is the one every lookup
            // found so far; else the oldest.
            claimants.sort_by_key(|(key, a)| (*key != port, a.allocated_at));
            let (kept_key, kept) = claimants.remove(0);
            let mut changes: Vec<Change> = claimants
                .iter()
                .map(|(key, a)| Change::RemoveAllocation { port: *key, lock_id: a.lock_id.clone() })
                .collect();
            if kept_key != port {
                changes.push(Change::RemoveAllocation { port: kept_key, lock_id: kept.lock_id.clone() });
                changes.push(Change::PutAllocation(kept.clone()));
            }
            let problem = if claimants.is_empty() {
                Problem::Misfiled { key: kept_key, port, lock_id: kept.lock_id.clone() }
            } else {
                Problem::PortClaimedTwice {
                    port,
                    kept: kept.lock_id.clone(),
                    dropped: claimants.iter().map(|(_, a)| a.lock_id.clone()).collect(),
                }
            };
            self.fix(problem, changes);
        }
    }

    fn unique_lock_ids(&mut self) {
        let mut ports: std::collections::BTreeMap<&str, Vec<&Allocation>> = Default::default();
        for a in self.state.allocations.values() {
            ports.entry(a.lock_id.as_str()).or_default().push(a);
        }
        let duplicates: Vec<(String, Vec<Allocation>)> = ports
            .into_iter()
            .filter(|(_, holders)| holders.len() > 1)
            .map(|(id, holders)| (id.to_string(), holders.into_iter().cloned().collect()))
            .collect();
        for (lock_id, mut holders) in duplicates {
            holders.sort_by_key(|a| (a.allocated_at, a.port));
            let kept = holders.remove(0).port;
            let changes =
                holders.iter().map(|a| Change::RemoveAllocation { port: a.port, lock_id: lock_id.clone() }).collect();
            let dropped = holders.iter().map(|a| a.port).collect();
            self.fix(Problem::DuplicateLockId { lock_id, kept, dropped }, changes);
        }
    }

    fn current_boot(&mut self, boot_id: &str) {
        let changes = previous_boot_changes(&self.state, boot_id);
        if changes.is_empty() {
            return;
        }
        let allocations = changes.iter().filter(|c| matches!(c, Change::RemoveAllocation { .. })).count();
        let instances = changes.iter().filter(|c| matches!(c, Change::RemoveInstance(_))).count();
        let problem = Problem::PreviousBoot { boot_id: self.state.boot_id.clone(), allocations, instances };
        self.fix(problem, changes);
    }

    fn single_instances(&mut self, config: &Config, cx: &Context<'_>) {
        for (name, t) in &config.service_types {
            if t.instance_behavior != InstanceBehavior::Single {
                continue;
            }
            let mut live: Vec<&Allocation> = self
                .state
                .allocations
                .values()
                .filter(|a| &a.service_type == name)
                .filter(|a| health::holder_failure(a, &self.state.instances, cx.now, cx.processes).is_none())
                .collect();
            if live.len() < 2 {
                continue;
            }
            // The first holder is the one the others should have been given.
            live.sort_by_key(|a| (a.allocated_at, a.port));
            let kept = live[0].port;
            let changes: Vec<Change> = live[1..]
                .iter()
                .map(|a| Change::RemoveAllocation { port: a.port, lock_id: a.lock_id.clone() })
                .collect();
            let dropped = live[1..].iter().map(|a| a.port).collect();
            self.fix(Problem::SingletonHeldTwice { service_type: name.clone(), kept, dropped }, changes);
        }
    }

    fn disjoint_auto_ranges(&mut self, config: &Config, now: Millis) {
        let mut taken: Vec<(String, [u16; 2])> =
            config.service_types.iter().map(|(name, t)| (format!("configured type {name}"), t.range)).collect();
        let mut autos: Vec<_> = self
            .state
            .auto_types
            .values()
            // A configured type of the same name replaces the auto type anyway.
            .filter(|t| !config.service_types.contains_key(&t.service_type))
            .cloned()
            .collect();
        autos.sort_by_key(|t| (t.created_at, t.range));
        for t in autos {
            let [start, end] = t.range;
            let overlap = taken.iter().find(|(_, [s, e])| start <= *e && *s <= end).map(|(what, _)| what.clone());
            let overlap = overlap.or_else(|| (start > end).then(|| "itself (start above end)".to_string()));
            match overlap {
                None => taken.push((format!("auto-allocated type {}", t.service_type), t.range)),
                Some(overlaps) => {
                    let changes = vec![
                        Change::RemoveAutoType(t.service_type.clone()),
                        Change::Audit(AuditEntry {
                            at: now,
                            action: "auto_allocation_repair".into(),
                            service_type: t.service_type.clone(),
                            range: Some(t.range),
                            uid: 0,
                        }),
                    ];
                    let problem = Problem::OverlappingRange { service_type: t.service_type, range: t.range, overlaps };
                    self.fix(problem, changes);
                }
            }
        }
    }
}

/// The edits that void what a previous boot left: process and session
/// allocations, instances, and the boot id itself. Empty when `state` is
/// from this boot or the boot id is unknown.
pub fn previous_boot_changes(state: &State, boot_id: &str) -> Vec<Change> {
    if boot_id.is_empty() || state.boot_id == boot_id {
        return Vec::new();
    }
    let mut changes: Vec<Change> = state
        .allocations
        .iter()
        .filter(|(_, a)| a.lease != LeaseKind::Manual)
        .map(|(key, a)| Change::RemoveAllocation { port: *key, lock_id: a.lock_id.clone() })
        .collect();
    changes.extend(state.instances.keys().map(|id| Change::RemoveInstance(id.clone())));
    changes.push(Change::SetBootId(boot_id.to_string()));
    changes
}

/// Examines the store's state and commits the fixes. Returns the problems
/// fixed.
pub fn fix(store: &mut Store, config: &Config, cx: &Context<'_>) -> Result<Vec<Problem>, StoreError> {
    let repair = examine(store.state(), config, cx);
    if !repair.changes.is_empty() {
        store.commit(&repair.changes)?;
    }
    if let Some(floor) = repair.generation_floor {
        store.advance_generation(floor)?;
    }
    Ok(repair.problems)
}

/// What a recovery of a state directory did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// File-level repairs: damaged files kept aside, backup restored.
    pub files: OpenReport,
    /// State-level repairs.
    pub problems: Vec<Problem>,
    pub generation: u64,
    pub allocations: usize,
}

/// How a recovery went, in one word (the verdict's `STYXY_VERDICT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to do.
    Clean,
    /// The state read but broke an invariant, or a half-written record was dropped.
    Repaired,
    /// A file did not read: kept aside, the state rebuilt from a backup (or empty).
    Restored,
    /// Recovery could not run; the state is untouched.
    Failed,
}

impl std::str::FromStr for Verdict {
    type Err = String;

    fn from_str(s: &str) -> Result<Verdict, String> {
        [Verdict::Clean, Verdict::Repaired, Verdict::Restored, Verdict::Failed]
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("unknown verdict {:?}", s.chars().take(50).collect::<String>()))
    }
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Clean => "clean",
            Verdict::Repaired => "repaired",
            Verdict::Restored => "restored",
            Verdict::Failed => "failed",
        }
    }
}

impl Outcome {
    pub fn verdict(&self) -> Verdict {
        let f = &self.files;
        if f.restored_from.is_some() || !f.moved_aside.is_empty() || f.started_empty {
            Verdict::Restored
        } else if f.dropped_torn_tail || !self.problems.is_empty() {
            Verdict::Repaired
        } else {
            Verdict::Clean
        }
    }

    /// One line per repair, files first.
    pub fn repairs(&self) -> Vec<String> {
        let mut lines = file_repairs(&self.files);
        lines.extend(self.problems.iter().map(Problem::to_string));
        lines
    }
}

/// One line per file-level repair the store made while opening.
pub fn file_repairs(report: &OpenReport) -> Vec<String> {
    let mut lines: Vec<String> =
        report.moved_aside.iter().map(|p| format!("damaged file moved aside as {}", p.display())).collect();
    lines.extend(report.restored_from.iter().map(|p| format!("restored the state from backup {}", p.display())));
    if report.started_empty {
        lines.push("no usable backup: started from an empty state".into());
    }
    if report.dropped_torn_tail {
        lines.push("dropped a half-written last log record (never acknowledged)".into());
    }
    lines
}

/// Recovers `dir` as its writer (no allocator running): opens it, which
/// repairs damaged files, fixes the state, and writes it out durably.
/// Waits up to `wait` for the lock; [`StoreError::Locked`] means a writer
/// holds the directory and must do the repair itself.
pub fn recover_dir(dir: &Path, config: &Config, wait: Duration) -> Result<Outcome, StoreError> {
    let (mut store, files) = Store::open_wait(dir, wait)?;
    let cx = Context::current(dir)?;
    let problems = fix(&mut store, config, &cx)?;
    store.flush()?;
    Ok(Outcome { files, problems, generation: store.generation(), allocations: store.state().allocations.len() })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;
    use styxy_proto::model::{AutoType, Instance, Owner};

    const BOOT: &str = "this-boot";

    fn cx(processes: &HashMap<u32, u64>) -> Context<'_> {
        Context { boot_id: BOOT.into(), now: 1_000_000, newest_backup: None, processes }
    }

    fn alive(pids: &[u32]) -> HashMap<u32, u64> {
        pids.iter().map(|p| (*p, 7)).collect()
    }

    fn allocation(n: u16, port: u16, service_type: &str, pid: u32, at: Millis) -> Allocation {
        let owner = Owner { uid: 1000, pid: Some(pid), start_time: Some(7) };
        Allocation {
            lock_id: format!("00000000-0000-4000-8000-{n:012}"),
            allocated_at: at,
            ..Allocation::new(port, service_type, "web", owner, LeaseKind::Process)
        }
    }

    fn state() -> State {
        State::new(BOOT.into())
    }

    /// The state after the repair, for checking that it is now sound.
    fn repaired(state: &State, repair: &Repair) -> State {
        let mut s = state.clone();
        for c in &repair.changes {
            s.apply(c);
        }
        s
    }

    #[test]
    fn a_sound_state_has_no_problems() {
        let procs = alive(&[10, 11]);
        let mut s = state();
        s.allocations.insert(3000, allocation(1, 3000, "dev", 10, 1));
        s.allocations.insert(11430, allocation(2, 11430, "ai", 11, 2));
        assert_eq!(examine(&s, &Config::builtin(), &cx(&procs)), Repair::default());
    }

    #[test]
    fn two_allocations_on_one_port_leave_one() {
        let procs = alive(&[10, 11]);
        let mut s = state();
        s.allocations.insert(3000, allocation(1, 3000, "dev", 10, 5));
        // Filed under 3001, but for port 3000: two holders of one port.
        s.allocations.insert(3001, allocation(2, 3000, "dev", 11, 1));
        let repair = examine(&s, &Config::builtin(), &cx(&procs));
        assert_eq!(
            repair.problems,
            vec![Problem::PortClaimedTwice {
                port: 3000,
                kept: s.allocations[&3000].lock_id.clone(),
                dropped: vec![s.allocations[&3001].lock_id.clone()],
            }]
        );
        let after = repaired(&s, &repair);
        assert_eq!(after.allocations.keys().collect::<Vec<_>>(), vec![&3000]);
        assert_eq!(after.allocations[&3000].lock_id, s.allocations[&3000].lock_id);
        assert!(validate(&after, &Config::builtin(), &cx(&procs)).is_empty());

        // A lone misfiled record is moved under its port.
        let mut s = state();
        s.allocations.insert(3001, allocation(2, 3000, "dev", 11, 1));
        let repair = examine(&s, &Config::builtin(), &cx(&procs));
        assert!(matches!(repair.problems[..], [Problem::Misfiled { key: 3001, port: 3000, .. }]));
        assert_eq!(repaired(&s, &repair).allocations.keys().collect::<Vec<_>>(), vec![&3000]);
    }

    #[test]
    fn a_lock_id_on_two_ports_stays_on_the_older_one() {
        let procs = alive(&[10]);
        let mut s = state();
        s.allocations.insert(3000, allocation(1, 3000, "dev", 10, 5));
        s.allocations.insert(3005, allocation(1, 3005, "dev", 10, 1));
        let repair = examine(&s, &Config::builtin(), &cx(&procs));
        assert!(
            matches!(&repair.problems[..], [Problem::DuplicateLockId { kept: 3005, dropped, .. }] if dropped == &vec![3000])
        );
        assert_eq!(repaired(&s, &repair).allocations.keys().collect::<Vec<_>>(), vec![&3005]);
    }

    #[test]
    fn a_previous_boot_leaves_only_manual_allocations() {
        let procs = alive(&[10]);
        let mut s = state();
        s.boot_id = "old-boot".into();
        s.allocations.insert(3000, allocation(1, 3000, "dev", 10, 1));
        let mut manual = allocation(2, 3001, "dev", 10, 1);
        manual.lease = LeaseKind::Manual;
        s.allocations.insert(3001, manual);
        s.instances.insert(
            "claude-1".into(),
            Instance {
                instance_id: "claude-1".into(),
                uid: 1000,
                working_directory: None,
                project_root: None,
                registered_at: 1,
                last_heartbeat: 1_000_000,
                ttl_secs: 120,
                metadata: serde_json::json!({}),
            },
        );
        let repair = examine(&s, &Config::builtin(), &cx(&procs));
        assert_eq!(
            repair.problems,
            vec![Problem::PreviousBoot { boot_id: "old-boot".into(), allocations: 1, instances: 1 }]
        );
        let after = repaired(&s, &repair);
        assert_eq!(after.boot_id, BOOT);
        assert_eq!(
            after.allocations.keys().collect::<Vec<_>>(),
            vec![&3001],
            "the pid 10 of another boot is not our pid 10"
        );
        assert!(after.instances.is_empty());

        let unknown = Context { boot_id: String::new(), ..cx(&procs) };
        assert!(validate(&s, &Config::builtin(), &unknown).is_empty(), "no boot id, no verdict");
    }

    #[test]
    fn a_single_instance_type_keeps_its_first_live_holder() {
        let procs = alive(&[10, 11]);
        let mut s = state();
        s.allocations.insert(11431, allocation(2, 11431, "ai", 11, 9));
        s.allocations.insert(11430, allocation(1, 11430, "ai", 10, 3));
        // A dead holder is the lazy reaper's, not a second holder.
        s.allocations.insert(11432, allocation(3, 11432, "ai", 99, 1));
        let repair = examine(&s, &Config::builtin(), &cx(&procs));
        assert_eq!(
            repair.problems,
            vec![Problem::SingletonHeldTwice { service_type: "ai".into(), kept: 11430, dropped: vec![11431] }]
        );
    }

    fn auto(name: &str, range: [u16; 2], created_at: Millis) -> AutoType {
        AutoType {
            service_type: name.into(),
            range,
            chunk_size: 10,
            placement: "after".into(),
            rule: None,
            created_at,
            created_by_uid: 1000,
        }
    }

    #[test]
    fn overlapping_auto_ranges_lose_the_younger_type() {
        let procs = alive(&[]);
        let mut s = state();
        s.auto_types.insert("grafana".into(), auto("grafana", [12000, 12009], 1));
        s.auto_types.insert("loki".into(), auto("loki", [12005, 12014], 2));
        s.auto_types.insert("inside-dev".into(), auto("inside-dev", [3090, 3109], 3));
        s.auto_types.insert("tempo".into(), auto("tempo", [12020, 12029], 4));
        let repair = examine(&s, &Config::builtin(), &cx(&procs));
        let names: Vec<&str> = repair
            .problems
            .iter()
            .map(|p| match p {
                Problem::OverlappingRange { service_type, .. } => service_type.as_str(),
                other => panic!("unexpected {other}"),
            })
            .collect();
        assert_eq!(names, vec!["loki", "inside-dev"]);
        assert!(repair.problems[1].to_string().contains("configured type dev"), "{}", repair.problems[1]);
        let after = repaired(&s, &repair);
        assert_eq!(after.auto_types.keys().collect::<Vec<_>>(), vec!["grafana", "tempo"]);
        assert_eq!(after.audit.len(), 2, "each removal is audited");
    }

    #[test]
    fn a_generation_behind_its_backups_moves_ahead() {
        let procs = alive(&[]);
        let mut s = state();
        s.generation = 10;
        let behind = Context { newest_backup: Some(40), ..cx(&procs) };
        let repair = examine(&s, &Config::builtin(), &behind);
        assert_eq!(repair.problems, vec![Problem::GenerationBehind { generation: 10, newest_backup: 40 }]);
        assert_eq!(repair.generation_floor, Some(41));
        let level = Context { newest_backup: Some(10), ..cx(&procs) };
        assert!(validate(&s, &Config::builtin(), &level).is_empty());
    }

    // File level: the store keeps damage aside; recovery reports it.

    /// A directory whose state went through a few snapshots, so backups exist.
    pub(crate) fn directory_with_backups() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = Store::open(dir.path()).unwrap();
        let mut a = allocation(1, 3000, "dev", std::process::id(), 1);
        a.lease = LeaseKind::Manual;
        store.commit(&[Change::SetBootId(process::boot_id()), Change::PutAllocation(a)]).unwrap();
        store.flush().unwrap();
        for port in [3000, 3001] {
            store.commit(&[Change::SetSticky { key: "k".into(), port }]).unwrap();
            store.flush().unwrap();
        }
        dir
    }

    pub(crate) fn kept_aside(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".corrupt-"))
            .collect()
    }

    #[test]
    fn a_truncated_file_is_kept_aside_and_the_backup_restored() {
        let dir = directory_with_backups();
        let path = dir.path().join("state.json");
        let text = std::fs::read(&path).unwrap();
        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
        let outcome = recover_dir(dir.path(), &Config::builtin(), Duration::ZERO).unwrap();
        assert!(outcome.files.restored_from.is_some(), "{outcome:?}");
        assert_eq!(outcome.allocations, 1, "the backup still had the allocation");
        let aside = kept_aside(dir.path());
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(std::fs::read(dir.path().join(&aside[0])).unwrap(), &text[..text.len() / 2], "kept byte for byte");
        assert!(store::read_state(dir.path()).is_ok());
    }

    #[test]
    fn a_file_from_a_future_schema_stops_recovery_and_is_left_as_it_is() {
        let dir = directory_with_backups();
        let path = dir.path().join("state.json");
        let mut future: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        future["schema"] = serde_json::json!(styxy_proto::model::SCHEMA_VERSION + 1);
        future["allocations"] = serde_json::json!("a shape we cannot read");
        let future = serde_json::to_vec(&future).unwrap();
        std::fs::write(&path, &future).unwrap();
        let refused = recover_dir(dir.path(), &Config::builtin(), Duration::ZERO).unwrap_err();
        assert!(refused.to_string().contains("newer than the supported"), "{refused}");
        assert!(kept_aside(dir.path()).is_empty());
        assert_eq!(std::fs::read(&path).unwrap(), future);
    }

    #[test]
    fn a_directory_from_a_previous_boot_is_repaired_and_written_out() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut store, _) = Store::open(dir.path()).unwrap();
            store
                .commit(&[
                    Change::SetBootId("old-boot".into()),
                    Change::PutAllocation(allocation(1, 3000, "dev", 1, 1)),
                ])
                .unwrap();
        }
        let outcome = recover_dir(dir.path(), &Config::builtin(), Duration::ZERO).unwrap();
        assert!(matches!(outcome.problems[..], [Problem::PreviousBoot { allocations: 1, .. }]), "{outcome:?}");
        let state = store::read_state(dir.path()).unwrap();
        assert!(state.allocations.is_empty());
        assert_eq!(state.boot_id, process::boot_id());
        let again = recover_dir(dir.path(), &Config::builtin(), Duration::ZERO).unwrap();
        assert!(again.problems.is_empty() && again.files == OpenReport::default(), "{again:?}");
    }

    #[test]
    fn a_held_directory_is_left_to_its_writer() {
        let dir = directory_with_backups();
        let _writer = Store::open(dir.path()).unwrap();
        assert!(matches!(recover_dir(dir.path(), &Config::builtin(), Duration::ZERO), Err(StoreError::Locked { .. })));
    }

    #[test]
    fn a_generation_behind_is_moved_ahead_on_disk() {
        let dir = directory_with_backups();
        // Someone copies the oldest snapshot back: a newer backup exists.
        let newest = store::newest_backup_generation(dir.path()).unwrap().unwrap();
        assert_eq!(newest, 2);
        std::fs::copy(dir.path().join("backups/state.json.1"), dir.path().join("state.json")).unwrap();
        let outcome = recover_dir(dir.path(), &Config::builtin(), Duration::ZERO).unwrap();
        assert!(matches!(outcome.problems[..], [Problem::GenerationBehind { generation: 1, .. }]), "{outcome:?}");
        assert!(store::read_state(dir.path()).unwrap().generation > newest);
    }
}
