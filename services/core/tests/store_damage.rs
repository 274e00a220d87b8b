//! Damaged state directories: what the writer repairs, what it keeps aside,
//! what lock-free readers report.
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use styxy_core::store::{self, CompactionPolicy, OpenReport, Store, StoreError};
use styxy_proto::model::SCHEMA_VERSION;
use styxy_testkit::store::*;

/// Commits one allocation per port in `ports`, compacting every `every` records.
fn populate(dir: &Path, every: usize, ports: impl IntoIterator<Item = u16>) {
    let (mut store, _) = Store::open(dir).unwrap();
    store.set_compaction_policy(CompactionPolicy { max_records: every, max_bytes: u64::MAX });
    for port in ports {
        store.commit(&[put(port)]).unwrap();
    }
}

fn append(path: &Path, bytes: &[u8]) {
    OpenOptions::new().append(true).open(path).unwrap().write_all(bytes).unwrap();
}

fn aside_of(report: &OpenReport, name: &str) -> std::path::PathBuf {
    let prefix = format!("{name}.corrupt-");
    report
        .moved_aside
        .iter()
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(&prefix))
        .unwrap_or_else(|| panic!("{name} not moved aside: {report:?}"))
        .clone()
}

#[test]
fn a_torn_last_record_is_dropped_and_earlier_ones_kept() {
    let tmp = tempfile::tempdir().unwrap();
    populate(tmp.path(), 1000, 1..=3);
    let intact_len = fs::metadata(wal(tmp.path())).unwrap().len();
    append(&wal(tmp.path()), br#"{"generation":4,"changes":[{"put_alloc"#);

    // A reader takes it for a commit in progress and changes nothing.
    assert_eq!(ports(&store::read_state(tmp.path()).unwrap()), vec![1, 2, 3]);
    assert!(fs::metadata(wal(tmp.path())).unwrap().len() > intact_len);

    let (mut store, report) = Store::open(tmp.path()).unwrap();
    assert_eq!(report, OpenReport { dropped_torn_tail: true, ..OpenReport::default() });
    assert_eq!(ports(store.state()), vec![1, 2, 3]);
    assert_eq!(store.generation(), 3);
    assert_eq!(fs::metadata(wal(tmp.path())).unwrap().len(), intact_len);

    store.commit(&[put(4)]).unwrap();
    drop(store);
    let (store, report) = Store::open(tmp.path()).unwrap();
    assert_eq!(report, OpenReport::default());
    assert_eq!(ports(store.state()), vec![1, 2, 3, 4]);
}

#[test]
fn garbage_inside_the_log_is_kept_aside_and_every_parsable_record_salvaged() {
    let tmp = tempfile::tempdir().unwrap();
    populate(tmp.path(), 1000, 1..=4);
    let log = fs::read(wal(tmp.path())).unwrap();
    let lines: Vec<&[u8]> = log.split_inclusive(|&b| b == b'\n').collect();
    let damaged = [lines[0], lines[1], b"\0\0\0\0garbage\n", lines[3]].concat();
    fs::write(wal(tmp.path()), &damaged).unwrap();

    match store::read_state(tmp.path()) {
        Err(StoreError::Corrupt { path, reason }) => {
            assert_eq!(path, wal(tmp.path()));
            assert!(reason.contains("line 3"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(fs::read(wal(tmp.path())).unwrap(), damaged);

    let (store, report) = Store::open(tmp.path()).unwrap();
    assert_eq!(report.restored_from, None);
    assert!(!report.started_empty);
    assert_eq!(fs::read(aside_of(&report, "state.wal")).unwrap(), damaged);
    // Record 3 was overwritten by the garbage; 4 lands anyway.
    assert_eq!(ports(store.state()), vec![1, 2, 4]);
    assert_eq!(store.generation(), 4);
    drop(store);
    assert_eq!(ports(&store::read_state(tmp.path()).unwrap()), vec![1, 2, 4]);
    let (_, report) = Store::open(tmp.path()).unwrap();
    assert_eq!(report, OpenReport::default());
}

#[test]
fn a_hole_in_the_log_generations_is_damage() {
    let tmp = tempfile::tempdir().unwrap();
    populate(tmp.path(), 1000, 1..=3);
    let log = fs::read(wal(tmp.path())).unwrap();
    let without_second: Vec<u8> = log
        .split_inclusive(|&b| b == b'\n')
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .flat_map(|(_, line)| line.to_vec())
        .collect();
    fs::write(wal(tmp.path()), &without_second).unwrap();

    assert!(matches!(
        store::read_state(tmp.path()),
        Err(StoreError::Corrupt { reason, .. }) if reason.contains("generation 3 follows 1")
    ));
    let (store, report) = Store::open(tmp.path()).unwrap();
    assert_eq!(fs::read(aside_of(&report, "state.wal")).unwrap(), without_second);
    assert_eq!(ports(store.state()), vec![1, 3]);
}

#[test]
fn a_truncated_snapshot_is_replaced_by_the_newest_backup_plus_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    // Snapshots at 5 and 10, backup of 5, records 11 and 12 in the log.
    populate(tmp.path(), 5, 1..=12);
    let snapshot_bytes = fs::read(snapshot(tmp.path())).unwrap();
    let truncated = &snapshot_bytes[..snapshot_bytes.len() / 2];
    fs::write(snapshot(tmp.path()), truncated).unwrap();

    assert!(
        matches!(store::read_state(tmp.path()), Err(StoreError::Corrupt { path, .. }) if path == snapshot(tmp.path()))
    );

    let (store, report) = Store::open(tmp.path()).unwrap();
    assert_eq!(report.restored_from, Some(tmp.path().join("backups/state.json.5")));
    assert!(!report.started_empty);
    assert_eq!(report.moved_aside.len(), 1);
    assert_eq!(fs::read(aside_of(&report, "state.json")).unwrap(), truncated);
    // 6..=10 lived only in the lost snapshot.
    assert_eq!(ports(store.state()), vec![1, 2, 3, 4, 5, 11, 12]);
    assert_eq!(store.generation(), 12);
    drop(store);

    let (store, report) = Store::open(tmp.path()).unwrap();
    assert_eq!(report, OpenReport::default());
    assert_eq!(ports(store.state()), vec![1, 2, 3, 4, 5, 11, 12]);
}

#[test]
fn an_invalid_backup_is_skipped_for_an_older_valid_one() {
    let tmp = tempfile::tempdir().unwrap();
    populate(tmp.path(), 2, 1..=6);
    // Snapshot 6; backups of 2 and 4.
    fs::write(tmp.path().join("backups/state.json.4"), b"not json").unwrap();
    fs::write(snapshot(tmp.path()), b"{}").unwrap();

    let (mut store, report) = Store::open(tmp.path()).unwrap();
    assert_eq!(report.restored_from, Some(tmp.path().join("backups/state.json.2")));
    assert_eq!(ports(store.state()), vec![1, 2]);
    // Generations stay ahead of every backup name, valid or not.
    assert_eq!(store.generation(), 4);
    assert_eq!(store.commit(&[put(9)]).unwrap(), 5);
}

#[test]
fn garbage_without_a_backup_starts_empty_and_keeps_the_garbage() {
    let tmp = tempfile::tempdir().unwrap();
    let garbage = b"\x7fELF this is not a state file".to_vec();
    fs::write(snapshot(tmp.path()), &garbage).unwrap();

    let (mut store, report) = Store::open(tmp.path()).unwrap();
    assert!(report.started_empty);
    assert_eq!(report.restored_from, None);
    assert_eq!(fs::read(aside_of(&report, "state.json")).unwrap(), garbage);
    assert!(store.state().allocations.is_empty());
    assert_eq!(store.generation(), 0);

    store.commit(&[put(1)]).unwrap();
    drop(store);
    let (store, report) = Store::open(tmp.path()).unwrap();
    assert_eq!(report, OpenReport::default());
    assert_eq!(ports(store.state()), vec![1]);
    assert_eq!(files_starting(tmp.path(), "state.json.corrupt-").len(), 1);
}

#[test]
fn a_state_from_a_newer_schema_refuses_to_open_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    populate(tmp.path(), 3, 1..=6);
    // Snapshot 6, backup of 3. A newer Styxy then wrote its own files and
    // was downgraded: serving the backup (or nothing) could hand out a port
    // the newer state holds.
    let future = format!(
        "{{\"schema\":{},\"generation\":90,\"boot_id\":\"x\",\"allocations\":{{}},\"leases_v2\":[]}}",
        SCHEMA_VERSION + 1
    );
    fs::write(snapshot(tmp.path()), &future).unwrap();
    let future_log = br#"{"generation":91,"changes":[{"remove_allocation":{"port":1,"lock_id":"lock-1"}}]}
"#;
    fs::write(wal(tmp.path()), future_log).unwrap();
    let is_future = |outcome: &Result<_, StoreError>| {
        matches!(outcome, Err(StoreError::FutureSchema { found, supported, .. })
            if *found == SCHEMA_VERSION + 1 && *supported == SCHEMA_VERSION)
    };

    assert!(is_future(&store::read_state(tmp.path()).map(drop)));
    let refused = Store::open(tmp.path()).map(drop);
    assert!(is_future(&refused), "{refused:?}");
    assert!(refused.unwrap_err().to_string().contains("newer than the supported"));
    assert_eq!(fs::read_to_string(snapshot(tmp.path())).unwrap(), future);
    assert_eq!(fs::read(wal(tmp.path())).unwrap(), future_log);
    assert!(files_starting(tmp.path(), "state.json.corrupt-").is_empty());
}

#[test]
fn a_backup_from_a_newer_schema_refuses_to_open_when_the_snapshot_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    populate(tmp.path(), 3, 1..=6);
    let newest_backup = tmp.path().join("backups/state.json.3");
    let mut json: serde_json::Value = serde_json::from_slice(&fs::read(&newest_backup).unwrap()).unwrap();
    json["schema"] = serde_json::json!(SCHEMA_VERSION + 1);
    fs::write(&newest_backup, serde_json::to_vec(&json).unwrap()).unwrap();
    fs::remove_file(snapshot(tmp.path())).unwrap();
    assert!(matches!(Store::open(tmp.path()), Err(StoreError::FutureSchema { .. })));
}

#[test]
fn an_acknowledged_last_record_damaged_on_disk_is_set_aside_loudly_and_the_rest_kept() {
    let tmp = tempfile::tempdir().unwrap();
    populate(tmp.path(), 1000, 1..=3);
    // Flip one digit of the last record's port: still JSON, still ends in
    // its newline, but not what was acknowledged.
    let mut bytes = fs::read(wal(tmp.path())).unwrap();
    let last = bytes[..bytes.len() - 1].iter().rposition(|&b| b == b'\n').unwrap() + 1;
    let digit = last + bytes[last..].windows(8).position(|w| w == b"\"port\":3").unwrap() + 7;
    bytes[digit] = b'4';
    fs::write(wal(tmp.path()), &bytes).unwrap();

    assert!(matches!(store::read_state(tmp.path()), Err(StoreError::Corrupt { .. })));
    let (store, report) = Store::open(tmp.path()).unwrap();
    assert!(!report.dropped_torn_tail, "damage is not a torn write: {report:?}");
    assert_eq!(fs::read(aside_of(&report, "state.wal")).unwrap(), bytes);
    assert_eq!(ports(store.state()), vec![1, 2], "the records that check out are kept");
}

#[test]
fn a_missing_snapshot_beside_backups_is_restored() {
    let tmp = tempfile::tempdir().unwrap();
    populate(tmp.path(), 2, 1..=5);
    fs::remove_file(snapshot(tmp.path())).unwrap();

    assert!(matches!(store::read_state(tmp.path()), Err(StoreError::Corrupt { .. })));
    let (store, report) = Store::open(tmp.path()).unwrap();
    assert_eq!(report.restored_from, Some(tmp.path().join("backups/state.json.2")));
    assert!(report.moved_aside.is_empty());
    assert_eq!(ports(store.state()), vec![1, 2, 5]);
}

#[test]
fn open_succeeds_whatever_a_writable_directory_holds() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(snapshot(tmp.path())).unwrap();
    fs::write(tmp.path().join("backups"), b"a file where a directory belongs").unwrap();
    fs::write(wal(tmp.path()), b"\0\0\0\n\xff\xfe\n").unwrap();

    let (mut store, report) = Store::open(tmp.path()).unwrap();
    assert!(report.started_empty);
    assert!(aside_of(&report, "state.json").is_dir());
    assert_eq!(fs::read(aside_of(&report, "state.wal")).unwrap(), b"\0\0\0\n\xff\xfe\n");

    store.commit(&[put(1)]).unwrap();
    store.flush().unwrap();
    drop(store);
    assert_eq!(ports(&store::read_state(tmp.path()).unwrap()), vec![1]);
}

#[test]
fn a_log_or_snapshot_symlink_in_the_state_directory_is_never_written_through() {
    let tmp = tempfile::tempdir().unwrap();
    populate(tmp.path(), 1000, 1..=2);
    let victim_dir = tempfile::tempdir().unwrap();
    let victim = victim_dir.path().join("victim");
    fs::write(&victim, "secret").unwrap();
    for name in ["state.wal", "state.json.tmp", "state.wal.new"] {
        let _ = fs::remove_file(tmp.path().join(name));
        std::os::unix::fs::symlink(&victim, tmp.path().join(name)).unwrap();
    }
    if let Ok((mut store, _)) = Store::open(tmp.path()) {
        store.commit(&[put(3)]).unwrap();
        store.flush().unwrap();
    }
    assert_eq!(fs::read_to_string(&victim).unwrap(), "secret");
}
