//! journald when started by systemd (JOURNAL_STREAM), stderr otherwise;
//! always behind an EnvFilter (`STYXY_LOG`), since zbus is chatty at trace.

use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Registry};

pub fn init() {
    let filter = EnvFilter::try_from_env("STYXY_LOG").unwrap_or_else(|_| EnvFilter::new("info,zbus=warn"));
    let journald = std::env::var_os("JOURNAL_STREAM")
        .and_then(|_| tracing_journald::layer().ok())
        .map(|l| l.with_field_prefix(Some("STYXY".into())).with_syslog_identifier("styxy-allocator".into()));
    match journald {
        Some(layer) => Registry::default().with(filter).with(layer).init(),
        None => Registry::default()
            .with(filter)
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false))
            .init(),
    }
}
