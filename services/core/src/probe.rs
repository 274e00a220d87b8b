//! Asks the kernel whether a TCP port is free, on IPv4 and IPv6 both: a
//! listener on either family makes `localhost:PORT` ambiguous.

use std::io;

/// Which families hold a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortUse {
    pub v4: bool,
    pub v6: bool,
}

impl PortUse {
    pub fn busy(self) -> bool {
        self.v4 || self.v6
    }
}

/// Probes `port` with a scratch bind on the v4 and v6 wildcards (SO_REUSEADDR,
/// so TIME_WAIT leftovers do not count; listeners do). No listen, so nobody
/// can connect to the probe.
pub fn port_use(port: u16) -> PortUse {
    PortUse { v4: bind_fails(libc::AF_INET, port), v6: bind_fails(libc::AF_INET6, port) }
}

pub fn is_free(port: u16) -> bool {
    !port_use(port).busy()
}

fn bind_fails(family: libc::c_int, port: u16) -> bool {
    match try_bind(family, port) {
        Ok(()) => false,
        // A family the kernel lacks cannot hold the port.
        Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => false,
        Err(_) => true,
    }
}

fn try_bind(family: libc::c_int, port: u16) -> io::Result<()> {
    // SAFETY: plain socket syscalls on a descriptor we own and close.
    unsafe {
        let fd = libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let one: libc::c_int = 1;
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, (&one as *const libc::c_int).cast(), len);
        let rc = if family == libc::AF_INET6 {
            libc::setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, (&one as *const libc::c_int).cast(), len);
            let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
            sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sa.sin6_port = port.to_be();
            libc::bind(fd, (&sa as *const libc::sockaddr_in6).cast(), std::mem::size_of_val(&sa) as libc::socklen_t)
        } else {
            let mut sa: libc::sockaddr_in = std::mem::zeroed();
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_port = port.to_be();
            libc::bind(fd, (&sa as *const libc::sockaddr_in).cast(), std::mem::size_of_val(&sa) as libc::socklen_t)
        };
        let err = (rc != 0).then(io::Error::last_os_error);
        libc::close(fd);
        err.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_v4_listener_and_a_v6_only_listener_make_the_port_busy() {
        let l4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let p4 = l4.local_addr().unwrap().port();
        assert_eq!(port_use(p4), PortUse { v4: true, v6: false });

        if let Ok(l6) = TcpListener::bind("[::1]:0") {
            let p6 = l6.local_addr().unwrap().port();
            assert!(port_use(p6).v6, "a v6 listener must count");
            drop(l6);
        }
        drop(l4);
        assert!(is_free(p4), "a closed listener frees the port");
    }
}
