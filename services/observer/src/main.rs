//! styxy-observer: serves `org.styxy.Observer1` on the system bus. Started
//! by D-Bus activation on the first call; exits when idle. It is the one
//! Styxy service with the capabilities (CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE,
//! used read-only) to map other users' sockets to their processes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use styxy_bus::daemon::{self, Activity, Notifier};
use styxy_bus::{OBSERVER_NAME, OBSERVER_PATH, ObserverService};
use styxy_core::config::Config;
use styxy_observe::Observer;
use styxy_proto::paths;

#[derive(Parser, Debug)]
#[command(name = "styxy-observer", version, about = "Styxy's port observer (D-Bus org.styxy.Observer1)")]
struct Args {
    /// Exit after this many seconds without a call (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    idle_timeout: u64,
    /// State directory, read (without the lock) to suggest free ports.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Before any thread exists: helpers may clear what they read.
    let notifier = Notifier::from_env();
    styxy_bus::logging::init("styxy-observer", None);
    let served = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .and_then(|runtime| runtime.block_on(serve(args, notifier)));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args, notifier: Notifier) -> Result<()> {
    let observer = Observer::new().context("opening the sock_diag socket")?;
    let config = Config::load().unwrap_or_else(|e| {
        tracing::error!("configuration rejected, suggesting from the built-in service types: {e}");
        Config::builtin()
    });
    let state_dir = args.state_dir.unwrap_or_else(paths::system_state_dir);
    let activity = Arc::new(Activity::default());
    let service = ObserverService::new(observer, config, state_dir, activity.clone());
    let conn = daemon::serve(OBSERVER_NAME, OBSERVER_PATH, service)
        .await
        .with_context(|| format!("serving {OBSERVER_NAME} on the system bus"))?;
    notifier.send(&[sd_notify::NotifyState::Ready]);
    tracing::info!("serving {OBSERVER_NAME}");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = activity.until_idle(Duration::from_secs(args.idle_timeout)) => tracing::info!("idle: stopping"),
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = conn.closed() => {
            tracing::warn!("the bus connection closed: stopping");
            return Ok(());
        }
    }
    daemon::step_down(&conn, OBSERVER_NAME, notifier, &activity, Duration::from_secs(2)).await;
    Ok(())
}
