//! What `styxy run`'s seccomp supervisor costs a program, in percentiles
//! (`cargo bench -p styxy --bench supervisor`), each beside the same run
//! without it:
//! - a trapped call: bind+listen on a free port (two notifications), and a
//!   move (bind+listen on a busy port, allocator warm);
//! - a call the filter lets through: raw getppid(), per call;
//! - a syscall-heavy workload that is not networking: a file walk of /usr,
//!   supervised and preloaded;
//! - spawn: `styxy run -- true` supervised and preloaded.
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

use std::os::fd::OwnedFd;
use std::process::Command;
use std::time::{Duration, Instant};
use styxy_testkit::percentiles::report;
use styxy_testkit::*;

const SAMPLES: usize = 400;

/// Extra cost at p50, in microseconds.
fn extra(with: Duration, without: Duration) -> f64 {
    (with.as_secs_f64() - without.as_secs_f64()) * 1e6
}

/// `program ARGS`, supervised (`styxy run --intercept seccomp`) or not.
fn command(sandbox: &Sandbox, supervised: bool, program: &std::path::Path, args: &[String]) -> Command {
    let mut cmd = if supervised {
        let mut run = sandbox.styxy();
        run.args(["run", "--intercept", "seccomp", "--"]).arg(program);
        run
    } else {
        Command::new(program)
    };
    cmd.args(args).env("STYXY_QUIET", "1");
    cmd
}

/// Runs a timing program and returns the durations it prints (ns a line).
fn timings(mut cmd: Command) -> Vec<Duration> {
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| Duration::from_nanos(l.parse().expect("ns"))).collect()
}

fn ports_args(repeat: usize, ports: &[u16]) -> Vec<String> {
    let mut v = vec!["-r".to_string(), repeat.to_string(), "127.0.0.1".to_string()];
    v.extend(ports.iter().map(u16::to_string));
    v
}

fn trapped_call_cost(sandbox: &Sandbox) {
    println!("== trapped calls: bind+listen (two notifications)");
    let bench = c_program("bench");
    let port = free_port();
    let a = ports_args(SAMPLES, &[port]);
    let without = report("free port, not supervised", &mut timings(command(sandbox, false, &bench, &a)));
    let with = report("free port, supervised", &mut timings(command(sandbox, true, &bench, &a)));
    println!("{:<50} {:+.1}µs", "  extra (p50)", extra(with, without));

    let busy: Vec<(OwnedFd, u16)> = (0..SAMPLES / 4).map(|_| busy_port()).collect();
    let ports: Vec<u16> = busy.iter().map(|b| b.1).collect();
    report("a move, supervised, allocator warm", &mut timings(command(sandbox, true, &bench, &ports_args(1, &ports))));
}

fn untrapped_call_cost(sandbox: &Sandbox) {
    println!("== a call the filter lets through: getppid(), mean per call over batches of 10,000");
    let bench = c_program("bench");
    let a: Vec<String> = ["-s", "10000", "-r", &SAMPLES.to_string()].map(String::from).to_vec();
    let without = report("not supervised", &mut timings(command(sandbox, false, &bench, &a)));
    let with = report("supervised", &mut timings(command(sandbox, true, &bench, &a)));
    println!("{:<50} {:+.0}ns", "  extra (p50)", extra(with, without) * 1000.0);
}

/// Interleaved runs of `cmd(supervised)`, wall time of each.
fn interleaved(rounds: usize, mut cmd: impl FnMut(bool) -> Command) -> (Vec<Duration>, Vec<Duration>) {
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for (supervised, into) in [(false, &mut without), (true, &mut with)] {
            let mut c = cmd(supervised);
            let t = Instant::now();
            let status = c.stdout(std::process::Stdio::null()).status().expect("run");
            assert!(status.success(), "{c:?}");
            into.push(t.elapsed());
        }
    }
    (without, with)
}

/// `styxy run --intercept preload|seccomp -- ARGV` (allocator warm): the
/// same reservation either way, so the difference is the supervisor's.
fn styxy_run(sandbox: &Sandbox, supervised: bool, argv: &[&str]) -> Command {
    let mut run = sandbox.styxy();
    let intercept = if supervised { "seccomp" } else { "preload" };
    run.args(["run", "--intercept", intercept, "--"]).args(argv).env("STYXY_QUIET", "1");
    run
}

fn workload_cost(sandbox: &Sandbox) {
    println!("== a syscall-heavy workload that is not networking: find /usr, under styxy run");
    let (mut preloaded, mut supervised) =
        interleaved(20, |supervised| styxy_run(sandbox, supervised, &["find", "/usr", "-xdev"]));
    let preloaded = report("find /usr, preloaded", &mut preloaded);
    let supervised = report("find /usr, supervised", &mut supervised);
    println!("{:<50} {:.3}", "  ratio (p50)", supervised.as_secs_f64() / preloaded.as_secs_f64());
}

fn spawn_cost(sandbox: &Sandbox) {
    println!("== spawn: styxy run -- true (allocator warm), supervised vs preloaded");
    let (mut preloaded, mut supervised) =
        interleaved(SAMPLES / 4, |supervised| styxy_run(sandbox, supervised, &["/bin/true"]));
    let preloaded = report("styxy run --intercept preload", &mut preloaded);
    let supervised = report("styxy run --intercept seccomp", &mut supervised);
    println!("{:<50} {:+.1}µs", "  extra (p50)", extra(supervised, preloaded));
}

fn main() {
    let sandbox = Sandbox::new();
    let _allocator = Allocator::start(&sandbox);
    trapped_call_cost(&sandbox);
    untrapped_call_cost(&sandbox);
    workload_cost(&sandbox);
    spawn_cost(&sandbox);
}
