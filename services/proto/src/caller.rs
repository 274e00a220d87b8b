//! Who is asking the allocator.

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
