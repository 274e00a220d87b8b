//! Process identity from /proc: a pid alone is not an identity (pids are
//! reused), pid + start time is.

use std::fs;
use std::io::Read;
use std::path::PathBuf;

use styxy_proto::procstat::StatFields;

/// Start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat).
pub fn start_time(pid: u32) -> Option<u64> {
    with_stat(pid, |stat| stat.start_time())
}

/// Calls `parse` on the fields of the /proc/PID/stat line.
fn with_stat<T>(pid: u32, parse: impl FnOnce(StatFields<'_>) -> Option<T>) -> Option<T> {
    parse(StatFields::parse(&read_proc(pid, "stat")?)?)
}

/// True when `pid` runs and is the same process that had `start_time`. A
/// zombie has exited: its ports are free even before its parent reaps it.
pub fn is_alive(pid: u32, start: Option<u64>) -> bool {
    running_start_time(pid).is_some_and(|now| start.is_none_or(|then| now == then))
}

/// The start time of `pid` while it runs; `None` once it has exited (a
/// zombie included). One read of /proc/PID/stat, so state and start time
/// describe the same process.
pub fn running_start_time(pid: u32) -> Option<u64> {
    with_stat(pid, |stat| stat.running().then(|| stat.start_time()).flatten())
}

/// A pidfd for `pid`: readable once the process exits (None when it is gone
/// already or the kernel lacks pidfd_open).
pub fn pidfd_open(pid: u32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open returns a new descriptor we own, or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
    // SAFETY: a fresh descriptor nobody else owns.
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// Real uid of `pid` (the owner of /proc/PID).
pub fn uid_of(pid: u32) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(format!("/proc/{pid}")).ok().map(|m| m.uid())
}

/// Parent pid of `pid` (field 4 of /proc/PID/stat).
pub fn parent_of(pid: u32) -> Option<u32> {
    with_stat(pid, |stat| stat.parent())
}

/// Process trees deeper than this are not walked further.
const MAX_DEPTH: usize = 64;

/// `pid` and then its ancestors, nearest first, up to but not including
/// init (pid 1); stops where a parent cannot be read (it exited).
pub fn lineage(pid: u32) -> impl Iterator<Item = u32> {
    std::iter::successors(Some(pid), |&p| parent_of(p)).take_while(|&p| p > 1).take(MAX_DEPTH)
}

/// The bytes of /proc/PID/`file`. Such files report size 0, so `fs::read`
/// asks for the size (statx, lseek), then starts with tiny reads and
/// doubles; a page-sized first read takes most of them whole. The allocator
/// reads stat lines on hot paths and a cold observer listing reads several
/// files per process, so every syscall shows.
pub fn read_proc(pid: u32, file: &str) -> Option<Vec<u8>> {
    let mut source = fs::File::open(format!("/proc/{pid}/{file}")).ok()?;
    let mut bytes = vec![0; 4096];
    let mut len = 0;
    loop {
        if len == bytes.len() {
            bytes.resize(2 * len, 0);
        }
        match source.read(&mut bytes[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                // One-line files (stat, comm) come whole in one read: a short
                // read ending the line spares the read that would return 0.
                if len < bytes.len() && bytes[len - 1] == b'\n' {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    bytes.truncate(len);
    Some(bytes)
}

/// Short command name (/proc/PID/comm).
pub fn comm(pid: u32) -> Option<String> {
    read_proc(pid, "comm").map(|b| String::from_utf8_lossy(&b).trim_end().to_string())
}

/// Command line split on NULs (empty for kernel threads or when unreadable).
pub fn cmdline(pid: u32) -> Vec<String> {
    read_proc(pid, "cmdline")
        .map(|b| {
            b.split(|c| *c == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
        })
        .unwrap_or_default()
}

/// Working directory (needs the same uid or CAP_SYS_PTRACE).
pub fn cwd(pid: u32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// Executable path (needs the same uid or CAP_SYS_PTRACE).
pub fn exe(pid: u32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// This boot's id; allocations bound to processes of another boot are void.
pub fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// Clock ticks per second, for turning start times into wall time.
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// Login name of `uid` from the password database (cached: getpwuid_r is
/// not free and names do not change under a running service).
pub fn user_name(uid: u32) -> Option<String> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static CACHE: Mutex<Option<HashMap<u32, Option<String>>>> = Mutex::new(None);
    let mut guard = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    guard.get_or_insert_with(HashMap::new).entry(uid).or_insert_with(|| styxy_proto::dirs::user_name_of(uid)).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = std::process::id();
        let st = start_time(me).expect("own start time");
        assert!(is_alive(me, Some(st)));
        assert!(!is_alive(me, Some(st + 1)));
        assert_eq!(uid_of(me), Some(styxy_proto::paths::uid()));
    }
}
