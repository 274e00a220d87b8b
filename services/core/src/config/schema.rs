//! What one configuration file may say: the keys of each section, the kind
//! and bounds of each value, and valid type names. A file is checked on its
//! own, before it is merged, so every issue names the file that caused it.

use std::path::Path;
use toml::{Table, Value};

use super::ConfigIssue;

/// Longest accepted service type name.
pub const MAX_TYPE_NAME_LEN: usize = 50;

/// `^[a-zA-Z0-9-]{1,50}$`
pub fn valid_type_name(name: &str) -> bool {
    (1..=MAX_TYPE_NAME_LEN).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
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
    /// Empty, or `IP:PORT` with a loopback IP.
    LoopbackAddr,
    /// Ports and program names, mixed.
    PortsOrNames,
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
    (
        "health",
        &[("period_secs", POSITIVE), ("max_failures", Kind::Int(1, u32::MAX as i64)), ("handoff_grace_secs", POSITIVE)],
    ),
    ("limits", &[("max_allocations_per_user", POSITIVE), ("max_connections", POSITIVE)]),
    ("instances", &[("ttl_secs", POSITIVE)]),
    ("allocator", &[("idle_timeout_secs", POSITIVE)]),
    ("api", &[("tcp", Kind::LoopbackAddr)]),
    ("preload", &[("never_move", Kind::PortsOrNames)]),
];

/// Checks one file on its own (keys, types, bounds, names) and normalises it
/// for merging: choices lower-cased, `port_range` renamed to `range`.
pub(super) fn check_layer(file: &Path, table: &mut Table) -> Vec<ConfigIssue> {
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
            Kind::PortsOrNames => self.each(field, value, |checker, field, item| match item.as_str() {
                Some(name) if (1..=15).contains(&name.len()) && !name.contains(['/', '\0']) => {}
                Some(_) => checker.issue(field, "a program name is 1 to 15 bytes without '/' (as ps shows it)".into()),
                None => {
                    checker.port(field, item);
                }
            }),
            Kind::Range => self.range(field, value),
            Kind::LoopbackAddr => match value.as_str() {
                None => self.wrong_type(field, "a string", value),
                Some("") => {}
                Some(text) => match text.parse::<std::net::SocketAddr>() {
                    Ok(addr) if addr.ip().is_loopback() && addr.port() != 0 => {}
                    Ok(_) => self.issue(
                        field,
                        format!("{text} is not a loopback address with a port (127.0.0.1:9876, [::1]:9876)"),
                    ),
                    Err(_) => self.issue(field, format!("{text:?} is not IP:PORT (such as 127.0.0.1:9876)")),
                },
            },
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
pub(super) fn type_path(name: &str) -> String {
    if valid_type_name(name) { format!("service_types.{name}") } else { format!("service_types.{name:?}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names() {
        for good in ["a", "grafana", "my-svc-2", "UPPER", &"x".repeat(50)] {
            assert!(valid_type_name(good), "{good}");
        }
        for bad in ["", "Bad Type!", "a_b", "a.b", "é", "a/b", &"x".repeat(51)] {
            assert!(!valid_type_name(bad), "{bad}");
        }
    }
}
