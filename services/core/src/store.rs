//! The durable state store (docs/design.md, "The state store").
//!
//! Files in the state directory:
//! - `state.json`: the snapshot, pretty JSON of [`State`];
//! - `state.wal`: the write-ahead log, one JSON line per commit, newer than the
//!   snapshot;
//! - `state.lock`: the flock a [`Store`] holds for its whole life (one writer);
//! - `backups/state.json.<generation>`: the last few replaced snapshots.
//!
//! A commit is one `write(2)` of a whole log line to an `O_APPEND` file and no
//! fsync: the page cache survives the death of any process, which is the
//! durability an allocation needs (a power cut voids allocations anyway).
//! Snapshots and backups are fsynced when written.
//!
//! # Damage
//!
//! A torn last log line is a crash mid-append: dropped with a warning. Anything
//! else that does not read (a garbled earlier log line, a hole in the log's
//! generations, an unparsable or inconsistent snapshot, a snapshot from a newer
//! schema) is never taken for empty: the bad file is kept aside as
//! `<name>.corrupt-<unix-millis>`, the newest valid backup is restored, the
//! error is logged, and [`OpenReport`] says what happened.
//!
//! Salvage rule: every log record that parses is replayed over the restored
//! base, even past a hole or after a garbled line. Records are idempotent edits
//! keyed by port or name, so a later record lands where it belongs without its
//! predecessors; the price of a missing record is at worst a stale hold, which
//! the health pass reaps when its owner is gone, whereas dropping a record that
//! granted a port would hand that port out twice. The exception is the log
//! beside a snapshot from a newer schema: it belongs to that writer and is kept
//! aside unread.

mod checksum;
mod files;
mod snapshot;
mod wal;

pub use snapshot::BACKUPS_KEPT;

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use styxy_proto::model::{Change, State};

use files::io_error;
use snapshot::Snapshot;

const WAL_NAME: &str = "state.wal";
/// An empty log on its way to replace `state.wal`.
const WAL_FRESH_NAME: &str = "state.wal.new";
const LOCK_NAME: &str = "state.lock";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is held by another Styxy writer", path.display())]
    Locked { path: PathBuf },
    #[error("{} is corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("{} has schema {found}, newer than the supported {supported}", path.display())]
    FutureSchema { path: PathBuf, found: u32, supported: u32 },
    #[error(transparent)]
    UnsafeDir(styxy_proto::dirs::UnsafeDir),
    #[error("cannot encode the state for {}: {source}", path.display())]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// What opening (or reloading) the store had to repair. All empty after a
/// clean shutdown or a crash; a first start in an empty directory is clean too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The backup the state was rebuilt from.
    pub restored_from: Option<PathBuf>,
    /// Damaged files, kept under their new names.
    pub moved_aside: Vec<PathBuf>,
    /// A half-written last log record was dropped.
    pub dropped_torn_tail: bool,
    /// The snapshot was lost and no backup was usable: the state was rebuilt
    /// from nothing (plus whatever log records could be salvaged).
    pub started_empty: bool,
}

/// When the log is folded into a new snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionPolicy {
    pub max_records: usize,
    pub max_bytes: u64,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy { max_records: 4096, max_bytes: 4 << 20 }
    }
}

/// The single writer of a state directory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    /// Held, never read: closing it releases the flock.
    _lock: File,
    wal: File,
    state: State,
    /// Generation of the valid `state.json` on disk; `None` when there is none.
    snapshot_generation: Option<u64>,
    /// Bytes and records in the log (records may include ones the snapshot
    /// already holds, after a crash between snapshot and truncation).
    wal_len: u64,
    wal_records: usize,
    /// A failed append may have left part of a line behind: cut it off
    /// before the next one, or it would garble the line after it.
    wal_needs_trim: bool,
    policy: CompactionPolicy,
    /// After a failed compaction, the log size at which to try again.
    compaction_retry_at: usize,
    /// Reused buffer for the line being committed.
    line: Vec<u8>,
}

/// The result of reading a directory as its writer, before anything is opened
/// for appending.
struct Recovered {
    state: State,
    snapshot_generation: Option<u64>,
    report: OpenReport,
    scan: wal::Scan,
    /// The files on disk do not describe `state`: write a snapshot and start
    /// an empty log.
    rewrite: bool,
}

impl Store {
    /// Opens `dir` (created 0700 if missing) as its only writer, repairing
    /// what a crash or damage left. Fails with [`StoreError::Locked`] at once
    /// when another writer holds the directory.
    pub fn open(dir: &Path) -> Result<(Store, OpenReport), StoreError> {
        Self::open_locked(dir, None)
    }

    /// Like [`Store::open`], waiting up to `timeout` for another writer to
    /// let go.
    pub fn open_wait(dir: &Path, timeout: Duration) -> Result<(Store, OpenReport), StoreError> {
        Self::open_locked(dir, Some(timeout))
    }

