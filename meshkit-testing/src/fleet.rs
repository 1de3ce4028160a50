//! [`InMemoryFleet`]: records what a rollout asked of its fleet.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use meshkit::FleetError;
use meshkit::fleet::Fleet;

/// One call a rollout made to the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetCall {
    /// `bring_up(version)`.
    BringUp(String),
    /// `wait_ready(version)` returned ready.
    Ready(String),
    /// `retire(version)`.
    Retire(String),
}

#[derive(Debug, Default)]
struct State {
    calls: Vec<FleetCall>,
    fail_bring_up: Option<String>,
    ready_after: Duration,
}

/// A [`Fleet`] that records calls. Versions become ready after a configurable delay
/// (`tokio::time`, so paused tests do not wait).
#[derive(Debug, Clone, Default)]
pub struct InMemoryFleet {
    state: Arc<Mutex<State>>,
}

impl InMemoryFleet {
    /// A fleet where versions come up at once.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `bring_up` fails with this message.
    pub fn fail_bring_up(self, message: &str) -> Self {
        self.lock().fail_bring_up = Some(message.to_owned());
        self
    }

    /// Versions take this long to become ready (longer than the ready timeout means
    /// never ready).
    pub fn ready_after(self, d: Duration) -> Self {
        self.lock().ready_after = d;
        self
    }

    /// The calls made so far, in order.
    pub fn calls(&self) -> Vec<FleetCall> {
        self.lock().calls.clone()
    }
}

#[async_trait]
impl Fleet for InMemoryFleet {
    async fn bring_up(&self, version: &str) -> Result<(), FleetError> {
        let mut s = self.lock();
        s.calls.push(FleetCall::BringUp(version.to_owned()));
        match &s.fail_bring_up {
            Some(m) => Err(FleetError::Backend {
                message: m.clone(),
                source: None,
            }),
            None => Ok(()),
        }
    }

    async fn wait_ready(&self, version: &str, timeout: Duration) -> Result<(), FleetError> {
        let after = self.lock().ready_after;
        if after > timeout {
            tokio::time::sleep(timeout).await;
            return Err(FleetError::NotReady {
                version: version.to_owned(),
                waited: timeout,
                state: "0 of 1 tasks running".into(),
            });
        }
        tokio::time::sleep(after).await;
        self.lock().calls.push(FleetCall::Ready(version.to_owned()));
        Ok(())
    }

    async fn retire(&self, version: &str) -> Result<(), FleetError> {
        self.lock()
            .calls
            .push(FleetCall::Retire(version.to_owned()));
        Ok(())
    }
}
