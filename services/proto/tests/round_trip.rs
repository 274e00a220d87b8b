//! Every API type reads back what it writes, with its optional parts there
//! and not, and ignores a field it does not know (a newer allocator's).
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure
#![cfg(feature = "wire")]

use std::collections::BTreeMap;
use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use styxy_proto::api::*;
use styxy_proto::model::{Allocation, AuditEntry, Instance, LeaseKind, Owner, Source};
use styxy_proto::timestamp::Timestamp;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: T) {
    let encoded = serde_json::to_value(&value).unwrap();
    let decoded: T = serde_json::from_value(encoded.clone())
        .unwrap_or_else(|e| panic!("{value:?} encodes as {encoded} and does not read back: {e}"));
    assert_eq!(decoded, value, "through {encoded}");
    let mut newer = encoded.clone();
    newer.as_object_mut().expect("every body is an object").insert("field_of_a_newer_allocator".into(), json!(1));
    let decoded: T = serde_json::from_value(newer).unwrap_or_else(|e| panic!("an unknown field breaks {encoded}: {e}"));
    assert_eq!(decoded, value);
}

fn allocation(port: u16) -> Allocation {
    Allocation {
        lock_id: "0b6f4e2a-58d1-4c1e-9a57-2f7f5c1d9e11".into(),
        allocated_at: 1_767_225_600_000,
        ..Allocation::new(port, "dev", "web", Owner { uid: 1000, pid: None, start_time: None }, LeaseKind::Manual)
    }
}

fn full_allocation(port: u16) -> Allocation {
    Allocation {
        requested_port: Some(3000),
        instance_id: "claude-7c1e".into(),
        project_path: Some("/home/alice/shop".into()),
        owner: Owner { uid: 1000, pid: Some(4242), start_time: Some(1_234_567) },
        lease: LeaseKind::Session,
        source: Source::Preload,
        health_failures: 2,
        ..allocation(port)
    }
}

fn bare_view(port: u16) -> AllocationView {
    AllocationView { allocation: allocation(port).into(), user: None, process: None }
}

fn full_view(port: u16) -> AllocationView {
    AllocationView {
        allocation: full_allocation(port).into(),
        user: Some("alice".into()),
        process: Some("node".into()),
    }
}

fn bare_listener(port: u16) -> Listener {
    Listener {
        port,
        protocol: "tcp6".into(),
        address: "::".into(),
        uid: 1001,
        inode: 4321,
        user: None,
        pid: None,
        process: None,
        command: None,
        service_type: None,
        project: None,
    }
}

fn full_listener(port: u16) -> Listener {
    Listener {
        protocol: "tcp".into(),
        address: "127.0.0.1".into(),
        user: Some("alice".into()),
        pid: Some(4242),
        process: Some("node".into()),
        command: Some("node server.js".into()),
        service_type: Some("dev".into()),
        project: Some("/home/alice/shop".into()),
        ..bare_listener(port)
    }
}

fn service_type() -> ServiceType {
    ServiceType {
        description: "Frontend development servers".into(),
        preferred_ports: vec![3000, 3001],
        range: [3000, 3099],
        instance_behavior: InstanceBehavior::Single,
        examples: vec!["vite".into()],
    }
}

#[test]
fn allocating() {
    round_trip(AllocateRequest::default());
    round_trip(AllocateRequest {
        service_type: Some("dev".into()),
        service_name: Some("web".into()),
        preferred_port: Some(json!("3000")),
        instance_id: Some("claude-7c1e".into()),
        project_path: Some("/home/alice/shop".into()),
        dry_run: true,
        pid: Some(4242),
        lease: Some(LeaseKind::Session),
        source: Some(Source::Cli),
        handoff: true,
        scope: Some("/home/alice/shop-b".into()),
        listening: true,
        replaces: Some("7a4c2e19-6b0d-4f5e-9c3a-8d1e2f3a4b5c".into()),
    });
    round_trip(Holder { uid: 1000, ..Holder::default() });
    let holder = Holder {
        uid: 1000,
        user: Some("alice".into()),
        pid: Some(4100),
        process: Some("node".into()),
        service_type: Some("dev".into()),
        service_name: Some("blog".into()),
        project: Some("/home/alice/blog".into()),
        instance_id: Some("default".into()),
    };
    round_trip(holder.clone());
    let answer = AllocateResponse {
        success: true,
        port: 3001,
        lock_id: "0b6f4e2a-58d1-4c1e-9a57-2f7f5c1d9e11".into(),
        message: "Port 3001 allocated for dev service".into(),
        service_type: "dev".into(),
        service_name: "web".into(),
        existing: false,
        existing_instance_id: None,
        existing_pid: None,
        dry_run: false,
        requested_port: None,
        requested_port_holder: None,
        auto_allocated: false,
        allocated_range: None,
        chunk_size: None,
        placement: None,
        handoff_grace_secs: None,
    };
    round_trip(answer.clone());
    round_trip(AllocateResponse {
        existing: true,
        dry_run: true,
        requested_port: Some(3000),
        requested_port_holder: Some(holder),
        auto_allocated: true,
        allocated_range: Some([31030, 31039]),
        chunk_size: Some(10),
        placement: Some("after".into()),
        handoff_grace_secs: Some(30),
        ..answer
    });
    round_trip(ReleaseResponse {
        success: true,
        port: 3000,
        lock_id: "x".into(),
        message: "Port 3000 released".into(),
    });
}

