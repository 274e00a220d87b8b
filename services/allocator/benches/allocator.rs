//! The allocator's figures (issue: allocate/release p50 ≤ 100 µs, p99 ≤ 1 ms;
//! 16 clients ≥ 20,000 allocations/s with zero duplicates; check p50 ≤ 200 µs;
//! cold start ≤ 20 ms; RSS ≤ 10 MB after 100,000 cycles; zero CPU while idle,
//! then exit). Prints percentiles and ratios; asserts nothing about time.
//!
//! `cargo bench -p styxy-allocator --bench allocator`
//! To compare with another server speaking the original HTTP API on TCP in
//! the same run: `STYXY_BENCH_COMPARE=127.0.0.1:9876 STYXY_BENCH_TOKEN=...`.
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

use std::collections::HashSet;
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use styxy_proto::client::{Connection, Method};
use styxy_testkit::percentiles::{KeptAwake, report};
use styxy_testkit::{Allocator, Sandbox, TEST_CONFIG, styxy_bin};

/// A user-mode allocator on a sandbox of its own.
struct Server {
    allocator: Allocator,
    sandbox: Sandbox,
}

impl Server {
    /// The server and its time from exec to the first answered request.
    fn start(idle_timeout: u64) -> (Server, Duration) {
        let sandbox = Sandbox::with_config(TEST_CONFIG);
        let allocator = Allocator::start_with(&sandbox, &["--user", "--idle-timeout", &idle_timeout.to_string()], &[]);
        let ready = allocator.ready_after();
        (Server { allocator, sandbox }, ready)
    }

    fn connect(&self) -> Connection<std::os::unix::net::UnixStream> {
        Connection::unix(&self.sandbox.socket(), Duration::from_secs(10), true).unwrap()
    }
}

fn ok_json(r: styxy_proto::client::Response) -> Value {
    assert!((200..300).contains(&r.status), "HTTP {}: {}", r.status, String::from_utf8_lossy(&r.body));
    serde_json::from_slice(&r.body).unwrap()
}

/// Allocate/release/check (and observe) timings over one kept-alive connection.
fn latencies<S: Read + Write>(conn: &mut Connection<S>, service_type: &str, cycles: usize) -> [Duration; 4] {
    let body = json!({"service_type": service_type, "service_name": "bench", "lease": "manual"});
    let (mut alloc, mut release, mut check, mut observe) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..cycles + cycles / 10 {
        let t = Instant::now();
        let r = ok_json(conn.send_json(Method::Post, "/allocate", &body).unwrap());
        let a = t.elapsed();
        let port = r["port"].as_u64().unwrap();
        let t = Instant::now();
        ok_json(conn.send(Method::Get, &format!("/check/{port}"), None).unwrap());
        let c = t.elapsed();
        let t = Instant::now();
        ok_json(conn.send(Method::Get, &format!("/observe/{port}"), None).unwrap());
        let o = t.elapsed();
        let t = Instant::now();
        ok_json(conn.send(Method::Delete, &format!("/allocate/{}", r["lock_id"].as_str().unwrap()), None).unwrap());
        let d = t.elapsed();
        if i >= cycles / 10 {
            alloc.push(a);
            check.push(c);
            observe.push(o);
            release.push(d);
        }
    }
    [
        report(&format!("  allocate ({service_type})"), &mut alloc),
        report("  release", &mut release),
        report("  check", &mut check),
        report("  observe one port", &mut observe),
    ]
}

