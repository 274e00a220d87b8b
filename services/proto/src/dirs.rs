//! Directories Styxy keeps sockets, maps and state in, made so that another
//! user cannot trick us into them: every directory is created (0700) or
//! found, then verified before use. A directory fails the check when it is
//! a symbolic link, belongs to someone else, or others may write to it, and
//! so does any directory above it that someone other than us or root could
//! rename things in (a world-writable one like /tmp is fine only with its
//! sticky bit, and then only for entries of our own). Then nothing there
//! can be swapped under us, which is what lets the files inside be opened
//! by name. Not for the preload (this allocates).

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use crate::trust;

/// Who may own a directory, and its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// User mode: ours alone, mode 0700 (a looser one of ours is tightened).
    Private,
    /// System mode: ours or the system service user's (systemd makes
    /// `/run/styxy` 0755 and `/var/lib/styxy` 0750), writable by nobody else.
    Service,
}

/// A directory that is not safe to use, and why.
#[derive(Debug)]
pub struct UnsafeDir {
    pub path: PathBuf,
    pub reason: String,
}

impl fmt::Display for UnsafeDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refusing to use {}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for UnsafeDir {}

/// Login name of `uid` from the password database.
pub fn user_name_of(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: getpwuid_r writes into pwd and buf, both live for the call.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut out);
        if rc != 0 || out.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        Some(std::ffi::CStr::from_ptr(pwd.pw_name).to_string_lossy().into_owned())
    }
}

/// "uid 1001 (mallory)", for messages.
pub fn describe_uid(uid: u32) -> String {
    match user_name_of(uid) {
        Some(name) => format!("uid {uid} ({name})"),
        None => format!("uid {uid}"),
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// Creates `path` (and missing parents, 0700) unless it exists, then
/// verifies it and every directory above it under `policy`. On any doubt
/// the error names the path, its owner and what is wrong.
pub fn ensure_dir(path: &Path, policy: Policy) -> Result<(), UnsafeDir> {
    let path = std::path::absolute(path).map_err(|e| unsafe_dir(path, format!("cannot resolve: {e}")))?;
    let mut prefix = PathBuf::new();
    let mut components = path.components().peekable();
    while let Some(component) = components.next() {
        prefix.push(component);
        if matches!(component, Component::RootDir) {
            continue;
        }
        let leaf = components.peek().is_none();
        let meta = match std::fs::symlink_metadata(&prefix) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match std::fs::DirBuilder::new().mode(0o700).create(&prefix) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                        return Err(unsafe_dir(&prefix, format!("cannot create: {e}")));
                    }
                    _ => {}
                }
                std::fs::symlink_metadata(&prefix).map_err(|e| unsafe_dir(&prefix, format!("cannot inspect: {e}")))?
            }
            Err(e) => return Err(unsafe_dir(&prefix, format!("cannot inspect: {e}"))),
        };
        if leaf {
            break;
        }
        check_ancestor(&prefix, &meta, policy)?;
    }
    check_leaf(&path, policy)
}

fn owner_allowed(uid: u32, policy: Policy) -> bool {
    uid == euid() || (policy == Policy::Service && trust::system_service_uid() == Some(uid))
}

/// A directory above ours: a symbolic link there must be ours or root's, and
/// where it leads must be a directory of ours or root's that nobody else
/// can rename entries in.
fn check_ancestor(path: &Path, meta: &std::fs::Metadata, policy: Policy) -> Result<(), UnsafeDir> {
    let meta = if meta.file_type().is_symlink() {
        if meta.uid() != 0 && !owner_allowed(meta.uid(), policy) {
            return Err(unsafe_dir(path, format!("it is a symbolic link of {}", describe_uid(meta.uid()))));
        }
        std::fs::metadata(path).map_err(|e| unsafe_dir(path, format!("cannot follow: {e}")))?
    } else {
        meta.clone()
    };
    if !meta.is_dir() {
        return Err(unsafe_dir(path, "it is not a directory".into()));
    }
    if meta.uid() != 0 && !owner_allowed(meta.uid(), policy) {
        return Err(unsafe_dir(path, format!("it belongs to {}, not to you or root", describe_uid(meta.uid()))));
    }
    let sticky = meta.mode() & libc::S_ISVTX != 0;
    if meta.mode() & 0o022 != 0 && !sticky {
        return Err(unsafe_dir(path, format!("others may write to it (mode {:o})", meta.mode() & 0o7777)));
    }
    Ok(())
}

