//! Which known processes still run, without reading /proc for each: a pidfd
//! per process in one epoll set. A pidfd becomes readable when its process
//! exits, so one `epoll_wait` with no timeout names every process that ended
//! since the last look, however many are watched. A pidfd names one process,
//! never a later one that reuses the pid.

use std::collections::hash_map::Entry;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::IntMap;
use crate::process;

/// Processes watched at most. Each costs a descriptor, and a service's soft
/// limit is often 1,024: beyond this, processes are checked through /proc
/// as if pidfds did not exist, and /proc scans keep descriptors to work with.
const MAX_WATCHED: usize = 512;

#[derive(Debug)]
pub struct Liveness {
    /// None when epoll is unavailable: every question then reads /proc.
    epoll: Option<OwnedFd>,
    /// Running processes by pid: their start time and pidfd.
    watched: IntMap<u32, (u64, OwnedFd)>,
    /// At most this many are watched ([`MAX_WATCHED`]).
    limit: usize,
}

impl Default for Liveness {
    fn default() -> Liveness {
        // SAFETY: epoll_create1 has no memory preconditions; the result is checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        // SAFETY: a fresh descriptor nobody else owns.
        let epoll = (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) });
        Liveness { epoll, watched: IntMap::default(), limit: MAX_WATCHED }
    }
}

impl Liveness {
    /// Forgets the processes that exited since the last call.
    pub fn forget_exited(&mut self) {
        let Some(epoll) = &self.epoll else { return };
        // SAFETY: epoll_event is plain data; all-zero is a valid value.
        let mut events: [libc::epoll_event; 64] = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: the buffer holds `events.len()` entries; timeout 0 never blocks.
            let ready = unsafe { libc::epoll_wait(epoll.as_raw_fd(), events.as_mut_ptr(), events.len() as i32, 0) };
            if ready <= 0 {
                return;
            }
            for event in &events[..ready as usize] {
                // Closing the pidfd also takes it out of the epoll set.
                self.watched.remove(&(event.u64 as u32));
            }
            if (ready as usize) < events.len() {
                return;
            }
        }
    }

    /// Whether `pid` still runs as the process that had `start_time`. A
    /// process asked about for the first time is read from /proc once and
    /// watched from then on.
    pub fn runs(&mut self, pid: u32, start_time: u64) -> bool {
        let full = self.watched.len() >= self.limit;
        match self.watched.entry(pid) {
            Entry::Occupied(known) => known.get().0 == start_time,
            Entry::Vacant(_) if full => process::start_time(pid) == Some(start_time),
            Entry::Vacant(slot) => {
                // Open first, read after: a start time read after the pidfd
                // exists describes the process it names (or a successor, which
                // the comparison rejects).
                let pidfd = process::pidfd_open(pid);
                let now = process::start_time(pid);
                if let (Some(now), Some(pidfd), Some(epoll)) = (now, pidfd, &self.epoll) {
                    let mut event = libc::epoll_event { events: libc::EPOLLIN as u32, u64: u64::from(pid) };
                    // SAFETY: both descriptors are open; the event is copied by the kernel.
                    let added = unsafe {
                        libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, pidfd.as_raw_fd(), &mut event)
                    };
                    if added == 0 {
                        slot.insert((now, pidfd));
                    }
                }
                now == Some(start_time)
            }
        }
    }

    /// Stops watching processes for which `keep` is false.
    pub fn retain(&mut self, keep: impl Fn(u32) -> bool) {
        self.watched.retain(|pid, _| keep(*pid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_watched_until_it_exits_and_a_wrong_start_time_never_runs() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let start = process::start_time(pid).unwrap();
        let mut liveness = Liveness::default();
        assert!(liveness.runs(pid, start));
        assert!(!liveness.runs(pid, start + 1), "another start time is another process");
        assert_eq!(liveness.watched.len(), 1);
        liveness.forget_exited();
        assert!(liveness.runs(pid, start), "still running");

        child.kill().unwrap();
        child.wait().unwrap();
        liveness.forget_exited();
        assert!(liveness.watched.is_empty(), "the exit was noticed without a /proc read");
        assert!(!liveness.runs(pid, start));
    }

    #[test]
    fn beyond_the_limit_processes_are_answered_from_proc_unwatched() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let (me, pid) = (std::process::id(), child.id());
        let start = process::start_time(pid).unwrap();
        let mut liveness = Liveness { limit: 1, ..Liveness::default() };
        assert!(liveness.runs(me, process::start_time(me).unwrap()));
        assert!(liveness.runs(pid, start));
        assert!(!liveness.runs(pid, start + 1));
        assert_eq!(liveness.watched.len(), 1, "one descriptor, as the limit says");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!liveness.runs(pid, start), "an exit is seen without a watch too");
    }

    #[test]
    fn retain_drops_the_processes_not_kept() {
        let me = std::process::id();
        let mut liveness = Liveness::default();
        assert!(liveness.runs(me, process::start_time(me).unwrap()));
        liveness.retain(|pid| pid != me);
        assert!(liveness.watched.is_empty());
    }
}
