//! Wall time of `styxy list` against a live allocator holding 100
//! allocations, as percentiles (goal: ≤ 5 ms). `styxy --version` is the
//! baseline: process start-up alone.
//!
//!     cargo bench -p styxy --bench list_latency
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

use std::process::Stdio;
use std::time::{Duration, Instant};

use styxy_testkit::Sandbox;
use styxy_testkit::percentiles::report;

const RUNS: usize = 300;

fn measure(sb: &Sandbox, args: &[&str]) -> Vec<Duration> {
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            let status = sb.styxy().args(args).stdout(Stdio::null()).status().expect("run styxy");
            let elapsed = start.elapsed();
            assert!(status.success(), "styxy {args:?} failed");
            elapsed
        })
        .collect();
    times.sort_unstable();
    times
}

fn main() {
    let sb = Sandbox::new();
    std::fs::write(sb.config_file(), "[service_types.bulk]\nrange = [21000, 21999]\n").unwrap();
    for i in 0..100 {
        sb.json(&["allocate", "-s", "bulk", "-n", &format!("svc{i}"), "--lease", "manual"]);
    }
    assert_eq!(sb.json(&["list"])["allocations"].as_array().map(Vec::len), Some(100));

    report("styxy --version", &mut measure(&sb, &["--version"]));
    report("styxy list", &mut measure(&sb, &["list"]));
    report("styxy --json list", &mut measure(&sb, &["--json", "list"]));
    report("styxy list -v", &mut measure(&sb, &["list", "-v"]));
}
