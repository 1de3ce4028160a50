//! A rollout run under a rollout store: take the route's lease (or wait for it),
//! find the route's open record and resume it or start a new one, run with the
//! keeper beside the runner, then end the record and release the lease.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio::time::{Instant, sleep};

use super::events::Event;
use super::handle::{Control, RolloutHandle};
use super::keeper::Keeper;
use super::runner::Runner;
use super::{Config, Outcome, RolloutError};
use crate::store::{
    Clock, Holder, Lease, NewRollout, Progress, RecordState, RolloutRecord, RolloutStore,
    StoreError,
};
use crate::traffic::Weights;

/// The store settings of a rollout ([`crate::RolloutBuilder::store`]).
#[derive(Clone)]
pub(crate) struct StoreConfig {
    /// The route's key in the store.
    pub(crate) key: String,
    pub(crate) store: Arc<dyn RolloutStore>,
    pub(crate) holder: Holder,
    pub(crate) ttl: Duration,
    pub(crate) wait: Option<Duration>,
    pub(crate) max_entries: usize,
    pub(crate) clock: Clock,
}

/// Takes the route's lease; with `wait`, polls until it is free or `wait` passed.
async fn acquire(sc: &StoreConfig, route: &str) -> Result<Lease, StoreError> {
    let until = sc.wait.map(|w| Instant::now() + w);
    loop {
        match sc.store.acquire(route, &sc.holder, sc.ttl).await {
            Err(e @ StoreError::Held { .. }) => match until {
                Some(until) if Instant::now() < until => {
                    tracing::info!(%route, error = %e, "waiting for the route's lease");
                    let poll =
                        (sc.ttl / 10).clamp(Duration::from_millis(50), Duration::from_secs(2));
                    sleep(poll.min(until - Instant::now())).await;
                }
                _ => return Err(e),
            },
            Err(e) if e.is_retryable() => match until {
                Some(until) if Instant::now() < until => sleep(Duration::from_millis(200)).await,
                _ => return Err(e),
            },
            other => return other,
        }
    }
}

