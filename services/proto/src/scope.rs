//! Which copy of a stack a process belongs to: its scope (docs/design.md,
//! "Scopes"). `$STYXY_SCOPE` when set (`styxy run`, `styxy shell-init` and
//! an agent session's environment file set it), else the project root of
//! its working directory: the git top level of its worktree, else the
//! top-most directory with a build manifest. Read once, at start-up
//! (allocates; never on the preload's hook path).
//!
//! The project rule, walking up from the working directory:
//! - the nearest directory holding `.git` (a directory, or a file for
//!   worktrees and submodules) is the project: a repository is a project;
//! - without one, the top-most directory holding a build manifest
//!   ([`PROJECT_MARKERS`]) is the project, so a package inside a monorepo
//!   counts as the monorepo;
//! - the walk stops below `/` and below the process's home directory (`HOME`
//!   in its environment): a stray `~/package.json` or a dotfiles repository
//!   in `~` would otherwise make the whole home one project;
//! - no marker at all: no project.

use std::path::{Path, PathBuf};

/// Names a process's scope explicitly.
pub const ENV_SCOPE: &str = "STYXY_SCOPE";
/// The longest scope path the allocator records.
pub const MAX_SCOPE_LEN: usize = 1000;

/// Build manifests that mark a project root when there is no repository.
pub const PROJECT_MARKERS: &[&str] = &[
    "package.json",
    "deno.json",
    "Cargo.toml",
    "pyproject.toml",
    "setup.py",
    "go.mod",
    "pom.xml",
    "build.gradle",
    "build.gradle.kts",
    "Gemfile",
    "composer.json",
    "mix.exs",
];

/// The project root for a process working in `cwd` (absolute), given its
/// `home` directory. See the module documentation for the rule.
pub fn project_root(cwd: &Path, home: Option<&Path>) -> Option<PathBuf> {
    let mut top_most_manifest = None;
    for dir in cwd.ancestors() {
        if dir.parent().is_none() || Some(dir) == home {
            break;
        }
        if dir.join(".git").symlink_metadata().is_ok() {
            return Some(dir.to_path_buf());
        }
        if PROJECT_MARKERS.iter().any(|marker| dir.join(marker).exists()) {
            top_most_manifest = Some(dir);
        }
    }
    top_most_manifest.map(Path::to_path_buf)
}

/// The scope of a directory: its project root, else none.
pub fn of_dir(dir: &Path) -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| h.len() > 1).map(PathBuf::from);
    project_root(dir, home.as_deref())
}

/// This process's scope: `$STYXY_SCOPE` (an absolute path), else the scope of
/// its working directory.
pub fn current() -> Option<PathBuf> {
    let named = std::env::var_os(ENV_SCOPE).map(PathBuf::from).filter(|p| p.is_absolute());
    let scope = named.or_else(|| of_dir(&std::env::current_dir().ok()?))?;
    (scope.as_os_str().len() <= MAX_SCOPE_LEN).then_some(scope)
}
