//! Named scripts of the nearest package.json (deno.json for `deno task`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::resolve::Manager;

/// A manifest's directory and its scripts.
pub(super) struct Manifest {
    pub dir: PathBuf,
    scripts: BTreeMap<String, String>,
}

impl Manifest {
    pub fn script(&self, name: &str) -> Option<&str> {
        self.scripts.get(name).map(String::as_str)
    }

    /// Scripts an npm-run-all pattern names: `dev:*` is one level below
    /// `dev:`, `dev:**` any depth, anything else exactly one script.
    pub fn matching<'a>(&'a self, pattern: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.scripts.iter().filter_map(move |(name, body)| {
            let hit = if let Some(prefix) = pattern.strip_suffix("**") {
                name.starts_with(prefix)
            } else if let Some(prefix) = pattern.strip_suffix('*') {
                name.strip_prefix(prefix).is_some_and(|rest| !rest.contains(':'))
            } else {
                name == pattern
            };
            hit.then_some((name.as_str(), body.as_str()))
        })
    }
}

/// The manifest the manager would use from `dir`: the nearest one going
/// up, no further than the repository root (the directory holding `.git`).
/// An unreadable or malformed file counts as none: this is a best guess at
/// what a command will do, not a build.
pub(super) fn find(dir: &Path, manager: Manager) -> Option<Manifest> {
    let names: &[&str] = match manager {
        Manager::Deno => &["deno.json", "deno.jsonc"],
        _ => &["package.json"],
    };
    let key = if manager == Manager::Deno { "tasks" } else { "scripts" };
    for d in dir.ancestors() {
        for name in names {
            let path = d.join(name);
            if let Ok(text) = std::fs::read_to_string(&path) {
                return Some(Manifest { dir: d.to_path_buf(), scripts: parse_scripts(&text, key)? });
            }
        }
        if d.join(".git").exists() {
            break;
        }
    }
    None
}

/// `"scripts": {"dev": "vite"}`; a deno task may be `{"command": "…"}`.
fn parse_scripts(text: &str, key: &str) -> Option<BTreeMap<String, String>> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let scripts = value.get(key)?.as_object()?;
    Some(
        scripts
            .iter()
            .filter_map(|(name, body)| {
                let body = body.as_str().or_else(|| body.get("command").and_then(|c| c.as_str()))?;
                Some((name.clone(), body.to_string()))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_manifest_up_to_the_repository_root() {
        let root = tempfile::tempdir().unwrap();
        let app = root.path().join("repo/apps/web");
        std::fs::create_dir_all(&app).unwrap();
        std::fs::create_dir_all(root.path().join("repo/.git")).unwrap();
        std::fs::write(root.path().join("package.json"), r#"{"scripts":{"dev":"outside"}}"#).unwrap();
        assert!(find(&app, Manager::Npm).is_none(), "must not look above the repository root");
        std::fs::write(
            root.path().join("repo/package.json"),
            r#"{"scripts":{"dev:web":"vite","dev:api":"uvicorn a:b","dev:api:x":"y"}}"#,
        )
        .unwrap();
        let m = find(&app, Manager::Npm).unwrap();
        assert_eq!(m.dir, root.path().join("repo"));
        assert_eq!(m.script("dev:web"), Some("vite"));
        let names: Vec<&str> = m.matching("dev:*").map(|(n, _)| n).collect();
        assert_eq!(names, ["dev:api", "dev:web"]);
        assert_eq!(m.matching("dev:**").count(), 3);
    }
}
