//! The workspace's binaries as a test or benchmark runs them. Cargo names
//! the binaries of the package under test (`CARGO_BIN_EXE_<name>`, set
//! while the test runs) but builds neither a cdylib nor another package's
//! binary for it: those are built here, once per process, in the caller's
//! profile.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// `target/<profile>` of the running test or benchmark (it lives in
/// `target/<profile>/deps`).
pub(crate) fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf()
}

/// `cargo build -p PACKAGE` in this profile (a no-op when nothing changed);
/// then `target/<profile>/FILE`.
fn built(package: &str, file: &str) -> PathBuf {
    let dir = profile_dir();
    let mut build = Command::new(env!("CARGO"));
    build.args(["build", "-p", package]).current_dir(env!("CARGO_MANIFEST_DIR"));
    if dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build");
    assert!(status.success(), "cargo build -p {package} failed");
    let path = dir.join(file);
    assert!(path.exists(), "{} missing after build", path.display());
    path
}

/// The binary `name` of `package`: the one cargo built for this test when
/// it belongs to the package under test, else built here.
fn binary(package: &str, name: &str) -> PathBuf {
    match std::env::var_os(format!("CARGO_BIN_EXE_{name}")) {
        Some(path) => PathBuf::from(path),
        None => built(package, name),
    }
}

/// The styxy-allocator binary, fresh.
pub fn allocator_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| binary("styxy-allocator", "styxy-allocator"))
}

/// The `styxy` binary, fresh.
pub fn styxy_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| binary("styxy", "styxy"))
}

/// `target/<profile>/libstyxy_preload.so`, rebuilt if stale.
pub fn preload_lib() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| built("styxy-preload", "libstyxy_preload.so"))
}
