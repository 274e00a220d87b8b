//! Shared by the preload tests: builds the library and the C test programs,
//! runs real programs under LD_PRELOAD in an isolated Styxy environment,
//! holds ports busy, and talks to the servers.
// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// How long a test waits for a program before declaring it stuck (a guard
/// against hangs, not a performance expectation).
pub const PATIENCE: Duration = Duration::from_secs(20);

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// target/<profile> of this test binary (it lives in target/<profile>/deps).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf()
}

/// `cargo build -p PACKAGE` in this test's profile (cargo builds neither a
/// cdylib nor another package's binary for integration tests); then
/// target/<profile>/FILE.
fn built(package: &str, file: &str) -> PathBuf {
    let dir = profile_dir();
    let mut build = Command::new(env!("CARGO"));
    build.args(["build", "-p", package]).current_dir(manifest_dir());
    if dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build");
    assert!(status.success(), "cargo build -p {package} failed");
    let path = dir.join(file);
    assert!(path.exists(), "{} missing after build", path.display());
    path
}

/// target/<profile>/libstyxy_preload.so, rebuilt if stale.
pub fn preload_lib() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| built("styxy-preload", "libstyxy_preload.so"))
}

/// target/<profile>/styxy-allocator, rebuilt if stale.
pub fn allocator_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| built("styxy-allocator", "styxy-allocator"))
}

/// Compiles tests/programs/<name>.c once per test binary.
pub fn c_program(name: &str) -> PathBuf {
    static BUILT: OnceLock<std::sync::Mutex<Vec<(String, PathBuf)>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().expect("compile lock");
    if let Some((_, path)) = built.iter().find(|(n, _)| n == name) {
        return path.clone();
    }
    let src = manifest_dir().join("tests/programs").join(format!("{name}.c"));
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let status =
        Command::new("cc").args(["-O1", "-Wall", "-pthread", "-o"]).arg(&out).arg(&src).status().expect("run cc");
    assert!(status.success(), "cc {} failed", src.display());
    built.push((name.to_string(), out.clone()));
    out
}

pub fn js_program(name: &str) -> PathBuf {
    manifest_dir().join("tests/programs").join(name)
}

/// A private runtime directory: the allocator socket and port map the
/// preload looks for live here, and nowhere else the tests control.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("run")).expect("mkdir run");
        std::fs::create_dir_all(dir.path().join("xdg")).expect("mkdir xdg");
        Sandbox { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// $STYXY_SOCKET for the programs (absent unless a test creates it).
    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("run/api.sock")
    }

    /// A program under the preload, with this sandbox's environment.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("LD_PRELOAD", preload_lib())
            .env("STYXY_SOCKET", self.socket_path())
            .env("XDG_RUNTIME_DIR", self.dir.path().join("xdg"))
            .env("PYTHONUNBUFFERED", "1")
            .env_remove("STYXY_PRELOAD")
            .env_remove("STYXY_QUIET")
            .current_dir(self.dir.path());
        cmd
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// GET `path` from the allocator over its socket; the JSON body.
    pub fn api_get(&self, path: &str) -> serde_json::Value {
        self.api("GET", path, "")
    }

    pub fn api(&self, method: &str, path: &str, body: &str) -> serde_json::Value {
        let mut stream = std::os::unix::net::UnixStream::connect(self.socket_path()).expect("connect to the allocator");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: styxy\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read the answer");
        let (_, json) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {answer}"))
    }

    /// The allocations whose owner is `pid`.
    pub fn allocations_of(&self, pid: u32) -> Vec<serde_json::Value> {
        let all = self.api_get("/allocations");
        let list = all["allocations"].as_array().expect("allocations list").clone();
        list.into_iter().filter(|a| a["owner"]["pid"] == pid).collect()
    }

    /// Writes ports.map beside the socket: every port free except `entries`.
    pub fn write_port_map(&self, entries: &[(u16, u32)]) {
        let mut map = vec![0u8; 65536 * 4];
        for &(port, owner) in entries {
            let at = usize::from(port) * 4;
            map[at..at + 4].copy_from_slice(&owner.to_le_bytes());
        }
        std::fs::write(self.dir.path().join("run/ports.map"), map).expect("write ports.map");
    }
}

/// A user-mode allocator serving the sandbox's socket and state.
pub struct Allocator {
    child: Child,
}

