//! The hooks run inside other people's programs: once the library is loaded
//! they must not allocate, and they must fit in a small thread stack. This
//! binary links the hooks in-process (the crate's rlib), counts every
//! allocation the calling thread makes inside them, and runs them on a
//! painted stack whose untouched bytes show how deep they went.
//!
//! The library reads its environment when it is loaded, before `main`, so the
//! test runs itself again with a sandbox's environment and checks in there.
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use libc::{c_int, c_void};

const TEST_NAME: &str = "hooks_allocate_nothing_and_keep_to_their_stack_budget";
/// Set in the re-run: the sandbox directory.
const CHILD_ENV: &str = "STYXY_HOOK_PATH_SANDBOX";
/// Set in the re-run: a port the port map reserves for another process.
const RESERVED_ENV: &str = "STYXY_HOOK_PATH_RESERVED";
/// Set in the re-run: `CANONICAL:ACTUAL`, a server of the re-run's scope
/// that the port map says was moved (the parent listens on ACTUAL).
const SCOPED_ENV: &str = "STYXY_HOOK_PATH_SCOPED";
/// What lib.rs promises the hooks take of the caller's stack.
const STACK_BUDGET: usize = 16 * 1024;
const TEST_STACK: usize = 512 * 1024;
const PAINT: u8 = 0xa5;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Whether this thread's allocations count (only while it runs a hook).
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if COUNTED.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note();
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A hook call with this thread's allocations counted.
fn counted<T>(call: impl FnOnce() -> T) -> T {
    COUNTED.set(true);
    let result = call();
    COUNTED.set(false);
    result
}

fn loopback(port: u16) -> libc::sockaddr_in {
    styxy_testkit::sockaddr_v4(Ipv4Addr::LOCALHOST, port)
}

const ADDR_LEN: libc::socklen_t = size_of::<libc::sockaddr_in>() as libc::socklen_t;

fn tcp_socket() -> OwnedFd {
    // SAFETY: plain socket call, checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor nobody else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// bind(2) itself, past the hook.
fn raw_bind(fd: &OwnedFd, port: u16) -> c_int {
    let addr = loopback(port);
    // SAFETY: addr is a complete sockaddr_in.
    unsafe { libc::syscall(libc::SYS_bind, fd.as_raw_fd(), &raw const addr, ADDR_LEN) as c_int }
}

fn local_port(fd: &OwnedFd) -> u16 {
    let mut addr = loopback(0);
    let mut len = ADDR_LEN;
    // SAFETY: addr is writable for len bytes.
    let rc = unsafe { libc::getsockname(fd.as_raw_fd(), (&raw mut addr).cast(), &mut len) };
    assert_eq!(rc, 0, "getsockname: {}", std::io::Error::last_os_error());
    u16::from_be(addr.sin_port)
}

/// A port nothing uses now (the kernel's pick, released).
fn free_port() -> u16 {
    let fd = tcp_socket();
    assert_eq!(raw_bind(&fd, 0), 0);
    local_port(&fd)
}

/// A listener on a free port, set up past the hooks, and its port.
fn hold() -> (OwnedFd, u16) {
    let fd = tcp_socket();
    assert_eq!(raw_bind(&fd, 0), 0);
    // SAFETY: plain integer arguments.
    assert_eq!(unsafe { libc::syscall(libc::SYS_listen, fd.as_raw_fd(), 16) }, 0);
    let port = local_port(&fd);
    (fd, port)
}

fn hooked_bind(fd: &OwnedFd, port: u16) -> c_int {
    let addr = loopback(port);
    // SAFETY: addr is a complete sockaddr_in of ADDR_LEN bytes.
    unsafe { styxy_preload::bind(fd.as_raw_fd(), (&raw const addr).cast(), ADDR_LEN) }
}

fn hooked_listen(fd: &OwnedFd) -> c_int {
    styxy_preload::listen(fd.as_raw_fd(), 16)
}

/// What a test calls through the hooks on one socket.
#[derive(Clone, Copy)]
enum Calls {
    Bind(u16),
    Listen,
    BindAndListen(u16),
}

/// Where the calls left the socket, and the allocations and stack bytes
/// they took.
#[derive(Debug)]
struct Outcome {
    /// The first failing call's return value, else 0.
    rc: c_int,
    port: u16,
    allocations: usize,
    stack: usize,
}

/// Makes `calls` through the hooks on a thread of its own whose stack was
/// painted beforehand.
fn through_hooks(fd: &OwnedFd, calls: Calls) -> Outcome {
    let mut rc = 0;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let stack = on_painted_stack(&mut || {
        rc = counted(|| match calls {
            Calls::Bind(port) => hooked_bind(fd, port),
            Calls::Listen => hooked_listen(fd),
            Calls::BindAndListen(port) => match hooked_bind(fd, port) {
                0 => hooked_listen(fd),
                failed => failed,
            },
        })
    });
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    Outcome { rc, port: local_port(fd), allocations, stack }
}

/// A connect through the hook to `ip:port` on a painted stack, counted;
/// `port` of the outcome is the peer's.
fn through_connect(fd: &OwnedFd, ip: Ipv4Addr, port: u16) -> Outcome {
    let addr = styxy_testkit::sockaddr_v4(ip, port);
    let mut rc = 0;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let stack = on_painted_stack(&mut || {
        // SAFETY: addr is a complete sockaddr_in of ADDR_LEN bytes.
        rc = counted(|| unsafe { styxy_preload::connect(fd.as_raw_fd(), (&raw const addr).cast(), ADDR_LEN) })
    });
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    let mut peer = loopback(0);
    let mut len = ADDR_LEN;
    // SAFETY: peer is writable for len bytes.
    let got = unsafe { libc::getpeername(fd.as_raw_fd(), (&raw mut peer).cast(), &mut len) };
    let port = if got == 0 { u16::from_be(peer.sin_port) } else { 0 };
    Outcome { rc, port, allocations, stack }
}

struct Job<'a> {
    body: &'a mut dyn FnMut(),
    entry: usize,
}

