//! The allocator itself: whether it runs, its health and counters, its
//! audit trail, its tokens, and stopping it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::model::AuditEntry;
use crate::timestamp::Timestamp;

/// `GET /status` (no authentication).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusResponse {
    /// Always `running`.
    pub status: String,
    /// `user` or `system`.
    pub mode: String,
    pub pid: u32,
    /// Seconds since the allocator started.
    pub uptime: f64,
    /// Live allocations.
    pub allocations: u64,
    /// Registered instances.
    pub instances: u64,
    /// The state's generation: grows with every change.
    pub generation: u64,
    pub version: String,
}

/// `GET /health`: [`StatusResponse`]'s figures and a few more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthResponse {
    /// Always `healthy`: an allocator that answers is.
    pub status: String,
    pub timestamp: Timestamp,
    /// Seconds since the allocator started.
    pub uptime: f64,
    pub version: String,
    /// `user` or `system`.
    pub mode: String,
    pub pid: u32,
    pub allocations: u64,
    pub instances: u64,
    pub generation: u64,
    pub state_dir: PathBuf,
    pub service_types_loaded: u64,
    pub memory_rss_bytes: u64,
}

/// `GET /metrics` as JSON (`?format=json` or `Accept: application/json`;
/// otherwise the same figures come as Prometheus text, each name prefixed
/// with `styxy_`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsResponse {
    pub counters: MetricCounters,
    pub gauges: MetricGauges,
}

/// Monotonic counters: never reset while the allocator runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricCounters {
    pub http_requests_total: u64,
    pub allocations_total: u64,
    pub releases_total: u64,
    pub reclaimed_total: u64,
    pub auto_allocations_total: u64,
    pub client_errors_total: u64,
    pub server_errors_total: u64,
}

/// Values sampled when asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricGauges {
    pub allocations: f64,
    pub instances: f64,
    pub uptime_seconds: f64,
    pub resident_memory_bytes: f64,
    pub open_connections: f64,
}

/// `GET /audit`: the auto-allocation trail, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditResponse {
    pub recent_events: Vec<AuditEntry<Timestamp>>,
}

/// `GET /circuit-breakers`, kept for the original's clients.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitBreakersResponse {
    /// Always empty: nothing trips.
    pub circuit_breakers: BTreeMap<String, serde_json::Value>,
}

/// `GET /token` (Unix socket only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub success: bool,
    pub uid: u32,
    pub token: String,
}

/// `POST /daemon/stop` (user mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopResponse {
    pub success: bool,
    pub message: String,
}
