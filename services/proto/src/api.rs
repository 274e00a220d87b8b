//! The HTTP API's bodies, shared by the allocator (which produces them) and
//! every client (CLI, hooks, bus, preload tests), so field names cannot
//! drift: each route's request and answer is one type here, grouped by
//! concern, and docs/api.md shows an example of each (checked by
//! tests/api_doc.rs). Paths and field names follow the original Styxy, with
//! `lock_id` everywhere and every error as [`ErrorBody`].
//!
//! Answers are decoded leniently: an unknown field is ignored, so a client
//! keeps working against a newer allocator that adds one.

mod allocations;
mod config;
mod daemon;
mod instances;
mod observe;

pub use allocations::*;
pub use config::*;
pub use daemon::*;
pub use instances::*;
pub use observe::*;

use serde::{Deserialize, Serialize};

/// Largest request body accepted (413 above).
pub const MAX_BODY: usize = 16 * 1024;

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
    /// Not an HTTP/1.1 request the allocator can read (request line, path,
    /// header or Content-Length).
    BadRequest,
    /// The request's header is larger than the allocator reads.
    HeaderTooLarge,
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
            ErrorCode::BadRequest => 400,
            ErrorCode::HeaderTooLarge => 431,
        }
    }
}
