//! The reservation follows its listener (docs/design.md, "Scopes"): under
//! `styxy run` every port the command's processes listen on is reported to
//! the allocator as their allocation (unless it is theirs already), naming
//! the run's `PORT` reservation when the port is another one, so the
//! reservation is given back when nothing of the run listens there
//! (`python3 -m http.server` ignores `PORT`).
//! One round trip per such listen, under the client's deadline; nothing
//! when the allocator is absent.

use crate::addr::InetAddr;
use crate::{Subject, client, config, portmap, sys};
use libc::c_int;

/// Ports below this are neither moved nor reported.
const FIRST_REPORTED_PORT: u16 = 1024;

/// Called after the subject's socket `fd` started listening.
pub fn listened(subject: &impl Subject, fd: c_int) {
    let Some(run) = config::get().and_then(|c| c.run.as_ref()) else {
        return;
    };
    let Some(addr) = InetAddr::of_socket(fd) else {
        return;
    };
    let port = addr.port();
    if port < FIRST_REPORTED_PORT || !sys::is_stream_socket(fd) {
        return;
    }
    // A port already the program's own (a move's grant) is reported only
    // to give back the run's reservation of another port.
    let replaces = (!run.lock_id.is_empty() && port != run.port).then_some(&*run.lock_id);
    if portmap::held_by_own(subject, port) && replaces.is_none() {
        return;
    }
    let _ = client::report_listening(subject, port, replaces);
}
