//! Observer timings with many listening sockets open.
//!
//! `cargo bench -p styxy-observe --bench observe` opens STYXY_BENCH_LISTENERS
//! (default 1000) listeners in this process and prints percentiles of the raw
//! sock_diag dump, the enriched listing (warm caches and cold), and a
//! per-port lookup. With STYXY_BENCH_LISTENERS=0 it observes whatever the
//! machine holds (scripts/bench-observer keeps the sockets in a helper
//! process so `ss` sees the same set).

use std::net::TcpListener;
use std::time::{Duration, Instant};

use styxy_observe::{Observer, sockdiag::SockDiag};

const RUNS: usize = 200;
const COLD_RUNS: usize = 20;

fn main() {
    let wanted: usize = std::env::var("STYXY_BENCH_LISTENERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    raise_fd_limit(wanted as u64 + 256);
    let held: Vec<TcpListener> = (0..wanted).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind")).collect();

    let mut diag = SockDiag::open().expect("sock_diag socket");
    let sockets = diag.tcp_listeners().expect("dump");
    println!("listening sockets on the machine: {} ({} opened by the bench)", sockets.len(), held.len());
    // The per-port figures look up the highest listening port.
    let port = sockets.iter().map(|l| l.port).max().unwrap_or(1);

    report("sockdiag dump", "dump", RUNS, || {
        diag.tcp_listeners().expect("dump");
    });
    report("sockdiag dump (one port)", "port_dump", RUNS, || {
        diag.tcp_listeners_on(port).expect("dump");
    });

    let mut observer = Observer::new().expect("observer");
    let listed = observer.listeners().expect("listeners");
    let owned = listed.iter().filter(|l| l.pid.is_some()).count();
    println!("listed {} listeners, {owned} with a process", listed.len());
    report("Observer::listeners (warm)", "listing_warm", RUNS, || {
        observer.listeners().expect("listeners");
    });
    report("Observer::listeners (cold)", "listing_cold", COLD_RUNS, || {
        Observer::new().expect("observer").listeners().expect("listeners");
    });
    report("Observer::listeners_on (warm)", "port_lookup", RUNS, || {
        observer.listeners_on(port).expect("listeners_on");
    });
}

/// Runs `f` `runs` times and prints p50/p99 in microseconds, human-readable
/// and as `key=value` for scripts.
fn report(name: &str, key: &str, runs: usize, mut f: impl FnMut()) {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    let p50 = times[runs / 2].as_secs_f64() * 1e6;
    let p99 = times[(runs * 99 / 100).min(runs - 1)].as_secs_f64() * 1e6;
    println!("{name:<32} p50 {p50:>9.1} µs   p99 {p99:>9.1} µs   ({runs} runs)   {key}_p50_us={p50:.1}");
}

fn raise_fd_limit(needed: u64) {
    // SAFETY: rlimit is plain data and both calls only read/write it.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < needed {
            limit.rlim_cur = needed.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
