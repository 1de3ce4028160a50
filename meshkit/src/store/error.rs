//! [`StoreError`]: what a rollout store can fail with.

use std::time::SystemTime;

use super::Holder;
use super::time::ago;

/// A rollout store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process holds the route's lease: wait for it (`--wait`), or ask it to
    /// stop through a gate.
    #[error(
        "route {route} is being rolled out by {holder} (since {}, lease valid {} more){}",
        ago(*since), remaining(*expires), rollout.as_ref().map(|r| format!(", rollout {r}")).unwrap_or_default()
    )]
    Held {
        /// The route.
        route: String,
        /// Who holds it.
        holder: Box<Holder>,
        /// Since when.
        since: SystemTime,
        /// When the lease expires unless renewed.
        expires: SystemTime,
        /// The rollout the holder runs, if recorded.
        rollout: Option<String>,
    },
    /// This process's lease is gone (expired or taken over): it must not write the
    /// route any more.
    #[error("the lease on route {route} is lost: {detail}")]
    Lost {
        /// The route.
        route: String,
        /// What happened.
        detail: String,
    },
    /// The store is busy (SQLite locked past its busy timeout, DynamoDB throttling):
    /// try again.
    #[error("the rollout store is busy: {0}; try again")]
    Busy(String),
    /// The store cannot be reached or opened.
    #[error("the rollout store is unavailable: {0}")]
    Unavailable(String),
    /// No such rollout.
    #[error("no rollout '{0}' in the store")]
    NotFound(String),
    /// The store holds data this version cannot read.
    #[error("the rollout store holds unreadable data: {0}")]
    Corrupt(String),
    /// A request the store cannot do (a bad name, an invalid location).
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    /// True when the same call may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Busy(_) | Self::Unavailable(_))
    }
}

fn remaining(expires: SystemTime) -> String {
    match expires.duration_since(SystemTime::now()) {
        Ok(d) => format!("{}s", d.as_secs().max(1)),
        Err(_) => "0s (expired)".to_owned(),
    }
}
