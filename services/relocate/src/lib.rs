//! styxy-relocate: moving a TCP server's socket off a busy port to a free
//! one, "bind first, ask later" (docs/design.md, "The preload path" and "The
//! seccomp supervisor").
//!
//! Two callers share every line of it: the preload library, whose hooks act
//! on sockets of the program they run in, and `styxy run`'s seccomp
//! supervisor, which acts on a traced program's socket through a duplicate
//! of its descriptor. What differs between them (the real calls, who the
//! program is, where its stderr goes, how a replacement descriptor is put in
//! place) is the [`Subject`] a move is given; the decision, the allocator
//! round trip, the port map, the listener dump and the line printed are this
//! crate's.
//!
//! Everything here may run inside arbitrary host programs, so it keeps to:
//! no panics (a panic in an `extern "C"` hook aborts the host), no locks, no
//! heap allocation after [`config::init`], no std I/O and no `std::net`
//! (inside the preload it would re-enter the hook): raw libc calls, stack
//! buffers and atomics. preload/tests/hook_path.rs counts the allocations of
//! every hook path and finds none.
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

pub mod addr;
pub mod client;
pub mod config;
pub mod connect;
pub mod diag;
pub mod family;
pub mod follow;
pub mod json;
pub mod mover;
pub mod notice;
pub mod portmap;
pub mod sys;

use libc::{c_int, sockaddr, socklen_t};

/// The program whose socket a move acts on, and how to act on it. `fd` is
/// always the caller's own descriptor for the program's socket: the
/// program's descriptor in the preload, a duplicate of it (pidfd_getfd) in
/// the supervisor, which shares the open socket.
pub trait Subject {
    /// The bind that is not interposed.
    ///
    /// # Safety
    /// `addr` must point to `len` readable bytes.
    unsafe fn bind(&self, fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int;
    /// The listen that is not interposed.
    fn listen(&self, fd: c_int, backlog: c_int) -> c_int;
    /// Whether the program's own descriptor for the socket closes on exec.
    fn closes_on_exec(&self, fd: c_int) -> Option<bool>;
    /// Puts `replacement` (the caller's descriptor) at the program's
    /// descriptor for the socket `fd`, closing what was there.
    fn install(&self, replacement: c_int, fd: c_int, close_on_exec: bool) -> bool;
    /// The program's process id.
    fn pid(&self) -> u32;
    /// Its parent's process id.
    fn parent(&self) -> Option<u32>;
    /// The pid a move's allocation names, when the program is not the
    /// process that talks to the allocator (which the allocator otherwise
    /// takes from the socket's peer credentials).
    fn recorded_pid(&self) -> Option<u32>;
    /// The program's name as `[preload] never_move` matches it (its `comm`
    /// at exec, packed by `styxy_proto::portmap::program_words`).
    fn program(&self) -> [u64; 2];
    /// The program's command name (at most 16 bytes).
    fn name<'a>(&self, buf: &'a mut [u8; 17]) -> &'a [u8];
    /// Writes `line` on the program's stderr.
    fn tell(&self, line: &[u8]);
}
