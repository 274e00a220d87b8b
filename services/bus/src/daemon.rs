//! What every Styxy daemon on the bus does the same way: count activity for
//! the idle exit, talk to systemd, take and give back its bus name, and find
//! out who is calling.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use styxy_proto::caller::Caller;
use zbus::Connection;
use zbus::connection::Builder;
use zbus::fdo::DBusProxy;
use zbus::message::Header;
use zbus::object_server::Interface;
use zbus::proxy::CacheProperties;

use crate::error::BusError;

/// Requests in flight and the time of the last one, for the idle exit.
/// Anything that should keep a daemon alive (HTTP connections, bus calls)
/// holds a [`Busy`] while it runs.
#[derive(Debug)]
pub struct Activity {
    started: Instant,
    /// Milliseconds after `started` of the last activity.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Default for Activity {
    fn default() -> Self {
        Activity { started: Instant::now(), last_ms: AtomicU64::new(0), in_flight: AtomicUsize::new(0) }
    }
}

impl Activity {
    pub fn touch(&self) {
        self.last_ms.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Marks a request in flight until the guard drops.
    pub fn begin(&self) -> Busy<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        Busy(self)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// Returns once nothing happened for `idle` and nothing is in flight;
    /// never when `idle` is zero. One wake-up per period, no polling while
    /// requests keep pushing the deadline.
    pub async fn until_idle(&self, idle: Duration) {
        if idle.is_zero() {
            return std::future::pending().await;
        }
        loop {
            let quiet_for = self.idle_for();
            if quiet_for >= idle && self.in_flight() == 0 {
                return;
            }
            tokio::time::sleep(idle.saturating_sub(quiet_for).max(Duration::from_millis(100))).await;
        }
    }

    /// Waits, up to `limit`, for the requests in flight to finish.
    pub async fn until_drained(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.in_flight() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A request in flight (see [`Activity::begin`]).
pub struct Busy<'a>(&'a Activity);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// sd_notify messages, when systemd listens. `from_env` must run before any
/// thread exists (the environment is read, and other helpers clear it).
#[derive(Debug, Clone, Copy)]
pub struct Notifier {
    enabled: bool,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        Notifier { enabled: std::env::var_os("NOTIFY_SOCKET").is_some() }
    }

    pub fn send(&self, state: &[sd_notify::NotifyState]) {
        if self.enabled
            && let Err(e) = sd_notify::notify(false, state)
        {
            tracing::warn!("sd_notify failed: {e}");
        }
    }
}

/// Connects to the system bus (`DBUS_SYSTEM_BUS_ADDRESS` overrides it),
/// serves `iface` at `path` and takes `name`. The name is neither taken from
/// another owner nor queued for: a second instance fails here.
pub async fn serve<I: Interface>(name: &str, path: &str, iface: I) -> zbus::Result<Connection> {
    Builder::system()
        .serve_at(path, iface)
        .name(name)
        .allow_name_replacements(false)
        .replace_existing_names(false)
        .build()
        .await
}

/// Stops serving `name`: STOPPING=1 to systemd, the name back to the bus,
/// then up to `drain` for the calls in flight. In that order, a call that
/// arrives while we go is queued for a fresh start (D-Bus activation)
/// instead of reaching a process on its way out.
pub async fn step_down(conn: &Connection, name: &str, notifier: Notifier, activity: &Activity, drain: Duration) {
    notifier.send(&[sd_notify::NotifyState::Stopping]);
    if let Err(e) = conn.release_name(name).await {
        tracing::warn!("releasing the bus name {name}: {e}");
    }
    activity.until_drained(drain).await;
}

/// Who sent a method call: the uid and pid the bus daemon recorded for the
/// sender's connection (the kernel's word, as SO_PEERCRED on the API socket).
pub async fn caller(conn: &Connection, header: &Header<'_>) -> Result<Caller, BusError> {
    let sender = header.sender().ok_or_else(|| BusError::Unauthorized("a call without a sender".into()))?;
    let bus = DBusProxy::builder(conn).cache_properties(CacheProperties::No).build().await?;
    let credentials = bus
        .get_connection_credentials(sender.clone().into())
        .await
        .map_err(|e| BusError::Unauthorized(format!("cannot identify the caller: {e}")))?;
    let uid = credentials
        .unix_user_id()
        .ok_or_else(|| BusError::Unauthorized("the bus does not know the caller's uid".into()))?;
    Ok(Caller { uid, pid: credentials.process_id(), start_time: None })
}

/// The callers a service trusts with its internals: root and its own user
/// (the styxy services all run as one system user).
pub fn trusted(caller: &Caller) -> bool {
    caller.is_root() || caller.uid == styxy_proto::paths::uid()
}
