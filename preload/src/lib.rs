//! styxy-preload: an `LD_PRELOAD` library that moves a TCP server whose port
//! is busy to a free one, "bind first, ask later" (docs/design.md, "The preload path").
//!
//! `bind` and `listen` are interposed. Only inet `SOCK_STREAM` sockets on
//! ports ≥ 1024 ever move; everything else goes straight to the real call.
//! `connect` is interposed so a client reaches its own scope's moved server
//! (`connect.rs`); it never allocates, never asks the allocator and adds
//! one bitmap load for a port no scope moved.
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

mod addr;
mod client;
mod config;
mod connect;
mod diag;
mod family;
mod follow;
mod json;
mod mover;
mod notice;
mod portmap;
mod real;
mod sys;

use libc::{c_int, sockaddr, socklen_t};

/// Interposed `bind(2)`.
///
/// # Safety
/// Same contract as libc's `bind`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: forwarded unchanged from the caller, who upholds bind's contract.
    unsafe { mover::bind_hook(fd, addr, len) }
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
    mover::listen_hook(fd, backlog)
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
