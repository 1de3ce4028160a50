//! The control handle: pause, resume, promote now, abort.

use tokio::sync::mpsc;

/// A command sent to a running rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    Pause,
    Resume,
    Promote,
    Abort,
}

/// The rollout has already ended; the command had no effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the rollout has already ended")]
pub struct Ended;

/// Controls a running rollout. Cheap to clone; usable from any task.
#[derive(Debug, Clone)]
pub struct RolloutHandle {
    pub(crate) tx: mpsc::UnboundedSender<Control>,
}

impl RolloutHandle {
    fn send(&self, c: Control) -> Result<(), Ended> {
        self.tx.send(c).map_err(|_| Ended)
    }

    /// Holds the rollout at its current stage: checks keep running (a failure still
    /// rolls back) but the bake clock stops, so no stage completes until resumed.
    pub fn pause(&self) -> Result<(), Ended> {
        self.send(Control::Pause)
    }

    /// Undoes [`RolloutHandle::pause`].
    pub fn resume(&self) -> Result<(), Ended> {
        self.send(Control::Resume)
    }

    /// Skips to the full cutover (the strategy's final 100% step). Its bake still runs,
    /// with the stable version kept ready, so a failure there still rolls back.
    pub fn promote(&self) -> Result<(), Ended> {
        self.send(Control::Promote)
    }

    /// Rolls back now: all traffic to the stable version.
    pub fn abort(&self) -> Result<(), Ended> {
        self.send(Control::Abort)
    }
}
