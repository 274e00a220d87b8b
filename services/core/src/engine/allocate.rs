//! Handing out ports and taking them back: the candidate walk, singleton
//! reuse, the per-user limit, auto-allocated types, release and clean-up,
//! and how an allocation looks to a given viewer.

use std::collections::HashSet;

use serde_json::json;
use styxy_observe::process;
use styxy_proto::api::{AllocateRequest, AllocateResponse, AllocationView, ErrorCode, Holder, ReleaseResponse};
use styxy_proto::model::{Allocation, AuditEntry, AutoType, Change, LeaseKind, Millis, Owner, Source, State};

use styxy_proto::caller::{Caller, redact};
use styxy_proto::error::{ApiError, printable};

use super::validate::{SHOWN, invalid, optional_name, parse_port, validate_path};
use super::{Engine, Result, holder_alive, pruned, remove_change};
use crate::autoalloc;
use crate::config::{Config, InstanceBehavior};
use crate::host::Host;

/// Service label for preload moves of ports outside every managed range.
pub const UNMANAGED_TYPE: &str = "unmanaged";
/// The instance an allocation is tagged with when the client names none.
const DEFAULT_INSTANCE: &str = "default";
/// How far above a busy unmanaged port a preload move may land.
const UNMANAGED_SPAN: u32 = 1000;

