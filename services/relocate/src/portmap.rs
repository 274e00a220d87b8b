//! The allocator's port map (docs/api.md, styxy_proto::portmap): `ports.map`
//! beside its socket, 65536 little-endian u32, entry = the pid whose lease
//! it is, or the user a reservation no process owns is held for (0 free,
//! 0xFFFFFFFF held for nobody to bind), then the scope table and the
//! `never_move` opt-outs. Mapped read-only, so a reserved port is seen as
//! busy, and a scope's moved server found, without a round trip.
//!
//! A port is busy for us when its owner is neither this process nor one of
//! its ancestors: a reservation made by a wrapper (`styxy run`) covers the
//! programs it starts. An owner that no longer exists does not count (the
//! allocator frees it later). A port held for a user is busy for everyone
//! else: its user's programs may take it.

use crate::Subject;
use crate::config::{self, CPath};
use crate::sys::{self, StackBuf};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use styxy_proto::portmap::{
    ENTRIES, FILE_SIZE, NEVER_MOVE_OFFSET, NO_PROCESS, NeverMove, SIZE, ScopeTable, entry_user,
};
use styxy_proto::procstat::StatFields;

/// How often the hooks look for a new or replaced map file.
const RECHECK_NS: u64 = 1_000_000_000;
const MAX_ANCESTORS: usize = 64;
// Every u16 port has its entry.
const _: () = assert!(ENTRIES > u16::MAX as usize);

/// The mapping lookups read (null: no map).
static MAP: AtomicPtr<u32> = AtomicPtr::new(core::ptr::null_mut());
/// A mapping `MAP` no longer points at, which a lookup that loaded it before
/// may still be reading; unmapped once no lookup runs.
static RETIRED: AtomicPtr<u32> = AtomicPtr::new(core::ptr::null_mut());
/// Lookups between loading `MAP` and finishing their read.
static READERS: AtomicUsize = AtomicUsize::new(0);
/// Set while one thread refreshes (the others go on with the current map).
static REFRESHING: AtomicBool = AtomicBool::new(false);
static MAP_DEV: AtomicU64 = AtomicU64::new(0);
static MAP_INO: AtomicU64 = AtomicU64::new(0);
static NEXT_CHECK_NS: AtomicU64 = AtomicU64::new(0);

/// Maps the port map at load time.
pub fn init() {
    // A fork copies the counters as they were, but only the forking thread:
    // a lookup or refresh another thread was in never ends in the child.
    // SAFETY: registers a handler that only stores to atomics.
    unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    refresh();
}

extern "C" fn after_fork_in_child() {
    READERS.store(0, Ordering::SeqCst);
    REFRESHING.store(false, Ordering::Release);
}

/// Maps the first map file found beside a candidate socket (same order as
/// the client tries them). A replaced file is mapped anew and its old
/// mapping unmapped once no lookup can be reading it.
pub fn refresh() {
    let Some(config) = config::get() else {
        return;
    };
    if REFRESHING.swap(true, Ordering::Acquire) {
        return;
    }
    NEXT_CHECK_NS.store(sys::now_ns().saturating_add(RECHECK_NS), Ordering::Relaxed);
    unmap_retired_if_unread();
    if !config.port_maps.iter().flatten().any(map_if_new) {
        install(core::ptr::null_mut(), 0, 0);
    }
    REFRESHING.store(false, Ordering::Release);
}

/// Whether `path` is (now) the map in use; false when it is absent or not
/// one to believe. A map is mapped only when it is a regular file of the
/// full size, owned by us, root or the system service's user and writable by
/// nobody else: such a writer replaces the file by rename and never shrinks
/// it, so a read through the mapping cannot fault (SIGBUS) however another
/// user tampers with the path.
fn map_if_new(path: &CPath) -> bool {
    // SAFETY: zero is a valid stat buffer.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: path is NUL-terminated; st is writable.
    if unsafe { libc::lstat(path.as_cstr().as_ptr(), &mut st) } != 0 {
        return false;
    }
    if !MAP.load(Ordering::Acquire).is_null()
        && MAP_DEV.load(Ordering::Relaxed) == st.st_dev
        && MAP_INO.load(Ordering::Relaxed) == st.st_ino
    {
        return true;
    }
    // SAFETY: open/fstat/mmap/close on a path we own nothing of; the
    // mapping is read-only and made only of the file just checked.
    let map = unsafe {
        let fd = libc::open(path.as_cstr().as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW);
        if fd < 0 {
            return false;
        }
        let map = if libc::fstat(fd, &mut st) == 0 && is_believable(&st) {
            libc::mmap(core::ptr::null_mut(), FILE_SIZE, libc::PROT_READ, libc::MAP_SHARED, fd, 0)
        } else {
            libc::MAP_FAILED
        };
        sys::close(fd);
        map
    };
    if map == libc::MAP_FAILED {
        return false;
    }
    if !install(map.cast(), st.st_dev, st.st_ino) {
        unmap(map.cast());
    }
    true
}

