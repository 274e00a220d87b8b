//! The supervisor's side: answering each notification of the traced tree.
//!
//! A notification names a thread (`seccomp_notif.pid`); the program is its
//! thread group, opened as a pidfd, and the notification is checked to be
//! still pending after every look at the program (SECCOMP_IOCTL_NOTIF_ID_VALID),
//! so a recycled thread id never lends its number to another process.
//!
//! bind, listen and connect act on the program's own socket, taken with
//! pidfd_getfd: the supervisor binds, listens or connects on that open
//! socket and replies with the result. It never replies "continue" after
//! deciding to act from memory it read (the kernel would read the address
//! again, and a program could change it in between). It does reply
//! "continue" when it leaves the call alone (not an inet stream socket, a
//! port below 1024, a connect to no moved port of this host, moves switched
//! off): then the kernel performs exactly the program's call with the
//! program's own credentials, whatever the address is by then.

use super::filter::TRAPPED;
use libc::{c_int, c_long, sockaddr, socklen_t};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use styxy_relocate::addr::InetAddr;
use styxy_relocate::config::RunPort;
use styxy_relocate::{Subject, config, connect, family, follow, mover, portmap};

/// The longest socket address the kernel accepts (sockaddr_storage).
const MAX_SOCKADDR: usize = 128;
/// The longest path an exec names.
const MAX_PATH: usize = 4096;

pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Our own descriptor for the program's descriptor `fd` (pidfd_getfd).
pub fn take_fd(pidfd: &OwnedFd, fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_getfd takes descriptors and flags.
    let ours = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if ours < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(ours as RawFd) })
}

/// Reads the move's settings (this process's environment, which the
/// program inherits, and the port `run` hands it) before the program
/// starts.
pub fn prepare(run: Option<RunPort>) {
    if config::init_with(run) {
        family::init();
        portmap::init();
    }
}

/// SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (Linux 6.6; not in the libc crate).
const SYNC_WAKE_UP: libc::c_ulong = 1;

/// Answers the tree's calls until no process of the tree is left.
pub fn serve(listener: &OwnedFd) {
    let fd = listener.as_raw_fd();
    // The program waits while we answer, so the kernel may run us on its CPU
    // and it on ours instead of waking an idle one: a trapped call costs a
    // switch, not two cross-CPU wake-ups. Older kernels refuse the flag,
    // which only costs that speed.
    // SAFETY: SET_FLAGS takes the flags as its argument value.
    unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS, SYNC_WAKE_UP) };
    loop {
        let mut poll = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut poll, 1, -1) };
        if rc < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return;
        }
        // Hung up: every process of the tree has exited.
        if poll.revents & libc::POLLIN == 0 {
            return;
        }
        // SAFETY: RECV wants a zeroed seccomp_notif to fill.
        let mut request: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: request is a writable seccomp_notif.
        if unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_RECV, &raw mut request) } != 0 {
            match io::Error::last_os_error().raw_os_error() {
                // Interrupted, or the caller went away before we read it.
                Some(libc::EINTR | libc::ENOENT) => continue,
                _ => return,
            }
        }
        // A bug here must not take the supervisor (and with it the tree's
        // binds) down: the call then proceeds as the program made it.
        let reply = std::panic::catch_unwind(|| answer(fd, &request)).unwrap_or(Reply::Continue);
        reply.send(fd, request.id);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The kernel performs the call as the program made it.
    Continue,
    /// The call returns this value.
    Value(i64),
    /// The call fails with this errno.
    Error(c_int),
}

impl Reply {
    fn send(self, listener: RawFd, id: u64) {
        let (val, error, flags) = match self {
            Reply::Continue => (0, 0, libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32),
            Reply::Value(value) => (value, 0, 0),
            Reply::Error(errno) => (0, -errno, 0),
        };
        let response = libc::seccomp_notif_resp { id, val, error, flags };
        // SAFETY: a complete response; ENOENT (the caller is gone) is fine.
        unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_SEND, &raw const response) };
    }
}

