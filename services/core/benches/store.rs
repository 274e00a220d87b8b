//! State store figures: `cargo bench -p styxy-core --bench store`.
//! Prints percentiles; asserts nothing (timing goals are read, not enforced).

use std::path::Path;
use std::time::Instant;
use styxy_core::store::{CompactionPolicy, Store};
use styxy_proto::model::Change;
use styxy_testkit::percentiles::report;
use styxy_testkit::store::{lock_id, put};

const CYCLES: usize = 100_000;
/// Allocations held throughout, so snapshots have a realistic size.
const HELD: u16 = 200;
const WAL_RECORDS: usize = 10_000;

fn remove(port: u16) -> Change {
    Change::RemoveAllocation { port, lock_id: lock_id(port) }
}

fn open_with_held(dir: &Path) -> Store {
    let (mut store, _) = Store::open(dir).expect("open");
    for port in 1..=HELD {
        store.commit(&[put(port)]).expect("commit");
    }
    store
}

/// Put + Remove cycles on one churned port, default compaction policy
/// (compactions included in the samples).
fn commit_latency(dir: &Path) {
    let mut store = open_with_held(dir);
    let port = 40_000;
    let mut puts = Vec::with_capacity(CYCLES);
    let mut removes = Vec::with_capacity(CYCLES);
    let mut cycles = Vec::with_capacity(CYCLES);
    let (put_change, remove_change) = (put(port), remove(port));
    for _ in 0..CYCLES {
        let start = Instant::now();
        store.commit(std::slice::from_ref(&put_change)).expect("commit");
        let mid = Instant::now();
        store.commit(std::slice::from_ref(&remove_change)).expect("commit");
        let end = Instant::now();
        puts.push(mid - start);
        removes.push(end - mid);
        cycles.push(end - start);
    }
    let mut commits = [puts.as_slice(), removes.as_slice()].concat();
    report("commit (put or remove)", &mut commits);
    report("  commit PutAllocation", &mut puts);
    report("  commit RemoveAllocation", &mut removes);
    report("  cycle put+remove", &mut cycles);
}

/// `flush` (snapshot + backup + rename + fsyncs + log truncation) after a
/// few commits, with HELD allocations in the state.
fn compaction_time(dir: &Path) {
    let mut store = open_with_held(dir);
    let mut samples = Vec::new();
    for round in 0..50u16 {
        for port in 0..20 {
            store.commit(&[put(30_000 + round * 20 + port)]).expect("commit");
        }
        let start = Instant::now();
        store.flush().expect("flush");
        samples.push(start.elapsed());
    }
    let size = std::fs::metadata(dir.join("state.json")).map_or(0, |m| m.len());
    report(&format!("compaction ({} allocations, {} KiB)", store.state().allocations.len(), size / 1024), &mut samples);
}

/// `Store::open` replaying a log of WAL_RECORDS put/remove records.
fn open_time(dir: &Path) {
    let mut store = open_with_held(dir);
    store.flush().expect("flush");
    store.set_compaction_policy(CompactionPolicy { max_records: usize::MAX, max_bytes: u64::MAX });
    for i in 0..WAL_RECORDS / 2 {
        let port = 50_000 + (i % 100) as u16;
        store.commit(&[put(port)]).expect("commit");
        store.commit(&[remove(port)]).expect("commit");
    }
    drop(store);
    let size = std::fs::metadata(dir.join("state.wal")).map_or(0, |m| m.len());
    let mut samples = Vec::new();
    for _ in 0..30 {
        let start = Instant::now();
        let (store, _) = Store::open(dir).expect("open");
        samples.push(start.elapsed());
        assert_eq!(store.generation(), u64::from(HELD) + WAL_RECORDS as u64);
    }
    report(&format!("open with {WAL_RECORDS}-record log ({} KiB)", size / 1024), &mut samples);
}

fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("styxy-bench-{name}-")).tempdir().expect("tempdir")
}

fn main() {
    commit_latency(scratch("commit").path());
    compaction_time(scratch("compaction").path());
    open_time(scratch("open").path());
}
