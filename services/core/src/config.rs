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
//! ```
//!
//! Every problem is reported as a [`ConfigIssue`] naming the file, the dotted
//! field and the reason; a configuration with any issue is not used.

use crate::autoalloc::valid_type_name;
// The service types and auto-allocation settings are also what `GET /config`
// shows, so their one definition is in the wire contract.
pub use styxy_proto::api::{AutoAllocation, InstanceBehavior, Placement, Rule, ServiceType};
use styxy_proto::model::AutoType;
use styxy_proto::paths;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

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
pub struct Config {
    pub service_types: BTreeMap<String, ServiceType>,
    pub auto_allocation: AutoAllocation,
    pub health: Health,
    pub limits: Limits,
    pub instances: Instances,
    pub allocator: Allocator,
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

/// The built-in text and the files that exist, in merge order.
fn read_layers(system: &Path, user: Option<&Path>) -> Result<Vec<(PathBuf, String)>, ConfigError> {
    let mut layers = vec![(PathBuf::from(BUILTIN_LABEL), BUILTIN_TOML.to_owned())];
    for path in std::iter::once(system).chain(user) {
        if let Some(text) = read_optional(path)? {
            layers.push((path.to_path_buf(), text));
        }
    }
    Ok(layers)
}

fn read_optional(path: &Path) -> Result<Option<String>, ConfigError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConfigError::io("read", path)(e)),
    }
}

fn parse_layer(file: &Path, text: &str) -> Result<Table, ConfigIssue> {
    toml::from_str(text).map_err(|e| syntax_issue(file, text, e.span(), e.message()))
}

fn syntax_issue(file: &Path, text: &str, span: Option<Range<usize>>, message: &str) -> ConfigIssue {
    let reason = match span {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!("invalid TOML at line {line}, column {column}: {}", message.trim())
        }
        None => format!("invalid TOML: {}", message.trim()),
    };
    ConfigIssue { file: file.to_path_buf(), field: String::new(), reason }
}

/// What a key's value must be.
#[derive(Clone, Copy)]
enum Kind {
    Bool,
    Str,
    /// Inclusive bounds.
    Int(i64, i64),
    Port,
    /// A string, matched case-insensitively and stored lower-cased.
    Choice(&'static [&'static str]),
    Ports,
    Range,
    Strings,
    Rules,
}

type Schema = &'static [(&'static str, Kind)];

const PLACEMENTS: &[&str] = &["after", "before", "smart"];
const CHUNK_SIZE: Kind = Kind::Int(1, 1000);
const POSITIVE: Kind = Kind::Int(1, i64::MAX);

const SERVICE_TYPE: Schema = &[
    ("description", Kind::Str),
    ("preferred_ports", Kind::Ports),
    ("range", Kind::Range),
    ("port_range", Kind::Range),
    ("instance_behavior", Kind::Choice(&["single", "multi"])),
    ("examples", Kind::Strings),
];
const AUTO_ALLOCATION: Schema = &[
    ("enabled", Kind::Bool),
    ("default_chunk_size", CHUNK_SIZE),
    ("placement", Kind::Choice(PLACEMENTS)),
    ("min_port", Kind::Port),
    ("max_port", Kind::Port),
    ("preserve_gaps", Kind::Bool),
    ("gap_size", Kind::Int(0, 1000)),
    ("rules", Kind::Rules),
];
const RULE: Schema = &[("pattern", Kind::Str), ("chunk_size", CHUNK_SIZE), ("placement", Kind::Choice(PLACEMENTS))];
/// Every section but `service_types`, whose keys are type names.
const SECTIONS: &[(&str, Schema)] = &[
    ("auto_allocation", AUTO_ALLOCATION),
    ("health", &[("period_secs", POSITIVE), ("max_failures", Kind::Int(1, u32::MAX as i64))]),
    ("limits", &[("max_allocations_per_user", POSITIVE), ("max_connections", POSITIVE)]),
    ("instances", &[("ttl_secs", POSITIVE)]),
    ("allocator", &[("idle_timeout_secs", POSITIVE)]),
];

/// Checks one file on its own (keys, types, bounds, names) and normalises it
/// for merging: choices lower-cased, `port_range` renamed to `range`.
fn check_layer(file: &Path, table: &mut Table) -> Vec<ConfigIssue> {
    let mut checker = Checker { file, issues: Vec::new() };
    for (key, value) in table.iter_mut() {
        if key == "service_types" {
            checker.service_types(value);
        } else if let Some((_, schema)) = SECTIONS.iter().find(|(name, _)| name == key) {
            match value.as_table_mut() {
                Some(section) => checker.fields(key, section, schema),
                None => checker.wrong_type(key, "a table", value),
            }
        } else {
            let known: Vec<&str> = std::iter::once("service_types").chain(SECTIONS.iter().map(|(n, _)| *n)).collect();
            checker.unknown_key(key, &known);
        }
    }
    checker.issues
}

