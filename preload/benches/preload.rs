//! What the preload costs a program, in percentiles (`cargo bench -p styxy-preload`):
//! - bind+listen on a free port, with and without the library: the same
//!   port again and again, and the first bind of each port (which asks the
//!   kernel once whether the other address family holds it); plus how many
//!   times the allocator was contacted (should be none);
//! - a move (bind+listen on a busy port) with the allocator warm, absent
//!   and hung;
//! - the start-up of a program that binds nothing, with styxy absent.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::process::Command;
use std::time::{Duration, Instant};
use styxy_testkit::percentiles::report;
use styxy_testkit::*;

const SAMPLES: usize = 400;

/// Extra cost at p50, in microseconds.
fn extra(with: Duration, without: Duration) -> f64 {
    (with.as_secs_f64() - without.as_secs_f64()) * 1e6
}

/// Runs the bench program and returns its per-call timings.
fn timings(mut cmd: Command) -> Vec<Duration> {
    let out = cmd.output().expect("run bench");
    assert!(out.status.success(), "bench failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| Duration::from_nanos(l.parse().expect("ns"))).collect()
}

fn bench(sandbox: &Sandbox, preload: bool, args: &[String]) -> Command {
    let mut cmd = sandbox.command(c_program("bench"));
    if !preload {
        cmd.env_remove("LD_PRELOAD");
    }
    cmd.env("STYXY_QUIET", "1").args(args);
    cmd
}

fn free_ports(n: usize) -> Vec<u16> {
    // Bound together so they differ, released so they are free.
    let held: Vec<OwnedFd> = (0..n).map(|_| hold("0.0.0.0", 0, Hold::default())).collect();
    held.iter().map(local_port).collect()
}

fn busy_ports(n: usize) -> Vec<(OwnedFd, u16)> {
    (0..n).map(|_| busy_port()).collect()
}

fn args(host: &str, repeat: usize, ports: &[u16]) -> Vec<String> {
    let mut v = vec!["-r".to_string(), repeat.to_string(), host.to_string()];
    v.extend(ports.iter().map(u16::to_string));
    v
}

fn count_connections(listener: &UnixListener) -> usize {
    std::iter::from_fn(|| listener.accept().ok()).count()
}

fn free_port_cost(sandbox: &Sandbox, watch: &UnixListener) {
    println!("== bind+listen on a free port (extra cost = with - without)");
    for host in ["127.0.0.1", "::"] {
        let port = free_ports(1);
        let a = args(host, SAMPLES, &port);
        let without = report(&format!("{host} same port, without preload"), &mut timings(bench(sandbox, false, &a)));
        let with = report(&format!("{host} same port, with preload"), &mut timings(bench(sandbox, true, &a)));
        println!("{:<50} {:+.1}µs", "  extra (p50)", extra(with, without));

        let ports = free_ports(SAMPLES / 4);
        let without = report(
            &format!("{host} first bind of each port, without preload"),
            &mut timings(bench(sandbox, false, &args(host, 1, &ports))),
        );
        let ports = free_ports(SAMPLES / 4);
        let with = report(
            &format!("{host} first bind of each port, with preload"),
            &mut timings(bench(sandbox, true, &args(host, 1, &ports))),
        );
        println!("{:<50} {:+.1}µs", "  extra (p50)", extra(with, without));
    }
    println!("{:<50} {}", "allocator connections during the above", count_connections(watch));
}

/// Busy ports that are also styxy allocations of this process (allocated,
/// then listened on), so the allocator names their holder from its state
/// instead of asking the kernel. A type whose range is rarely in use.
fn allocated_busy_ports(sandbox: &Sandbox, n: usize) -> Vec<(OwnedFd, u16)> {
    (0..n)
        .map(|_| {
            let (_, grant) =
                sandbox.post("/allocate", &serde_json::json!({"service_type": "hub", "service_name": "bench"}));
            let port = grant["port"].as_u64().unwrap_or_else(|| panic!("{grant}")) as u16;
            (hold("127.0.0.1", port, Hold { reuseaddr: true, ..Hold::default() }), port)
        })
        .collect()
}

fn move_cost(sandbox: &Sandbox) {
    println!("== a move: bind+listen on a busy port");
    let busy = busy_ports(SAMPLES / 4);
    let ports: Vec<u16> = busy.iter().map(|b| b.1).collect();
    {
        let _allocator = Allocator::start(sandbox);
        let mut t = timings(bench(sandbox, true, &args("0.0.0.0", 1, &ports)));
        report("allocator warm, holder found through the kernel", &mut t);
        let allocated = allocated_busy_ports(sandbox, SAMPLES / 16);
        let ports: Vec<u16> = allocated.iter().map(|b| b.1).collect();
        let mut t = timings(bench(sandbox, true, &args("0.0.0.0", 1, &ports)));
        report("allocator warm, holder is a styxy allocation", &mut t);
    }
    // A killed allocator leaves its socket file behind: absent all the same.
    let _ = std::fs::remove_file(sandbox.socket());
    report("allocator absent (local choice)", &mut timings(bench(sandbox, true, &args("0.0.0.0", 1, &ports))));

    // Accepts connections, never answers: a SIGSTOPped allocator. The first
    // move of a process waits out the deadline, later ones decide locally.
    let _hung = UnixListener::bind(sandbox.socket()).expect("hung socket");
    let mut first = Vec::new();
    let mut later = Vec::new();
    for chunk in ports.chunks(5).take(10) {
        let t = timings(bench(sandbox, true, &args("0.0.0.0", 1, chunk)));
        first.push(t[0]);
        later.extend_from_slice(&t[1..]);
    }
    report("allocator hung: first move of a process", &mut first);
    report("allocator hung: later moves of that process", &mut later);
    std::fs::remove_file(sandbox.socket()).expect("remove hung socket");
}

fn startup_cost(sandbox: &Sandbox) {
    println!("== start-up of a program that binds nothing, styxy absent");
    let time = |preload: bool| {
        let mut cmd = bench(sandbox, preload, &[]);
        let t = Instant::now();
        assert!(cmd.status().expect("run").success());
        t.elapsed()
    };
    // Interleaved, so load from elsewhere on the machine hits both alike.
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for _ in 0..SAMPLES / 2 {
        without.push(time(false));
        with.push(time(true));
    }
    let without = report("exec+exit, without preload", &mut without);
    let with = report("exec+exit, with preload", &mut with);
    println!("{:<50} {:+.1}µs", "  extra (p50)", extra(with, without));
}

fn main() {
    let sandbox = Sandbox::new();
    println!("library: {}", preload_lib().display());
    let watch = UnixListener::bind(sandbox.socket()).expect("watch socket");
    watch.set_nonblocking(true).expect("nonblocking");
    free_port_cost(&sandbox, &watch);
    drop(watch);
    std::fs::remove_file(sandbox.socket()).expect("remove watch socket");
    move_cost(&sandbox);
    startup_cost(&sandbox);
}
