//! First D-Bus call to a stopped observer: activation by the bus, start-up,
//! the answer. Goal: ≤ 100 ms.
//!
//!   cargo bench -p styxy-observer --bench activation
//!
//! A private dbus-daemon activates the freshly built styxy-observer (idle
//! timeout 1 s); each sample waits for the previous observer to leave the
//! bus, then times Observe(port) for a port this process listens on. Warm
//! calls (observer already running) are timed for comparison. Prints
//! percentiles; asserts nothing. Set STYXY_BENCH_SAMPLES to change the
//! number of cold starts (default 20).
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

use std::net::TcpListener;
use std::time::{Duration, Instant};

use styxy_bus::Observer1Proxy;
use styxy_bus::testing::PrivateBus;
use styxy_testkit::percentiles::report;
use zbus::fdo::DBusProxy;

fn main() {
    // SAFETY: no other thread exists yet. The observers the bus starts
    // inherit it: only errors on the terminal.
    unsafe { std::env::set_var("STYXY_LOG", "error") };
    let samples: usize = std::env::var("STYXY_BENCH_SAMPLES").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let state = tempfile::tempdir().unwrap();
    let exec =
        format!("{} --idle-timeout 1 --state-dir {}", env!("CARGO_BIN_EXE_styxy-observer"), state.path().display());
    let bus = PrivateBus::start(&[("org.styxy.Observer1", exec)]).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let conn = bus.connect().await.unwrap();
        let dbus = DBusProxy::new(&conn).await.unwrap();
        let observer = Observer1Proxy::new(&conn).await.unwrap();
        let name = || "org.styxy.Observer1".try_into().unwrap();
        let (mut cold, mut warm) = (Vec::new(), Vec::new());
        for _ in 0..samples {
            while dbus.name_has_owner(name()).await.unwrap() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let start = Instant::now();
            let seen = observer.observe(port).await.unwrap();
            cold.push(start.elapsed());
            assert_eq!(seen.len(), 1, "the observer must see this process's listener");
            for _ in 0..5 {
                let start = Instant::now();
                observer.observe(port).await.unwrap();
                warm.push(start.elapsed());
            }
        }
        report("first call, observer stopped", &mut cold);
        report("call to a running observer", &mut warm);
    });
}