struct Checker<'a> {
    file: &'a Path,
    issues: Vec<ConfigIssue>,
}

impl Checker<'_> {
    fn issue(&mut self, field: &str, reason: String) {
        self.issues.push(ConfigIssue { file: self.file.to_path_buf(), field: field.to_owned(), reason });
    }

    fn wrong_type(&mut self, field: &str, expected: &str, found: &Value) {
        self.issue(field, format!("expected {expected}, found {}", found.type_str()));
    }

    fn unknown_key(&mut self, field: &str, known: &[&str]) {
        self.issue(field, format!("unknown key (known keys: {})", known.join(", ")));
    }

    fn service_types(&mut self, value: &mut Value) {
        let Some(types) = value.as_table_mut() else {
            return self.wrong_type("service_types", "a table", value);
        };
        for (name, entry) in types.iter_mut() {
            let prefix = type_path(name);
            if !valid_type_name(name) {
                self.issue(&prefix, "a type name is 1 to 50 ASCII letters, digits or '-'".into());
            }
            let Some(fields) = entry.as_table_mut() else {
                self.wrong_type(&prefix, "a table", entry);
                continue;
            };
            self.fields(&prefix, fields, SERVICE_TYPE);
            if let Some(alias) = fields.remove("port_range") {
                if fields.contains_key("range") {
                    self.issue(&format!("{prefix}.port_range"), "give range or its alias port_range, not both".into());
                }
                fields.insert("range".into(), alias);
            }
        }
    }

    fn fields(&mut self, prefix: &str, table: &mut Table, schema: Schema) {
        for (key, value) in table.iter_mut() {
            let field = format!("{prefix}.{key}");
            match schema.iter().find(|(name, _)| name == key) {
                Some((_, kind)) => self.value(&field, value, *kind),
                None => {
                    let known: Vec<&str> = schema.iter().map(|(name, _)| *name).collect();
                    self.unknown_key(&field, &known);
                }
            }
        }
    }

    fn value(&mut self, field: &str, value: &mut Value, kind: Kind) {
        match kind {
            Kind::Bool if !value.is_bool() => self.wrong_type(field, "true or false", value),
            Kind::Str if !value.is_str() => self.wrong_type(field, "a string", value),
            Kind::Bool | Kind::Str => {}
            Kind::Int(low, high) => match value.as_integer() {
                Some(n) if (low..=high).contains(&n) => {}
                Some(n) if high == i64::MAX => self.issue(field, format!("{n} is below {low}")),
                Some(n) => self.issue(field, format!("{n} is outside {low}..={high}")),
                None => self.wrong_type(field, "an integer", value),
            },
            Kind::Port => {
                self.port(field, value);
            }
            Kind::Choice(options) => match value.as_str().map(str::to_ascii_lowercase) {
                Some(choice) if options.contains(&choice.as_str()) => *value = Value::String(choice),
                Some(_) => self.issue(field, format!("{value} is not one of: {}", options.join(", "))),
                None => self.wrong_type(field, "a string", value),
            },
            Kind::Ports => self.each(field, value, |checker, field, port| {
                checker.port(field, port);
            }),
            Kind::Strings => self.each(field, value, |checker, field, item| {
                if !item.is_str() {
                    checker.wrong_type(field, "a string", item);
                }
            }),
            Kind::Range => self.range(field, value),
            Kind::Rules => self.each(field, value, |checker, field, rule| {
                let Some(rule) = rule.as_table_mut() else {
                    return checker.wrong_type(field, "a table", rule);
                };
                checker.fields(field, rule, RULE);
                if !rule.contains_key("pattern") {
                    checker.issue(&format!("{field}.pattern"), "every rule needs a pattern".into());
                }
            }),
        }
    }

    /// Checks each element of an array; `field[i]` names the element.
    fn each(&mut self, field: &str, value: &mut Value, mut check: impl FnMut(&mut Self, &str, &mut Value)) {
        match value.as_array_mut() {
            Some(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    check(self, &format!("{field}[{i}]"), item);
                }
            }
            None => self.wrong_type(field, "an array", value),
        }
    }

    fn port(&mut self, field: &str, value: &Value) -> Option<u16> {
        match value.as_integer() {
            Some(n) => match u16::try_from(n) {
                Ok(port) if port != 0 => Some(port),
                _ => {
                    self.issue(field, format!("{n} is not a port (1..=65535)"));
                    None
                }
            },
            None => {
                self.wrong_type(field, "a port number", value);
                None
            }
        }
    }

    fn range(&mut self, field: &str, value: &Value) {
        let Some(ends) = value.as_array().filter(|a| a.len() == 2) else {
            return self.wrong_type(field, "[start, end]", value);
        };
        let start = self.port(&format!("{field}[0]"), &ends[0]);
        let end = self.port(&format!("{field}[1]"), &ends[1]);
        if let Some((start, end)) = start.zip(end).filter(|(start, end)| start > end) {
            self.issue(field, format!("start {start} is above end {end}"));
        }
    }
}

