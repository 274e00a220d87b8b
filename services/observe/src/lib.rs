//! Who listens on which TCP port, ours or not.
//!
//! The kernel lists listening sockets over netlink sock_diag ([`sockdiag`]):
//! address, port, socket uid, inode. Only the sockets asked about are then
//! mapped to processes through /proc/PID/fd ([`owners`]), and each process is
//! described once per lifetime (pid + start time): command name, command
//! line, service type ([`styxy_cmdline::service_type`], from the command line, else the
//! executable), project ([`project`]).
//!
//! Limits: the caller's network namespace only; without CAP_DAC_READ_SEARCH or
//! CAP_SYS_PTRACE (user mode) other users' sockets are listed with their uid
//! but no process. A process is described when first seen; a later exec that
//! keeps the same pid is not noticed.

mod liveness;
pub mod owners;
pub mod probe;
pub mod process;
pub mod project;
pub mod sockdiag;

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

use owners::{Lookup, OwnerCache, SocketOwner};
use sockdiag::{RawListener, SockDiag};

use styxy_cmdline::service_type::infer_service_type;
use styxy_proto::api::Listener;

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("sock_diag netlink {operation} failed: {source}")]
    Netlink { operation: &'static str, source: io::Error },
    #[error("the kernel refused the sock_diag dump of TCP listeners: {source}")]
    Kernel { source: io::Error },
    #[error("malformed sock_diag answer: {0}")]
    Malformed(String),
    #[error("cannot read {}: {source}", path.display())]
    Proc { path: PathBuf, source: io::Error },
}

/// Maps keyed by kernel-assigned integers (inodes, pids, uids). Nobody picks
/// those to collide, so a multiply does instead of SipHash, which showed up in
/// profiles of listings with a thousand sockets.
type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;
type IntSet<K> = HashSet<K, BuildHasherDefault<IntHasher>>;

#[derive(Default)]
struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: spreads consecutive integers over the high bits
        // hashbrown uses.
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Smallest owner cache (sockets) that per-port lookups prune: below it,
/// entries of closed sockets cost less than the full dump that finds them.
const PRUNE_FLOOR: usize = 1024;

/// What is known about one process, read once per pid + start time.
#[derive(Debug)]
struct ProcessDetails {
    start_time: u64,
    process: Option<String>,
    command: Option<String>,
    service_type: Option<String>,
    project: Option<String>,
}

/// Lists TCP listeners and says who holds them. Keeps its netlink socket and
/// caches (socket owners, process details) across calls; the
/// caches are checked against the kernel on every call, never trusted blindly.
#[derive(Debug)]
pub struct Observer {
    diag: SockDiag,
    owners: OwnerCache,
    processes: IntMap<u32, ProcessDetails>,
    /// Owner cache size at which a per-port lookup prunes; twice the size
    /// after the last pruning, so pruning stays rare however many sockets
    /// the machine holds.
    prune_above: usize,
}

impl Observer {
    pub fn new() -> Result<Self, ObserveError> {
        Ok(Observer {
            diag: SockDiag::open()?,
            owners: OwnerCache::new(),
            processes: IntMap::default(),
            prune_above: PRUNE_FLOOR,
        })
    }

    /// Every TCP listener (IPv4 and IPv6), sorted by port, with its process.
    pub fn listeners(&mut self) -> Result<Vec<Listener>, ObserveError> {
        let raw = self.diag.tcp_listeners()?;
        let listeners = self.describe(raw, Lookup::Everything)?;
        // Forget processes that no longer hold a listener.
        let pids: IntSet<u32> = listeners.iter().filter_map(|listener| listener.pid).collect();
        self.processes.retain(|pid, _| pids.contains(pid));
        self.pruned();
        Ok(listeners)
    }

    /// The TCP listeners on `port` (one per family and address).
    pub fn listeners_on(&mut self, port: u16) -> Result<Vec<Listener>, ObserveError> {
        // Closed sockets are forgotten by full listings; when only ports are
        // looked up, a full dump now and then bounds the caches.
        if self.owners.len() > self.prune_above {
            let live: IntSet<u64> = self.diag.tcp_listeners()?.iter().map(|l| l.inode).collect();
            self.owners.retain_live(|inode| live.contains(&inode));
            self.processes.clear();
            self.pruned();
        }
        let raw = self.diag.tcp_listeners_on(port)?;
        self.describe(raw, Lookup::Few)
    }

    fn pruned(&mut self) {
        self.prune_above = PRUNE_FLOOR.max(2 * self.owners.len());
    }

