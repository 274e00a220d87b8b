//! Who is asking the allocator, and what of other users' records they may
//! see: the one redaction every view of allocations, instances, holders and
//! listeners goes through.

use crate::api::{AllocationView, Holder, InstanceView, Listener};
use crate::model::Allocation;

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
        may_see(self.uid, uid)
    }
}

/// Whether user `viewer` may see what user `owner` wrote or runs: root and
/// the owner only.
pub fn may_see(viewer: u32, owner: u32) -> bool {
    viewer == 0 || viewer == owner
}

/// What other users see of a user's records: its uid, user name, service
/// types, ports and times. Nothing that user wrote (names, paths, ids,
/// metadata) and none of its processes, so none of it can reach another
/// user's agent as text, and an instance id cannot be learnt to squat it.
/// Each `hide_*` strips a record; the plain names do so unless the viewer
/// may see it.
pub mod redact {
    use super::*;

    pub fn allocation<At>(a: &mut Allocation<At>, viewer: u32) {
        if !may_see(viewer, a.owner.uid) {
            hide_allocation(a);
        }
    }

    pub fn hide_allocation<At>(a: &mut Allocation<At>) {
        a.owner.pid = None;
        a.scope = None;
        a.owner.start_time = None;
        a.project_path = None;
        a.service_name = String::new();
        a.instance_id = String::new();
    }

    pub fn allocation_view(v: &mut AllocationView, viewer: u32) {
        if !may_see(viewer, v.allocation.owner.uid) {
            hide_allocation_view(v);
        }
    }

    pub fn hide_allocation_view(v: &mut AllocationView) {
        v.process = None;
        hide_allocation(&mut v.allocation);
    }

    pub fn instance_view(v: &mut InstanceView, viewer: u32) {
        let i = &mut v.instance;
        if !may_see(viewer, i.uid) {
            i.instance_id = String::new();
            i.working_directory = None;
            i.project_root = None;
            i.metadata = serde_json::Value::Object(Default::default());
            v.active_allocations.clear();
        }
    }

    pub fn holder(h: &mut Holder, viewer: u32) {
        if !may_see(viewer, h.uid) {
            h.pid = None;
            h.process = None;
            h.service_name = None;
            h.project = None;
            h.instance_id = None;
        }
    }

    pub fn listener(l: &mut Listener, viewer: u32) {
        if !may_see(viewer, l.uid) {
            hide_listener(l);
        }
    }

    pub fn hide_listener(l: &mut Listener) {
        l.pid = None;
        l.process = None;
        l.command = None;
        l.project = None;
    }
}