/// `service_types.NAME`, quoting a name that is not a plain identifier.
fn type_path(name: &str) -> String {
    if valid_type_name(name) { format!("service_types.{name}") } else { format!("service_types.{name:?}") }
}

/// The layers merged so far, and which layer set each leaf (so issues that
/// span layers can name the file that made them).
#[derive(Default)]
struct Merged {
    value: Table,
    files: Vec<PathBuf>,
    /// Dotted leaf path → index into `files`.
    origin: BTreeMap<String, usize>,
}

impl Merged {
    /// Merges a checked layer, unless it introduces a type without a range.
    fn add(&mut self, file: &Path, layer: Table) -> Vec<ConfigIssue> {
        let known = self.value.get("service_types").and_then(Value::as_table);
        let issues: Vec<ConfigIssue> = layer
            .get("service_types")
            .and_then(Value::as_table)
            .into_iter()
            .flatten()
            .filter(|(name, fields)| !known.is_some_and(|k| k.contains_key(*name)) && fields.get("range").is_none())
            .map(|(name, _)| ConfigIssue {
                file: file.to_path_buf(),
                field: format!("{}.range", type_path(name)),
                reason: "a new service type needs a range = [start, end]".into(),
            })
            .collect();
        if issues.is_empty() {
            self.files.push(file.to_path_buf());
            let layer_index = self.files.len() - 1;
            merge_into(&mut self.value, layer, "", layer_index, &mut self.origin);
        }
        issues
    }

    /// The layer that last set `field` (0, the built-ins, if none did).
    fn layer_of(&self, field: &str) -> usize {
        self.origin.get(field).copied().unwrap_or(0)
    }

    fn issue(&self, layer: usize, field: String, reason: String) -> ConfigIssue {
        let file = self.files.get(layer).cloned().unwrap_or_else(|| PathBuf::from(BUILTIN_LABEL));
        ConfigIssue { file, field, reason }
    }

    /// Checks that need the merged result: each is blamed on the field (and
    /// file) that was set last.
    fn check(&self, config: &Config) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        for (name, service) in &config.service_types {
            let [start, end] = service.range;
            let range_field = format!("service_types.{name}.range");
            let ports_field = format!("service_types.{name}.preferred_ports");
            for port in service.preferred_ports.iter().filter(|p| !service.contains(**p)) {
                let (layer, field) = later_of(self, &ports_field, &range_field);
                issues.push(self.issue(
                    layer,
                    field,
                    format!("preferred port {port} lies outside the range {start}-{end}"),
                ));
            }
        }
        let types: Vec<(&String, &ServiceType)> = config.service_types.iter().collect();
        for (i, (a_name, a)) in types.iter().enumerate() {
            for (b_name, b) in &types[i + 1..] {
                if a.range[0] <= b.range[1] && b.range[0] <= a.range[1] {
                    let a_field = format!("service_types.{a_name}.range");
                    let b_field = format!("service_types.{b_name}.range");
                    let (layer, field) = later_of(self, &a_field, &b_field);
                    issues.push(self.issue(
                        layer,
                        field,
                        format!(
                            "ranges of {a_name} ({}-{}) and {b_name} ({}-{}) overlap",
                            a.range[0], a.range[1], b.range[0], b.range[1]
                        ),
                    ));
                }
            }
        }
        let auto = &config.auto_allocation;
        if auto.min_port >= auto.max_port {
            let (layer, field) = later_of(self, "auto_allocation.min_port", "auto_allocation.max_port");
            issues.push(self.issue(
                layer,
                field,
                format!("min_port {} must be below max_port {}", auto.min_port, auto.max_port),
            ));
        }
        issues
    }
}

/// Whichever of two fields was set by the later layer (the first on a tie).
fn later_of(merged: &Merged, first: &str, second: &str) -> (usize, String) {
    let (a, b) = (merged.layer_of(first), merged.layer_of(second));
    if b > a { (b, second.to_owned()) } else { (a, first.to_owned()) }
}

/// Deep-merges tables; any other value replaces what was there.
fn merge_into(acc: &mut Table, layer: Table, prefix: &str, layer_index: usize, origin: &mut BTreeMap<String, usize>) {
    for (key, value) in layer {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match (acc.get_mut(&key), value) {
            (Some(Value::Table(existing)), Value::Table(table)) => {
                merge_into(existing, table, &path, layer_index, origin);
            }
            (_, value) => {
                mark_origin(&path, &value, layer_index, origin);
                acc.insert(key, value);
            }
        }
    }
}

fn mark_origin(path: &str, value: &Value, layer_index: usize, origin: &mut BTreeMap<String, usize>) {
    match value {
        Value::Table(table) => {
            for (key, value) in table {
                mark_origin(&format!("{path}.{key}"), value, layer_index, origin);
            }
        }
        _ => {
            origin.insert(path.to_owned(), layer_index);
        }
    }
}