extern "C" fn run_job(arg: *mut c_void) -> *mut c_void {
    // SAFETY: `arg` is the Job that on_painted_stack keeps alive until join.
    let job = unsafe { &mut *arg.cast::<Job<'_>>() };
    let marker = 0u8;
    job.entry = std::hint::black_box(&raw const marker) as usize;
    (job.body)();
    std::ptr::null_mut()
}

/// Runs `body` on a new thread whose stack is filled with PAINT first; the
/// bytes below the thread's entry frame that `body` overwrote.
fn on_painted_stack(body: &mut dyn FnMut()) -> usize {
    let mut stack = vec![PAINT; TEST_STACK];
    let mut job = Job { body, entry: 0 };
    // SAFETY: the attributes and the thread use `stack`, which outlives the
    // join; `job` outlives the thread too.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        assert_eq!(libc::pthread_attr_init(&mut attr), 0);
        assert_eq!(libc::pthread_attr_setstack(&mut attr, stack.as_mut_ptr().cast(), TEST_STACK), 0);
        let mut thread: libc::pthread_t = 0;
        let rc = libc::pthread_create(&mut thread, &attr, run_job, (&raw mut job).cast());
        assert_eq!(rc, 0, "pthread_create");
        assert_eq!(libc::pthread_join(thread, std::ptr::null_mut()), 0);
        libc::pthread_attr_destroy(&mut attr);
    }
    let deepest = stack.iter().position(|&b| b != PAINT).expect("the thread ran on its stack");
    let deepest = stack.as_ptr() as usize + deepest;
    assert!(deepest > stack.as_ptr() as usize + 4096, "the test stack is nearly exhausted");
    job.entry - deepest
}

