//! Ports: allocating, releasing, listing, checking, scanning, cleaning up
//! and suggesting.

use serde::{Deserialize, Serialize};

use super::Listener;
use crate::model::{Allocation, LeaseKind, Source};
use crate::timestamp::Timestamp;

/// `POST /allocate`. Unknown fields are ignored, wrong types are a 400.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AllocateRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// A number or a numeric string (the original accepted both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_port: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_path: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Owner process (same uid as the caller, or any for root). Default: the
    /// caller's own pid on the Unix socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// No owner process yet (the client found none of the caller's uid
    /// above it): a process lease held for `health.handoff_grace_secs` and
    /// adopted by the first process of the caller's uid that listens on
    /// the port. Excludes `pid`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub handoff: bool,
    /// The caller's scope (an absolute directory, docs/design.md "Scopes"):
    /// a preload move records (scope, requested port) -> the port granted,
    /// and the scope's earlier port for the requested one is tried first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The caller already listens on `preferred_port` (the preload under
    /// `styxy run`): record exactly that port as the caller's process lease
    /// (a conflict when another user's allocation holds it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub listening: bool,
    /// With `listening`: the lock id of the caller's user's `styxy run`
    /// reservation to give back in the same commit unless a socket of that
    /// user listens on its port (the reservation follows the listener).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

/// Who holds a port, as shown to a client (details only to root or the
/// holder's own user).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub uid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocateResponse {
    pub success: bool,
    pub port: u16,
    pub lock_id: String,
    pub message: String,
    pub service_type: String,
    pub service_name: String,
    /// Singleton reuse: the existing holder's port was returned.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub existing: bool,
    /// Singleton reuse: the instance of the allocation joined (the
    /// original's camelCase name; only when the holder is the caller's user).
    #[serde(rename = "existingInstanceId", default, skip_serializing_if = "Option::is_none")]
    pub existing_instance_id: Option<String>,
    /// Singleton reuse: the joined allocation's owner process (same rule).
    #[serde(rename = "existingPid", default, skip_serializing_if = "Option::is_none")]
    pub existing_pid: Option<u32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Set when the client asked for a port and got another one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_port: Option<u16>,
    /// Who holds the requested port, when it was busy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_port_holder: Option<Holder>,
    /// Present when this request created the service type.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_allocated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocated_range: Option<[u16; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_size: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
    /// A hand-off (`handoff` asked): how long the port waits for a
    /// listener of the caller's uid before it is freed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff_grace_secs: Option<u64>,
}

impl AllocateResponse {
    /// A successful answer for `allocation` that says `message` and nothing
    /// more (struct update syntax sets the rest).
    pub fn of(allocation: &Allocation, message: String) -> AllocateResponse {
        AllocateResponse {
            success: true,
            port: allocation.port,
            lock_id: allocation.lock_id.clone(),
            message,
            service_type: allocation.service_type.clone(),
            service_name: allocation.service_name.clone(),
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
        }
    }
}

/// `DELETE /allocate/{lock_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseResponse {
    pub success: bool,
    pub port: u16,
    pub lock_id: String,
    pub message: String,
}

/// An allocation as listed: the stored record plus what the listing derived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationView {
    #[serde(flatten)]
    pub allocation: Allocation<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
}

/// `GET /allocations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationsResponse {
    pub allocations: Vec<AllocationView>,
}

/// `GET /check/{port}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResponse {
    pub port: u16,
    pub available: bool,
    pub allocated_to: Option<AllocationView>,
    pub system_usage: Option<Vec<Listener>>,
}

/// One port in use, as `/scan` lists it: reserved by Styxy, listened on, or
/// both. Both fields are always present (`null` when not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortUse {
    pub port: u16,
    pub allocated_to: Option<AllocationView>,
    pub system_usage: Option<Vec<Listener>>,
}

/// `GET /scan?start=&end=`: the ports in use in a range of at most 1000.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanResponse {
    /// `START-END`, the range looked at (`end` clipped to 1000 ports).
    pub scan_range: String,
    /// By port.
    pub ports_in_use: Vec<PortUse>,
}

/// `POST /cleanup`. An empty body is `{}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupRequest {
    /// Frees all of the caller's allocations (root: everyone's), not only
    /// those of dead owners and expired sessions.
    #[serde(default)]
    pub force: bool,
}

/// `POST /cleanup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupResponse {
    pub success: bool,
    /// How many allocations were freed.
    pub cleaned: u64,
    pub message: String,
}

/// `GET /suggest/{service_type}?count=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuggestResponse {
    pub service_type: String,
    /// How many suggestions there are (at most the count asked for).
    pub count: u64,
    pub message: String,
    /// Free ports of the type, preferred ports first.
    pub suggestions: Vec<u16>,
}
