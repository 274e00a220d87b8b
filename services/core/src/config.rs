//! Styxy's configuration: service types, auto-allocation settings and a few
//! daemon knobs, read from three layers merged field by field:
//!
//! 1. the built-ins ([`BUILTIN_TOML`], printed by `styxy config show`),
//! 2. the system file (`/etc/styxy/config.toml`, see [`paths::system_config_file`]),
//! 3. the user file (`~/.config/styxy/config.toml`, see [`paths::user_config_file`]).
//!
//! A later layer only needs the keys it changes: tables merge key by key, any
//! other value (including arrays such as `preferred_ports` or the rules list)
//! replaces the earlier one. A service type a file introduces must carry its
//! `range`. Missing files are fine.
//!
//! ```toml
//! # Widen dev; everything else about dev stays as built in.
//! [service_types.dev]
//! range = [3000, 3099]            # inclusive; `port_range` is accepted too
//!
//! # A new type: range required; the rest defaults to multi, no preferred ports.
//! [service_types.grafana]
//! description = "Grafana dashboards"
//! preferred_ports = [13000]
//! range = [13000, 13019]
//! instance_behavior = "single"    # or "multi"
//! examples = ["grafana"]
//!
//! [auto_allocation]
//! enabled = true
//! default_chunk_size = 10         # 1..=1000
//! placement = "after"             # after | before | smart
//! min_port = 10000
//! max_port = 49151
//! preserve_gaps = true
//! gap_size = 10                   # 0..=1000
//!
//! # A file's rules list replaces the built-in one; the first match wins.
//! [[auto_allocation.rules]]
//! pattern = "monitoring-*"
//! chunk_size = 20
//! placement = "smart"
//!
//! [health]
//! period_secs = 15
//! max_failures = 3
//! handoff_grace_secs = 30
//!
//! [limits]
//! max_allocations_per_user = 1000
//! max_connections = 512
//!
//! [instances]
//! ttl_secs = 120
//!
//! [allocator]
//! idle_timeout_secs = 300
//!
//! [api]
//! tcp = "127.0.0.1:9876"          # user mode: also serve loopback TCP (token); "" = off
//!
//! [preload]
//! never_move = [5432, "lockd"]    # ports and program names never moved nor redirected
//! ```
//!
//! Every problem is reported as a [`ConfigIssue`] naming the file, the dotted
//! field and the reason; a configuration with any issue is not used.

mod edit;
mod import;
mod merge;
mod schema;

pub use edit::set_user_auto_allocation_enabled;
pub use import::{Import, import_original};
pub use schema::{MAX_TYPE_NAME_LEN, valid_type_name};

use merge::{Merged, parse_layer, read_layers};
use schema::check_layer;
// The service types and auto-allocation settings are also what `GET /config`
// shows, so their one definition is in the wire contract.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
pub use styxy_proto::api::{AutoAllocation, InstanceBehavior, Placement, Rule, ServiceType};
use styxy_proto::model::AutoType;
use styxy_proto::paths;
use toml::Value;

/// The built-in layer, as TOML.
pub const BUILTIN_TOML: &str = include_str!("builtin.toml");

/// The name the built-in layer goes by in issues.
pub const BUILTIN_LABEL: &str = "<built-in>";

/// How many preferred ports an auto-allocated type gets (fewer if its range is
/// smaller: preferred ports never leave the range).
const AUTO_PREFERRED_PORTS: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub period_secs: u64,
    /// Consecutive failed checks after which an allocation is released.
    pub max_failures: u32,
    /// How long a reservation without its process waits for the first
    /// listener of its user to adopt it (docs/design.md, "Ownership").
    pub handoff_grace_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_allocations_per_user: usize,
    pub max_connections: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instances {
    /// Seconds without a heartbeat after which a session expires.
    pub ttl_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allocator {
    /// Seconds without a request after which the allocator exits.
    pub idle_timeout_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    /// User mode: a loopback `IP:PORT` to serve the token-authenticated API
    /// on besides the Unix socket (the original's clients talk TCP); empty
    /// for none. System mode's socket unit decides its own.
    pub tcp: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preload {
    /// What the preload never moves nor redirects.
    pub never_move: Vec<NeverMove>,
}

/// One `[preload] never_move` item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NeverMove {
    Port(u16),
    /// A program name as the kernel keeps it (`comm`).
    Program(String),
}

impl Preload {
    pub fn ports(&self) -> Vec<u16> {
        self.never_move.iter().filter_map(|n| if let NeverMove::Port(p) = n { Some(*p) } else { None }).collect()
    }

    pub fn programs(&self) -> Vec<&[u8]> {
        self.never_move
            .iter()
            .filter_map(|n| if let NeverMove::Program(p) = n { Some(p.as_bytes()) } else { None })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub service_types: BTreeMap<String, ServiceType>,
    pub auto_allocation: AutoAllocation,
    pub health: Health,
    pub limits: Limits,
    pub instances: Instances,
    pub allocator: Allocator,
    pub api: Api,
    pub preload: Preload,
}

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The file, or [`BUILTIN_LABEL`].
    pub file: PathBuf,
    /// Dotted path such as `service_types.dev.range`; empty when the problem
    /// concerns the whole file (unreadable, not TOML).
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.field, self.reason)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid configuration:{}", issue_lines(.0))]
    Invalid(Vec<ConfigIssue>),
}

