//! The original Styxy's `~/.styxy/config.json` as a user layer: service
//! types, auto-allocation settings and rules carried over, everything else
//! named with the reason it is left out, never dropped silently.

use std::path::Path;

use serde_json::Value as Json;
use toml::{Table, Value};

use super::{BUILTIN_LABEL, BUILTIN_TOML, Config, ConfigIssue, merge::read_optional};

/// An imported file: the TOML to write, what was left out and why, and
/// the problems that make it unusable (then nothing may be written).
#[derive(Debug, Default)]
pub struct Import {
    pub toml: String,
    /// `field: reason` for every key not carried over.
    pub left_out: Vec<String>,
    pub issues: Vec<ConfigIssue>,
}

/// Keys of a service type the original kept for information only.
const INFORMATIONAL_TYPE_KEYS: &[&str] = &["multi_instance_pattern", "manual_allocations", "auto_allocated_at"];
const TYPE_KEYS: &[&str] = &["description", "preferred_ports", "instance_behavior", "examples"];
const AUTO_KEYS: &[&str] =
    &["enabled", "default_chunk_size", "placement", "min_port", "max_port", "preserve_gaps", "gap_size"];
/// Top-level keys the original itself ignored or that Styxy does otherwise.
const IGNORED: &[(&str, &str)] = &[
    ("_meta", "a comment"),
    ("_comment", "a comment"),
    ("_generated", "a comment"),
    ("compliance", "the original ignored it"),
    ("daemon", "the original ignored it; the allocator's settings are [allocator] and [api]"),
    ("listen_port", "the original ignored it; use [api] tcp"),
    ("log_level", "the original ignored it; set RUST_LOG for the allocator"),
    ("cleanup_interval", "the original ignored it; see [health]"),
    ("instance_templates", "only the original CLI's display used it"),
    ("recovery", "Styxy checks holders and repairs state itself ([health], styxy-recovery)"),
];

/// Converts the original's JSON (`file` names it in issues), checking the
/// result over the built-ins and the system file `system`.
pub fn import_original(file: &Path, json_text: &str, system: &Path) -> Import {
    let mut import = Import::default();
    let root = match serde_json::from_str::<Json>(json_text) {
        Ok(Json::Object(root)) => root,
        Ok(_) => return import.refused(file, "the file is not a JSON object".into()),
        Err(e) => return import.refused(file, format!("not JSON: {e}")),
    };
    let mut table = Table::new();
    let mut auto = Table::new();
    for (key, value) in &root {
        match key.as_str() {
            "service_types" => import.service_types(value, &mut table),
            "auto_allocation" => {
                for (name, setting) in value.as_object().into_iter().flatten() {
                    let field = format!("auto_allocation.{name}");
                    match AUTO_KEYS.contains(&name.as_str()) {
                        true => import.put(&mut auto, name, setting, &field),
                        false => import.left_out.push(format!("{field}: unknown key")),
                    }
                }
            }
            "auto_allocation_rules" => import.rules(value, &mut auto),
            _ => match IGNORED.iter().find(|(name, _)| name == key) {
                Some((_, why)) => import.left_out.push(format!("{key}: {why}")),
                None => import.left_out.push(format!("{key}: unknown key")),
            },
        }
    }
    if !auto.contains_key("enabled") {
        // The original's built-in layer switched it on.
        auto.insert("enabled".into(), Value::Boolean(true));
    }
    table.insert("auto_allocation".into(), Value::Table(auto));
    import.toml = toml::to_string(&table).unwrap_or_default();

    let mut layers = vec![(BUILTIN_LABEL.into(), BUILTIN_TOML.to_owned())];
    match read_optional(system) {
        Ok(Some(text)) => layers.push((system.to_path_buf(), text)),
        Ok(None) => {}
        Err(e) => import.issues.extend(e.into_issues()),
    }
    layers.push((file.to_path_buf(), import.toml.clone()));
    if let Err(issues) = Config::from_layers(&layers) {
        import.issues.extend(issues);
    }
    import
}

impl Import {
    fn refused(mut self, file: &Path, reason: String) -> Import {
        self.issues.push(ConfigIssue { file: file.to_path_buf(), field: String::new(), reason });
        self
    }

    fn put(&mut self, table: &mut Table, key: &str, value: &Json, field: &str) {
        match toml_value(value) {
            Some(v) => {
                table.insert(key.into(), v);
            }
            None => self.left_out.push(format!("{field}: null or an unusable number")),
        }
    }

    fn service_types(&mut self, value: &Json, table: &mut Table) {
        let mut types = Table::new();
        for (name, entry) in value.as_object().into_iter().flatten() {
            let mut fields = Table::new();
            for (key, setting) in entry.as_object().into_iter().flatten() {
                let field = format!("service_types.{name}.{key}");
                match key.as_str() {
                    // The original read port_range; its `config generate` wrote range.
                    "port_range" | "range" => self.put(&mut fields, "range", setting, &field),
                    k if TYPE_KEYS.contains(&k) => self.put(&mut fields, k, setting, &field),
                    "auto_allocated" => {}
                    k if INFORMATIONAL_TYPE_KEYS.contains(&k) => {
                        self.left_out.push(format!("{field}: informational in the original"));
                    }
                    _ => self.left_out.push(format!("{field}: unknown key")),
                }
            }
            types.insert(name.clone(), Value::Table(fields));
        }
        table.insert("service_types".into(), Value::Table(types));
    }

    fn rules(&mut self, value: &Json, auto: &mut Table) {
        let mut rules = Vec::new();
        for (pattern, rule) in value.as_object().into_iter().flatten() {
            let mut fields = Table::new();
            fields.insert("pattern".into(), Value::String(pattern.clone()));
            for (key, setting) in rule.as_object().into_iter().flatten() {
                let field = format!("auto_allocation_rules.{pattern}.{key}");
                match key.as_str() {
                    "chunk_size" | "placement" => self.put(&mut fields, key, setting, &field),
                    "preferred_range_start" => self.left_out.push(format!("{field}: the original never used it")),
                    _ => self.left_out.push(format!("{field}: unknown key")),
                }
            }
            rules.push(Value::Table(fields));
        }
        auto.insert("rules".into(), Value::Array(rules));
    }
}

fn toml_value(value: &Json) -> Option<Value> {
    Some(match value {
        Json::Null => return None,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Float(n.as_f64()?),
        },
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => Value::Array(items.iter().map(toml_value).collect::<Option<_>>()?),
        Json::Object(map) => Value::Table(map.iter().filter_map(|(k, v)| Some((k.clone(), toml_value(v)?))).collect()),
    })
}
