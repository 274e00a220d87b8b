//! The reserved-port map: a 256 KiB file beside the API socket with one
//! little-endian u32 per port, the pid that owns (or, for session and manual
//! leases, asked for) the allocation on that port (0 = free, or awaiting
//! its hand-off: the listener that will adopt it must be let bind it;
//! [`NO_PROCESS`] = held with no pid known). The preload maps it read-only so a port styxy
//! handed to someone else counts as busy without a round trip; it treats its
//! own pid, its ancestors and dead pids as not busy, so the server a shell
//! reserved a port for can take it.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use styxy_proto::model::{Allocation, Change, State};

pub const ENTRIES: usize = 65536;
pub const SIZE: usize = ENTRIES * 4;
/// Entry value for ports held with no pid known (TCP clients).
pub const NO_PROCESS: u32 = u32::MAX;

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
    match a.owner.pid {
        Some(pid) => pid,
        None if a.handoff_until.is_some() => 0,
        None => NO_PROCESS,
    }
}

impl PortMap {
    /// Writes a new map file from `state` and puts it in place of the old
    /// one by rename: a fresh file (O_EXCL, O_NOFOLLOW: nothing planted under
    /// the temporary name is followed), world-readable, its whole size
    /// reserved up front so that a full disk is this error rather than a
    /// SIGBUS at the first write, and never shrunk while mapped, so no
    /// reader's mapping can fault.
    pub fn create(path: &Path, state: &State) -> Result<PortMap, PortMapError> {
        let err = |op| move |source| PortMapError { op, path: path.to_path_buf(), source };
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(err("remove leftover")(e)),
            _ => {}
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(err("create"))?;
        let map = Self::map_new_file(&file, path).inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })?;
        map.fill(state);
        fs::rename(&tmp, path).map_err(err("rename into place"))?;
        Ok(map)
    }

    /// Sizes, opens up and maps a freshly created map file.
    fn map_new_file(file: &fs::File, path: &Path) -> Result<PortMap, PortMapError> {
        let err = |op| move |source| PortMapError { op, path: path.to_path_buf(), source };
        use std::os::fd::AsRawFd;
        // SAFETY: posix_fallocate on a descriptor we own; it returns the error.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, SIZE as libc::off_t) };
        if rc != 0 {
            return Err(err("reserve space")(io::Error::from_raw_os_error(rc)));
        }
        // The umask must not hide the map from the preloads of other users.
        file.set_permissions(fs::Permissions::from_mode(0o644)).map_err(err("chmod"))?;
        // SAFETY: a shared mapping of a file whose SIZE bytes are allocated;
        // the fd may close after mmap.
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
        Ok(PortMap { path: path.to_path_buf(), base: ptr.cast() })
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
        assert_eq!(entry(3001), NO_PROCESS);
        assert_eq!(entry(3002), 77, "a session lease names who asked");
    }

    #[test]
    fn a_symlink_planted_at_the_map_or_its_temporary_name_is_replaced_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "secret").unwrap();
        let path = dir.path().join(PORT_MAP);
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(format!("{PORT_MAP}.tmp"))).unwrap();
        let map = PortMap::create(&path, &State::new("b".into())).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(meta.len(), SIZE as u64);
        drop(map);
    }

    const PORT_MAP: &str = styxy_proto::paths::PORT_MAP_NAME;
}
