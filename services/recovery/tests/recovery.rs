//! styxy-recovery as systemd runs it: on a stopped allocator's state
//! directory, and beside a running writer that it must ask to repair.
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

use std::path::Path;
use std::process::Command;

use styxy_bus::testing::{EngineBackend, PrivateBus};
use styxy_core::config::Config;
use styxy_core::engine::Engine;
use styxy_core::host::RealHost;
use styxy_core::store::{self, Store};
use styxy_proto::model::{Allocation, Change, LeaseKind, Owner};

struct Run {
    success: bool,
    log: String,
}

/// Runs recovery on `dir`; `bus` is the system bus it may call.
fn recovery(dir: &Path, bus: Option<&str>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_styxy-recovery"));
    cmd.arg("--state-dir").arg(dir).args(["--wait", "0"]);
    cmd.env("STYXY_SYSTEM_CONFIG", dir.join("none.toml")).env("STYXY_CONFIG", dir.join("none.toml"));
    cmd.env("NO_COLOR", "1").env_remove("JOURNAL_STREAM");
    cmd.env("DBUS_SYSTEM_BUS_ADDRESS", bus.unwrap_or("unix:path=/nonexistent"));
    let out = cmd.output().unwrap();
    Run { success: out.status.success(), log: String::from_utf8_lossy(&out.stderr).into_owned() }
}

fn allocation(n: u16, port: u16, lease: LeaseKind) -> Allocation {
    Allocation {
        lock_id: format!("00000000-0000-4000-8000-{n:012}"),
        allocated_at: 1,
        ..Allocation::new(port, "dev", "web", Owner { uid: 0, pid: Some(1), start_time: Some(1) }, lease)
    }
}

/// A state directory of this boot with one manual allocation and a backup.
fn directory() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(dir.path()).unwrap();
    let boot = styxy_observe::process::boot_id();
    store.commit(&[Change::SetBootId(boot), Change::PutAllocation(allocation(1, 3000, LeaseKind::Manual))]).unwrap();
    store.flush().unwrap();
    store.commit(&[Change::SetSticky { key: "k".into(), port: 3000 }]).unwrap();
    store.flush().unwrap();
    dir
}

fn kept_aside(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".corrupt-"))
        .collect()
}

#[test]
fn a_sound_state_gets_a_clean_verdict() {
    let dir = directory();
    let run = recovery(dir.path(), None);
    assert!(run.success, "{}", run.log);
    assert!(run.log.contains("state clean (generation 2, 1 allocation(s))"), "{}", run.log);
}

#[test]
fn a_truncated_file_is_kept_aside_and_the_backup_restored() {
    let dir = directory();
    let path = dir.path().join("state.json");
    let text = std::fs::read(&path).unwrap();
    std::fs::write(&path, &text[..text.len() / 3]).unwrap();
    let run = recovery(dir.path(), None);
    assert!(run.success, "{}", run.log);
    assert!(run.log.contains("state restored"), "{}", run.log);
    assert!(run.log.contains("restored the state from backup"), "{}", run.log);
    assert_eq!(kept_aside(dir.path()).len(), 1);
    assert_eq!(store::read_state(dir.path()).unwrap().allocations.len(), 1);
}

#[test]
fn a_previous_boot_is_repaired_and_the_second_run_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut store, _) = Store::open(dir.path()).unwrap();
        store
            .commit(&[
                Change::SetBootId("another-boot".into()),
                Change::PutAllocation(allocation(1, 3000, LeaseKind::Process)),
            ])
            .unwrap();
    }
    let run = recovery(dir.path(), None);
    assert!(run.success, "{}", run.log);
    assert!(run.log.contains("state repaired") && run.log.contains("previous boot"), "{}", run.log);
    assert!(store::read_state(dir.path()).unwrap().allocations.is_empty());
    assert!(recovery(dir.path(), None).log.contains("state clean"));
}

#[test]
fn a_file_from_a_future_schema_fails_recovery_and_is_left_as_it_was() {
    let dir = directory();
    let future = br#"{"schema": 99, "generation": 7, "something": "new"}"#;
    std::fs::write(dir.path().join("state.json"), future).unwrap();
    let run = recovery(dir.path(), None);
    assert!(!run.success, "{}", run.log);
    assert!(run.log.contains("schema 99, newer than the supported 1; nothing was changed"), "{}", run.log);
    assert_eq!(std::fs::read(dir.path().join("state.json")).unwrap(), future, "left byte for byte");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_allocator_is_asked_to_repair_its_own_state() {
    let dir = directory();
    let bus = PrivateBus::start(&[]).unwrap();
    let (store, _) = Store::open(dir.path()).unwrap();
    let engine = Engine::new(Config::builtin(), store, None, Box::new(RealHost)).unwrap();
    let held = engine.state().clone();
    let backend = EngineBackend::new(engine);
    let _conn = backend.serve(&bus).await.unwrap();

    // Sound: nothing to ask.
    let path = dir.path().to_path_buf();
    let run = tokio::task::spawn_blocking(move || recovery(&path, None)).await.unwrap();
    assert!(run.success && run.log.contains("state clean"), "{}", run.log);

    // Damaged under the writer: the writer's copy is the truth.
    std::fs::write(dir.path().join("state.json"), b"\0\0\0").unwrap();
    let path = dir.path().to_path_buf();
    let address = bus.address().to_string();
    let run = tokio::task::spawn_blocking(move || recovery(&path, Some(&address))).await.unwrap();
    assert!(run.success, "{}", run.log);
    assert!(run.log.contains("state restored") && run.log.contains("by the running allocator"), "{}", run.log);
    assert_eq!(store::read_state(dir.path()).unwrap(), held);
    assert_eq!(backend.engine().state(), &held);
}

#[test]
fn without_the_lock_or_the_allocator_it_fails_and_changes_nothing() {
    let dir = directory();
    let _writer = Store::open(dir.path()).unwrap();
    std::fs::write(dir.path().join("state.json"), b"garbage").unwrap();
    let run = recovery(dir.path(), None);
    assert!(!run.success, "{}", run.log);
    assert!(run.log.contains("state failed"), "{}", run.log);
    assert_eq!(std::fs::read(dir.path().join("state.json")).unwrap(), b"garbage");
    assert!(kept_aside(dir.path()).is_empty());
}
