//! Running one stage: provision, shift and bake with checks, retire.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::{Span, Status, Tracer};
use tokio::time::{Instant, sleep_until, timeout};

use super::RollbackReason;
use super::events::Event;
use super::handle::Control;
use super::runner::{Runner, StageEnd};
use super::tally::{Judgement, gate_needed};
use super::writer::{WriteFail, Writer};
use crate::error::RolloutError;
use crate::health::{CheckContext, Verdict};
use crate::strategy::Stage;
use crate::traffic::Weights;

impl Runner {
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
            span.set_attribute(KeyValue::new("meshkit.new_percent", i64::from(new_percent)));
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
            Stage::Provision => self.provision().await,
            Stage::Check { bake } => self.bake(writer, index, bake, span).await,
            Stage::Shift { new_percent, bake } => {
                let target = match self.split(new_percent) {
                    Ok(t) => t,
                    Err(e) => return StageEnd::Stop(RolloutError::Config(e.into())),
                };
                if self.gate_needed(writer, new_percent) {
                    match self.watch(writer, index, Duration::ZERO, span, true).await {
                        StageEnd::Passed => {}
                        end => return end,
                    }
                }
                let token = self.token(&index.to_string());
                let budget = self.write_budget();
                match writer.apply(&target, &token, budget, &self.emit).await {
                    Ok(applied) => {
                        self.emit_applied(&applied);
                        if let Some(applied) = writer.applied().await {
                            self.emit.send(Event::WeightsVerified { applied });
                        }
                    }
                    Err(WriteFail::Failed { error, .. }) => {
                        return StageEnd::Failed(RollbackReason::WriteFailed(error.to_string()));
                    }
                    Err(fail) => {
                        let last = writer.known().clone();
                        return StageEnd::Stop(self.stop_error(fail, None, &last));
                    }
                }
                self.bake(writer, index, bake, span).await
            }
            Stage::Retire => {
                let window = self.cfg.policy.rollback_window;
                if !window.is_zero() {
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

    /// Whether a shift to `new_percent` must pass a round of checks first.
    fn gate_needed(&self, writer: &Writer, new_percent: u8) -> bool {
        gate_needed(
            &self.cfg.policy,
            writer.known().percent(&self.cfg.candidate),
            new_percent,
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
        self.watch(writer, index, bake, span, false).await
    }

    /// [`bake`](Self::bake), or with `gate` the check round before a shift: it starts
    /// at once, and an inconclusive verdict lets the shift go ahead without counting.
    async fn watch(
        &mut self,
        writer: &mut Writer,
        index: usize,
        bake: Duration,
        span: &mut impl Span,
        gate: bool,
    ) -> StageEnd {
        let interval = self.cfg.policy.check_interval;
        let stage_start = Instant::now();
        let mut baked = Duration::ZERO;
        let mut mark = Instant::now();
        let mut next_eval = mark + interval.min(bake);
        loop {
            tokio::select! {
                biased;
                c = self.control.recv(), if self.control_open => match c {
                    Some(Control::Abort) => return StageEnd::Failed(RollbackReason::Aborted),
                    Some(Control::Promote) => return StageEnd::PromoteNow,
                    Some(Control::Pause) if !self.paused => {
                        baked += mark.elapsed();
                        self.paused = true;
                        self.emit.send(Event::Paused);
                    }
                    Some(Control::Resume) if self.paused => {
                        mark = Instant::now();
                        self.paused = false;
                        self.emit.send(Event::Resumed);
                    }
                    Some(_) => {}
                    None => self.control_open = false,
                },
                _ = sleep_until(self.deadline) => return StageEnd::Failed(RollbackReason::DeadlineExceeded),
                _ = sleep_until(next_eval) => {
                    // One cheap read per round: another writer is seen within a check
                    // interval, not only at the next step's write.
                    if let Err(fail) = writer.watch().await {
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
                    if !self.paused {
                        baked += mark.elapsed();
                        mark = Instant::now();
                    }
                    if !self.paused && baked >= bake && passes {
                        return StageEnd::Passed;
                    }
                    let left = bake.saturating_sub(baked);
                    let wait = if left.is_zero() || self.paused { interval } else { interval.min(left) };
                    next_eval = Instant::now() + wait;
                }
            }
        }
    }

    async fn evaluate(&self, ctx: &CheckContext) -> Verdict {
        let limit = self.cfg.policy.check_timeout;
        match timeout(limit, self.cfg.check.check(ctx)).await {
            Ok(v) => v,
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