impl Allocator {
    pub fn start(sandbox: &Sandbox) -> Allocator {
        let log = std::fs::File::create(sandbox.path().join("allocator.log")).expect("log file");
        let child = Command::new(allocator_bin())
            .args(["--user", "--idle-timeout", "0", "--socket"])
            .arg(sandbox.socket_path())
            .arg("--state-dir")
            .arg(sandbox.state_dir())
            .env("XDG_CONFIG_HOME", sandbox.path().join("config"))
            .env("STYXY_SYSTEM_CONFIG", sandbox.path().join("config/system.toml"))
            .env("XDG_RUNTIME_DIR", sandbox.path().join("xdg"))
            .env_remove("LD_PRELOAD")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start styxy-allocator");
        let allocator = Allocator { child };
        let deadline = Instant::now() + PATIENCE;
        while std::os::unix::net::UnixStream::connect(sandbox.socket_path()).is_err() {
            assert!(Instant::now() < deadline, "the allocator did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(sandbox.api_get("/status")["status"], "running");
        allocator
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(self.child.id() as libc::pid_t, signal) }, 0);
    }
}

impl Drop for Allocator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running program whose stdout and stderr lines are collected.
pub struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    pub out: Vec<String>,
    pub err: Vec<String>,
}

fn lines_of(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Running {
    pub fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let stdout = lines_of(child.stdout.take().expect("stdout"));
        let stderr = lines_of(child.stderr.take().expect("stderr"));
        Running { stdin: child.stdin.take(), child, stdout, stderr, out: vec![], err: vec![] }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn drain_stderr(&mut self) {
        while let Ok(line) = self.stderr.try_recv() {
            self.err.push(line);
        }
    }

    /// The next stdout line matching `wanted`; fails the test (showing all
    /// output) if the program exits or gets stuck first.
    pub fn stdout_line(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    self.out.push(line.clone());
                    if wanted(&line) {
                        self.drain_stderr();
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => self.fail("no such line on stdout in time"),
                Err(RecvTimeoutError::Disconnected) => self.fail("the program closed stdout"),
            }
        }
    }

    /// The `n` next "listening HOST PORT PID" lines, as ports.
    pub fn listening_ports(&mut self, n: usize) -> Vec<u16> {
        (0..n)
            .map(|_| {
                let line = self.stdout_line(|l| l.starts_with("listening ") || l.starts_with("Serving HTTP"));
                listening_port(&line).unwrap_or_else(|| self.fail(&format!("no port in {line:?}")))
            })
            .collect()
    }

    /// The port of the next "listening" line.
    pub fn listening(&mut self) -> u16 {
        self.listening_ports(1)[0]
    }

    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write to the program's stdin");
    }

    /// Waits for the program to exit and collects the rest of its output.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // The pipes close with the process; collect what is left.
                for line in self.stdout.iter() {
                    self.out.push(line);
                }
                for line in self.stderr.iter() {
                    self.err.push(line);
                }
                return status;
            }
            if Instant::now() > deadline {
                self.fail("the program did not exit");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The styxy lines the program printed on stderr so far.
    pub fn styxy_lines(&mut self) -> Vec<String> {
        self.drain_stderr();
        self.err.iter().filter(|l| l.starts_with("styxy")).cloned().collect()
    }

    /// The move announced on stderr: (requested, new port). Waits for the
    /// line: it was written before the program's "listening" line, but the
    /// two pipes are read independently.
    pub fn the_move(&mut self) -> (u16, u16) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(line) = self.styxy_lines().first() {
                return moved_line(line).unwrap_or_else(|| self.fail(&format!("not a move line: {line:?}")));
            }
            match self.stderr.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => self.err.push(line),
                Err(_) => self.fail("no styxy line on stderr"),
            }
        }
    }

    /// Stops the program and returns every styxy line it printed.
    pub fn stop(&mut self) -> Vec<String> {
        let _ = self.child.kill();
        self.wait_exit();
        self.styxy_lines()
    }

    pub fn fail(&mut self, why: &str) -> ! {
        self.drain_stderr();
        let _ = self.child.kill();
        panic!("{why}\n--- stdout ---\n{}\n--- stderr ---\n{}", self.out.join("\n"), self.err.join("\n"));
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port in "listening HOST PORT PID" or python's "Serving HTTP on HOST port PORT ...".
pub fn listening_port(line: &str) -> Option<u16> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["listening", _host, port, ..] => port.parse().ok(),
        ["Serving", "HTTP", "on", _host, "port", port, ..] => port.parse().ok(),
        _ => None,
    }
}

