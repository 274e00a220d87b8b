//! What this program has done with each port, shared by the process and the
//! children it forks without exec (workers of one server): one lock-free
//! word per port in an anonymous shared mapping made at load time. An exec
//! loads the library afresh, so an unrelated program never shares it.
//!
//! Per port P it records the port P's sockets went to (P itself when bound in
//! place, N after a move), so the v4 and v6 sockets of P, and every worker
//! binding P, end up on the same port; and whether a move already took P as
//! its new port, so two simultaneous moves never pick the same one.

use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

const PORTS: usize = 1 << 16;
const TABLE_BYTES: usize = PORTS * size_of::<AtomicU32>();
const HAS_TARGET: u32 = 1 << 16;
const TAKEN_BY_MOVE: u32 = 1 << 17;
const TARGET_MASK: u32 = 0xffff;

/// Used when the shared mapping cannot be made: then forked workers do not
/// see each other's records, everything else works the same.
static PRIVATE: [AtomicU32; PORTS] = [const { AtomicU32::new(0) }; PORTS];
static SHARED: AtomicPtr<AtomicU32> = AtomicPtr::new(core::ptr::null_mut());

pub fn init() {
    // SAFETY: a fresh anonymous mapping; zero-filled, which is "nothing known".
    let map = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            TABLE_BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if map != libc::MAP_FAILED {
        SHARED.store(map.cast(), Ordering::Release);
    }
}

fn slot(port: u16) -> &'static AtomicU32 {
    let mut words = SHARED.load(Ordering::Acquire).cast_const();
    if words.is_null() {
        words = PRIVATE.as_ptr();
    }
    // SAFETY: both tables hold PORTS words and live for the process;
    // `port` < PORTS.
    unsafe { &*words.add(usize::from(port)) }
}

/// Where this program's sockets for `port` went, if it bound it before.
pub fn target(port: u16) -> Option<u16> {
    let word = slot(port).load(Ordering::Acquire);
    (word & HAS_TARGET != 0).then_some((word & TARGET_MASK) as u16)
}

/// Records that `port` went to `to` unless something is recorded already.
pub fn record_first(port: u16, to: u16) {
    let s = slot(port);
    let _ = s.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
        (w & HAS_TARGET == 0).then_some(w | HAS_TARGET | u32::from(to))
    });
}

/// Records that `port` went to `to`, replacing what was there.
pub fn record(port: u16, to: u16) {
    let s = slot(port);
    let _ =
        s.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| Some((w & !TARGET_MASK) | HAS_TARGET | u32::from(to)));
}

/// Takes `port` as a move's new port; false if another move already took it.
pub fn take_for_move(port: u16) -> bool {
    slot(port).fetch_or(TAKEN_BY_MOVE, Ordering::AcqRel) & TAKEN_BY_MOVE == 0
}
