//! The real allocator binary, started in a [`Sandbox`] as the CLI starts
//! it in user mode: the user's view of the allocator.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use styxy_proto::client::{Connection, Method};

use crate::build::allocator_bin;
use crate::{PATIENCE, Sandbox};

/// A configuration with a wide private type, so tests neither collide with
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

/// A running `styxy-allocator` serving a sandbox's socket and state; killed
/// when dropped (drop it before the sandbox).
pub struct Allocator {
    launch: Launch,
    child: Child,
    ready_after: Duration,
}

impl Allocator {
    /// A user-mode allocator that never exits on its own.
    pub fn start(sandbox: &Sandbox) -> Allocator {
        Allocator::start_with(sandbox, &["--user"], &[])
    }

    /// `args` choose the mode (and `--idle-timeout`, 0 unless given); the
    /// socket, state, configuration and log are the sandbox's; `env` adds
    /// to the environment (a bus address, say). Returns once the allocator
    /// answers `GET /status`.
    pub fn start_with(sandbox: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Allocator {
        let launch = Launch {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            socket: sandbox.socket(),
            state_dir: sandbox.state_dir(),
            config: sandbox.config_file(),
            system_config: sandbox.system_config_file(),
            runtime_dir: sandbox.runtime_dir(),
            log: sandbox.log_file(),
        };
        let (child, ready_after) = launch.start();
        Allocator { launch, child, ready_after }
    }

    /// The allocator as every user of the machine reaches it, as the system
    /// allocator is: system mode (`args` add to it), its socket open to all
    /// and the sandbox's directories on the way traversable.
    pub fn shared(sandbox: &Sandbox, args: &[&str]) -> Allocator {
        let allocator = Allocator::start_with(sandbox, args, &[]);
        for dir in [sandbox.path(), sandbox.socket().parent().expect("the socket's directory")] {
            std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap_or_else(|e| panic!("chmod 755 {}: {e}", dir.display()));
        }
        allocator
    }

    /// Starts it again on the same sandbox (after [`Allocator::kill9`]).
    pub fn restart(&mut self) {
        (self.child, self.ready_after) = self.launch.start();
    }

    /// SIGKILL, no chance to flush.
    pub fn kill9(&mut self) {
        self.child.kill().expect("kill the allocator");
        self.child.wait().expect("reap the allocator");
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(self.pid() as libc::pid_t, signal) }, 0);
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// From the exec to the first answered request, at the last (re)start.
    pub fn ready_after(&self) -> Duration {
        self.ready_after
    }

    /// Its exit status once it exits on its own (idle exit, `daemon stop`),
    /// if that happens `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the allocator") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Allocator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the allocator is started, kept for restarts.
struct Launch {
    args: Vec<String>,
    env: Vec<(String, String)>,
    socket: PathBuf,
    state_dir: PathBuf,
    config: PathBuf,
    system_config: PathBuf,
    runtime_dir: PathBuf,
    log: PathBuf,
}

impl Launch {
    fn command(&self) -> Command {
        let idle = if self.args.iter().any(|a| a == "--idle-timeout") { &[][..] } else { &["--idle-timeout", "0"][..] };
        let log = std::fs::File::create(&self.log).unwrap_or_else(|e| panic!("create {}: {e}", self.log.display()));
        let mut cmd = Command::new(allocator_bin());
        cmd.args(&self.args)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(idle)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("STYXY_CONFIG", &self.config)
            .env("STYXY_SYSTEM_CONFIG", &self.system_config)
            .env("XDG_RUNTIME_DIR", &self.runtime_dir)
            .env("STYXY_LOG", "warn")
            .env_remove("LD_PRELOAD")
            .stdout(Stdio::null())
            .stderr(log);
        cmd
    }

    /// Spawns the allocator and waits until it answers `GET /status`; polls
    /// often, so the wait doubles as a measure of its start-up.
    fn start(&self) -> (Child, Duration) {
        let mut command = self.command();
        let started = Instant::now();
        let mut child = command.spawn().unwrap_or_else(|e| panic!("start {}: {e}", allocator_bin().display()));
        loop {
            if let Some(status) = self.status() {
                let ready_after = started.elapsed();
                assert_eq!(status["status"], "running", "{status}");
                return (child, ready_after);
            }
            if let Some(exit) = child.try_wait().expect("wait for the allocator") {
                panic!("the allocator exited ({exit}) before answering; its log:\n{}", self.log());
            }
            assert!(
                started.elapsed() < PATIENCE,
                "the allocator did not answer on {}; its log:\n{}",
                self.socket.display(),
                self.log()
            );
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// The answer to `GET /status`, once there is one.
    fn status(&self) -> Option<Value> {
        let mut c = Connection::unix(&self.socket, PATIENCE, false).ok()?;
        let answer = c.send(Method::Get, "/status", None).ok().filter(|r| r.status == 200)?;
        serde_json::from_slice(&answer.body).ok()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
