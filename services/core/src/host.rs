//! What the logic asks of the machine it runs on: the clock, the process
//! table and the kernel's view of a port. Services pass [`RealHost`]; tests
//! pass fakes, so decisions and the engine are tested without spawning,
//! killing or sleeping.

use std::collections::HashMap;

use styxy_observe::process;
use styxy_proto::model::{Millis, now_millis};

/// The process table.
pub trait Processes: Sync {
    /// The start time of `pid` while it runs; `None` once it has exited.
    fn running_start_time(&self, pid: u32) -> Option<u64>;

    /// The start time of `pid`, also once it has exited but is not yet
    /// reaped (a zombie); `None` when there is no such process. Tables
    /// without zombies answer as [`Processes::running_start_time`].
    fn start_time(&self, pid: u32) -> Option<u64> {
        self.running_start_time(pid)
    }

    /// The real uid of `pid`; `None` when there is no such process or the
    /// table does not know.
    fn uid_of(&self, pid: u32) -> Option<u32>;

    /// The command name of `pid`, for showing; `None` when there is no such
    /// process or the table knows no names.
    fn comm(&self, _pid: u32) -> Option<String> {
        None
    }
}

/// A process table given as pid → start time (tests, snapshots): absent
/// pids have exited; owners are not known.
impl Processes for HashMap<u32, u64> {
    fn running_start_time(&self, pid: u32) -> Option<u64> {
        self.get(&pid).copied()
    }

    fn uid_of(&self, _pid: u32) -> Option<u32> {
        None
    }
}

/// The kernel's view of a port.
pub trait Kernel {
    /// Whether something is bound to `port` (IPv4 or IPv6).
    fn port_busy(&self, port: u16) -> bool;

    /// A process of `uid` that listens on `port` (IPv4 or IPv6), when this
    /// host may see it: a socket's process is found through /proc, so an
    /// unprivileged host names only its own user's.
    fn listener_of(&self, port: u16, uid: u32) -> Option<u32>;

    /// Whether a socket of `uid` listens on `port` (IPv4 or IPv6), whoever
    /// asks: the kernel tells any user a socket's uid, not its process.
    fn listens(&self, port: u16, uid: u32) -> bool;
}

/// Everything the engine asks of the machine.
pub trait Host: Processes + Kernel + Send {
    /// Milliseconds since the Unix epoch.
    fn now(&self) -> Millis;
}

/// The real machine: /proc, the kernel's sockets and the system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealHost;

impl Processes for RealHost {
    fn running_start_time(&self, pid: u32) -> Option<u64> {
        process::running_start_time(pid)
    }

    fn start_time(&self, pid: u32) -> Option<u64> {
        process::start_time(pid)
    }

    fn uid_of(&self, pid: u32) -> Option<u32> {
        process::uid_of(pid)
    }

    fn comm(&self, pid: u32) -> Option<String> {
        process::comm(pid)
    }
}

impl Kernel for RealHost {
    fn port_busy(&self, port: u16) -> bool {
        !styxy_observe::probe::is_free(port)
    }

    fn listener_of(&self, port: u16, uid: u32) -> Option<u32> {
        let listeners = styxy_observe::Observer::new().and_then(|mut o| o.listeners_on(port)).ok()?;
        listeners.into_iter().filter(|l| l.uid == uid).find_map(|l| l.pid)
    }

    fn listens(&self, port: u16, uid: u32) -> bool {
        let listeners = styxy_observe::sockdiag::SockDiag::open().and_then(|mut diag| diag.tcp_listeners_on(port));
        listeners.is_ok_and(|ls| ls.iter().any(|l| l.uid == uid))
    }
}

impl Host for RealHost {
    fn now(&self) -> Millis {
        now_millis()
    }
}

/// A machine for unit tests: processes are table entries that start and
/// exit when told, ports are busy when bound, and time moves when advanced.
/// Clones share one machine, so a test keeps a handle on the host it gave
/// away.
#[cfg(test)]
pub(crate) mod fake {
    use std::collections::{HashMap, HashSet};
    use std::sync::{Arc, Mutex, MutexGuard};

