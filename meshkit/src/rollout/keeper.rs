//! The keeper: a running rollout's side of the store. It holds the route's lease
//! (heartbeat), records every event and how far the rollout got, fences every write,
//! and hands gates requested through the store to the runner.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::{Instant, sleep};

use super::RolloutHandle;
use super::events::Event;
use crate::store::{
    Entry, Gate, GateRequest, Lease, Progress, RecordState, RecordUpdate, RolloutStore, StoreError,
    encode_weights,
};
use crate::traffic::Weights;

/// How often a failed store call is retried before the keeper gives up on it.
const STORE_ATTEMPTS: u32 = 3;

/// What the keeper has not written to the store yet, and the progress as it is now.
#[derive(Default)]
struct Buffer {
    progress: Progress,
    entries: Vec<Entry>,
    dropped: u64,
    kept: usize,
}

pub(crate) struct Keeper {
    store: Arc<dyn RolloutStore>,
    id: String,
    ttl: Duration,
    holder: String,
    max_entries: usize,
    /// Tells the keeper's clock for timeline lines (the store's clock decides leases).
    clock: crate::store::Clock,
    lease: Mutex<Lease>,
    buffer: Mutex<Buffer>,
    /// Serialises the keeper's record writes, so a later snapshot never lands first.
    io: tokio::sync::Mutex<()>,
    pending: Notify,
    /// Tells [`Keeper::tend`] to return (after the store call in progress).
    stop: Notify,
    lost: watch::Sender<Option<String>>,
    renewed: Mutex<Instant>,
}

/// Kinds of timeline lines dropped first once a record reaches its bound.
fn routine(event: &Event) -> bool {
    matches!(
        event,
        Event::Verdict { .. }
            | Event::WriteRetry { .. }
            | Event::TrafficMeasured { .. }
            | Event::DataPlaneUnconfirmed { .. }
            | Event::Missed { .. }
    )
}

/// The split a line reports, for the record's charts.
fn split(event: &Event) -> Option<&Weights> {
    match event {
        Event::Started { weights, .. }
        | Event::WeightsWritten { weights }
        | Event::AlreadyInForce { weights }
        | Event::TargetRemoved { weights, .. }
        | Event::DeploymentProgress { weights, .. }
        | Event::WeightsVerified { applied: weights } => Some(weights),
        Event::Stopped { in_force, .. } => in_force.as_ref(),
        _ => None,
    }
}

fn kind(event: &Event) -> String {
    format!("{event:?}")
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect()
}

impl Keeper {
    pub(crate) fn new(
        store: Arc<dyn RolloutStore>,
        lease: Lease,
        id: String,
        ttl: Duration,
        max_entries: usize,
        clock: crate::store::Clock,
        progress: Progress,
    ) -> Self {
        Self {
            store,
            id,
            ttl,
            holder: lease.holder.name.clone(),
            max_entries,
            clock,
            lease: Mutex::new(lease),
            buffer: Mutex::new(Buffer {
                progress,
                ..Buffer::default()
            }),
            io: tokio::sync::Mutex::new(()),
            pending: Notify::new(),
            stop: Notify::new(),
            lost: watch::channel(None).0,
            renewed: Mutex::new(Instant::now()),
        }
    }

    fn lease(&self) -> Lease {
        self.lease
            .lock()
            .map_or_else(|p| p.into_inner().clone(), |l| l.clone())
    }

