//! The allocation policy (docs/design.md, "Ownership and allocation") over the store. One `Engine` is the
//! single writer; its caller serialises access (a mutex in the allocator), so
//! singleton reuse and auto-allocated ranges are decided under the same lock
//! as the allocation itself and concurrent callers agree.

mod allocate;
mod follow;
mod instances;
mod occupancy;
mod validate;

pub use allocate::{UNMANAGED_TYPE, suggest};
pub use validate::parse_port;

use std::collections::HashMap;

use occupancy::Occupancy;

use crate::config::Config;
use crate::health::{self, Failure, Released, Report};
use crate::host::{Host, Processes};
use crate::portmap::PortMap;
use crate::recovery::{self, Problem};
use crate::store::Store;
use styxy_proto::api::ErrorCode;
use styxy_proto::error::ApiError;
use styxy_proto::model::{Allocation, Change, Instance, LeaseKind, Millis, Owner, State};

type Result<T> = std::result::Result<T, ApiError>;

pub struct Engine {
    /// Configuration from files, without auto-allocated types.
    base: Config,
    /// `base` plus the auto-allocated types recorded in the state.
    config: Config,
    store: Store,
    map: Option<PortMap>,
    /// The clock, the process table and the kernel's ports.
    host: Box<dyn Host>,
    /// Indexes over the allocations, kept in step with the state.
    occupancy: Occupancy,
    /// Counts commits that added or removed allocations, so a caller can
    /// tell the allocation set changed (heartbeats move the generation too).
    allocation_edits: u64,
    /// Owner pids that adopted a reservation since [`Engine::take_adopted`]
    /// was last called, for the caller to watch.
    adopted: Vec<u32>,
}

impl Engine {
    /// Wraps an opened store and repairs what [`recovery`] finds (process
    /// and session leases from a previous boot, for one), logging it.
    pub fn new(base: Config, store: Store, map: Option<PortMap>, host: Box<dyn Host>) -> Result<Engine> {
        let config = base.with_auto_types(store.state().auto_types.values());
        let occupancy = Occupancy::of(store.state());
        if let Some(map) = &map {
            map.set_never_move(&config.preload.ports(), &config.preload.programs());
        }
        let mut engine = Engine { base, config, store, map, host, occupancy, allocation_edits: 0, adopted: Vec::new() };
        for problem in engine.repair()? {
            tracing::warn!(%problem, "state repaired");
        }
        Ok(engine)
    }

    pub fn state(&self) -> &State {
        self.store.state()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Re-reads the state (the store repairs damaged files) and the
    /// configuration files, then repairs the state. Says what was repaired.
    pub fn reload(&mut self, base: Config) -> Result<recovery::Outcome> {
        let files = self.store.reload().map_err(internal)?;
        self.base = base;
        self.resync();
        let problems = self.repair()?;
        Ok(recovery::Outcome {
            files,
            problems,
            generation: self.state().generation,
            allocations: self.state().allocations.len(),
        })
    }

    /// Recovery's request to the running writer, whose state in memory is
    /// the truth: files that do not read back as that state are kept aside
    /// and written afresh, then the state is repaired.
    pub fn recover(&mut self) -> Result<recovery::Outcome> {
        let moved_aside = self.store.rewrite_if_damaged().map_err(internal)?;
        let problems = self.repair()?;
        Ok(recovery::Outcome {
            files: crate::store::OpenReport { moved_aside, ..Default::default() },
            problems,
            generation: self.state().generation,
            allocations: self.state().allocations.len(),
        })
    }

    /// Repairs what [`recovery::examine`] finds in the state. Returns the
    /// problems repaired.
    pub fn repair(&mut self) -> Result<Vec<Problem>> {
        let cx = recovery::Context::of(&*self.host, self.store.dir()).map_err(internal)?;
        let problems = recovery::fix(&mut self.store, &self.base, &cx).map_err(internal)?;
        if !problems.is_empty() {
            self.resync();
        }
        Ok(problems)
    }

    /// Derived views after the state changed under them wholesale.
    fn resync(&mut self) {
        self.config = self.base.with_auto_types(self.store.state().auto_types.values());
        self.occupancy = Occupancy::of(self.store.state());
        if let Some(map) = &self.map {
            map.fill(self.store.state());
            map.set_never_move(&self.config.preload.ports(), &self.config.preload.programs());
        }
        self.allocation_edits += 1;
    }

    /// Grows whenever allocations were added or removed.
    pub fn allocation_edits(&self) -> u64 {
        self.allocation_edits
    }

    /// Writes the state durably (shutdown).
    pub fn flush(&mut self) -> Result<()> {
        self.store.flush().map_err(internal)
    }

    fn commit(&mut self, changes: Vec<Change>) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut touched: Vec<u16> = changes
            .iter()
            .filter_map(|c| match c {
                Change::PutAllocation(a) => Some(a.port),
                Change::RemoveAllocation { port, .. } => Some(*port),
                _ => None,
            })
            .collect();
        touched.sort_unstable();
        touched.dedup();
        for port in &touched {
            if let Some(a) = self.store.state().allocations.get(port) {
                self.occupancy.remove(a);
            }
        }
        if let Err(e) = self.store.commit(&changes) {
            self.occupancy = Occupancy::of(self.store.state());
            return Err(internal(e));
        }
        for port in &touched {
            if let Some(a) = self.store.state().allocations.get(port) {
                self.occupancy.add(a);
            }
        }
        if let Some(map) = &self.map {
            map.apply(&changes);
        }
        if changes.iter().any(|c| matches!(c, Change::PutAutoType(_) | Change::RemoveAutoType(_))) {
            self.config = self.base.with_auto_types(self.store.state().auto_types.values());
        }
        if changes.iter().any(|c| matches!(c, Change::PutAllocation(_) | Change::RemoveAllocation { .. })) {
            self.allocation_edits += 1;
        }
        Ok(())
    }

