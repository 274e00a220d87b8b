//! Instances: the registered client sessions that session leases follow.

use serde::de::{DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};

use crate::model::Instance;
use crate::timestamp::Timestamp;

/// `POST /instance/register`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstancesResponse {
    pub instances: Vec<InstanceView>,
}

/// An instance as listed: the stored record, as the viewer may see it
/// (another user's shows no id, paths or metadata), plus its user's name,
/// the service types it holds ports of and its live allocations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceView {
    #[serde(flatten)]
    pub instance: Instance<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default)]
    pub service_types: Vec<String>,
    /// Lock ids of the allocations made under this instance id (the
    /// original's field, which it never filled; empty for another user's).
    #[serde(default)]
    pub active_allocations: Vec<String>,
}

/// `POST /instance/register` and `POST /register-instance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterInstanceResponse {
    pub success: bool,
    pub instance_id: String,
    pub message: String,
}

/// `PUT /instance/{id}/heartbeat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    pub success: bool,
    pub instance_id: String,
    pub last_heartbeat: Timestamp,
}

/// `DELETE /instance/{id}`: the instance ended and its session leases freed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndInstanceResponse {
    pub success: bool,
    pub instance_id: String,
    /// The ports released with it.
    pub released: Vec<u16>,
}

/// `POST /register-instance`, the original's observer-only registration,
/// now the same expiring registry as `/instance/*`. As in the original, a
/// field of the wrong JSON type counts as absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterForObserverRequest {
    /// Default: `ldpreload-{pid}`.
    #[serde(default, deserialize_with = "loose", skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(default, deserialize_with = "loose", skip_serializing_if = "Option::is_none")]
    pub pid: Option<u64>,
    /// Becomes the instance's working directory.
    #[serde(default, deserialize_with = "loose", skip_serializing_if = "Option::is_none")]
    pub project_path: Option<String>,
    /// Kept as sent, `null` included (registration wants an object).
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

/// The value when it has the field's type, else none.
fn loose<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(value).ok())
}

/// Any value that is there, `null` too (plain `Option` reads `null` as none).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}
