//! The allocation policy (DESIGN.md §5) over the store. One `Engine` is the
//! single writer; its caller serialises access (a mutex in the allocator), so
//! singleton reuse and auto-allocated ranges are decided under the same lock
//! as the allocation itself and concurrent callers agree.

mod occupancy;

use std::collections::{HashMap, HashSet};

use occupancy::Occupancy;
use serde_json::json;

use crate::autoalloc;
use crate::config::{Config, InstanceBehavior};
use crate::health::{self, Failure, Released, Report};
use crate::host::{Host, Processes};
use crate::portmap::PortMap;
use crate::recovery::{self, Problem};
use crate::store::Store;
use styxy_observe::process;
use styxy_proto::api::{
    AllocateRequest, AllocateResponse, AllocationView, ErrorCode, Holder, RegisterInstanceRequest, ReleaseResponse,
};
use styxy_proto::model::{Allocation, AuditEntry, AutoType, Change, Instance, LeaseKind, Millis, Owner, Source, State};

/// Who is asking: the peer's uid, and its pid when the transport tells it
/// (SO_PEERCRED on the Unix socket; a TCP token names only a user).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub pid: Option<u32>,
    /// Start time of `pid` when it connected, when the transport pinned it:
    /// spares a /proc read per request on a kept-alive connection, and names
    /// the process that connected even if its pid is reused later.
    pub start_time: Option<u64>,
}

impl Caller {
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Root and the owner's own user see process details.
    pub fn may_see(&self, uid: u32) -> bool {
        self.is_root() || self.uid == uid
    }
}

/// A refusal, with the stable code the API reports.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct EngineError {
    pub code: ErrorCode,
    pub message: String,
    pub context: Option<serde_json::Value>,
}

impl EngineError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> EngineError {
        EngineError { code, message: message.into(), context: None }
    }

    fn with_context(mut self, context: serde_json::Value) -> EngineError {
        self.context = Some(context);
        self
    }
}

type Result<T> = std::result::Result<T, EngineError>;

/// Service label for preload moves of ports outside every managed range.
pub const UNMANAGED_TYPE: &str = "unmanaged";
/// How far above a busy unmanaged port a preload move may land.
const UNMANAGED_SPAN: u32 = 1000;

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
}

