//! User names and home directories by uid (getpwuid_r, so NSS sources count),
//! cached until /etc/passwd changes.

use std::ffi::{CStr, OsStr};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::SystemTime;

use super::IntMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub home: PathBuf,
}

#[derive(Debug, Default)]
pub struct Accounts {
    by_uid: IntMap<u32, Option<Account>>,
    passwd_modified: Option<SystemTime>,
}

impl Accounts {
    /// Empties the cache when /etc/passwd changed since the last call (a user
    /// added while the observer runs).
    pub fn refresh(&mut self) {
        let modified = fs::metadata("/etc/passwd").and_then(|m| m.modified()).ok();
        if modified != self.passwd_modified {
            self.by_uid.clear();
            self.passwd_modified = modified;
        }
    }

    pub fn get(&mut self, uid: u32) -> Option<&Account> {
        self.by_uid.entry(uid).or_insert_with(|| lookup(uid)).as_ref()
    }
}

fn lookup(uid: u32) -> Option<Account> {
    let mut buffer = vec![0u8; 1024];
    loop {
        // SAFETY: passwd is plain data; getpwuid_r fills it with pointers into
        // `buffer`, which outlives every use below.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result = std::ptr::null_mut();
        let rc = unsafe { libc::getpwuid_r(uid, &mut entry, buffer.as_mut_ptr().cast(), buffer.len(), &mut result) };
        if rc == libc::ERANGE && buffer.len() < 1 << 20 {
            buffer.resize(buffer.len() * 4, 0);
            continue;
        }
        if rc != 0 || result.is_null() {
            return None;
        }
        // SAFETY: on success pw_name and pw_dir are NUL-terminated strings in `buffer`.
        let (name, home) = unsafe { (CStr::from_ptr(entry.pw_name), CStr::from_ptr(entry.pw_dir)) };
        return Some(Account {
            name: name.to_string_lossy().into_owned(),
            home: PathBuf::from(OsStr::from_bytes(home.to_bytes())),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_named_and_an_unused_uid_is_not() {
        let mut accounts = Accounts::default();
        accounts.refresh();
        assert_eq!(accounts.get(0).map(|a| a.name.as_str()), Some("root"));
        assert_eq!(accounts.get(u32::MAX - 7), None);
    }
}
