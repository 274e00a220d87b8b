//! The configuration as `GET /config` shows it, and undoing an
//! auto-allocated type. styxy-core reads the same types from its TOML
//! files; those files are checked key by key before they become these
//! types, so the types themselves accept unknown fields like every answer.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::timestamp::Timestamp;

/// How many instances of a service type may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InstanceBehavior {
    /// One instance machine-wide: a second request gets the running one's port.
    Single,
    #[default]
    Multi,
}

impl InstanceBehavior {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceBehavior::Single => "single",
            InstanceBehavior::Multi => "multi",
        }
    }
}

/// Where auto-allocation carves a new range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// Above the highest range in the window.
    After,
    /// Just below the lowest range that starts at or above `min_port`.
    Before,
    /// In the lowest free gap that fits.
    Smart,
}

impl Placement {
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::After => "after",
            Placement::Before => "before",
            Placement::Smart => "smart",
        }
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A named port range and how its ports are handed out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceType {
    #[serde(default)]
    pub description: String,
    /// Tried in order before the rest of the range; all inside the range.
    #[serde(default)]
    pub preferred_ports: Vec<u16>,
    /// Inclusive.
    #[serde(alias = "port_range")]
    pub range: [u16; 2],
    #[serde(default)]
    pub instance_behavior: InstanceBehavior,
    /// A singleton every user shares (a machine-wide service); otherwise each
    /// user has their own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub machine_wide: bool,
    #[serde(default)]
    pub examples: Vec<String>,
}

impl ServiceType {
    pub fn contains(&self, port: u16) -> bool {
        (self.range[0]..=self.range[1]).contains(&port)
    }
}

/// How a range is carved for a service type nobody configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoAllocation {
    pub enabled: bool,
    pub default_chunk_size: u16,
    pub placement: Placement,
    pub min_port: u16,
    pub max_port: u16,
    pub preserve_gaps: bool,
    pub gap_size: u16,
    /// In file order; the first whose pattern matches a name applies.
    pub rules: Vec<Rule>,
}

/// Auto-allocation settings for the type names a pattern matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// A glob over the whole type name: `*` matches any run of characters.
    pub pattern: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_size: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
}

/// `GET /config`: the service types in use (configured and auto-allocated)
/// and the auto-allocation settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigResponse {
    /// By name.
    pub service_types: BTreeMap<String, ServiceTypeView>,
    pub auto_allocation: AutoAllocation,
}

/// A service type as `GET /config` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceTypeView {
    #[serde(flatten)]
    pub service_type: ServiceType,
    /// Present (true) when auto-allocation created the type.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_allocated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_allocated_at: Option<Timestamp>,
}

/// `DELETE /config/auto-types/{type}`: the type is gone, its range free.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoAutoTypeResponse {
    pub success: bool,
    pub service_type: String,
    /// Inclusive.
    pub range: [u16; 2],
    pub message: String,
}