    /// Whether an allocation's holder still exists. A hand-off past its
    /// deadline lives on while a socket of its uid listens on its port: its
    /// listener may be one whose process this host cannot see (see
    /// [`Engine::adopt`]).
    pub fn holder_alive(&self, a: &Allocation, now: Millis) -> bool {
        holder_alive(self.state(), a, now, &*self.host)
            || (a.handoff_until.is_some() && self.host.listens(a.port, a.owner.uid))
    }

    /// The hand-off on `port` with `pid` as its owner, when `pid` runs as
    /// the hand-off's uid.
    fn adoption(&self, port: u16, pid: u32) -> Option<Allocation> {
        let a = self.state().allocations.get(&port).filter(|a| a.handoff_until.is_some())?;
        let start_time = self.host.running_start_time(pid).filter(|_| self.host.uid_of(pid) == Some(a.owner.uid))?;
        let owner = Owner { uid: a.owner.uid, pid: Some(pid), start_time: Some(start_time) };
        Some(Allocation { owner, handoff_until: None, ..a.clone() })
    }

    fn commit_adoptions(&mut self, adopted: Vec<Allocation>) -> Result<()> {
        self.adopted.extend(adopted.iter().filter_map(|a| a.owner.pid));
        self.commit(adopted.into_iter().map(Change::PutAllocation).collect())
    }

    /// Hands each reservation awaiting its hand-off to a process of its uid
    /// that this host sees listening on its port, which becomes its owner
    /// (a plain process lease from then on).
    fn adopt_listeners(&mut self) -> Result<()> {
        let adopted: Vec<Allocation> = self
            .state()
            .allocations
            .values()
            .filter(|a| a.handoff_until.is_some())
            .filter_map(|a| self.adoption(a.port, self.host.listener_of(a.port, a.owner.uid)?))
            .collect();
        self.commit_adoptions(adopted)
    }

    /// Hands the reservation on `port`, if it awaits its hand-off, to `pid`,
    /// a listener that someone privileged saw (the observer service, for an
    /// allocator that cannot see other users' processes). Returns whether
    /// `pid` adopted it: not when it is no hand-off or `pid` does not run as
    /// its uid.
    pub fn adopt(&mut self, port: u16, pid: u32) -> Result<bool> {
        let adopted: Vec<Allocation> = self.adoption(port, pid).into_iter().collect();
        let any = !adopted.is_empty();
        self.commit_adoptions(adopted)?;
        Ok(any)
    }

