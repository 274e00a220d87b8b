//! A reservation follows its listener (docs/design.md, "Scopes"): under
//! `styxy run` the preload reports each port the command's processes
//! listen on (`"listening":true`), which becomes the listener's own
//! allocation, and the run's `PORT` reservation, when no socket of its
//! user listens on it, is given back in the same commit.

use styxy_proto::api::{AllocateRequest, AllocateResponse, ErrorCode};
use styxy_proto::caller::Caller;
use styxy_proto::error::ApiError;
use styxy_proto::model::{Allocation, Change, LeaseKind, Owner, Source};

use super::allocate::UNMANAGED_TYPE;
use super::validate::invalid;
use super::{Engine, Result, remove_change};

impl Engine {
    /// Records `port`, which the caller listens on, as the caller's process
    /// lease, and releases the reservation `req.replaces` names when it is
    /// a `styxy run` reservation of the caller's user that no socket of
    /// that user listens on.
    pub(super) fn record_listener(
        &mut self,
        req: &AllocateRequest,
        caller: &Caller,
        port: u16,
        service_name: String,
        scope: Option<String>,
    ) -> Result<AllocateResponse> {
        let pid = caller.pid.ok_or_else(|| invalid("'listening' needs a caller process (the Unix socket)"))?;
        // Only what the caller's user really listens on: never a way to take
        // a port past the kernel probe of a plain allocation.
        if !self.host.listens(port, caller.uid) {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("no socket of user {} listens on port {port}; not recorded", caller.uid),
            ));
        }
        let now = self.host.now();
        let replaced = req
            .replaces
            .as_deref()
            .and_then(|lock_id| self.state().by_lock_id(lock_id))
            .filter(|r| r.owner.uid == caller.uid && r.source == Source::Run && r.port != port)
            // A socket of its user on it keeps it: the kernel names a
            // socket's uid to anyone, its process only to the same user.
            .filter(|r| !self.host.listens(r.port, r.owner.uid))
            .cloned();
        let mut changes: Vec<Change> = replaced.iter().map(remove_change).collect();
        let existing = self.state().allocations.get(&port).cloned();
        let live = existing.as_ref().filter(|a| self.holder_alive(a, now));
        let allocation = match live {
            // The caller's own reservation (made for it, or by a process of
            // its user above it): already held.
            Some(a) if a.owner.uid == caller.uid && a.handoff_until.is_none() => a.clone(),
            Some(a) if a.owner.uid == caller.uid => self.adoption(port, pid).unwrap_or_else(|| a.clone()),
            Some(_) => {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    format!("port {port} is another user's allocation; not recorded as yours"),
                ));
            }
            None => {
                self.check_quota(caller)?;
                let (service_type, service_name) = match &replaced {
                    Some(r) => (r.service_type.clone(), r.service_name.clone()),
                    None => (self.config.type_for_port(port).unwrap_or(UNMANAGED_TYPE).to_string(), service_name),
                };
                let start_time = caller.start_time.or_else(|| self.host.start_time(pid));
                let owner = Owner { uid: caller.uid, pid: Some(pid), start_time };
                changes.extend(existing.iter().map(remove_change));
                Allocation {
                    source: Source::Preload,
                    scope,
                    allocated_at: now,
                    project_path: replaced.as_ref().and_then(|r| r.project_path.clone()),
                    ..Allocation::new(port, service_type, service_name, owner, LeaseKind::Process)
                }
            }
        };
        if existing.as_ref() != Some(&allocation) {
            changes.push(Change::PutAllocation(allocation.clone()));
        }
        self.commit(changes)?;
        let message = match &replaced {
            Some(r) => format!("Port {port} recorded as listened on; port {} given back", r.port),
            None => format!("Port {port} recorded as listened on"),
        };
        Ok(AllocateResponse::of(&allocation, message))
    }
}
