//! The run loop: start, walk the strategy's decisions, roll back, end.

use std::time::Duration;

use opentelemetry::trace::{Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use super::events::{Emitter, Event};
use super::handle::Control;
use super::tally::Tally;
use super::writer::{Applied, Budget, WriteFail, Writer};
use super::{Config, Outcome, RollbackReason};
use crate::error::{RolloutError, WeightsError};
use crate::strategy::{Decision, Input, Position, Stage};
use crate::traffic::{Observed, Weights, client_token};

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
    pub(crate) tally: Tally,
    /// Targets found on the route at weight 0 besides the two versions (an earlier
    /// version another tool left there): kept at 0 in every write.
    pub(crate) zeros: Vec<String>,
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
            emit: Emitter::new(tx, started),
            control,
            paused: false,
            control_open: true,
            tally: Tally::default(),
            zeros: Vec::new(),
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
        let (mut writer, mut decision) = self.start().await?;
        let strategy = self.cfg.strategy.clone();
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

    /// Reads the route, checks it can be rolled out, and asks the strategy where to
    /// begin: at the start, or (resuming) at the stage whose weights are in force.
    async fn start(&mut self) -> Result<(Writer, Decision), RolloutError> {
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
        let others: Vec<(&str, u8)> = found
            .weights
            .iter()
            .filter(|(t, _)| *t != cfg.stable && *t != cfg.candidate)
            .collect();
        if others.iter().any(|(_, w)| *w > 0) {
            return Err(RolloutError::UnexpectedTargets {
                route,
                in_force: found.weights,
            });
        }
        let zeros: Vec<String> = others.iter().map(|(t, _)| (*t).to_owned()).collect();
        let new_pct = found.weights.percent(&cfg.candidate);
        let strategy = cfg.strategy.clone();
        let decision = if found.weights.is_all_on(&cfg.stable) {
            strategy.decide(Position { stage: None }, &Input::Start)
        } else if !cfg.policy.resume {
            return Err(RolloutError::NotAtStart {
                route,
                stable: cfg.stable.clone(),
                in_force: found.weights,
            });
        } else if found.weights.get(&cfg.stable).is_none()
            && found.weights.is_all_on(&cfg.candidate)
        {
            // Promoted already, the stable version taken off the route: only retiring
            // it is left (a run stopped during its last stage, or a rerun).
            let stages = strategy.stages();
            match stages.iter().position(|s| *s == Stage::Retire) {
                Some(index) => Decision::Run {
                    index,
                    stage: Stage::Retire,
                },
                None => Decision::Promote,
            }
        } else {
            match strategy.resume(new_pct, cfg.policy.adopt) {
                Some(decision) => decision,
                None => {
                    return Err(RolloutError::NotResumable {
                        route,
                        in_force: found.weights,
                        plan: strategy
                            .stages()
                            .iter()
                            .filter_map(|s| s.new_percent())
                            .collect(),
                    });
                }
            }
        };
        let from_stage = match &decision {
            Decision::Run { index, .. } => *index,
            _ => strategy.stages().len(),
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
        self.zeros = zeros;
        Ok((writer, decision))
    }

    /// The two-version split with `new_percent` on the new version, and any leftover
    /// targets found at weight 0 kept at 0. The names were validated by the builder.
    pub(crate) fn split(&self, new_percent: u8) -> Result<Weights, WeightsError> {
        let stable = 100 - u32::from(new_percent.min(100));
        Weights::new(
            [
                (self.cfg.stable.as_str(), stable),
                (self.cfg.candidate.as_str(), 100 - stable),
            ]
            .into_iter()
            .chain(self.zeros.iter().map(|t| (t.as_str(), 0))),
        )
    }

    /// The token of one write of this rollout: at most 36 characters.
    pub(crate) fn token(&self, step: &str) -> String {
        client_token(&self.cfg.id, step)
    }

    /// Emits what a write did: written, or already in force.
    pub(crate) fn emit_applied(&self, applied: &Applied) {
        let weights = applied.seen.weights.clone();
        self.emit.send(if applied.wrote {
            Event::WeightsWritten { weights }
        } else {
            Event::AlreadyInForce { weights }
        });
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
            let token = self.token("final");
            let last = writer.known().clone();
            let applied = writer
                .apply(&target, &token, budget, &self.emit)
                .await
                .map_err(|f| self.stop_error(f, None, &last))?;
            self.emit_applied(&applied);
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
        let token = self.token("rollback");
        let budget = Budget {
            max_attempts: None,
            until: Instant::now() + self.cfg.policy.rollback_deadline,
        };
        match writer.apply(&target, &token, budget, &self.emit).await {
            Ok(applied) => {
                self.emit_applied(&applied);
                let seen = applied.seen;
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
                expected: expected.weights,
                found: found.weights,
                expected_revision: expected.revision,
                found_revision: found.revision,
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