    /// The owner pids that adopted a reservation since the last call.
    pub fn take_adopted(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.adopted)
    }

    /// Frees allocations whose holder is gone and drops expired instances,
    /// after handing reservations to the listeners that claim them.
    /// Returns what was freed.
    pub fn reap(&mut self) -> Result<Vec<Allocation>> {
        self.adopt_listeners()?;
        let now = self.host.now();
        let dead: Vec<Allocation> =
            self.state().allocations.values().filter(|a| !self.holder_alive(a, now)).cloned().collect();
        let mut changes: Vec<Change> = dead.iter().map(remove_change).collect();
        let expired: Vec<&Instance> = self.state().instances.values().filter(|i| i.expired(now)).collect();
        changes.extend(self.retirements(&expired, now));
        self.commit(changes)?;
        Ok(dead)
    }

    /// Frees the process-lease allocations of `pid` once it has exited
    /// (called when its pidfd becomes readable).
    pub fn reap_pid(&mut self, pid: u32) -> Result<Vec<Allocation>> {
        let now = self.host.now();
        let gone: Vec<Allocation> = self
            .state()
            .allocations
            .values()
            .filter(|a| a.lease == LeaseKind::Process && a.owner.pid == Some(pid))
            .filter(|a| !self.holder_alive(a, now))
            .cloned()
            .collect();
        self.commit(gone.iter().map(remove_change).collect())?;
        Ok(gone)
    }

    /// Records a health [`Report`] (see [`health::check`]). The engine has
    /// the last word: a holder reported gone is released only if the engine
    /// finds it gone too (the report may be a few milliseconds old), and a
    /// listening failure is only counted until `health.max_failures` is
    /// reached.
    pub fn apply_health(&mut self, report: &Report) -> Result<Vec<Released>> {
        self.adopt_listeners()?;
        let reported: HashMap<&str, Failure> =
            report.findings.iter().filter_map(|f| Some((f.lock_id.as_str(), f.failure?))).collect();
        let mut released = Vec::new();
        if reported.values().any(|f| f.is_final()) || !report.expired_instances.is_empty() {
            for a in self.reap()? {
                // Reaping also frees holders that died since the pass.
                let reason = reported.get(a.lock_id.as_str()).copied().unwrap_or(match a.lease {
                    LeaseKind::Session => Failure::SessionExpired,
                    _ if a.owner.pid.is_none() => Failure::Unclaimed,
                    _ => Failure::Exited,
                });
                released.push(Released { port: a.port, lock_id: a.lock_id, reason });
            }
        }
        for f in &report.findings {
            match f.failure {
                Some(Failure::NotListening) => {
                    if self.record_health(&f.lock_id, false)? {
                        released.push(Released {
                            port: f.port,
                            lock_id: f.lock_id.clone(),
                            reason: Failure::NotListening,
                        });
                    }
                }
                None => {
                    self.record_health(&f.lock_id, true)?;
                }
                Some(_) => {}
            }
        }
        Ok(released)
    }

    /// Records a health verdict: the failure count, or a release once it
    /// reaches the configured limit. Returns true when released.
    fn record_health(&mut self, lock_id: &str, healthy: bool) -> Result<bool> {
        let Some(a) = self.state().by_lock_id(lock_id).cloned() else {
            return Ok(false);
        };
        let failures = if healthy { 0 } else { a.health_failures + 1 };
        if failures >= self.config.health.max_failures {
            self.commit(vec![remove_change(&a)])?;
            return Ok(true);
        }
        if failures != a.health_failures {
            self.commit(vec![Change::SetHealthFailures { port: a.port, lock_id: a.lock_id, failures }])?;
        }
        Ok(false)
    }
}

/// Whether the holder of `a` still exists.
fn holder_alive(state: &State, a: &Allocation, now: Millis, processes: &dyn Processes) -> bool {
    health::holder_failure(a, &state.instances, now, processes).is_none()
}

/// Of one user's entries (a key and when it was last used), those to drop
/// so that at most `keep` remain: every entry older than `max_age`, then the
/// oldest.
fn pruned<K>(mut entries: Vec<(K, Millis)>, keep: usize, max_age: Millis, now: Millis) -> impl Iterator<Item = K> {
    entries.sort_unstable_by_key(|(_, at)| *at);
    let excess = entries.len().saturating_sub(keep);
    entries
        .into_iter()
        .enumerate()
        .filter(move |(n, (_, at))| *n < excess || now.saturating_sub(*at) > max_age)
        .map(|(_, (key, _))| key)
}

fn remove_change(a: &Allocation) -> Change {
    Change::RemoveAllocation { port: a.port, lock_id: a.lock_id.clone() }
}

/// A failure of the state store, its cause kept as the source.
fn internal(e: impl std::error::Error + Send + Sync + 'static) -> ApiError {
    ApiError::new(ErrorCode::Internal, format!("state store: {e}")).caused_by(e)
}

#[cfg(test)]
mod tests;
