//! The reserved-port map: a 256 KiB file beside the API socket with one
//! little-endian u32 per port, the pid that owns (or, for session and manual
//! leases, asked for) the allocation on that port (0 = free, or awaiting
//! its hand-off: the listener that will adopt it must be let bind it;
//! [`NO_PROCESS`] = held with no pid known). The preload maps it read-only so a port styxy
//! handed to someone else counts as busy without a round trip; it treats its
//! own pid, its ancestors and dead pids as not busy, so the server a shell
//! reserved a port for can take it.
//!
//! After the pid table comes the scope table (`styxy_proto::portmap::ScopeTable`):
//! (uid, scope, canonical port) -> actual port of every moved server with a
//! scope, which the preload's `connect` and `bind` read lock-free.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

pub use styxy_proto::portmap::{ENTRIES, FILE_SIZE, NO_PROCESS, SIZE};
use styxy_proto::portmap::{NEVER_MOVE_OFFSET, NeverMove, ScopeTable, scope_hash};

use styxy_proto::model::{Allocation, Change, State};

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
    /// What the scope table holds, by the allocation's port.
    scoped: Mutex<ScopedEntries>,
}

/// (uid, scope hash, canonical port): one scope table key.
type ScopeKey = (u32, u64, u16);

/// The writer's index of the scope table. Several allocations may share a
/// key (two servers of one scope asked for the same port); the table holds
/// the lowest of their ports until the last one goes.
#[derive(Default)]
struct ScopedEntries {
    by_port: BTreeMap<u16, ScopeKey>,
    by_key: BTreeMap<ScopeKey, BTreeSet<u16>>,
    /// Keys per canonical port, for the table's bitmap.
    per_canonical: BTreeMap<u16, usize>,
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
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, FILE_SIZE as libc::off_t) };
        if rc != 0 {
            return Err(err("reserve space")(io::Error::from_raw_os_error(rc)));
        }
        // The umask must not hide the map from the preloads of other users.
        file.set_permissions(fs::Permissions::from_mode(0o644)).map_err(err("chmod"))?;
        // SAFETY: a shared mapping of a file whose FILE_SIZE bytes are allocated;
        // the fd may close after mmap.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                FILE_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(err("mmap")(io::Error::last_os_error()));
        }
        Ok(PortMap { path: path.to_path_buf(), base: ptr.cast(), scoped: Mutex::default() })
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

    fn scope_table(&self) -> &ScopeTable {
        // SAFETY: the mapping is FILE_SIZE bytes, the table fills it from
        // SIZE on (an offset its alignment accepts) and holds only atomics,
        // for which any bytes are valid.
        unsafe { &*self.base.cast::<u8>().add(SIZE).cast::<ScopeTable>() }
    }

    /// Publishes `[preload] never_move` (ports, program names) for the preload.
    pub fn set_never_move(&self, ports: &[u16], programs: &[&[u8]]) {
        // SAFETY: as in scope_table; the opt-outs fill the mapping from
        // NEVER_MOVE_OFFSET to its end.
        let never = unsafe { &*self.base.cast::<u8>().add(NEVER_MOVE_OFFSET).cast::<NeverMove>() };
        never.set(ports, programs);
    }

    fn scoped(&self) -> std::sync::MutexGuard<'_, ScopedEntries> {
        self.scoped.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rewrites every entry from `state` (start-up and reloads).
    pub fn fill(&self, state: &State) {
        for port in 0..=u16::MAX {
            let v = state.allocations.get(&port).map_or(0, entry_for);
            if self.get(port) != v {
                self.set(port, v);
            }
        }
        let mut scoped = self.scoped();
        *scoped = ScopedEntries::default();
        self.scope_table().reset();
        for a in state.allocations.values() {
            self.put_scoped(&mut scoped, a);
        }
    }

    /// Mirrors committed changes.
    pub fn apply(&self, changes: &[Change]) {
        let mut scoped = self.scoped();
        for c in changes {
            match c {
                Change::PutAllocation(a) => {
                    self.set(a.port, entry_for(a));
                    self.remove_scoped(&mut scoped, a.port);
                    self.put_scoped(&mut scoped, a);
                }
                Change::RemoveAllocation { port, .. } => {
                    self.set(*port, 0);
                    self.remove_scoped(&mut scoped, *port);
                }
                _ => {}
            }
        }
    }

    /// The actual port of `uid`'s server of canonical port `canonical` in
    /// `scope`, as the preload reads it.
    pub fn scope_target(&self, uid: u32, scope: &str, canonical: u16) -> Option<u16> {
        self.scope_table().lookup(uid, scope_hash(scope.as_bytes()), canonical)
    }

    /// Enters `a` in the scope table when it is a moved server with a scope.
    fn put_scoped(&self, scoped: &mut ScopedEntries, a: &Allocation) {
        let Some((scope, canonical)) = a.scope_entry() else {
            return;
        };
        let key = (a.owner.uid, scope_hash(scope.as_bytes()), canonical);
        scoped.by_port.insert(a.port, key);
        let ports = scoped.by_key.entry(key).or_default();
        ports.insert(a.port);
        let first = ports.first().copied().unwrap_or(a.port);
        if ports.len() == 1 {
            *scoped.per_canonical.entry(canonical).or_default() += 1;
        }
        self.scope_table().set_canonical(canonical, true);
        if !self.scope_table().insert(key.0, key.1, canonical, first) {
            tracing::warn!(port = a.port, canonical, "scope table: no free slot near the entry's home; not recorded");
        }
    }

    /// Takes the allocation on `port` out of the scope table, leaving the
    /// key's next port in its place while there is one.
    fn remove_scoped(&self, scoped: &mut ScopedEntries, port: u16) {
        let Some(key) = scoped.by_port.remove(&port) else {
            return;
        };
        let (uid, scope, canonical) = key;
        let table = self.scope_table();
        let next = scoped.by_key.get_mut(&key).and_then(|ports| {
            ports.remove(&port);
            ports.first().copied()
        });
        if let Some(next) = next {
            table.insert(uid, scope, canonical, next);
            return;
        }
        scoped.by_key.remove(&key);
        table.remove(uid, scope, canonical);
        let keys = scoped.per_canonical.entry(canonical).or_default();
        *keys = keys.saturating_sub(1);
        if *keys == 0 {
            scoped.per_canonical.remove(&canonical);
            table.set_canonical(canonical, false);
        }
    }
}

