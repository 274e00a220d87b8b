//! The reserved-port map: a 256 KiB file beside the API socket with one
//! little-endian u32 per port (layout in `styxy_proto::portmap`): the pid of
//! a process lease, 0 for a free port or one awaiting its hand-off (the
//! listener that will adopt it must be let bind it), and the owner's user for
//! every other reservation (session, manual, made over TCP): those live
//! longer than the process that asked, so the map names who they are held
//! for, not a pid that soon means nothing. The preload maps it read-only so
//! a port styxy handed to someone else counts as busy without a round trip;
//! it treats its own pid, its ancestors and dead pids as not busy, and a
//! user's reservation as its own when it runs as that user.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use styxy_proto::model::{Allocation, Change, LeaseKind, State};

pub const ENTRIES: usize = 65536;
pub const SIZE: usize = ENTRIES * 4;
use styxy_proto::portmap::user_entry;

#[derive(Debug, thiserror::Error)]
#[error("port map {path}: {op}: {source}")]
pub struct PortMapError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// The writer's side, owned by the allocator.
pub struct PortMap {
    path: PathBuf,
    base: *mut AtomicU32,
}

// SAFETY: the mapping is only accessed through atomics.
unsafe impl Send for PortMap {}
// SAFETY: as for Send: shared references only load and store atomics.
unsafe impl Sync for PortMap {}

pub fn entry_for(a: &Allocation) -> u32 {
    match (a.lease, a.owner.pid) {
        (LeaseKind::Process, Some(pid)) => pid,
        _ if a.handoff_until.is_some() => 0,
        _ => user_entry(a.owner.uid),
    }
}

impl PortMap {
    /// Creates (or reuses) the map file, world-readable, and fills it from `state`.
    pub fn create(path: &Path, state: &State) -> Result<PortMap, PortMapError> {
        let err = |op| move |source| PortMapError { op, path: path.to_path_buf(), source };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map_err(err("open"))?;
        file.set_len(SIZE as u64).map_err(err("resize"))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o644)).map_err(err("chmod"))?;
        use std::os::fd::AsRawFd;
        // SAFETY: a shared mapping of a file we sized to SIZE; the fd may close after mmap.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(err("mmap")(io::Error::last_os_error()));
        }
        let map = PortMap { path: path.to_path_buf(), base: ptr.cast() };
        map.fill(state);
        Ok(map)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn slot(&self, port: u16) -> &AtomicU32 {
        // SAFETY: port < ENTRIES, inside the mapping that lives as long as self.
        unsafe { &*self.base.add(port as usize) }
    }

    pub fn get(&self, port: u16) -> u32 {
        u32::from_le(self.slot(port).load(Ordering::Acquire))
    }

    fn set(&self, port: u16, value: u32) {
        self.slot(port).store(value.to_le(), Ordering::Release);
    }

    /// Rewrites every entry from `state` (start-up and reloads).
    pub fn fill(&self, state: &State) {
        for port in 0..=u16::MAX {
            let v = state.allocations.get(&port).map_or(0, entry_for);
            if self.get(port) != v {
                self.set(port, v);
            }
        }
    }

    /// Mirrors committed changes.
    pub fn apply(&self, changes: &[Change]) {
        for c in changes {
            match c {
                Change::PutAllocation(a) => self.set(a.port, entry_for(a)),
                Change::RemoveAllocation { port, .. } => self.set(*port, 0),
                _ => {}
            }
        }
    }
}

impl Drop for PortMap {
    fn drop(&mut self) {
        // SAFETY: unmapping the region mapped in create.
        unsafe { libc::munmap(self.base.cast(), SIZE) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use styxy_proto::model::*;

    fn alloc(port: u16, pid: Option<u32>, lease: LeaseKind) -> Allocation {
        Allocation::new(port, "dev", "web", Owner { uid: 1000, pid, start_time: None }, lease)
    }

    #[test]
    fn map_mirrors_allocations_and_is_readable_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PORT_MAP);
        let mut state = State::new("b".into());
        state.allocations.insert(3000, alloc(3000, Some(4242), LeaseKind::Process));
        let map = PortMap::create(&path, &state).unwrap();
        assert_eq!(map.get(3000), 4242);
        map.apply(&[Change::PutAllocation(alloc(3001, None, LeaseKind::Manual))]);
        map.apply(&[Change::PutAllocation(alloc(3002, Some(77), LeaseKind::Session))]);
        map.apply(&[Change::RemoveAllocation { port: 3000, lock_id: "l3000".into() }]);
        let bytes = std::fs::read(&path).unwrap();
        let entry = |p: usize| u32::from_le_bytes(bytes[p * 4..p * 4 + 4].try_into().unwrap());
        assert_eq!(bytes.len(), SIZE);
        assert_eq!(entry(3000), 0);
        assert_eq!(entry(3001), user_entry(1000), "a manual lease names its user");
        assert_eq!(entry(3002), user_entry(1000), "so does a session lease, not the pid that asked");
    }

    const PORT_MAP: &str = styxy_proto::paths::PORT_MAP_NAME;
}