/// Parses `styxy: port P is in use[ by ...]; listening on N instead`.
pub fn moved_line(line: &str) -> Option<(u16, u16)> {
    let rest = line.strip_prefix("styxy: port ")?;
    let (requested, rest) = rest.split_once(' ')?;
    let rest = rest.strip_prefix("is in use")?;
    let (_, tail) = rest.split_once("; listening on ")?;
    let now = tail.strip_suffix(" instead")?;
    Some((requested.parse().ok()?, now.parse().ok()?))
}

/// Connects to host:port and reads what the server says (sending `request`
/// first if given).
pub fn ask(host: &str, port: u16, request: &str) -> String {
    let addr: SocketAddr = format!("{}:{port}", bracket(host)).parse().expect("address");
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap_or_else(|e| panic!("read from {addr}: {e}"));
    answer
}

pub fn http_get(host: &str, port: u16) -> String {
    ask(host, port, "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
}

fn bracket(host: &str) -> String {
    if host.contains(':') { format!("[{host}]") } else { host.to_string() }
}

/// How a test holds a port.
#[derive(Clone, Copy, Default)]
pub struct Hold {
    pub reuseaddr: bool,
    pub reuseport: bool,
    pub v6only: bool,
    pub udp: bool,
    /// Bound but not listening (only then can another SO_REUSEADDR socket bind it).
    pub no_listen: bool,
}

/// A socket on host:port made with raw calls, so the options are exact.
/// Port 0 picks a free one; see [`local_port`].
pub fn hold(host: &str, port: u16, how: Hold) -> OwnedFd {
    let addr: SocketAddr = format!("{}:{port}", bracket(host)).parse().expect("address");
    let set = |fd: i32, level: i32, name: i32| {
        let one: libc::c_int = 1;
        // SAFETY: valid fd and int option.
        let rc = unsafe { libc::setsockopt(fd, level, name, (&raw const one).cast(), 4) };
        assert_eq!(rc, 0, "setsockopt");
    };
    // SAFETY: plain socket calls on a descriptor we own.
    unsafe {
        let family = if addr.is_ipv6() { libc::AF_INET6 } else { libc::AF_INET };
        let kind = if how.udp { libc::SOCK_DGRAM } else { libc::SOCK_STREAM };
        let fd = libc::socket(family, kind | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket");
        let owned = OwnedFd::from_raw_fd(fd);
        if how.reuseaddr {
            set(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR);
        }
        if how.reuseport {
            set(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT);
        }
        if how.v6only && addr.is_ipv6() {
            set(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY);
        }
        let rc = match addr {
            SocketAddr::V4(a) => {
                let mut sa: libc::sockaddr_in = std::mem::zeroed();
                sa.sin_family = libc::AF_INET as libc::sa_family_t;
                sa.sin_port = a.port().to_be();
                sa.sin_addr.s_addr = u32::from(*a.ip()).to_be();
                libc::bind(fd, (&raw const sa).cast(), size_of_val(&sa) as libc::socklen_t)
            }
            SocketAddr::V6(a) => {
                let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
                sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sa.sin6_port = a.port().to_be();
                sa.sin6_addr.s6_addr = a.ip().octets();
                libc::bind(fd, (&raw const sa).cast(), size_of_val(&sa) as libc::socklen_t)
            }
        };
        assert_eq!(rc, 0, "bind {addr}: {}", std::io::Error::last_os_error());
        if !how.udp && !how.no_listen {
            assert_eq!(libc::listen(fd, 16), 0, "listen {addr}");
        }
        owned
    }
}

/// The port a held socket is bound to.
pub fn local_port(fd: &OwnedFd) -> u16 {
    use std::os::fd::AsRawFd;
    // SAFETY: storage is large enough for either family.
    unsafe {
        let mut ss: libc::sockaddr_in6 = std::mem::zeroed();
        let mut len = size_of_val(&ss) as libc::socklen_t;
        assert_eq!(libc::getsockname(fd.as_raw_fd(), (&raw mut ss).cast(), &mut len), 0);
        u16::from_be(ss.sin6_port)
    }
}

/// A port held busy by a v4 loopback listener of the test itself.
pub fn busy_port() -> (OwnedFd, u16) {
    let fd = hold("127.0.0.1", 0, Hold { reuseaddr: true, ..Hold::default() });
    let port = local_port(&fd);
    (fd, port)
}