fn answer(listener: RawFd, request: &libc::seccomp_notif) -> Reply {
    let nr = c_long::from(request.data.nr);
    // Most connects of a tree go nowhere a scope moved: they are let through
    // on one read of the calling thread's memory, without opening the program.
    if nr == libc::SYS_connect && redirect(listener, request.id, &request.data.args, request.pid).is_none() {
        return Reply::Continue;
    }
    let Some(program) = Traced::open(listener, request) else {
        return Reply::Continue;
    };
    match nr {
        libc::SYS_bind => program.bind(),
        libc::SYS_listen => program.listen(),
        libc::SYS_connect => program.connect(),
        // The exec calls are trapped only to name a setuid program.
        _ if TRAPPED.contains(&nr) => {
            program.note_setuid_exec(nr);
            Reply::Continue
        }
        _ => Reply::Continue,
    }
}

/// The process of one notification and the call's descriptor argument.
struct Traced {
    listener: RawFd,
    id: u64,
    tgid: u32,
    pidfd: OwnedFd,
    args: [u64; 6],
}

impl Traced {
    fn open(listener: RawFd, request: &libc::seccomp_notif) -> Option<Traced> {
        // pidfd_open refuses a thread that does not lead its group: only
        // then is the group looked up.
        let (tgid, pidfd) = match pidfd_open(request.pid) {
            Ok(pidfd) => (request.pid, pidfd),
            Err(_) => {
                let tgid = thread_group(request.pid)?;
                (tgid, pidfd_open(tgid).ok()?)
            }
        };
        let program = Traced { listener, id: request.id, tgid, pidfd, args: request.data.args };
        program.still_waiting().then_some(program)
    }

    /// Whether the notification is still pending: the thread id, the pid
    /// and the memory read belong to the process that made the call.
    fn still_waiting(&self) -> bool {
        still_waiting(self.listener, self.id)
    }

    /// Our descriptor for the call's socket, when it is an inet stream
    /// socket (the only kind that moves).
    fn inet_stream_socket(&self) -> Option<OwnedFd> {
        // Moves switched off (STYXY_PRELOAD=off): nothing is looked at.
        config::get()?;
        let fd = take_fd(&self.pidfd, RawFd::try_from(self.args[0]).ok()?).ok()?;
        let domain = int_option(fd.as_raw_fd(), libc::SO_DOMAIN)?;
        let stream = int_option(fd.as_raw_fd(), libc::SO_TYPE)? == libc::SOCK_STREAM;
        (stream && (domain == libc::AF_INET || domain == libc::AF_INET6)).then_some(fd)
    }

    fn bind(&self) -> Reply {
        let Some(socket) = self.inet_stream_socket() else {
            return Reply::Continue;
        };
        let Some(addr) = self.address().filter(|addr| mover::concerns(self, socket.as_raw_fd(), addr)) else {
            return Reply::Continue;
        };
        match mover::bind(self, socket.as_raw_fd(), &addr) {
            Ok(()) => Reply::Value(0),
            Err(errno) => Reply::Error(errno),
        }
    }

