//! Which process holds a socket: the kernel's socket listing gives an inode,
//! /proc/PID/fd links (`socket:[INODE]`) give the process. Walking every fd on
//! the machine is the expensive part, so it happens only for inodes nobody has
//! placed yet, and what it finds is cached.
//!
//! Visibility: /proc/PID/fd of another user's process needs CAP_DAC_READ_SEARCH
//! or CAP_SYS_PTRACE. The system observer has them; in user mode only the
//! caller's own processes are found and other users' sockets stay unowned.

use std::ffi::{CStr, CString};
use std::fs;
use std::io;

use super::liveness::Liveness;
use super::{IntMap, IntSet, ObserveError};
use crate::process;

/// The process holding a socket, as last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOwner {
    pub pid: u32,
    /// Start time of `pid` when the socket was found in it; another value now
    /// means the pid was reused.
    pub start_time: u64,
    /// The descriptor number in that process, re-read to confirm the socket is
    /// still there.
    pub fd: u32,
}

/// How much a lookup trusts its cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The inodes are every live listener (a full listing). Cached owners are
    /// confirmed by their process still running (`Liveness`: no syscall
    /// per socket, nor per process); entries of other inodes are dropped.
    Everything,
    /// A few sockets (one port). Cached owners are also confirmed by re-reading
    /// their fd link, which catches a process that handed the socket on and
    /// closed its own copy.
    Few,
}

/// Socket inode → owner, kept across calls.
#[derive(Debug, Default)]
pub struct OwnerCache {
    owners: IntMap<u64, SocketOwner>,
    /// Inodes a complete scan found in no readable fd table (another user's
    /// process without privileges). Not scanned for again while they live.
    unowned: IntSet<u64>,
    /// The owners' processes, watched for their exit.
    liveness: Liveness,
}

impl OwnerCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The owner of each of `inodes`, in order. Cached owners are confirmed as
    /// `lookup` says; the others are looked for in one pass over /proc. `None`
    /// for sockets no readable process holds.
    pub fn resolve(&mut self, inodes: &[u64], lookup: Lookup) -> Result<Vec<Option<SocketOwner>>, ObserveError> {
        self.liveness.forget_exited();
        let mut missing = IntSet::default();
        let mut resolved: Vec<Option<SocketOwner>> = inodes
            .iter()
            .map(|&inode| match self.owners.get(&inode) {
                Some(owner) if confirm(owner, inode, lookup, &mut self.liveness) => Some(*owner),
                None if self.unowned.contains(&inode) => None,
                _ => {
                    missing.insert(inode);
                    None
                }
            })
            .collect();
        let found = if missing.is_empty() { IntMap::default() } else { scan_proc(&missing)? };
        for (slot, inode) in resolved.iter_mut().zip(inodes) {
            if let Some(owner) = found.get(inode) {
                *slot = Some(*owner);
            }
        }
        // The scan stops early only once everything is found, so whatever it
        // did not find was looked for in every readable fd table.
        match lookup {
            Lookup::Everything => {
                let unchanged = missing.is_empty() && self.owners.len() + self.unowned.len() == inodes.len();
                if !unchanged {
                    self.owners.clear();
                    self.unowned.clear();
                    for (slot, &inode) in resolved.iter().zip(inodes) {
                        if let Some(owner) = slot {
                            self.owners.insert(inode, *owner);
                        } else {
                            self.unowned.insert(inode);
                        }
                    }
                    self.forget_unused_processes();
                }
            }
            Lookup::Few => {
                for inode in missing {
                    match found.get(&inode) {
                        Some(owner) => {
                            self.owners.insert(inode, *owner);
                        }
                        None => {
                            self.owners.remove(&inode);
                            self.unowned.insert(inode);
                        }
                    }
                }
            }
        }
        Ok(resolved)
    }

    /// Number of sockets the cache knows about, owned or not.
    pub fn len(&self) -> usize {
        self.owners.len() + self.unowned.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops entries of sockets that no longer exist.
    pub fn retain_live(&mut self, is_live: impl Fn(u64) -> bool) {
        self.owners.retain(|inode, _| is_live(*inode));
        self.unowned.retain(|inode| is_live(*inode));
        self.forget_unused_processes();
    }

    /// Stops watching processes that hold none of the cached sockets.
    fn forget_unused_processes(&mut self) {
        let pids: IntSet<u32> = self.owners.values().map(|owner| owner.pid).collect();
        self.liveness.retain(|pid| pids.contains(&pid));
    }
}

