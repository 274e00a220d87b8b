//! The move decision, shared by the preload's hooks and the supervisor:
//! whether a socket must move, and the move.
//!
//! The real `bind` runs first; a socket moves when the kernel says
//! EADDRINUSE (at bind, or at listen when SO_REUSEADDR let two sockets bind
//! the same port), and also before binding when the port is taken in a way
//! the kernel would not report: reserved for another owner in the port map,
//! listened on by the other address family (then `localhost` would reach two
//! servers), or listened on by someone else while this socket has
//! SO_REUSEPORT (the kernel would silently share the port).
//!
//! A move takes, in order: the port this program already moved the same
//! port to (its other family, another worker), the port its scope's server
//! of that port has (where the program's clients are sent: a server
//! started after a probe of its port, by the prober or a sibling), one from
//! the allocator, or the first free port above within `LOCAL_SEARCH`.

use crate::addr::{InetAddr, Reach};
use crate::{Subject, client, config, connect, diag, family, notice, portmap, sys};
use libc::c_int;

/// Ports below this are never moved.
pub const FIRST_MOVABLE_PORT: u16 = 1024;
/// How far above the requested port the local search goes.
const LOCAL_SEARCH: u16 = 100;

/// Whether a bind of `addr` on the subject's `fd` is one a move may
/// concern: an inet stream socket on a port that may move, neither the
/// port nor the program named by `[preload] never_move`.
pub fn concerns(subject: &impl Subject, fd: c_int, addr: &InetAddr) -> bool {
    addr.port() >= FIRST_MOVABLE_PORT
        && sys::is_stream_socket(fd)
        && !portmap::never_moved(addr.port(), || subject.program())
}

/// Binds `fd` to `addr`, or to another port when `addr`'s is taken; the
/// errno the program gets when neither works.
pub fn bind(subject: &impl Subject, fd: c_int, addr: &InetAddr) -> Result<(), c_int> {
    let port = addr.port();
    let recorded = family::target(port);
    let first = recorded.is_none();
    let avoid = recorded.is_some_and(|to| to != port)
        || portmap::held_by_other(subject, port)
        || (first && foreign_listener(fd, addr));
    if avoid && relocate(subject, fd, addr, Stage::Bind) {
        return Ok(());
    }
    // SAFETY: addr is a valid inet address of addr.socklen() bytes.
    let rc = unsafe { subject.bind(fd, addr.as_ptr(), addr.socklen()) };
    if rc == 0 {
        if first {
            family::record_first(port, port);
        }
        return Ok(());
    }
    let errno = sys::errno();
    // After a relocation found nowhere else, or on any other error, the
    // program gets the kernel's answer.
    if avoid || errno != libc::EADDRINUSE {
        return Err(errno);
    }
    if relocate(subject, fd, addr, Stage::Bind) {
        return Ok(());
    }
    Err(libc::EADDRINUSE)
}

/// After `listen` on `fd` failed with EADDRINUSE: puts a socket listening on
/// another port in its place; false when none could be had.
pub fn listen_failed(subject: &impl Subject, fd: c_int, backlog: c_int) -> bool {
    InetAddr::of_socket(fd)
        .filter(|addr| concerns(subject, fd, addr))
        .is_some_and(|addr| relocate(subject, fd, &addr, Stage::Listen { backlog }))
}

/// Whether a listener the kernel would not complain about holds the port:
/// one on the families this socket does not reach, or, with SO_REUSEPORT,
/// any listener that is not this program's.
fn foreign_listener(fd: c_int, addr: &InetAddr) -> bool {
    let port = addr.port();
    let reuseport = sys::sockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT).unwrap_or(0) != 0;
    let want = if reuseport { Reach::BOTH } else { addr.reach(fd).others() };
    if want.is_empty() {
        return false;
    }
    let listened = diag::listeners(port, port, want).is_some_and(|set| set.contains(port));
    // A worker of this program binding meanwhile records the port before it
    // listens: then the listener is ours, shared on purpose.
    listened && family::target(port).is_none()
}

#[derive(Clone, Copy)]
enum Stage {
    /// The socket is not bound: bind it elsewhere.
    Bind,
    /// The socket is bound and its listen failed: replace it.
    Listen { backlog: c_int },
}

