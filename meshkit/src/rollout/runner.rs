//! The run loop: start, walk the strategy's decisions, roll back, end.

use std::time::Duration;

use opentelemetry::trace::{Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use super::events::Event;
use super::handle::Control;
use super::writer::{Budget, WriteFail, Writer};
use super::{Config, Outcome, RollbackReason};
use crate::error::{RolloutError, WeightsError};
use crate::strategy::{Decision, Input, Position, Stage};
use crate::traffic::{Observed, Weights};

/// Sends events stamped with the rollout's elapsed time, and logs them.
pub(crate) struct Emitter {
    tx: broadcast::Sender<(Duration, Event)>,
    start: Instant,
}

impl Emitter {
    pub(crate) fn send(&self, event: Event) {
        tracing::info!(event = %event, "rollout");
        // No receivers is fine: events are optional.
        let _ = self.tx.send((self.start.elapsed(), event));
    }
}

/// What one stage ended with.
pub(crate) enum StageEnd {
    Passed,
    Failed(RollbackReason),
    PromoteNow,
    Stop(RolloutError),
}

pub(crate) struct Runner {
    pub(crate) cfg: Config,
    pub(crate) emit: Emitter,
    pub(crate) control: mpsc::UnboundedReceiver<Control>,
    pub(crate) paused: bool,
    pub(crate) control_open: bool,
    pub(crate) failures: u32,
    pub(crate) inconclusive: u32,
    /// When the checks last said healthy.
    pub(crate) last_healthy: Option<Instant>,
    pub(crate) deadline: Instant,
    pub(crate) started: Instant,
    pub(crate) span_cx: Context,
}

impl Runner {
    pub(crate) fn new(
        cfg: Config,
        tx: broadcast::Sender<(Duration, Event)>,
        control: mpsc::UnboundedReceiver<Control>,
    ) -> Self {
        let started = Instant::now();
        let span = cfg.tracer.start("meshkit.rollout");
        let span_cx = Context::current_with_span(span);
        span_cx.span().set_attributes([
            KeyValue::new("meshkit.rollout.id", cfg.id.clone()),
            KeyValue::new("meshkit.route", cfg.route.to_string()),
            KeyValue::new("meshkit.stable", cfg.stable.clone()),
            KeyValue::new("meshkit.candidate", cfg.candidate.clone()),
            KeyValue::new("meshkit.strategy", cfg.strategy.name().to_owned()),
        ]);
        let deadline = started + cfg.policy.deadline;
        Self {
            cfg,
            emit: Emitter { tx, start: started },
            control,
            paused: false,
            control_open: true,
            failures: 0,
            inconclusive: 0,
            last_healthy: None,
            deadline,
            started,
            span_cx,
        }
    }

    pub(crate) fn write_budget(&self) -> Budget {
        Budget {
            max_attempts: Some(self.cfg.policy.write_backoff.max_attempts),
            until: self.deadline,
        }
    }

    pub(crate) async fn run(mut self) -> Result<Outcome, RolloutError> {
        let result = self.run_inner().await;
        let span = self.span_cx.span();
        match &result {
            Ok(outcome) => {
                span.set_attribute(KeyValue::new(
                    "meshkit.outcome",
                    if outcome.is_promoted() {
                        "promoted"
                    } else {
                        "rolled_back"
                    },
                ));
                if !outcome.is_promoted() {
                    span.set_status(Status::error(outcome.to_string()));
                }
                self.emit.send(Event::Done {
                    outcome: outcome.clone(),
                });
            }
            Err(e) => {
                span.set_attribute(KeyValue::new("meshkit.outcome", "stopped"));
                span.set_status(Status::error(e.to_string()));
                if matches!(e, RolloutError::RollbackFailed { .. }) {
                    tracing::error!(route = %self.cfg.route, error = %e, "ROLLBACK FAILED: traffic is not back on the stable version");
                } else {
                    tracing::warn!(route = %self.cfg.route, error = %e, "rollout stopped");
                }
                self.emit.send(Event::Stopped {
                    error: e.to_string(),
                    in_force: e.in_force().cloned(),
                });
            }
        }
        span.end();
        result
    }

    async fn run_inner(&mut self) -> Result<Outcome, RolloutError> {
        let (mut writer, from_stage) = self.start().await?;
        let strategy = self.cfg.strategy.clone();
        let mut decision = match from_stage {
            0 => strategy.decide(Position { stage: None }, &Input::Start),
            index => match strategy.stages().get(index) {
                Some(stage) => Decision::Run {
                    index,
                    stage: *stage,
                },
                None => Decision::Promote,
            },
        };
        let mut position = None;
        let mut manual = false;
        loop {
            let input = match decision {
                Decision::Run { index, stage } => {
                    position = Some(index);
                    if Instant::now() >= self.deadline {
                        Input::Failed(RollbackReason::DeadlineExceeded)
                    } else {
                        match self.run_stage(&mut writer, index, stage).await {
                            StageEnd::Passed => Input::Passed,
                            StageEnd::Failed(reason) => Input::Failed(reason),
                            StageEnd::PromoteNow => {
                                manual = true;
                                self.emit.send(Event::PromoteRequested);
                                Input::PromoteNow
                            }
                            StageEnd::Stop(e) => return Err(e),
                        }
                    }
                }
                Decision::Promote => return self.promote(&mut writer, manual).await,
                Decision::RollBack(reason) => {
                    return self.roll_back(&mut writer, reason, position).await;
                }
            };
            decision = strategy.decide(Position { stage: position }, &input);
        }
    }

    /// Reads the route, checks it can be rolled out, and picks the first stage.
    async fn start(&mut self) -> Result<(Writer, usize), RolloutError> {
        let cfg = &self.cfg;
        let budget = self.write_budget();
        let seed = cfg.id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let placeholder = Observed {
            weights: Weights::split(&cfg.stable, &cfg.candidate, 0)
                .map_err(crate::error::ConfigError::from)?,
            revision: None,
        };
        let mut writer = Writer::new(
            cfg.router.clone(),
            cfg.route.clone(),
            cfg.policy.clone(),
            placeholder,
            seed,
        );
        let found = writer
            .read(budget)
            .await
            .map_err(|source| RolloutError::Start {
                route: cfg.route.to_string(),
                source,
            })?;
        let route = cfg.route.to_string();
        if found
            .weights
            .iter()
            .any(|(t, _)| t != cfg.stable && t != cfg.candidate)
        {
            return Err(RolloutError::UnexpectedTargets {
                route,
                in_force: found.weights,
            });
        }
        let new_pct = found.weights.percent(&cfg.candidate);
        let at_start = found.weights.is_all_on(&cfg.stable);
        let from_stage = if at_start {
            0
        } else if cfg.policy.resume && found.weights.percent(&cfg.stable) + new_pct == 100 {
            let stages = cfg.strategy.stages();
            stages
                .iter()
                .position(
                    |s| matches!(s, Stage::Shift { new_percent, .. } if *new_percent >= new_pct),
                )
                .unwrap_or(stages.len())
        } else {
            return Err(RolloutError::NotAtStart {
                route,
                stable: cfg.stable.clone(),
                in_force: found.weights,
            });
        };
        self.emit.send(Event::Started {
            id: cfg.id.clone(),
            strategy: cfg.strategy.name().to_owned(),
            weights: found.weights.clone(),
            from_stage,
        });
        writer = Writer::new(
            cfg.router.clone(),
            cfg.route.clone(),
            cfg.policy.clone(),
            found,
            seed,
        );
        Ok((writer, from_stage))
    }

    /// The two-version split; the names were validated by the builder.
    pub(crate) fn split(&self, new_percent: u8) -> Result<Weights, WeightsError> {
        Weights::split(&self.cfg.stable, &self.cfg.candidate, new_percent)
    }

    async fn promote(
        &mut self,
        writer: &mut Writer,
        manual: bool,
    ) -> Result<Outcome, RolloutError> {
        let budget = self.write_budget();
        let seen = writer
            .confirm(budget)
            .await
            .map_err(|f| self.stop_error(f, None, writer.known()))?;
        if !seen.weights.is_all_on(&self.cfg.candidate) {
            // Only a custom strategy that promotes before a 100% shift gets here.
            let target = self
                .split(100)
                .map_err(|e| RolloutError::Config(e.into()))?;
            let token = format!("{}-final", self.cfg.id);
            let last = writer.known().clone();
            writer
                .apply(&target, &token, budget, &self.emit)
                .await
                .map_err(|f| self.stop_error(f, None, &last))?;
        }
        Ok(Outcome::Promoted {
            weights: writer.known().clone(),
            manual,
            elapsed: self.started.elapsed(),
        })
    }

    async fn roll_back(
        &mut self,
        writer: &mut Writer,
        reason: RollbackReason,
        stage: Option<usize>,
    ) -> Result<Outcome, RolloutError> {
        self.emit.send(Event::RollbackStarted {
            reason: reason.clone(),
        });
        self.span_cx.span().add_event(
            "rollback",
            vec![KeyValue::new("reason", reason.to_string())],
        );
        let target = self.split(0).map_err(|e| RolloutError::Config(e.into()))?;
        let token = format!("{}-rollback", self.cfg.id);
        let budget = Budget {
            max_attempts: None,
            until: Instant::now() + self.cfg.policy.rollback_deadline,
        };
        match writer.apply(&target, &token, budget, &self.emit).await {
            Ok(seen) => {
                self.emit.send(Event::WeightsWritten {
                    weights: seen.weights.clone(),
                });
                if let Some(fleet) = &self.cfg.fleet
                    && let Err(e) = fleet.retire(&self.cfg.candidate).await
                {
                    self.emit.send(Event::FleetWarning {
                        message: format!(
                            "retiring '{}' after rollback failed: {e}",
                            self.cfg.candidate
                        ),
                    });
                }
                Ok(Outcome::RolledBack {
                    reason,
                    stage,
                    weights: seen.weights,
                    elapsed: self.started.elapsed(),
                })
            }
            Err(f) => {
                let last = writer.known().clone();
                Err(self.stop_error(f, Some(reason), &last))
            }
        }
    }

    /// Turns a write failure into the error the rollout stops with.
    pub(crate) fn stop_error(
        &self,
        fail: WriteFail,
        rollback: Option<RollbackReason>,
        last_written: &Weights,
    ) -> RolloutError {
        let route = self.cfg.route.to_string();
        match (fail, rollback) {
            (WriteFail::Concurrent { expected, found }, _) => RolloutError::ConcurrentWriter {
                route,
                expected,
                found,
            },
            (WriteFail::Failed { error, in_force }, Some(reason)) => RolloutError::RollbackFailed {
                route,
                reason,
                in_force,
                source: error,
            },
            (WriteFail::Failed { error, in_force }, None) => RolloutError::Unconfirmed {
                route,
                last_written: last_written.clone(),
                in_force,
                source: error,
            },
        }
    }
}
