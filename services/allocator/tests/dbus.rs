//! The system-mode allocator on a private bus: org.styxy.Allocator1 through
//! its proxy, signals, health reports, and /observe answered by
//! org.styxy.Observer1.
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use styxy_bus::daemon::Activity;
use styxy_bus::testing::PrivateBus;
use styxy_bus::{Allocator1Proxy, BusError, ListenerSource, ObserverService};
use styxy_core::config::Config;
use styxy_observe::ObserveError;
use styxy_proto::api::{ErrorCode, Listener};
use styxy_testkit::{Allocator, Sandbox, TEST_CONFIG};
use zbus::fdo::DBusProxy;
use zbus::{OwnedVariant, Variant};

/// Starts the allocator in system mode on `bus` (no TCP: tests run side by
/// side). It answers HTTP only once it owns its bus name.
fn start_allocator(sandbox: &Sandbox, bus: &PrivateBus, idle_secs: u64) -> Allocator {
    let idle = idle_secs.to_string();
    let args = ["--no-tcp", "--idle-timeout", &idle];
    Allocator::start_with(sandbox, &args, &[("DBUS_SYSTEM_BUS_ADDRESS", bus.address())])
}

/// The allocator serves HTTP before it has joined the bus: wait for its name
/// as a client activated by name would be queued until it appears.
async fn wait_for_name(conn: &zbus::Connection) {
    let dbus = DBusProxy::new(conn).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !owned(&dbus).await {
        assert!(Instant::now() < deadline, "the allocator never took its bus name");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn owned(dbus: &DBusProxy<'_>) -> bool {
    dbus.name_has_owner("org.styxy.Allocator1".try_into().unwrap()).await.unwrap()
}

fn options(pairs: &[(&str, Variant<'static>)]) -> HashMap<String, OwnedVariant> {
    pairs.iter().map(|(k, v)| (k.to_string(), OwnedVariant::try_from(v.try_clone().unwrap()).unwrap())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocate_list_release_and_changes_over_the_bus() {
    let bus = PrivateBus::start(&[]).unwrap();
    let sb = Sandbox::with_config(TEST_CONFIG);
    let _allocator = start_allocator(&sb, &bus, 0);
    let conn = bus.connect().await.unwrap();
    wait_for_name(&conn).await;
    let proxy = Allocator1Proxy::new(&conn).await.unwrap();
    let mut changes = proxy.receive_allocations_changed().await.unwrap();
    let before = proxy.generation().await.unwrap();

    let manual = [("service_name", Variant::from("web")), ("lease", Variant::from("manual"))];
    let (port, lock_id, service_type, service_name, existing, requested, message) =
        proxy.allocate("dev", options(&manual)).await.unwrap();
    assert!((3000..=3099).contains(&port), "{port}");
    assert_eq!((service_type.as_str(), service_name.as_str(), existing, requested), ("dev", "web", false, 0));
    assert!(message.contains(&port.to_string()), "{message}");

    let signal = tokio::time::timeout(Duration::from_secs(5), changes.next()).await.unwrap().unwrap();
    let generation = signal.args().unwrap().generation;
    assert!(generation > before, "{generation} after {before}");
    assert_eq!(proxy.generation().await.unwrap(), generation);

    let listed = proxy.list().await.unwrap();
    let mine = listed.iter().find(|a| a.lock_id == lock_id).expect("listed");
    assert_eq!((mine.port, mine.lease.as_str(), mine.source.as_str()), (port, "manual", "dbus"));
    assert_eq!(mine.uid, styxy_proto::paths::uid());

    // An HTTP allocation is announced on the bus too.
    let (_, over_http) = sb.post("/allocate", &serde_json::json!({"service_type": "api", "lease": "manual"}));
    tokio::time::timeout(Duration::from_secs(5), changes.next()).await.unwrap().unwrap();
    assert!(proxy.list().await.unwrap().iter().any(|a| a.lock_id == over_http["lock_id"] && a.source == "api"));

    assert_eq!(proxy.release(&lock_id).await.unwrap(), port);
    tokio::time::timeout(Duration::from_secs(5), changes.next()).await.unwrap().unwrap();
    assert!(proxy.list().await.unwrap().iter().all(|a| a.lock_id != lock_id));

    // Refusals keep the engine's codes.
    let e = proxy.release(&lock_id).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotFound), "{e:?}");
    let e = proxy.allocate("no-such-type", options(&[])).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UnknownServiceType), "{e:?}");
    let e = proxy.allocate("dev", options(&[("colour", Variant::from("red"))])).await.unwrap_err();
    assert!(matches!(&e, BusError::InvalidField(m) if m.contains("colour")), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_are_counted_and_release_at_the_limit() {
    let bus = PrivateBus::start(&[]).unwrap();
    let sb = Sandbox::with_config(TEST_CONFIG);
    let _allocator = start_allocator(&sb, &bus, 0);
    let conn = bus.connect().await.unwrap();
    wait_for_name(&conn).await;
    let proxy = Allocator1Proxy::new(&conn).await.unwrap();
    let owned_by_me = [("pid", Variant::from(std::process::id()))];
    let (port, lock_id, ..) = proxy.allocate("dev", options(&owned_by_me)).await.unwrap();

    let silent = vec![(port, lock_id.clone(), "not_listening".to_string())];
    for _ in 0..2 {
        assert!(proxy.report_health(silent.clone(), vec![]).await.unwrap().is_empty(), "counted, not released");
    }
    let healthy = vec![(port, lock_id.clone(), "healthy".to_string())];
    proxy.report_health(healthy, vec![]).await.unwrap();
    for _ in 0..2 {
        assert!(proxy.report_health(silent.clone(), vec![]).await.unwrap().is_empty(), "the count was reset");
    }
    let released = proxy.report_health(silent, vec![]).await.unwrap();
    assert_eq!(released, vec![(port, lock_id.clone(), "not_listening".to_string())], "third failure in a row");

    // A death the engine cannot confirm frees nothing.
    let (port, lock_id, ..) = proxy.allocate("dev", options(&owned_by_me)).await.unwrap();
    let dead = vec![(port, lock_id.clone(), "exited".to_string())];
    assert!(proxy.report_health(dead, vec!["gone-session".into()]).await.unwrap().is_empty());
    assert!(proxy.list().await.unwrap().iter().any(|a| a.lock_id == lock_id));

    let e = proxy.report_health(vec![(port, lock_id, "tired".into())], vec![]).await.unwrap_err();
    assert!(matches!(e, BusError::InvalidField(_)), "{e:?}");
    assert_eq!(proxy.reload().await.unwrap(), ("clean".to_string(), vec![]), "a sound state needs no repair");
    assert_eq!(proxy.repair().await.unwrap(), ("clean".to_string(), vec![]));
}

/// Listeners as the real observer service would report them: one on any
/// port asked about, of this test's uid, with a pid and a process name the
/// allocator could not have found itself.
struct Canned {
    pid: u32,
}

impl ListenerSource for Canned {
    fn listeners(&mut self) -> Result<Vec<Listener>, ObserveError> {
        self.listeners_on(1)
    }

    fn listeners_on(&mut self, port: u16) -> Result<Vec<Listener>, ObserveError> {
        Ok(vec![Listener {
            port,
            protocol: "tcp".into(),
            address: "127.0.0.1".into(),
            uid: styxy_proto::paths::uid(),
            inode: 1,
            user: None,
            pid: Some(self.pid),
            process: Some("from-observer1".into()),
            command: None,
            service_type: None,
            project: None,
        }])
    }
}

/// Serves `source` as org.styxy.Observer1 on `bus` until dropped.
async fn serve_observer(bus: &PrivateBus, source: Canned) -> zbus::Connection {
    let service = ObserverService::new(source, Config::builtin(), bus.path("state"), Arc::new(Activity::default()));
    zbus::connection::Builder::address(bus.address())
        .serve_at("/org/styxy/Observer1", service)
        .name("org.styxy.Observer1")
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observation_goes_through_the_observer_service() {
    let bus = PrivateBus::start(&[]).unwrap();
    let _observer = serve_observer(&bus, Canned { pid: 1 }).await;
    let sb = Sandbox::with_config(TEST_CONFIG);
    let _allocator = start_allocator(&sb, &bus, 0);

    // Blocking HTTP off the runtime that serves the observer.
    let (seen, all) = tokio::task::block_in_place(|| (sb.get("/observe/7777").1, sb.get("/observe/all").1));
    assert_eq!(seen["listeners"][0]["process"], "from-observer1", "{seen}");
    assert_eq!(seen["listeners"][0]["port"], 7777);
    assert_eq!(all["observations"][0]["process"], "from-observer1", "{all}");
}

/// System mode: the allocator cannot see which process of another user
/// listens, so a hand-off that a health report finds listened to is adopted
/// by the pid the observer service names, and freed when that process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_is_adopted_by_the_listener_the_observer_service_names() {
    let bus = PrivateBus::start(&[]).unwrap();
    let mut server = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    let _observer = serve_observer(&bus, Canned { pid: server.id() }).await;
    let sb = Sandbox::with_config(TEST_CONFIG);
    let _allocator = start_allocator(&sb, &bus, 0);
    let conn = bus.connect().await.unwrap();
    wait_for_name(&conn).await;
    let proxy = Allocator1Proxy::new(&conn).await.unwrap();
    let handoff = serde_json::json!({"service_type": "dev", "service_name": "web", "handoff": true});
    let (_, r) = tokio::task::block_in_place(|| sb.post("/allocate", &handoff));
    let (port, lock_id) = (r["port"].as_u64().unwrap() as u16, r["lock_id"].as_str().unwrap().to_string());
    let holder = |list: &[styxy_bus::wire::AllocationRecord]| list.iter().find(|a| a.lock_id == lock_id).map(|a| a.pid);
    assert_eq!(holder(&proxy.list().await.unwrap()), Some(0), "no holder before the report");

    let listened = vec![(port, lock_id.clone(), "healthy".to_string())];
    assert!(proxy.report_health(listened, vec![]).await.unwrap().is_empty());
    assert_eq!(holder(&proxy.list().await.unwrap()), Some(server.id()), "the observer's listener holds it");

    server.kill().unwrap();
    server.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while holder(&proxy.list().await.unwrap()).is_some() {
        assert!(Instant::now() < deadline, "port {port} still held after its holder exited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_calls_keep_the_allocator_alive_and_it_leaves_the_bus_when_idle() {
    let bus = PrivateBus::start(&[]).unwrap();
    let sb = Sandbox::with_config(TEST_CONFIG);
    let mut allocator = start_allocator(&sb, &bus, 2);
    let conn = bus.connect().await.unwrap();
    wait_for_name(&conn).await;
    let proxy = Allocator1Proxy::new(&conn).await.unwrap();
    let dbus = DBusProxy::new(&conn).await.unwrap();
    for _ in 0..6 {
        proxy.list().await.unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert!(owned(&dbus).await, "4 s of calls 0.7 s apart: still running with a 2 s idle timeout");
    let deadline = Instant::now() + Duration::from_secs(15);
    while owned(&dbus).await {
        assert!(Instant::now() < deadline, "the allocator did not step down when idle");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = allocator.wait_exit(Duration::from_secs(15)).expect("the allocator exits after leaving the bus");
    assert!(status.success(), "{status}");
}
