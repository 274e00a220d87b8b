//! Which project a process works in, from its working directory.
//!
//! Rule ([`project_root`]), walking up from the working directory:
//! - the nearest directory holding `.git` (a directory, or a file for
//!   worktrees and submodules) is the project: a repository is a project;
//! - without one, the top-most directory holding a build manifest
//!   ([`PROJECT_MARKERS`]) is the project, so a package inside a monorepo
//!   counts as the monorepo;
//! - the walk stops below `/` and below the process's home directory (`HOME`
//!   in its environment): a stray `~/package.json` or a dotfiles repository
//!   in `~` would otherwise make the whole home one project;
//! - no marker at all: no project.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

// One rule for listings and scopes: the preload, which may not link this
// crate, finds its scope with the same function.
pub use styxy_proto::scope::{PROJECT_MARKERS, project_root};

/// `HOME` from the environment `pid` started with (readable under the same
/// rules as its working directory).
pub fn home_of(pid: u32) -> Option<PathBuf> {
    let environ = crate::process::read_proc(pid, "environ")?;
    environ
        .split(|byte| *byte == 0)
        .find_map(|entry| entry.strip_prefix(b"HOME="))
        .filter(|home| home.starts_with(b"/") && home.len() > 1)
        .map(|home| PathBuf::from(OsStr::from_bytes(home)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn home_comes_from_the_process_environment() {
        let expected = std::env::var_os("HOME").filter(|h| h.len() > 1).map(PathBuf::from);
        assert_eq!(home_of(std::process::id()), expected);
    }

    #[test]
    fn a_repository_beats_manifests_inside_it() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        let package = repo.join("packages/web/src");
        fs::create_dir_all(&package).unwrap();
        fs::create_dir(repo.join(".git")).unwrap();
        fs::write(repo.join("packages/web/package.json"), "{}").unwrap();
        assert_eq!(project_root(&package, Some(tmp.path())), Some(repo));
    }

    #[test]
    fn a_worktree_git_file_marks_a_repository_too() {
        let tmp = tempfile::tempdir().unwrap();
        let worktree = tmp.path().join("wt");
        fs::create_dir_all(worktree.join("src")).unwrap();
        fs::write(worktree.join(".git"), "gitdir: /elsewhere\n").unwrap();
        assert_eq!(project_root(&worktree.join("src"), Some(tmp.path())), Some(worktree));
    }

    #[test]
    fn without_a_repository_the_top_most_manifest_wins() {
        let tmp = tempfile::tempdir().unwrap();
        let mono = tmp.path().join("mono");
        let crate_dir = mono.join("crates/api");
        fs::create_dir_all(&crate_dir).unwrap();
        fs::write(mono.join("Cargo.toml"), "").unwrap();
        fs::write(crate_dir.join("Cargo.toml"), "").unwrap();
        assert_eq!(project_root(&crate_dir, Some(tmp.path())), Some(mono));
    }

    #[test]
    fn the_home_directory_is_never_a_project() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home/alice");
        let scratch = home.join("scratch");
        fs::create_dir_all(&scratch).unwrap();
        fs::create_dir(home.join(".git")).unwrap();
        fs::write(home.join("package.json"), "{}").unwrap();
        assert_eq!(project_root(&scratch, Some(&home)), None);

        fs::write(scratch.join("pyproject.toml"), "").unwrap();
        assert_eq!(project_root(&scratch, Some(&home)), Some(scratch));
    }
}
