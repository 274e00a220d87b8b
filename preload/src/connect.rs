//! Clients follow their own scope's servers (docs/design.md, "Scopes"): a
//! TCP `connect` to this host (loopback or wildcard) on port P goes to P'
//! when this program moved its own P to P', or when the allocator recorded
//! that this user's server of P in this program's scope listens on P'.
//! Anything else goes to the real call unchanged. The lookup reads the
//! shared port map: no lock, no allocation, no allocator round trip, and
//! for a port no scope moved, one bitmap load.

use crate::addr::InetAddr;
use crate::{config, family, portmap, real, sys};
use libc::{c_int, sockaddr, socklen_t};

/// # Safety
/// `raw` must point to `len` readable bytes (connect's contract).
pub unsafe fn connect_hook(fd: c_int, raw: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: forwarded from the caller.
    let pass = || unsafe { real::connect(fd, raw, len) };
    let Some(config) = config::get() else {
        return pass();
    };
    // SAFETY: as above.
    let Some(addr) = (unsafe { InetAddr::from_raw(raw, len) }) else {
        return pass();
    };
    if !addr.is_loopback_or_wildcard() {
        return pass();
    }
    let Some(to) = target(config, addr.port()) else {
        return pass();
    };
    if !sys::is_stream_socket(fd) || portmap::never_moved(addr.port(), config.program) {
        return pass();
    }
    let moved = addr.with_port(to);
    // SAFETY: moved is a valid inet address of moved.len() bytes.
    unsafe { real::connect(fd, moved.as_ptr(), moved.len()) }
}

/// Where a client of this program asking for `port` goes instead: where
/// this program or its scope's server of `port` listens.
pub fn target(config: &config::Config, port: u16) -> Option<u16> {
    let own = family::target(port).filter(|&to| to != port);
    own.or_else(|| portmap::scope_target(config.uid, config.scope.as_ref()?.hash, port)).filter(|&to| to != port)
}
