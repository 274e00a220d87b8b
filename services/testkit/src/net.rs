//! Ports from the test's side: asking a server, holding a port busy with
//! exact socket options, finding a free one.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

/// Connects to host:port and reads what the server says (sending `request`
/// first if given).
pub fn ask(host: &str, port: u16, request: &str) -> String {
    let addr: SocketAddr = format!("{}:{port}", bracket(host)).parse().expect("address");
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap_or_else(|e| panic!("read from {addr}: {e}"));
    answer
}

pub fn http_get(host: &str, port: u16) -> String {
    ask(host, port, "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
}

/// `ip:port` as the C library takes it, for calling hooks directly.
pub fn sockaddr_v4(ip: std::net::Ipv4Addr, port: u16) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain data; all-zero is valid.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    addr.sin_family = libc::AF_INET as libc::sa_family_t;
    addr.sin_port = port.to_be();
    addr.sin_addr.s_addr = u32::from(ip).to_be();
    addr
}

fn bracket(host: &str) -> String {
    if host.contains(':') { format!("[{host}]") } else { host.to_string() }
}

/// How a test holds a port.
#[derive(Clone, Copy, Default)]
pub struct Hold {
    pub reuseaddr: bool,
    pub reuseport: bool,
    pub v6only: bool,
    pub udp: bool,
    /// Bound but not listening (only then can another SO_REUSEADDR socket bind it).
    pub no_listen: bool,
}

/// A socket on host:port made with raw calls, so the options are exact.
/// Port 0 picks a free one; see [`local_port`].
pub fn hold(host: &str, port: u16, how: Hold) -> OwnedFd {
    let addr: SocketAddr = format!("{}:{port}", bracket(host)).parse().expect("address");
    let set = |fd: i32, level: i32, name: i32| {
        let one: libc::c_int = 1;
        // SAFETY: valid fd and int option.
        let rc = unsafe { libc::setsockopt(fd, level, name, (&raw const one).cast(), 4) };
        assert_eq!(rc, 0, "setsockopt");
    };
    // SAFETY: plain socket calls on a descriptor we own.
    unsafe {
        let family = if addr.is_ipv6() { libc::AF_INET6 } else { libc::AF_INET };
        let kind = if how.udp { libc::SOCK_DGRAM } else { libc::SOCK_STREAM };
        let fd = libc::socket(family, kind | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket");
        let owned = OwnedFd::from_raw_fd(fd);
        if how.reuseaddr {
            set(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR);
        }
        if how.reuseport {
            set(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT);
        }
        if how.v6only && addr.is_ipv6() {
            set(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY);
        }
        let rc = match addr {
            SocketAddr::V4(a) => {
                let mut sa: libc::sockaddr_in = std::mem::zeroed();
                sa.sin_family = libc::AF_INET as libc::sa_family_t;
                sa.sin_port = a.port().to_be();
                sa.sin_addr.s_addr = u32::from(*a.ip()).to_be();
                libc::bind(fd, (&raw const sa).cast(), size_of_val(&sa) as libc::socklen_t)
            }
            SocketAddr::V6(a) => {
                let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
                sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sa.sin6_port = a.port().to_be();
                sa.sin6_addr.s6_addr = a.ip().octets();
                libc::bind(fd, (&raw const sa).cast(), size_of_val(&sa) as libc::socklen_t)
            }
        };
        assert_eq!(rc, 0, "bind {addr}: {}", std::io::Error::last_os_error());
        if !how.udp && !how.no_listen {
            assert_eq!(libc::listen(fd, 16), 0, "listen {addr}");
        }
        owned
    }
}

/// The port a held socket is bound to.
pub fn local_port(fd: &OwnedFd) -> u16 {
    use std::os::fd::AsRawFd;
    // SAFETY: storage is large enough for either family.
    unsafe {
        let mut ss: libc::sockaddr_in6 = std::mem::zeroed();
        let mut len = size_of_val(&ss) as libc::socklen_t;
        assert_eq!(libc::getsockname(fd.as_raw_fd(), (&raw mut ss).cast(), &mut len), 0);
        u16::from_be(ss.sin6_port)
    }
}

/// A port held busy by a v4 loopback listener of the test itself.
pub fn busy_port() -> (OwnedFd, u16) {
    let fd = hold("127.0.0.1", 0, Hold { reuseaddr: true, ..Hold::default() });
    let port = local_port(&fd);
    (fd, port)
}

/// A port nobody listens on right now (the kernel's pick, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().expect("local address").port()
}
