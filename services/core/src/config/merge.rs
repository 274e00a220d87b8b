//! Reading the layers (the built-ins, then the files that exist) and merging
//! them key by key, remembering which layer set each value so that issues
//! only the merged result shows are blamed on the right file.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

use super::schema::type_path;
use super::{BUILTIN_LABEL, BUILTIN_TOML, Config, ConfigError, ConfigIssue, ServiceType};

/// The built-in text and the files that exist, in merge order.
pub(super) fn read_layers(system: &Path, user: Option<&Path>) -> Result<Vec<(PathBuf, String)>, ConfigError> {
    let mut layers = vec![(PathBuf::from(BUILTIN_LABEL), BUILTIN_TOML.to_owned())];
    for path in std::iter::once(system).chain(user) {
        if let Some(text) = read_optional(path)? {
            layers.push((path.to_path_buf(), text));
        }
    }
    Ok(layers)
}

pub(super) fn read_optional(path: &Path) -> Result<Option<String>, ConfigError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConfigError::io("read", path)(e)),
    }
}

pub(super) fn parse_layer(file: &Path, text: &str) -> Result<Table, ConfigIssue> {
    toml::from_str(text).map_err(|e| syntax_issue(file, text, e.span(), e.message()))
}

pub(super) fn syntax_issue(file: &Path, text: &str, span: Option<Range<usize>>, message: &str) -> ConfigIssue {
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

/// The layers merged so far, and which layer set each leaf (so issues that
/// span layers can name the file that made them).
#[derive(Default)]
pub(super) struct Merged {
    pub(super) value: Table,
    files: Vec<PathBuf>,
    /// Dotted leaf path → index into `files`.
    origin: BTreeMap<String, usize>,
}

impl Merged {
    /// Merges a checked layer, unless it introduces a type without a range.
    pub(super) fn add(&mut self, file: &Path, layer: Table) -> Vec<ConfigIssue> {
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
    pub(super) fn check(&self, config: &Config) -> Vec<ConfigIssue> {
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
