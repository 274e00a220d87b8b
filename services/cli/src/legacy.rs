//! Files where the original Styxy's clients look (`~/.styxy`), and files
//! written into a directory that must be the user's own: created without
//! following links, never over another's file, replaced by rename.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Opens `dir` (created 0700 if missing) refusing a symlink, a directory of
/// another user, or one others may write to.
fn own_directory(dir: &Path) -> Result<OwnedFd, String> {
    let shown = dir.display();
    let c = CString::new(dir.as_os_str().as_bytes()).map_err(|_| format!("{shown}: a NUL in the path"))?;
    // SAFETY: `c` is a valid C string; mkdir has no other preconditions.
    if unsafe { libc::mkdir(c.as_ptr(), 0o700) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(format!("cannot create {shown}: {e}"));
        }
    }
    // SAFETY: `c` is a valid C string; the flags refuse a symlink as the last component.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_RDONLY) };
    if fd < 0 {
        return Err(format!("cannot open {shown} (a symlink is refused): {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    let dir_fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero stat is a valid buffer for fstat to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: the fd is open and `st` is a live buffer.
    if unsafe { libc::fstat(dir_fd.as_raw_fd(), &mut st) } != 0 {
        return Err(format!("cannot stat {shown}: {}", std::io::Error::last_os_error()));
    }
    let me = styxy_proto::paths::uid();
    if st.st_uid != me {
        return Err(format!("{shown} belongs to uid {}, not you (uid {me}): nothing written", st.st_uid));
    }
    if st.st_mode & 0o022 != 0 {
        return Err(format!("{shown} is writable by others (mode {:o}): nothing written", st.st_mode & 0o7777));
    }
    Ok(dir_fd)
}

/// Writes `bytes` as `dir/name` with `mode`: a new temporary file (O_EXCL,
/// O_NOFOLLOW) in the checked directory, synced, then renamed over `name`.
pub fn replace_file(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<PathBuf, String> {
    let dir_fd = own_directory(dir)?;
    let target = dir.join(name);
    let temp = format!(".{name}.tmp-{}", std::process::id());
    let c_temp = CString::new(temp.as_str()).map_err(|_| format!("{name}: a NUL in the name"))?;
    let c_name = CString::new(name).map_err(|_| format!("{name}: a NUL in the name"))?;
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: the directory fd is open and `c_temp` is a valid C string.
    let fd = unsafe { libc::openat(dir_fd.as_raw_fd(), c_temp.as_ptr(), flags, mode as libc::c_uint) };
    if fd < 0 {
        return Err(format!("cannot create {}: {}", dir.join(&temp).display(), std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let unlink_temp = || {
        // SAFETY: the directory fd is open and `c_temp` is a valid C string.
        unsafe { libc::unlinkat(dir_fd.as_raw_fd(), c_temp.as_ptr(), 0) };
    };
    if let Err(e) = file.write_all(bytes).and_then(|()| file.sync_all()) {
        unlink_temp();
        return Err(format!("cannot write {}: {e}", dir.join(&temp).display()));
    }
    // SAFETY: both names are valid C strings relative to the same open directory.
    if unsafe { libc::renameat(dir_fd.as_raw_fd(), c_temp.as_ptr(), dir_fd.as_raw_fd(), c_name.as_ptr()) } != 0 {
        let e = std::io::Error::last_os_error();
        unlink_temp();
        return Err(format!("cannot replace {}: {e}", target.display()));
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_file_is_written_0600_replacing_a_symlink_rather_than_following_it() {
        let dir = tempfile::tempdir().unwrap();
        let own = dir.path().join(".styxy");
        let elsewhere = dir.path().join("victim");
        std::fs::write(&elsewhere, "keep").unwrap();
        let written = replace_file(&own, "auth.token", b"abc", 0o600).unwrap();
        assert_eq!(std::fs::read(&written).unwrap(), b"abc");
        assert_eq!(std::fs::metadata(&written).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&own).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::remove_file(&written).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &written).unwrap();
        replace_file(&own, "auth.token", b"new", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "keep", "the link's target is untouched");
        assert_eq!(std::fs::read(&written).unwrap(), b"new");
    }

    #[test]
    fn a_linked_or_shared_directory_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join(".styxy");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(replace_file(&link, "auth.token", b"x", 0o600).unwrap_err().contains("symlink"));
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(replace_file(&real, "auth.token", b"x", 0o600).unwrap_err().contains("writable by others"));
        assert_eq!(std::fs::read_dir(&real).unwrap().count(), 0);
    }
}
