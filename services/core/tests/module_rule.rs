//! Holds every module of styxy-core to the rule written in lib.rs's doc:
//! a module names (`crate::x`) only the modules its line there lists, and
//! the rule itself has no cycle.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Module → the modules it may use, from the `//! - \`name\`: ...` lines.
fn rule(lib: &str) -> BTreeMap<String, Vec<String>> {
    lib.lines()
        .filter_map(|line| line.strip_prefix("//! - `"))
        .filter_map(|rest| rest.split_once("`:"))
        .map(|(name, uses)| {
            let uses = uses.split(',').map(|u| u.trim().trim_matches('`').to_string()).filter(|u| !u.is_empty());
            (name.to_string(), uses.collect())
        })
        .collect()
}

/// `src/NAME.rs` and everything under `src/NAME/`.
fn sources(src: &Path, name: &str) -> Vec<PathBuf> {
    let mut files = vec![src.join(format!("{name}.rs"))];
    let mut dirs = vec![src.join(name)];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// The modules of this crate that `text` names, as `crate::x` or in
/// `crate::{x, y::{..}}`.
fn named_modules(text: &str) -> Vec<String> {
    let ident = |s: &str| s.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    let mut names = Vec::new();
    for (at, found) in text.match_indices("crate::") {
        let rest = &text[at + found.len()..];
        let Some(group) = rest.strip_prefix('{') else {
            names.push(ident(rest));
            continue;
        };
        // Only the group's top level names modules; nested groups are inside them.
        let (mut top, mut depth) = (String::new(), 0);
        for c in group.chars() {
            match c {
                '}' if depth == 0 => break,
                '{' => depth += 1,
                '}' => depth -= 1,
                _ if depth == 0 => top.push(c),
                _ => {}
            }
        }
        names.extend(top.split(',').map(ident));
    }
    names.retain(|n| !n.is_empty());
    names
}

#[test]
fn every_module_uses_only_what_the_rule_in_lib_rs_allows() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = fs::read_to_string(src.join("lib.rs")).unwrap();
    let rule = rule(&lib);
    let declared: Vec<&str> = lib.lines().filter_map(|l| l.strip_prefix("pub mod ")?.strip_suffix(';')).collect();
    assert_eq!(declared.len(), rule.len(), "every module has one rule line: {declared:?} vs {rule:?}");
    let mut broken = Vec::new();
    for name in &declared {
        let allowed = rule.get(*name).unwrap_or_else(|| panic!("no rule line for module {name}"));
        for file in sources(&src, name) {
            let text = fs::read_to_string(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
            for used in named_modules(&text) {
                if used != *name && !allowed.contains(&used) {
                    broken.push(format!("{} uses crate::{used}", file.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "outside the rule in lib.rs:\n{}", broken.join("\n"));
}

#[test]
fn the_rule_has_no_cycle() {
    let lib = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let rule = rule(&lib);
    // A module may use only modules whose lines come before its own.
    let position = |name: &str| lib.find(&format!("//! - `{name}`:"));
    for (name, uses) in &rule {
        for used in uses {
            let before = position(used).is_some_and(|at| Some(at) < position(name));
            assert!(before, "{name} may use {used}, which is not listed before it");
        }
    }
}
