//! Starts the real allocator binary on a temporary socket and state
//! directory, as the CLI does in user mode.

#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use styxy_proto::client::{Client, Method};

/// A config with a wide private type, so tests neither collide with
/// anything else on the machine nor hit the per-user limit.
pub const TEST_CONFIG: &str = r#"
[service_types.bulk]
description = "black-box test range"
range = [20000, 29999]
preferred_ports = [20000]

[service_types.probe]
description = "external-listener test range"
range = [31000, 31009]
preferred_ports = [31000, 31001]

[limits]
max_allocations_per_user = 20000
"#;

pub struct Allocator {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub child: Child,
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

impl Allocator {
    pub fn start() -> Allocator {
        Allocator::start_with(&["--user"])
    }

    /// `args` choose the mode; socket, state dir and config are always private.
    pub fn start_with(args: &[&str]) -> Allocator {
        Allocator::start_with_env(args, &[])
    }

    /// Like `start_with`, with extra environment (a bus address, say).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Allocator {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.toml"), TEST_CONFIG).unwrap();
        let socket = dir.path().join("run/api.sock");
        let extra: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let child = spawn(dir.path(), &socket, &extra, &env);
        let a = Allocator { dir, socket, child, extra, env };
        a.wait_ready();
        a
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn client(&self) -> Client {
        Client::new(self.socket.clone(), Duration::from_secs(10))
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.client().send(Method::Get, "/status").is_ok_and(|r| r.status == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("allocator did not answer on {}", self.socket.display());
    }

    /// SIGKILL, no chance to flush.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn restart(&mut self) {
        self.child = spawn(self.dir.path(), &self.socket, &self.extra, &self.env);
        self.wait_ready();
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self.client().send_json(Method::Post, path, body).unwrap();
        (r.status, serde_json::from_slice(&r.body).unwrap())
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let r = self.client().send(Method::Get, path).unwrap();
        (r.status, serde_json::from_slice(&r.body).unwrap())
    }

    pub fn delete(&self, path: &str) -> (u16, Value) {
        let r = self.client().send(Method::Delete, path).unwrap();
        (r.status, serde_json::from_slice(&r.body).unwrap())
    }

    pub fn allocations(&self) -> Vec<Value> {
        self.get("/allocations").1["allocations"].as_array().unwrap().clone()
    }

    pub fn generation(&self) -> u64 {
        self.get("/status").1["generation"].as_u64().unwrap()
    }
}

fn spawn(dir: &Path, socket: &Path, extra: &[String], env: &[(String, String)]) -> Child {
    let idle = if extra.iter().any(|a| a == "--idle-timeout") { &[][..] } else { &["--idle-timeout", "0"][..] };
    Command::new(env!("CARGO_BIN_EXE_styxy-allocator"))
        .args(extra)
        .arg("--socket")
        .arg(socket)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(idle)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("STYXY_CONFIG", dir.join("config.toml"))
        .env("STYXY_SYSTEM_CONFIG", dir.join("no-system-config.toml"))
        .env("STYXY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("allocator.log")).unwrap())
        .spawn()
        .unwrap()
}

impl Drop for Allocator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
