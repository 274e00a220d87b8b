//! A private message bus for tests and benchmarks: `dbus-daemon` with a
//! session-bus configuration of its own (open policy, a service directory
//! for D-Bus activation), stopped when dropped. Needs `dbus-daemon` (Debian
//! package `dbus-daemon`).
//!
//! Styxy's binaries connect to the *system* bus; the daemon is started with
//! `DBUS_SYSTEM_BUS_ADDRESS` pointing at itself, so the services it
//! activates find it, and [`PrivateBus::address`] is what to give the
//! processes a test starts.

use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};

use styxy_core::engine::Engine;
use styxy_core::health::{Released, Report};
use styxy_core::recovery::Outcome;
use styxy_proto::api::{AllocateRequest, AllocateResponse, AllocationView, ReleaseResponse};
use styxy_proto::caller::Caller;
use styxy_proto::error::ApiError;
use zbus::Connection;

use crate::daemon::Activity;
use crate::{ALLOCATOR_NAME, ALLOCATOR_PATH, AllocatorBackend, AllocatorService};

pub struct PrivateBus {
    dir: tempfile::TempDir,
    daemon: Child,
    address: String,
}

impl PrivateBus {
    /// Starts a bus that can activate `services`: (bus name, command line).
    pub fn start(services: &[(&str, String)]) -> io::Result<PrivateBus> {
        let dir = tempfile::tempdir()?;
        let service_dir = dir.path().join("services");
        std::fs::create_dir(&service_dir)?;
        for (name, exec) in services {
            let file = format!("[D-BUS Service]\nName={name}\nExec={exec}\n");
            std::fs::write(service_dir.join(format!("{name}.service")), file)?;
        }
        let socket = dir.path().join("bus");
        let address = format!("unix:path={}", socket.display());
        let config = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>{address}</listen>
  <auth>EXTERNAL</auth>
  <servicedir>{services}</servicedir>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
            services = service_dir.display()
        );
        let config_path = dir.path().join("bus.conf");
        std::fs::write(&config_path, config)?;
        let mut daemon = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config_path.display()))
            .args(["--nofork", "--print-address=1"])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| {
                io::Error::new(e.kind(), format!("starting dbus-daemon (Debian: apt-get install dbus-daemon): {e}"))
            })?;
        // The daemon prints its address once it listens.
        let mut line = String::new();
        let stdout = daemon.stdout.take().ok_or_else(|| io::Error::other("no stdout"))?;
        BufReader::new(stdout).read_line(&mut line)?;
        if line.trim().is_empty() {
            let _ = daemon.kill();
            return Err(io::Error::other("dbus-daemon exited before listening"));
        }
        Ok(PrivateBus { dir, daemon, address })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// A scratch directory that lives as long as the bus.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub async fn connect(&self) -> zbus::Result<Connection> {
        zbus::connection::Builder::address(self.address.as_str()).build().await
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// An engine behind org.styxy.Allocator1 without the allocator binary, for
/// tests of the programs that call it (health, recovery).
pub struct EngineBackend {
    engine: Mutex<Engine>,
    activity: Activity,
}

impl EngineBackend {
    pub fn new(engine: Engine) -> Arc<EngineBackend> {
        Arc::new(EngineBackend { engine: Mutex::new(engine), activity: Activity::default() })
    }

    pub fn engine(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves it on `bus` as org.styxy.Allocator1 until the connection drops.
    pub async fn serve(self: &Arc<Self>, bus: &PrivateBus) -> zbus::Result<Connection> {
        zbus::connection::Builder::address(bus.address())
            .serve_at(ALLOCATOR_PATH, AllocatorService::new(self.clone()))
            .name(ALLOCATOR_NAME)
            .build()
            .await
    }
}

impl AllocatorBackend for Arc<EngineBackend> {
    async fn allocate(&self, caller: Caller, request: AllocateRequest) -> Result<AllocateResponse, ApiError> {
        self.engine().allocate(&request, &caller)
    }

    fn release(&self, caller: &Caller, lock_id: &str) -> Result<ReleaseResponse, ApiError> {
        self.engine().release(lock_id, caller)
    }

    fn list(&self, caller: &Caller) -> Result<Vec<AllocationView>, ApiError> {
        self.engine().list(caller)
    }

    fn generation(&self) -> u64 {
        self.engine().state().generation
    }

    async fn report_health(&self, report: &Report) -> Result<Vec<Released>, ApiError> {
        self.engine().apply_health(report)
    }

    /// Reloads with the built-in configuration.
    fn reload(&self) -> Result<Outcome, ApiError> {
        self.engine().reload(styxy_core::config::Config::builtin())
    }

    fn repair(&self) -> Result<Outcome, ApiError> {
        self.engine().recover()
    }

    fn activity(&self) -> &Activity {
        &self.activity
    }
}
