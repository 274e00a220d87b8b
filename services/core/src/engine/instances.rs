//! Instances (an agent session, say) that register, send heartbeats and
//! end, and the session-lease allocations that end with them.

use serde_json::json;
use styxy_proto::api::{ErrorCode, RegisterInstanceRequest};
use styxy_proto::model::{Allocation, Change, Instance, LeaseKind};

use styxy_proto::caller::Caller;
use styxy_proto::error::{ApiError, printable};

use super::validate::{SHOWN, invalid, optional_name, validate_path};
use super::{Engine, Result, remove_change};

impl Engine {
    pub fn register_instance(&mut self, req: &RegisterInstanceRequest, caller: &Caller) -> Result<Instance> {
        let id = optional_name(req.instance_id.as_deref(), "instance_id", 100, "-_.")?
            .ok_or_else(|| invalid("instance_id is required"))?
            .to_string();
        if let Some(existing) = self.state().instances.get(&id)
            && !caller.may_see(existing.uid)
        {
            return Err(ApiError::new(ErrorCode::Forbidden, format!("instance {id} belongs to another user")));
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
        let instance = self.state().instances.get(id).cloned().ok_or_else(|| {
            ApiError::new(ErrorCode::NotFound, format!("instance {} not found", printable(id, SHOWN)))
        })?;
        if !caller.may_see(instance.uid) {
            return Err(ApiError::new(ErrorCode::Forbidden, format!("instance {id} belongs to another user")));
        }
        Ok(instance)
    }

    pub fn instances(&mut self) -> Result<Vec<Instance>> {
        self.reap()?;
        Ok(self.state().instances.values().cloned().collect())
    }
}
