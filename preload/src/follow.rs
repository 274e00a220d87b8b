//! The reservation follows its listener (docs/design.md, "Scopes"): under
//! `styxy run` every port the command's processes listen on, and that is
//! not already theirs, is reported to the allocator as their allocation,
//! naming the run's `PORT` reservation so it is given back when nothing
//! of the run listens there (`python3 -m http.server` ignores `PORT`).
//! One round trip per such listen, under the client's deadline; nothing
//! when the allocator is absent.

use crate::addr::InetAddr;
use crate::{client, config, portmap, sys};
use libc::c_int;

/// Ports below this are neither moved nor reported.
const FIRST_REPORTED_PORT: u16 = 1024;

/// Called after `fd` started listening.
pub fn listened(fd: c_int) {
    let Some(replaces) = config::get().and_then(|c| c.run_reservation.as_deref()) else {
        return;
    };
    let Some(addr) = InetAddr::of_socket(fd) else {
        return;
    };
    let port = addr.port();
    if port < FIRST_REPORTED_PORT || !sys::is_stream_socket(fd) || portmap::held_by_own(port) {
        return;
    }
    let replaces = (!replaces.is_empty()).then_some(replaces);
    let _ = client::report_listening(port, replaces);
}