    /// A connect to this host goes where the program's clients are sent
    /// (`styxy_relocate::connect::target`, as the preload's connect hook
    /// asks): the supervisor connects the program's socket there and
    /// replies with the result (EINPROGRESS for a non-blocking socket, as
    /// the program's own call would). Any other connect is the kernel's.
    fn connect(&self) -> Reply {
        let Some((addr, to)) = redirect(self.listener, self.id, &self.args, self.tgid) else {
            return Reply::Continue;
        };
        if portmap::never_moved(addr.port(), || self.program()) {
            return Reply::Continue;
        }
        let Some(socket) = self.inet_stream_socket() else {
            return Reply::Continue;
        };
        let moved = addr.with_port(to);
        // SAFETY: moved is a valid inet address of moved.socklen() bytes.
        let rc = unsafe { libc::syscall(libc::SYS_connect, socket.as_raw_fd(), moved.as_ptr(), moved.socklen()) };
        if rc == 0 {
            return Reply::Value(0);
        }
        Reply::Error(io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL))
    }

    fn address(&self) -> Option<InetAddr> {
        call_address(self.listener, self.id, &self.args, self.tgid)
    }

    fn listen(&self) -> Reply {
        let Some(socket) = self.inet_stream_socket() else {
            return Reply::Continue;
        };
        let backlog = self.args[1] as c_int;
        if Subject::listen(self, socket.as_raw_fd(), backlog) == 0 {
            follow::listened(self, socket.as_raw_fd());
            return Reply::Value(0);
        }
        match io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL) {
            libc::EADDRINUSE if mover::listen_failed(self, socket.as_raw_fd(), backlog) => Reply::Value(0),
            errno => Reply::Error(errno),
        }
    }

    fn read_memory(&self, addr: u64, buf: &mut [u8]) -> Option<usize> {
        read_memory(self.tgid, addr, buf)
    }

    /// The NUL-terminated string at `addr` in the program.
    fn read_string(&self, addr: u64) -> Option<Vec<u8>> {
        let mut text = Vec::new();
        let mut at = addr;
        while text.len() < MAX_PATH {
            // Up to the end of the page, so an unmapped next page is no error.
            let chunk = 4096 - (at % 4096) as usize;
            let mut buf = vec![0u8; chunk];
            let n = self.read_memory(at, &mut buf)?;
            if n == 0 {
                return None;
            }
            if let Some(end) = buf[..n].iter().position(|&b| b == 0) {
                text.extend_from_slice(&buf[..end]);
                return Some(text);
            }
            text.extend_from_slice(&buf[..n]);
            at = at.checked_add(n as u64)?;
        }
        None
    }

    /// Names a setuid or setgid program the tree is about to exec: under
    /// no_new_privs it runs without the privileges it expects.
    fn note_setuid_exec(&self, nr: c_long) {
        let (dir_fd, path_arg) =
            if nr == libc::SYS_execveat { (self.args[0] as i32, self.args[1]) } else { (libc::AT_FDCWD, self.args[0]) };
        let Some(path) = self.read_string(path_arg) else {
            return;
        };
        let path = PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(path));
        let base = if dir_fd == libc::AT_FDCWD {
            PathBuf::from(format!("/proc/{}/cwd", self.tgid))
        } else {
            PathBuf::from(format!("/proc/{}/fd/{dir_fd}", self.tgid))
        };
        let Ok(meta) = std::fs::metadata(base.join(&path)) else {
            return;
        };
        if !self.still_waiting() {
            return;
        }
        let setuid = meta.mode() & libc::S_ISUID != 0;
        let setgid = meta.mode() & libc::S_ISGID != 0 && meta.mode() & libc::S_IXGRP != 0;
        if setuid || setgid {
            let kind = if setuid { "setuid" } else { "setgid" };
            self.tell(setuid_line(&path, kind).as_bytes());
        }
    }

    fn read_proc(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(format!("/proc/{}/{name}", self.tgid)).ok()
    }
}

/// The line naming a setuid program run under the supervisor.
fn setuid_line(path: &Path, kind: &str) -> String {
    format!(
        "styxy: {} is {kind}; under styxy's seccomp supervisor (no_new_privs) it runs without those privileges\n",
        path.display()
    )
}

impl Subject for Traced {
    unsafe fn bind(&self, fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
        // The raw call: a preload in this process must not see it.
        // SAFETY: addr points to len readable bytes (the caller's contract).
        unsafe { libc::syscall(libc::SYS_bind, fd, addr, len) as c_int }
    }

    fn listen(&self, fd: c_int, backlog: c_int) -> c_int {
        // SAFETY: plain integer arguments.
        unsafe { libc::syscall(libc::SYS_listen, fd, backlog) as c_int }
    }

    fn closes_on_exec(&self, _fd: c_int) -> Option<bool> {
        // Our duplicate always closes on exec; the program's descriptor's
        // flag is in its fdinfo (octal "flags:").
        let info = self.read_proc(&format!("fdinfo/{}", self.args[0]))?;
        let flags = info.lines().find_map(|line| line.strip_prefix("flags:"))?.trim();
        let flags = u32::from_str_radix(flags, 8).ok()?;
        Some(flags & libc::O_CLOEXEC as u32 != 0)
    }

    fn install(&self, replacement: c_int, _fd: c_int, close_on_exec: bool) -> bool {
        let Ok(target) = u32::try_from(self.args[0]) else {
            return false;
        };
        let addfd = libc::seccomp_notif_addfd {
            id: self.id,
            flags: libc::SECCOMP_ADDFD_FLAG_SETFD as u32,
            srcfd: replacement as u32,
            newfd: target,
            newfd_flags: if close_on_exec { libc::O_CLOEXEC as u32 } else { 0 },
        };
        // SAFETY: a complete addfd request; the kernel installs a copy of
        // our descriptor at the program's number, closing what was there.
        unsafe { libc::ioctl(self.listener, libc::SECCOMP_IOCTL_NOTIF_ADDFD, &raw const addfd) >= 0 }
    }

