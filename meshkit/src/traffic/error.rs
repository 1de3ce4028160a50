//! [`TrafficError`]: what a [`crate::traffic::TrafficRouter`] backend reports.

use crate::error::BoxError;

/// An error from a [`crate::traffic::TrafficRouter`] backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrafficError {
    /// The route (or its mesh, router or a target) does not exist.
    #[error("not found: {what}")]
    NotFound {
        /// What was missing.
        what: String,
        /// The backend's own error.
        #[source]
        source: Option<BoxError>,
    },
    /// The backend refused the call for now (throttling, limit exceeded); retry later.
    #[error("throttled by the backend: {message}")]
    Throttled {
        /// The backend's message.
        message: String,
        /// The backend's own error.
        #[source]
        source: Option<BoxError>,
    },
    /// The backend reported a conflicting concurrent change.
    #[error("conflict: {message}")]
    Conflict {
        /// The backend's message.
        message: String,
        /// The backend's own error.
        #[source]
        source: Option<BoxError>,
    },
    /// The call did not complete (timeout, connection reset, lost response). The write
    /// may or may not have been applied.
    #[error("transport error: {message}")]
    Transport {
        /// What happened.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// The backend rejected the request as invalid; retrying will not help.
    #[error("bad request: {message}")]
    BadRequest {
        /// The backend's message.
        message: String,
        /// The backend's own error.
        #[source]
        source: Option<BoxError>,
    },
    /// The caller is not allowed to make this call.
    #[error("forbidden: {message}")]
    Forbidden {
        /// The backend's message.
        message: String,
        /// The backend's own error.
        #[source]
        source: Option<BoxError>,
    },
    /// The route exists but its shape cannot be handled (for example no weighted
    /// targets, or an unsupported route type).
    #[error("unsupported route: {message}")]
    Unsupported {
        /// What is unsupported.
        message: String,
    },
    /// Any other backend error.
    #[error("backend error: {message}")]
    Other {
        /// The backend's message.
        message: String,
        /// The backend's own error.
        #[source]
        source: Option<BoxError>,
    },
}

impl TrafficError {
    /// True when retrying the same call may succeed (throttling, conflicts, transport).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Throttled { .. } | Self::Conflict { .. } | Self::Transport { .. }
        )
    }

    /// True for a missing route, mesh, router or target.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// A transport error with only a message.
    pub fn transport(message: impl Into<String>) -> Self {
        Self::Transport {
            message: message.into(),
            source: None,
        }
    }

    /// A throttling error with only a message.
    pub fn throttled(message: impl Into<String>) -> Self {
        Self::Throttled {
            message: message.into(),
            source: None,
        }
    }

    /// A not-found error with only a description.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound {
            what: what.into(),
            source: None,
        }
    }
}
