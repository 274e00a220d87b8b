//! The store in normal operation: round trips, the writer lock, compaction,
//! lock-free readers, the schema-1 fixture.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use styxy_core::store::{self, BACKUPS_KEPT, CompactionPolicy, OpenReport, Store, StoreError};
use styxy_proto::model::{AutoType, Change, Instance, LeaseKind};
use styxy_testkit::store::*;

fn small_policy(max_records: usize) -> CompactionPolicy {
    CompactionPolicy { max_records, max_bytes: u64::MAX }
}

fn mixed_changes() -> Vec<Vec<Change>> {
    let instance = Instance {
        instance_id: "sess-1".into(),
        uid: 1000,
        working_directory: Some("/w".into()),
        project_root: None,
        registered_at: 10,
        last_heartbeat: 20,
        ttl_secs: 300,
        metadata: serde_json::json!({"agent": "claude", "note": "line\nbreak"}),
    };
    let auto = AutoType {
        service_type: "temporal".into(),
        range: [41000, 41009],
        chunk_size: 10,
        placement: "after".into(),
        rule: None,
        created_at: 30,
        created_by_uid: 1000,
    };
    vec![
        vec![Change::PutAllocation(allocation(3000, "a", LeaseKind::Process))],
        vec![
            Change::PutAllocation(allocation(3001, "b", LeaseKind::Session)),
            Change::PutAllocation(allocation(3002, "c", LeaseKind::Manual)),
        ],
        vec![Change::PutInstance(instance), Change::PutAutoType(auto)],
        vec![Change::RemoveAllocation { port: 3000, lock_id: "a".into() }, audit("release")],
        vec![Change::SetHealthFailures { port: 3001, lock_id: "b".into(), failures: 2 }],
        vec![Change::SetBootId("other-boot".into())],
    ]
}

#[test]
fn a_fresh_directory_opens_empty_and_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested/state");
    let (store, report) = Store::open(&dir).unwrap();
    assert_eq!(report, OpenReport::default());
    assert_eq!(store.generation(), 0);
    assert!(store.state().allocations.is_empty());
    assert_eq!(store.state().boot_id, styxy_observe::process::boot_id());
    assert_eq!(store.dir(), dir);
    assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(fs::metadata(wal(&dir)).unwrap().permissions().mode() & 0o077, 0);
}

#[test]
fn commits_survive_reopen_with_monotonic_generations() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(tmp.path()).unwrap();
    let mut generations = Vec::new();
    for changes in mixed_changes() {
        generations.push(store.commit(&changes).unwrap());
    }
    assert_eq!(generations, (1..=mixed_changes().len() as u64).collect::<Vec<_>>());
    let written = store.state().clone();
    assert_eq!(ports(&written), vec![3001, 3002]);
    assert_eq!(written.allocations[&3001].health_failures, 2);
    assert_eq!(written.boot_id, "other-boot");
    assert_eq!(written.audit.len(), 1);
    drop(store);

    assert_eq!(store::read_state(tmp.path()).unwrap(), written);
    let (mut reopened, report) = Store::open(tmp.path()).unwrap();
    assert_eq!(report, OpenReport::default());
    assert_eq!(reopened.state(), &written);
    assert_eq!(reopened.commit(&[put(4000)]).unwrap(), written.generation + 1);
}

#[test]
fn a_second_writer_is_refused_while_the_first_lives() {
    let tmp = tempfile::tempdir().unwrap();
    let (first, _) = Store::open(tmp.path()).unwrap();
    match Store::open(tmp.path()) {
        Err(StoreError::Locked { path }) => assert_eq!(path, tmp.path().join("state.lock")),
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(matches!(Store::open_wait(tmp.path(), Duration::from_millis(50)), Err(StoreError::Locked { .. })));
    let holder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        drop(first);
    });
    let (second, _) = Store::open_wait(tmp.path(), Duration::from_secs(10)).unwrap();
    holder.join().unwrap();
    assert_eq!(second.generation(), 0);
}

#[test]
fn compaction_keeps_the_log_short_and_five_backups() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(tmp.path()).unwrap();
    store.set_compaction_policy(small_policy(10));
    for port in 1..=103u16 {
        store.commit(&[put(port), audit("allocate")]).unwrap();
    }
    let written = store.state().clone();
    assert_eq!(wal_lines(tmp.path()), 3);

    let backups = files_starting(&tmp.path().join("backups"), "state.json.");
    let mut generations: Vec<u64> =
        backups.iter().map(|p| p.extension().unwrap().to_str().unwrap().parse().unwrap()).collect();
    generations.sort();
    assert_eq!(backups.len(), BACKUPS_KEPT);
    assert_eq!(generations, vec![50, 60, 70, 80, 90]);
    let newest: styxy_proto::model::State =
        serde_json::from_slice(&fs::read(tmp.path().join("backups/state.json.90")).unwrap()).unwrap();
    assert_eq!(newest.generation, 90);
    assert_eq!(ports(&newest), (1..=90).collect::<Vec<_>>());

    drop(store);
    let (reopened, report) = Store::open(tmp.path()).unwrap();
    assert_eq!(report, OpenReport::default());
    assert_eq!(reopened.state(), &written);
}

