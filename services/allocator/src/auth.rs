//! Per-user API tokens for the TCP listener: a token names exactly one uid,
//! so one user's token can never act for another. Obtained over the Unix
//! socket (`GET /token`), where the kernel vouches for the caller.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use styxy_proto::dirs::{self, Policy};

const FILE: &str = "tokens.json";

pub struct Tokens {
    dir: PathBuf,
    by_uid: Mutex<BTreeMap<u32, String>>,
}

impl Tokens {
    pub fn load(state_dir: &Path) -> Result<Tokens> {
        let path = state_dir.join(FILE);
        let read = no_follow().read(true).open(&path).and_then(|mut file| {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map(|_| bytes)
        });
        let by_uid = match read {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(Tokens { dir: state_dir.to_path_buf(), by_uid: Mutex::new(by_uid) })
    }

    /// The uid a presented token belongs to (constant-time comparison).
    pub fn uid_for(&self, presented: &str) -> Option<u32> {
        let map = self.by_uid.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().find(|(_, t)| constant_time_eq(t.as_bytes(), presented.as_bytes())).map(|(uid, _)| *uid)
    }

    /// The caller's token, created (and persisted, 0600) on first use.
    pub fn token_for(&self, uid: u32) -> Result<String> {
        let mut map = self.by_uid.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = map.get(&uid) {
            return Ok(t.clone());
        }
        let token = random_hex(32)?;
        map.insert(uid, token.clone());
        let saved = serde_json::to_vec_pretty(&*map).map_err(anyhow::Error::from).and_then(|bytes| {
            dirs::replace_file(&self.dir, FILE, &bytes, 0o600, Policy::Service)
                .with_context(|| format!("saving the new token of uid {uid}"))
        });
        if let Err(e) = saved {
            // A token that is not on disk would be lost at the next start.
            map.remove(&uid);
            return Err(e);
        }
        Ok(token)
    }
}

/// The token file is never read through a symbolic link.
fn no_follow() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    options
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let len_diff = a.len() ^ b.len();
    let bytes_diff = a.iter().zip(b.iter().cycle()).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    len_diff == 0 && bytes_diff == 0 && !b.is_empty()
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    // SAFETY: getrandom fills the buffer we own.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    anyhow::ensure!(n == bytes as isize, "getrandom failed: {}", std::io::Error::last_os_error());
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_exactly_one_user_and_survives_reload() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = Tokens::load(dir.path()).unwrap();
        let a = tokens.token_for(1000).unwrap();
        let b = tokens.token_for(1001).unwrap();
        assert_ne!(a, b);
        assert_eq!(tokens.uid_for(&a), Some(1000));
        assert_eq!(tokens.uid_for(&b), Some(1001));
        assert_eq!(tokens.uid_for(&a[..10]), None);
        assert_eq!(tokens.uid_for(""), None);
        let again = Tokens::load(dir.path()).unwrap();
        assert_eq!(again.token_for(1000).unwrap(), a);
    }
}
