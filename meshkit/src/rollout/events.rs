//! The rollout's event stream.

use std::fmt;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;

use super::{Outcome, RollbackReason};
use crate::health::Verdict;
use crate::strategy::Stage;
use crate::traffic::Weights;

/// Something that happened during a rollout. Events carry the rollout's elapsed time.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The rollout started; the route was read and found at `weights`.
    Started {
        /// The rollout id (used in idempotency tokens).
        id: String,
        /// The strategy's name.
        strategy: String,
        /// The weights found on the route.
        weights: Weights,
        /// The stage the rollout starts from (non-zero when resuming).
        from_stage: usize,
    },
    /// A stage started.
    StageStarted {
        /// Its index in the plan.
        index: usize,
        /// The stage.
        stage: Stage,
    },
    /// A write attempt failed and will be retried.
    WriteRetry {
        /// Attempt number, from 1.
        attempt: u32,
        /// The error, in words.
        error: String,
    },
    /// New weights were written and read back from the route. Emitted only after a
    /// write of meshkit's own (see [`Event::AlreadyInForce`]). The one other write a
    /// rollout makes, taking the stable version off the route after promotion, is
    /// reported as [`Event::TargetRemoved`].
    WeightsWritten {
        /// The weights.
        weights: Weights,
    },
    /// The weights a step (or the rollback) asks for were already in force, as meshkit
    /// itself left them: nothing was written.
    AlreadyInForce {
        /// The weights read from the route.
        weights: Weights,
    },
    /// After promotion, the stable version was taken off the route (written and read
    /// back), so the next rollout starts from a route with one target.
    TargetRemoved {
        /// The target removed.
        target: String,
        /// The weights read back.
        weights: Weights,
    },
    /// The data plane reported applying the weights (only backends that can tell).
    WeightsVerified {
        /// The split the data plane applies.
        applied: Weights,
    },
    /// Measured traffic shows the data plane applies the weights (backends that
    /// measure, such as a load balancer's request counts).
    TrafficMeasured {
        /// What was measured: each target's share and the number of requests.
        detail: String,
    },
    /// The data plane was not seen applying the weights within the backend's settle
    /// time plus the settle timeout (not yet, or too few requests to tell).
    DataPlaneUnconfirmed {
        /// What the backend said.
        detail: String,
    },
    /// A health evaluation finished.
    Verdict {
        /// The stage index.
        stage: usize,
        /// The verdict of all checks together.
        verdict: Verdict,
        /// Consecutive unhealthy verdicts so far.
        failures: u32,
        /// Consecutive inconclusive verdicts so far.
        inconclusive: u32,
    },
    /// The rollout was paused.
    Paused,
    /// The rollout was resumed.
    Resumed,
    /// A person asked to skip to the cutover.
    PromoteRequested,
    /// The rollout is rolling back.
    RollbackStarted {
        /// Why.
        reason: RollbackReason,
    },
    /// A fleet action failed after promotion (the outcome stays promoted).
    FleetWarning {
        /// What failed.
        message: String,
    },
    /// The rollout ended safely.
    Done {
        /// How.
        outcome: Outcome,
    },
    /// The rollout stopped with an error (its text, and the weights in force if known).
    Stopped {
        /// The error, in words.
        error: String,
        /// The weights in force, if they could be read.
        in_force: Option<Weights>,
    },
    /// An ECS native deployment was started (`UpdateService`).
    DeploymentStarted {
        /// The service deployment's ARN.
        arn: String,
    },
    /// An ECS native deployment already in progress was found and is carried on (the
    /// judge restarted).
    DeploymentFound {
        /// The service deployment's ARN.
        arn: String,
    },
    /// An ECS native deployment's lifecycle stage or split changed.
    DeploymentProgress {
        /// ECS's status (`IN_PROGRESS`, ...).
        status: String,
        /// ECS's lifecycle stage (`PRE_PRODUCTION_TRAFFIC_SHIFT`, ...).
        stage: String,
        /// The requested production traffic split.
        weights: Weights,
    },
    /// ECS paused at a lifecycle hook and waits for meshkit's answer.
    HookAwaiting {
        /// The hook's id (new at every pause).
        hook_id: String,
        /// The lifecycle stage.
        stage: String,
        /// When ECS stops waiting and applies the hook's timeout action.
        expires_at: Option<std::time::SystemTime>,
    },
    /// meshkit answered a lifecycle hook.
    HookAnswered {
        /// The hook's id.
        hook_id: String,
        /// `CONTINUE` or `ROLLBACK`.
        action: String,
        /// The call's error, if ECS refused it.
        error: Option<String>,
    },
    /// This receiver fell behind and missed `count` events.
    Missed {
        /// How many.
        count: u64,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Started {
                id,
                strategy,
                weights,
                from_stage,
            } => {
                write!(
                    f,
                    "started {strategy} rollout {id} at {weights} from stage {from_stage}"
                )
            }
            Self::StageStarted { index, stage } => write!(f, "stage {index}: {stage}"),
            Self::WriteRetry { attempt, error } => {
                write!(f, "write attempt {attempt} failed, retrying: {error}")
            }
            Self::WeightsWritten { weights } => {
                write!(f, "weights written and read back: {weights}")
            }
            Self::AlreadyInForce { weights } => {
                write!(f, "already at {weights}, nothing written")
            }
            Self::TargetRemoved { target, weights } => {
                write!(f, "removed '{target}' from the route: {weights}")
            }
            Self::WeightsVerified { applied } => write!(f, "data plane applies {applied}"),
            Self::TrafficMeasured { detail } => write!(f, "traffic measured: {detail}"),
            Self::DataPlaneUnconfirmed { detail } => {
                write!(f, "data plane not confirmed: {detail}")
            }
            Self::Verdict {
                stage,
                verdict,
                failures,
                inconclusive,
            } => {
                write!(
                    f,
                    "stage {stage} check: {verdict} (failures {failures}, inconclusive {inconclusive})"
                )
            }
            Self::Paused => f.write_str("paused"),
            Self::Resumed => f.write_str("resumed"),
            Self::PromoteRequested => f.write_str("promote requested: skipping to the cutover"),
            Self::RollbackStarted { reason } => write!(f, "rolling back: {reason}"),
            Self::FleetWarning { message } => write!(f, "fleet warning: {message}"),
            Self::Done { outcome } => write!(f, "done: {outcome}"),
            Self::Stopped { error, .. } => write!(f, "stopped: {error}"),
            Self::Missed { count } => write!(f, "({count} events missed)"),
            Self::DeploymentStarted { arn } => write!(f, "ECS deployment started: {arn}"),
            Self::DeploymentFound { arn } => {
                write!(f, "ECS deployment in progress found, carrying on: {arn}")
            }
            Self::DeploymentProgress {
                status,
                stage,
                weights,
            } => write!(f, "ECS {status} {stage}: {weights}"),
            Self::HookAwaiting { hook_id, stage, .. } => {
                write!(f, "ECS paused at {stage}, hook {hook_id} awaits the checks")
            }
            Self::HookAnswered {
                hook_id,
                action,
                error: None,
            } => write!(f, "answered hook {hook_id}: {action}"),
            Self::HookAnswered {
                hook_id,
                action,
                error: Some(e),
            } => write!(f, "answering hook {hook_id} with {action} failed: {e}"),
        }
    }
}

