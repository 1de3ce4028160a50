//! [`FleetError`]: what a [`crate::fleet::Fleet`] backend reports.

use std::time::Duration;

use crate::error::BoxError;

/// An error from a [`crate::fleet::Fleet`] backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// The version did not become ready in time; `state` says where it was stuck.
    #[error("version '{version}' not ready after {waited:?}: {state}")]
    NotReady {
        /// The version.
        version: String,
        /// How long meshkit waited.
        waited: Duration,
        /// The last state seen, in words.
        state: String,
    },
    /// The backend call failed.
    #[error("fleet backend error: {message}")]
    Backend {
        /// What failed.
        message: String,
        /// The backend's own error.
        #[source]
        source: Option<BoxError>,
    },
}