impl Engine {
    /// Wraps an opened store and repairs what [`recovery`] finds (process
    /// and session leases from a previous boot, for one), logging it.
    pub fn new(base: Config, store: Store, map: Option<PortMap>, host: Box<dyn Host>) -> Result<Engine> {
        let config = base.with_auto_types(store.state().auto_types.values());
        let occupancy = Occupancy::of(store.state());
        let mut engine = Engine { base, config, store, map, host, occupancy, allocation_edits: 0 };
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

    /// Whether an allocation's holder still exists.
    pub fn holder_alive(&self, a: &Allocation, now: Millis) -> bool {
        holder_alive(self.state(), a, now, &*self.host)
    }

    /// Frees allocations whose holder is gone and drops expired instances.
    /// Returns what was freed.
    pub fn reap(&mut self) -> Result<Vec<Allocation>> {
        let now = self.host.now();
        let dead: Vec<Allocation> =
            self.state().allocations.values().filter(|a| !self.holder_alive(a, now)).cloned().collect();
        let mut changes: Vec<Change> = dead.iter().map(remove_change).collect();
        changes.extend(
            self.state()
                .instances
                .values()
                .filter(|i| i.expired(now))
                .map(|i| Change::RemoveInstance(i.instance_id.clone())),
        );
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

    pub fn allocate(&mut self, req: &AllocateRequest, caller: &Caller) -> Result<AllocateResponse> {
        // Everything is validated before anything is written.
        let requested = req.preferred_port.as_ref().map(parse_port).transpose()?;
        let service_name = optional_name(req.service_name.as_deref(), "service_name", 100, ".-_")?
            .unwrap_or("unnamed-service")
            .to_string();
        let instance_id =
            optional_name(req.instance_id.as_deref(), "instance_id", 100, "-_.")?.unwrap_or("default").to_string();
        let project_path = req.project_path.as_deref().map(validate_path).transpose()?;
        let source = req.source.unwrap_or_default();
        let owner = self.owner_for(req.pid, caller)?;
        let lease = req.lease.unwrap_or(if owner.pid.is_some() { LeaseKind::Process } else { LeaseKind::Manual });
        let now = self.host.now();
        match lease {
            LeaseKind::Process if owner.pid.is_none() => {
                return Err(invalid("lease 'process' needs an owner pid (field 'pid')"));
            }
            LeaseKind::Session => {
                let live = self.state().instances.get(&instance_id).is_some_and(|i| !i.expired(now));
                if !live {
                    return Err(EngineError::new(
                        ErrorCode::NotFound,
                        format!("lease 'session' needs a registered, live instance; '{instance_id}' is not"),
                    ));
                }
            }
            _ => {}
        }

        let mut changes = Vec::new();
        let (service_type, auto) = match (req.service_type.as_deref(), source, requested) {
            (Some(t), _, _) => (t.to_string(), self.ensure_type(t, caller, req.dry_run, &mut changes)?),
            (None, Source::Preload, Some(p)) => {
                (self.config.type_for_port(p).unwrap_or(UNMANAGED_TYPE).to_string(), None)
            }
            (None, _, _) => return Err(invalid("service_type is required")),
        };

        if let Some(existing) = self.live_singleton(&service_type, now) {
            return Ok(AllocateResponse {
                success: true,
                port: existing.port,
                lock_id: existing.lock_id.clone(),
                message: format!("Service '{service_type}' allows a single instance; reusing port {}", existing.port),
                service_type,
                service_name: existing.service_name.clone(),
                existing: true,
                dry_run: req.dry_run,
                requested_port: None,
                requested_port_holder: None,
                auto_allocated: false,
                allocated_range: None,
                chunk_size: None,
                placement: None,
            });
        }

        if !caller.is_root() {
            let held = self.occupancy.held_by(caller.uid);
            let limit = self.config.limits.max_allocations_per_user;
            if held >= limit {
                return Err(EngineError::new(
                    ErrorCode::QuotaExceeded,
                    format!("user {} already holds {held} allocations (limit {limit})", caller.uid),
                ));
            }
        }

        let sticky_key = sticky_key(project_path.as_deref(), &service_name);
        let candidates = self.candidates(&service_type, requested, source, &sticky_key, auto.as_ref())?;
        let mut reclaimed = Vec::new();
        let chosen = self.first_free(&candidates, now, &mut reclaimed);
        let holder = requested
            .filter(|p| chosen != Some(*p))
            .and_then(|p| self.state().allocations.get(&p))
            .filter(|a| self.holder_alive(a, now))
            .map(|a| holder_of(a, caller));
        let Some(port) = chosen else {
            let range = self.config.service_types.get(&service_type).map(|t| t.range);
            return Err(EngineError::new(
                ErrorCode::RangeExhausted,
                match range {
                    Some([s, e]) => format!("no free port in {s}-{e} for service type {service_type}"),
                    None => format!("no free port for service type {service_type}"),
                },
            )
            .with_context(json!({"service_type": service_type, "port_range": range})));
        };

        let moved = requested.filter(|p| *p != port);
        let mut response = AllocateResponse {
            success: true,
            port,
            lock_id: String::new(),
            message: format!("Port {port} would be allocated (dry run)"),
            service_type: service_type.clone(),
            service_name: service_name.clone(),
            existing: false,
            dry_run: req.dry_run,
            requested_port: moved,
            requested_port_holder: holder,
            auto_allocated: auto.is_some(),
            allocated_range: auto.as_ref().map(|t| t.range),
            chunk_size: auto.as_ref().map(|t| t.chunk_size),
            placement: auto.as_ref().map(|t| t.placement.clone()),
        };
        if req.dry_run {
            return Ok(response);
        }

        let allocation = Allocation {
            requested_port: moved,
            instance_id,
            project_path,
            source,
            allocated_at: now,
            ..Allocation::new(port, service_type.clone(), service_name, owner, lease)
        };
        response.lock_id = allocation.lock_id.clone();
        response.message = format!("Port {port} allocated for {service_type} service");
        changes.extend(reclaimed.iter().map(remove_change));
        changes.push(Change::PutAllocation(allocation));
        changes.push(Change::SetSticky { key: sticky_key, port });
        self.commit(changes)?;
        Ok(response)
    }

    /// The owner of a new allocation: the named pid (same uid unless root) or
    /// the caller itself, with the start time that pins its identity.
    fn owner_for(&self, pid: Option<u32>, caller: &Caller) -> Result<Owner> {
        let Some(pid) = pid.or(caller.pid) else {
            return Ok(Owner { uid: caller.uid, pid: None, start_time: None });
        };
        if caller.pid == Some(pid) && caller.start_time.is_some() {
            return Ok(Owner { uid: caller.uid, pid: Some(pid), start_time: caller.start_time });
        }
        let start_time = self
            .host
            .start_time(pid)
            .ok_or_else(|| EngineError::new(ErrorCode::InvalidField, format!("pid {pid} does not exist")))?;
        let uid = self.host.uid_of(pid).unwrap_or(u32::MAX);
        if !caller.is_root() && uid != caller.uid {
            return Err(EngineError::new(
                ErrorCode::Forbidden,
                format!("pid {pid} belongs to another user; an owner must be one of your own processes"),
            ));
        }
        Ok(Owner { uid: if caller.is_root() { uid } else { caller.uid }, pid: Some(pid), start_time: Some(start_time) })
    }

    /// Makes sure `name` is a known type, carving a range for it when
    /// auto-allocation allows (recorded in `changes`, committed with the
    /// allocation). Returns the carved type.
    fn ensure_type(
        &mut self,
        name: &str,
        caller: &Caller,
        dry_run: bool,
        changes: &mut Vec<Change>,
    ) -> Result<Option<AutoType>> {
        if self.config.service_types.contains_key(name) {
            return Ok(None);
        }
        let auto_cfg = &self.config.auto_allocation;
        let existing: Vec<[u16; 2]> = self.config.service_types.values().map(|t| t.range).collect();
        let plan = autoalloc::plan(auto_cfg, &existing, name).map_err(|e| match e {
            autoalloc::AutoAllocError::InvalidName { .. } => EngineError::new(
                ErrorCode::InvalidField,
                "service_type may contain only letters, digits and '-', at most 50 characters",
            ),
            autoalloc::AutoAllocError::Disabled { .. } => {
                let known: Vec<&String> = self.config.service_types.keys().collect();
                let list = known.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
                EngineError::new(
                    ErrorCode::UnknownServiceType,
                    format!("unknown service type '{name}' (auto-allocation is disabled); known types: {list}"),
                )
                .with_context(json!({"provided_service_type": name, "valid_service_types": known}))
            }
            e => EngineError::new(ErrorCode::RangeExhausted, format!("cannot carve a range for '{name}': {e}")),
        })?;
        let carved = AutoType {
            service_type: name.to_string(),
            range: plan.range,
            chunk_size: plan.chunk_size,
            placement: plan.placement.to_string(),
            rule: plan.rule,
            created_at: self.host.now(),
            created_by_uid: caller.uid,
        };
        if !dry_run {
            changes.push(Change::PutAutoType(carved.clone()));
            changes.push(Change::Audit(AuditEntry {
                at: carved.created_at,
                action: "auto_allocation".into(),
                service_type: name.to_string(),
                range: Some(plan.range),
                uid: caller.uid,
            }));
            // The allocation below walks the new type's range.
            self.config =
                self.base.with_auto_types(self.store.state().auto_types.values().chain(std::iter::once(&carved)));
        }
        Ok(Some(carved))
    }

    fn live_singleton(&self, service_type: &str, now: u64) -> Option<&Allocation> {
        let single = self
            .config
            .service_types
            .get(service_type)
            .is_some_and(|t| t.instance_behavior == InstanceBehavior::Single);
        if !single {
            return None;
        }
        self.state().allocations.values().find(|a| a.service_type == service_type && self.holder_alive(a, now))
    }

    /// Candidate ports in policy order: requested → sticky → preferred →
    /// range. A preload move stays close to the port the program wanted.
    fn candidates(
        &self,
        service_type: &str,
        requested: Option<u16>,
        source: Source,
        sticky_key: &str,
        auto: Option<&AutoType>,
    ) -> Result<Candidates> {
        let known = self.config.service_types.get(service_type).map(|t| (t.range, t.preferred_ports.clone()));
        let ([start, end], preferred) = match (known, auto) {
            (Some(r), _) => r,
            (None, Some(a)) => (a.range, Vec::new()),
            (None, None) if service_type == UNMANAGED_TYPE => {
                let p = requested.unwrap_or(0);
                let end = (p as u32 + UNMANAGED_SPAN).min(u16::MAX as u32) as u16;
                return Ok(Candidates { first: Vec::new(), runs: vec![p.saturating_add(1)..=end] });
            }
            (None, None) => return Err(EngineError::new(ErrorCode::UnknownServiceType, "unknown service type")),
        };
        if source == Source::Preload {
            // The busy port itself, then upwards, then wrap around the range.
            let p = requested.unwrap_or(start);
            let above = p.saturating_add(1).max(start)..=end;
            let below = start..=p.min(end.saturating_add(1)).saturating_sub(1);
            return Ok(Candidates { first: vec![p], runs: vec![above, below] });
        }
        let sticky = self.state().sticky.get(sticky_key).copied().filter(|p| (start..=end).contains(p));
        let first = requested.into_iter().chain(sticky).chain(preferred).collect();
        Ok(Candidates { first, runs: vec![start..=end] })
    }

    /// The first usable candidate. Ranges are walked over the ports no manual
    /// lease holds (a bitmap skips those), so a range crowded with them
    /// costs little; other holders are checked as the walk meets them, and
    /// dead ones are queued in `reclaimed`.
    fn first_free(&self, c: &Candidates, now: u64, reclaimed: &mut Vec<Allocation>) -> Option<u16> {
        let mut usable = |port: u16, holder: Option<&Allocation>| {
            if let Some(a) = holder {
                if self.holder_alive(a, now) {
                    return false;
                }
                reclaimed.push(a.clone());
            }
            !self.host.port_busy(port)
        };
        if let Some(p) = c.first.iter().copied().find(|p| usable(*p, self.state().allocations.get(p))) {
            return Some(p);
        }
        for run in &c.runs {
            let (mut from, to) = (*run.start(), *run.end());
            while let Some(port) = self.occupancy.first_not_manual(from, to) {
                if !c.first.contains(&port) && usable(port, self.state().allocations.get(&port)) {
                    return Some(port);
                }
                if port == to {
                    break;
                }
                from = port + 1;
            }
        }
        None
    }

    pub fn release(&mut self, lock_id: &str, caller: &Caller) -> Result<ReleaseResponse> {
        if uuid::Uuid::parse_str(lock_id).is_err() {
            return Err(invalid(format!("lock_id must be a UUID, got '{}'", printable(lock_id))));
        }
        let a = self
            .state()
            .by_lock_id(lock_id)
            .cloned()
            .ok_or_else(|| EngineError::new(ErrorCode::NotFound, format!("lock id {lock_id} not found")))?;
        if !caller.may_see(a.owner.uid) {
            return Err(EngineError::new(
                ErrorCode::Forbidden,
                format!("port {} belongs to another user; only its owner or root may release it", a.port),
            ));
        }
        self.commit(vec![remove_change(&a)])?;
        Ok(ReleaseResponse {
            success: true,
            port: a.port,
            lock_id: a.lock_id,
            message: format!("Port {} released", a.port),
        })
    }

    /// All live allocations, dead holders reaped first.
    pub fn list(&mut self, viewer: &Caller) -> Result<Vec<AllocationView>> {
        self.reap()?;
        Ok(self.state().allocations.values().map(|a| view(a, viewer)).collect())
    }

    /// The live allocation on `port`, if any.
    pub fn allocation_on(&mut self, port: u16, viewer: &Caller) -> Result<Option<AllocationView>> {
        let now = self.host.now();
        let Some(a) = self.state().allocations.get(&port).cloned() else {
            return Ok(None);
        };
        if self.holder_alive(&a, now) {
            return Ok(Some(view(&a, viewer)));
        }
        self.commit(vec![remove_change(&a)])?;
        Ok(None)
    }

    pub fn port_busy_in_kernel(&self, port: u16) -> bool {
        self.host.port_busy(port)
    }

    /// Frees dead holders' allocations; with `force`, every allocation of
    /// the caller (root: of everyone).
    pub fn cleanup(&mut self, force: bool, caller: &Caller) -> Result<usize> {
        let mut cleaned = self.reap()?.len();
        if force {
            let mine: Vec<Change> = self
                .state()
                .allocations
                .values()
                .filter(|a| caller.is_root() || a.owner.uid == caller.uid)
                .map(remove_change)
                .collect();
            cleaned += mine.len();
            self.commit(mine)?;
        }
        Ok(cleaned)
    }

    /// Free ports of a type: from the real config, minus allocated and bound ports.
    pub fn suggest(&self, service_type: &str, count: usize) -> Result<Vec<u16>> {
        suggest(&self.config, self.state(), service_type, count, &*self.host)
    }

    pub fn register_instance(&mut self, req: &RegisterInstanceRequest, caller: &Caller) -> Result<Instance> {
        let id = optional_name(req.instance_id.as_deref(), "instance_id", 100, "-_.")?
            .ok_or_else(|| invalid("instance_id is required"))?
            .to_string();
        if let Some(existing) = self.state().instances.get(&id)
            && !caller.may_see(existing.uid)
        {
            return Err(EngineError::new(ErrorCode::Forbidden, format!("instance {id} belongs to another user")));
        }
        let working_directory = req.working_directory.as_deref().map(validate_path).transpose()?;
        let project_root = req.project_root.as_deref().map(validate_path).transpose()?;
        let ttl_secs = req.ttl_secs.unwrap_or(self.config.instances.ttl_secs);
        if !(1..=7 * 24 * 3600).contains(&ttl_secs) {
            return Err(invalid("ttl_secs must be between 1 and 604800"));
        }
        let metadata = req.metadata.clone().unwrap_or(json!({}));
        if !metadata.is_object() {
            return Err(invalid("metadata must be an object"));
        }
        let now = self.host.now();
        let instance = Instance {
            instance_id: id,
            uid: caller.uid,
            working_directory,
            project_root,
            registered_at: now,
            last_heartbeat: now,
            ttl_secs,
            metadata,
        };
        self.commit(vec![Change::PutInstance(instance.clone())])?;
        Ok(instance)
    }

    pub fn heartbeat(&mut self, id: &str, caller: &Caller) -> Result<Instance> {
        let mut instance = self.owned_instance(id, caller)?;
        instance.last_heartbeat = self.host.now();
        self.commit(vec![Change::PutInstance(instance.clone())])?;
        Ok(instance)
    }

    /// Ends an instance and frees its session-lease allocations.
    pub fn end_instance(&mut self, id: &str, caller: &Caller) -> Result<Vec<u16>> {
        self.owned_instance(id, caller)?;
        let session: Vec<Allocation> = self
            .state()
            .allocations
            .values()
            .filter(|a| a.lease == LeaseKind::Session && a.instance_id == id)
            .cloned()
            .collect();
        let mut changes: Vec<Change> = session.iter().map(remove_change).collect();
        changes.push(Change::RemoveInstance(id.to_string()));
        self.commit(changes)?;
        Ok(session.iter().map(|a| a.port).collect())
    }

    fn owned_instance(&mut self, id: &str, caller: &Caller) -> Result<Instance> {
        self.reap()?;
        let instance =
            self.state().instances.get(id).cloned().ok_or_else(|| {
                EngineError::new(ErrorCode::NotFound, format!("instance {} not found", printable(id)))
            })?;
        if !caller.may_see(instance.uid) {
            return Err(EngineError::new(ErrorCode::Forbidden, format!("instance {id} belongs to another user")));
        }
        Ok(instance)
    }

    pub fn instances(&mut self) -> Result<Vec<Instance>> {
        self.reap()?;
        Ok(self.state().instances.values().cloned().collect())
    }

    /// Removes an auto-allocated type; refused while allocations of it live.
    pub fn undo_auto_type(&mut self, name: &str, caller: &Caller) -> Result<AutoType> {
        let t = self.state().auto_types.get(name).cloned().ok_or_else(|| {
            EngineError::new(
                ErrorCode::NotFound,
                format!("'{}' is not an auto-allocated service type", printable(name)),
            )
        })?;
        if !caller.may_see(t.created_by_uid) {
            return Err(EngineError::new(ErrorCode::Forbidden, format!("'{name}' was created by another user")));
        }
        self.reap()?;
        let live = self.state().allocations.values().filter(|a| a.service_type == name).count();
        if live > 0 {
            return Err(EngineError::new(
                ErrorCode::Conflict,
                format!("'{name}' still has {live} live allocation(s); release them first"),
            ));
        }
        self.commit(vec![
            Change::RemoveAutoType(name.to_string()),
            Change::Audit(AuditEntry {
                at: self.host.now(),
                action: "auto_allocation_undo".into(),
                service_type: name.to_string(),
                range: Some(t.range),
                uid: caller.uid,
            }),
        ])?;
        Ok(t)
    }

    /// Records a health [`Report`] (see [`health::check`]). The engine has
    /// the last word: a holder reported gone is released only if the engine
    /// finds it gone too (the report may be a few milliseconds old), and a
    /// listening failure is only counted until `health.max_failures` is
    /// reached.
    pub fn apply_health(&mut self, report: &Report) -> Result<Vec<Released>> {
        let reported: HashMap<&str, Failure> =
            report.findings.iter().filter_map(|f| Some((f.lock_id.as_str(), f.failure?))).collect();
        let mut released = Vec::new();
        if reported.values().any(|f| f.is_final()) || !report.expired_instances.is_empty() {
            for a in self.reap()? {
                // Reaping also frees holders that died since the pass.
                let reason = reported.get(a.lock_id.as_str()).copied().unwrap_or(match a.lease {
                    LeaseKind::Session => Failure::SessionExpired,
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

/// Up to `count` free ports of `service_type` in policy order (preferred
/// ports, then the range): not held by a live allocation of `state`, not
/// busy in `host`'s kernel. `config` must include the auto-allocated types.
/// Lock-free readers (the observer) call this on a state they read.
pub fn suggest(config: &Config, state: &State, service_type: &str, count: usize, host: &dyn Host) -> Result<Vec<u16>> {
    let now = host.now();
    let t = config.service_types.get(service_type).ok_or_else(|| {
        EngineError::new(ErrorCode::UnknownServiceType, format!("unknown service type '{}'", printable(service_type)))
    })?;
    let [start, end] = t.range;
    Ok(t.preferred_ports
        .iter()
        .copied()
        .chain(start..=end)
        .scan(HashSet::new(), |seen, p| Some(seen.insert(p).then_some(p)))
        .flatten()
        .filter(|p| state.allocations.get(p).is_none_or(|a| !holder_alive(state, a, now, host)))
        .filter(|p| !host.port_busy(*p))
        .take(count)
        .collect())
}

/// Where to look for a port: a few single candidates, then whole ranges.
struct Candidates {
    first: Vec<u16>,
    runs: Vec<std::ops::RangeInclusive<u16>>,
}

fn remove_change(a: &Allocation) -> Change {
    Change::RemoveAllocation { port: a.port, lock_id: a.lock_id.clone() }
}

fn internal(e: impl std::fmt::Display) -> EngineError {
    EngineError::new(ErrorCode::Internal, format!("state store: {e}"))
}

fn invalid(message: impl Into<String>) -> EngineError {
    EngineError::new(ErrorCode::InvalidField, message)
}

fn sticky_key(project: Option<&str>, name: &str) -> String {
    format!("{}\u{0}{name}", project.unwrap_or(""))
}

/// Shows untrusted text in a message without control characters, bounded.
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(100).collect()
}

/// A port as a number or a numeric string, 1..=65535.
pub fn parse_port(v: &serde_json::Value) -> Result<u16> {
    let n = match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.len() <= 5 => {
            s.parse().ok()
        }
        _ => None,
    };
    match n {
        Some(p @ 1..=65535) => Ok(p as u16),
        _ => Err(EngineError::new(
            ErrorCode::InvalidPort,
            format!("invalid port {}: must be a whole number from 1 to 65535", printable(&v.to_string())),
        )),
    }
}

fn optional_name<'a>(v: Option<&'a str>, field: &str, max: usize, extra: &str) -> Result<Option<&'a str>> {
    let Some(v) = v.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let ok = v.chars().count() <= max && v.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(c));
    if ok {
        Ok(Some(v))
    } else {
        Err(invalid(format!("{field} may contain only letters, digits and '{extra}', at most {max} characters")))
    }
}

fn validate_path(p: &str) -> Result<String> {
    if p.chars().count() > 1000 || p.chars().any(|c| c.is_control()) {
        return Err(invalid("paths must be at most 1000 characters without control characters"));
    }
    Ok(p.to_string())
}

/// An allocation as `viewer` may see it.
pub fn view(a: &Allocation, viewer: &Caller) -> AllocationView {
    let mut allocation = a.clone();
    let visible = viewer.may_see(a.owner.uid);
    if !visible {
        allocation.owner.pid = None;
        allocation.owner.start_time = None;
        allocation.project_path = None;
    }
    AllocationView {
        process: allocation.owner.pid.and_then(process::comm),
        user: process::user_name(a.owner.uid),
        allocation,
    }
}

fn holder_of(a: &Allocation, viewer: &Caller) -> Holder {
    let visible = viewer.may_see(a.owner.uid);
    let pid = a.owner.pid.filter(|_| visible);
    Holder {
        uid: a.owner.uid,
        user: process::user_name(a.owner.uid),
        pid,
        process: pid.and_then(process::comm),
        service_type: Some(a.service_type.clone()),
        service_name: Some(a.service_name.clone()),
        project: a.project_path.clone().filter(|_| visible),
        instance_id: Some(a.instance_id.clone()).filter(|_| visible),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Finding;
    use crate::host::fake::FakeHost;
    use crate::recovery::Verdict;
    use crate::recovery::tests::{directory_with_backups, kept_aside};
    use styxy_proto::paths;

    /// When the tests run, by the fake clock.
    const NOW: Millis = 1_750_000_000_000;

    struct Fixture {
        _dir: tempfile::TempDir,
        engine: Engine,
        host: FakeHost,
    }

    /// An engine on a fake machine where this test process runs.
    fn fixture_with(config: Config) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        let host = FakeHost::at(NOW);
        host.run(std::process::id(), paths::uid());
        let engine = Engine::new(config, store, None, Box::new(host.clone())).unwrap();
        Fixture { _dir: dir, engine, host }
    }

    fn fixture() -> Fixture {
        fixture_with(Config::builtin())
    }

    fn me() -> Caller {
        Caller { uid: paths::uid(), pid: Some(std::process::id()), start_time: None }
    }

    fn other_user() -> Caller {
        Caller { uid: 4242, pid: None, start_time: None }
    }

    fn req(service_type: &str) -> AllocateRequest {
        AllocateRequest { service_type: Some(service_type.into()), ..Default::default() }
    }

    fn port_of(f: &mut Fixture, r: AllocateRequest, who: &Caller) -> u16 {
        f.engine.allocate(&r, who).unwrap().port
    }

    #[test]
    fn candidates_go_requested_then_preferred_then_range() {
        let mut f = fixture();
        let me = me();
        let mut r = req("dev");
        r.preferred_port = Some(json!(3050));
        assert_eq!(port_of(&mut f, r, &me), 3050, "requested port first");
        assert_eq!(port_of(&mut f, req("dev"), &me), 3000, "then preferred ports");
        f.host.bind(3001);
        assert_eq!(port_of(&mut f, req("dev"), &me), 3002, "a port bound in the kernel is skipped");
        for p in [3003, 3004] {
            assert_eq!(port_of(&mut f, req("dev"), &me), p);
        }
    }

    #[test]
    fn sticky_port_returns_for_the_same_project_and_name() {
        let mut f = fixture();
        let me = me();
        let mut r = req("api");
        r.service_name = Some("backend".into());
        r.project_path = Some("/home/u/p".into());
        r.preferred_port = Some(json!(8042));
        let first = f.engine.allocate(&r, &me).unwrap();
        f.engine.release(&first.lock_id, &me).unwrap();
        r.preferred_port = None;
        assert_eq!(port_of(&mut f, r.clone(), &me), 8042, "sticky beats the preferred ports");
        r.service_name = Some("other".into());
        assert_eq!(port_of(&mut f, r, &me), 8000);
    }

    #[test]
    fn range_exhaustion_is_a_clear_refusal() {
        let mut f = fixture();
        for p in 6006..=6029 {
            f.host.bind(p);
        }
        let e = f.engine.allocate(&req("storybook"), &me()).unwrap_err();
        assert_eq!(e.code, ErrorCode::RangeExhausted);
        assert!(e.message.contains("6006-6029"), "{}", e.message);
    }

    #[test]
    fn singleton_types_hand_everyone_the_same_port() {
        let mut f = fixture();
        let a = f.engine.allocate(&req("ai"), &me()).unwrap();
        let b = f.engine.allocate(&req("ai"), &me()).unwrap();
        assert_eq!(a.port, 11430);
        assert_eq!((b.port, b.existing, b.success), (11430, true, true));
        assert_eq!(f.engine.state().allocations.len(), 1);
        f.engine.release(&a.lock_id, &me()).unwrap();
        assert!(!f.engine.allocate(&req("ai"), &me()).unwrap().existing, "released singleton is free again");
    }

    #[test]
    fn a_dead_holder_is_reclaimed_when_the_walk_meets_it() {
        let mut f = fixture();
        let child = f.host.spawn(paths::uid());
        let mut r = req("dev");
        r.pid = Some(child);
        let held = f.engine.allocate(&r, &me()).unwrap();
        assert_eq!(port_of(&mut f, req("dev"), &me()), 3001, "held while the owner lives");
        f.host.kill(child);
        let again = port_of(&mut f, req("dev"), &me());
        assert_eq!(again, held.port, "the dead owner's port is handed out again");
        assert!(f.engine.state().by_lock_id(&held.lock_id).is_none());
    }

    #[test]
    fn unknown_types_are_refused_with_the_known_list_unless_auto_allocation_is_on() {
        let mut f = fixture();
        let before = f.engine.store().generation();
        let e = f.engine.allocate(&req("grafana"), &me()).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownServiceType);
        assert!(e.message.contains("dev") && e.message.contains("api"), "{}", e.message);
        assert_eq!(f.engine.store().generation(), before, "a refusal changes nothing");

        let mut config = Config::builtin();
        config.auto_allocation.enabled = true;
        let mut f = fixture_with(config);
        let r = f.engine.allocate(&req("monitoring-grafana"), &me()).unwrap();
        assert!(r.auto_allocated);
        let range = r.allocated_range.unwrap();
        assert!(range[0] >= 10000 && (range[0]..=range[1]).contains(&r.port));
        assert_eq!(f.engine.state().audit.last().unwrap().action, "auto_allocation");
        let again = f.engine.allocate(&req("monitoring-grafana"), &me()).unwrap();
        assert!(!again.auto_allocated, "the second request uses the carved type");

        let e = f.engine.undo_auto_type("monitoring-grafana", &me()).unwrap_err();
        assert_eq!(e.code, ErrorCode::Conflict, "undo waits for live allocations");
        f.engine.cleanup(true, &me()).unwrap();
        f.engine.undo_auto_type("monitoring-grafana", &me()).unwrap();
        assert!(!f.engine.config().service_types.contains_key("monitoring-grafana"));
    }

    #[test]
    fn invalid_names_are_refused_before_anything_is_persisted() {
        let mut config = Config::builtin();
        config.auto_allocation.enabled = true;
        let mut f = fixture_with(config);
        let before = f.engine.store().generation();
        let long = "x".repeat(10_000);
        for bad in ["Bad Type!", "a/b", "nul\0", "new\nline", long.as_str()] {
            let e = f.engine.allocate(&req(bad), &me()).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidField, "{bad:?}");
            let mut r = req("dev");
            r.service_name = Some(bad.to_string());
            assert_eq!(f.engine.allocate(&r, &me()).unwrap_err().code, ErrorCode::InvalidField);
        }
        for port in [json!(0), json!(65536), json!("abc"), json!(-1), json!(3.5), json!([1])] {
            let mut r = req("dev");
            r.preferred_port = Some(port.clone());
            assert_eq!(f.engine.allocate(&r, &me()).unwrap_err().code, ErrorCode::InvalidPort, "{port}");
        }
        assert_eq!(f.engine.store().generation(), before);
        assert!(f.engine.state().auto_types.is_empty());
    }

    #[test]
    fn only_the_owner_or_root_may_release() {
        let mut f = fixture();
        let mut r = req("dev");
        r.lease = Some(LeaseKind::Manual);
        let theirs = f.engine.allocate(&r, &other_user()).unwrap();
        let e = f.engine.release(&theirs.lock_id, &Caller { uid: 4343, pid: None, start_time: None }).unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
        let e = f.engine.release(&uuid::Uuid::new_v4().to_string(), &me()).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        assert_eq!(f.engine.release("not-a-uuid", &me()).unwrap_err().code, ErrorCode::InvalidField);
        f.engine.release(&theirs.lock_id, &Caller { uid: 0, pid: None, start_time: None }).unwrap();
    }

    #[test]
    fn other_users_see_no_pid_or_project() {
        let mut f = fixture();
        let mut r = req("dev");
        r.project_path = Some("/home/me/secret".into());
        f.engine.allocate(&r, &me()).unwrap();
        let seen = f.engine.list(&other_user()).unwrap();
        assert_eq!(seen[0].allocation.owner.pid, None);
        assert_eq!(seen[0].allocation.project_path, None);
        let mine = f.engine.list(&me()).unwrap();
        assert_eq!(mine[0].allocation.owner.pid, Some(std::process::id()));
    }

    #[test]
    fn session_leases_end_with_their_instance() {
        let mut f = fixture();
        let mut r = req("dev");
        r.lease = Some(LeaseKind::Session);
        r.instance_id = Some("claude-1".into());
        assert_eq!(f.engine.allocate(&r, &me()).unwrap_err().code, ErrorCode::NotFound, "needs a live instance");
        let reg = RegisterInstanceRequest { instance_id: Some("claude-1".into()), ..Default::default() };
        f.engine.register_instance(&reg, &me()).unwrap();
        let a = f.engine.allocate(&r, &me()).unwrap();
        assert_eq!(f.engine.end_instance("claude-1", &me()).unwrap(), vec![a.port]);
        assert!(f.engine.state().allocations.is_empty());

        let short =
            RegisterInstanceRequest { instance_id: Some("brief".into()), ttl_secs: Some(1), ..Default::default() };
        f.engine.register_instance(&short, &me()).unwrap();
        r.instance_id = Some("brief".into());
        f.engine.allocate(&r, &me()).unwrap();
        f.host.advance(1100);
        assert_eq!(f.engine.reap().unwrap().len(), 1, "an expired session frees its ports");
        assert!(f.engine.state().instances.is_empty());
    }

    #[test]
    fn a_pid_of_another_user_cannot_be_named_as_owner() {
        let mut f = fixture();
        f.host.run(1, 0);
        let mut r = req("dev");
        r.pid = Some(1);
        let caller = Caller { uid: 4242, pid: None, start_time: None };
        assert_eq!(f.engine.allocate(&r, &caller).unwrap_err().code, ErrorCode::Forbidden);
    }

    #[test]
    fn preload_moves_stay_in_the_ports_type_and_name_the_holder() {
        let mut f = fixture();
        let mut held = req("api");
        held.preferred_port = Some(json!(8000));
        held.service_name = Some("backend".into());
        f.engine.allocate(&held, &me()).unwrap();
        f.host.bind(8000);
        let mv =
            AllocateRequest { preferred_port: Some(json!(8000)), source: Some(Source::Preload), ..Default::default() };
        let r = f.engine.allocate(&mv, &me()).unwrap();
        assert_eq!((r.port, r.requested_port, r.service_type.as_str()), (8001, Some(8000), "api"));
        assert_eq!(r.requested_port_holder.unwrap().service_name.as_deref(), Some("backend"));

        let far =
            AllocateRequest { preferred_port: Some(json!(20000)), source: Some(Source::Preload), ..Default::default() };
        f.host.bind(20000);
        let r = f.engine.allocate(&far, &me()).unwrap();
        assert_eq!((r.port, r.service_type.as_str()), (20001, UNMANAGED_TYPE));
    }

    #[test]
    fn the_per_user_limit_holds() {
        let mut config = Config::builtin();
        config.limits.max_allocations_per_user = 2;
        let mut f = fixture_with(config);
        let who = other_user();
        let mut r = req("dev");
        r.lease = Some(LeaseKind::Manual);
        let first = f.engine.allocate(&r, &who).unwrap();
        f.engine.allocate(&r, &who).unwrap();
        assert_eq!(f.engine.allocate(&r, &who).unwrap_err().code, ErrorCode::QuotaExceeded);
        f.engine.allocate(&r, &me()).unwrap();
        f.engine.release(&first.lock_id, &who).unwrap();
        f.engine.allocate(&r, &who).expect("a release makes room under the limit");
    }

    #[test]
    fn a_range_crowded_with_allocations_of_every_lease_yields_its_first_free_port() {
        let mut config = Config::builtin();
        config.limits.max_allocations_per_user = 100_000;
        let mut f = fixture_with(config);
        let mut manual = req("dev");
        manual.lease = Some(LeaseKind::Manual);
        let held: Vec<AllocateResponse> = (0..70).map(|_| f.engine.allocate(&manual, &me()).unwrap()).collect();
        assert_eq!(held.last().unwrap().port, 3069);
        // A process lease inside the crowd is looked at, and passed while it lives.
        let child = f.host.spawn(paths::uid());
        f.engine.release(&held[40].lock_id, &me()).unwrap();
        let mut process = req("dev");
        process.pid = Some(child);
        let owned = f.engine.allocate(&process, &me()).unwrap();
        assert_eq!(owned.port, 3040, "the released port is the first free one");
        f.engine.release(&held[10].lock_id, &me()).unwrap();
        assert_eq!(port_of(&mut f, manual.clone(), &me()), 3010);
        assert_eq!(port_of(&mut f, manual.clone(), &me()), 3070, "past the live process lease");
        f.host.kill(child);
        f.engine.release(&held[5].lock_id, &me()).unwrap();
        assert_eq!(port_of(&mut f, manual.clone(), &me()), 3005);
        assert_eq!(port_of(&mut f, manual, &me()), 3040, "the dead holder's port is reclaimed");
    }

    #[test]
    fn a_caller_pinned_by_its_connection_owns_its_allocations_without_a_proc_lookup() {
        let mut f = fixture();
        // A pid that names no process: only the pinned identity can vouch for it.
        let gone = Caller { uid: paths::uid(), pid: Some(u32::MAX - 1), start_time: Some(77) };
        let mut r = req("dev");
        r.lease = Some(LeaseKind::Manual);
        let a = f.engine.allocate(&r, &gone).unwrap();
        let owner = &f.engine.state().allocations[&a.port].owner;
        assert_eq!((owner.pid, owner.start_time), (Some(u32::MAX - 1), Some(77)));
        let unpinned = Caller { start_time: None, ..gone };
        assert_eq!(f.engine.allocate(&r, &unpinned).unwrap_err().code, ErrorCode::InvalidField);
    }

    // Recording health reports: the engine has the last word.

    fn with_max_failures(max_failures: u32) -> Fixture {
        let mut config = Config::builtin();
        config.health.max_failures = max_failures;
        fixture_with(config)
    }

    fn allocate_for(engine: &mut Engine, pid: u32, port: u16) -> (u16, String) {
        let req = AllocateRequest {
            service_type: Some("dev".into()),
            preferred_port: Some(json!(port)),
            pid: Some(pid),
            ..Default::default()
        };
        let me = Caller { uid: paths::uid(), pid: None, start_time: None };
        let r = engine.allocate(&req, &me).unwrap();
        (r.port, r.lock_id)
    }

    #[test]
    fn listening_failures_release_at_the_configured_limit_and_reset_when_healthy() {
        let mut f = with_max_failures(3);
        let (port, lock_id) = allocate_for(&mut f.engine, std::process::id(), 3050);
        let failing = Report {
            findings: vec![Finding { port, lock_id: lock_id.clone(), failure: Some(Failure::NotListening) }],
            expired_instances: vec![],
        };
        assert!(f.engine.apply_health(&failing).unwrap().is_empty());
        assert!(f.engine.apply_health(&failing).unwrap().is_empty());
        assert_eq!(f.engine.state().by_lock_id(&lock_id).unwrap().health_failures, 2, "counted in the state");

        let healthy =
            Report { findings: vec![Finding { failure: None, ..failing.findings[0].clone() }], ..failing.clone() };
        f.engine.apply_health(&healthy).unwrap();
        assert_eq!(
            f.engine.state().by_lock_id(&lock_id).unwrap().health_failures,
            0,
            "a healthy check resets the count"
        );

        for _ in 0..2 {
            assert!(f.engine.apply_health(&failing).unwrap().is_empty());
        }
        let released = f.engine.apply_health(&failing).unwrap();
        assert_eq!(released, vec![Released { port, lock_id: lock_id.clone(), reason: Failure::NotListening }]);
        assert!(f.engine.state().by_lock_id(&lock_id).is_none());
    }

    #[test]
    fn a_reported_death_is_checked_by_the_engine_before_release() {
        let mut f = with_max_failures(3);
        let child = f.host.spawn(paths::uid());
        let (living_port, living) = allocate_for(&mut f.engine, std::process::id(), 3060);
        let (dying_port, dying) = allocate_for(&mut f.engine, child, 3061);
        let report = Report {
            findings: vec![
                Finding { port: living_port, lock_id: living.clone(), failure: Some(Failure::Exited) },
                Finding { port: dying_port, lock_id: dying.clone(), failure: Some(Failure::Exited) },
            ],
            expired_instances: vec![],
        };
        assert!(
            f.engine.apply_health(&report).unwrap().is_empty(),
            "both owners still run: a stale report frees nothing"
        );
        f.host.kill(child);
        let released = f.engine.apply_health(&report).unwrap();
        assert_eq!(released, vec![Released { port: dying_port, lock_id: dying, reason: Failure::Exited }]);
        assert!(f.engine.state().by_lock_id(&living).is_some());
    }

    #[test]
    fn a_file_damaged_under_a_running_writer_is_rewritten_from_memory() {
        let dir = directory_with_backups();
        let (store, _) = Store::open(dir.path()).unwrap();
        let mut engine = Engine::new(Config::builtin(), store, None, Box::new(FakeHost::at(NOW))).unwrap();
        let held = engine.state().clone();
        std::fs::write(dir.path().join("state.json"), b"{ damaged").unwrap();
        assert!(crate::store::read_state(dir.path()).is_err());

        let outcome = engine.recover().unwrap();
        assert_eq!(outcome.verdict(), Verdict::Restored);
        assert_eq!(crate::store::read_state(dir.path()).unwrap(), held, "the writer's state is on disk again");
        let aside = kept_aside(dir.path());
        assert!(aside.iter().any(|n| std::fs::read(dir.path().join(n)).unwrap() == b"{ damaged"), "{aside:?}");
        assert_eq!(engine.recover().unwrap().verdict(), Verdict::Clean, "sound files are left alone");
    }
}
