//! Whom a client believes on a shared machine: a server (or a port map)
//! counts only when it runs as (or is owned by) this user, root, or the
//! system service's user. Another user may create a socket or a file under a
//! name we look for; its answers must never be used.
//!
//! libc only and no allocation: the preload calls this from its hooks.

use core::ffi::CStr;

/// The system runtime directory: it sits in root's `/run`, so only root
/// (tmpfiles.d, the socket unit) can have made it, and its owner is the user
/// root appointed to run the system services.
const SYSTEM_RUNTIME_DIR: &CStr = c"/run/styxy";
const SYSTEM_RUNTIME_PARENT: &CStr = c"/run";

fn lstat(path: &CStr) -> Option<libc::stat> {
    // SAFETY: zero is a valid stat buffer.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: path is NUL-terminated; st is writable.
    (unsafe { libc::lstat(path.as_ptr(), &mut st) } == 0).then_some(st)
}

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// The owner of `/run/styxy` when root made it (a real directory in a
/// root-owned `/run` nobody else may write): the system allocator's user.
pub fn system_service_uid() -> Option<u32> {
    let parent = lstat(SYSTEM_RUNTIME_PARENT)?;
    if !is_dir(&parent) || parent.st_uid != 0 || parent.st_mode & 0o022 != 0 {
        return None;
    }
    let dir = lstat(SYSTEM_RUNTIME_DIR)?;
    is_dir(&dir).then_some(dir.st_uid)
}

/// Whether a server or file owned by `uid` speaks for us: ourselves, root,
/// or the system service's user.
pub fn is_trusted_uid(uid: u32) -> bool {
    // SAFETY: getuid and geteuid cannot fail.
    let (real, effective) = unsafe { (libc::getuid(), libc::geteuid()) };
    uid == 0 || uid == real || uid == effective || system_service_uid() == Some(uid)
}

/// The uid of the process that listens on the other end of the connected
/// Unix socket `fd` (SO_PEERCRED: the kernel's word, not the peer's).
pub fn peer_uid(fd: libc::c_int) -> Option<u32> {
    let mut cred = libc::ucred { pid: 0, uid: u32::MAX, gid: u32::MAX };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are writable and len is cred's size.
    let rc = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERCRED, (&raw mut cred).cast(), &mut len) };
    (rc == 0 && len as usize == size_of::<libc::ucred>()).then_some(cred.uid)
}

/// `Ok` when the server on `fd` is trusted, else the uid it runs as.
pub fn check_server(fd: libc::c_int) -> Result<(), Option<u32>> {
    match peer_uid(fd) {
        Some(uid) if is_trusted_uid(uid) => Ok(()),
        other => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_server_of_our_own_is_trusted_and_root_is_trusted() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(check_server(a.as_raw_fd()), Ok(()));
        assert!(is_trusted_uid(0));
        // SAFETY: geteuid cannot fail.
        assert!(is_trusted_uid(unsafe { libc::geteuid() }));
    }

    #[test]
    fn a_descriptor_that_is_no_socket_has_no_trusted_peer() {
        let file = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(check_server(file.as_raw_fd()), Err(None));
    }
}