fn is_believable(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
        && usize::try_from(st.st_size).ok() == Some(FILE_SIZE)
        && st.st_mode & 0o022 == 0
        && styxy_proto::trust::is_trusted_uid(st.st_uid)
}

/// Points lookups at `map` (null: none), the file `dev`/`ino`. The mapping
/// it replaces is unmapped at once when no lookup runs, else retired until
/// the next refresh. False, changing nothing, while an older retired mapping
/// still has a reader: then the current map stays until the next check, and
/// at most two mappings ever exist.
fn install(map: *mut u32, dev: u64, ino: u64) -> bool {
    if !RETIRED.load(Ordering::Acquire).is_null() {
        return false;
    }
    MAP_DEV.store(dev, Ordering::Relaxed);
    MAP_INO.store(ino, Ordering::Relaxed);
    // SeqCst here and in `entry`: either this load sees the lookup's
    // increment, or the lookup's load of MAP sees the new pointer.
    let old = MAP.swap(map, Ordering::SeqCst);
    if !old.is_null() {
        RETIRED.store(old, Ordering::Release);
        unmap_retired_if_unread();
    }
    true
}

/// Unmaps the retired mapping when no lookup runs: any lookup that starts
/// later loads the current MAP.
fn unmap_retired_if_unread() {
    let retired = RETIRED.load(Ordering::Acquire);
    if !retired.is_null() && READERS.load(Ordering::SeqCst) == 0 {
        unmap(retired);
        RETIRED.store(core::ptr::null_mut(), Ordering::Release);
    }
}

