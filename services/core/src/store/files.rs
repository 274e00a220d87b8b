//! File-system primitives of the store: the writer lock, directory fsync,
//! keeping a bad file aside.

use super::StoreError;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Mode of every file the store creates: the state names users' processes.
pub(super) const FILE_MODE: u32 = 0o600;

pub(super) fn io_error(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}

/// Creates `dir` (and parents) 0700 when missing, then verifies it: a real
/// directory (not a symbolic link) of ours or the system service user's
/// that nobody else may write to, under parents nobody else can rename
/// things in. An existing one keeps the mode its creator chose (systemd's
/// StateDirectory, for one). Only then may files in it be opened by name.
pub(super) fn create_dir(dir: &Path) -> Result<(), StoreError> {
    styxy_proto::dirs::ensure_dir(dir, styxy_proto::dirs::Policy::Service).map_err(StoreError::UnsafeDir)
}

/// Options for opening a store file: never through a symbolic link.
pub(super) fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    options
}

/// Creates `path` afresh (a leftover under that name is removed first):
/// O_EXCL, so the file written is always one this call made.
pub(super) fn create_new(path: &Path) -> Result<File, StoreError> {
    remove_optional(path)?;
    options().write(true).create_new(true).open(path).map_err(io_error("create", path))
}

/// Writes `bytes` to a file created afresh at `path` and fsyncs it.
pub(super) fn write_new(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut file = create_new(path)?;
    file.write_all(bytes).map_err(io_error("write", path))?;
    file.sync_all().map_err(io_error("fsync", path))
}

/// Reads a whole file; `None` when it does not exist.
pub(super) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    let read = options().read(true).open(path).and_then(|mut file| {
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map(|_| bytes)
    });
    match read {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read", path)(e)),
    }
}

pub(super) fn remove_optional(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error("remove", path)(e)),
        _ => Ok(()),
    }
}

/// Opens (creating) `path` and takes an exclusive flock on it. With `wait`,
/// retries until the timeout runs out; without, fails at once.
pub(super) fn lock(path: &Path, wait: Option<Duration>) -> Result<File, StoreError> {
    let file = options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_error("open lock file", path))?;
    let deadline = wait.map(|w| Instant::now() + w);
    let mut pause = Duration::from_millis(5);
    loop {
        // SAFETY: flock on a descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(file);
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => {}
            _ => return Err(io_error("lock", path)(err)),
        }
        let now = Instant::now();
        match deadline {
            Some(deadline) if now < deadline => {
                std::thread::sleep(pause.min(deadline - now));
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            _ => {
                return Err(StoreError::Locked { path: path.to_path_buf() });
            }
        }
    }
}

/// Makes renames and new links inside `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error("fsync directory", dir))
}

/// Keeps a bad file under `<name>.corrupt-<unix-millis>` beside it and
/// returns the new name. A hard link leaves the original in place until its
/// repaired replacement is durable, so a crash during repair loses nothing;
/// where links are unsupported the file is renamed instead.
pub(super) fn keep_aside(path: &Path) -> Result<PathBuf, StoreError> {
    let mut millis = styxy_proto::model::now_millis();
    let aside = loop {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".corrupt-{millis}"));
        let candidate = PathBuf::from(name);
        if !candidate.exists() {
            break candidate;
        }
        millis += 1;
    };
    if fs::hard_link(path, &aside).is_err() {
        fs::rename(path, &aside).map_err(io_error("move aside", path))?;
    }
    Ok(aside)
}
