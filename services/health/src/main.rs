//! styxy-health: one health pass over the allocations, started by
//! styxy-health.timer (every 15 s by default).
//!
//! Reads the state without the lock, decides with
//! [`styxy_core::health::check`] (owner pid + start time, listening socket
//! of the owner's uid, session heartbeat), logs every decision with
//! STYXY_PORT, STYXY_LOCK_ID and STYXY_REASON, and sends what needs
//! recording to the allocator (org.styxy.Allocator1.ReportHealth), which
//! D-Bus starts if it is not running. The allocator, the single writer,
//! counts failures in the state and releases. A healthy pass calls nobody.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use styxy_bus::{Allocator1Proxy, wire};
use styxy_core::health::{self, Failure, Listening, Released, Report};
use styxy_core::host::RealHost;
use styxy_core::store;
use styxy_proto::model::now_millis;
use styxy_proto::paths;

#[derive(Parser, Debug)]
#[command(name = "styxy-health", version, about = "One Styxy health pass (run by styxy-health.timer)")]
struct Args {
    /// State directory (default: $STATE_DIRECTORY, else /var/lib/styxy).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Decide and log, but report nothing to the allocator.
    #[arg(long)]
    dry_run: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    styxy_bus::logging::init("styxy-health", None);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    let dir = args.state_dir.unwrap_or_else(paths::system_state_dir);
    let state = store::read_state(&dir).with_context(|| format!("reading the state in {}", dir.display()))?;
    let listening = Listening::dump().map_err(|e| tracing::warn!("checking without the listening test: {e}")).ok();
    let report = health::check(&state, now_millis(), &RealHost, listening.as_ref());
    tracing::debug!(checked = state.allocations.len(), findings = report.findings.len(), "health pass");
    if report.is_empty() {
        return Ok(());
    }
    report.log();
    if args.dry_run {
        return Ok(());
    }
    let released = zbus::block_on(send(&report)).context("reporting to org.styxy.Allocator1")?;
    health::log_released(&released);
    Ok(())
}

async fn send(report: &Report) -> Result<Vec<Released>> {
    let conn = zbus::Connection::system().await?;
    let allocator = Allocator1Proxy::new(&conn).await?;
    let released = allocator.report_health(wire::findings_to_wire(report), report.expired_instances.clone()).await?;
    released
        .into_iter()
        .map(|(port, lock_id, reason)| {
            let reason =
                reason.parse::<Failure>().with_context(|| format!("the allocator's answer for port {port}"))?;
            Ok(Released { port, lock_id, reason })
        })
        .collect()
}
