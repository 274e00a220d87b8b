//! User mode: no bus, no timers. The allocator runs the health pass itself.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use styxy_core::store;
use support::{ALLOCATOR, Allocator, http};

#[test]
fn the_in_process_health_pass_ends_a_session_whose_heartbeat_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[health]\nperiod_secs = 1\n").unwrap();
    let (socket, state) = (dir.path().join("api.sock"), dir.path().join("state"));
    let child = Command::new(ALLOCATOR)
        .arg("--user")
        .arg("--socket")
        .arg(&socket)
        .arg("--state-dir")
        .arg(&state)
        .args(["--idle-timeout", "0"])
        .env("STYXY_CONFIG", &config)
        .env("STYXY_SYSTEM_CONFIG", dir.path().join("none.toml"))
        // No bus in user mode, even if one is at hand.
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent")
        .spawn()
        .unwrap();
    let allocator = Allocator { child, socket };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !allocator.socket.exists() {
        assert!(Instant::now() < deadline, "the allocator never bound its socket");
        std::thread::sleep(Duration::from_millis(20));
    }

    http(&allocator.socket, "POST", "/instance/register", r#"{"instance_id":"agent-1","ttl_secs":1}"#);
    let body = http(
        &allocator.socket,
        "POST",
        "/allocate",
        r#"{"service_type":"dev","lease":"session","instance_id":"agent-1"}"#,
    );
    let lock_id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["lock_id"].as_str().unwrap().to_string();

    // Nobody asks the allocator anything from now on: only its own pass
    // can notice. Watch the state file, which the pass's release rewrites.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = store::read_state(&state).unwrap();
        if state.by_lock_id(&lock_id).is_none() {
            assert!(state.instances.is_empty(), "the expired instance goes with it");
            break;
        }
        assert!(Instant::now() < deadline, "the session's port was never released");
        std::thread::sleep(Duration::from_millis(100));
    }
}
