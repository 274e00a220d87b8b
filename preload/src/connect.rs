//! Clients follow their own scope's servers (docs/design.md, "Scopes"): a
//! TCP `connect` to this host (loopback or wildcard) goes where
//! `styxy_relocate::connect::target` says this program's server of that
//! port listens. Anything else goes to the real call unchanged.

use crate::real;
use libc::{c_int, sockaddr, socklen_t};
use styxy_relocate::addr::InetAddr;
use styxy_relocate::{config, portmap, sys};

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
    let Some(to) = styxy_relocate::connect::target(config, addr.port()) else {
        return pass();
    };
    if !sys::is_stream_socket(fd) || portmap::never_moved(addr.port(), || config.program) {
        return pass();
    }
    let moved = addr.with_port(to);
    // SAFETY: moved is a valid inet address of moved.socklen() bytes.
    unsafe { real::connect(fd, moved.as_ptr(), moved.socklen()) }
}
