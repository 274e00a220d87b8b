//! One health pass over 1,000 allocations, as styxy-health runs it: read the
//! state without the lock, one sock_diag dump, decide. Goal: ≤ 20 ms.
//!
//!   cargo bench -p styxy-core --bench health
//!
//! The allocations are owned by live processes (50, then one each: the
//! worst case, one /proc read per allocation) and their ports are really
//! listened on (by this process, same uid), so every check goes the whole
//! way: /proc/PID/stat of the owner, then the listener lookup. Prints
//! percentiles; asserts nothing.
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::Instant;

use styxy_core::health::{self, Listening};
use styxy_core::host::RealHost;
use styxy_core::store::{self, Store};
use styxy_observe::process;
use styxy_proto::model::{Allocation, Change, LeaseKind, Owner, now_millis};
use styxy_testkit::percentiles::report;

const ALLOCATIONS: usize = 1000;
const PASSES: usize = 300;

fn main() {
    let listeners: Vec<TcpListener> =
        (0..ALLOCATIONS).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind (raise ulimit -n?)")).collect();
    for holders in [50, ALLOCATIONS] {
        scenario(&listeners, holders);
    }
}

fn scenario(listeners: &[TcpListener], holder_count: usize) {
    let mut holders: Vec<Child> =
        (0..holder_count).map(|_| Command::new("sleep").arg("600").spawn().expect("spawn sleep")).collect();
    let uid = styxy_proto::paths::uid();
    let an_hour_ago = now_millis() - 3_600_000;
    let changes: Vec<Change> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let pid = holders[i % holder_count].id();
            let port = l.local_addr().unwrap().port();
            let owner = Owner { uid, pid: Some(pid), start_time: process::start_time(pid) };
            Change::PutAllocation(Allocation {
                project_path: Some(format!("/home/dev/project-{}", i % 20)),
                allocated_at: an_hour_ago,
                ..Allocation::new(port, "bench", format!("server-{i}"), owner, LeaseKind::Process)
            })
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut store, _) = Store::open(dir.path()).unwrap();
        store.commit(&[Change::SetBootId(process::boot_id())]).unwrap();
        store.commit(&changes).unwrap();
        store.flush().unwrap();
    }

    let (mut passes, mut reads, mut dumps, mut decisions) = (vec![], vec![], vec![], vec![]);
    let mut findings = 0;
    for _ in 0..PASSES {
        let start = Instant::now();
        let state = store::read_state(dir.path()).unwrap();
        let read = Instant::now();
        let listening = Listening::dump().unwrap();
        let dumped = Instant::now();
        let report = health::check(&state, now_millis(), &RealHost, Some(&listening));
        let done = Instant::now();
        findings += report.findings.len();
        passes.push(done - start);
        reads.push(read - start);
        dumps.push(dumped - read);
        decisions.push(done - dumped);
    }
    println!("health pass over {ALLOCATIONS} allocations, {holder_count} owner processes, {PASSES} passes");
    report("whole pass (read + dump + decide)", &mut passes);
    report("  read_state (snapshot, no lock)", &mut reads);
    report("  sock_diag listener dump", &mut dumps);
    report("  decide (/proc/PID/stat per owner)", &mut decisions);
    println!("findings over all passes: {findings} (expected 0: every owner lives and listens)");
    for h in &mut holders {
        let _ = h.kill();
        let _ = h.wait();
    }
}
