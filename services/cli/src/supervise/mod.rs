//! `styxy run`'s seccomp supervisor: moves the servers of a whole process
//! tree, whatever it runs (Go, static and musl binaries make their own
//! system calls and never load the preload), with the preload's own move
//! (`styxy_relocate`).
//!
//! The child installs a filter (`filter`) between fork and exec, with
//! no_new_privs, that sends bind, listen and execve to a user-notification
//! listener; it hands the listener back over a socket pair and execs. The
//! supervisor thread answers each notification (`traced`): it takes the
//! program's socket with pidfd_getfd and binds or listens on that same open
//! socket itself, so the program gets the result of the address the
//! supervisor read, never one changed after the check.
//!
//! It fails open and never hangs a program: every answer is bounded by the
//! allocator's deadline; a call it cannot look at proceeds as the program
//! made it; if the supervisor dies, the kernel fails the tree's trapped
//! calls with ENOSYS instead of blocking them.

mod filter;
mod traced;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use styxy_relocate::config::RunPort;

/// Why the supervisor cannot run here, in words for the user's one line.
pub fn unavailable() -> Option<String> {
    if !cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        return Some(format!("the seccomp supervisor does not support {}", std::env::consts::ARCH));
    }
    let scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").ok();
    let scope = scope.as_deref().map(str::trim).and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
    // SAFETY: geteuid cannot fail.
    if scope >= 3 || (scope == 2 && unsafe { libc::geteuid() } != 0) {
        return Some(format!("kernel.yama.ptrace_scope={scope} forbids taking a program's socket (pidfd_getfd)"));
    }
    // Sandboxes (Docker's default profile) deny pidfd_getfd even on ourselves.
    if let Err(error) = take_own_descriptor() {
        return Some(format!("pidfd_getfd is not permitted here ({error})"));
    }
    None
}

/// Takes the pidfd of this process through itself, a descriptor known open.
fn take_own_descriptor() -> io::Result<()> {
    // SAFETY: getpid cannot fail.
    let pidfd = traced::pidfd_open(unsafe { libc::getpid() } as u32)?;
    traced::take_fd(&pidfd, pidfd.as_raw_fd()).map(drop)
}

/// The parent's end of the socket pair the child sends the listener on
/// (the filter and the child's end are prepared before fork, so the child
/// allocates nothing).
pub struct Handover {
    parent: OwnedFd,
}

/// What the child sends when it could not install the filter: the errno.
const INSTALL_FAILED: u8 = b'E';

impl Handover {
    /// Makes `command`'s child install the filter before exec and send the
    /// listener back.
    pub fn arm(command: &mut Command) -> io::Result<Handover> {
        let mut pair = [0; 2];
        // SAFETY: pair is writable for two descriptors.
        if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, pair.as_mut_ptr()) }
            != 0
        {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: socketpair returned two fresh descriptors we own.
        let (parent, child) = unsafe { (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1])) };
        let program = filter::program();
        // SAFETY: the closure runs in the forked child and only makes system
        // calls on memory prepared before the fork (no allocation, no lock).
        unsafe {
            command.pre_exec(move || install_in_child(&program, child.as_raw_fd()));
        }
        Ok(Handover { parent })
    }

    /// Waits for the child: the listener, or why it could not install the
    /// filter (then it does not exec).
    pub fn receive(self) -> Result<OwnedFd, InstallError> {
        receive_listener(self.parent.as_raw_fd())
    }
}

/// Why the filter could not be installed in the child.
#[derive(Debug)]
pub struct InstallError(pub io::Error);

impl std::fmt::Display for InstallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.raw_os_error() {
            Some(libc::EBUSY) => write!(f, "another seccomp supervisor already watches this process (EBUSY)"),
            Some(libc::EINVAL | libc::ENOSYS) => write!(f, "this kernel has no seccomp user notification"),
            Some(libc::EACCES | libc::EPERM) => write!(f, "installing a seccomp filter is not permitted here"),
            _ => write!(f, "installing the seccomp filter failed: {}", self.0),
        }
    }
}

/// Runs in the child between fork and exec.
fn install_in_child(program: &[libc::sock_filter], channel: RawFd) -> io::Result<()> {
    // SAFETY: prctl and seccomp with a program that outlives the calls.
    let listener = unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(report_failure(channel));
        }
        let fprog = libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr().cast_mut() };
        // SPEC_ALLOW: the filter is no sandbox, so the program keeps its
        // speculative store bypass (the kernel would otherwise turn on a
        // mitigation that slows every system call of the tree).
        let flags = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW;
        let install = |flags: libc::c_ulong| {
            libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, flags, &raw const fprog)
        };
        // WAIT_KILLABLE_RECV (5.19): a signal to a program waiting for an
        // answer it was never sent takes effect at once. Older kernels
        // refuse the flag; then without it.
        let mut fd = install(flags | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV);
        if fd < 0 && *libc::__errno_location() == libc::EINVAL {
            fd = install(flags);
        }
        if fd < 0 {
            return Err(report_failure(channel));
        }
        fd as RawFd
    };
    let sent = send_fd(channel, listener);
    // SAFETY: closing the listener's copy the program must not inherit.
    unsafe { libc::close(listener) };
    sent
}