fn unmap(map: *mut u32) {
    // SAFETY: `map` is a mapping of FILE_SIZE bytes this module made and no
    // lookup can reach any more.
    unsafe { libc::munmap(map.cast(), FILE_SIZE) };
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

/// `read` of the current mapping, `absent` when there is none.
fn with_map<T>(absent: T, read: impl FnOnce(*const u32) -> T) -> T {
    READERS.fetch_add(1, Ordering::SeqCst);
    let map = MAP.load(Ordering::SeqCst);
    // The mapping stays mapped while READERS counts this lookup.
    let value = if map.is_null() { absent } else { read(map) };
    // Release: the read above happens before a refresh that sees the count drop.
    READERS.fetch_sub(1, Ordering::Release);
    value
}

/// The map's entry for `port` (0 when there is no map).
fn entry(port: u16) -> u32 {
    with_map(0, |map| {
        // SAFETY: the mapping holds ENTRIES u32 first; volatile because the
        // allocator rewrites it underneath us.
        u32::from_le(unsafe { map.add(usize::from(port)).read_volatile() })
    })
}

/// The port `uid`'s server of `canonical` listens on in the scope whose
/// hash is `scope`, when the allocator moved one.
pub fn scope_target(uid: u32, scope: u64, canonical: u16) -> Option<u16> {
    refresh_if_due();
    with_map(None, |map| {
        // SAFETY: the mapping is FILE_SIZE bytes; the scope table fills it
        // from SIZE on and holds only atomics, valid for any bytes.
        let table = unsafe { &*map.cast::<u8>().add(SIZE).cast::<ScopeTable>() };
        if table.is_valid() { table.lookup(uid, scope, canonical) } else { None }
    })
}

/// Whether `[preload] never_move` names `port` or the program `program`
/// names (asked only when programs are listed).
pub fn never_moved(port: u16, program: impl FnOnce() -> [u64; 2]) -> bool {
    refresh_if_due();
    with_map(false, |map| {
        // SAFETY: as in scope_target; the opt-outs follow the scope table,
        // whose header vouches for both.
        let (table, never) = unsafe {
            let base = map.cast::<u8>();
            (&*base.add(SIZE).cast::<ScopeTable>(), &*base.add(NEVER_MOVE_OFFSET).cast::<NeverMove>())
        };
        table.is_valid() && never.covers(port, program)
    })
}

/// Whether the allocator has handed `port` to another owner than the
/// subject's program.
pub fn held_by_other(subject: &impl Subject, port: u16) -> bool {
    refresh_if_due();
    match entry(port) {
        0 => false,
        NO_PROCESS => true,
        held => match entry_user(held) {
            Some(uid) => uid != sys::geteuid(),
            None => !is_program_or_ancestor(subject, held) && sys::process_exists(held),
        },
    }
}

/// Whether the allocation on `port` is the subject's program's or an
/// ancestor's.
pub fn held_by_own(subject: &impl Subject, port: u16) -> bool {
    refresh_if_due();
    match entry(port) {
        0 | NO_PROCESS => false,
        owner => is_program_or_ancestor(subject, owner),
    }
}

fn is_program_or_ancestor(subject: &impl Subject, pid: u32) -> bool {
    if pid == subject.pid() || config::get().is_some_and(|c| c.loader_pid == pid) {
        return true;
    }
    let Some(mut current) = subject.parent() else {
        return false;
    };
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

/// The parent pid from /proc/PID/stat.
pub fn parent_of(pid: u32) -> Option<u32> {
    let mut path = StackBuf::<32>::new();
    let _ = path.push(b"/proc/") && path.push_u32(pid) && path.push(b"/stat");
    let mut buf = [0u8; 512];
    StatFields::parse(sys::read_file(path.as_cstr()?, &mut buf)?)?.parent()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;
    use std::path::Path;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    const PORT: u16 = 40000;

    /// Writes a map whose entry for PORT is `owner`, in place of the old file.
    fn replace_map(dir: &Path, owner: u32) -> std::io::Result<()> {
        let mut map = vec![0u8; FILE_SIZE];
        let entry = map.chunks_exact_mut(4).nth(usize::from(PORT)).ok_or(std::io::ErrorKind::InvalidInput)?;
        entry.copy_from_slice(&owner.to_le_bytes());
        std::fs::write(dir.join("next.map"), map)?;
        std::fs::rename(dir.join("next.map"), dir.join("ports.map"))
    }

    fn mappings_of(dir: &Path) -> std::io::Result<usize> {
        let maps = std::fs::read_to_string("/proc/self/maps")?;
        let dir = dir.to_string_lossy();
        Ok(maps.lines().filter(|line| line.contains(&*dir)).count())
    }

    #[test]
    fn a_replaced_map_is_unmapped_without_pulling_it_from_under_a_reader() -> Result<(), Box<dyn Error>> {
        let dir = tempfile::tempdir()?;
        let path = CPath::new(&dir.path().join("ports.map")).ok_or("path too long")?;
        replace_map(dir.path(), 1)?;
        assert!(map_if_new(&path));
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut lookups = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let owner = entry(PORT);
                        assert!((1..=2).contains(&owner), "entry {owner}");
                        lookups += 1;
                    }
                    lookups
                })
            })
            .collect();
        for round in 0..200 {
            replace_map(dir.path(), 1 + round % 2)?;
            assert!(map_if_new(&path));
            unmap_retired_if_unread();
            let mapped = mappings_of(dir.path())?;
            assert!(mapped <= 2, "round {round}: {mapped} mappings");
        }
        stop.store(true, Ordering::Relaxed);
        for reader in readers {
            assert!(reader.join().map_err(|_| "a reader failed")? > 0);
        }
        // A replacement that met a reader in the retired map was put off;
        // with no reader left the next check takes the file.
        unmap_retired_if_unread();
        assert!(map_if_new(&path));
        assert_eq!(mappings_of(dir.path())?, 1);
        assert_eq!(entry(PORT), 2);

        std::fs::remove_file(dir.path().join("ports.map"))?;
        assert!(!map_if_new(&path));
        assert!(install(core::ptr::null_mut(), 0, 0));
        assert_eq!(mappings_of(dir.path())?, 0);
        assert_eq!(entry(PORT), 0);
        Ok(())
    }
}