/// True when the cached owner still runs (same start time) and, for a
/// [`Lookup::Few`], still has the socket on the same descriptor.
fn confirm(owner: &SocketOwner, inode: u64, lookup: Lookup, liveness: &mut Liveness) -> bool {
    liveness.runs(owner.pid, owner.start_time)
        && (lookup == Lookup::Everything
            || fs::read_link(format!("/proc/{}/fd/{}", owner.pid, owner.fd))
                .is_ok_and(|target| socket_inode(target.as_os_str().as_encoded_bytes()) == Some(inode)))
}

/// One pass over /proc/*/fd looking for `wanted`; stops once all are found.
/// Newest processes first: the listener someone asks about is usually a
/// dev server started a moment ago, not a daemon from boot.
/// Processes that vanish or refuse access (EACCES) mid-scan are skipped.
fn scan_proc(wanted: &IntSet<u64>) -> Result<IntMap<u64, SocketOwner>, ObserveError> {
    let proc_error = |source: io::Error| ObserveError::Proc { path: "/proc".into(), source };
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").map_err(proc_error)? {
        let entry = entry.map_err(proc_error)?;
        pids.extend(entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()));
    }
    pids.sort_unstable_by(|a, b| b.cmp(a));
    let mut found = IntMap::default();
    for pid in pids {
        scan_process(pid, wanted, &mut found);
        if found.len() == wanted.len() {
            break;
        }
    }
    Ok(found)
}

fn scan_process(pid: u32, wanted: &IntSet<u64>, found: &mut IntMap<u64, SocketOwner>) {
    let Some(fd_dir) = FdDir::open(pid) else {
        return;
    };
    let mut start_time = None;
    let mut target = [0u8; 64];
    while let Some((fd, target)) = fd_dir.next_link(&mut target) {
        let Some(inode) = socket_inode(target) else {
            continue;
        };
        // The lowest pid holding a socket wins (the parent of a forked server).
        if !wanted.contains(&inode) || found.contains_key(&inode) {
            continue;
        }
        if start_time.is_none() {
            start_time = process::start_time(pid);
        }
        // No start time: the process ended while being read.
        let Some(start_time) = start_time else {
            return;
        };
        found.insert(inode, SocketOwner { pid, start_time, fd });
    }
}

/// An open /proc/PID/fd. Links are read relative to it (readlinkat), which
/// spares a /proc path walk and an allocation per descriptor: a cold scan
/// reads every descriptor on the machine.
struct FdDir(*mut libc::DIR);

impl FdDir {
    fn open(pid: u32) -> Option<Self> {
        let path = CString::new(format!("/proc/{pid}/fd")).ok()?;
        // SAFETY: path is NUL-terminated; a null result is handled.
        let dir = unsafe { libc::opendir(path.as_ptr()) };
        (!dir.is_null()).then_some(FdDir(dir))
    }

    /// The next descriptor and its link target, written into `buffer`.
    /// Descriptors closed meanwhile are skipped; targets longer than the
    /// buffer come back truncated (socket links are short).
    fn next_link<'b>(&self, buffer: &'b mut [u8]) -> Option<(u32, &'b [u8])> {
        loop {
            // SAFETY: self.0 is an open DIR only this value uses; the entry
            // stays valid until the next readdir on it, and is read before.
            let (fd, len) = unsafe {
                let entry = libc::readdir(self.0);
                if entry.is_null() {
                    return None;
                }
                let name = CStr::from_ptr((*entry).d_name.as_ptr());
                let Some(fd) = std::str::from_utf8(name.to_bytes()).ok().and_then(|n| n.parse::<u32>().ok()) else {
                    continue;
                };
                let len =
                    libc::readlinkat(libc::dirfd(self.0), name.as_ptr(), buffer.as_mut_ptr().cast(), buffer.len());
                (fd, len)
            };
            if len > 0 {
                return Some((fd, &buffer[..len as usize]));
            }
        }
    }
}