#[test]
fn records_left_behind_by_a_crash_after_the_snapshot_are_not_applied_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(tmp.path()).unwrap();
    for port in 1..=20u16 {
        store.commit(&[put(port), audit(&format!("allocate {port}"))]).unwrap();
    }
    store.commit(&[Change::RemoveAllocation { port: 5, lock_id: lock_id(5) }]).unwrap();
    let old_log = fs::read(wal(tmp.path())).unwrap();
    store.flush().unwrap();
    assert_eq!(fs::metadata(wal(tmp.path())).unwrap().len(), 0);
    let written = store.state().clone();
    drop(store);

    // The crash: the snapshot was renamed into place, the log not truncated.
    fs::write(wal(tmp.path()), &old_log).unwrap();
    assert_eq!(store::read_state(tmp.path()).unwrap(), written);
    let (mut reopened, report) = Store::open(tmp.path()).unwrap();
    assert_eq!(report, OpenReport::default());
    assert_eq!(reopened.state(), &written);
    assert_eq!(reopened.state().audit.len(), 20);

    // Later commits go after the stale records and still replay.
    reopened.commit(&[put(5), audit("again")]).unwrap();
    let after = reopened.state().clone();
    drop(reopened);
    let (again, report) = Store::open(tmp.path()).unwrap();
    assert_eq!(report, OpenReport::default());
    assert_eq!(again.state(), &after);
    assert_eq!(again.state().audit.len(), 21);
}

#[test]
fn a_crash_before_the_snapshot_rename_leaves_a_temp_file_that_is_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(tmp.path()).unwrap();
    store.commit(&[put(1)]).unwrap();
    store.flush().unwrap();
    store.commit(&[put(2)]).unwrap();
    let written = store.state().clone();
    drop(store);
    fs::write(tmp.path().join("state.json.tmp"), b"{\"schema\":1,\"generat").unwrap();

    assert_eq!(store::read_state(tmp.path()).unwrap(), written);
    let (reopened, report) = Store::open(tmp.path()).unwrap();
    assert_eq!(report, OpenReport::default());
    assert_eq!(reopened.state(), &written);
    assert!(!tmp.path().join("state.json.tmp").exists());
}

#[test]
fn flush_puts_everything_in_the_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(tmp.path()).unwrap();
    store.commit(&[put(1), put(2)]).unwrap();
    store.flush().unwrap();
    let on_disk: styxy_proto::model::State = serde_json::from_slice(&fs::read(snapshot(tmp.path())).unwrap()).unwrap();
    assert_eq!(&on_disk, store.state());
    assert_eq!(fs::metadata(snapshot(tmp.path())).unwrap().permissions().mode() & 0o077, 0);
    assert_eq!(wal_lines(tmp.path()), 0);
}

#[test]
fn reload_picks_up_an_external_repair_while_keeping_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(tmp.path()).unwrap();
    store.commit(&[put(1), put(2)]).unwrap();
    store.flush().unwrap();

    let mut repaired = store.state().clone();
    repaired.allocations.remove(&2);
    repaired.generation += 1;
    fs::write(snapshot(tmp.path()), serde_json::to_vec_pretty(&repaired).unwrap()).unwrap();

    assert_eq!(store.reload().unwrap(), OpenReport::default());
    assert_eq!(store.state(), &repaired);
    assert!(matches!(Store::open(tmp.path()), Err(StoreError::Locked { .. })));
    assert_eq!(store.commit(&[put(3)]).unwrap(), repaired.generation + 1);
}

#[test]
fn readers_beside_a_compacting_writer_always_see_a_whole_state() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let (mut store, _) = Store::open(&dir).unwrap();
    store.set_compaction_policy(small_policy(7));
    let reader_dir = dir.clone();
    let reader = std::thread::spawn(move || {
        let mut last = 0;
        let mut reads = 0;
        while last < 600 {
            let state = store::read_state(&reader_dir).unwrap();
            assert!(state.generation >= last, "generation went from {last} to {}", state.generation);
            // Every commit adds the port equal to its generation.
            assert_eq!(ports(&state), (1..=state.generation as u16).collect::<Vec<_>>());
            last = state.generation;
            reads += 1;
        }
        reads
    });
    for port in 1..=600u16 {
        store.commit(&[put(port)]).unwrap();
    }
    assert!(reader.join().unwrap() > 0);
}

#[test]
fn the_schema_1_fixture_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state-v1.json");
    fs::copy(&fixture, snapshot(tmp.path())).unwrap();

    let (mut store, report) = Store::open(tmp.path()).unwrap();
    assert_eq!(report, OpenReport::default());
    let state = store.state().clone();
    assert_eq!(state.generation, 1742);
    assert_eq!(ports(&state), vec![3000, 6006, 8001, 9229, 41000]);
    let leases: Vec<LeaseKind> = state.allocations.values().map(|a| a.lease).collect();
    for kind in [LeaseKind::Process, LeaseKind::Session, LeaseKind::Manual] {
        assert!(leases.contains(&kind), "{kind:?} missing");
    }
    assert_eq!(state.allocations[&8001].requested_port, Some(8000));
    assert_eq!(state.allocations[&8001].health_failures, 0);
    assert!(state.instances.contains_key("claude-session-7f3a"));
    assert_eq!(state.auto_types["temporal-worker"].range, [41000, 41009]);

    store
        .commit(&[Change::RemoveAllocation { port: 9229, lock_id: state.allocations[&9229].lock_id.clone() }])
        .unwrap();
    store.flush().unwrap();
    drop(store);
    let (reopened, _) = Store::open(tmp.path()).unwrap();
    assert_eq!(ports(reopened.state()), vec![3000, 6006, 8001, 41000]);
    assert!(tmp.path().join("backups/state.json.1742").exists());
}