    fn buffer(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.buffer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The lease's fencing token.
    pub(crate) fn token(&self) -> u64 {
        self.lease().token
    }

    /// A receiver told (once) why the lease was lost.
    pub(crate) fn lost(&self) -> watch::Receiver<Option<String>> {
        self.lost.subscribe()
    }

    fn is_lost(&self) -> Option<String> {
        self.lost.borrow().clone()
    }

    fn lose(&self, detail: String) {
        tracing::warn!(rollout = %self.id, %detail, "lease lost: no more writes");
        self.lost.send_if_modified(|l| {
            if l.is_none() {
                *l = Some(detail);
                true
            } else {
                false
            }
        });
    }

    /// A timeline line by this holder, now.
    pub(crate) fn line(&self, kind: &str, message: String) -> Entry {
        Entry {
            at: (self.clock)(),
            by: self.holder.clone(),
            kind: kind.to_owned(),
            message,
            weights: None,
        }
    }

    /// Adds a line of the store's own (the lease, a gate) to the timeline.
    pub(crate) fn note(&self, kind: &str, message: String) {
        let line = self.line(kind, message);
        let mut b = self.buffer();
        b.kept += 1;
        b.entries.push(line);
        drop(b);
        self.pending.notify_one();
    }

    /// Takes an event into the record: a timeline line (routine lines beyond the
    /// bound are counted instead) and the progress it implies.
    pub(crate) fn observe(&self, event: &Event) {
        let mut line = self.line(&kind(event), event.to_string());
        line.weights = split(event).map(encode_weights);
        let mut b = self.buffer();
        match event {
            Event::StageStarted { index, .. } => {
                b.progress.stage = Some(*index);
                b.progress.verified = false;
            }
            Event::WeightsWritten { weights }
            | Event::AlreadyInForce { weights }
            | Event::TargetRemoved { weights, .. } => {
                b.progress.written = Some(encode_weights(weights));
                b.progress.pending = None;
                b.progress.verified = false;
            }
            Event::WeightsVerified { .. } | Event::TrafficMeasured { .. } => {
                b.progress.verified = true;
            }
            Event::RollbackStarted { reason } => {
                b.progress.rolling_back = Some(reason.to_string());
            }
            _ => {}
        }
        if routine(event) && b.kept >= self.max_entries {
            b.dropped += 1;
        } else {
            b.kept += 1;
            b.entries.push(line);
        }
        drop(b);
        self.pending.notify_one();
    }

    /// What is waiting to be written, with the progress now.
    fn take(&self) -> RecordUpdate {
        let mut b = self.buffer();
        RecordUpdate {
            entries: std::mem::take(&mut b.entries),
            dropped: std::mem::take(&mut b.dropped),
            progress: Some(b.progress.clone()),
            end: None,
        }
    }

    /// Puts lines that could not be written back in front of the buffer.
    fn put_back(&self, update: RecordUpdate) {
        let mut b = self.buffer();
        let later = std::mem::take(&mut b.entries);
        b.entries = update.entries;
        b.entries.extend(later);
        b.dropped += update.dropped;
    }

    /// Runs `call` until it succeeds, fails for good, or [`STORE_ATTEMPTS`] are used.
    async fn retry<T, F, Fut>(&self, mut call: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match call().await {
                Err(e) if e.is_retryable() && attempt < STORE_ATTEMPTS => {
                    tracing::debug!(rollout = %self.id, error = %e, "store call failed, retrying");
                    sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
                other => return other,
            }
        }
    }

    /// Writes what is buffered (and `end`). A lost lease is reported through
    /// [`Keeper::lost`]; other failures keep the lines for the next flush.
    pub(crate) async fn flush(&self, end: Option<(RecordState, String)>) -> Result<(), StoreError> {
        let _io = self.io.lock().await;
        let mut update = self.take();
        if update.entries.is_empty() && update.dropped == 0 && end.is_none() {
            return Ok(());
        }
        update.end = end;
        let lease = self.lease();
        match self
            .retry(|| self.store.record(&lease, &self.id, &update))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => {
                if let StoreError::Lost { detail, .. } = &e {
                    self.lose(detail.clone());
                } else {
                    tracing::warn!(rollout = %self.id, error = %e, "could not record events; kept for the next try");
                    self.put_back(update);
                }
                Err(e)
            }
        }
    }

    /// Before a write of `target` to the route: records it as pending, fenced by the
    /// lease with half the lease time left. `Err` (why) means: do not write.
    pub(crate) async fn fence(&self, target: &Weights) -> Result<(), String> {
        if let Some(why) = self.is_lost() {
            return Err(why);
        }
        let _io = self.io.lock().await;
        let pending = encode_weights(target);
        let mut update = self.take();
        let mut progress = update.progress.take().unwrap_or_default();
        progress.pending = Some(pending.clone());
        let lease = self.lease();
        let margin = self.ttl / 2;
        match self
            .retry(|| {
                self.store
                    .fence(&lease, &self.id, &progress, &update, margin)
            })
            .await
        {
            Ok(()) => {
                self.buffer().progress.pending = Some(pending);
                Ok(())
            }
            Err(StoreError::Lost { detail, .. }) => {
                self.lose(detail.clone());
                Err(detail)
            }
            Err(e) => {
                self.put_back(update);
                Err(format!(
                    "the store could not confirm the lease before the write ({e}); \
                     nothing is written without a confirmed lease"
                ))
            }
        }
    }

    /// Renews the lease; after a failure, says whether the lease is now lost by time.
    async fn renew(&self) -> bool {
        let lease = self.lease();
        match self.store.renew(&lease, self.ttl).await {
            Ok(renewed) => {
                *self
                    .lease
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = renewed;
                *self
                    .renewed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
                true
            }
            Err(StoreError::Lost { detail, .. }) => {
                self.lose(detail);
                false
            }
            Err(e) => {
                let since = self
                    .renewed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .elapsed();
                tracing::warn!(rollout = %self.id, error = %e, "lease renewal failed");
                if since >= self.ttl {
                    self.lose(format!(
                        "renewals failed for {since:?}, longer than the lease time {:?} (last error: {e})",
                        self.ttl
                    ));
                }
                false
            }
        }
    }