/// A stand-in for the allocator on its Unix socket: answers every
/// POST /allocate with `grant` and everything else with `{}`; keeps the
/// request lines.
struct FakeAllocator {
    grant: Arc<Mutex<String>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeAllocator {
    fn start(socket: &Path) -> FakeAllocator {
        let listener = UnixListener::bind(socket).expect("bind the fake allocator");
        let grant = Arc::new(Mutex::new(String::new()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (answer, seen) = (Arc::clone(&grant), Arc::clone(&requests));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let request = read_request(&mut stream);
                let line = request.lines().next().unwrap_or_default().to_string();
                let body =
                    if line.starts_with("POST /allocate ") { answer.lock().unwrap().clone() } else { "{}".into() };
                seen.lock().unwrap().push(line);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        FakeAllocator { grant, requests }
    }

    fn will_grant(&self, port: u16, requested: u16) {
        let holder = r#"{"uid":0,"pid":4242,"process":"python3","service_type":"api"}"#;
        *self.grant.lock().unwrap() = format!(
            r#"{{"success":true,"port":{port},"lock_id":"lock-{port}","requested_port":{requested},"requested_port_holder":{holder},"message":"ok"}}"#
        );
    }

    fn requests(&self) -> Vec<String> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

/// The head and the Content-Length bytes of the body.
fn read_request(stream: &mut impl Read) -> String {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return text,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
        }
    }
}

#[test]
fn hooks_allocate_nothing_and_keep_to_their_stack_budget() {
    if let Some(sandbox) = std::env::var_os(CHILD_ENV) {
        let reserved = std::env::var(RESERVED_ENV).expect("reserved port").parse().expect("a port");
        return check_the_hooks(Path::new(&sandbox), reserved);
    }
    let sandbox = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(sandbox.path().join("run")).expect("mkdir run");
    std::fs::create_dir_all(sandbox.path().join("xdg")).expect("mkdir xdg");
    // A reservation for a process that is neither the test nor its ancestor.
    let mut stranger = Command::new("sleep").arg("60").spawn().expect("start sleep");
    let reserved = free_port();
    // A server of the re-run's scope, moved from `canonical` to `actual`.
    let scope = sandbox.path().join("worktree-b");
    let (_moved_server, actual) = hold();
    let canonical = free_port();
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let map = sandbox.path().join("run/ports.map");
    styxy_testkit::write_port_map(&map, &[(reserved, stranger.id())], &[(uid, &scope, canonical, actual)]);

    let out = Command::new(std::env::current_exe().expect("test executable"))
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, sandbox.path())
        .env(RESERVED_ENV, reserved.to_string())
        .env(SCOPED_ENV, format!("{canonical}:{actual}"))
        .env("STYXY_SCOPE", &scope)
        .env("STYXY_SOCKET", socket_path(sandbox.path()))
        .env("XDG_RUNTIME_DIR", sandbox.path().join("xdg"))
        .env_remove("STYXY_PRELOAD")
        .env_remove("STYXY_QUIET")
        .output()
        .expect("run the test again in the sandbox");
    let _ = stranger.kill();
    let _ = stranger.wait();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    print!("{stdout}");
    assert!(out.status.success(), "the sandboxed run failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "the sandboxed run ran nothing:\n{stdout}");
    // The moves' notices name the holder the fake allocator reported.
    assert!(stderr.contains("styxy: port "), "no notice of a move:\n{stderr}");
    assert!(stderr.contains("in use by python3 (pid 4242, api)"), "{stderr}");
}

fn socket_path(sandbox: &Path) -> PathBuf {
    sandbox.join("run/api.sock")
}

/// Each case calls the hooks and checks where the socket ended up, that
/// nothing was allocated, and how much stack it took.
fn check_the_hooks(sandbox: &Path, reserved: u16) {
    let mut deepest = 0;
    let mut check = |case: &str, fd: &OwnedFd, calls: Calls, port_ok: &dyn Fn(u16) -> bool| {
        let outcome = through_hooks(fd, calls);
        println!("{case:<44} {outcome:?}");
        assert_eq!(outcome.rc, 0, "{case}: {outcome:?}");
        assert!(port_ok(outcome.port), "{case}: {outcome:?}");
        assert_eq!(outcome.allocations, 0, "{case}: allocated on the hook path");
        deepest = deepest.max(outcome.stack);
    };

    let port = free_port();
    check("a free port", &tcp_socket(), Calls::BindAndListen(port), &|now| now == port);

    assert!(!socket_path(sandbox).exists());
    let (_held, busy) = hold();
    let in_reach = |now: u16| now > busy && now <= busy + 100;
    check("a busy port, no allocator", &tcp_socket(), Calls::BindAndListen(busy), &in_reach);

    check("a port reserved for another process", &tcp_socket(), Calls::BindAndListen(reserved), &|now| now != reserved);

    // SO_REUSEADDR lets two sockets bind one port; the second listen fails
    // and the listen hook moves that socket.
    let port = free_port();
    let (first, second) = (tcp_socket(), tcp_socket());
    for fd in [&first, &second] {
        let on: c_int = 1;
        let len = size_of::<c_int>() as libc::socklen_t;
        // SAFETY: on is a readable int.
        let rc = unsafe {
            libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, (&raw const on).cast(), len)
        };
        assert_eq!(rc, 0);
        check("a port two sockets share", fd, Calls::Bind(port), &|now| now == port);
    }
    check("the first one listens", &first, Calls::Listen, &|now| now == port);
    check("the second one's listen conflicts", &second, Calls::Listen, &|now| now != port);

    let allocator = FakeAllocator::start(&socket_path(sandbox));
    let (_held, busy) = hold();
    let granted = free_port();
    allocator.will_grant(granted, busy);
    check("a busy port, the allocator grants one", &tcp_socket(), Calls::BindAndListen(busy), &|now| now == granted);
    assert_eq!(allocator.requests(), ["POST /allocate HTTP/1.1"]);

    let (_held, busy) = hold();
    let (_held_too, taken) = hold();
    allocator.will_grant(taken, busy);
    let elsewhere = |now: u16| now != busy && now != taken;
    check("a busy port, the grant is taken meanwhile", &tcp_socket(), Calls::BindAndListen(busy), &elsewhere);
    let released = format!("DELETE /allocate/lock-{taken} HTTP/1.1");
    assert_eq!(allocator.requests(), ["POST /allocate HTTP/1.1", released.as_str()]);

    // connect: after the binds above the allocator is up, yet a connect
    // never asks it.
    let (canonical, actual) = std::env::var(SCOPED_ENV)
        .expect("scoped ports")
        .split_once(':')
        .map(|(c, a)| (c.parse().unwrap(), a.parse().unwrap()))
        .expect("CANONICAL:ACTUAL");
    let (_listening, unmoved) = hold();
    for (case, ip, port, reaches) in [
        ("connect to a loopback port no scope moved", Ipv4Addr::LOCALHOST, unmoved, unmoved),
        ("connect to the scope's moved server", Ipv4Addr::LOCALHOST, canonical, actual),
        ("connect to the wildcard address", Ipv4Addr::UNSPECIFIED, canonical, actual),
    ] {
        let fd = tcp_socket();
        let outcome = through_connect(&fd, ip, port);
        println!("{case:<44} {outcome:?}");
        assert_eq!(outcome.rc, 0, "{case}: {outcome:?}");
        assert_eq!(outcome.port, reaches, "{case}: {outcome:?}");
        assert_eq!(outcome.allocations, 0, "{case}: allocated on the connect path");
        deepest = deepest.max(outcome.stack);
    }
    assert_eq!(allocator.requests(), Vec::<String>::new(), "a connect asked the allocator");

    // A bad address pointer: the kernel's EFAULT, not a fault in the hook.
    let fd = tcp_socket();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let (rc, errno) = counted(|| {
        // SAFETY: bind's contract allows any pointer; the kernel checks it.
        let rc = unsafe { styxy_preload::bind(fd.as_raw_fd(), std::ptr::dangling(), ADDR_LEN) };
        (rc, std::io::Error::last_os_error().raw_os_error())
    });
    println!("{:<44} rc {rc}, errno {errno:?}", "a bad address pointer");
    assert_eq!((rc, errno), (-1, Some(libc::EFAULT)));
    assert_eq!(ALLOCATIONS.load(Ordering::Relaxed) - before, 0, "a bad pointer: allocated on the hook path");

    println!("deepest hook stack: {deepest} bytes (budget {STACK_BUDGET})");
    assert!(deepest <= STACK_BUDGET, "the hooks took {deepest} bytes of stack, more than {STACK_BUDGET}");
}
