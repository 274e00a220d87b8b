//! Start-up hand-over from systemd, readiness and watchdog notifications,
//! idle exit and signals.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use listenfd::ListenFd;

use crate::app::App;
use crate::server::Listeners;

/// What systemd handed over through the environment.
pub struct Systemd {
    fds: ListenFd,
    pub listen_fds: usize,
    watchdog: Option<Duration>,
    notify: bool,
}

/// Test switch (only honoured when set, e.g. in a test drop-in): stop
/// sending watchdog pings after this many seconds, so systemd's watchdog
/// kill-and-restart path can be exercised for real.
const ENV_STOP_WATCHDOG: &str = "STYXY_DEBUG_STOP_WATCHDOG_AFTER";

impl Systemd {
    pub fn from_env() -> Systemd {
        let fds = ListenFd::from_env();
        let mut usec = 0;
        let watchdog = sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec));
        Systemd {
            listen_fds: fds.len(),
            fds,
            watchdog,
            notify: std::env::var_os("NOTIFY_SOCKET").is_some(),
        }
    }

    /// Sockets passed by systemd (the .socket unit's Unix and TCP streams).
    pub fn take_listeners(&mut self) -> Result<Listeners> {
        let fds = &mut self.fds;
        let mut out = Listeners { unix: Vec::new(), tcp: Vec::new() };
        for i in 0..self.listen_fds {
            if let Ok(Some(l)) = fds.take_unix_listener(i) {
                l.set_nonblocking(true)?;
                out.unix.push(l);
            } else if let Ok(Some(l)) = fds.take_tcp_listener(i) {
                l.set_nonblocking(true)?;
                out.tcp.push(l);
            }
        }
        Ok(out)
    }

    fn send(&self, state: &[sd_notify::NotifyState]) {
        if self.notify
            && let Err(e) = sd_notify::notify(false, state)
        {
            tracing::warn!("sd_notify failed: {e}");
        }
    }
}

/// Serves until SIGTERM/SIGINT, `POST /daemon/stop`, or `idle` without
/// requests; then says STOPPING=1, stops accepting, writes the state out.
pub async fn run(app: Arc<App>, listeners: Listeners, systemd: Systemd, idle: Duration) -> Result<()> {
    let server = tokio::spawn(crate::server::serve(listeners, app.clone(), wait_for_stop(app.clone(), idle)));
    app.watch_existing_owners();
    systemd.send(&[sd_notify::NotifyState::Ready]);
    tracing::info!(mode = ?app.mode, socket = %app.socket.display(), "ready");

    if let Some(period) = systemd.watchdog {
        let stop_after = std::env::var(ENV_STOP_WATCHDOG).ok().and_then(|v| v.parse::<u64>().ok());
        let notify = systemd.notify;
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let mut tick = tokio::time::interval(period / 2);
            loop {
                tick.tick().await;
                if stop_after.is_some_and(|s| started.elapsed() >= Duration::from_secs(s)) {
                    tracing::warn!("watchdog pings stopped by {ENV_STOP_WATCHDOG}");
                    return;
                }
                if notify {
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
                }
            }
        });
    }

    server.await??;
    systemd.send(&[sd_notify::NotifyState::Stopping]);
    app.flush();
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_stop(app: Arc<App>, idle: Duration) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = term => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        _ = app.stop_requested() => tracing::info!("stop requested over the API"),
        _ = idle_exit(&app, idle) => tracing::info!(idle_secs = idle.as_secs(), "idle: stopping"),
    }
}

/// Sleeps until nothing happened for `idle` (one wake-up per period, no
/// polling while busy requests keep pushing the deadline).
async fn idle_exit(app: &App, idle: Duration) {
    if idle.is_zero() {
        return std::future::pending().await;
    }
    loop {
        let quiet_for = app.idle_for();
        if quiet_for >= idle && app.open_connections() == 0 {
            return;
        }
        tokio::time::sleep(idle.saturating_sub(quiet_for).max(Duration::from_millis(100))).await;
    }
}