#[test]
fn listing_and_checking() {
    round_trip(bare_view(3000));
    round_trip(full_view(3001));
    round_trip(AllocationsResponse { allocations: vec![] });
    round_trip(AllocationsResponse { allocations: vec![bare_view(3000), full_view(3001)] });
    round_trip(CheckResponse { port: 3005, available: true, allocated_to: None, system_usage: None });
    round_trip(CheckResponse {
        port: 3001,
        available: false,
        allocated_to: Some(full_view(3001)),
        system_usage: Some(vec![full_listener(3001), bare_listener(3001)]),
    });
    let reserved = PortUse { port: 3000, allocated_to: Some(bare_view(3000)), system_usage: None };
    let listened = PortUse { port: 3005, allocated_to: None, system_usage: Some(vec![bare_listener(3005)]) };
    round_trip(reserved.clone());
    round_trip(ScanResponse { scan_range: "3000-3010".into(), ports_in_use: vec![reserved, listened] });
    round_trip(CleanupRequest::default());
    round_trip(CleanupRequest { force: true });
    round_trip(CleanupResponse { success: true, cleaned: 3, message: "Force cleanup released 3 allocation(s)".into() });
    round_trip(SuggestResponse {
        service_type: "dev".into(),
        count: 2,
        message: "Found 2 available port(s)".into(),
        suggestions: vec![3002, 3003],
    });
}

#[test]
fn observing() {
    round_trip(bare_listener(5432));
    round_trip(full_listener(3000));
    round_trip(ObserveAllResponse { total: 2, observations: vec![full_listener(3000), bare_listener(5432)] });
    round_trip(ObservePortResponse { port: 3005, bound: false, listeners: vec![] });
    round_trip(ObservePortResponse { port: 3000, bound: true, listeners: vec![full_listener(3000)] });
    round_trip(ObservationStatsResponse { stats: ObservationStats::default(), timestamp: Timestamp(1) });
    round_trip(ObservationStatsResponse {
        stats: ObservationStats {
            total_ports: 2,
            by_service_type: BTreeMap::from([("dev".into(), 1), ("unknown".into(), 1)]),
            by_user: BTreeMap::from([("alice".into(), 2)]),
        },
        timestamp: Timestamp(1_767_225_600_000),
    });
}

#[test]
fn instances() {
    round_trip(RegisterInstanceRequest::default());
    round_trip(RegisterInstanceRequest {
        instance_id: Some("claude-7c1e".into()),
        working_directory: Some("/home/alice/shop".into()),
        project_root: Some("/home/alice/shop".into()),
        ttl_secs: Some(86_400),
        metadata: Some(json!({"agent": "claude-code"})),
    });
    round_trip(RegisterInstanceResponse {
        success: true,
        instance_id: "s".into(),
        message: "Instance s registered".into(),
    });
    round_trip(HeartbeatResponse {
        success: true,
        instance_id: "s".into(),
        last_heartbeat: Timestamp(1_767_225_900_000),
    });
    round_trip(EndInstanceResponse { success: true, instance_id: "s".into(), released: vec![3000, 3001] });
    round_trip(RegisterForObserverRequest::default());
    round_trip(RegisterForObserverRequest {
        instance_id: Some("o1".into()),
        pid: Some(4242),
        project_path: Some("/home/alice/shop".into()),
        metadata: Some(json!({"tool": "ldpreload"})),
    });
    round_trip(RegisterForObserverRequest { metadata: Some(Value::Null), ..RegisterForObserverRequest::default() });
    let instance = Instance {
        instance_id: "claude-7c1e".into(),
        uid: 1000,
        working_directory: None,
        project_root: Some("/home/alice/shop".into()),
        registered_at: Timestamp(1),
        last_heartbeat: Timestamp(2),
        ttl_secs: 600,
        metadata: json!({}),
    };
    round_trip(InstancesResponse {
        instances: vec![InstanceView {
            instance,
            active_allocations: vec!["0b6f4e2a-58d1-4c1e-9a57-2f7f5c1d9e11".into()],
        }],
    });
}

