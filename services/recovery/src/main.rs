//! styxy-recovery: validates and repairs Styxy's state. A oneshot run at
//! boot before the allocator's first start, hourly by its timer, and by the
//! allocator's OnFailure=.
//!
//! With the allocator stopped, it opens the state as its writer (a damaged
//! file is kept aside and the newest valid backup restored), repairs what
//! breaks an invariant ([`styxy_core::recovery`]) and writes the state out.
//! With the allocator running (it holds the lock), it reads the state
//! without the lock and, when the files do not read or the state has
//! problems, asks the allocator to repair itself over D-Bus
//! (org.styxy.Allocator1.Repair): the single writer fixes its own state.
//!
//! It ends with one verdict line in the journal,
//! `MESSAGE_ID=21ccff387b784dc9949f7587098f05b8`, with STYXY_VERDICT
//! (clean, repaired, restored, failed), STYXY_GENERATION and
//! STYXY_ALLOCATIONS. It exits 1 only when it could not do its job.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use styxy_bus::Allocator1Proxy;
use styxy_bus::logging::Tagged;
use styxy_core::config::Config;
use styxy_core::recovery::{self, Context, Outcome, VERDICT_MESSAGE_ID, Verdict};
use styxy_core::store::{self, StoreError};
use styxy_proto::paths;

/// The tracing target of the verdict line (tagged with the MESSAGE_ID).
const VERDICT_TARGET: &str = "styxy_recovery::verdict";

#[derive(Parser, Debug)]
#[command(name = "styxy-recovery", version, about = "Validate and repair Styxy's state (run by systemd)")]
struct Args {
    /// State directory (default: $STATE_DIRECTORY, else /var/lib/styxy).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// When the allocator holds the state but does not answer, wait this
    /// long for it to let go before giving up.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    wait: u64,
}

/// What the verdict line says.
struct Summary {
    verdict: Verdict,
    detail: String,
    generation: Option<u64>,
    allocations: Option<usize>,
}

impl Summary {
    fn of(outcome: &Outcome) -> Summary {
        Summary {
            verdict: outcome.verdict(),
            detail: outcome.repairs().join("; "),
            generation: Some(outcome.generation),
            allocations: Some(outcome.allocations),
        }
    }

    fn failed(detail: String) -> Summary {
        Summary { verdict: Verdict::Failed, detail, generation: None, allocations: None }
    }

    fn log(&self) {
        let mut line = format!("state {}", self.verdict.as_str());
        if let (Some(g), Some(n)) = (self.generation, self.allocations) {
            line.push_str(&format!(" (generation {g}, {n} allocation(s))"));
        }
        if !self.detail.is_empty() {
            line.push_str(": ");
            line.push_str(&self.detail);
        }
        let (verdict, generation, allocations) = (self.verdict.as_str(), self.generation, self.allocations);
        match self.verdict {
            Verdict::Clean => {
                tracing::info!(target: VERDICT_TARGET, verdict, generation, allocations, "{line}")
            }
            Verdict::Repaired => {
                tracing::warn!(target: VERDICT_TARGET, verdict, generation, allocations, "{line}")
            }
            Verdict::Restored | Verdict::Failed => {
                tracing::error!(target: VERDICT_TARGET, verdict, generation, allocations, "{line}")
            }
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    styxy_bus::logging::init("styxy-recovery", Some(Tagged { target: VERDICT_TARGET, message_id: VERDICT_MESSAGE_ID }));
    let dir = args.state_dir.unwrap_or_else(paths::system_state_dir);
    let config = Config::load().unwrap_or_else(|e| {
        tracing::error!("configuration rejected, checking against the built-in service types: {e}");
        Config::builtin()
    });
    let summary = recover(&dir, &config, Duration::from_secs(args.wait));
    summary.log();
    if summary.verdict == Verdict::Failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

fn recover(dir: &Path, config: &Config, wait: Duration) -> Summary {
    match recovery::recover_dir(dir, config, Duration::ZERO) {
        Ok(outcome) => Summary::of(&outcome),
        Err(StoreError::Locked { .. }) => beside_the_allocator(dir, config, wait),
        Err(e) => Summary::failed(format!("{e}; nothing was changed")),
    }
}

/// The allocator holds the state: look without the lock, and let it repair.
fn beside_the_allocator(dir: &Path, config: &Config, wait: Duration) -> Summary {
    let why = match store::read_state(dir) {
        Ok(state) => {
            let problems = match Context::current(dir) {
                Ok(cx) => recovery::validate(&state, config, &cx),
                Err(e) => return Summary::failed(format!("{e}; nothing was changed")),
            };
            if problems.is_empty() {
                let allocations = Some(state.allocations.len());
                return Summary {
                    verdict: Verdict::Clean,
                    detail: String::new(),
                    generation: Some(state.generation),
                    allocations,
                };
            }
            format!("{} problem(s)", problems.len())
        }
        Err(e) => e.to_string(),
    };
    tracing::warn!("the running allocator must repair its state ({why}): asking it over D-Bus");
    match zbus::block_on(ask_allocator()) {
        Ok(outcome) => outcome,
        Err(asking) => {
            // It may have been on its way out: try as the writer.
            match recovery::recover_dir(dir, config, wait) {
                Ok(outcome) => Summary::of(&outcome),
                Err(e) => Summary::failed(format!(
                    "the allocator did not repair ({asking}) and the state stayed locked ({e})"
                )),
            }
        }
    }
}

async fn ask_allocator() -> anyhow::Result<Summary> {
    let conn = zbus::Connection::system().await?;
    let allocator = Allocator1Proxy::new(&conn).await?;
    let (verdict, repairs) = allocator.repair().await?;
    let generation = allocator.generation().await.ok();
    let detail =
        if repairs.is_empty() { String::new() } else { format!("{} (by the running allocator)", repairs.join("; ")) };
    Ok(Summary { verdict: verdict.parse().map_err(anyhow::Error::msg)?, detail, generation, allocations: None })
}
