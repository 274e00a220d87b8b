//! styxy-health as its timer runs it: reads the state beside the writer,
//! logs its decisions, reports to org.styxy.Allocator1.
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

use std::path::Path;
use std::process::Command;

use styxy_bus::testing::{EngineBackend, PrivateBus};
use styxy_core::config::Config;
use styxy_core::engine::Engine;
use styxy_core::host::RealHost;
use styxy_core::store::{self, Store};
use styxy_proto::api::AllocateRequest;
use styxy_proto::caller::Caller;
use styxy_proto::model::{Allocation, Change, LeaseKind, Owner};

struct Run {
    success: bool,
    log: String,
}

fn health(dir: &Path, bus: &str, extra: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_styxy-health"))
        .arg("--state-dir")
        .arg(dir)
        .args(extra)
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus)
        .env("NO_COLOR", "1")
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    Run { success: out.status.success(), log: String::from_utf8_lossy(&out.stderr).into_owned() }
}

const NO_BUS: &str = "unix:path=/nonexistent";

fn allocation(port: u16, pid: u32, start_time: u64) -> Allocation {
    let owner = Owner { uid: styxy_proto::paths::uid(), pid: Some(pid), start_time: Some(start_time) };
    Allocation {
        lock_id: format!("00000000-0000-4000-8000-{port:012}"),
        ..Allocation::new(port, "dev", "web", owner, LeaseKind::Process)
    }
}

#[test]
fn a_healthy_state_bothers_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id();
    let (mut store, _) = Store::open(dir.path()).unwrap();
    let start = styxy_observe::process::start_time(me).unwrap();
    store
        .commit(&[
            Change::SetBootId(styxy_observe::process::boot_id()),
            Change::PutAllocation(allocation(3000, me, start)),
        ])
        .unwrap();
    drop(store);
    // No bus to call: the pass must not need one.
    let run = health(dir.path(), NO_BUS, &[]);
    assert!(run.success, "{}", run.log);
    assert!(run.log.is_empty(), "{}", run.log);
}

#[test]
fn dead_and_reused_owners_are_logged_with_their_port_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id();
    let start = styxy_observe::process::start_time(me).unwrap();
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    let (mut store, _) = Store::open(dir.path()).unwrap();
    store
        .commit(&[
            Change::SetBootId(styxy_observe::process::boot_id()),
            Change::PutAllocation(allocation(3000, gone_pid, 1)),
            Change::PutAllocation(allocation(3001, me, start + 1)),
        ])
        .unwrap();
    drop(store);
    let before = store::read_state(dir.path()).unwrap();
    let run = health(dir.path(), NO_BUS, &["--dry-run"]);
    assert!(run.success, "{}", run.log);
    assert!(run.log.contains("port 3000 failed its health check: exited"), "{}", run.log);
    assert!(run.log.contains("port 3001 failed its health check: pid_reused"), "{}", run.log);
    assert!(run.log.contains("lock_id=00000000-0000-4000-8000-000000003001"), "{}", run.log);
    assert_eq!(store::read_state(dir.path()).unwrap(), before, "health never writes the state");

    let run = health(dir.path(), NO_BUS, &[]);
    assert!(!run.success, "a report nobody receives is a failed pass: {}", run.log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allocator_releases_what_health_reports() {
    let dir = tempfile::tempdir().unwrap();
    let bus = PrivateBus::start(&[]).unwrap();
    let (store, _) = Store::open(dir.path()).unwrap();
    let mut engine = Engine::new(Config::builtin(), store, None, Box::new(RealHost)).unwrap();
    let me = Caller { uid: styxy_proto::paths::uid(), pid: Some(std::process::id()), start_time: None };
    let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let request = |pid| AllocateRequest { service_type: Some("dev".into()), pid: Some(pid), ..Default::default() };
    let doomed = engine.allocate(&request(child.id()), &me).unwrap();
    let living = engine.allocate(&request(std::process::id()), &me).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let backend = EngineBackend::new(engine);
    let _conn = backend.serve(&bus).await.unwrap();

    let (path, address) = (dir.path().to_path_buf(), bus.address().to_string());
    let run = tokio::task::spawn_blocking(move || health(&path, &address, &[])).await.unwrap();
    assert!(run.success, "{}", run.log);
    assert!(run.log.contains(&format!("released port {} (exited)", doomed.port)), "{}", run.log);
    let engine = backend.engine();
    assert!(engine.state().by_lock_id(&doomed.lock_id).is_none());
    assert!(engine.state().by_lock_id(&living.lock_id).is_some(), "a live holder is never released");
}