    /// Taking over a rollout: a pause the previous holder applied (and nobody resumed)
    /// still holds; sent to the new holder before it starts.
    pub(crate) async fn carry_pause(&self, handle: &RolloutHandle) {
        let gates = match self.store.gates(&self.id).await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(rollout = %self.id, error = %e, "reading gates failed; a pause from before the takeover may not hold");
                return;
            }
        };
        let held = gates
            .iter()
            .rfind(|g| g.applied.is_some() && matches!(g.gate, Gate::Pause | Gate::Resume))
            .is_some_and(|g| g.gate == Gate::Pause);
        if held && handle.pause().is_ok() {
            self.note(
                "Gate",
                "the pause applied before the takeover still holds".into(),
            );
        }
    }

    /// Applies the gates not applied yet: each goes to the runner and is marked
    /// applied in the store, with a timeline line.
    async fn gates(&self, seen: &mut Vec<String>, handle: &RolloutHandle) {
        let gates = match self.store.gates(&self.id).await {
            Ok(g) => g,
            Err(e) => {
                tracing::debug!(rollout = %self.id, error = %e, "reading gates failed");
                return;
            }
        };
        for gate in gates.into_iter().filter(|g| g.applied.is_none()) {
            if seen.contains(&gate.id) {
                continue;
            }
            seen.push(gate.id.clone());
            let sent = match gate.gate {
                Gate::Pause => handle.pause(),
                Gate::Resume => handle.resume(),
                Gate::Promote => handle.promote(),
                Gate::Rollback => handle.abort(),
            };
            if sent.is_err() {
                return;
            }
            self.mark(&gate).await;
        }
    }

    async fn mark(&self, gate: &GateRequest) {
        let entry = self.line(
            "Gate",
            format!("{} requested by {} applied", gate.gate, gate.by),
        );
        let lease = self.lease();
        let _io = self.io.lock().await;
        if let Err(e) = self
            .retry(|| self.store.gate_applied(&lease, &self.id, gate, &entry))
            .await
        {
            tracing::warn!(rollout = %self.id, error = %e, "could not mark a gate applied");
        }
    }

    /// The keeper's loop while the rollout runs: heartbeat every third of the lease
    /// time (a tenth after a failure), gates every check interval, the record as
    /// events come. Ends when the lease is lost; otherwise the caller aborts it.
    pub(crate) async fn tend(self: Arc<Self>, handle: RolloutHandle, check_every: Duration) {
        let beat = self.ttl / 3;
        let mut next_beat = Instant::now() + beat;
        let mut next_gates = Instant::now();
        let mut seen = Vec::new();
        let mut lost = self.lost();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next_beat) => {
                    next_beat = Instant::now() + if self.renew().await { beat } else { self.ttl / 10 };
                }
                _ = tokio::time::sleep_until(next_gates) => {
                    self.gates(&mut seen, &handle).await;
                    next_gates = Instant::now() + check_every;
                }
                _ = self.pending.notified() => {
                    let _ = self.flush(None).await;
                }
                _ = lost.changed() => return,
                _ = self.stop.notified() => return,
            }
        }
    }

    /// Asks [`Keeper::tend`] to return once the store call in progress, if any, is
    /// done (so no buffered line is dropped half-written).
    pub(crate) fn stop(&self) {
        self.stop.notify_one();
    }

    /// Ends the record (written with the last lines) and releases the lease, unless
    /// it was lost.
    pub(crate) async fn finish(&self, end: (RecordState, String)) {
        if self.is_lost().is_some() {
            return;
        }
        if let Err(e) = self.flush(Some(end)).await {
            tracing::warn!(rollout = %self.id, error = %e, "could not record the rollout's end");
        }
        let lease = self.lease();
        if let Err(e) = self.store.release(&lease).await {
            tracing::warn!(route = %lease.route, error = %e, "could not release the lease; it expires on its own");
        }
    }
}

/// The keeper's task, aborted when dropped: a run its caller cancels (a dropped
/// future, a `select!` that took another branch) must not leave a heartbeat keeping
/// the route's lease alive.
pub(crate) struct Tending(Option<tokio::task::JoinHandle<()>>);

impl Tending {
    /// Starts [`Keeper::tend`].
    pub(crate) fn spawn(keeper: Arc<Keeper>, handle: RolloutHandle, every: Duration) -> Self {
        Self(Some(tokio::spawn(keeper.tend(handle, every))))
    }

    /// Stops the task after its store call in progress (at most `wait`).
    pub(crate) async fn stop(mut self, keeper: &Keeper, wait: Duration) {
        keeper.stop();
        if let Some(mut task) = self.0.take()
            && tokio::time::timeout(wait, &mut task).await.is_err()
        {
            task.abort();
        }
    }
}

impl Drop for Tending {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}
