//! The runner: start, walk the strategy's decisions, run each stage (provision, shift
//! and bake with checks, retire), roll back, end. What can be decided without I/O
//! lives in plain values beside it: where to begin (`begin`), the verdict tally, the
//! bake clock and the check before a shift (`tally`), safe writes (`writer`).

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::{Span, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout};

use super::begin::{Begin, Refusal, begin};
use super::error::RolloutError;
use super::events::{Emitter, Event};
use super::handle::Control;
use super::keeper::Keeper;
use super::resume::{Resume, from_record};
use super::tally::{BakeClock, Judgement, Tally, gate_needed};
use super::writer::{Applied, Budget, WriteFail, Writer};
use super::{Config, Outcome, RollbackReason};
use crate::error::WeightsError;
use crate::health::{CheckContext, Verdict};
use crate::store::RolloutRecord;
use crate::strategy::{Decision, Input, Position, Stage};
use crate::traffic::{Convergence, Observed, Percent, Weights, client_token};

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
    /// Distinguishes this run's idempotency tokens from an earlier run's of the same
    /// rollout id: a backend that remembers tokens (App Mesh) would otherwise take a
    /// rerun's write (after a rollback, the same weights) for a retry of the old one and
    /// not apply it. Retries within a run reuse their token; a rerun always reads the
    /// route before writing, so it needs no token of the earlier run.
    pub(crate) run_nonce: u32,
    pub(crate) deadline: Instant,
    pub(crate) started: Instant,
    pub(crate) span_cx: Context,
    /// With a rollout store: the keeper (lease, record, fence) and what it says when
    /// the lease is lost.
    pub(crate) keeper: Option<Arc<Keeper>>,
    pub(crate) lost: Option<watch::Receiver<Option<String>>>,
    /// The open record this run resumes, if any.
    pub(crate) prior: Option<Box<RolloutRecord>>,
}