    fn open_locked(dir: &Path, wait: Option<Duration>) -> Result<(Store, OpenReport), StoreError> {
        files::create_dir(dir)?;
        let lock = files::lock(&dir.join(LOCK_NAME), wait)?;
        let recovered = recover(dir)?;
        let (wal, state_on_disk) = install(dir, &recovered)?;
        let store = Store {
            dir: dir.to_path_buf(),
            _lock: lock,
            wal,
            state: recovered.state,
            snapshot_generation: state_on_disk.snapshot_generation,
            wal_len: state_on_disk.wal_len,
            wal_records: state_on_disk.wal_records,
            wal_needs_trim: false,
            policy: CompactionPolicy::default(),
            compaction_retry_at: 0,
            line: Vec::with_capacity(1024),
        };
        Ok((store, recovered.report))
    }

    /// Re-reads the directory (after an external repair), keeping the lock.
    pub fn reload(&mut self) -> Result<OpenReport, StoreError> {
        let recovered = recover(&self.dir)?;
        let (wal, on_disk) = install(&self.dir, &recovered)?;
        self.wal = wal;
        self.state = recovered.state;
        self.snapshot_generation = on_disk.snapshot_generation;
        self.wal_len = on_disk.wal_len;
        self.wal_records = on_disk.wal_records;
        self.wal_needs_trim = false;
        self.compaction_retry_at = 0;
        Ok(recovered.report)
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn generation(&self) -> u64 {
        self.state.generation
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn set_compaction_policy(&mut self, policy: CompactionPolicy) {
        self.policy = policy;
    }

    /// Applies `changes` as one atomic edit and returns the new generation.
    /// Once this returns, the edit survives the death of this process at any
    /// moment. On error nothing changed, in memory or on disk.
    pub fn commit(&mut self, changes: &[Change]) -> Result<u64, StoreError> {
        let generation = self.state.generation + 1;
        wal::encode(&mut self.line, generation, changes)
            .map_err(|source| StoreError::Encode { path: self.wal_path(), source })?;
        self.append()?;
        for change in changes {
            self.state.apply(change);
        }
        self.state.generation = generation;

        let over = self.wal_records >= self.policy.max_records || self.wal_len >= self.policy.max_bytes;
        if over && self.wal_records >= self.compaction_retry_at {
            // The commit is already durable: a failed compaction is retried
            // after another threshold's worth of records, not reported.
            if let Err(e) = self.compact() {
                tracing::error!(error = %e, "state compaction failed; the log keeps growing");
                self.compaction_retry_at = self.wal_records + self.policy.max_records;
            }
        }
        Ok(generation)
    }

    /// Writes `self.line` with a single write(2), so a reader or a crash sees
    /// all of it or a tail that is dropped as torn.
    fn append(&mut self) -> Result<(), StoreError> {
        if self.wal_needs_trim {
            self.wal.set_len(self.wal_len).map_err(io_error("truncate", &self.wal_path()))?;
            self.wal_needs_trim = false;
        }
        let written = loop {
            match self.wal.write(&self.line) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match written {
            Ok(n) if n == self.line.len() => {
                self.wal_len += n as u64;
                self.wal_records += 1;
                Ok(())
            }
            outcome => {
                self.wal_needs_trim = true;
                let source =
                    outcome.err().unwrap_or_else(|| io::Error::new(io::ErrorKind::WriteZero, "short write to the log"));
                Err(io_error("append to", &self.wal_path())(source))
            }
        }
    }

    /// Folds the log into a new snapshot now and fsyncs everything: for
    /// shutdown.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.compact()?;
        self.wal.sync_all().map_err(io_error("fsync", &self.wal_path()))
    }

    /// For a writer whose files were damaged or replaced behind its back,
    /// when its state in memory is the truth: if the directory does not
    /// read back as this state, keeps the snapshot and the log aside and
    /// writes the state out afresh. Returns the files kept aside (none when
    /// the files were sound).
    pub fn rewrite_if_damaged(&mut self) -> Result<Vec<PathBuf>, StoreError> {
        if read_state(&self.dir).is_ok_and(|on_disk| on_disk == self.state) {
            return Ok(Vec::new());
        }
        let wal_path = self.wal_path();
        let mut aside = Vec::new();
        for path in [snapshot::path(&self.dir), wal_path.clone()] {
            if path.exists() {
                aside.push(files::keep_aside(&path)?);
            }
        }
        // No backup of the replaced snapshot: it is kept aside already.
        snapshot::replace(&self.dir, &self.state, None)?;
        self.snapshot_generation = Some(self.state.generation);
        // Every record is in the new snapshot. The kept-aside log may be a
        // hard link to the open one: start a new file rather than truncate.
        self.wal = new_wal(&self.dir)?;
        self.wal_len = 0;
        self.wal_records = 0;
        self.wal_needs_trim = false;
        self.compaction_retry_at = 0;
        Ok(aside)
    }

    /// Moves the generation up to `floor` when it is below: a repair for a
    /// state that fell behind its own backups (a snapshot copied back by
    /// hand), so generations never repeat and backups keep sorting by age.
    /// Written as a new snapshot, since log records must follow each other.
    pub fn advance_generation(&mut self, floor: u64) -> Result<(), StoreError> {
        if floor <= self.state.generation {
            return Ok(());
        }
        self.state.generation = floor;
        self.compact()
    }

    fn compact(&mut self) -> Result<(), StoreError> {
        if self.snapshot_generation != Some(self.state.generation) {
            snapshot::replace(&self.dir, &self.state, self.snapshot_generation)?;
            self.snapshot_generation = Some(self.state.generation);
        }
        // Every record is now in the snapshot; a crash before this line
        // leaves records that replay skips by generation.
        if self.wal_len > 0 || self.wal_needs_trim {
            self.wal = new_wal(&self.dir)?;
            self.wal_len = 0;
            self.wal_records = 0;
            self.wal_needs_trim = false;
        }
        self.compaction_retry_at = 0;
        Ok(())
    }

    fn wal_path(&self) -> PathBuf {
        self.dir.join(WAL_NAME)
    }
}

/// The generation of the newest snapshot `dir` keeps in `backups/` (usable
/// or not): the live state must be at least as new.
pub fn newest_backup_generation(dir: &Path) -> Result<Option<u64>, StoreError> {
    Ok(snapshot::backups(dir)?.first().map(|(generation, _)| *generation))
}

/// Reads the state of `dir` without the lock and without repairing anything,
/// for tools that run beside the writer. Damage is an error. The log is read
/// before the snapshot: a compaction in between then only makes the snapshot
/// newer than the log, never leaves a hole.
pub fn read_state(dir: &Path) -> Result<State, StoreError> {
    let wal_path = dir.join(WAL_NAME);
    // A torn tail here may be a commit in progress: ignore it.
    let scan = wal::scan(&files::read_optional(&wal_path)?.unwrap_or_default());
    if let Some(reason) = scan.garbage() {
        return Err(StoreError::Corrupt { path: wal_path, reason });
    }
    let snapshot_path = snapshot::path(dir);
    let mut state = match snapshot::read(&snapshot_path)? {
        Snapshot::Valid(state) => state,
        Snapshot::Missing if snapshot::backups(dir)?.is_empty() => State::new(styxy_observe::process::boot_id()),
        Snapshot::Missing => {
            let reason = "missing, but backups exist".to_string();
            return Err(StoreError::Corrupt { path: snapshot_path, reason });
        }
        Snapshot::Corrupt(reason) => {
            return Err(StoreError::Corrupt { path: snapshot_path, reason });
        }
        Snapshot::Future(found) => {
            let supported = styxy_proto::model::SCHEMA_VERSION;
            return Err(StoreError::FutureSchema { path: snapshot_path, found, supported });
        }
    };
    if let Some(reason) = wal::sequence_problem(state.generation, &scan.records) {
        return Err(StoreError::Corrupt { path: wal_path, reason });
    }
    wal::replay(&mut state, &scan.records);
    Ok(state)
}

/// Reads `dir` as its writer: decides the state and what to repair, keeping
/// damaged files aside. Leaves the log and snapshot in place.
fn recover(dir: &Path) -> Result<Recovered, StoreError> {
    // Left by a crash during compaction; the snapshot it was for either was
    // renamed into place or is still covered by the log.
    files::remove_optional(&snapshot::tmp_path(dir))?;

    let wal_path = dir.join(WAL_NAME);
    let (scan, unreadable_wal) = match files::read_optional(&wal_path) {
        Ok(bytes) => (wal::scan(&bytes.unwrap_or_default()), None),
        Err(e) => (wal::Scan::default(), Some(e.to_string())),
    };
    let snapshot_path = snapshot::path(dir);
    let snapshot = snapshot::read(&snapshot_path).unwrap_or_else(|e| Snapshot::Corrupt(e.to_string()));
    let backups = snapshot::backups(dir).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot list state backups");
        Vec::new()
    });
    let mut report = OpenReport { dropped_torn_tail: scan.torn_tail, ..OpenReport::default() };

