//! A private directory tree for one test: the allocator's socket, state,
//! configuration and log, a runtime directory and a home, and the ways in
//! (the `styxy` CLI, programs under the preload, HTTP).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use serde_json::Value;
use styxy_proto::client::{Client, Connection, Method};

use crate::PATIENCE;
use crate::build::{allocator_bin, preload_lib, styxy_bin};

pub struct Sandbox {
    dir: tempfile::TempDir,
    /// `styxy` ran here and may have started an allocator, which the drop stops.
    cli_ran: AtomicBool,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        // Built now, if at all, rather than inside a test's timed section.
        allocator_bin();
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["run", "xdg"] {
            let path = dir.path().join(sub);
            std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        }
        Sandbox { dir, cli_ran: AtomicBool::new(false) }
    }

    /// A sandbox whose user configuration is `config`.
    pub fn with_config(config: &str) -> Sandbox {
        let sandbox = Sandbox::new();
        sandbox.write_config(config);
        sandbox
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The allocator's socket ($STYXY_SOCKET); the port map lies beside it.
    pub fn socket(&self) -> PathBuf {
        self.path().join("run/api.sock")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path().join("state")
    }

    /// The user configuration ($STYXY_CONFIG), absent unless written.
    pub fn config_file(&self) -> PathBuf {
        self.path().join("config.toml")
    }

    pub fn write_config(&self, config: &str) {
        let path = self.config_file();
        std::fs::write(&path, config).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// The system configuration ($STYXY_SYSTEM_CONFIG), absent unless written.
    pub fn system_config_file(&self) -> PathBuf {
        self.path().join("system.toml")
    }

    /// $XDG_RUNTIME_DIR of everything run here.
    pub fn runtime_dir(&self) -> PathBuf {
        self.path().join("xdg")
    }

    /// Where an allocator started by [`crate::Allocator`] writes its log.
    pub fn log_file(&self) -> PathBuf {
        self.path().join("allocator.log")
    }

    /// `styxy` in this sandbox (home included), allowed to start the
    /// allocator.
    pub fn styxy(&self) -> Command {
        self.cli_ran.store(true, Ordering::Relaxed);
        let mut c = Command::new(styxy_bin());
        c.env("STYXY_SOCKET", self.socket())
            .env("STYXY_STATE_DIR", self.state_dir())
            .env("XDG_RUNTIME_DIR", self.runtime_dir())
            .env("STYXY_CONFIG", self.config_file())
            .env("STYXY_SYSTEM_CONFIG", self.system_config_file())
            .env("HOME", self.path())
            .env("STYXY_ALLOCATOR", allocator_bin())
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
    pub fn json(&self, args: &[&str]) -> Value {
        let o = self.styxy().arg("--json").args(args).output().expect("run styxy");
        assert_eq!(o.status.code(), Some(0), "styxy --json {args:?}: {}{}", text(&o.stdout), text(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", text(&o.stdout)))
    }

    /// A program under the preload, with this sandbox's socket and runtime
    /// directory, working in the sandbox.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("LD_PRELOAD", preload_lib())
            .env("STYXY_SOCKET", self.socket())
            .env("XDG_RUNTIME_DIR", self.runtime_dir())
            .env("PYTHONUNBUFFERED", "1")
            .env_remove("STYXY_PRELOAD")
            .env_remove("STYXY_QUIET")
            .current_dir(self.path());
        cmd
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

    /// A client of the allocator on this sandbox's socket.
    pub fn client(&self) -> Client {
        Client::new(self.socket(), PATIENCE)
    }

    /// One request with a raw body; the status and the JSON answer.
    pub fn request(&self, method: Method, path: &str, body: Option<&[u8]>) -> (u16, Value) {
        let socket = self.socket();
        let answer = Connection::unix(&socket, PATIENCE, false)
            .and_then(|mut c| c.send(method, path, body))
            .unwrap_or_else(|e| panic!("{method:?} {path} on {}: {e}", socket.display()));
        let json = serde_json::from_slice(&answer.body)
            .unwrap_or_else(|e| panic!("{method:?} {path}: {e}: {}", text(&answer.body)));
        (answer.status, json)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.request(Method::Get, path, None)
    }

    pub fn post(&self, path: &str, body: &impl Serialize) -> (u16, Value) {
        let body = serde_json::to_vec(body).expect("a JSON body");
        self.request(Method::Post, path, Some(&body))
    }

    pub fn delete(&self, path: &str) -> (u16, Value) {
        self.request(Method::Delete, path, None)
    }

    /// Every allocation the allocator lists.
    pub fn allocations(&self) -> Vec<Value> {
        let (_, all) = self.get("/allocations");
        all["allocations"].as_array().unwrap_or_else(|| panic!("no allocations list in {all}")).clone()
    }

    /// The allocations whose owner is `pid`.
    pub fn allocations_of(&self, pid: u32) -> Vec<Value> {
        self.allocations().into_iter().filter(|a| a["owner"]["pid"] == pid).collect()
    }

    /// The state's generation, from `/status`.
    pub fn generation(&self) -> u64 {
        let (_, status) = self.get("/status");
        status["generation"].as_u64().unwrap_or_else(|| panic!("no generation in {status}"))
    }

    /// Writes the port map beside the socket: every port free except
    /// `entries` (port, owner pid), no scope entry.
    pub fn write_port_map(&self, entries: &[(u16, u32)]) {
        let path = styxy_proto::paths::port_map_for(&self.socket());
        write_port_map(&path, entries, &[]);
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.cli_ran.load(Ordering::Relaxed) {
            let _ = self.styxy().args(["--no-autostart", "daemon", "stop"]).output();
        }
    }
}

/// A moved server in a port map's scope table: (uid, scope path,
/// canonical port, actual port).
pub type ScopeEntry<'a> = (u32, &'a Path, u16, u16);

/// Writes a port map at `path` as the allocator lays it out: `reserved`
/// (port, owner pid) in the pid table, `scoped` in the scope table.
pub fn write_port_map(path: &Path, reserved: &[(u16, u32)], scoped: &[ScopeEntry<'_>]) {
    use styxy_proto::portmap::{FILE_SIZE, SIZE, ScopeTable, scope_hash};
    // u64 words: the scope table's alignment.
    let mut words = vec![0u64; FILE_SIZE / 8];
    let bytes = words.as_mut_ptr().cast::<u8>();
    // SAFETY: `words` holds FILE_SIZE bytes; the scope table starts at SIZE,
    // 8-aligned, and is all atomics (zero is valid).
    let table = unsafe { &*bytes.add(SIZE).cast::<ScopeTable>() };
    table.reset();
    for &(uid, scope, canonical, actual) in scoped {
        assert!(table.insert(uid, scope_hash(scope.as_os_str().as_encoded_bytes()), canonical, actual));
        table.set_canonical(canonical, true);
    }
    // SAFETY: as above, read as bytes.
    let mut map = unsafe { std::slice::from_raw_parts(bytes, FILE_SIZE) }.to_vec();
    for &(port, owner) in reserved {
        let at = usize::from(port) * 4;
        map[at..at + 4].copy_from_slice(&owner.to_le_bytes());
    }
    std::fs::write(path, map).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Program output as text, for messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
