//! Checking what clients send before anything is written: ports, names and
//! paths, with refusals that show untrusted text safely.

use styxy_proto::api::ErrorCode;
use styxy_proto::error::{ApiError, printable};

use super::Result;

pub(super) fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidField, message)
}

/// How many characters of an untrusted value a refusal shows.
pub(super) const SHOWN: usize = 100;

/// A port as a number or a numeric string, 1..=65535.
pub fn parse_port(v: &serde_json::Value) -> Result<u16> {
    let n = match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.len() <= 5 => {
            s.parse().ok()
        }
        _ => None,
    };
    match n {
        Some(p @ 1..=65535) => Ok(p as u16),
        _ => Err(ApiError::new(
            ErrorCode::InvalidPort,
            format!("invalid port {}: must be a whole number from 1 to 65535", printable(&v.to_string(), SHOWN)),
        )),
    }
}

pub(super) fn optional_name<'a>(v: Option<&'a str>, field: &str, max: usize, extra: &str) -> Result<Option<&'a str>> {
    let Some(v) = v.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let ok = v.chars().count() <= max && v.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(c));
    if ok {
        Ok(Some(v))
    } else {
        Err(invalid(format!("{field} may contain only letters, digits and '{extra}', at most {max} characters")))
    }
}

/// A scope is an absolute directory path (as `styxy_proto::scope` finds it).
pub(super) fn validate_scope(p: &str) -> Result<String> {
    if !p.starts_with('/') || p.len() > styxy_proto::scope::MAX_SCOPE_LEN || p.chars().any(|c| c.is_control()) {
        return Err(invalid(format!(
            "scope must be an absolute path of at most {} bytes without control characters",
            styxy_proto::scope::MAX_SCOPE_LEN
        )));
    }
    Ok(p.to_string())
}

pub(super) fn validate_path(p: &str) -> Result<String> {
    if p.chars().count() > 1000 || p.chars().any(|c| c.is_control()) {
        return Err(invalid("paths must be at most 1000 characters without control characters"));
    }
    Ok(p.to_string())
}