impl Engine {
    pub fn allocate(&mut self, req: &AllocateRequest, caller: &Caller) -> Result<AllocateResponse> {
        // Everything is validated before anything is written.
        let requested = req.preferred_port.as_ref().map(parse_port).transpose()?;
        let service_name = optional_name(req.service_name.as_deref(), "service_name", 100, ".-_")?
            .unwrap_or("unnamed-service")
            .to_string();
        let instance_id = optional_name(req.instance_id.as_deref(), "instance_id", 100, "-_.")?
            .unwrap_or(DEFAULT_INSTANCE)
            .to_string();
        let project_path = req.project_path.as_deref().map(validate_path).transpose()?;
        if instance_id != DEFAULT_INSTANCE {
            self.check_instance_tag(&instance_id, caller)?;
        }
        let scope = req.scope.as_deref().map(validate_path).transpose()?;
        if req.listening {
            let port = requested.ok_or_else(|| invalid("'listening' needs the port listened on (preferred_port)"))?;
            return self.record_listener(req, caller, port, service_name, scope);
        }
        let source = req.source.unwrap_or_default();
        let owner = if req.handoff {
            if req.pid.is_some() {
                return Err(invalid("'handoff' and 'pid' exclude each other: a hand-off has no owner process yet"));
            }
            if req.lease.is_some_and(|l| l != LeaseKind::Process) {
                return Err(invalid("'handoff' holds a process lease; leave 'lease' out or set it to 'process'"));
            }
            Owner { uid: caller.uid, pid: None, start_time: None }
        } else {
            self.owner_for(req.pid, caller)?
        };
        let lease = req.lease.unwrap_or(if owner.pid.is_some() || req.handoff {
            LeaseKind::Process
        } else {
            LeaseKind::Manual
        });
        let now = self.host.now();
        let handoff_grace_secs = req.handoff.then_some(self.config.health.handoff_grace_secs);
        match lease {
            LeaseKind::Process if owner.pid.is_none() && !req.handoff => {
                return Err(invalid("lease 'process' needs an owner pid (field 'pid')"));
            }
            LeaseKind::Session => {
                // Another user's instance was refused above.
                let live = self.state().instances.get(&instance_id).is_some_and(|i| !i.expired(now));
                if !live {
                    return Err(ApiError::new(
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

        if let Some(existing) = self.live_singleton(&service_type, caller, now) {
            let message = format!("Service '{service_type}' allows a single instance; reusing port {}", existing.port);
            return Ok(AllocateResponse {
                existing: true,
                existing_instance_id: caller.may_see(existing.owner.uid).then(|| existing.instance_id.clone()),
                existing_pid: existing.owner.pid.filter(|_| caller.may_see(existing.owner.uid)),
                dry_run: req.dry_run,
                ..AllocateResponse::of(existing, message)
            });
        }

        if !caller.is_root() {
            self.check_quota(&service_type, auto.as_ref(), caller)?;
        }

        // A move in a scope comes back to the port the scope's server had.
        let sticky_key = match (source, &scope, requested) {
            (Source::Preload, Some(scope), Some(p)) => scope_sticky_key(owner.uid, scope, p),
            _ => sticky_key(caller.uid, project_path.as_deref(), &service_name),
        };
        let candidates = self.candidates(&service_type, requested, source, &sticky_key, auto.as_ref())?;
        let mut reclaimed = Vec::new();
        let chosen = self.first_free(&candidates, now, &mut reclaimed);
        let holder = requested
            .filter(|p| chosen != Some(*p))
            .and_then(|p| self.state().allocations.get(&p))
            .filter(|a| self.holder_alive(a, now))
            .map(|a| self.holder_of(a, caller));
        let Some(port) = chosen else {
            let range = self.range_of(&service_type, auto.as_ref());
            return Err(ApiError::new(
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
            existing_instance_id: None,
            existing_pid: None,
            dry_run: req.dry_run,
            requested_port: moved,
            requested_port_holder: holder,
            auto_allocated: auto.is_some(),
            allocated_range: auto.as_ref().map(|t| t.range),
            chunk_size: auto.as_ref().map(|t| t.chunk_size),
            placement: auto.as_ref().map(|t| t.placement.clone()),
            handoff_grace_secs,
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
            handoff_until: handoff_grace_secs.map(|secs| now.saturating_add(secs.saturating_mul(1000))),
            scope,
            ..Allocation::new(port, service_type.clone(), service_name, owner, lease)
        };
        response.lock_id = allocation.lock_id.clone();
        response.message = format!("Port {port} allocated for {service_type} service");
        changes.extend(reclaimed.iter().map(remove_change));
        changes.push(Change::PutAllocation(allocation));
        changes.extend(self.sticky_pruning(caller.uid, &sticky_key, now));
        changes.push(Change::SetSticky { key: sticky_key, port, uid: caller.uid, at: now });
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
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidField, format!("pid {pid} does not exist")))?;
        let uid = self.host.uid_of(pid).unwrap_or(u32::MAX);
        if !caller.is_root() && uid != caller.uid {
            return Err(ApiError::new(
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
            autoalloc::AutoAllocError::InvalidName { .. } => ApiError::new(
                ErrorCode::InvalidField,
                "service_type may contain only letters, digits and '-', at most 50 characters",
            ),
            autoalloc::AutoAllocError::Disabled { .. } => {
                let known: Vec<&String> = self.config.service_types.keys().collect();
                let list = known.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
                ApiError::new(
                    ErrorCode::UnknownServiceType,
                    format!("unknown service type '{name}' (auto-allocation is disabled); known types: {list}"),
                )
                .with_context(json!({"provided_service_type": name, "valid_service_types": known}))
            }
            e => ApiError::new(ErrorCode::RangeExhausted, format!("cannot carve a range for '{name}': {e}")),
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
        }
        // The allocation walks the carved range; the configuration gains the
        // type only when the allocation commits, so a refusal leaves none.
        Ok(Some(carved))
    }

    /// The live allocation a singleton type hands out again: one inside the
    /// type's range (a port asked for outside it is no singleton), the
    /// caller's own unless the admin made the type machine-wide.
    fn live_singleton(&self, service_type: &str, caller: &Caller, now: u64) -> Option<&Allocation> {
        let t =
            self.config.service_types.get(service_type).filter(|t| t.instance_behavior == InstanceBehavior::Single)?;
        self.state().allocations.values().find(|a| {
            a.service_type == service_type
                && t.contains(a.port)
                && (t.machine_wide || a.owner.uid == caller.uid)
                && self.holder_alive(a, now)
        })
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
                let sticky = self.state().sticky.get(sticky_key).map(|s| s.port);
                return Ok(Candidates { first: sticky.into_iter().collect(), runs: vec![p.saturating_add(1)..=end] });
            }
            (None, None) => return Err(ApiError::new(ErrorCode::UnknownServiceType, "unknown service type")),
        };
        let sticky = self.state().sticky.get(sticky_key).map(|s| s.port);
        if source == Source::Preload {
            // The busy port itself, the port its scope's server had, then
            // upwards, then wrap around the range.
            let p = requested.unwrap_or(start);
            let above = p.saturating_add(1).max(start)..=end;
            let below = start..=p.min(end.saturating_add(1)).saturating_sub(1);
            return Ok(Candidates { first: [p].into_iter().chain(sticky).collect(), runs: vec![above, below] });
        }
        let sticky = sticky.filter(|p| (start..=end).contains(p));
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
            return Err(invalid(format!("lock_id must be a UUID, got '{}'", printable(lock_id, SHOWN))));
        }
        let a = self
            .state()
            .by_lock_id(lock_id)
            .cloned()
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("lock id {lock_id} not found")))?;
        if !caller.may_see(a.owner.uid) {
            return Err(ApiError::new(
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
        Ok(self.state().allocations.values().map(|a| self.view(a, viewer)).collect())
    }

    /// The live allocation on `port`, if any.
    pub fn allocation_on(&mut self, port: u16, viewer: &Caller) -> Result<Option<AllocationView>> {
        let now = self.host.now();
        let Some(a) = self.state().allocations.get(&port).cloned() else {
            return Ok(None);
        };
        if self.holder_alive(&a, now) {
            return Ok(Some(self.view(&a, viewer)));
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

    /// Removes an auto-allocated type; refused while allocations of it live.
    pub fn undo_auto_type(&mut self, name: &str, caller: &Caller) -> Result<AutoType> {
        let t = self.state().auto_types.get(name).cloned().ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                format!("'{}' is not an auto-allocated service type", printable(name, SHOWN)),
            )
        })?;
        if !caller.may_see(t.created_by_uid) {
            return Err(ApiError::new(ErrorCode::Forbidden, format!("'{name}' was created by another user")));
        }
        self.reap()?;
        let live = self.state().allocations.values().filter(|a| a.service_type == name).count();
        if live > 0 {
            return Err(ApiError::new(
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
}

/// Up to `count` free ports of `service_type` in policy order (preferred
/// ports, then the range): not held by a live allocation of `state`, not
/// busy in `host`'s kernel. `config` must include the auto-allocated types.
/// Lock-free readers (the observer) call this on a state they read.
pub fn suggest(config: &Config, state: &State, service_type: &str, count: usize, host: &dyn Host) -> Result<Vec<u16>> {
    let now = host.now();
    let t = config.service_types.get(service_type).ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnknownServiceType,
            format!("unknown service type '{}'", printable(service_type, SHOWN)),
        )
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

/// Sticky entries are per user: one user's ports never steer another's.
fn sticky_key(uid: u32, project: Option<&str>, name: &str) -> String {
    format!("{uid}\u{0}{}\u{0}{name}", project.unwrap_or(""))
}

/// Sticky entries older than this are dropped when their user next allocates.
pub(super) const STICKY_MAX_AGE: Millis = 30 * 24 * 3600 * 1000;

impl Engine {
    /// Refuses an allocation that would take `caller` past its limits: the
    /// allocations it may hold, and its share of `service_type`'s range.
    pub(super) fn check_quota(&self, service_type: &str, auto: Option<&AutoType>, caller: &Caller) -> Result<()> {
        let limits = &self.config.limits;
        let held = self.occupancy.held_by(caller.uid);
        if held >= limits.max_allocations_per_user {
            return Err(ApiError::new(
                ErrorCode::QuotaExceeded,
                format!(
                    "user {} already holds {held} allocations (limit {})",
                    caller.uid, limits.max_allocations_per_user
                ),
            ));
        }
        let Some([start, end]) = self.range_of(service_type, auto) else {
            return Ok(());
        };
        let size = usize::from(end - start) + 1;
        let share = (size * usize::from(limits.range_share_percent) / 100).max(1);
        let in_type = self.occupancy.held_in_type(caller.uid, service_type);
        if in_type >= share {
            return Err(ApiError::new(
                ErrorCode::QuotaExceeded,
                format!(
                    "user {} already holds {in_type} of the {size} ports of {service_type} ({start}-{end}); \
                     one user may hold {share} ({}%)",
                    caller.uid, limits.range_share_percent
                ),
            )
            .with_context(json!({"service_type": service_type, "port_range": [start, end], "share": share})));
        }
        Ok(())
    }

    /// A type's range, a carved one included.
    fn range_of(&self, service_type: &str, auto: Option<&AutoType>) -> Option<[u16; 2]> {
        self.config.service_types.get(service_type).map(|t| t.range).or(auto.map(|a| a.range))
    }

    /// The removals that keep `uid`'s sticky entries bounded once `key` is
    /// added: entries past [`STICKY_MAX_AGE`], then the oldest beyond the
    /// limit.
    fn sticky_pruning(&self, uid: u32, key: &str, now: Millis) -> Vec<Change> {
        if self.state().sticky.contains_key(key) {
            // Renewing an entry adds none: the common case stays a lookup.
            return Vec::new();
        }
        let prefix = format!("{uid}\u{0}");
        let mine: Vec<(&String, Millis)> = self
            .state()
            .sticky
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| k.as_str() != key)
            .map(|(k, s)| (k, s.at))
            .collect();
        let keep = self.config.limits.max_sticky_per_user.saturating_sub(1);
        pruned(mine, keep, STICKY_MAX_AGE, now).map(|k| Change::RemoveSticky(k.clone())).collect()
    }
}

/// Where `uid`'s server of canonical port `port` in `scope` last landed.
fn scope_sticky_key(uid: u32, scope: &str, port: u16) -> String {
    format!("scope\u{0}{uid}\u{0}{scope}\u{0}{port}")
}

impl Engine {
    /// An allocation as `viewer` may see it.
    fn view(&self, a: &Allocation, viewer: &Caller) -> AllocationView {
        let mut view = AllocationView {
            // Another user's process name would be redacted: not looked up.
            process: a.owner.pid.filter(|_| viewer.may_see(a.owner.uid)).and_then(|pid| self.host.comm(pid)),
            user: process::user_name(a.owner.uid),
            allocation: a.clone().into(),
        };
        redact::allocation_view(&mut view, viewer.uid);
        view
    }

    fn holder_of(&self, a: &Allocation, viewer: &Caller) -> Holder {
        let pid = a.owner.pid.filter(|_| viewer.may_see(a.owner.uid));
        let mut holder = Holder {
            uid: a.owner.uid,
            user: process::user_name(a.owner.uid),
            pid,
            process: pid.and_then(|pid| self.host.comm(pid)),
            service_type: Some(a.service_type.clone()),
            service_name: Some(a.service_name.clone()),
            project: a.project_path.clone(),
            instance_id: Some(a.instance_id.clone()),
        };
        redact::holder(&mut holder, viewer.uid);
        holder
    }
}