fn issue_lines(issues: &[ConfigIssue]) -> String {
    issues.iter().map(|i| format!("\n  {i}")).collect()
}

impl ConfigError {
    fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ConfigError {
        let path = path.to_path_buf();
        move |source| ConfigError::Io { op, path, source }
    }

    /// The error as issues, for reports that list everything at once.
    fn into_issues(self) -> Vec<ConfigIssue> {
        match self {
            ConfigError::Io { op, path, source } => {
                vec![ConfigIssue { file: path, field: String::new(), reason: format!("cannot {op}: {source}") }]
            }
            ConfigError::Invalid(issues) => issues,
        }
    }
}

impl Config {
    /// The built-in layer alone.
    pub fn builtin() -> Config {
        let layers = [(PathBuf::from(BUILTIN_LABEL), BUILTIN_TOML.to_owned())];
        match Config::from_layers(&layers) {
            Ok(config) => config,
            // A unit test keeps the built-ins valid.
            Err(issues) => panic!("built-in configuration is invalid:{}", issue_lines(&issues)),
        }
    }

    /// Built-ins, then the system file, then the user file, at their default paths.
    pub fn load() -> Result<Config, ConfigError> {
        let user = paths::user_config_file();
        Config::load_from(&paths::system_config_file(), user.as_deref())
    }

    /// Built-ins, then `system`, then `user`; either file may be missing.
    pub fn load_from(system: &Path, user: Option<&Path>) -> Result<Config, ConfigError> {
        let layers = read_layers(system, user)?;
        Config::from_layers(&layers).map_err(ConfigError::Invalid)
    }

    /// Every issue in the layered configuration (empty when it is valid),
    /// for `styxy config validate`.
    pub fn validate_files(system: &Path, user: Option<&Path>) -> Vec<ConfigIssue> {
        match read_layers(system, user) {
            Ok(layers) => Config::from_layers(&layers).err().unwrap_or_default(),
            Err(e) => e.into_issues(),
        }
    }

    /// The type whose range holds `port` (ranges do not overlap).
    pub fn type_for_port(&self, port: u16) -> Option<&str> {
        self.service_types.iter().find(|(_, t)| t.contains(port)).map(|(name, _)| name.as_str())
    }

    /// This configuration plus the types auto-allocation carved. A configured
    /// type of the same name wins: the configuration is the explicit choice.
    pub fn with_auto_types<'a>(&self, autos: impl IntoIterator<Item = &'a AutoType>) -> Config {
        let mut config = self.clone();
        for auto in autos {
            let [start, end] = auto.range;
            config.service_types.entry(auto.service_type.clone()).or_insert_with(|| ServiceType {
                description: format!("Auto-allocated service type for {}", auto.service_type),
                preferred_ports: (start..=end).take(AUTO_PREFERRED_PORTS).collect(),
                range: auto.range,
                instance_behavior: InstanceBehavior::Multi,
                examples: Vec::new(),
            });
        }
        config
    }

    /// Parses, checks and merges `(file, text)` layers in order.
    fn from_layers(layers: &[(PathBuf, String)]) -> Result<Config, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let mut merged = Merged::default();
        for (file, text) in layers {
            let mut table = match parse_layer(file, text) {
                Ok(table) => table,
                Err(issue) => {
                    issues.push(issue);
                    continue;
                }
            };
            let layer_issues = check_layer(file, &mut table);
            if layer_issues.is_empty() {
                issues.extend(merged.add(file, table));
            } else {
                issues.extend(layer_issues);
            }
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        let config: Config = Value::Table(std::mem::take(&mut merged.value)).try_into().map_err(|e| {
            // The layer checks mirror these types; reaching this is a bug in them.
            vec![ConfigIssue { file: PathBuf::from("<merged>"), field: String::new(), reason: e.to_string() }]
        })?;
        let issues = merged.check(&config);
        if issues.is_empty() { Ok(config) } else { Err(issues) }
    }
}

#[cfg(test)]
mod tests;
