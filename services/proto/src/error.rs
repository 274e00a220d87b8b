//! The API's error: what every route, the engine behind it and the D-Bus
//! interface answer when they refuse or fail.

use std::error::Error;
use std::sync::Arc;

use crate::api::ErrorCode;

/// A refusal or a failure: the stable code and the message an
/// [`ErrorBody`](crate::api::ErrorBody) carries, optional context for
/// programs, and the error that caused it (for logs; never sent).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub context: Option<serde_json::Value>,
    #[source]
    cause: Option<Arc<dyn Error + Send + Sync>>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into(), context: None, cause: None }
    }

    pub fn with_context(mut self, context: serde_json::Value) -> ApiError {
        self.context = Some(context);
        self
    }

    /// Keeps `cause` as this error's source, so a log that walks the chain
    /// reaches the first failure.
    pub fn caused_by(mut self, cause: impl Error + Send + Sync + 'static) -> ApiError {
        self.cause = Some(Arc::new(cause));
        self
    }
}

/// Shows untrusted text in a message: control characters dropped, at most
/// `limit` characters kept.
pub fn printable(text: &str, limit: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(limit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_is_the_source_and_the_message_is_what_displays() {
        let io = std::io::Error::other("disk full");
        let e = ApiError::new(ErrorCode::Internal, format!("state store: {io}")).caused_by(io);
        assert_eq!(e.to_string(), "state store: disk full");
        assert_eq!(e.source().map(|s| s.to_string()).as_deref(), Some("disk full"));
        assert!(ApiError::new(ErrorCode::NotFound, "gone").source().is_none());
    }

    #[test]
    fn printable_drops_control_characters_and_bounds_the_length() {
        assert_eq!(printable("a\nb\u{7}c", 100), "abc");
        assert_eq!(printable(&"x".repeat(300), 200).len(), 200);
    }
}
