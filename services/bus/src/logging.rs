//! Logging for every Styxy daemon: journald when systemd connected stdout to
//! the journal (`JOURNAL_STREAM`), stderr otherwise; always behind an
//! `EnvFilter` (`STYXY_LOG`, default `info,zbus=warn`: zbus logs every
//! message at trace level). Event fields reach the journal as `STYXY_<NAME>`
//! (`port` → `STYXY_PORT`).

use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Registry};

/// Events of one target that carry a fixed journal MESSAGE_ID, so a
/// verdict line can be found with `journalctl MESSAGE_ID=...`.
#[derive(Debug, Clone, Copy)]
pub struct Tagged {
    pub target: &'static str,
    pub message_id: &'static str,
}

/// Installs the global subscriber; `identifier` is the journal's
/// SYSLOG_IDENTIFIER.
pub fn init(identifier: &'static str, tagged: Option<Tagged>) {
    let filter = EnvFilter::try_from_env("STYXY_LOG").unwrap_or_else(|_| EnvFilter::new("info,zbus=warn"));
    let journal = || {
        std::env::var_os("JOURNAL_STREAM")
            .and_then(|_| tracing_journald::layer().ok())
            .map(|l| l.with_field_prefix(Some("STYXY".into())).with_syslog_identifier(identifier.into()))
    };
    // The tagged target goes to a second journal layer that adds the id.
    match (journal(), tagged.and_then(|t| Some((t, journal()?)))) {
        (Some(layer), Some((tagged, second))) => {
            let with_id = second
                .with_custom_fields([("MESSAGE_ID", tagged.message_id)])
                .with_filter(filter_fn(move |m| m.target() == tagged.target));
            Registry::default()
                .with(filter)
                .with(layer.with_filter(filter_fn(move |m| m.target() != tagged.target)))
                .with(with_id)
                .init()
        }
        (Some(layer), None) => Registry::default().with(filter).with(layer).init(),
        (None, _) => Registry::default()
            .with(filter)
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false))
            .init(),
    }
}