    let snapshot_problem = match &snapshot {
        Snapshot::Valid(_) => None,
        Snapshot::Missing if backups.is_empty() => None,
        Snapshot::Missing => Some("missing, but backups exist".to_string()),
        Snapshot::Corrupt(reason) => Some(reason.clone()),
        // A newer Styxy wrote this directory (a downgrade): its allocations
        // may be in files we cannot read, so serving from anything else here
        // (a backup, an empty state) could hand a held port out twice. Fail
        // closed, leaving every file as it is.
        Snapshot::Future(found) => {
            let supported = styxy_proto::model::SCHEMA_VERSION;
            return Err(StoreError::FutureSchema { path: snapshot_path, found: *found, supported });
        }
    };
    let (mut state, snapshot_generation) = match snapshot {
        Snapshot::Valid(state) => {
            let generation = state.generation;
            (state, Some(generation))
        }
        _ => match &snapshot_problem {
            None => (State::new(styxy_observe::process::boot_id()), None),
            Some(reason) => {
                tracing::error!(path = %snapshot_path.display(), reason, "state snapshot is unusable");
                if snapshot_path.exists() {
                    report.moved_aside.push(files::keep_aside(&snapshot_path)?);
                }
                (restore(dir, &backups, &mut report)?, None)
            }
        },
    };