impl Stage {
    fn try_port(self, subject: &impl Subject, fd: c_int, addr: &InetAddr, port: u16) -> bool {
        let addr = addr.with_port(port);
        match self {
            // SAFETY: addr is a valid inet address of addr.socklen() bytes.
            Stage::Bind => unsafe { subject.bind(fd, addr.as_ptr(), addr.socklen()) == 0 },
            Stage::Listen { backlog } => replace_listening(subject, fd, &addr, backlog),
        }
    }
}

/// Moves the socket off `addr`'s port; false if no port could be had.
fn relocate(subject: &impl Subject, fd: c_int, addr: &InetAddr, stage: Stage) -> bool {
    let requested = addr.port();
    if let Some(to) = family::target(requested).filter(|&to| to != requested)
        && stage.try_port(subject, fd, addr, to)
    {
        return true;
    }
    if let Some(to) = config::get().and_then(|c| connect::target(c, requested))
        && to >= FIRST_MOVABLE_PORT
        && stage.try_port(subject, fd, addr, to)
    {
        family::record(requested, to);
        notice::moved(subject, requested, to, None);
        return true;
    }
    let mut holder = None;
    if let Some(grant) = client::allocate(subject, requested) {
        holder = grant.holder;
        let port = grant.port;
        if port >= FIRST_MOVABLE_PORT
            && port != requested
            && !listened_anywhere(port)
            && family::take_for_move(port)
            && stage.try_port(subject, fd, addr, port)
        {
            family::record(requested, port);
            notice::moved(subject, requested, port, holder.as_ref());
            return true;
        }
        client::release(&grant);
    }
    let Some(port) = search_locally(subject, fd, addr, stage) else {
        return false;
    };
    family::record(requested, port);
    notice::moved(subject, requested, port, holder.as_ref());
    true
}

fn listened_anywhere(port: u16) -> bool {
    diag::listeners(port, port, Reach::BOTH).is_some_and(|set| set.contains(port))
}

/// The first port above the requested one that nobody listens on in either
/// family (so the program's other family can follow), that the allocator
/// has not given to another owner, and that binds.
fn search_locally(subject: &impl Subject, fd: c_int, addr: &InetAddr, stage: Stage) -> Option<u16> {
    let lo = addr.port().checked_add(1)?;
    let hi = addr.port().saturating_add(LOCAL_SEARCH);
    let listened = diag::listeners(lo, hi, Reach::BOTH).unwrap_or_default();
    (lo..=hi).find(|&port| {
        !listened.contains(port)
            && !portmap::held_by_other(subject, port)
            && family::take_for_move(port)
            && stage.try_port(subject, fd, addr, port)
    })
}

/// Socket options a replacement copies (set before bind, kept by the
/// connections it accepts).
const COPIED_OPTIONS: [(c_int, c_int); 5] = [
    (libc::SOL_SOCKET, libc::SO_REUSEADDR),
    (libc::SOL_SOCKET, libc::SO_REUSEPORT),
    (libc::SOL_SOCKET, libc::SO_KEEPALIVE),
    (libc::IPPROTO_TCP, libc::TCP_NODELAY),
    (libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT),
];

/// Puts a socket listening on `addr` in place of `fd` (whose listen failed),
/// with the same options, status flags (O_NONBLOCK) and FD_CLOEXEC.
fn replace_listening(subject: &impl Subject, fd: c_int, addr: &InetAddr, backlog: c_int) -> bool {
    let Some(cloexec) = subject.closes_on_exec(fd) else {
        return false;
    };
    // SAFETY: fcntl, socket on descriptors the program passed us or we
    // created; the replacement is closed on every path.
    unsafe {
        let status = libc::fcntl(fd, libc::F_GETFL);
        if status < 0 {
            return false;
        }
        let protocol = sys::sockopt(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL).unwrap_or(0);
        let new = libc::socket(addr.family(), libc::SOCK_STREAM | libc::SOCK_CLOEXEC, protocol);
        if new < 0 {
            return false;
        }
        let v6_options: &[(c_int, c_int)] = if addr.is_v6() { &[(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)] } else { &[] };
        for &(level, name) in COPIED_OPTIONS.iter().chain(v6_options) {
            if let Some(value) = sys::sockopt(fd, level, name) {
                sys::set_sockopt(new, level, name, value);
            }
        }
        let replaced = libc::fcntl(new, libc::F_SETFL, status) == 0
            && subject.bind(new, addr.as_ptr(), addr.socklen()) == 0
            && subject.listen(new, backlog) == 0
            && subject.install(new, fd, cloexec);
        sys::close(new);
        replaced
    }
}
