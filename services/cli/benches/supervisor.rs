//! What `styxy run`'s seccomp supervisor costs a program, in percentiles
//! (`cargo bench -p styxy --bench supervisor`), each beside the same run
//! without it:
//! - a trapped call, under `styxy run` with the supervisor against the same
//!   run with the preload (the same policy, so the difference is the
//!   trap), and the plain call: bind+listen on the run's own free port (two
//!   notifications), a connect that goes nowhere a scope moved (one), a
//!   connect a scope redirects, and a move (bind+listen on a busy port);
//! - a call the filter lets through: raw getppid(), per call;
//! - a syscall-heavy workload that is not networking: a file walk of /usr,
//!   supervised and preloaded;
//! - spawn: `styxy run -- true` supervised and preloaded.
//!
//! Two processes handing a call back and forth pay for waking each other;
//! the machine's own price for that (a pipe round trip between two
//! processes) is printed first, as the floor of any trapped call.
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

use std::io::{Read, Write};
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

/// How a program runs: alone, or under `styxy run --intercept <how>`.
#[derive(Clone, Copy)]
enum Under {
    Nothing,
    Preload,
    Supervisor,
}

impl Under {
    fn label(self) -> &'static str {
        match self {
            Under::Nothing => "plain",
            Under::Preload => "styxy run --intercept preload",
            Under::Supervisor => "styxy run --intercept seccomp",
        }
    }
}

/// `program ARGS` run `under`; `run` adds options to `styxy run`.
fn command(sandbox: &Sandbox, under: Under, run: &[&str], program: &std::path::Path, args: &[String]) -> Command {
    let intercept = match under {
        Under::Nothing => {
            let mut cmd = Command::new(program);
            cmd.args(args);
            return cmd;
        }
        Under::Preload => "preload",
        Under::Supervisor => "seccomp",
    };
    let mut cmd = sandbox.styxy();
    cmd.args(["run", "--intercept", intercept]).args(run).arg("--").arg(program).args(args).env("STYXY_QUIET", "1");
    cmd
}

/// Runs a timing program and returns the durations it prints (ns a line).
fn timings(mut cmd: Command) -> Vec<Duration> {
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| Duration::from_nanos(l.parse().expect("ns"))).collect()
}

fn ports_args(flags: &[&str], repeat: usize, ports: &[u16]) -> Vec<String> {
    let mut v: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    v.extend(["-r".to_string(), repeat.to_string(), "127.0.0.1".to_string()]);
    v.extend(ports.iter().map(u16::to_string));
    v
}

/// A pipe round trip between two processes, the floor of a trapped call
/// (the program waits while the supervisor answers).
fn wake_up_floor() {
    println!("== this machine: a pipe round trip between two processes");
    let mut child = Command::new("cat")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn cat");
    let (mut to, mut from) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
    let mut byte = [0u8; 1];
    let mut trips: Vec<Duration> = (0..SAMPLES * 5)
        .map(|_| {
            let start = Instant::now();
            to.write_all(b"x").unwrap();
            from.read_exact(&mut byte).unwrap();
            start.elapsed()
        })
        .collect();
    report("pipe round trip", &mut trips);
    drop(to);
    child.wait().unwrap();
}

/// Each `under` in turn; prints the supervisor's extra over the preload
/// and over the plain call.
fn compare(label: &str, mut run: impl FnMut(Under) -> Vec<Duration>) {
    let [plain, preloaded, supervised] = [Under::Nothing, Under::Preload, Under::Supervisor]
        .map(|under| report(&format!("{label}, {}", under.label()), &mut run(under)));
    println!(
        "{:<50} {:+.1}µs over the preload, {:+.1}µs over plain",
        "  supervisor's extra (p50)",
        extra(supervised, preloaded),
        extra(supervised, plain)
    );
}

fn trapped_call_cost(sandbox: &Sandbox) {
    println!("== trapped calls");
    let bench = c_program("bench");
    let port = free_port().to_string();
    let own_port = ["-p", port.as_str()];
    let listen = ports_args(&[], SAMPLES, &[port.parse().unwrap()]);
    compare("bind+listen, the run's port", |under| timings(command(sandbox, under, &own_port, &bench, &listen)));

    let refused = ports_args(&["-c"], SAMPLES, &[free_port()]);
    compare("connect, no scope moved it", |under| timings(command(sandbox, under, &[], &bench, &refused)));

    // A server of scope S asked for a busy port and was moved: a client of
    // S connecting to the asked-for port reaches it (plain: to its port).
    let (_busy, asked) = busy_port();
    let scope = tempfile::tempdir().unwrap();
    let mut server = sandbox.styxy();
    server
        .args(["run", "--intercept", "preload", "--", "python3", "-c"])
        .arg(format!(
            "import socket; s = socket.socket(); s.bind(('127.0.0.1', {asked})); s.listen(1024); print(s.getsockname()[1], flush=True)\n\
             while True: s.accept()[0].close()"
        ))
        .env("STYXY_SCOPE", scope.path())
        .env("STYXY_QUIET", "1")
        .stdout(std::process::Stdio::piped());
    let mut server = server.spawn().expect("start the moved server");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(server.stdout.as_mut().unwrap()), &mut line).unwrap();
    let actual: u16 = line.trim().parse().expect("the server's port");
    assert_ne!(actual, asked, "the server was moved");
    compare("connect, redirected by its scope", |under| {
        let to = if matches!(under, Under::Nothing) { actual } else { asked };
        let mut cmd = command(sandbox, under, &[], &bench, &ports_args(&["-c"], SAMPLES, &[to]));
        cmd.env("STYXY_SCOPE", scope.path());
        timings(cmd)
    });
    let _ = server.kill();
    let _ = server.wait();

    let busy: Vec<(OwnedFd, u16)> = (0..SAMPLES / 4).map(|_| busy_port()).collect();
    let ports: Vec<u16> = busy.iter().map(|b| b.1).collect();
    let moves = ports_args(&[], 1, &ports);
    report(
        "a move, supervised, allocator warm",
        &mut timings(command(sandbox, Under::Supervisor, &[], &bench, &moves)),
    );
}

fn untrapped_call_cost(sandbox: &Sandbox) {
    println!("== a call the filter lets through: getppid(), mean per call over batches of 10,000");
    let bench = c_program("bench");
    let a: Vec<String> = ["-s", "10000", "-r", &SAMPLES.to_string()].map(String::from).to_vec();
    let without = report("not supervised", &mut timings(command(sandbox, Under::Nothing, &[], &bench, &a)));
    let with = report("supervised", &mut timings(command(sandbox, Under::Supervisor, &[], &bench, &a)));
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
    let under = if supervised { Under::Supervisor } else { Under::Preload };
    let args: Vec<String> = argv[1..].iter().map(|a| a.to_string()).collect();
    command(sandbox, under, &[], std::path::Path::new(argv[0]), &args)
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
    wake_up_floor();
    trapped_call_cost(&sandbox);
    untrapped_call_cost(&sandbox);
    workload_cost(&sandbox);
    spawn_cost(&sandbox);
}
