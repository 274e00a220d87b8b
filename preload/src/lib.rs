//! styxy-preload: an `LD_PRELOAD` library that moves a TCP server whose port
//! is busy to a free one, "bind first, ask later" (docs/design.md, "The preload path").
//!
//! `bind` and `listen` are interposed. Only inet `SOCK_STREAM` sockets on
//! ports ≥ 1024 ever move; everything else goes straight to the real call.
//! `connect` is interposed so a client reaches its own scope's moved server
//! (`connect.rs`); it never allocates, never asks the allocator and adds
//! one bitmap load for a port no scope moved.
//! The move itself is `styxy_relocate`'s, which `styxy run`'s seccomp
//! supervisor shares; this library is the hooks, the real calls and the
//! [`Subject`] they act for (this very process).
//!
//! Everything reachable from the hooks runs inside arbitrary host programs,
//! so it keeps to: no panics (a panic in an `extern "C"` hook aborts the
//! host), no locks, no heap allocation, no std I/O and no `std::net` (it would
//! re-enter the hook): raw libc calls, stack buffers and atomics. Allocation
//! happens only in the load-time constructor (`on_load`);
//! tests/hook_path.rs counts the allocations of every hook path and finds none.
//!
//! # Stack budget
//!
//! The hooks run on the stack of whichever thread calls `bind` or `listen`,
//! which may be small (a musl thread gets 128 KiB, some runtimes less). They
//! take at most 16 KiB of it. The deepest path is a move: `diag`'s 8 KiB
//! buffer for the kernel's listener dump, under the frames of the move and its
//! local search. The allocator round trip's buffers (`client`: a 4 KiB
//! answer and the request) and the 512-byte /proc/PID/stat read of the port
//! map's ancestry check are never live at the same time as that one.
//! The client's functions are never inlined, so their buffers never share
//! a frame with that dump. `connect` takes under 2 KiB.
//! tests/hook_path.rs measures every path on a painted stack and holds it to
//! the budget: about 10 KiB in a release build, 13 KiB unoptimised.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod connect;
mod real;

use core::cell::Cell;
use libc::{c_int, sockaddr, socklen_t};
use styxy_relocate::addr::InetAddr;
use styxy_relocate::{Subject, config, family, follow, mover, portmap, sys};

thread_local! {
    /// Set while this thread runs a hook, so nothing inside can re-enter it.
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

struct HookGuard;

impl HookGuard {
    fn enter() -> Option<HookGuard> {
        let was_in = IN_HOOK.try_with(|flag| flag.replace(true)).ok()?;
        (!was_in).then_some(HookGuard)
    }
}

impl Drop for HookGuard {
    fn drop(&mut self) {
        let _ = IN_HOOK.try_with(|flag| flag.set(false));
    }
}

/// The program the library is loaded in: moves act on its own descriptors.
struct ThisProgram;

impl Subject for ThisProgram {
    unsafe fn bind(&self, fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
        // SAFETY: forwarded from the caller, who upholds bind's contract.
        unsafe { real::bind(fd, addr, len) }
    }

    fn listen(&self, fd: c_int, backlog: c_int) -> c_int {
        real::listen(fd, backlog)
    }

    fn closes_on_exec(&self, fd: c_int) -> Option<bool> {
        // SAFETY: F_GETFD on a descriptor the program passed us.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        (flags >= 0).then_some(flags & libc::FD_CLOEXEC != 0)
    }

    fn install(&self, replacement: c_int, fd: c_int, close_on_exec: bool) -> bool {
        let flags = if close_on_exec { libc::O_CLOEXEC } else { 0 };
        // SAFETY: dup3 onto the program's descriptor, which it handed us.
        unsafe { libc::dup3(replacement, fd, flags) == fd }
    }

    fn pid(&self) -> u32 {
        sys::getpid()
    }

    fn parent(&self) -> Option<u32> {
        Some(sys::getppid())
    }

    fn recorded_pid(&self) -> Option<u32> {
        None
    }

    fn program(&self) -> [u64; 2] {
        config::get().map_or([0; 2], |c| c.program)
    }

    fn name<'a>(&self, buf: &'a mut [u8; 17]) -> &'a [u8] {
        // SAFETY: PR_GET_NAME writes at most 16 bytes and a NUL.
        unsafe { libc::prctl(libc::PR_GET_NAME, buf.as_mut_ptr()) };
        let len = buf.iter().position(|&b| b == 0).unwrap_or(16);
        buf.get(..len).unwrap_or(&[])
    }

    fn tell(&self, line: &[u8]) {
        sys::write_stderr(line);
    }
}

/// Interposed `bind(2)`.
///
/// # Safety
/// Same contract as libc's `bind`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: forwarded unchanged from the caller, who upholds bind's contract.
    let pass = || unsafe { real::bind(fd, addr, len) };
    if config::get().is_none() {
        return pass();
    }
    // A bad pointer is the kernel's EFAULT for the program, as without us,
    // not a SIGSEGV in our copy.
    let errno = sys::errno();
    if !sys::is_readable(addr.cast(), usize::try_from(len).unwrap_or(0).min(size_of::<libc::sockaddr_in6>())) {
        return pass();
    }
    sys::set_errno(errno);
    // SAFETY: as above.
    let Some(inet) = (unsafe { InetAddr::from_raw(addr, len) }) else {
        return pass();
    };
    if !mover::concerns(&ThisProgram, fd, &inet) {
        return pass();
    }
    let Some(_guard) = HookGuard::enter() else {
        return pass();
    };
    match mover::bind(&ThisProgram, fd, &inet) {
        Ok(()) => 0,
        Err(errno) => {
            sys::set_errno(errno);
            -1
        }
    }
}

/// Interposed `connect(2)`.
///
/// # Safety
/// Same contract as libc's `connect`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: forwarded unchanged from the caller, who upholds connect's contract.
    unsafe { connect::connect_hook(fd, addr, len) }
}

/// Interposed `listen(2)`.
#[unsafe(no_mangle)]
pub extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    let rc = real::listen(fd, backlog);
    if config::get().is_none() || rc != 0 && sys::errno() != libc::EADDRINUSE {
        return rc;
    }
    let Some(_guard) = HookGuard::enter() else {
        return rc;
    };
    if rc == 0 {
        follow::listened(&ThisProgram, fd);
        return 0;
    }
    if mover::listen_failed(&ThisProgram, fd, backlog) {
        return 0;
    }
    sys::set_errno(libc::EADDRINUSE);
    -1
}

/// Runs when the dynamic loader maps the library, before the program's `main`.
/// The real calls are resolved first, whatever the settings: the hooks
/// always need them.
extern "C" fn on_load() {
    real::resolve();
    if config::init() {
        family::init();
        portmap::init();
    }
}

#[used]
#[unsafe(link_section = ".init_array")]
static ON_LOAD: extern "C" fn() = on_load;
