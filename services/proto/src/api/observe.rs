//! Listening sockets as the observer sees them, ours or not.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::timestamp::Timestamp;

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

/// `GET /observe/all`: every listener on the machine (other users' process
/// details only to root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObserveAllResponse {
    /// How many observations there are.
    pub total: u64,
    pub observations: Vec<Listener>,
}

/// `GET /observe/{port}`: the listeners on one port, one per address
/// family and address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservePortResponse {
    pub port: u16,
    /// Whether anything listens on it.
    pub bound: bool,
    pub listeners: Vec<Listener>,
}

/// `GET /observation-stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservationStatsResponse {
    pub stats: ObservationStats,
    pub timestamp: Timestamp,
}

/// Listeners counted by guessed service type and by user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservationStats {
    pub total_ports: u64,
    /// `unknown` counts the listeners whose type was not guessed.
    pub by_service_type: BTreeMap<String, u64>,
    /// By user name, or uid when the name is unknown.
    pub by_user: BTreeMap<String, u64>,
}
