//! A sandbox for black-box runs against a real allocator: socket, state,
//! config and home under a temp dir; the allocator is started by `styxy`
//! itself (autostart) and stopped with `styxy daemon stop`.

#![allow(dead_code)] // each test binary uses a part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The `styxy-allocator` of this build tree (beside `styxy`), built on first
/// use when `cargo test -p styxy` did not build it.
pub fn allocator() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let styxy = Path::new(env!("CARGO_BIN_EXE_styxy"));
        let allocator = styxy.with_file_name("styxy-allocator");
        if !allocator.exists() {
            let release = styxy.parent().and_then(|d| d.file_name()) == Some("release".as_ref());
            let mut build = Command::new(env!("CARGO"));
            build.args(["build", "-p", "styxy-allocator"]).current_dir(env!("CARGO_MANIFEST_DIR"));
            if release {
                build.arg("--release");
            }
            let status = build.status().expect("run cargo build");
            assert!(status.success(), "building styxy-allocator failed");
        }
        allocator
    })
}

pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("api.sock")
    }

    pub fn config_file(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// `styxy` in this sandbox, allowed to start the allocator.
    pub fn styxy(&self) -> Command {
        let d = self.dir.path();
        let mut c = Command::new(env!("CARGO_BIN_EXE_styxy"));
        c.env("STYXY_SOCKET", self.socket())
            .env("STYXY_STATE_DIR", d.join("state"))
            .env("XDG_RUNTIME_DIR", d.join("run"))
            .env("STYXY_CONFIG", self.config_file())
            .env("STYXY_SYSTEM_CONFIG", d.join("system.toml"))
            .env("HOME", d)
            .env("STYXY_ALLOCATOR", allocator())
            .env_remove("STYXY_NO_AUTOSTART")
            .env_remove("STYXY_SESSION")
            .env_remove("STYXY_PRELOAD_LIB")
            .env_remove("CLAUDE_ENV_FILE")
            .env_remove("LD_PRELOAD");
        c
    }

    /// Runs `styxy ARGS` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.styxy().args(args).output().expect("run styxy")
    }

    /// Runs `styxy --json ARGS`, expecting success, and parses stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let o = self.styxy().arg("--json").args(args).output().expect("run styxy");
        assert_eq!(o.status.code(), Some(0), "styxy --json {args:?}: {}{}", text(&o.stdout), text(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", text(&o.stdout)))
    }

    /// Pids of allocators serving this sandbox's socket.
    pub fn allocator_pids(&self) -> Vec<u32> {
        let socket = self.socket().display().to_string();
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let args = styxy_observe::process::cmdline(*pid);
                styxy_observe::process::is_alive(*pid, None)
                    && args.first().is_some_and(|a| a.ends_with("styxy-allocator"))
                    && args.contains(&socket)
            })
            .collect()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.styxy().args(["--no-autostart", "daemon", "stop"]).output();
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
