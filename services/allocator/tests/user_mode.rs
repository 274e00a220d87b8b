//! User mode: no bus, no timers. The allocator runs the health pass itself.

use std::time::{Duration, Instant};

use serde_json::json;
use styxy_core::store;
use styxy_testkit::{Allocator, Sandbox, TEST_CONFIG};

#[test]
fn the_in_process_health_pass_ends_a_session_whose_heartbeat_stopped() {
    let sb = Sandbox::with_config(TEST_CONFIG);
    let mut allocator = Allocator::start(&sb);
    sb.write_config(&format!("{TEST_CONFIG}\n[health]\nperiod_secs = 1\n"));
    allocator.kill9();
    allocator.restart();

    sb.post("/instance/register", &json!({"instance_id": "agent-1", "ttl_secs": 1}));
    let (status, body) =
        sb.post("/allocate", &json!({"service_type": "bulk", "lease": "session", "instance_id": "agent-1"}));
    assert_eq!(status, 200, "{body}");
    let lock_id = body["lock_id"].as_str().unwrap().to_string();

    // Nobody asks the allocator anything from now on: only its own pass
    // can notice. Watch the state on disk, which the release rewrites.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = store::read_state(&sb.state_dir()).unwrap();
        if state.by_lock_id(&lock_id).is_none() {
            assert!(state.instances.is_empty(), "the expired instance goes with it");
            break;
        }
        assert!(Instant::now() < deadline, "the session's port was never released");
        std::thread::sleep(Duration::from_millis(100));
    }
}