    fn pid(&self) -> u32 {
        self.tgid
    }

    fn parent(&self) -> Option<u32> {
        portmap::parent_of(self.tgid)
    }

    fn recorded_pid(&self) -> Option<u32> {
        Some(self.tgid)
    }

    fn program(&self) -> [u64; 2] {
        let comm = self.read_proc("comm").unwrap_or_default();
        styxy_proto::portmap::program_words(comm.trim_end_matches('\n').as_bytes())
    }

    fn name<'a>(&self, buf: &'a mut [u8; 17]) -> &'a [u8] {
        let comm = self.read_proc("comm").unwrap_or_default();
        let comm = comm.trim_end_matches('\n').as_bytes();
        let len = comm.len().min(16);
        buf[..len].copy_from_slice(&comm[..len]);
        &buf[..len]
    }

    fn tell(&self, line: &[u8]) {
        match take_fd(&self.pidfd, libc::STDERR_FILENO) {
            Ok(stderr) => {
                let _ = std::fs::File::from(stderr).write_all(line);
            }
            Err(_) => {
                let _ = io::stderr().write_all(line);
            }
        }
    }
}

fn int_option(fd: RawFd, name: c_int) -> Option<c_int> {
    let mut value: c_int = 0;
    let mut len = size_of::<c_int>() as socklen_t;
    // SAFETY: value and len are valid for writing an int.
    let rc = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, name, (&raw mut value).cast(), &mut len) };
    (rc == 0).then_some(value)
}

/// Where a connect (notification `id` with `args`, made by `pid`) is sent
/// instead, with its address: a port of this host whose server a scope
/// moved (`styxy_relocate::connect::target`, as the preload's connect hook
/// asks).
fn redirect(listener: RawFd, id: u64, args: &[u64; 6], pid: u32) -> Option<(InetAddr, u16)> {
    let config = config::get()?;
    let addr = call_address(listener, id, args, pid).filter(InetAddr::is_loopback_or_wildcard)?;
    Some((addr, connect::target(config, addr.port())?))
}

/// The socket address a bind or connect names (its second and third
/// arguments), read from `pid` (the calling thread or its process) while
/// the call is still pending.
fn call_address(listener: RawFd, id: u64, args: &[u64; 6], pid: u32) -> Option<InetAddr> {
    let len = usize::try_from(args[2]).ok().filter(|&n| n <= MAX_SOCKADDR)?;
    let mut raw = [0u8; MAX_SOCKADDR];
    let read = read_memory(pid, args[1], &mut raw[..len]);
    if read != Some(len) || !still_waiting(listener, id) {
        return None;
    }
    // SAFETY: raw holds len bytes read from the program.
    unsafe { InetAddr::from_raw(raw.as_ptr().cast(), len as socklen_t) }
}

/// Copies `buf.len()` bytes at `addr` in `pid` (a thread id serves as well
/// as its process's); how many it got.
fn read_memory(pid: u32, addr: u64, buf: &mut [u8]) -> Option<usize> {
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: buf.len() };
    // SAFETY: local is writable for its length; the kernel checks remote.
    let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    usize::try_from(n).ok()
}

/// Whether notification `id` is still pending: the thread, the pid and the
/// memory read belong to the process that made the call.
fn still_waiting(listener: RawFd, id: u64) -> bool {
    // SAFETY: ID_VALID reads a u64.
    unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &raw const id) == 0 }
}

/// The process a thread belongs to (its Tgid in /proc/TID/status).
fn thread_group(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status.lines().find_map(|line| line.strip_prefix("Tgid:")).and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_belongs_to_its_process() {
        let pid = std::process::id();
        assert_eq!(thread_group(pid), Some(pid));
        let (tid, group) = std::thread::spawn(|| {
            // SAFETY: gettid cannot fail.
            let tid = unsafe { libc::gettid() } as u32;
            (tid, thread_group(tid))
        })
        .join()
        .unwrap();
        assert_ne!(tid, pid);
        assert_eq!(group, Some(pid));
    }

    #[test]
    fn the_setuid_line_names_the_program() {
        assert_eq!(
            setuid_line(Path::new("/usr/bin/sudo"), "setuid"),
            "styxy: /usr/bin/sudo is setuid; under styxy's seccomp supervisor (no_new_privs) it runs without those privileges\n"
        );
    }
}
