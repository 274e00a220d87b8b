//! Which ports have a TCP listener, asked of the kernel over sock_diag
//! (NETLINK_SOCK_DIAG). Unlike a scratch bind this sees listeners only
//! (TIME_WAIT leftovers and half-set-up sockets do not count), has no side
//! effect, and answers for a whole range of ports in one request.

use crate::addr::Reach;
use crate::sys;
use libc::c_int;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const TCP_LISTEN_STATE_BIT: u32 = 1 << 10;
const INET_DIAG_REQ_BYTECODE: u16 = 1;
const INET_DIAG_BC_S_GE: u8 = 2;
const INET_DIAG_BC_S_LE: u8 = 3;
const INET_DIAG_SKV6ONLY: u16 = 11;
/// nlmsghdr (16) + inet_diag_req_v2 (56) + rtattr (4) + two port tests (16).
const REQUEST_LEN: usize = 92;
/// inet_diag_msg, the fixed part of each answer.
const DIAG_MSG_LEN: usize = 72;
const NLMSG_HDR_LEN: usize = 16;

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

fn request(family: c_int, lo: u16, hi: u16) -> [u8; REQUEST_LEN] {
    let mut req = [0u8; REQUEST_LEN];
    let mut put = |at: usize, bytes: &[u8]| {
        for (i, &b) in bytes.iter().enumerate() {
            if let Some(slot) = at.checked_add(i).and_then(|j| req.get_mut(j)) {
                *slot = b;
            }
        }
    };
    // nlmsghdr
    put(0, &(REQUEST_LEN as u32).to_ne_bytes());
    put(4, &SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    put(6, &((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    // inet_diag_req_v2: family, protocol, ext, pad, states, sockid (zero)
    put(16, &[family as u8, libc::IPPROTO_TCP as u8, 0, 0]);
    put(20, &TCP_LISTEN_STATE_BIT.to_ne_bytes());
    // rtattr carrying the filter program: sport >= lo && sport <= hi. Each
    // test is two 4-byte ops {code, yes, no}; a jump past the end rejects.
    put(72, &20u16.to_ne_bytes());
    put(74, &INET_DIAG_REQ_BYTECODE.to_ne_bytes());
    put(76, &[INET_DIAG_BC_S_GE, 8]);
    put(78, &20u16.to_ne_bytes());
    put(80, &[0, 0]);
    put(82, &lo.to_ne_bytes());
    put(84, &[INET_DIAG_BC_S_LE, 8]);
    put(86, &12u16.to_ne_bytes());
    put(88, &[0, 0]);
    put(90, &hi.to_ne_bytes());
    req
}

fn dump(fd: c_int, family: c_int, lo: u16, hi: u16, want: Reach, found: &mut PortSet) -> bool {
    let req = request(family, lo, hi);
    // SAFETY: zero is a valid sockaddr_nl (the kernel as destination).
    let mut kernel: libc::sockaddr_nl = unsafe { core::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: req and kernel are readable for their sizes.
    let sent = unsafe {
        libc::sendto(
            fd,
            req.as_ptr().cast(),
            req.len(),
            0,
            (&raw const kernel).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
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
        match read_batch(data, want, found) {
            Batch::More => continue,
            Batch::Done => return true,
            Batch::Failed => return false,
        }
    }
}

enum Batch {
    More,
    Done,
    Failed,
}

fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_ne_bytes([*b.first()?, *b.get(1)?]))
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes([*b.first()?, *b.get(1)?, *b.get(2)?, *b.get(3)?]))
}

fn align4(n: usize) -> Option<usize> {
    Some(n.checked_add(3)? & !3)
}

fn read_batch(mut data: &[u8], want: Reach, found: &mut PortSet) -> Batch {
    while data.len() >= NLMSG_HDR_LEN {
        let (Some(len), Some(kind)) = (u32_at(data, 0), u16_at(data, 4)) else {
            return Batch::Failed;
        };
        let len = len as usize;
        let Some(msg) = data.get(..len).filter(|_| len >= NLMSG_HDR_LEN) else {
            return Batch::Failed;
        };
        match c_int::from(kind) {
            libc::NLMSG_DONE => return Batch::Done,
            libc::NLMSG_ERROR => return Batch::Failed,
            _ if kind == SOCK_DIAG_BY_FAMILY => {
                if let Some((port, reach)) = listener(msg.get(NLMSG_HDR_LEN..).unwrap_or(&[]))
                    && reach.overlaps(want)
                {
                    found.insert(port);
                }
            }
            _ => {}
        }
        let Some(next) = align4(len) else {
            return Batch::Failed;
        };
        data = data.get(next..).unwrap_or(&[]);
    }
    Batch::More
}

/// The port of one inet_diag_msg and the families its listener answers on.
fn listener(msg: &[u8]) -> Option<(u16, Reach)> {
    let family = c_int::from(*msg.first()?);
    let port = u16::from_be(u16_at(msg, 4)?);
    if family == libc::AF_INET {
        return Some((port, Reach { v4: true, v6: false }));
    }
    let mut ip = [0u8; 16];
    for (dst, src) in ip.iter_mut().zip(msg.get(8..24)?) {
        *dst = *src;
    }
    Some((port, Reach::of_v6(&ip, v6only_attr(msg.get(DIAG_MSG_LEN..)?))))
}

/// The INET_DIAG_SKV6ONLY attribute (absent: treat as dual-stack, the
/// conservative reading).
fn v6only_attr(mut attrs: &[u8]) -> bool {
    while attrs.len() >= 4 {
        let (Some(len), Some(kind)) = (u16_at(attrs, 0), u16_at(attrs, 2)) else {
            return false;
        };
        let len = usize::from(len);
        if len < 4 {
            return false;
        }
        if kind == INET_DIAG_SKV6ONLY {
            return attrs.get(4).is_some_and(|&b| b != 0);
        }
        let Some(next) = align4(len) else {
            return false;
        };
        attrs = attrs.get(next..).unwrap_or(&[]);
    }
    false
}
