//! The allocator's port map (docs/api.md, styxy_core::portmap): `ports.map`
//! beside its socket, 65536 little-endian u32, entry = the pid that owns or
//! asked for the allocation on that port (0 free, 0xFFFFFFFF no pid known).
//! Mapped read-only, so a reserved port is seen as busy without a round trip.
//!
//! A port is busy for us when its owner is neither this process nor one of
//! its ancestors: a reservation made by a wrapper or shell (`styxy run`, a
//! session) covers the programs it starts. An owner that no longer exists
//! does not count (the allocator frees it later).

use crate::config::{self, CPath};
use crate::sys::{self, StackBuf};
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

const PORTS: usize = 1 << 16;
const MAP_BYTES: usize = PORTS * 4;
const HELD_WITHOUT_PID: u32 = u32::MAX;
/// How often the hooks look for a new or replaced map file.
const RECHECK_NS: u64 = 1_000_000_000;
const MAX_ANCESTORS: usize = 64;

static MAP: AtomicPtr<u32> = AtomicPtr::new(core::ptr::null_mut());
static MAP_DEV: AtomicU64 = AtomicU64::new(0);
static MAP_INO: AtomicU64 = AtomicU64::new(0);
static NEXT_CHECK_NS: AtomicU64 = AtomicU64::new(0);

/// Maps the first map file found beside a candidate socket (same order as
/// the client tries them). A replaced file is mapped anew; an old mapping
/// is left in place because another thread may be reading it.
pub fn refresh() {
    let Some(config) = config::get() else {
        return;
    };
    NEXT_CHECK_NS.store(sys::now_ns().saturating_add(RECHECK_NS), Ordering::Relaxed);
    for path in config.port_maps.iter().flatten() {
        if map_if_new(path) {
            return;
        }
    }
    MAP.store(core::ptr::null_mut(), Ordering::Release);
}

/// Whether `path` is (now) the map in use; false when it is absent.
fn map_if_new(path: &CPath) -> bool {
    // SAFETY: zero is a valid stat buffer; path is NUL-terminated.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    if unsafe { libc::stat(path.as_cstr().as_ptr(), &mut st) } != 0 {
        return false;
    }
    if usize::try_from(st.st_size).ok() != Some(MAP_BYTES) {
        return false;
    }
    let (dev, ino) = (st.st_dev, st.st_ino);
    if !MAP.load(Ordering::Acquire).is_null()
        && MAP_DEV.load(Ordering::Relaxed) == dev
        && MAP_INO.load(Ordering::Relaxed) == ino
    {
        return true;
    }
    // SAFETY: open/mmap/close on a path we own nothing of; the mapping is
    // read-only and never unmapped.
    unsafe {
        let fd = libc::open(path.as_cstr().as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let map = libc::mmap(core::ptr::null_mut(), MAP_BYTES, libc::PROT_READ, libc::MAP_SHARED, fd, 0);
        sys::close(fd);
        if map == libc::MAP_FAILED {
            return false;
        }
        MAP_DEV.store(dev, Ordering::Relaxed);
        MAP_INO.store(ino, Ordering::Relaxed);
        MAP.store(map.cast(), Ordering::Release);
    }
    true
}

fn refresh_if_due() {
    let due = NEXT_CHECK_NS.load(Ordering::Relaxed);
    if sys::now_ns() < due {
        return;
    }
    // One thread refreshes; the others keep using the current map.
    if NEXT_CHECK_NS.compare_exchange(due, due.saturating_add(RECHECK_NS), Ordering::AcqRel, Ordering::Relaxed).is_ok()
    {
        refresh();
    }
}

/// The map's entry for `port` (0 when there is no map).
fn entry(port: u16) -> u32 {
    let map = MAP.load(Ordering::Acquire);
    if map.is_null() {
        return 0;
    }
    // SAFETY: the mapping holds PORTS u32 and is never unmapped; volatile
    // because the allocator rewrites it underneath us.
    u32::from_le(unsafe { map.add(usize::from(port)).read_volatile() })
}

/// Whether the allocator has handed `port` to another owner.
pub fn held_by_other(port: u16) -> bool {
    refresh_if_due();
    match entry(port) {
        0 => false,
        HELD_WITHOUT_PID => true,
        owner => !is_us_or_ancestor(owner) && sys::process_exists(owner),
    }
}

fn is_us_or_ancestor(pid: u32) -> bool {
    if pid == sys::getpid() || config::get().is_some_and(|c| c.loader_pid == pid) {
        return true;
    }
    let mut current = sys::getppid();
    for _ in 0..MAX_ANCESTORS {
        if current == pid {
            return true;
        }
        match parent_of(current) {
            Some(parent) if parent > 0 && parent != current => current = parent,
            _ => return false,
        }
    }
    false
}

/// The parent pid from /proc/<pid>/stat (field 4, after the last ')').
fn parent_of(pid: u32) -> Option<u32> {
    let mut path = StackBuf::<32>::new();
    let _ = path.push(b"/proc/") && path.push_u32(pid) && path.push(b"/stat");
    let mut buf = [0u8; 512];
    let stat = sys::read_file(path.as_cstr()?, &mut buf)?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    let mut fields = stat.get(close.checked_add(2)?..)?.split(|&b| b == b' ');
    let _state = fields.next()?;
    sys::parse_u32(fields.next()?)
}