    /// Applies the privacy rule for a viewer (`styxy_proto::caller::redact`,
    /// the one rule for every record): another user's process details (pid,
    /// command name and line, project) are shown only to root and to the
    /// socket's owner; everyone sees the uid, user name and service type.
    pub fn redact(listener: &mut Listener, viewer_uid: u32) {
        styxy_proto::caller::redact::listener(listener, viewer_uid);
    }

    fn describe(&mut self, mut raw: Vec<RawListener>, lookup: Lookup) -> Result<Vec<Listener>, ObserveError> {
        // By port, then IPv4 before IPv6 (as "tcp" sorts before "tcp6").
        raw.sort_unstable_by_key(|listener| (listener.port, listener.address));
        let inodes: Vec<u64> = raw.iter().map(|listener| listener.inode).collect();
        let owners = self.owners.resolve(&inodes, lookup)?;
        let mut addresses = Recent::default();
        // The shared name cache takes a lock per lookup.
        let mut users = Recent::default();
        // Finding a project root costs a dozen stats per directory level.
        let mut projects = Recent::default();
        Ok(raw
            .into_iter()
            .zip(owners)
            .map(|(socket, owner)| {
                let mut listener = Listener {
                    port: socket.port,
                    protocol: socket.protocol().to_string(),
                    address: addresses.get(socket.address, IpAddr::to_string),
                    uid: socket.uid,
                    inode: socket.inode,
                    user: users.get(socket.uid, |&uid| process::user_name(uid)),
                    pid: None,
                    process: None,
                    command: None,
                    service_type: None,
                    project: None,
                };
                if let Some(owner) = owner {
                    let details = self.details(&owner, &mut projects);
                    listener.pid = Some(owner.pid);
                    listener.process = details.process.clone();
                    listener.command = details.command.clone();
                    listener.service_type = details.service_type.clone();
                    listener.project = details.project.clone();
                }
                listener
            })
            .collect())
    }

    /// The details of an owner's process, read from /proc unless known for
    /// this pid and start time.
    fn details(&mut self, owner: &SocketOwner, projects: &mut ProjectRoots) -> &ProcessDetails {
        let known = self.processes.get(&owner.pid).is_some_and(|d| d.start_time == owner.start_time);
        if !known {
            let details = Self::read_details(owner, projects);
            self.processes.insert(owner.pid, details);
        }
        &self.processes[&owner.pid]
    }

    fn read_details(owner: &SocketOwner, projects: &mut ProjectRoots) -> ProcessDetails {
        let argv = process::cmdline(owner.pid);
        // A cwd that was removed reads "/path (deleted)": no project then.
        let project = process::cwd(owner.pid)
            .filter(|cwd| !cwd.as_os_str().as_encoded_bytes().ends_with(b" (deleted)"))
            .and_then(|cwd| {
                projects.get((cwd, project::home_of(owner.pid)), |(cwd, home)| {
                    project::project_root(cwd, home.as_deref()).map(|root| root.to_string_lossy().into_owned())
                })
            });
        // The command line says most; a process that shows none (or rewrote
        // it beyond recognition) may still be known by its executable.
        let service_type = infer_service_type(&argv).or_else(|| {
            let exe = process::exe(owner.pid)?;
            infer_service_type(&[exe.to_string_lossy()])
        });
        ProcessDetails {
            start_time: owner.start_time,
            process: process::comm(owner.pid),
            command: (!argv.is_empty()).then(|| argv.join(" ")),
            service_type: service_type.map(str::to_string),
            project,
        }
    }
}

/// Project roots by working directory and home.
type ProjectRoots = Recent<(PathBuf, Option<PathBuf>), Option<String>>;

/// What one listing has already worked out, for the few keys most sockets
/// share: their addresses (wildcards, loopback), their users, their
/// projects. A short list beats hashing; keys past the first
/// [`Recent::KEPT`] are worked out every time.
struct Recent<K, V> {
    known: Vec<(K, V)>,
}

impl<K, V> Default for Recent<K, V> {
    fn default() -> Self {
        Recent { known: Vec::new() }
    }
}

impl<K: PartialEq, V: Clone> Recent<K, V> {
    const KEPT: usize = 16;

    fn get(&mut self, key: K, work_out: impl FnOnce(&K) -> V) -> V {
        if let Some((_, value)) = self.known.iter().find(|(known, _)| *known == key) {
            return value.clone();
        }
        let value = work_out(&key);
        if self.known.len() < Self::KEPT {
            self.known.push((key, value.clone()));
        }
        value
    }
}
