//! State-store fixtures: allocations, changes and the files of a state
//! directory, for styxy-core's store tests and benchmark.

use std::fs;
use std::path::{Path, PathBuf};
use styxy_proto::model::{Allocation, AuditEntry, Change, LeaseKind, Owner, Source};

pub fn allocation(port: u16, lock_id: &str, lease: LeaseKind) -> Allocation {
    let owner = Owner { uid: 1000, pid: Some(4242), start_time: Some(123_456) };
    Allocation {
        lock_id: lock_id.to_string(),
        instance_id: "inst-1".into(),
        project_path: Some("/home/dev/project".into()),
        source: Source::Cli,
        allocated_at: 1_736_000_000_000 + u64::from(port),
        ..Allocation::new(port, "dev", format!("svc-{port}"), owner, lease)
    }
}

pub fn put(port: u16) -> Change {
    Change::PutAllocation(allocation(port, &lock_id(port), LeaseKind::Process))
}

pub fn lock_id(port: u16) -> String {
    format!("lock-{port}")
}

pub fn audit(action: &str) -> Change {
    Change::Audit(AuditEntry { at: 1, action: action.into(), service_type: "dev".into(), range: None, uid: 0 })
}

pub fn wal(dir: &Path) -> PathBuf {
    dir.join("state.wal")
}

pub fn snapshot(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

pub fn wal_lines(dir: &Path) -> usize {
    fs::read(wal(dir)).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

/// Files in `dir` whose name starts with `prefix`, sorted.
pub fn files_starting(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

pub fn ports(state: &styxy_proto::model::State) -> Vec<u16> {
    state.allocations.keys().copied().collect()
}