/// Sends errno to the parent and returns it as the spawn's error.
fn report_failure(channel: RawFd) -> io::Error {
    let error = io::Error::last_os_error();
    let errno = error.raw_os_error().unwrap_or(0);
    let mut message = [INSTALL_FAILED, 0, 0, 0, 0];
    message[1..].copy_from_slice(&errno.to_ne_bytes());
    // SAFETY: message is readable; MSG_NOSIGNAL: no SIGPIPE in the child.
    unsafe { libc::send(channel, message.as_ptr().cast(), message.len(), libc::MSG_NOSIGNAL) };
    error
}

/// Control-message space for one descriptor (CMSG_SPACE(sizeof(int))).
const FD_CMSG_SPACE: usize = 24;

/// A message header over one buffer and room for one descriptor.
fn message(iov: &mut libc::iovec, control: &mut [u64; FD_CMSG_SPACE / 8]) -> libc::msghdr {
    // SAFETY: zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = FD_CMSG_SPACE;
    msg
}

fn send_fd(channel: RawFd, fd: RawFd) -> io::Result<()> {
    let mut byte = [b'L'];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    let mut control = [0u64; FD_CMSG_SPACE / 8];
    let msg = message(&mut iov, &mut control);
    // SAFETY: the header points at live buffers and the control buffer
    // holds one cmsghdr with one int.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as usize;
        libc::CMSG_DATA(cmsg).cast::<RawFd>().write_unaligned(fd);
        if libc::sendmsg(channel, &raw const msg, libc::MSG_NOSIGNAL) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn receive_listener(channel: RawFd) -> Result<OwnedFd, InstallError> {
    let mut data = [0u8; 5];
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() };
    let mut control = [0u64; FD_CMSG_SPACE / 8];
    let mut msg = message(&mut iov, &mut control);
    // SAFETY: as in send_fd; the received descriptor, if any, is ours.
    unsafe {
        let n = libc::recvmsg(channel, &raw mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(InstallError(io::Error::last_os_error()));
        }
        if data[0] == INSTALL_FAILED && n == 5 {
            let errno = i32::from_ne_bytes([data[1], data[2], data[3], data[4]]);
            return Err(InstallError(io::Error::from_raw_os_error(errno)));
        }
        let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        if cmsg.is_null() || (*cmsg).cmsg_level != libc::SOL_SOCKET || (*cmsg).cmsg_type != libc::SCM_RIGHTS {
            return Err(InstallError(io::Error::from_raw_os_error(libc::EPROTO)));
        }
        Ok(OwnedFd::from_raw_fd(libc::CMSG_DATA(cmsg).cast::<RawFd>().read_unaligned()))
    }
}

/// Spawns `command` supervised: the child, and the supervisor thread
/// answering its tree until the last process of the tree is gone.
///
/// The supervisor must answer before the spawn returns: the child's own
/// execve is trapped. So a thread takes the listener as the child sends it
/// and serves at once, and tells the spawn whether a listener came. `run`
/// is the port `styxy run` hands the command (its `STYXY_PORT`), whose
/// reservation follows the tree's listeners.
pub fn spawn(command: &mut Command, run: Option<RunPort>) -> Result<Child, SpawnError> {
    let handover = Handover::arm(command).map_err(SpawnError::Setup)?;
    let (received, outcome) = std::sync::mpsc::channel();
    let serving = std::thread::Builder::new().name("styxy-supervisor".into()).spawn(move || match handover.receive() {
        Ok(listener) => {
            let _ = received.send(Ok(()));
            traced::serve(&listener);
        }
        Err(error) => {
            let _ = received.send(Err(error));
        }
    });
    serving.map_err(SpawnError::Setup)?;
    traced::prepare(run);
    match command.spawn() {
        Ok(child) => Ok(child),
        // A child that failed before exec sent why before it exited; one
        // that never forked sent nothing.
        Err(error) => match outcome.recv_timeout(std::time::Duration::from_millis(200)) {
            Ok(Err(install)) => Err(SpawnError::Install(install)),
            _ => Err(SpawnError::Exec(error)),
        },
    }
}

#[derive(Debug)]
pub enum SpawnError {
    /// Preparing the hand-over failed (no socket pair).
    Setup(io::Error),
    /// The filter could not be installed; nothing ran.
    Install(InstallError),
    /// The program could not be executed.
    Exec(io::Error),
}