/// Sends events stamped with the rollout's elapsed time, and logs them.
pub(crate) struct Emitter {
    tx: Option<broadcast::Sender<(Duration, Event)>>,
    start: Instant,
    /// With a rollout store: every event goes into the record too.
    keeper: Option<std::sync::Arc<super::keeper::Keeper>>,
}

impl Emitter {
    /// `tx` is `None` when nobody subscribed: events are then only logged.
    pub(crate) fn new(tx: Option<broadcast::Sender<(Duration, Event)>>, start: Instant) -> Self {
        Self {
            tx,
            start,
            keeper: None,
        }
    }

    /// Records every later event through `keeper`.
    pub(crate) fn record_to(&mut self, keeper: std::sync::Arc<super::keeper::Keeper>) {
        self.keeper = Some(keeper);
    }

    pub(crate) fn send(&self, event: Event) {
        tracing::info!(event = %event, "rollout");
        if let Some(keeper) = &self.keeper {
            keeper.observe(&event);
        }
        if let Some(tx) = &self.tx {
            // No receivers left is fine: events are optional.
            let _ = tx.send((self.start.elapsed(), event));
        }
    }
}

/// A receiver of a rollout's events. Get one from [`crate::Rollout::events`] before
/// calling `run`. The runner never waits for receivers: a receiver that falls more
/// than 1024 events behind gets [`Event::Missed`].
#[derive(Debug)]
pub struct Events {
    pub(crate) rx: broadcast::Receiver<(Duration, Event)>,
}

impl Events {
    /// The next event, or `None` after the rollout has ended and all were received.
    pub async fn recv(&mut self) -> Option<Event> {
        self.recv_timed().await.map(|(_, e)| e)
    }

    /// The next event with the rollout's elapsed time when it happened.
    pub async fn recv_timed(&mut self) -> Option<(Duration, Event)> {
        match self.rx.recv().await {
            Ok(e) => Some(e),
            Err(broadcast::error::RecvError::Lagged(count)) => {
                Some((Duration::ZERO, Event::Missed { count }))
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}