/// The plan as the record keeps it: one line per stage.
fn plan_lines(cfg: &Config) -> Vec<String> {
    cfg.strategy
        .stages()
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// What the route's open record means for this run: resume it, close it as
/// abandoned, or refuse.
enum Prior {
    None,
    Resume(Box<RolloutRecord>),
    Abandon(Box<RolloutRecord>, Weights),
}

async fn prior(cfg: &Config, sc: &StoreConfig, route: &str) -> Result<Prior, RolloutError> {
    let Some(rec) = sc.store.open_rollout(route).await? else {
        return Ok(Prior::None);
    };
    let r = &rec.rollout;
    if r.stable == cfg.stable && r.candidate == cfg.candidate {
        let plan = plan_lines(cfg);
        if r.plan != plan {
            return Err(RolloutError::Record {
                route: route.to_owned(),
                detail: format!(
                    "rollout {} of the same versions is unfinished ({}) and was started with another plan ({}); \
                     run it with the spec it started with, or end it with `promote` or `rollback`",
                    r.id,
                    rec.state,
                    r.plan.join(", ")
                ),
                in_force: None,
            });
        }
        return Ok(Prior::Resume(Box::new(rec)));
    }
    // Other versions: only when the route is at a safe end may the old one be closed.
    let found =
        match tokio::time::timeout(cfg.policy.call_timeout, cfg.router.read(&cfg.route)).await {
            Ok(Ok(o)) => o.weights,
            Ok(Err(source)) => {
                return Err(RolloutError::Start {
                    route: route.to_owned(),
                    source,
                });
            }
            Err(_) => {
                return Err(RolloutError::Start {
                    route: route.to_owned(),
                    source: crate::traffic::TrafficError::transport("the read got no answer"),
                });
            }
        };
    if found.iter().filter(|(_, w)| *w > 0).count() == 1 {
        return Ok(Prior::Abandon(Box::new(rec), found));
    }
    Err(RolloutError::Record {
        route: route.to_owned(),
        detail: format!(
            "rollout {} ({} \u{2192} {}) is unfinished ({}) and the route is between versions ({found}); \
             finish it first (run its spec again, or `promote` / `rollback` it)",
            r.id, r.stable, r.candidate, rec.state
        ),
        in_force: Some(found),
    })
}

pub(crate) async fn run(
    mut cfg: Config,
    events: Option<broadcast::Sender<(Duration, Event)>>,
    control: mpsc::UnboundedReceiver<Control>,
    control_tx: mpsc::UnboundedSender<Control>,
    sc: StoreConfig,
) -> Result<Outcome, RolloutError> {
    let route = sc.key.clone();
    let lease = acquire(&sc, &route).await?;
    let release = |lease: Lease| {
        let store = sc.store.clone();
        async move {
            if let Err(e) = store.release(&lease).await {
                tracing::warn!(error = %e, "could not release the lease; it expires on its own");
            }
        }
    };
    let found = match prior(&cfg, &sc, &route).await {
        Ok(p) => p,
        Err(e) => {
            release(lease).await;
            return Err(e);
        }
    };
    let mut notes = Vec::new();
    let (resumed, progress) = match found {
        Prior::None => (None, Progress::default()),
        Prior::Resume(rec) => {
            notes.push(format!(
                "{} took over rollout {} ({} earlier attempt(s), state {}) and resumes from its record",
                sc.holder,
                rec.rollout.id,
                rec.attempts.len(),
                rec.state
            ));
            cfg.id = rec.rollout.id.clone();
            let progress = rec.progress.clone();
            (Some(*rec), progress)
        }
        Prior::Abandon(rec, weights) => {
            let end = (
                RecordState::Abandoned,
                format!(
                    "left unfinished; found at {weights} by rollout {} ({} \u{2192} {})",
                    cfg.id, cfg.stable, cfg.candidate
                ),
            );
            let update = crate::store::RecordUpdate {
                end: Some(end),
                ..Default::default()
            };
            if let Err(e) = sc.store.record(&lease, &rec.rollout.id, &update).await {
                release(lease).await;
                return Err(e.into());
            }
            (None, Progress::default())
        }
    };
    let new = NewRollout {
        id: cfg.id.clone(),
        route: route.clone(),
        stable: cfg.stable.clone(),
        candidate: cfg.candidate.clone(),
        strategy: cfg.strategy.name().to_owned(),
        plan: plan_lines(&cfg),
        started_by: sc.holder.clone(),
    };
    if let Err(e) = sc.store.open(&lease, &new).await {
        release(lease).await;
        return Err(e.into());
    }
    if notes.is_empty() {
        notes.push(format!(
            "{} took the lease (fencing token {})",
            sc.holder, lease.token
        ));
    }
    let keeper = Arc::new(Keeper::new(
        sc.store.clone(),
        lease,
        cfg.id.clone(),
        sc.ttl,
        sc.max_entries,
        sc.clock.clone(),
        progress,
    ));
    for n in notes {
        keeper.note("Lease", n);
    }
    let handle = RolloutHandle { tx: control_tx };
    let tend = tokio::spawn(keeper.clone().tend(handle, cfg.policy.check_interval));
    let result = Runner::new(cfg, events, control)
        .with_store(keeper.clone(), resumed)
        .run()
        .await;
    tend.abort();
    let end = match &result {
        Ok(o @ Outcome::Promoted { .. }) => (RecordState::Promoted, o.to_string()),
        Ok(o @ Outcome::RolledBack { .. }) => (RecordState::RolledBack, o.to_string()),
        Err(e) if e.nothing_written() => (RecordState::Refused, e.to_string()),
        Err(e) => (RecordState::Stopped, e.to_string()),
    };
    keeper.finish(end).await;
    result
}
