//! The preload inside a program of one user, against another local user
//! who owns the directory it looks in (docs/design.md, "Threats": files,
//! sockets and durability): a fake allocator on the socket path, a port
//! map truncated under the program, and a program's own bad pointer.
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use styxy_testkit::*;

/// The other user, who runs the fakes; None (skip) without root.
fn mallory() -> Option<(u32, u32)> {
    if styxy_proto::paths::uid() != 0 {
        eprintln!("skipped: needs root to act as a second user");
        return None;
    }
    Some(ensure_user("styxy-mallory"))
}

/// A directory in /tmp that mallory owns (where the victim's socket is
/// looked for, as /tmp/styxy-$UID when XDG_RUNTIME_DIR is unset).
fn mallory_dir(uid: u32, gid: u32) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("styxy-mallory-").tempdir_in("/tmp").unwrap();
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Runs a Python script as mallory; killed when dropped.
struct AsMallory(Child);

impl AsMallory {
    fn python(uid: u32, gid: u32, script: &str, args: &[&Path]) -> AsMallory {
        let child = as_user(uid, gid, "/usr/bin/python3")
            .arg("-c")
            .arg(script)
            .args(args)
            .env_remove("LD_PRELOAD")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        AsMallory(child)
    }
}

impl Drop for AsMallory {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(path: &Path) {
    for _ in 0..500 {
        if path.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{} did not appear", path.display());
}

#[test]
fn a_fake_allocator_of_another_user_on_the_socket_path_is_told_nothing_and_not_believed() {
    let Some((uid, gid)) = mallory() else { return };
    let dir = mallory_dir(uid, gid);
    let socket = dir.path().join("api.sock");
    let heard = dir.path().join("heard");
    let _fake = FakeAllocator::start_as(uid, gid, &socket, &heard);

    let sandbox = Sandbox::new();
    let (_holder, busy) = busy_port();
    let mut cmd = sandbox.command(c_program("serve"));
    cmd.env("STYXY_SOCKET", &socket).args(["127.0.0.1", &busy.to_string()]);
    let mut server = Running::start(cmd);
    let (from, to) = server.the_move();
    assert_eq!(from, busy);
    assert_ne!(to, 1999, "the fake allocator's port was used");
    assert!(to > busy && to <= busy + 100, "moved by its own search, not to {to}");
    server.stop();
    let told = std::fs::read(&heard).unwrap_or_default();
    assert!(told.is_empty(), "the fake allocator was told: {}", String::from_utf8_lossy(&told));
}

/// Truncates and re-extends argv[1] in a loop, as the file's owner may.
const TRUNCATE_LOOP: &str = r#"
import os, sys
path = sys.argv[1]
with open(path, 'wb') as f:
    f.write(b'\xff' * 262144)
os.chmod(path, 0o644)
fd = os.open(path, os.O_RDWR)
while True:
    os.ftruncate(fd, 0)
    os.ftruncate(fd, 262144)
"#;

/// Binds and closes sockets on the ports above argv[1] for two seconds:
/// every bind reads the port map.
const BIND_LOOP: &str = r#"
import socket, sys, time
base = int(sys.argv[1])
end = time.time() + 2
n = 0
while time.time() < end:
    s = socket.socket()
    try:
        s.bind(('127.0.0.1', base + n % 50))
    except OSError:
        pass
    s.close()
    n += 1
print('binds', n)
"#;

#[test]
fn a_port_map_another_user_truncates_in_a_loop_cannot_kill_a_preloaded_program() {
    let Some((uid, gid)) = mallory() else { return };
    let dir = mallory_dir(uid, gid);
    let map = dir.path().join("ports.map");
    let _truncating = AsMallory::python(uid, gid, TRUNCATE_LOOP, &[&map]);
    wait_for(&map);

    let sandbox = Sandbox::new();
    for run in 0..3 {
        let base = free_port().saturating_sub(100).max(20000);
        let out = sandbox
            .command("python3")
            .env("STYXY_SOCKET", dir.path().join("api.sock"))
            .arg("-c")
            .arg(BIND_LOOP)
            .arg(base.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "run {run}: the preloaded program died ({:?}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("binds "));
    }
}

#[test]
fn a_bind_with_a_bad_address_pointer_fails_with_efault_as_without_the_preload() {
    let sandbox = Sandbox::new();
    let script = r#"
import ctypes, errno, socket
libc = ctypes.CDLL(None, use_errno=True)
for family in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
    s = socket.socket(family)
    for pointer in (8, 0xffffffffffff0000):
        rc = libc.bind(s.fileno(), ctypes.c_void_p(pointer), 16)
        print(family, hex(pointer), rc, errno.errorcode.get(ctypes.get_errno()))
"#;
    let out = sandbox.command("python3").arg("-c").arg(script).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{:?}: {stdout}{}", out.status, String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{stdout}");
    assert!(lines.iter().all(|l| l.ends_with(" -1 EFAULT")), "{stdout}");
}
