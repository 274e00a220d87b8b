//! Which ports have a TCP listener, asked of the kernel over sock_diag
//! (NETLINK_SOCK_DIAG). Unlike a scratch bind this sees listeners only
//! (TIME_WAIT leftovers and half-set-up sockets do not count), has no side
//! effect, and answers for a whole range of ports in one request.

use crate::addr::Reach;
use crate::sys;
use libc::c_int;
use styxy_proto::sockdiag::{self, Batch, InetDiagReqV2, Malformed, Socket, TCPF_LISTEN};

/// The ports of `lo..lo+128` that have a listener.
#[derive(Clone, Copy, Default)]
pub struct PortSet {
    lo: u16,
    bits: u128,
}

impl PortSet {
    pub const SPAN: u16 = 128;

    pub fn contains(&self, port: u16) -> bool {
        port.checked_sub(self.lo).and_then(|i| 1u128.checked_shl(u32::from(i))).is_some_and(|bit| self.bits & bit != 0)
    }

    fn insert(&mut self, port: u16) {
        if let Some(bit) = port.checked_sub(self.lo).and_then(|i| 1u128.checked_shl(u32::from(i))) {
            self.bits |= bit;
        }
    }
}

/// Ports in `lo..=hi` (at most [`PortSet::SPAN`] of them) where some
/// listener answers on a family in `want`. None when the kernel would not
/// say (the caller then trusts bind alone).
pub fn listeners(lo: u16, hi: u16, want: Reach) -> Option<PortSet> {
    let hi = hi.min(lo.saturating_add(PortSet::SPAN - 1));
    let mut found = PortSet { lo, bits: 0 };
    if want.is_empty() {
        return Some(found);
    }
    // SAFETY: plain socket call.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, libc::NETLINK_SOCK_DIAG) };
    if fd < 0 {
        return None;
    }
    // v4 listeners reach only v4; v6 ones may reach either (dual-stack).
    let ok = (!want.v4 || dump(fd, libc::AF_INET, lo, hi, want, &mut found))
        && dump(fd, libc::AF_INET6, lo, hi, want, &mut found);
    sys::close(fd);
    ok.then_some(found)
}

fn dump(fd: c_int, family: c_int, lo: u16, hi: u16, want: Reach, found: &mut PortSet) -> bool {
    let body = InetDiagReqV2 {
        family: family as u8,
        protocol: libc::IPPROTO_TCP as u8,
        states: TCPF_LISTEN,
        ..InetDiagReqV2::default()
    };
    let mut req = [0u8; sockdiag::MAX_REQUEST_LEN];
    let Some(req) = sockdiag::encode_dump(&mut req, 0, &body, Some((lo, hi))) else {
        return false;
    };
    if !sockdiag::send_to_kernel(fd, req) {
        return false;
    }
    let mut buf = [0u8; 8192];
    loop {
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        let Some(data) = usize::try_from(n).ok().and_then(|n| buf.get(..n)) else {
            if sys::errno() == libc::EINTR {
                continue;
            }
            return false;
        };
        if data.is_empty() {
            return false;
        }
        let batch = sockdiag::parse_batch(data, 0, |socket| {
            if let Some(port) = listener(&socket, want) {
                found.insert(port);
            }
            Ok::<(), Malformed>(())
        });
        match batch {
            Ok(Batch::More) => continue,
            Ok(Batch::Done) => return true,
            Ok(Batch::Failed(_)) | Err(_) => return false,
        }
    }
}

/// The port of a listener that answers on a family in `want`.
fn listener(socket: &Socket<'_>, want: Reach) -> Option<u16> {
    let msg = &socket.msg;
    let reach = if c_int::from(msg.family) == libc::AF_INET {
        Reach { v4: true, v6: false }
    } else {
        // Without the attribute, dual-stack: the conservative reading.
        Reach::of_v6(&msg.id.src, socket.v6only().unwrap_or(false))
    };
    reach.overlaps(want).then_some(msg.id.sport)
}