impl Runner {
    pub(crate) fn new(
        cfg: Config,
        tx: Option<broadcast::Sender<(Duration, Event)>>,
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
            run_nonce: fastrand::u32(..),
            deadline,
            started,
            span_cx,
            keeper: None,
            lost: None,
            prior: None,
        }
    }

    /// Runs under the rollout store's lease: events go into the record, writes are
    /// fenced, a lost lease stops the run; `prior` is the open record to resume.
    pub(crate) fn with_store(mut self, keeper: Arc<Keeper>, prior: Option<RolloutRecord>) -> Self {
        self.emit.record_to(keeper.clone());
        self.lost = Some(keeper.lost());
        // Every write's client token carries the lease's fencing token: it grows with
        // each holder of the route, so it also tells this run's writes from a
        // crashed holder's.
        self.run_nonce = u32::try_from(keeper.token() & u64::from(u32::MAX)).unwrap_or(0);
        self.keeper = Some(keeper);
        self.prior = prior.map(Box::new);
        self
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
        let mut seed = crate::traffic::Fnv::default();
        seed.eat(cfg.id.bytes());
        let seed = seed.0;
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
        if let Some(keeper) = &self.keeper {
            writer.fenced(keeper.clone());
        }
        let found = writer
            .read(budget)
            .await
            .map_err(|source| RolloutError::Start {
                route: cfg.route.to_string(),
                source,
            })?;
        let route = cfg.route.to_string();
        let strategy = cfg.strategy.clone();
        let policy = &cfg.policy;
        let start = begin(
            &found.weights,
            &cfg.stable,
            &cfg.candidate,
            strategy.as_ref(),
            policy.resume,
            policy.adopt,
        );
        let resumed = match self.prior.take() {
            Some(rec) => {
                self.resume_point(&rec, &found.weights)
                    .map_err(|detail| RolloutError::Record {
                        route: cfg.route.to_string(),
                        detail: format!(
                            "rollout {} cannot resume from its record: {detail}",
                            rec.rollout.id
                        ),
                        in_force: Some(found.weights.clone()),
                    })?
            }
            None => None,
        };
        let Begin { decision, zeros } = match (resumed, start) {
            (Some(b), _) | (None, Ok(b)) => b,
            (None, Err(refusal)) => {
                let in_force = found.weights;
                return Err(match refusal {
                    Refusal::UnexpectedTargets => {
                        RolloutError::UnexpectedTargets { route, in_force }
                    }
                    Refusal::NotAtStart => RolloutError::NotAtStart {
                        route,
                        stable: cfg.stable.clone(),
                        in_force,
                    },
                    Refusal::NotResumable { plan } => RolloutError::NotResumable {
                        route,
                        in_force,
                        plan,
                    },
                });
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
        writer.begin(found);
        self.zeros = zeros;
        Ok((writer, decision))
    }

    /// Where a rollout resumed from its store record carries on; `None` when nothing
    /// was written yet (it begins as a new rollout would); `Err` says why the record
    /// and the route disagree.
    fn resume_point(&self, rec: &RolloutRecord, found: &Weights) -> Result<Option<Begin>, String> {
        let cfg = &self.cfg;
        let stages = cfg.strategy.stages();
        let zeros = found
            .iter()
            .filter(|(t, _)| *t != cfg.stable && *t != cfg.candidate)
            .map(|(t, _)| t.to_owned())
            .collect();
        let decision =
            match from_record(&rec.progress, found, &cfg.stable, &cfg.candidate, &stages)? {
                Resume::Fresh => return Ok(None),
                Resume::Stage(index) => Decision::Run {
                    index,
                    stage: stages
                        .get(index)
                        .copied()
                        .ok_or_else(|| format!("the plan has no stage {index}"))?,
                },
                Resume::RollBack(reason) => Decision::RollBack(RollbackReason::Resumed(reason)),
            };
        Ok(Some(Begin { decision, zeros }))
    }

    /// The two-version split with `new_percent` on the new version, and any leftover
    /// targets found at weight 0 kept at 0. The names were validated by the builder.
    pub(crate) fn split(&self, new_percent: Percent) -> Result<Weights, WeightsError> {
        Weights::split_with(
            &self.cfg.stable,
            &self.cfg.candidate,
            new_percent,
            self.zeros.iter().map(String::as_str),
        )
    }

    /// The token of one write of this rollout: at most 36 characters.
    pub(crate) fn token(&self, step: &str) -> String {
        client_token(&self.cfg.id, &format!("{step}-{:08x}", self.run_nonce))
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
                .split(Percent::ALL)
                .map_err(|e| RolloutError::Config(e.into()))?;
            let token = self.token("final");
            let last = writer.known().clone();
            let applied = writer
                .apply(&target, &token, budget, &self.emit)
                .await
                .map_err(|f| self.stop_error(f, None, &last))?;
            self.emit_applied(&applied);
            if applied.wrote {
                let said = writer.converge(&target).await;
                let _ = self.data_plane(writer, &said).await;
            }
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
        // All on stable. A new version the route never had is not added to it (at 0):
        // a route with no room for it can still be rolled back, with nothing written.
        let target = if writer.known().get(&self.cfg.candidate).is_none() {
            Weights::relative(
                [(self.cfg.stable.as_str(), 1)]
                    .into_iter()
                    .chain(self.zeros.iter().map(|z| (z.as_str(), 0))),
            )
        } else {
            self.split(Percent::ZERO)
        }
        .map_err(|e| RolloutError::Config(e.into()))?;
        let token = self.token("rollback");
        let budget = Budget {
            max_attempts: None,
            until: Instant::now() + self.cfg.policy.rollback_deadline,
        };
        match writer.apply(&target, &token, budget, &self.emit).await {
            Ok(applied) => {
                self.emit_applied(&applied);
                // The data plane is waited for only when the new version's fleet would
                // be retired on its word: the traffic is back on stable at the write.
                let said = if applied.wrote && self.cfg.fleet.is_some() {
                    writer.converge(&target).await
                } else {
                    Convergence::Unknown
                };
                let confirmed = match &said {
                    Convergence::Unknown | Convergence::Applied { .. } => true,
                    other => {
                        // The new version may still take traffic: it is not retired.
                        self.emit.send(Event::DataPlaneUnconfirmed {
                            detail: format!("{other}; the new version is left running"),
                        });
                        false
                    }
                };
                let seen = applied.seen;
                if confirmed
                    && let Some(fleet) = &self.cfg.fleet
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
            (WriteFail::LeaseLost(detail), _) => RolloutError::LeaseLost {
                route,
                detail,
                in_force: last_written.clone(),
            },
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

    // ---- One stage: provision, shift and bake with checks, retire. ----

    pub(crate) async fn run_stage(
        &mut self,
        writer: &mut Writer,
        index: usize,
        stage: Stage,
    ) -> StageEnd {
        self.emit.send(Event::StageStarted { index, stage });
        let mut span = self
            .cfg
            .tracer
            .start_with_context(format!("meshkit.stage {index}"), &self.span_cx);
        span.set_attributes([
            KeyValue::new("meshkit.stage.index", index as i64),
            KeyValue::new("meshkit.stage", stage.to_string()),
        ]);
        if let Stage::Shift { new_percent, .. } = stage {
            span.set_attribute(KeyValue::new("meshkit.new_percent", new_percent.as_f64()));
        }
        let end = self.stage_body(writer, index, stage, &mut span).await;
        let status = match &end {
            StageEnd::Passed => "passed".to_owned(),
            StageEnd::PromoteNow => "promote requested".to_owned(),
            StageEnd::Failed(r) => format!("failed: {r}"),
            StageEnd::Stop(e) => format!("stopped: {e}"),
        };
        span.set_attribute(KeyValue::new("meshkit.stage.result", status.clone()));
        if !matches!(end, StageEnd::Passed | StageEnd::PromoteNow) {
            span.set_status(Status::error(status));
        }
        span.end();
        end
    }

    async fn stage_body(
        &mut self,
        writer: &mut Writer,
        index: usize,
        stage: Stage,
        span: &mut impl Span,
    ) -> StageEnd {
        match stage {
            Stage::Provision => match self.attach(writer, index).await {
                Some(end) => end,
                None => self.provision().await,
            },
            Stage::Check { bake } => self.bake(writer, index, bake, span).await,
            Stage::Shift { new_percent, bake } => {
                let target = match self.split(new_percent) {
                    Ok(t) => t,
                    Err(e) => return StageEnd::Stop(RolloutError::Config(e.into())),
                };
                if self.gate_needed(writer, new_percent) {
                    match self
                        .watch(writer, index, Duration::ZERO, span, true, None)
                        .await
                    {
                        StageEnd::Passed => {}
                        end => return end,
                    }
                }
                let token = self.token(&index.to_string());
                let budget = self.write_budget();
                let written = match writer.apply(&target, &token, budget, &self.emit).await {
                    Ok(applied) => {
                        self.emit_applied(&applied);
                        applied.wrote
                    }
                    Err(WriteFail::Failed { error, .. }) => {
                        return StageEnd::Failed(RollbackReason::WriteFailed(error.to_string()));
                    }
                    Err(fail) => {
                        let last = writer.known().clone();
                        return StageEnd::Stop(self.stop_error(fail, None, &last));
                    }
                };
                // The bake starts once the data plane applies the write; the checks
                // run (and an abort is heard) while it is waited for.
                let pending = written.then_some(target);
                self.watch(writer, index, bake, span, false, pending).await
            }
            Stage::Retire => {
                let window = self.cfg.policy.rollback_window;
                // A resumed run that finds the stable version already off the route has
                // nothing to roll back to: no window.
                let stable_on_route = writer.known().get(&self.cfg.stable).is_some();
                if !window.is_zero() && stable_on_route {
                    let end = self.bake(writer, index, window, span).await;
                    if !matches!(end, StageEnd::Passed | StageEnd::PromoteNow) {
                        return end;
                    }
                }
                // Confirm the route is still ours before taking the stable version away.
                if let Err(fail) = writer.confirm(self.write_budget()).await {
                    let last = writer.known().clone();
                    return StageEnd::Stop(self.stop_error(fail, None, &last));
                }
                if let Err(end) = self.remove_stable(writer).await {
                    return end;
                }
                if let Some(fleet) = &self.cfg.fleet
                    && let Err(e) = fleet.retire(&self.cfg.stable).await
                {
                    self.emit.send(Event::FleetWarning {
                        message: format!("retiring '{}' failed: {e}", self.cfg.stable),
                    });
                }
                StageEnd::Passed
            }
        }
    }

    /// Takes the stable version off the route after promotion, as the AWS canary
    /// pipeline did, so the next rollout (new → newer) finds only its own versions.
    async fn remove_stable(&mut self, writer: &mut Writer) -> Result<(), StageEnd> {
        let stable = self.cfg.stable.clone();
        if writer.known().get(&stable).is_none() {
            return Ok(());
        }
        let pairs = std::iter::once((self.cfg.candidate.as_str(), 100))
            .chain(self.zeros.iter().map(|t| (t.as_str(), 0)));
        let target = match Weights::new(pairs) {
            Ok(t) => t,
            Err(e) => return Err(StageEnd::Stop(RolloutError::Config(e.into()))),
        };
        let token = self.token("retire");
        match writer
            .apply(&target, &token, self.write_budget(), &self.emit)
            .await
        {
            Ok(applied) => {
                self.emit.send(Event::TargetRemoved {
                    target: stable,
                    weights: applied.seen.weights,
                });
                Ok(())
            }
            Err(WriteFail::Failed { error, .. }) => {
                // All traffic is on the new version either way: say so and go on.
                self.emit.send(Event::FleetWarning {
                    message: format!(
                        "could not take '{stable}' off the route (it stays at weight 0): {error}"
                    ),
                });
                Ok(())
            }
            Err(fail) => {
                let last = writer.known().clone();
                Err(StageEnd::Stop(self.stop_error(fail, None, &last)))
            }
        }
    }

    async fn provision(&mut self) -> StageEnd {
        let Some(fleet) = self.cfg.fleet.clone() else {
            return StageEnd::Passed;
        };
        let version = self.cfg.candidate.clone();
        let ready_timeout = self.cfg.policy.ready_timeout;
        let work = async {
            fleet.bring_up(&version).await?;
            fleet.wait_ready(&version, ready_timeout).await
        };
        tokio::select! {
            r = work => match r {
                Ok(()) => StageEnd::Passed,
                Err(e) => StageEnd::Failed(RollbackReason::ProvisionFailed(e.to_string())),
            },
            _ = sleep_until(self.deadline) => StageEnd::Failed(RollbackReason::DeadlineExceeded),
        }
    }

    /// Before provisioning: a new version that is not on the route yet is put on it at
    /// weight 0 (written and read back), so a backend that must know the target before
    /// it can run it (a load balancer target group, for ECS to register the version's
    /// tasks in it) has it, and the version's health is visible to checks. `None` to go
    /// on; a stage end when the write failed.
    async fn attach(&mut self, writer: &mut Writer, index: usize) -> Option<StageEnd> {
        if writer.known().get(&self.cfg.candidate).is_some() {
            return None;
        }
        let target = match self.split(Percent::ZERO) {
            Ok(t) => t,
            Err(e) => return Some(StageEnd::Stop(RolloutError::Config(e.into()))),
        };
        let token = self.token(&format!("{index}a"));
        let budget = self.write_budget();
        match writer.apply(&target, &token, budget, &self.emit).await {
            Ok(applied) => {
                self.emit_applied(&applied);
                None
            }
            Err(WriteFail::Failed { error, .. }) => Some(StageEnd::Failed(
                RollbackReason::WriteFailed(error.to_string()),
            )),
            Err(fail) => {
                let last = writer.known().clone();
                Some(StageEnd::Stop(self.stop_error(fail, None, &last)))
            }
        }
    }

    /// Reports what the data plane said about a forward write; a split it was not seen
    /// applying fails the step (its checks would judge a split that is not in force).
    async fn data_plane(&self, writer: &Writer, said: &Convergence) -> Result<(), RollbackReason> {
        match said {
            Convergence::Unknown => Ok(()),
            Convergence::Applied { detail } => {
                self.emit.send(match writer.applied().await {
                    Some(applied) => Event::WeightsVerified { applied },
                    None => Event::TrafficMeasured {
                        detail: detail.clone(),
                    },
                });
                Ok(())
            }
            other => {
                self.emit.send(Event::DataPlaneUnconfirmed {
                    detail: other.to_string(),
                });
                Err(RollbackReason::NotApplied(other.to_string()))
            }
        }
    }

    /// Whether a shift to `new_percent` must pass a round of checks first.
    fn gate_needed(&self, writer: &Writer, new_percent: Percent) -> bool {
        gate_needed(
            &self.cfg.policy,
            writer.known().compare(&self.cfg.candidate, new_percent) == std::cmp::Ordering::Less,
            self.tally.last_healthy,
            Instant::now(),
        )
    }

    /// Watches the checks for `bake` (not counting paused time). Passes only on a
    /// healthy verdict once the bake time is over.
    async fn bake(
        &mut self,
        writer: &mut Writer,
        index: usize,
        bake: Duration,
        span: &mut impl Span,
    ) -> StageEnd {
        self.watch(writer, index, bake, span, false, None).await
    }

    /// [`bake`](Self::bake), or with `gate` the check round before a shift: it starts
    /// at once, and an inconclusive verdict lets the shift go ahead without counting.
    /// With `converging`, a split just written: the data plane is asked whether it
    /// applies it until it does (then the bake starts over from that moment) or the
    /// router's settle time plus the settle timeout has passed (the stage fails); the
    /// checks run meanwhile, but the stage cannot pass before.
    async fn watch(
        &mut self,
        writer: &mut Writer,
        index: usize,
        bake: Duration,
        span: &mut impl Span,
        gate: bool,
        mut converging: Option<Weights>,
    ) -> StageEnd {
        let interval = self.cfg.policy.check_interval;
        let stage_start = Instant::now();
        let mut clock = BakeClock::start(bake, Instant::now());
        let mut next_eval = Instant::now() + interval.min(bake);
        let (limit, max_pause) = writer.converge_limits();
        let converge_until = Instant::now() + limit;
        let mut pause = Duration::from_millis(50);
        let mut next_ask = Instant::now();
        loop {
            tokio::select! {
                biased;
                c = self.control.recv(), if self.control_open => match c {
                    Some(Control::Abort) => return StageEnd::Failed(RollbackReason::Aborted),
                    Some(Control::Promote) => return StageEnd::PromoteNow,
                    Some(Control::Pause) if !self.paused => {
                        clock.pause(Instant::now());
                        self.paused = true;
                        self.emit.send(Event::Paused);
                    }
                    Some(Control::Resume) if self.paused => {
                        clock.resume(Instant::now());
                        self.paused = false;
                        self.emit.send(Event::Resumed);
                    }
                    Some(_) => {}
                    None => self.control_open = false,
                },
                _ = sleep_until(self.deadline) => return StageEnd::Failed(RollbackReason::DeadlineExceeded),
                detail = async {
                    // Boxed, and only with a store: every rollout's future would
                    // otherwise hold this wait's state.
                    match self.lost.as_mut() {
                        Some(rx) => Box::pin(lease_lost_rx(rx)).await,
                        None => std::future::pending().await,
                    }
                } => {
                    return StageEnd::Stop(RolloutError::LeaseLost {
                        route: self.cfg.route.to_string(),
                        detail,
                        in_force: writer.known().clone(),
                    });
                }
                _ = sleep_until(next_ask), if converging.is_some() => {
                    let Some(target) = converging.take() else { continue };
                    let said = writer.converged_once(&target).await;
                    if said.settled() {
                        if let Err(reason) = self.data_plane(writer, &said).await {
                            return StageEnd::Failed(reason);
                        }
                        clock = BakeClock::start(bake, Instant::now());
                        if self.paused {
                            clock.pause(Instant::now());
                        }
                    } else if Instant::now() >= converge_until {
                        if let Err(reason) = self.data_plane(writer, &said).await {
                            return StageEnd::Failed(reason);
                        }
                    } else {
                        next_ask = Instant::now() + pause;
                        pause = (pause * 2).min(max_pause);
                        converging = Some(target);
                    }
                }
                _ = sleep_until(next_eval) => {
                    // One cheap read per round: another writer is seen within a check
                    // interval, not only at the next step's write.
                    if let Err(fail) = writer.watch(self.cfg.policy.check_timeout).await {
                        let last = writer.known().clone();
                        return StageEnd::Stop(self.stop_error(fail, None, &last));
                    }
                    let ctx = CheckContext {
                        stage: index,
                        stable: self.cfg.stable.clone(),
                        candidate: self.cfg.candidate.clone(),
                        weights: writer.known().clone(),
                        stage_elapsed: stage_start.elapsed(),
                    };
                    let verdict = self.evaluate(&ctx).await;
                    span.add_event("verdict", vec![KeyValue::new("verdict", verdict.to_string())]);
                    if gate && matches!(verdict, Verdict::Inconclusive { .. }) {
                        self.emit_verdict(index, &verdict);
                        return StageEnd::Passed;
                    }
                    let passes = match self.judge(index, &verdict) {
                        Judgement::RollBack(reason) => return StageEnd::Failed(reason),
                        Judgement::Continue { passes } => passes,
                    };
                    clock.tick(Instant::now(), self.paused);
                    if !self.paused && clock.done() && passes && converging.is_none() {
                        return StageEnd::Passed;
                    }
                    next_eval = Instant::now() + clock.next_wait(interval, self.paused);
                }
            }
        }
    }

    async fn evaluate(&self, ctx: &CheckContext) -> Verdict {
        use futures_util::FutureExt as _;
        let limit = self.cfg.policy.check_timeout;
        // A check that panics is a check that could not decide: the inconclusive
        // policy judges it, and the rollout still ends safely.
        let check = std::panic::AssertUnwindSafe(self.cfg.check.check(ctx)).catch_unwind();
        match timeout(limit, check).await {
            Ok(Ok(v)) => v,
            Ok(Err(_)) => {
                tracing::error!("a health check panicked; counted as inconclusive");
                Verdict::inconclusive("a check panicked")
            }
            Err(_) => Verdict::inconclusive(format!("checks did not answer within {limit:?}")),
        }
    }

    /// Counts a verdict, emits it, and says what it means.
    fn judge(&mut self, index: usize, verdict: &Verdict) -> Judgement {
        let judgement = self.tally.record(verdict, &self.cfg.policy, Instant::now());
        self.emit_verdict(index, verdict);
        judgement
    }

    fn emit_verdict(&self, index: usize, verdict: &Verdict) {
        self.emit.send(Event::Verdict {
            stage: index,
            verdict: verdict.clone(),
            failures: self.tally.failures,
            inconclusive: self.tally.inconclusive,
        });
    }
}

/// Resolves when the store says the lease is lost (never without a store).
#[cfg_attr(not(feature = "ecs"), allow(dead_code))]
pub(crate) async fn lease_lost(lost: &mut Option<watch::Receiver<Option<String>>>) -> String {
    match lost {
        Some(rx) => lease_lost_rx(rx).await,
        None => std::future::pending().await,
    }
}

/// Resolves when `rx` says the lease is lost.
async fn lease_lost_rx(rx: &mut watch::Receiver<Option<String>>) -> String {
    loop {
        if let Some(why) = rx.borrow_and_update().clone() {
            return why;
        }
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}
