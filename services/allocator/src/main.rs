//! styxy-allocator: serves the HTTP API on a Unix socket (and loopback TCP
//! in system mode), started by systemd socket activation or by the CLI in
//! user mode. The service is the library; this binary reads its arguments
//! and what systemd handed over, binds what is missing and runs it.

mod cli;

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
