//! Attacks on the allocator's files and its HTTP layer, by another local
//! user or by anyone who can reach the socket (docs/design.md, "Threats":
//! files, sockets and durability).
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use styxy_testkit::{Allocator, Sandbox, allocator_bin, ensure_user};

/// Root, or a reason to skip (these tests create users and mount).
fn root() -> bool {
    let root = styxy_proto::paths::uid() == 0;
    if !root {
        eprintln!("skipped: needs root");
    }
    root
}

/// Sends `request` on a fresh connection and returns everything answered.
fn raw_exchange(mut stream: impl Read + Write, request: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.write_all(request)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(answer)
}

/// The status and JSON body of a raw answer.
fn parse_answer(answer: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head in {text:?}"));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text:?}"));
    (status, body)
}

#[test]
fn garbage_requests_get_a_json_error_body_not_an_empty_answer() {
    let sb = Sandbox::new();
    let _allocator = Allocator::start(&sb);
    let cases: [(&str, &[u8], u16, &str); 4] = [
        ("garbage request line", b"GARBAGE\r\n\r\n", 400, "bad_request"),
        ("path that is not UTF-8", b"GET /check/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
        (
            "negative Content-Length",
            b"POST /allocate HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
            400,
            "bad_request",
        ),
        ("unknown HTTP version", b"GET /status HTTP/7.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
    ];
    for (what, request, status, code) in cases {
        let stream = std::os::unix::net::UnixStream::connect(sb.socket()).unwrap();
        let answer = raw_exchange(stream, request).unwrap();
        let (got, body) = parse_answer(&answer);
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(body["success"], false, "{what}: {body}");
        assert_eq!(body["error"], code, "{what}: {body}");
    }
    // The allocator serves on.
    assert_eq!(sb.get("/status").0, 200);
}

#[test]
fn a_header_flood_over_tcp_gets_a_431_json_body_not_a_reset() {
    let sb = Sandbox::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let _allocator = Allocator::start_with(&sb, &["--user", "--tcp", &addr], &[]);
    for round in 0..5 {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut writer = stream.try_clone().unwrap();
        // 800 KiB of headers, more than hyper reads, sent while the answer
        // comes back; write errors are the server's business.
        let flood = std::thread::spawn(move || {
            let _ = writer.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n");
            let line = format!("X-Flood: {}\r\n", "a".repeat(1000));
            for _ in 0..800 {
                if writer.write_all(line.as_bytes()).is_err() {
                    break;
                }
            }
        });
        let mut answer = Vec::new();
        let read = stream.read_to_end(&mut answer);
        flood.join().unwrap();
        assert!(read.is_ok(), "round {round}: reading the answer failed: {read:?} after {} bytes", answer.len());
        let (status, body) = parse_answer(&answer);
        assert_eq!(status, 431, "round {round}: {body}");
        assert_eq!(body["error"], "header_too_large", "round {round}: {body}");
    }
}

/// A tmpfs of `size` mounted on a new directory; unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "styxy-test"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs on {}", dir.path().display());
        Tmpfs(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_tmpfs_for_the_port_map_is_a_clean_warning_not_a_sigbus_at_start() {
    if !root() {
        return;
    }
    let sb = Sandbox::new();
    let tmpfs = Tmpfs::mount("64k");
    // Fill it: the map (256 KiB) cannot get its pages.
    let filler = std::fs::File::create(tmpfs.path().join("filler")).unwrap();
    let mut filler = std::io::BufWriter::new(filler);
    while filler.write_all(&[1u8; 4096]).and_then(|()| filler.flush()).is_ok() {}
    drop(filler);
    let socket = tmpfs.path().join("api.sock");
    let log = sb.path().join("full.log");
    // Several starts: a crash would repeat at every one.
    for start in 0..3 {
        let mut child = Command::new(allocator_bin())
            .args(["--user", "--idle-timeout", "0", "--socket"])
            .arg(&socket)
            .arg("--state-dir")
            .arg(sb.state_dir())
            .env("STYXY_CONFIG", sb.config_file())
            .env("STYXY_SYSTEM_CONFIG", sb.system_config_file())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let client = styxy_proto::client::Client::new(socket.clone(), Duration::from_secs(2));
        let mut answered = false;
        for _ in 0..200 {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("start {start}: the allocator died ({status:?}): {}", std::fs::read_to_string(&log).unwrap());
            }
            if client.get::<Value>("/status").is_ok() {
                answered = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(answered, "start {start}: no answer: {text}");
        assert!(text.contains("no port map for the preload") && text.contains("reserve space"), "{text}");
        assert!(!tmpfs.path().join("ports.map").exists(), "no half-made map is left for the preloads");
    }
}

/// A root-only file standing in for /etc/shadow: what root's styxy must
/// never write through a link another user planted.
struct RootOnlyFile {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl RootOnlyFile {
    fn new() -> RootOnlyFile {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "root's secret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        RootOnlyFile { _dir: dir, path }
    }

    fn assert_untouched(&self) {
        let meta = std::fs::metadata(&self.path).unwrap();
        assert_eq!(std::fs::read_to_string(&self.path).unwrap(), "root's secret\n");
        assert_eq!(meta.mode() & 0o7777, 0o600);
    }
}

/// A directory in /tmp that `user` owns, as one they made there.
fn directory_of(uid: u32, gid: u32) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("styxy-planted-").tempdir_in("/tmp").unwrap();
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn plant_symlink(target: &Path, link: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::symlink(target, link).unwrap();
    std::os::unix::fs::lchown(link, Some(uid), Some(gid)).unwrap();
}

#[test]
fn root_in_user_mode_never_writes_through_a_port_map_or_log_symlink_another_user_planted() {
    if !root() {
        return;
    }
    let (uid, gid) = ensure_user("styxy-mallory");
    let victim_file = RootOnlyFile::new();
    let sb = Sandbox::new();
    // Mallory's directory where root's socket and state would go (as
    // /tmp/styxy-0 is when sudo drops XDG_RUNTIME_DIR), with links to the
    // root-only file under the names the allocator writes.
    let planted = directory_of(uid, gid);
    let state = planted.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(uid), Some(gid)).unwrap();
    for link in [planted.path().join("ports.map"), state.join("state.wal"), state.join("state.json")] {
        plant_symlink(&victim_file.path, &link, uid, gid);
    }
    for (socket, state_dir) in [(planted.path().join("api.sock"), sb.state_dir()), (sb.socket(), state.clone())] {
        let out = Command::new(allocator_bin())
            .args(["--user", "--idle-timeout", "1", "--socket"])
            .arg(&socket)
            .arg("--state-dir")
            .arg(&state_dir)
            .env("STYXY_CONFIG", sb.config_file())
            .env("STYXY_SYSTEM_CONFIG", sb.system_config_file())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "the allocator used mallory's directory: {stderr}");
        assert!(stderr.contains("refusing to use") && stderr.contains("styxy-mallory"), "{stderr}");
        victim_file.assert_untouched();
    }
}
