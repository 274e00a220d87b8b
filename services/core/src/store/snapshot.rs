//! `state.json` and its rotated copies in `backups/`.

use super::StoreError;
use super::files::{self, io_error};
use serde::Deserialize;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use styxy_proto::model::{SCHEMA_VERSION, State};

pub(super) const FILE_NAME: &str = "state.json";
const TMP_NAME: &str = "state.json.tmp";
const BACKUP_DIR: &str = "backups";
/// How many previous snapshots `backups/` keeps.
pub const BACKUPS_KEPT: usize = 5;

/// What a snapshot file holds.
#[derive(Debug)]
pub(super) enum Snapshot {
    Missing,
    Valid(State),
    Corrupt(String),
    /// Written by a newer Styxy: not interpreted.
    Future(u32),
}

pub(super) fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

pub(super) fn tmp_path(dir: &Path) -> PathBuf {
    dir.join(TMP_NAME)
}

pub(super) fn read(path: &Path) -> Result<Snapshot, StoreError> {
    Ok(match files::read_optional(path)? {
        None => Snapshot::Missing,
        Some(bytes) => parse(&bytes),
    })
}

pub(super) fn parse(bytes: &[u8]) -> Snapshot {
    #[derive(Deserialize)]
    struct SchemaOnly {
        schema: u32,
    }
    match serde_json::from_slice::<State>(bytes) {
        Ok(state) if state.schema > SCHEMA_VERSION => Snapshot::Future(state.schema),
        Ok(state) => match inconsistency(&state) {
            Some(reason) => Snapshot::Corrupt(reason),
            None => Snapshot::Valid(state),
        },
        // A newer schema may not parse as today's State at all.
        Err(e) => match serde_json::from_slice::<SchemaOnly>(bytes) {
            Ok(probe) if probe.schema > SCHEMA_VERSION => Snapshot::Future(probe.schema),
            _ => Snapshot::Corrupt(e.to_string()),
        },
    }
}

/// Structural faults no writer of ours produces: a map key that disagrees with
/// the record it indexes would make later edits land on the wrong entry.
fn inconsistency(state: &State) -> Option<String> {
    if state.schema == 0 {
        return Some("schema 0 does not exist".into());
    }
    if let Some((port, a)) = state.allocations.iter().find(|(port, a)| **port != a.port) {
        return Some(format!("allocation filed under port {port} is for port {}", a.port));
    }
    if let Some((key, i)) = state.instances.iter().find(|(key, i)| **key != i.instance_id) {
        return Some(format!("instance filed under {key:?} is {:?}", i.instance_id));
    }
    if let Some((key, t)) = state.auto_types.iter().find(|(key, t)| **key != t.service_type) {
        return Some(format!("auto type filed under {key:?} is {:?}", t.service_type));
    }
    None
}

/// Backups in `dir`, newest generation first.
pub(super) fn backups(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let backup_dir = dir.join(BACKUP_DIR);
    let entries = match fs::read_dir(&backup_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("list backups", &backup_dir)(e)),
    };
    let prefix = format!("{FILE_NAME}.");
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error("list backups", &backup_dir))?;
        let name = entry.file_name();
        let generation = name.to_str().and_then(|n| n.strip_prefix(&prefix)).and_then(|g| g.parse::<u64>().ok());
        if let Some(generation) = generation {
            found.push((generation, entry.path()));
        }
    }
    found.sort_by_key(|b| std::cmp::Reverse(b.0));
    Ok(found)
}

/// The newest backup that reads as a valid snapshot of a schema we know;
/// an error when a newer one is from a newer schema (see `Snapshot::Future`).
pub(super) fn newest_valid(backups: &[(u64, PathBuf)]) -> Result<Option<(PathBuf, State)>, StoreError> {
    for (_, path) in backups {
        match files::read_optional(path).map(|b| b.map(|b| parse(&b))) {
            Ok(Some(Snapshot::Valid(state))) => return Ok(Some((path.clone(), state))),
            Ok(Some(Snapshot::Future(found))) => {
                return Err(StoreError::FutureSchema { path: path.clone(), found, supported: SCHEMA_VERSION });
            }
            outcome => tracing::warn!(path = %path.display(), ?outcome, "skipping unusable backup"),
        }
    }
    Ok(None)
}

/// Replaces `state.json` with `state`: write a temporary file and fsync it,
/// keep the current snapshot (of `current_generation`, if there is a valid
/// one) in `backups/`, rename over, fsync the directory. A crash between any
/// two steps leaves either the old or the new snapshot in place.
pub(super) fn replace(dir: &Path, state: &State, current_generation: Option<u64>) -> Result<(), StoreError> {
    let tmp = tmp_path(dir);
    let mut bytes =
        serde_json::to_vec_pretty(state).map_err(|source| StoreError::Encode { path: tmp.clone(), source })?;
    bytes.push(b'\n');
    files::write_new(&tmp, &bytes)?;

    let target = path(dir);
    if let Some(generation) = current_generation {
        // A backup that cannot be kept must not stop the snapshot itself.
        if let Err(e) = back_up(dir, &target, generation) {
            tracing::error!(error = %e, "cannot keep a backup of the state snapshot");
        }
    }
    fs::rename(&tmp, &target).map_err(io_error("rename snapshot", &tmp))?;
    files::sync_dir(dir)
}

/// Files `snapshot` as `backups/state.json.<generation>` and drops all but the
/// newest few. A hard link is enough: snapshots are replaced by rename, never
/// rewritten in place, so the linked file never changes.
fn back_up(dir: &Path, snapshot: &Path, generation: u64) -> Result<(), StoreError> {
    let backup_dir = dir.join(BACKUP_DIR);
    files::create_dir(&backup_dir)?;
    let backup = backup_dir.join(format!("{FILE_NAME}.{generation}"));
    files::remove_optional(&backup)?;
    match fs::hard_link(snapshot, &backup) {
        Ok(()) => {}
        // Deleted behind our back: nothing to keep.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => copy_synced(snapshot, &backup)?,
    }
    for (_, old) in backups(dir)?.iter().skip(BACKUPS_KEPT) {
        files::remove_optional(old)?;
    }
    files::sync_dir(&backup_dir)
}

/// For file systems without hard links.
fn copy_synced(from: &Path, to: &Path) -> Result<(), StoreError> {
    match files::read_optional(from)? {
        Some(bytes) => files::write_new(to, &bytes),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_from_the_future_is_recognised_even_when_it_does_not_parse() {
        let future = format!(r#"{{"schema":{},"layout":"unknown"}}"#, SCHEMA_VERSION + 1);
        assert!(matches!(parse(future.as_bytes()), Snapshot::Future(v) if v == SCHEMA_VERSION + 1));
    }

    #[test]
    fn a_key_that_disagrees_with_its_record_is_corrupt() {
        let mut json: serde_json::Value = serde_json::to_value(State::new("b".into())).unwrap();
        json["allocations"]["3000"] = serde_json::json!({
            "lock_id": "l", "port": 3001, "service_type": "dev", "service_name": "web",
            "instance_id": "i", "owner": {"uid": 1000}, "lease": "manual", "allocated_at": 1
        });
        let bytes = serde_json::to_vec(&json).unwrap();
        assert!(matches!(parse(&bytes), Snapshot::Corrupt(r) if r.contains("port 3000")));
    }
}