impl Drop for PortMap {
    fn drop(&mut self) {
        // SAFETY: unmapping the region mapped in create.
        unsafe { libc::munmap(self.base.cast(), FILE_SIZE) };
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
        assert_eq!(bytes.len(), FILE_SIZE);
        assert_eq!(entry(3000), 0);
        assert_eq!(entry(3001), NO_PROCESS);
        assert_eq!(entry(3002), 77, "a session lease names who asked");
    }

    fn moved(port: u16, canonical: u16, uid: u32, scope: &str) -> Allocation {
        Allocation {
            requested_port: Some(canonical),
            scope: Some(scope.into()),
            ..Allocation::new(
                port,
                "api",
                "backend",
                Owner { uid, pid: Some(4000 + u32::from(port)), start_time: None },
                LeaseKind::Process,
            )
        }
    }

    #[test]
    fn a_moved_server_in_a_scope_is_found_by_its_user_and_scope_only() {
        let dir = tempfile::tempdir().unwrap();
        let map = PortMap::create(&dir.path().join(PORT_MAP), &State::new("b".into())).unwrap();
        map.apply(&[Change::PutAllocation(moved(8001, 8000, 1000, "/src/shop-b"))]);
        assert_eq!(map.scope_target(1000, "/src/shop-b", 8000), Some(8001));
        assert_eq!(map.scope_target(1000, "/src/shop-a", 8000), None, "another scope");
        assert_eq!(map.scope_target(1001, "/src/shop-b", 8000), None, "another user");
        assert_eq!(map.scope_target(1000, "/src/shop-b", 3000), None, "another port");
        let unmoved = Allocation { scope: Some("/src/shop-a".into()), ..alloc(8000, Some(1), LeaseKind::Process) };
        map.apply(&[Change::PutAllocation(unmoved)]);
        assert_eq!(map.scope_target(1000, "/src/shop-a", 8000), None, "a server on its own port needs no entry");
        map.apply(&[Change::RemoveAllocation { port: 8001, lock_id: String::new() }]);
        assert_eq!(map.scope_target(1000, "/src/shop-b", 8000), None, "gone with its server");
    }

    #[test]
    fn two_servers_of_one_scope_on_one_port_keep_the_entry_until_both_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let map = PortMap::create(&dir.path().join(PORT_MAP), &State::new("b".into())).unwrap();
        map.apply(&[
            Change::PutAllocation(moved(8002, 8000, 1000, "/src/b")),
            Change::PutAllocation(moved(8001, 8000, 1000, "/src/b")),
        ]);
        assert_eq!(map.scope_target(1000, "/src/b", 8000), Some(8001));
        map.apply(&[Change::RemoveAllocation { port: 8001, lock_id: String::new() }]);
        assert_eq!(map.scope_target(1000, "/src/b", 8000), Some(8002));
        map.apply(&[Change::RemoveAllocation { port: 8002, lock_id: String::new() }]);
        assert_eq!(map.scope_target(1000, "/src/b", 8000), None);
    }

    #[test]
    fn the_map_holds_4096_scoped_entries_and_refills_from_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = State::new("b".into());
        // 64 worktrees of 64 servers each, every one moved.
        let entries: Vec<Allocation> = (0..4096u32)
            .map(|i| moved(20000 + i as u16, 3000 + (i % 64) as u16, 1000 + i % 3, &format!("/src/tree-{}", i / 64)))
            .collect();
        for a in &entries {
            state.allocations.insert(a.port, a.clone());
        }
        let map = PortMap::create(&dir.path().join(PORT_MAP), &state).unwrap();
        for a in &entries {
            let (scope, canonical) = a.scope_entry().unwrap();
            assert_eq!(map.scope_target(a.owner.uid, scope, canonical), Some(a.port), "{scope} :{canonical}");
        }
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
        assert_eq!(meta.len(), FILE_SIZE as u64);
        drop(map);
    }

    const PORT_MAP: &str = styxy_proto::paths::PORT_MAP_NAME;
}