impl Drop for FdDir {
    fn drop(&mut self) {
        // SAFETY: self.0 came from opendir and is closed exactly once.
        unsafe { libc::closedir(self.0) };
    }
}

/// The inode of a `socket:[N]` fd link target.
fn socket_inode(target: &[u8]) -> Option<u64> {
    let digits = target.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;

    fn inode_of(listener: &TcpListener) -> u64 {
        fs::metadata(format!("/proc/self/fd/{}", listener.as_raw_fd())).unwrap().ino()
    }

    #[test]
    fn socket_links_are_parsed_and_other_links_are_not() {
        assert_eq!(socket_inode(b"socket:[123456]"), Some(123456));
        assert_eq!(socket_inode(b"pipe:[123456]"), None);
        assert_eq!(socket_inode(b"/dev/null"), None);
        assert_eq!(socket_inode(b"socket:[12x]"), None);
    }

    #[test]
    fn own_socket_is_found_on_its_descriptor() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let inode = inode_of(&listener);
        let mut cache = OwnerCache::new();
        let owners = cache.resolve(&[inode], Lookup::Few).unwrap();
        let me = std::process::id();
        assert_eq!(
            owners,
            vec![Some(SocketOwner {
                pid: me,
                start_time: process::start_time(me).unwrap(),
                fd: listener.as_raw_fd() as u32
            })]
        );
    }

    #[test]
    fn a_stale_entry_from_a_reused_pid_is_replaced_by_the_real_owner() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let inode = inode_of(&listener);
        let me = std::process::id();
        let real_start = process::start_time(me).unwrap();
        let mut cache = OwnerCache::new();
        // As if an earlier process with our pid had held this inode.
        let stale = SocketOwner { pid: me, start_time: real_start + 1, fd: listener.as_raw_fd() as u32 };
        cache.owners.insert(inode, stale);
        let owners = cache.resolve(&[inode], Lookup::Everything).unwrap();
        assert_eq!(owners[0].map(|o| o.start_time), Some(real_start));
        assert_eq!(cache.owners[&inode].start_time, real_start);
    }

    #[test]
    fn an_entry_whose_descriptor_moved_is_looked_up_again() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let inode = inode_of(&listener);
        let me = std::process::id();
        let mut cache = OwnerCache::new();
        let null = fs::File::open("/dev/null").unwrap();
        let wrong_fd =
            SocketOwner { pid: me, start_time: process::start_time(me).unwrap(), fd: null.as_raw_fd() as u32 };
        cache.owners.insert(inode, wrong_fd);
        let owners = cache.resolve(&[inode], Lookup::Few).unwrap();
        assert_eq!(owners[0].map(|o| o.fd), Some(listener.as_raw_fd() as u32));
    }

    #[test]
    fn an_inode_nobody_holds_is_unowned_and_forgotten_once_gone() {
        let mut cache = OwnerCache::new();
        let nobody = u64::from(u32::MAX) + 1; // socket inodes are 32-bit
        assert_eq!(cache.resolve(&[nobody], Lookup::Few).unwrap(), vec![None]);
        assert!(cache.unowned.contains(&nobody));
        cache.retain_live(|_| false);
        assert!(cache.is_empty());
    }

    #[test]
    fn a_full_listing_forgets_sockets_it_no_longer_lists() {
        let kept = TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let (kept_inode, closed_inode) = (inode_of(&kept), inode_of(&closed));
        let mut cache = OwnerCache::new();
        cache.resolve(&[kept_inode, closed_inode], Lookup::Everything).unwrap();
        assert_eq!(cache.len(), 2);
        drop(closed);
        let owners = cache.resolve(&[kept_inode], Lookup::Everything).unwrap();
        assert!(owners[0].is_some());
        assert!(!cache.owners.contains_key(&closed_inode));
        assert_eq!(cache.len(), 1);
    }
}