#[test]
fn configuration() {
    round_trip(service_type());
    let auto_allocation = AutoAllocation {
        enabled: true,
        default_chunk_size: 10,
        placement: Placement::After,
        min_port: 10_000,
        max_port: 49_151,
        preserve_gaps: true,
        gap_size: 10,
        rules: vec![
            Rule { pattern: "monitoring-*".into(), chunk_size: Some(20), placement: Some(Placement::Smart) },
            Rule { pattern: "database-*".into(), chunk_size: None, placement: None },
        ],
    };
    round_trip(auto_allocation.clone());
    let configured = ServiceTypeView { service_type: service_type(), auto_allocated: false, auto_allocated_at: None };
    let auto = ServiceTypeView {
        auto_allocated: true,
        auto_allocated_at: Some(Timestamp(1_767_225_600_000)),
        ..configured.clone()
    };
    round_trip(configured.clone());
    round_trip(auto.clone());
    round_trip(ConfigResponse {
        service_types: BTreeMap::from([("dev".into(), configured), ("newthing".into(), auto)]),
        auto_allocation,
    });
    round_trip(UndoAutoTypeResponse {
        success: true,
        service_type: "newthing".into(),
        range: [31030, 31039],
        message: "Removed".into(),
    });
}

#[test]
fn the_allocator_itself() {
    round_trip(StatusResponse {
        status: "running".into(),
        mode: "user".into(),
        pid: 3141,
        uptime: 12.5,
        allocations: 2,
        instances: 1,
        generation: 17,
        version: "0.1.0".into(),
    });
    round_trip(HealthResponse {
        status: "healthy".into(),
        timestamp: Timestamp(1_767_225_600_000),
        uptime: 0.25,
        version: "0.1.0".into(),
        mode: "system".into(),
        pid: 3141,
        allocations: 2,
        instances: 1,
        generation: 17,
        state_dir: "/var/lib/styxy".into(),
        service_types_loaded: 19,
        memory_rss_bytes: 8_388_608,
    });
    round_trip(MetricsResponse { counters: MetricCounters::default(), gauges: MetricGauges::default() });
    round_trip(MetricsResponse {
        counters: MetricCounters {
            http_requests_total: 120,
            allocations_total: 6,
            releases_total: 2,
            reclaimed_total: 1,
            auto_allocations_total: 1,
            client_errors_total: 3,
            server_errors_total: 0,
        },
        gauges: MetricGauges {
            allocations: 3.0,
            instances: 1.0,
            uptime_seconds: 3600.25,
            resident_memory_bytes: 8_388_608.0,
            open_connections: 1.0,
        },
    });
    round_trip(AuditResponse {
        recent_events: vec![AuditEntry {
            at: Timestamp(1),
            action: "auto_allocation".into(),
            service_type: "newthing".into(),
            range: Some([31030, 31039]),
            uid: 1000,
        }],
    });
    round_trip(CircuitBreakersResponse::default());
    round_trip(TokenResponse { success: true, uid: 1000, token: "7f3c".into() });
    round_trip(StopResponse { success: true, message: "allocator stopping".into() });
}

/// What the wire promises beyond reading back: which fields are left out,
/// and how loosely the original's routes read.
#[test]
fn shapes_clients_rely_on() {
    // Optional answer fields are absent, not null, except where documented.
    let free = CheckResponse { port: 3005, available: true, allocated_to: None, system_usage: None };
    assert_eq!(
        serde_json::to_value(free).unwrap(),
        json!({"port": 3005, "available": true, "allocated_to": null, "system_usage": null})
    );
    assert_eq!(serde_json::to_value(bare_listener(1)).unwrap().as_object().unwrap().len(), 5);
    // A service type lists flat, its origin beside its settings.
    let view =
        ServiceTypeView { service_type: service_type(), auto_allocated: true, auto_allocated_at: Some(Timestamp(5)) };
    let listed = serde_json::to_value(view).unwrap();
    assert_eq!(
        (&listed["range"], &listed["auto_allocated_at"]),
        (&json!([3000, 3099]), &json!("1970-01-01T00:00:00.005Z"))
    );
    // An empty cleanup body, and the original registration's loose fields.
    assert_eq!(serde_json::from_value::<CleanupRequest>(json!({})).unwrap(), CleanupRequest { force: false });
    let loose: RegisterForObserverRequest =
        serde_json::from_value(json!({"instance_id": 5, "pid": "x", "project_path": "/p", "metadata": null})).unwrap();
    assert_eq!(
        loose,
        RegisterForObserverRequest {
            instance_id: None,
            pid: None,
            project_path: Some("/p".into()),
            metadata: Some(Value::Null)
        }
    );
}

#[test]
fn errors() {
    for body in [
        json!({"success": false, "error": "not_found", "message": "instance s not found"}),
        json!({"success": false, "error": "range_exhausted", "message": "no free port",
            "context": {"service_type": "dev", "port_range": [3000, 3099]}}),
    ] {
        let error: ErrorBody = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(serde_json::to_value(error).unwrap(), body);
    }
}
