//! Another local user against `styxy` in user mode when XDG_RUNTIME_DIR is
//! unset (sudo, su, cron, ssh without logind): the runtime directory falls
//! back to /tmp/styxy-$UID, which anyone may create first (docs/design.md,
//! "Threats": files, sockets and durability).
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use styxy_testkit::{FakeAllocator, allocator_bin, as_user, ensure_user, styxy_bin, text};

const VICTIM: &str = "styxy-fallback-victim";
const MALLORY: &str = "styxy-mallory";

/// The victim's /tmp fallback, made by mallory before the victim's first
/// `styxy`; removed at the end.
struct Squatted {
    dir: PathBuf,
    fake: Option<FakeAllocator>,
}

impl Drop for Squatted {
    fn drop(&mut self) {
        drop(self.fake.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The victim's fallback directory is one path: one test at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The victim (uid, gid) and a home of theirs, or None (skip) when this is
/// not root or a system allocator would answer instead.
fn setup() -> Option<((u32, u32), tempfile::TempDir)> {
    if styxy_proto::paths::uid() != 0 {
        eprintln!("skipped: needs root to act as two users");
        return None;
    }
    if Path::new(styxy_proto::paths::SYSTEM_RUNTIME_DIR).exists() {
        eprintln!("skipped: a system allocator is installed here");
        return None;
    }
    let (uid, gid) = ensure_user(VICTIM);
    let home = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(home.path(), Some(uid), Some(gid)).unwrap();
    Some(((uid, gid), home))
}

fn squat(victim_uid: u32, mode: u32, with_fake_allocator: bool) -> Squatted {
    let (uid, gid) = ensure_user(MALLORY);
    let dir = PathBuf::from(format!("/tmp/styxy-{victim_uid}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
    let mut squatted = Squatted { dir: dir.clone(), fake: None };
    if with_fake_allocator {
        squatted.fake = Some(FakeAllocator::start_as(uid, gid, &dir.join("api.sock"), &dir.join("heard")));
    }
    squatted
}

/// `styxy ARGS` as the victim, with no XDG_RUNTIME_DIR, as under sudo.
fn styxy_as_victim((uid, gid): (u32, u32), home: &Path, args: &[&str]) -> Output {
    as_user(uid, gid, styxy_bin())
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .env("STYXY_ALLOCATOR", allocator_bin())
        .env("STYXY_SYSTEM_CONFIG", home.join("none.toml"))
        .output()
        .unwrap()
}

#[test]
fn a_tmp_fallback_directory_another_user_made_first_stops_styxy_naming_its_owner() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some((victim, home)) = setup() else { return };
    let squatted = squat(victim.0, 0o777, false);
    let out = styxy_as_victim(victim, home.path(), &["allocate", "-s", "dev", "-n", "web"]);
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "styxy used mallory's directory: {}{stderr}", text(&out.stdout));
    assert!(stderr.contains(&squatted.dir.display().to_string()) && stderr.contains(MALLORY), "{stderr}");
    // Nothing of the victim's landed there.
    let entries: Vec<_> = std::fs::read_dir(&squatted.dir).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(entries.is_empty(), "{entries:?}");
}

#[test]
fn a_fake_allocator_on_the_victims_socket_path_is_told_nothing_and_its_port_is_not_used() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some((victim, home)) = setup() else { return };
    let squatted = squat(victim.0, 0o755, true);
    let heard = squatted.dir.join("heard");
    // `allocate` is refused; `run` runs the command without a port, saying why.
    for args in [&["allocate", "-s", "dev", "-n", "web"][..], &["run", "-s", "dev", "--", "/usr/bin/env"][..]] {
        let out = styxy_as_victim(victim, home.path(), args);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code() == Some(0), args[0] == "run", "{args:?}: {stdout}{stderr}");
        assert!(!stdout.contains("1999"), "{args:?}: the fake allocator's port was used: {stdout}");
        assert!(stderr.contains("api.sock") && stderr.contains(MALLORY), "{args:?}: {stderr}");
    }
    let told = std::fs::read(&heard).unwrap_or_default();
    assert!(told.is_empty(), "the fake allocator was told: {}", String::from_utf8_lossy(&told));
}

#[test]
fn styxy_makes_its_own_tmp_fallback_private_and_works_there() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some((victim, home)) = setup() else { return };
    let dir = PathBuf::from(format!("/tmp/styxy-{}", victim.0));
    let _ = std::fs::remove_dir_all(&dir);
    let cleanup = Squatted { dir: dir.clone(), fake: None };
    let out =
        styxy_as_victim(victim, home.path(), &["--json", "allocate", "-s", "dev", "-n", "web", "--lease", "manual"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    let meta = std::fs::symlink_metadata(&dir).unwrap();
    assert!(meta.is_dir());
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), victim.0);
    assert_eq!(std::os::unix::fs::MetadataExt::mode(&meta) & 0o7777, 0o700);
    let _ = styxy_as_victim(victim, home.path(), &["daemon", "stop"]);
    drop(cleanup);
}
