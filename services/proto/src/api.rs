//! The HTTP API's bodies, shared by the allocator (which produces them) and
//! every client (CLI, hooks, preload tests), so field names cannot drift.
//! Paths and field names follow the original Styxy (seed-spec §2), with
//! `lock_id` everywhere and every error as [`ErrorBody`].

use crate::model::{Allocation, Instance, LeaseKind, Source};
use serde::{Deserialize, Serialize};

/// Largest request body accepted (413 above).
pub const MAX_BODY: usize = 16 * 1024;

/// `POST /allocate`. Unknown fields are ignored, wrong types are a 400.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
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
}

/// `DELETE /allocate/{lock_id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseResponse {
    pub success: bool,
    pub port: u16,
    pub lock_id: String,
    pub message: String,
}

/// An allocation as listed: the stored record plus what the listing derived.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AllocationView {
    #[serde(flatten)]
    pub allocation: Allocation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
}

/// `GET /allocations`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AllocationsResponse {
    pub allocations: Vec<AllocationView>,
}

/// A listening socket seen by the observer, ours or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    pub port: u16,
    /// "tcp" or "tcp6".
    pub protocol: String,
    pub address: String,
    pub uid: u32,
    pub inode: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

/// `GET /check/{port}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckResponse {
    pub port: u16,
    pub available: bool,
    pub allocated_to: Option<AllocationView>,
    pub system_usage: Option<Vec<Listener>>,
}

/// `POST /instance/register`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RegisterInstanceRequest {
    pub instance_id: Option<String>,
    #[serde(default)]
    pub working_directory: Option<String>,
    #[serde(default)]
    pub project_root: Option<String>,
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

/// `GET /instance/list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstancesResponse {
    pub instances: Vec<Instance>,
}

/// `GET /token` (Unix socket only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub success: bool,
    pub uid: u32,
    pub token: String,
}

/// Every error the API returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub success: bool,
    /// Stable machine code, one of [`ErrorCode`].
    pub error: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<serde_json::Value>,
}

/// Stable error codes (the `error` field of every error body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidJson,
    InvalidField,
    InvalidPort,
    UnknownServiceType,
    RangeExhausted,
    Conflict,
    QuotaExceeded,
    NotFound,
    Forbidden,
    Unauthorized,
    PayloadTooLarge,
    MethodNotAllowed,
    Timeout,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidJson | ErrorCode::InvalidField | ErrorCode::InvalidPort => 400,
            ErrorCode::UnknownServiceType => 400,
            ErrorCode::RangeExhausted | ErrorCode::Conflict => 409,
            ErrorCode::QuotaExceeded => 429,
            ErrorCode::NotFound => 404,
            ErrorCode::Forbidden => 403,
            ErrorCode::Unauthorized => 401,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Timeout => 408,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }
}
