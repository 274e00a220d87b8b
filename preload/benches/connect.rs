//! What the connect hook costs (`cargo bench -p styxy-preload --bench connect`):
//! connect() to a loopback port with no scope entry, and one the scope table
//! rewrites, each against the plain call to the same destination, in
//! percentiles of the per-call difference. Nothing listens on the ports, so
//! every call ends in ECONNREFUSED after the same kernel path and the
//! difference is the hook. Goals: ≤ 100 ns (no entry) and ≤ 2 µs
//! (rewritten) over plain.
//!
//! The hooks are linked in-process (the crate's rlib); the library reads its
//! environment when loaded, so the bench runs itself again in a sandbox
//! whose port map moves the test user's CANONICAL to ACTUAL in its scope.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failed unwrap is a failure

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};

use libc::{c_int, sockaddr, socklen_t};
use styxy_testkit::percentiles::report;

const SAMPLES: usize = 20_000;
const CHILD_ENV: &str = "STYXY_CONNECT_BENCH";

type ConnectFn = unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int;

fn loopback(port: u16) -> libc::sockaddr_in {
    styxy_testkit::sockaddr_v4(std::net::Ipv4Addr::LOCALHOST, port)
}

/// A port nothing listens on (the kernel's pick, released).
fn unused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn tcp_socket() -> OwnedFd {
    // SAFETY: plain socket call, checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0);
    // SAFETY: a fresh descriptor.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn timed(call: impl FnOnce() -> c_int) -> Duration {
    let start = Instant::now();
    let rc = call();
    let took = start.elapsed();
    assert_eq!(rc, -1, "nothing should listen");
    took
}

/// Per-call `hooked - plain` for `SAMPLES` interleaved pairs, clamped at 0.
fn overhead(plain: ConnectFn, to_plain: u16, to_hooked: u16) -> (Vec<Duration>, Vec<Duration>) {
    let fd = tcp_socket();
    let (plain_addr, hooked_addr) = (loopback(to_plain), loopback(to_hooked));
    let len = size_of::<libc::sockaddr_in>() as socklen_t;
    let (mut plains, mut diffs) = (Vec::with_capacity(SAMPLES), Vec::with_capacity(SAMPLES));
    for _ in 0..SAMPLES {
        // SAFETY: complete sockaddr_in values; a refused TCP socket may connect again.
        let p = timed(|| unsafe { plain(fd.as_raw_fd(), (&raw const plain_addr).cast(), len) });
        // SAFETY: as above.
        let h = timed(|| unsafe { styxy_preload::connect(fd.as_raw_fd(), (&raw const hooked_addr).cast(), len) });
        plains.push(p);
        diffs.push(h.saturating_sub(p));
    }
    (plains, diffs)
}

fn measure(canonical: u16, actual: u16) {
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name: libc's connect,
    // which the hook itself calls.
    let next = unsafe { libc::dlsym(libc::RTLD_NEXT, c"connect".as_ptr()) };
    assert!(!next.is_null());
    // SAFETY: dlsym("connect") has this signature.
    let plain: ConnectFn = unsafe { std::mem::transmute::<*mut libc::c_void, ConnectFn>(next) };
    println!("== connect() to 127.0.0.1, refused (extra cost = hooked - plain, per call pair)");
    let unmoved = unused_port();
    let (mut plains, mut diffs) = overhead(plain, unmoved, unmoved);
    report("plain connect", &mut plains);
    let no_entry = report("  extra: no scope entry", &mut diffs);
    let (_, mut diffs) = overhead(plain, actual, canonical);
    let rewritten = report("  extra: rewritten to the scope's server", &mut diffs);
    println!("{:<50} {:>7} ns (goal ≤ 100 ns)", "no entry, extra p50", no_entry.as_nanos());
    println!("{:<50} {:>7} ns (goal ≤ 2000 ns)", "rewritten, extra p50", rewritten.as_nanos());
}

fn main() {
    if let Ok(ports) = std::env::var(CHILD_ENV) {
        let (canonical, actual) = ports.split_once(':').unwrap();
        return measure(canonical.parse().unwrap(), actual.parse().unwrap());
    }
    let sandbox = tempfile::tempdir().unwrap();
    let scope = sandbox.path().join("worktree-b");
    let (canonical, actual) = (unused_port(), unused_port());
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    styxy_testkit::write_port_map(&sandbox.path().join("ports.map"), &[], &[(uid, &scope, canonical, actual)]);
    let status = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, format!("{canonical}:{actual}"))
        .env("STYXY_SOCKET", sandbox.path().join("api.sock"))
        .env("STYXY_SCOPE", &scope)
        .env_remove("STYXY_PRELOAD")
        .status()
        .unwrap();
    assert!(status.success());
}
