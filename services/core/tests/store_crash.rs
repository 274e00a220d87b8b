//! kill -9 at a random moment never loses an acknowledged commit.
//!
//! The test re-runs its own binary as the writer: with `CHILD_DIR` set, the
//! test function commits in a loop and prints every acknowledged commit.
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use styxy_core::store::{CompactionPolicy, Store};
use styxy_testkit::store::*;

const CHILD_DIR: &str = "STYXY_STORE_CRASH_CHILD_DIR";
const TEST_NAME: &str = "acknowledged_commits_survive_sigkill";
const ROUNDS: usize = 8;
/// Low, so kills also land inside compactions.
const COMPACT_EVERY: usize = 512;

/// Commits one allocation per generation (port 1024 + generation) until
/// killed, printing `ACK <generation> <port> <lock id>` after each commit.
fn run_writer(dir: &Path) -> ! {
    let (mut store, _) = Store::open(dir).expect("child open");
    store.set_compaction_policy(CompactionPolicy { max_records: COMPACT_EVERY, max_bytes: u64::MAX });
    loop {
        let port = 1024 + store.generation() + 1;
        if port > u64::from(u16::MAX) {
            std::thread::sleep(Duration::from_secs(3600));
            continue;
        }
        let port = port as u16;
        let generation = store.commit(&[put(port)]).expect("child commit");
        println!("ACK {generation} {port} {}", lock_id(port));
    }
}

/// xorshift, seeded from the clock: a different kill moment every round.
fn random_delays() -> impl Iterator<Item = Duration> {
    let mut x = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    std::iter::repeat_with(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        Duration::from_micros(1_000 + x % 250_000)
    })
}

#[test]
fn acknowledged_commits_survive_sigkill() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        run_writer(Path::new(&dir));
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut total_acked = 0;
    for (round, delay) in random_delays().take(ROUNDS).enumerate() {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        // Wait for the first acknowledgement so every round commits something.
        let mut acked = Vec::new();
        let mut first = Vec::new();
        while !first.starts_with(b"ACK ") {
            first.clear();
            assert!(out.read_until(b'\n', &mut first).unwrap() > 0, "writer exited early");
        }
        acked.push(first);
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        loop {
            let mut line = Vec::new();
            if out.read_until(b'\n', &mut line).unwrap() == 0 {
                break;
            }
            acked.push(line);
        }

        let (store, report) = Store::open(tmp.path()).unwrap();
        assert!(
            report.moved_aside.is_empty() && report.restored_from.is_none() && !report.started_empty,
            "round {round}: kill -9 caused a repair: {report:?}"
        );
        let state = store.state();
        let mut last_generation = 0;
        for line in acked.iter().filter(|l| l.starts_with(b"ACK ") && l.ends_with(b"\n")) {
            let text = String::from_utf8_lossy(line);
            let fields: Vec<&str> = text.split_whitespace().collect();
            let generation: u64 = fields[1].parse().unwrap();
            let port: u16 = fields[2].parse().unwrap();
            let holder = state.allocations.get(&port).map(|a| a.lock_id.as_str());
            assert_eq!(holder, Some(fields[3]), "round {round}: acknowledged generation {generation} lost");
            last_generation = generation;
            total_acked += 1;
        }
        assert!(store.generation() >= last_generation);
        // Nothing beyond what was committed: one port per generation.
        assert_eq!(state.allocations.len() as u64, store.generation());
    }
    assert!(total_acked >= ROUNDS);
}
