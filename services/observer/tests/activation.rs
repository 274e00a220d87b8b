//! The observer on a private bus, started by D-Bus activation as the system
//! bus would start it (by name, from a .service file).
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

use std::net::TcpListener;
use std::time::{Duration, Instant};

use styxy_bus::testing::PrivateBus;
use styxy_bus::{BusError, Observer1Proxy};
use styxy_core::store::Store;
use styxy_proto::api::ErrorCode;
use styxy_proto::model::{Allocation, Change, LeaseKind, Owner};
use zbus::fdo::DBusProxy;

struct Setup {
    bus: PrivateBus,
    _state: tempfile::TempDir,
}

/// A bus that activates the freshly built observer; its state directory
/// holds one manual allocation on port 3000.
fn setup() -> Setup {
    let state = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(state.path()).unwrap();
    let held = Allocation::new(3000, "dev", "web", Owner { uid: 0, pid: None, start_time: None }, LeaseKind::Manual);
    store.commit(&[Change::SetBootId(styxy_observe::process::boot_id()), Change::PutAllocation(held)]).unwrap();
    drop(store);
    let exec =
        format!("{} --idle-timeout 1 --state-dir {}", env!("CARGO_BIN_EXE_styxy-observer"), state.path().display());
    let bus = PrivateBus::start(&[("org.styxy.Observer1", exec)]).unwrap();
    Setup { bus, _state: state }
}

async fn running(bus: &DBusProxy<'_>) -> bool {
    bus.name_has_owner("org.styxy.Observer1".try_into().unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_observer_starts_on_the_first_call_answers_and_leaves_when_idle() {
    let setup = setup();
    let conn = setup.bus.connect().await.unwrap();
    let bus = DBusProxy::new(&conn).await.unwrap();
    let observer = Observer1Proxy::new(&conn).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    assert!(!running(&bus).await, "nothing runs before the first call");

    let seen = observer.observe(port).await.unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!((seen[0].port, seen[0].pid, seen[0].protocol.as_str()), (port, std::process::id(), "tcp"));
    assert_eq!(seen[0].uid, styxy_proto::paths::uid());
    assert!(observer.listeners().await.unwrap().iter().any(|l| l.port == port && l.pid == std::process::id()));

    // Idle for a second: it steps down, and the next call starts it again.
    let deadline = Instant::now() + Duration::from_secs(15);
    while running(&bus).await {
        assert!(Instant::now() < deadline, "the observer did not exit when idle");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(observer.observe(port).await.unwrap().len(), 1, "activated again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suggestions_skip_allocated_ports_and_unknown_types_are_refused() {
    let setup = setup();
    let conn = setup.bus.connect().await.unwrap();
    let observer = Observer1Proxy::new(&conn).await.unwrap();
    let ports = observer.suggest("dev", 5).await.unwrap();
    assert_eq!(ports.len(), 5, "{ports:?}");
    assert!(ports.iter().all(|p| (3001..=3099).contains(p)), "3000 is allocated: {ports:?}");

    let e = observer.suggest("no-such-type", 5).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UnknownServiceType), "{e:?}");
    let e = observer.suggest("dev", 0).await.unwrap_err();
    assert!(matches!(e, BusError::InvalidField(_)), "{e:?}");
}
