//! Writing results and failures, and the exit status each failure maps to.

use crate::cli::{EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE};
use crate::discover::Unreachable;
use std::io::Write;
use styxy_proto::client::ClientError;

/// [`styxy_proto::api::ErrorBody`]'s shape, for failures on this side of the
/// socket (whose codes are not the allocator's).
#[derive(serde::Serialize)]
struct LocalErrorBody<'a> {
    success: bool,
    error: &'a str,
    message: String,
}

/// Why a command did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Unreachable(#[from] Unreachable),
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A failure on this side of the socket; `code` is its stable JSON code.
    #[error("{message}")]
    Local { code: &'static str, message: String },
    /// Arguments that parse but do not make sense together.
    #[error("{0}")]
    Usage(String),
}

impl Failure {
    pub fn local(code: &'static str, message: impl Into<String>) -> Failure {
        Failure::Local { code, message: message.into() }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Unreachable(_) | Failure::Client(ClientError::Connect { .. } | ClientError::Timeout { .. }) => {
                EXIT_UNREACHABLE
            }
            Failure::Usage(_) => EXIT_USAGE,
            _ => EXIT_REFUSED,
        }
    }

    /// The error as JSON: the allocator's own error body when it sent one,
    /// else one of the same shape.
    pub fn to_json(&self) -> String {
        let code = match self {
            Failure::Client(ClientError::Api { body, .. }) => {
                return serde_json::to_string(body).unwrap_or_default();
            }
            Failure::Unreachable(_) | Failure::Client(ClientError::Connect { .. }) => "unreachable",
            Failure::Client(ClientError::Timeout { .. }) => "timeout",
            Failure::Client(_) => "protocol",
            Failure::Local { code, .. } => code,
            Failure::Usage(_) => "usage",
        };
        let body = LocalErrorBody { success: false, error: code, message: self.to_string() };
        serde_json::to_string(&body).unwrap_or_default()
    }

    /// Prints the failure: JSON on stdout with `--json`, else one line on
    /// stderr. Returns the exit status.
    pub fn report(&self, json: bool) -> u8 {
        if json {
            print(&format!("{}\n", self.to_json()));
        } else {
            match self {
                Failure::Client(ClientError::Api { body, .. }) => {
                    let code = serde_json::to_value(body.error).unwrap_or_default();
                    warn(&format!("{} [{}]", body.message, code.as_str().unwrap_or("error")));
                }
                other => warn(&other.to_string()),
            }
        }
        self.exit_code()
    }
}

/// Writes to stdout; a closed pipe (`styxy list | head -1`) is not an error.
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    if out.write_all(text.as_bytes()).and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
}

/// An allocator answer body as it came, newline-terminated.
pub fn print_raw_json(body: &[u8]) {
    let mut text = String::from_utf8_lossy(body).into_owned();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    print(&text);
}

pub fn print_json(value: &serde_json::Value) {
    print(&format!("{value}\n"));
}

/// One diagnostic line on stderr.
pub fn warn(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "styxy: {line}");
}
