//! styxy-allocator: serves the HTTP API on a Unix socket (and loopback TCP
//! in system mode), started by systemd socket activation or by the CLI in
//! user mode.

mod app;
mod auth;
mod cli;
mod lifecycle;
mod metrics;
mod routes;
mod server;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("styxy-allocator: {e:#}");
            ExitCode::FAILURE
        }
    }
}