    use super::{Host, Kernel, Processes};
    use styxy_proto::model::Millis;

    #[derive(Clone)]
    pub struct FakeHost(Arc<Mutex<Machine>>);

    #[derive(Default)]
    struct Machine {
        now: Millis,
        /// pid → (start time, uid)
        processes: HashMap<u32, (u64, u32)>,
        bound: HashSet<u16>,
        /// port → the pids listening on it
        listening: HashMap<u16, Vec<u32>>,
        /// Whether [`Kernel::listener_of`] is blind to listeners' processes.
        hides_listener_pids: bool,
        next_pid: u32,
    }

    impl FakeHost {
        /// A machine whose clock reads `now` and where nothing runs.
        pub fn at(now: Millis) -> FakeHost {
            FakeHost(Arc::new(Mutex::new(Machine { now, next_pid: 100_000, ..Machine::default() })))
        }

        fn machine(&self) -> MutexGuard<'_, Machine> {
            self.0.lock().unwrap()
        }

        /// Makes `pid` a running process of `uid`.
        pub fn run(&self, pid: u32, uid: u32) {
            let mut machine = self.machine();
            let start = machine.now;
            machine.processes.insert(pid, (start, uid));
        }

        /// Starts a new process of `uid`; returns its pid.
        pub fn spawn(&self, uid: u32) -> u32 {
            let pid = {
                let mut machine = self.machine();
                machine.next_pid += 1;
                machine.next_pid
            };
            self.run(pid, uid);
            pid
        }

        /// Ends `pid`, closing its listening sockets.
        pub fn kill(&self, pid: u32) {
            let mut machine = self.machine();
            machine.processes.remove(&pid);
            let Machine { listening, bound, .. } = &mut *machine;
            listening.retain(|port, pids| {
                pids.retain(|p| *p != pid);
                if pids.is_empty() {
                    bound.remove(port);
                }
                !pids.is_empty()
            });
        }

        /// `pid` listens on `port` (which is then bound).
        pub fn listen(&self, port: u16, pid: u32) {
            let mut machine = self.machine();
            machine.bound.insert(port);
            machine.listening.entry(port).or_default().push(pid);
        }

        /// From now on, listeners' processes are hidden and only their
        /// sockets' uids show, as to the unprivileged system allocator.
        pub fn hide_listener_pids(&self) {
            self.machine().hides_listener_pids = true;
        }

        /// Someone else binds `port`.
        pub fn bind(&self, port: u16) {
            self.machine().bound.insert(port);
        }

        pub fn advance(&self, millis: Millis) {
            self.machine().now += millis;
        }
    }

    impl Processes for FakeHost {
        fn running_start_time(&self, pid: u32) -> Option<u64> {
            self.machine().processes.get(&pid).map(|(start, _)| *start)
        }

        fn uid_of(&self, pid: u32) -> Option<u32> {
            self.machine().processes.get(&pid).map(|(_, uid)| *uid)
        }
    }

    impl Kernel for FakeHost {
        fn port_busy(&self, port: u16) -> bool {
            self.machine().bound.contains(&port)
        }

        fn listener_of(&self, port: u16, uid: u32) -> Option<u32> {
            let machine = self.machine();
            let pids = machine.listening.get(&port).filter(|_| !machine.hides_listener_pids)?;
            pids.iter().copied().find(|pid| machine.processes.get(pid).is_some_and(|(_, owner)| *owner == uid))
        }

        fn listens(&self, port: u16, uid: u32) -> bool {
            let machine = self.machine();
            let pids = machine.listening.get(&port).into_iter().flatten();
            pids.into_iter().any(|pid| machine.processes.get(pid).is_some_and(|(_, owner)| *owner == uid))
        }
    }

    impl Host for FakeHost {
        fn now(&self) -> Millis {
            self.machine().now
        }
    }
}
