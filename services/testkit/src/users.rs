//! Another user on this machine, for the tests that cross users (they need
//! root, and skip without it).

use std::process::Command;

/// The uid and gid of system user `name`, created (with its own group, no
/// home, no shell) when missing.
pub fn ensure_user(name: &str) -> (u32, u32) {
    let lookup = |name: &str| {
        let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() > 3 && fields[0] == name).then(|| (fields[2].parse().ok(), fields[3].parse().ok()))
        })
    };
    if let Some((Some(uid), Some(gid))) = lookup(name) {
        return (uid, gid);
    }
    let status = Command::new("useradd")
        .args(["--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name])
        .status()
        .expect("run useradd");
    // A parallel run may have created it meanwhile; the lookup decides.
    match lookup(name) {
        Some((Some(uid), Some(gid))) => (uid, gid),
        _ => panic!("useradd {name} failed: {status}"),
    }
}

/// Two ordinary users for the tests of one user against another, victim
/// first; None, with a line saying the test is skipped, without root.
pub fn victim_and_attacker() -> Option<[(u32, u32); 2]> {
    if styxy_proto::paths::uid() != 0 {
        eprintln!("skipped: creating users needs root");
        return None;
    }
    Some([ensure_user("styxy-victim"), ensure_user("styxy-attacker")])
}

/// `program` run as `uid`:`gid` with no supplementary groups (setpriv
/// execs it, so the child's pid is the program's).
pub fn as_user(uid: u32, gid: u32, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}")).arg(format!("--regid={gid}")).arg("--clear-groups").arg("--").arg(program);
    cmd
}

/// What a hostile user's fake allocator does: listens on `argv[1]` (anyone may
/// connect), appends every byte it is sent to `argv[2]` and answers every
/// request with a port of its choosing, 1999.
const FAKE_ALLOCATOR: &str = r#"
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1]); s.listen(16)
os.chmod(sys.argv[1], 0o777)
body = b'{"success":true,"port":1999,"lock_id":"mallory","service_type":"dev","service_name":"web"}'
while True:
    c, _ = s.accept()
    c.settimeout(1)
    try:
        data = c.recv(65536)
    except OSError:
        data = b''
    with open(sys.argv[2], 'ab') as f:
        f.write(data)
    try:
        c.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n' % len(body) + body)
    except OSError:
        pass
    c.close()
"#;

/// A fake allocator run by `uid`:`gid` on `socket`, recording what it is
/// told in `heard` (see `FAKE_ALLOCATOR`); stopped when dropped.
pub struct FakeAllocator(std::process::Child);

impl FakeAllocator {
    /// Starts it and waits for its socket.
    pub fn start_as(uid: u32, gid: u32, socket: &std::path::Path, heard: &std::path::Path) -> FakeAllocator {
        let child = as_user(uid, gid, "/usr/bin/python3")
            .arg("-c")
            .arg(FAKE_ALLOCATOR)
            .arg(socket)
            .arg(heard)
            .env_remove("LD_PRELOAD")
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("start the fake allocator");
        let fake = FakeAllocator(child);
        let deadline = std::time::Instant::now() + crate::PATIENCE;
        while !socket.exists() {
            assert!(std::time::Instant::now() < deadline, "the fake allocator never bound {}", socket.display());
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        fake
    }
}

impl Drop for FakeAllocator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
