//! An inet socket address copied onto the stack, with its port and the
//! address families it reaches.

use crate::sys;
use libc::{c_int, sockaddr, sockaddr_in, sockaddr_in6, socklen_t};

/// Which address families a socket (or a listener) answers on.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Reach {
    pub v4: bool,
    pub v6: bool,
}

impl Reach {
    pub const BOTH: Reach = Reach { v4: true, v6: true };

    pub fn overlaps(self, other: Reach) -> bool {
        (self.v4 && other.v4) || (self.v6 && other.v6)
    }

    /// The families this one does not reach.
    pub fn others(self) -> Reach {
        Reach { v4: !self.v4, v6: !self.v6 }
    }

    pub fn is_empty(self) -> bool {
        !self.v4 && !self.v6
    }

    /// What a v6 socket bound to `ip` reaches: the wildcard without
    /// IPV6_V6ONLY is dual-stack, a v4-mapped address is v4.
    pub fn of_v6(ip: &[u8; 16], v6only: bool) -> Reach {
        if ip.iter().all(|&b| b == 0) && !v6only {
            Reach::BOTH
        } else if ip.starts_with(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]) {
            Reach { v4: true, v6: false }
        } else {
            Reach { v4: false, v6: true }
        }
    }
}

#[derive(Clone, Copy)]
pub struct InetAddr {
    /// Large enough for either family; v4 uses the sockaddr_in prefix.
    storage: sockaddr_in6,
    len: socklen_t,
}

impl InetAddr {
    /// Copies a caller's address; None unless it is AF_INET or AF_INET6.
    ///
    /// # Safety
    /// `addr` must be null or point to `len` readable bytes.
    pub unsafe fn from_raw(addr: *const sockaddr, len: socklen_t) -> Option<Self> {
        if addr.is_null() {
            return None;
        }
        let family = if usize::try_from(len).ok()? >= size_of::<libc::sa_family_t>() {
            // SAFETY: `addr` is not null and `len` covers a sa_family_t (the caller's contract).
            c_int::from(unsafe { (*addr).sa_family })
        } else {
            return None;
        };
        let need = match family {
            libc::AF_INET => size_of::<sockaddr_in>(),
            // The kernel accepts the RFC 2133 size without sin6_scope_id.
            libc::AF_INET6 => 24,
            _ => return None,
        };
        let len_bytes = usize::try_from(len).ok()?;
        if len_bytes < need {
            return None;
        }
        // SAFETY: sockaddr_in6 is plain data; zero is a valid value.
        let mut storage: sockaddr_in6 = unsafe { core::mem::zeroed() };
        let copy = len_bytes.min(size_of::<sockaddr_in6>());
        // SAFETY: `copy` bytes are readable at addr and fit in storage.
        unsafe { core::ptr::copy_nonoverlapping(addr.cast::<u8>(), (&raw mut storage).cast::<u8>(), copy) };
        Some(Self { storage, len: socklen_t::try_from(copy).ok()? })
    }

    /// The address a socket is bound to.
    pub fn of_socket(fd: c_int) -> Option<Self> {
        // SAFETY: zero is a valid sockaddr_in6.
        let mut storage: sockaddr_in6 = unsafe { core::mem::zeroed() };
        let mut len = size_of::<sockaddr_in6>() as socklen_t;
        // SAFETY: storage is writable for len bytes.
        let rc = unsafe { libc::getsockname(fd, (&raw mut storage).cast(), &mut len) };
        if rc != 0 {
            return None;
        }
        // SAFETY: storage holds len valid bytes.
        unsafe { Self::from_raw((&raw const storage).cast(), len) }
    }

    pub fn family(&self) -> c_int {
        c_int::from(self.storage.sin6_family)
    }

    pub fn is_v6(&self) -> bool {
        self.family() == libc::AF_INET6
    }

    /// sin_port and sin6_port sit at the same offset.
    pub fn port(&self) -> u16 {
        u16::from_be(self.storage.sin6_port)
    }

    pub fn with_port(&self, port: u16) -> Self {
        let mut copy = *self;
        copy.storage.sin6_port = port.to_be();
        copy
    }

    pub fn as_ptr(&self) -> *const sockaddr {
        (&raw const self.storage).cast()
    }

    pub fn socklen(&self) -> socklen_t {
        self.len
    }

    /// Whether a client connecting here reaches this host's own servers:
    /// 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104, 0.0.0.0 and ::.
    pub fn is_loopback_or_wildcard(&self) -> bool {
        if self.is_v6() {
            let ip = self.storage.sin6_addr.s6_addr;
            let v4_mapped_loopback = ip.starts_with(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127]);
            return v4_mapped_loopback || ip.iter().take(15).all(|&b| b == 0) && ip.get(15).is_some_and(|&b| b <= 1);
        }
        // sin_addr follows sin_family and sin_port, at sin6_flowinfo's place.
        let ip = self.storage.sin6_flowinfo.to_ne_bytes();
        ip.first() == Some(&127) || ip == [0, 0, 0, 0]
    }

    /// The families a socket bound here answers on.
    pub fn reach(&self, fd: c_int) -> Reach {
        if !self.is_v6() {
            return Reach { v4: true, v6: false };
        }
        let ip = self.storage.sin6_addr.s6_addr;
        // Only the wildcard's reach depends on the option; skip the call otherwise.
        let v6only =
            ip.iter().all(|&b| b == 0) && sys::sockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY).unwrap_or(0) != 0;
        Reach::of_v6(&ip, v6only)
    }
}