    let wal_problem = unreadable_wal.or_else(|| scan.garbage()).or_else(|| {
        // After a restore the log is not expected to follow the base.
        snapshot_problem.is_none().then(|| wal::sequence_problem(state.generation, &scan.records)).flatten()
    });
    if let Some(reason) = &wal_problem {
        tracing::error!(path = %wal_path.display(), reason, "state log is damaged");
        report.moved_aside.push(files::keep_aside(&wal_path)?);
    } else if scan.torn_tail {
        tracing::warn!(path = %wal_path.display(), offset = scan.tail_start, "dropping a half-written last log record");
    }
    wal::replay(&mut state, &scan.records);
    if snapshot_problem.is_some() {
        // Stay ahead of every snapshot this directory kept, so generations
        // never repeat and backup names keep sorting by age.
        state.generation = state.generation.max(backups.first().map_or(0, |b| b.0));
    }

    Ok(Recovered {
        state,
        snapshot_generation,
        rewrite: snapshot_problem.is_some() || wal_problem.is_some(),
        report,
        scan,
    })
}

/// The newest valid backup, else an empty state; noted in `report`. A
/// backup from a newer schema before any valid one fails closed, as a newer
/// snapshot does.
fn restore(dir: &Path, backups: &[(u64, PathBuf)], report: &mut OpenReport) -> Result<State, StoreError> {
    Ok(match snapshot::newest_valid(backups)? {
        Some((path, state)) => {
            tracing::error!(backup = %path.display(), generation = state.generation, "restoring state from backup");
            report.restored_from = Some(path);
            state
        }
        None => {
            tracing::error!(dir = %dir.display(), "no usable backup: starting from an empty state");
            report.started_empty = true;
            State::new(styxy_observe::process::boot_id())
        }
    })
}

struct OnDisk {
    snapshot_generation: Option<u64>,
    wal_len: u64,
    wal_records: usize,
}

/// Starts an empty log in place of the current one: a new file renamed over
/// it, never a truncation of the file by name (a damaged log's kept-aside
/// name may be a hard link to it, and the old file stays whole until the
/// rename). Every record it held must be in the snapshot already.
fn new_wal(dir: &Path) -> Result<File, StoreError> {
    let wal_path = dir.join(WAL_NAME);
    let fresh_path = dir.join(WAL_FRESH_NAME);
    files::remove_optional(&fresh_path)?;
    let fresh =
        files::options().append(true).create_new(true).open(&fresh_path).map_err(io_error("create", &fresh_path))?;
    std::fs::rename(&fresh_path, &wal_path).map_err(io_error("rename log", &fresh_path))?;
    Ok(fresh)
}

/// Makes the files match `recovered` and opens the log for appending.
fn install(dir: &Path, recovered: &Recovered) -> Result<(File, OnDisk), StoreError> {
    let wal_path = dir.join(WAL_NAME);
    let mut snapshot_generation = recovered.snapshot_generation;
    if recovered.rewrite {
        snapshot::replace(dir, &recovered.state, snapshot_generation)?;
        snapshot_generation = Some(recovered.state.generation);
        // Removed rather than truncated: a damaged log's kept-aside name may
        // be a hard link to this very file.
        files::remove_optional(&wal_path)?;
    }
    let wal = files::options().append(true).create(true).open(&wal_path).map_err(io_error("open", &wal_path))?;
    let (wal_len, wal_records) = if recovered.rewrite {
        (0, 0)
    } else {
        if recovered.scan.torn_tail {
            wal.set_len(recovered.scan.tail_start).map_err(io_error("truncate", &wal_path))?;
        }
        (recovered.scan.tail_start, recovered.scan.records.len())
    };
    Ok((wal, OnDisk { snapshot_generation, wal_len, wal_records }))
}
