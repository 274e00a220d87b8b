//! Instances (an agent session, say) that register, send heartbeats and
//! end, and the session-lease allocations that end with them. An instance is
//! owned like an allocation: only its user (or root) may renew, end or
//! attach to it, and each user registers a bounded number. An id stays its
//! user's after the instance ends or expires, so nobody else takes it over.

use std::collections::{HashMap, HashSet};

use serde_json::json;
use styxy_observe::process;
use styxy_proto::api::{ErrorCode, InstanceView, RegisterInstanceRequest};
use styxy_proto::model::{Allocation, Change, Instance, Millis};

use styxy_proto::caller::{Caller, redact};
use styxy_proto::error::{ApiError, printable};

use super::validate::{SHOWN, invalid, optional_name, validate_path};
use super::{Engine, Result, pruned, remove_change};
use crate::health::in_session;

/// The largest metadata an instance may carry, encoded: enough for what
/// agents record (a session id, pids), small enough that a user's instances
/// stay a small part of the state.
pub const MAX_METADATA: usize = 2048;

/// How long an ended or expired instance's id stays bound to its user.
pub(super) const RETIRED_ID_MAX_AGE: Millis = 30 * 24 * 3600 * 1000;

/// How many ended or expired ids each user keeps bound, the oldest forgotten
/// first: a user's whole share of them is a few hundred KB of state.
pub(super) const RETIRED_IDS_PER_USER: usize = 1024;

impl Engine {
    pub fn register_instance(&mut self, req: &RegisterInstanceRequest, caller: &Caller) -> Result<Instance> {
        let id = optional_name(req.instance_id.as_deref(), "instance_id", 100, "-_.")?
            .ok_or_else(|| invalid("instance_id is required"))?
            .to_string();
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
        if metadata.to_string().len() > MAX_METADATA {
            return Err(invalid(format!("metadata must encode to at most {MAX_METADATA} bytes of JSON")));
        }
        self.reap()?;
        match self.state().instances.get(&id) {
            Some(existing) if !caller.may_see(existing.uid) => {
                return Err(ApiError::new(ErrorCode::Forbidden, format!("instance {id} belongs to another user")));
            }
            Some(_) => {}
            None if self.state().retired_instances.get(&id).is_some_and(|r| !caller.may_see(r.uid)) => {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    format!(
                        "instance {id} was another user's and stays theirs for {} days after it ended or expired; \
                         register under another id",
                        RETIRED_ID_MAX_AGE / (24 * 3600 * 1000)
                    ),
                ));
            }
            None if !caller.is_root() => {
                let held = self.state().instances.values().filter(|i| i.uid == caller.uid).count();
                let limit = self.config.limits.max_instances_per_user;
                if held >= limit {
                    return Err(ApiError::new(
                        ErrorCode::QuotaExceeded,
                        format!("user {} already has {held} registered instances (limit {limit})", caller.uid),
                    ));
                }
            }
            None => {}
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
        let mut changes = Vec::new();
        if self.state().retired_instances.contains_key(&instance.instance_id) {
            changes.push(Change::ForgetRetiredInstance(instance.instance_id.clone()));
        }
        changes.push(Change::PutInstance(instance.clone()));
        self.commit(changes)?;
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
        let instance = self.owned_instance(id, caller)?;
        let session: Vec<Allocation> =
            self.state().allocations.values().filter(|a| in_session(a, &instance)).cloned().collect();
        let mut changes: Vec<Change> = session.iter().map(remove_change).collect();
        changes.extend(self.retirements(&[&instance], self.host.now()));
        self.commit(changes)?;
        Ok(session.iter().map(|a| a.port).collect())
    }

    /// The changes that end `ending` and keep their ids bound to their
    /// users, with the prunings that keep those bounds bounded: every bound
    /// id older than [`RETIRED_ID_MAX_AGE`], then the oldest of a user beyond
    /// [`RETIRED_IDS_PER_USER`].
    pub(super) fn retirements(&self, ending: &[&Instance], now: Millis) -> Vec<Change> {
        if ending.is_empty() {
            return Vec::new();
        }
        let ids: HashSet<&str> = ending.iter().map(|i| i.instance_id.as_str()).collect();
        let mut new_per_user: HashMap<u32, usize> = HashMap::new();
        for i in ending {
            *new_per_user.entry(i.uid).or_default() += 1;
        }
        let mut bound: HashMap<u32, Vec<(&String, Millis)>> = HashMap::new();
        for (id, r) in &self.state().retired_instances {
            if !ids.contains(id.as_str()) {
                bound.entry(r.uid).or_default().push((id, r.at));
            }
        }
        let mut changes: Vec<Change> = bound
            .into_iter()
            .flat_map(|(uid, mine)| {
                let keep = RETIRED_IDS_PER_USER.saturating_sub(new_per_user.get(&uid).copied().unwrap_or(0));
                pruned(mine, keep, RETIRED_ID_MAX_AGE, now)
            })
            .map(|id| Change::ForgetRetiredInstance(id.clone()))
            .collect();
        changes.extend(ending.iter().map(|i| Change::RetireInstance {
            instance_id: i.instance_id.clone(),
            uid: i.uid,
            at: now,
        }));
        changes
    }

    fn owned_instance(&mut self, id: &str, caller: &Caller) -> Result<Instance> {
        self.reap()?;
        let instance = self.state().instances.get(id).cloned().ok_or_else(|| {
            ApiError::new(ErrorCode::NotFound, format!("instance {} not found", printable(id, SHOWN)))
        })?;
        if !caller.may_see(instance.uid) {
            return Err(ApiError::new(ErrorCode::Forbidden, format!("instance {id} belongs to another user")));
        }
        Ok(instance)
    }

    /// Refuses to tag an allocation with an instance of another user: its
    /// agent would take the port for its own session's.
    pub(super) fn check_instance_tag(&self, id: &str, caller: &Caller) -> Result<()> {
        match self.state().instances.get(id) {
            Some(i) if !caller.may_see(i.uid) => Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("instance {id} belongs to another user; tag allocations with your own instances"),
            )),
            _ => Ok(()),
        }
    }

    /// The live instances as `viewer` may see them, each with its user's
    /// name and the service types its session leases hold.
    pub fn instances(&mut self, viewer: &Caller) -> Result<Vec<InstanceView>> {
        self.reap()?;
        let state = self.state();
        let mut tagged: HashMap<&str, Vec<&Allocation>> = HashMap::new();
        for a in state.allocations.values() {
            tagged.entry(a.instance_id.as_str()).or_default().push(a);
        }
        Ok(state
            .instances
            .values()
            .map(|i| {
                let held = tagged.get(i.instance_id.as_str()).map_or(&[][..], Vec::as_slice);
                let mut service_types: Vec<String> =
                    held.iter().filter(|a| in_session(a, i)).map(|a| a.service_type.clone()).collect();
                service_types.sort_unstable();
                service_types.dedup();
                let mut view = InstanceView {
                    instance: i.clone().into(),
                    user: process::user_name(i.uid),
                    service_types,
                    // The original's field: what is tagged with this instance, of its own user.
                    active_allocations: held
                        .iter()
                        .filter(|a| a.owner.uid == i.uid)
                        .map(|a| a.lock_id.clone())
                        .collect(),
                };
                redact::instance_view(&mut view, viewer.uid);
                view
            })
            .collect())
    }
}