/// 16 clients allocating at once; returns allocations/s and the number of
/// ports handed out twice.
fn concurrent(server: &Server, clients: usize, each: usize) -> (f64, usize) {
    let body = json!({"service_type": "bulk", "service_name": "load", "lease": "manual"});
    let barrier = std::sync::Barrier::new(clients + 1);
    let (elapsed, ports) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                let (barrier, body) = (&barrier, &body);
                let mut conn = server.connect();
                s.spawn(move || {
                    barrier.wait();
                    (0..each)
                        .map(|_| {
                            ok_json(conn.send_json(Method::Post, "/allocate", body).unwrap())["port"].as_u64().unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        barrier.wait();
        let t = Instant::now();
        let ports: Vec<u64> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        (t.elapsed(), ports)
    });
    let unique: HashSet<_> = ports.iter().collect();
    let mut conn = server.connect();
    ok_json(conn.send_json(Method::Post, "/cleanup", &json!({"force": true})).unwrap());
    (ports.len() as f64 / elapsed.as_secs_f64(), ports.len() - unique.len())
}

/// utime + stime (fields 14 and 15 of /proc/PID/stat).
fn cpu_ticks(pid: u32) -> u64 {
    let line = std::fs::read(format!("/proc/{pid}/stat")).unwrap_or_default();
    styxy_proto::procstat::StatFields::parse(&line)
        .map_or(0, |stat| stat.number(14).unwrap_or(0) + stat.number(15).unwrap_or(0))
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

fn rss_split(pid: u32) -> String {
    format!("heap and stacks {} KiB, mapped files {} KiB", status_kib(pid, "RssAnon:"), status_kib(pid, "RssFile:"))
}

fn cli_list_wall(server: &Server, runs: usize) -> Duration {
    let cli = styxy_bin();
    let mut conn = server.connect();
    let body = json!({"service_type": "bulk", "service_name": "listed", "lease": "manual"});
    for _ in 0..100 {
        ok_json(conn.send_json(Method::Post, "/allocate", &body).unwrap());
    }
    let mut samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let out = Command::new(cli).args(["list", "--socket"]).arg(server.sandbox.socket()).output().unwrap();
            assert!(out.status.success());
            t.elapsed()
        })
        .collect();
    let p50 = report("  styxy list (100 allocations), wall", &mut samples);
    ok_json(conn.send_json(Method::Post, "/cleanup", &json!({"force": true})).unwrap());
    p50
}

fn main() {
    let quick = std::env::var_os("STYXY_BENCH_QUICK").is_some();
    let cycles = if quick { 2_000 } else { 20_000 };
    println!("styxy allocator benchmark ({} cores)", std::thread::available_parallelism().map_or(1, |n| n.get()));

    let (server, _) = Server::start(0);
    println!("\nkept-alive Unix socket, {cycles} cycles:");
    let [alloc, release, check, observe] = latencies(&mut server.connect(), "bulk", cycles);
    println!("the same, one CPU kept awake (a SCHED_IDLE spinner; on a VM an idle CPU halts and waking it costs):");
    let awake = KeptAwake::start();
    let [awake_alloc, awake_release, awake_check, _] = latencies(&mut server.connect(), "bulk", cycles);
    drop(awake);

    println!("\n16 concurrent clients × 600 allocations (3 rounds):");
    let mut rates: Vec<(f64, usize)> = (0..3).map(|_| concurrent(&server, 16, 600)).collect();
    rates.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (rate, dups) in &rates {
        println!("  {rate:>10.0} allocations/s, {dups} duplicate ports");
    }
    let median_rate = rates[1].0;

    println!("\nCLI:");
    let list = cli_list_wall(&server, if quick { 20 } else { 100 });

    println!("\ncold start (exec to first answered request), 20 runs:");
    let mut cold_starts: Vec<Duration> = (0..20).map(|_| Server::start(0).1).collect();
    let cold = report("  cold start", &mut cold_starts);

    let after_burst = rss_kib(server.allocator.pid());
    drop(server);

    println!("\nmemory and idle (a fresh allocator):");
    let (server, _) = Server::start(0);
    let mut conn = server.connect();
    let body = json!({"service_type": "bulk", "service_name": "cycle", "lease": "manual"});
    let total = if quick { 10_000 } else { 100_000 };
    for _ in 0..total {
        let r = ok_json(conn.send_json(Method::Post, "/allocate", &body).unwrap());
        ok_json(conn.send(Method::Delete, &format!("/allocate/{}", r["lock_id"].as_str().unwrap()), None).unwrap());
    }
    drop(conn);
    let pid = server.allocator.pid();
    let rss = rss_kib(pid);
    println!("  RSS after {total} allocate/release cycles: {:.1} MiB ({})", rss as f64 / 1024.0, rss_split(pid));
    println!(
        "  (the first allocator, after the 16-client bursts of 9,600 live allocations: {:.1} MiB)",
        after_burst as f64 / 1024.0
    );
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(3));
    let idle_ticks = cpu_ticks(pid) - before;
    println!("  CPU while idle for 3 s: {idle_ticks} clock ticks");
    drop(server);

    let (mut idle_server, _) = Server::start(2);
    let t = Instant::now();
    let exited = idle_server.allocator.wait_exit(Duration::from_secs(10)).map(|_| t.elapsed());
    match exited {
        Some(e) => {
            println!(
                "  with --idle-timeout 2: exited after {e:.2?}, socket removed: {}",
                !idle_server.sandbox.socket().exists()
            )
        }
        None => println!("  with --idle-timeout 2: STILL RUNNING after 10 s"),
    }

    println!("\nsummary (goal in brackets):");
    println!(
        "  allocate p50 {alloc:.1?} [≤ 100 µs], release p50 {release:.1?} [≤ 100 µs], check p50 {check:.1?} [≤ 200 µs]"
    );
    println!(
        "  with a CPU kept awake: allocate p50 {awake_alloc:.1?}, release p50 {awake_release:.1?}, check p50 {awake_check:.1?}"
    );
    println!("  GET /observe/{{port}} p50 {observe:.1?} [≤ 300 µs]");
    println!(
        "  16 clients {median_rate:.0} allocations/s [≥ 20,000], duplicates {}",
        rates.iter().map(|r| r.1).sum::<usize>()
    );
    println!("  styxy list {list:.2?} [≤ 5 ms]");
    println!(
        "  cold start {cold:.2?} [≤ 20 ms], RSS {:.1} MiB [≤ 10 MB], idle CPU {idle_ticks} ticks [0]",
        rss as f64 / 1024.0
    );

    if let Ok(addr) = std::env::var("STYXY_BENCH_COMPARE") {
        let token = std::env::var("STYXY_BENCH_TOKEN").ok();
        println!("\nother server at {addr} (original HTTP API over TCP), {cycles} cycles:");
        let mut other = Connection::tcp(&addr, Duration::from_secs(10), token).unwrap();
        let [oa, orl, oc, _] = latencies(&mut other, "dev", cycles.min(2_000));
        let ratio = |theirs: Duration, ours: Duration| theirs.as_secs_f64() / ours.as_secs_f64();
        println!(
            "  ratios (theirs / ours, p50): allocate {:.1}×, release {:.1}×, check {:.1}×",
            ratio(oa, alloc),
            ratio(orl, release),
            ratio(oc, check)
        );
    }
}