/// Sets `auto_allocation.enabled` in the user file at `path`, keeping the
/// rest of it (comments included); creates the file if missing. Refuses,
/// changing nothing, when the file is not a valid configuration on its own.
/// The write is atomic (temporary file, then rename).
pub fn set_user_auto_allocation_enabled(path: &Path, enabled: bool) -> Result<(), ConfigError> {
    // Edit the file a symlink points to, not the link (managed dotfiles).
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let text = read_optional(&path)?.unwrap_or_default();
    let mut table = parse_layer(&path, &text).map_err(|issue| ConfigError::Invalid(vec![issue]))?;
    let issues = check_layer(&path, &mut table);
    if !issues.is_empty() {
        return Err(ConfigError::Invalid(issues));
    }
    let mut document: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        ConfigError::Invalid(vec![syntax_issue(&path, &text, e.span(), e.message())])
    })?;
    let section = document.entry("auto_allocation").or_insert_with(toml_edit::table);
    section["enabled"] = toml_edit::value(enabled);
    write_atomically(&path, &document.to_string())
}

fn write_atomically(path: &Path, text: &str) -> Result<(), ConfigError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(ConfigError::io("create directory", dir))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = (|| {
        let mut file = fs::File::create(&temp).map_err(ConfigError::io("create", &temp))?;
        file.write_all(text.as_bytes()).map_err(ConfigError::io("write", &temp))?;
        if let Ok(existing) = fs::metadata(path) {
            file.set_permissions(existing.permissions()).map_err(ConfigError::io("set permissions of", &temp))?;
        }
        file.sync_all().map_err(ConfigError::io("sync", &temp))?;
        fs::rename(&temp, path).map_err(ConfigError::io("replace", path))
    })();
    if written.is_err() {
        // Best effort: the error being returned is the one that matters.
        let _ = fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        path
    }

    /// Loads built-ins plus one user file.
    fn load_user(text: &str) -> (tempfile::TempDir, PathBuf, Result<Config, ConfigError>) {
        let dir = tempfile::tempdir().unwrap();
        let user = write(dir.path(), "user.toml", text);
        let result = Config::load_from(&dir.path().join("missing-system.toml"), Some(&user));
        (dir, user, result)
    }

    fn issues_of(text: &str) -> (PathBuf, Vec<ConfigIssue>) {
        let (_dir, user, result) = load_user(text);
        match result {
            Err(ConfigError::Invalid(issues)) => (user, issues),
            other => panic!("expected issues for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn builtin_service_types_match_the_spec_table() {
        let expected: [(&str, [u16; 4], [u16; 2]); 17] = [
            ("dev", [3000, 3001, 3002, 3003], [3000, 3099]),
            ("api", [8000, 8001, 8002, 8003], [8000, 8099]),
            ("database", [5430, 5431, 5432, 5433], [5430, 5499]),
            ("auth", [9099, 9100, 9101, 9102], [9099, 9199]),
            ("functions", [5001, 5002, 5003, 5004], [5000, 5099]),
            ("ui", [4000, 4001, 4002, 4003], [4000, 4099]),
            ("hub", [4400, 4401, 4402, 4403], [4400, 4499]),
            ("storybook", [6006, 6007, 6008, 6009], [6006, 6029]),
            ("test", [9200, 9201, 9202, 9203], [9200, 9299]),
            ("proxy", [8100, 8101, 8102, 8103], [8100, 8199]),
            ("docs", [4100, 4101, 4102, 4103], [4100, 4199]),
            ("monitoring", [3100, 3101, 3102, 3103], [3100, 3199]),
            ("build", [8200, 8201, 8202, 8203], [8200, 8299]),
            ("infrastructure", [6370, 6371, 6372, 6373], [6370, 6399]),
            ("ai", [11430, 11431, 11432, 11433], [11400, 11499]),
            ("messaging", [9050, 9051, 9052, 9053], [9050, 9098]),
            ("coordination", [9870, 9871, 9872, 9873], [9870, 9899]),
        ];
        let config = Config::builtin();
        assert_eq!(config.service_types.len(), 17);
        for (name, preferred, range) in expected {
            let t = &config.service_types[name];
            assert_eq!(t.preferred_ports, preferred, "{name} preferred ports");
            assert_eq!(t.range, range, "{name} range");
            let behavior = if name == "ai" { InstanceBehavior::Single } else { InstanceBehavior::Multi };
            assert_eq!(t.instance_behavior, behavior, "{name} instance_behavior");
            assert!(!t.examples.is_empty(), "{name} examples");
        }
        assert_eq!(config.service_types["dev"].description, "Frontend development servers (React, Next.js, Vite)");
        assert_eq!(config.service_types["coordination"].description, "Service coordination and management");
    }

    #[test]
    fn builtin_settings_are_the_documented_defaults() {
        let config = Config::builtin();
        let auto = &config.auto_allocation;
        assert!(!auto.enabled);
        assert_eq!(
            (auto.default_chunk_size, auto.placement, auto.min_port, auto.max_port, auto.preserve_gaps, auto.gap_size),
            (10, Placement::After, 10000, 49151, true, 10)
        );
        assert_eq!(
            auto.rules,
            vec![
                Rule { pattern: "monitoring-*".into(), chunk_size: Some(20), placement: Some(Placement::Smart) },
                Rule { pattern: "database-*".into(), chunk_size: Some(5), placement: None },
            ]
        );
        assert_eq!(config.health, Health { period_secs: 15, max_failures: 3 });
        assert_eq!(config.limits, Limits { max_allocations_per_user: 1000, max_connections: 512 });
        assert_eq!(config.instances, Instances { ttl_secs: 120 });
        assert_eq!(config.allocator, Allocator { idle_timeout_secs: 300 });
    }

    #[test]
    fn missing_files_leave_the_builtins() {
        let dir = tempfile::tempdir().unwrap();
        let system = dir.path().join("system.toml");
        let user = dir.path().join("user.toml");
        assert_eq!(Config::load_from(&system, Some(&user)).unwrap(), Config::builtin());
        assert_eq!(Config::load_from(&system, None).unwrap(), Config::builtin());
        assert!(Config::validate_files(&system, Some(&user)).is_empty());
    }

    #[test]
    fn a_user_field_overrides_only_that_field() {
        let (_dir, _user, result) = load_user("[service_types.dev]\nrange = [3000, 3050]\n");
        let config = result.unwrap();
        let dev = &config.service_types["dev"];
        let builtin = &Config::builtin().service_types["dev"];
        assert_eq!(dev.range, [3000, 3050]);
        assert_eq!(dev.preferred_ports, builtin.preferred_ports);
        assert_eq!(dev.description, builtin.description);
        assert_eq!(dev.examples, builtin.examples);
        assert_eq!(config.service_types.len(), 17);
    }

    #[test]
    fn user_file_wins_over_system_file_field_by_field() {
        let dir = tempfile::tempdir().unwrap();
        let system = write(
            dir.path(),
            "system.toml",
            "[service_types.dev]\ndescription = \"site dev\"\nrange = [3000, 3040]\n\
             [auto_allocation]\nenabled = true\ngap_size = 5\n\
             [[auto_allocation.rules]]\npattern = \"x-*\"\nchunk_size = 3\n",
        );
        let user = write(
            dir.path(),
            "user.toml",
            "[service_types.dev]\nrange = [3000, 3060]\n[auto_allocation]\ngap_size = 7\n",
        );
        let config = Config::load_from(&system, Some(&user)).unwrap();
        let dev = &config.service_types["dev"];
        assert_eq!(dev.range, [3000, 3060]);
        assert_eq!(dev.description, "site dev");
        assert_eq!(dev.preferred_ports, [3000, 3001, 3002, 3003]);
        assert!(config.auto_allocation.enabled);
        assert_eq!(config.auto_allocation.gap_size, 7);
        // The system's rules list replaced the built-in one; the user kept it.
        assert_eq!(
            config.auto_allocation.rules,
            vec![Rule { pattern: "x-*".into(), chunk_size: Some(3), placement: None }]
        );
    }

    #[test]
    fn port_range_alias_and_case_insensitive_choices() {
        let (_dir, _user, result) = load_user(
            "[service_types.grafana]\nport_range = [13000, 13019]\ninstance_behavior = \"SINGLE\"\n\
             [auto_allocation]\nplacement = \"Smart\"\n",
        );
        let config = result.unwrap();
        let grafana = &config.service_types["grafana"];
        assert_eq!(grafana.range, [13000, 13019]);
        assert_eq!(grafana.instance_behavior, InstanceBehavior::Single);
        assert!(grafana.preferred_ports.is_empty());
        assert_eq!(config.auto_allocation.placement, Placement::Smart);
    }

    #[test]
    fn a_new_type_without_range_is_reported_with_file_and_field() {
        let (user, issues) = issues_of("[service_types.grafana]\ndescription = \"dashboards\"\n");
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].file, user);
        assert_eq!(issues[0].field, "service_types.grafana.range");
        assert!(issues[0].reason.contains("needs a range"), "{}", issues[0].reason);
    }

    #[test]
    fn a_type_from_the_system_file_can_be_refined_by_the_user() {
        let dir = tempfile::tempdir().unwrap();
        let system = write(dir.path(), "system.toml", "[service_types.grafana]\nrange = [13000, 13019]\n");
        let user = write(dir.path(), "user.toml", "[service_types.grafana]\npreferred_ports = [13005]\n");
        let config = Config::load_from(&system, Some(&user)).unwrap();
        assert_eq!(config.service_types["grafana"].preferred_ports, [13005]);
        assert_eq!(config.service_types["grafana"].range, [13000, 13019]);
    }

    #[test]
    fn every_rule_reports_file_field_and_reason() {
        let long_name = "a".repeat(51);
        let cases: Vec<(String, &str, &str)> = vec![
            ("colour = 1\n".into(), "colour", "unknown key"),
            ("[service_types.dev]\ncolour = 1\n".into(), "service_types.dev.colour", "unknown key"),
            ("[auto_allocation]\nenable = true\n".into(), "auto_allocation.enable", "unknown key"),
            (
                "[service_types.dev]\nrange = \"3000-3099\"\n".into(),
                "service_types.dev.range",
                "expected [start, end], found string",
            ),
            (
                "[service_types.dev]\nrange = [3000, 3050, 3099]\n".into(),
                "service_types.dev.range",
                "expected [start, end]",
            ),
            ("[service_types.dev]\nrange = [0, 3099]\n".into(), "service_types.dev.range[0]", "0 is not a port"),
            (
                "[service_types.dev]\nrange = [3000, 70000]\n".into(),
                "service_types.dev.range[1]",
                "70000 is not a port",
            ),
            (
                "[service_types.dev]\nrange = [3099, 3000]\n".into(),
                "service_types.dev.range",
                "start 3099 is above end 3000",
            ),
            (
                "[service_types.dev]\npreferred_ports = [3000, -1]\n".into(),
                "service_types.dev.preferred_ports[1]",
                "-1 is not a port",
            ),
            (
                "[service_types.dev]\npreferred_ports = [3500]\n".into(),
                "service_types.dev.preferred_ports",
                "preferred port 3500 lies outside the range 3000-3099",
            ),
            (
                "[service_types.dev]\nrange = [3050, 3099]\n".into(),
                "service_types.dev.range",
                "preferred port 3000 lies outside the range 3050-3099",
            ),
            (
                "[service_types.dev]\ninstance_behavior = \"double\"\n".into(),
                "service_types.dev.instance_behavior",
                "\"double\" is not one of: single, multi",
            ),
            (
                "[service_types.dev]\nexamples = [\"a\", 2]\n".into(),
                "service_types.dev.examples[1]",
                "expected a string, found integer",
            ),
            (
                "[service_types.dev]\ndescription = 3\n".into(),
                "service_types.dev.description",
                "expected a string, found integer",
            ),
            ("service_types = 3\n".into(), "service_types", "expected a table"),
            ("[service_types]\ndev = 3\n".into(), "service_types.dev", "expected a table"),
            ("health = [1]\n".into(), "health", "expected a table, found array"),
            (
                "[auto_allocation]\nplacement = \"sideways\"\n".into(),
                "auto_allocation.placement",
                "\"sideways\" is not one of: after, before, smart",
            ),
            (
                "[auto_allocation]\nenabled = \"yes\"\n".into(),
                "auto_allocation.enabled",
                "expected true or false, found string",
            ),
            (
                "[auto_allocation]\ndefault_chunk_size = 0\n".into(),
                "auto_allocation.default_chunk_size",
                "0 is outside 1..=1000",
            ),
            (
                "[auto_allocation]\ndefault_chunk_size = 1001\n".into(),
                "auto_allocation.default_chunk_size",
                "1001 is outside 1..=1000",
            ),
            ("[auto_allocation]\ngap_size = 1001\n".into(), "auto_allocation.gap_size", "1001 is outside 0..=1000"),
            (
                "[auto_allocation]\ngap_size = 1.5\n".into(),
                "auto_allocation.gap_size",
                "expected an integer, found float",
            ),
            ("[auto_allocation]\nmin_port = 65536\n".into(), "auto_allocation.min_port", "65536 is not a port"),
            (
                "[auto_allocation]\nmin_port = 50000\n".into(),
                "auto_allocation.min_port",
                "min_port 50000 must be below max_port 49151",
            ),
            (
                "[auto_allocation]\nmax_port = 9000\n".into(),
                "auto_allocation.max_port",
                "min_port 10000 must be below max_port 9000",
            ),
            (
                "[[auto_allocation.rules]]\npattern = \"x-*\"\nchunk_size = 0\n".into(),
                "auto_allocation.rules[0].chunk_size",
                "0 is outside 1..=1000",
            ),
            (
                "[[auto_allocation.rules]]\npattern = \"x-*\"\nplacement = \"up\"\n".into(),
                "auto_allocation.rules[0].placement",
                "is not one of: after, before, smart",
            ),
            (
                "[[auto_allocation.rules]]\nchunk_size = 5\n".into(),
                "auto_allocation.rules[0].pattern",
                "every rule needs a pattern",
            ),
            (
                "[[auto_allocation.rules]]\npattern = \"x-*\"\npreferred_range_start = 9000\n".into(),
                "auto_allocation.rules[0].preferred_range_start",
                "unknown key",
            ),
            ("[auto_allocation]\nrules = 3\n".into(), "auto_allocation.rules", "expected an array, found integer"),
            ("[health]\nperiod_secs = 0\n".into(), "health.period_secs", "0 is below 1"),
            ("[health]\nmax_failures = 5000000000\n".into(), "health.max_failures", "is outside 1..=4294967295"),
            ("[limits]\nmax_connections = 0\n".into(), "limits.max_connections", "0 is below 1"),
            ("[instances]\nttl_secs = -5\n".into(), "instances.ttl_secs", "-5 is below 1"),
            (
                "[allocator]\nidle_timeout_secs = \"5m\"\n".into(),
                "allocator.idle_timeout_secs",
                "expected an integer, found string",
            ),
            (
                "[service_types.\"Bad Type!\"]\nrange = [13000, 13009]\n".into(),
                "service_types.\"Bad Type!\"",
                "1 to 50 ASCII letters",
            ),
            (
                format!("[service_types.{long_name}]\nrange = [13000, 13009]\n"),
                "service_types.",
                "1 to 50 ASCII letters",
            ),
            (
                "[service_types.dev]\nrange = [3000, 3099]\nport_range = [3000, 3099]\n".into(),
                "service_types.dev.port_range",
                "not both",
            ),
        ];
        for (text, field, reason) in cases {
            let (user, issues) = issues_of(&text);
            assert!(
                issues.iter().any(|i| i.file == user && i.field.starts_with(field) && i.reason.contains(reason)),
                "{text:?}: expected {field}: {reason}, got {issues:?}"
            );
        }
    }

    #[test]
    fn edge_values_are_accepted() {
        let (_dir, _user, result) = load_user(
            "[auto_allocation]\ndefault_chunk_size = 1\ngap_size = 0\nmin_port = 1\nmax_port = 65535\n\
             [[auto_allocation.rules]]\npattern = \"x-*\"\nchunk_size = 1000\n\
             [service_types.one]\nrange = [65535, 65535]\npreferred_ports = [65535]\n",
        );
        let config = result.unwrap();
        assert_eq!(config.auto_allocation.default_chunk_size, 1);
        assert_eq!(config.auto_allocation.gap_size, 0);
        assert_eq!(config.service_types["one"].range, [65535, 65535]);
    }

    #[test]
    fn overlapping_ranges_name_both_types_and_the_file_that_moved() {
        let (user, issues) = issues_of("[service_types.grafana]\nrange = [3050, 3149]\n");
        let overlaps: Vec<&ConfigIssue> = issues.iter().filter(|i| i.reason.contains("overlap")).collect();
        assert_eq!(overlaps.len(), 2, "{issues:?}");
        for issue in &overlaps {
            assert_eq!(issue.file, user);
            assert_eq!(issue.field, "service_types.grafana.range");
        }
        assert!(overlaps.iter().any(|i| i.reason == "ranges of dev (3000-3099) and grafana (3050-3149) overlap"));
        assert!(
            overlaps.iter().any(|i| i.reason == "ranges of grafana (3050-3149) and monitoring (3100-3199) overlap")
        );
    }

    #[test]
    fn builtin_ranges_do_not_overlap_until_a_file_moves_one() {
        let (user, issues) = issues_of("[service_types.monitoring]\nrange = [3000, 3199]\npreferred_ports = [3100]\n");
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].file, user);
        assert_eq!(issues[0].field, "service_types.monitoring.range");
        assert!(issues[0].reason.contains("dev (3000-3099) and monitoring (3000-3199)"));
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let text = "[health]\nperiod_secs = 15\nmax_failures = = 3\n";
        let (user, issues) = issues_of(text);
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].file, user);
        assert_eq!(issues[0].field, "");
        let column = text.lines().nth(2).unwrap().rfind('=').unwrap() + 1;
        assert!(
            issues[0].reason.starts_with(&format!("invalid TOML at line 3, column {column}:")),
            "{}",
            issues[0].reason
        );
    }

    #[test]
    fn issues_from_both_files_are_reported_together() {
        let dir = tempfile::tempdir().unwrap();
        let system = write(dir.path(), "system.toml", "[health]\nperiod_secs = 0\n");
        let user = write(dir.path(), "user.toml", "[limits]\nmax_connections = 0\n");
        let issues = Config::validate_files(&system, Some(&user));
        let located: Vec<(&Path, &str)> = issues.iter().map(|i| (i.file.as_path(), i.field.as_str())).collect();
        assert_eq!(located, [(system.as_path(), "health.period_secs"), (user.as_path(), "limits.max_connections")]);
    }

    #[test]
    fn invalid_error_lists_file_field_reason_lines() {
        let (_dir, user, result) = load_user("[health]\nperiod_secs = 0\n");
        let message = result.unwrap_err().to_string();
        assert_eq!(message, format!("invalid configuration:\n  {}: health.period_secs: 0 is below 1", user.display()));
    }

    #[test]
    fn an_unreadable_file_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: reading it fails.
        let user = dir.path().join("user.toml");
        fs::create_dir(&user).unwrap();
        match Config::load_from(&dir.path().join("system.toml"), Some(&user)) {
            Err(ConfigError::Io { op: "read", path, .. }) => assert_eq!(path, user),
            other => panic!("expected an IO error, got {other:?}"),
        }
        let issues = Config::validate_files(&dir.path().join("system.toml"), Some(&user));
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].file, user);
        assert!(issues[0].reason.starts_with("cannot read:"), "{}", issues[0].reason);
    }

    #[test]
    fn type_for_port_finds_the_holding_range() {
        let config = Config::builtin();
        assert_eq!(config.type_for_port(3050), Some("dev"));
        assert_eq!(config.type_for_port(3100), Some("monitoring"));
        assert_eq!(config.type_for_port(9876), Some("coordination"));
        assert_eq!(config.type_for_port(11499), Some("ai"));
        assert_eq!(config.type_for_port(10000), None);
        assert_eq!(config.type_for_port(5432), Some("database"));
    }

    fn auto(name: &str, range: [u16; 2]) -> AutoType {
        AutoType {
            service_type: name.into(),
            range,
            chunk_size: range[1] - range[0] + 1,
            placement: "after".into(),
            rule: None,
            created_at: 0,
            created_by_uid: 1000,
        }
    }

    #[test]
    fn auto_types_join_the_configuration() {
        let autos = [auto("grafana", [11510, 11519]), auto("tiny", [11530, 11531]), auto("dev", [11550, 11559])];
        let config = Config::builtin().with_auto_types(&autos);
        let grafana = &config.service_types["grafana"];
        assert_eq!(grafana.range, [11510, 11519]);
        assert_eq!(grafana.preferred_ports, [11510, 11511, 11512, 11513]);
        assert_eq!(grafana.instance_behavior, InstanceBehavior::Multi);
        assert_eq!(grafana.description, "Auto-allocated service type for grafana");
        // A chunk smaller than four keeps its preferred ports inside the range.
        assert_eq!(config.service_types["tiny"].preferred_ports, [11530, 11531]);
        // A configured type is never replaced.
        assert_eq!(config.service_types["dev"], Config::builtin().service_types["dev"]);
        assert_eq!(config.type_for_port(11515), Some("grafana"));
        assert_eq!(config.type_for_port(11555), None);
    }

    #[test]
    fn the_effective_configuration_prints_as_toml_that_loads_back() {
        let mut config = Config::builtin().with_auto_types(&[auto("grafana", [11510, 11519])]);
        config.auto_allocation.enabled = true;
        let text = toml::to_string(&config).unwrap();
        let (_dir, _user, result) = load_user(&text);
        assert_eq!(result.unwrap(), config);
    }

    #[test]
    fn enabling_auto_allocation_keeps_the_rest_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let original =
            "# my ports\n[service_types.dev]\nrange = [3000, 3050] # narrower\n\n[auto_allocation]\ngap_size = 4\n";
        let user = write(dir.path(), "user.toml", original);
        set_user_auto_allocation_enabled(&user, true).unwrap();
        let edited = fs::read_to_string(&user).unwrap();
        assert!(edited.contains("# my ports") && edited.contains("# narrower"), "{edited}");
        let config = Config::load_from(&dir.path().join("system.toml"), Some(&user)).unwrap();
        assert!(config.auto_allocation.enabled);
        assert_eq!(config.auto_allocation.gap_size, 4);
        assert_eq!(config.service_types["dev"].range, [3000, 3050]);

        set_user_auto_allocation_enabled(&user, false).unwrap();
        let config = Config::load_from(&dir.path().join("system.toml"), Some(&user)).unwrap();
        assert!(!config.auto_allocation.enabled);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, ["user.toml"]);
    }

    #[test]
    fn enabling_auto_allocation_creates_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("styxy/config.toml");
        set_user_auto_allocation_enabled(&user, true).unwrap();
        let config = Config::load_from(&dir.path().join("system.toml"), Some(&user)).unwrap();
        assert!(config.auto_allocation.enabled);
        assert_eq!(fs::read_to_string(&user).unwrap(), "[auto_allocation]\nenabled = true\n");
    }

    #[test]
    fn enabling_auto_allocation_refuses_an_invalid_file_and_leaves_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        for original in ["[auto_allocation\nenabled = false\n", "[auto_allocation]\ngap_size = -1\n"] {
            let user = write(dir.path(), "user.toml", original);
            match set_user_auto_allocation_enabled(&user, true) {
                Err(ConfigError::Invalid(issues)) => assert_eq!(issues[0].file, user),
                other => panic!("expected refusal for {original:?}, got {other:?}"),
            }
            assert_eq!(fs::read_to_string(&user).unwrap(), original);
        }
    }
}
