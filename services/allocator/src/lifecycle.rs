//! The daemon around [`crate::serve`]: the bus (system mode), readiness and
//! watchdog notifications, the in-process health pass (user mode), idle
//! exit and signals.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use styxy_bus::daemon::{self, Notifier};
use styxy_bus::{ALLOCATOR_NAME, ALLOCATOR_PATH, AllocatorService, Observer1Proxy};
use zbus::Connection;
use zbus::proxy::CacheProperties;

use crate::app::{App, Mode, OnBus};
use crate::server::{Listeners, serve};

/// Test switch (only honoured when set, e.g. in a test drop-in): stop
/// sending watchdog pings after this many seconds, so systemd's watchdog
/// kill-and-restart path can be exercised for real.
const ENV_STOP_WATCHDOG: &str = "STYXY_DEBUG_STOP_WATCHDOG_AFTER";

/// Serves until SIGTERM/SIGINT, `POST /daemon/stop`, or `idle` without
/// requests or bus calls; then says STOPPING=1, gives the bus name back,
/// stops accepting, lets requests in flight finish, writes the state out.
/// `watchdog` is systemd's watchdog period, when it set one.
pub async fn run(
    app: Arc<App>,
    listeners: Listeners,
    notifier: Notifier,
    watchdog: Option<Duration>,
    idle: Duration,
) -> Result<()> {
    // HTTP is served at once; the bus is joined alongside, so a socket
    // activation's first answer does not wait for the D-Bus handshake.
    let bus: Arc<tokio::sync::OnceCell<Connection>> = Arc::new(tokio::sync::OnceCell::new());
    let shutdown = {
        let (app, bus) = (app.clone(), bus.clone());
        async move {
            wait_for_stop(&app, idle).await;
            match bus.get() {
                // Calls in flight are drained with the HTTP requests.
                Some(bus) => daemon::step_down(bus, ALLOCATOR_NAME, notifier, &app.activity, Duration::ZERO).await,
                None => notifier.send(&[sd_notify::NotifyState::Stopping]),
            }
        }
    };
    let server = tokio::spawn(serve(listeners, app.clone(), shutdown));
    if app.mode == Mode::System {
        let app = app.clone();
        tokio::spawn(async move {
            if let Some(conn) = join_bus(&app).await {
                let _ = bus.set(conn);
            }
            app.bus_settled();
        });
    }
    app.watch_existing_owners();
    if app.mode == Mode::User {
        spawn_health_passes(&app);
    }
    notifier.send(&[sd_notify::NotifyState::Ready]);
    tracing::info!(mode = ?app.mode, socket = %app.socket.display(), "ready");

    if let Some(period) = watchdog {
        let stop_after = std::env::var(ENV_STOP_WATCHDOG).ok().and_then(|v| v.parse::<u64>().ok());
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let mut tick = tokio::time::interval(period / 2);
            loop {
                tick.tick().await;
                if stop_after.is_some_and(|s| started.elapsed() >= Duration::from_secs(s)) {
                    tracing::warn!("watchdog pings stopped by {ENV_STOP_WATCHDOG}");
                    return;
                }
                notifier.send(&[sd_notify::NotifyState::Watchdog]);
            }
        });
    }

    server.await??;
    app.flush();
    tracing::info!("stopped");
    Ok(())
}

/// Serves org.styxy.Allocator1 on the system bus, forwards allocation
/// changes as AllocationsChanged, and routes observation to the observer
/// service. Without a bus the allocator still serves HTTP.
async fn join_bus(app: &Arc<App>) -> Option<Connection> {
    let conn = match daemon::serve(ALLOCATOR_NAME, ALLOCATOR_PATH, AllocatorService::new(OnBus(app.clone()))).await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!("not on the system bus ({e}): serving HTTP only, observing with this process's own view");
            return None;
        }
    };
    match Observer1Proxy::builder(&conn).cache_properties(CacheProperties::No).build().await {
        Ok(proxy) => app.use_observer_bus(proxy),
        Err(e) => tracing::warn!("no proxy for the observer service: {e}"),
    }
    match conn.object_server().interface::<_, AllocatorService<OnBus>>(ALLOCATOR_PATH).await {
        Ok(iface) => {
            let mut changes = app.allocation_changes();
            tokio::spawn(async move {
                while changes.changed().await.is_ok() {
                    let generation = *changes.borrow_and_update();
                    let sent = AllocatorService::<OnBus>::allocations_changed(iface.signal_emitter(), generation).await;
                    if let Err(e) = sent {
                        tracing::warn!("emitting AllocationsChanged: {e}");
                    }
                }
            });
        }
        Err(e) => tracing::error!("the Allocator1 object vanished: {e}"),
    }
    Some(conn)
}

/// User mode has no health timer: the allocator runs the pass itself, off
/// the async threads (it reads /proc). Passes do not count as activity.
fn spawn_health_passes(app: &Arc<App>) {
    let period = Duration::from_secs(app.engine().config().health.period_secs);
    let app = app.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let app = app.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || app.health_pass()).await {
                tracing::error!("health pass failed: {e}");
            }
        }
    });
}

async fn wait_for_stop(app: &App, idle: Duration) {
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
        _ = app.activity.until_idle(idle) => tracing::info!(idle_secs = idle.as_secs(), "idle: stopping"),
    }
}