/// The directory itself: a real directory (never a link), owned as `policy`
/// says, writable by nobody else; a private one is made 0700.
fn check_leaf(path: &Path, policy: Policy) -> Result<(), UnsafeDir> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| unsafe_dir(path, "NUL in path".into()))?;
    // SAFETY: a NUL-terminated path; the result is checked.
    let fd =
        unsafe { libc::open(c_path.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
    if fd < 0 {
        let err = io::Error::last_os_error();
        let what = match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => format!("it is a symbolic link of {}", describe_uid(m.uid())),
            Ok(m) if !m.is_dir() => format!("it is not a directory (owned by {})", describe_uid(m.uid())),
            _ => format!("cannot open: {err}"),
        };
        return Err(unsafe_dir(path, what));
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let dir = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let meta = dir.metadata().map_err(|e| unsafe_dir(path, format!("cannot inspect: {e}")))?;
    if !owner_allowed(meta.uid(), policy) {
        return Err(unsafe_dir(
            path,
            format!(
                "it belongs to {}, not to you ({}); another user may have made it to intercept Styxy",
                describe_uid(meta.uid()),
                describe_uid(euid())
            ),
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(unsafe_dir(path, format!("others may write to it (mode {mode:o})")));
    }
    if policy == Policy::Private && mode & 0o077 != 0 {
        // SAFETY: fchmod on the descriptor of the directory checked above.
        if unsafe { libc::fchmod(dir.as_raw_fd(), 0o700) } != 0 {
            return Err(unsafe_dir(path, format!("chmod 0700: {}", io::Error::last_os_error())));
        }
    }
    Ok(())
}

/// Writes `bytes` as `dir/name` with `mode` after [`ensure_dir`] has passed
/// `dir`: a new temporary file (O_EXCL, O_NOFOLLOW, so never one someone
/// planted), synced, then renamed over `name`. Returns the file's path.
pub fn replace_file(dir: &Path, name: &str, bytes: &[u8], mode: u32, policy: Policy) -> io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    ensure_dir(dir, policy).map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e.to_string()))?;
    let target = dir.join(name);
    let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let with_path = |op: &str, path: &Path| {
        let shown = path.display().to_string();
        let op = op.to_owned();
        move |e: io::Error| io::Error::new(e.kind(), format!("cannot {op} {shown}: {e}"))
    };
    match std::fs::remove_file(&temp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(with_path("remove", &temp)(e)),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&temp)
        .map_err(with_path("create", &temp))?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(with_path("write", &temp))
        .and_then(|()| std::fs::rename(&temp, &target).map_err(with_path("replace", &target)));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.map(|()| target)
}

fn unsafe_dir(path: &Path, reason: String) -> UnsafeDir {
    UnsafeDir { path: path.to_path_buf(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_missing_directory_is_created_private_with_its_parents() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b/styxy");
        ensure_dir(&dir, Policy::Private).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o7777, 0o700);
        assert_eq!(std::fs::metadata(root.path().join("a")).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn a_loose_directory_of_ours_is_tightened_but_a_writable_one_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("styxy");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_dir(&dir, Policy::Private).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o7777, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = ensure_dir(&dir, Policy::Private).unwrap_err();
        assert!(err.to_string().contains("others may write to it"), "{err}");
    }

    #[test]
    fn a_symlink_in_place_of_the_directory_is_refused_even_when_it_is_ours() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("elsewhere");
        std::fs::create_dir(&target).unwrap();
        let link = root.path().join("styxy");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = ensure_dir(&link, Policy::Private).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(err.path, link);
    }

    #[test]
    fn a_parent_others_may_write_without_the_sticky_bit_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let open = root.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = ensure_dir(&open.join("styxy"), Policy::Private).unwrap_err();
        assert_eq!(err.path, open);
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        ensure_dir(&open.join("styxy"), Policy::Private).unwrap();
    }

    #[test]
    fn a_file_is_replaced_0600_rather_than_written_through_a_planted_symlink() {
        let root = tempfile::tempdir().unwrap();
        let own = root.path().join(".styxy");
        let elsewhere = root.path().join("victim");
        std::fs::write(&elsewhere, "keep").unwrap();
        let written = replace_file(&own, "auth.token", b"abc", 0o600, Policy::Private).unwrap();
        assert_eq!(std::fs::read(&written).unwrap(), b"abc");
        assert_eq!(std::fs::metadata(&written).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&own).unwrap().mode() & 0o777, 0o700);
        std::fs::remove_file(&written).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &written).unwrap();
        replace_file(&own, "auth.token", b"new", 0o600, Policy::Private).unwrap();
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "keep", "the link's target is untouched");
        assert_eq!(std::fs::read(&written).unwrap(), b"new");
    }

    #[test]
    fn nothing_is_written_into_a_linked_or_shared_directory() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = root.path().join(".styxy");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = replace_file(&link, "auth.token", b"x", 0o600, Policy::Private).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = replace_file(&real, "auth.token", b"x", 0o600, Policy::Private).unwrap_err();
        assert!(err.to_string().contains("others may write to it"), "{err}");
        assert_eq!(std::fs::read_dir(&real).unwrap().count(), 0);
    }
}
