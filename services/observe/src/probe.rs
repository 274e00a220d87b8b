//! Asks the kernel whether a TCP port is free, on IPv4 and IPv6 both: a
//! listener on either family makes `localhost:PORT` ambiguous.

use std::cell::RefCell;
use std::io;

use crate::sockdiag::SockDiag;

/// Whether no TCP listener holds `port` on any address of either family.
///
/// Read from the kernel's socket tables (one sock_diag dump filtered to the
/// port, on a netlink socket kept per thread), which disturbs nobody: a
/// probe that binds the port would, for its moment, make another user's
/// bind of it fail. Only where sock_diag is unavailable does it fall back to
/// that scratch bind (`is_free_by_binding`).
pub fn is_free(port: u16) -> bool {
    thread_local! {
        static DIAG: RefCell<Option<SockDiag>> = const { RefCell::new(None) };
    }
    let listed = DIAG.with(|cell| {
        let mut diag = cell.borrow_mut();
        if diag.is_none() {
            *diag = SockDiag::open().ok();
        }
        let listed = diag.as_mut().map(|d| d.tcp_listeners_on(port));
        if !matches!(listed, Some(Ok(_))) {
            // Opened again next time: a failed exchange may leave replies behind.
            *diag = None;
        }
        listed
    });
    match listed {
        Some(Ok(listeners)) => listeners.is_empty(),
        _ => is_free_by_binding(port),
    }
}

/// One scratch bind on the dual-stack wildcard `[::]` (IPV6_V6ONLY off)
/// answers for both families: the kernel refuses it when any IPv4 or IPv6
/// listener holds the port. SO_REUSEADDR, so TIME_WAIT leftovers do not
/// count; no listen, so nobody can connect to the probe. Without IPv6 the
/// probe binds the IPv4 wildcard instead.
fn is_free_by_binding(port: u16) -> bool {
    match try_bind(libc::AF_INET6, port) {
        Ok(()) => true,
        Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => try_bind(libc::AF_INET, port).is_ok(),
        Err(_) => false,
    }
}

fn try_bind(family: libc::c_int, port: u16) -> io::Result<()> {
    // SAFETY: plain socket syscalls on a descriptor we own and close.
    unsafe {
        let fd = libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let (one, zero): (libc::c_int, libc::c_int) = (1, 0);
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, (&one as *const libc::c_int).cast(), len);
        let rc = if family == libc::AF_INET6 {
            // Explicitly dual-stack: net.ipv6.bindv6only may default it on.
            libc::setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, (&zero as *const libc::c_int).cast(), len);
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

    fn held_port(listener: &TcpListener) -> u16 {
        listener.local_addr().unwrap().port()
    }

    #[test]
    fn listeners_of_either_family_on_any_address_make_the_port_busy() {
        let mut held = vec![TcpListener::bind("127.0.0.1:0").unwrap(), TcpListener::bind("0.0.0.0:0").unwrap()];
        // Absent when the machine has no IPv6.
        held.extend(TcpListener::bind("[::1]:0"));
        held.extend(TcpListener::bind("[::]:0"));
        for listener in &held {
            let port = held_port(listener);
            assert!(!is_free(port), "{} must make its port busy", listener.local_addr().unwrap());
            assert!(!is_free_by_binding(port), "{}: the fallback agrees", listener.local_addr().unwrap());
        }
        let ports: Vec<u16> = held.iter().map(held_port).collect();
        drop(held);
        for port in ports {
            assert!(is_free(port), "a closed listener frees port {port}");
            assert!(is_free_by_binding(port), "the fallback agrees on port {port}");
        }
    }

    #[test]
    fn a_bound_socket_that_does_not_listen_leaves_the_port_free() {
        // What a server between bind and listen, or a client's local port,
        // looks like with SO_REUSEADDR: not a listener, so not a holder.
        let (_socket, port) = bound_not_listening();
        assert!(is_free(port));
        assert!(is_free_by_binding(port));
    }

    #[test]
    fn asking_whether_a_port_is_free_never_makes_another_bind_of_it_fail() {
        // A server that binds without SO_REUSEADDR loses to any socket bound
        // to its port at that moment, a scratch probe included.
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            held_port(&l)
        };
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let asker = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    is_free(port);
                }
            })
        };
        let failed = (0..2000).filter(|_| !binds_without_reuseaddr(port)).count();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        asker.join().unwrap();
        assert_eq!(failed, 0, "{failed} of 2000 binds of port {port} failed while it was being probed");
    }

    /// Whether a plain bind of 0.0.0.0:`port` (no SO_REUSEADDR, as some
    /// servers do) succeeds; the socket is closed again.
    fn binds_without_reuseaddr(port: u16) -> bool {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        // SAFETY: plain socket syscalls on a descriptor wrapped at once.
        unsafe {
            let fd = OwnedFd::from_raw_fd(libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0));
            let mut sa: libc::sockaddr_in = std::mem::zeroed();
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_port = port.to_be();
            let len = std::mem::size_of_val(&sa) as libc::socklen_t;
            libc::bind(fd.as_raw_fd(), (&sa as *const libc::sockaddr_in).cast(), len) == 0
        }
    }

    /// A TCP socket bound to 127.0.0.1 with SO_REUSEADDR, never listening.
    fn bound_not_listening() -> (std::os::fd::OwnedFd, u16) {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        // SAFETY: plain socket syscalls on a descriptor wrapped at once.
        unsafe {
            let fd = OwnedFd::from_raw_fd(libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0));
            let one: libc::c_int = 1;
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            let mut sa: libc::sockaddr_in = std::mem::zeroed();
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_addr.s_addr = u32::from_be_bytes([127, 0, 0, 1]).to_be();
            let mut len = std::mem::size_of_val(&sa) as libc::socklen_t;
            assert_eq!(libc::bind(fd.as_raw_fd(), (&sa as *const libc::sockaddr_in).cast(), len), 0);
            assert_eq!(libc::getsockname(fd.as_raw_fd(), (&mut sa as *mut libc::sockaddr_in).cast(), &mut len), 0);
            (fd, u16::from_be(sa.sin_port))
        }
    }
}
