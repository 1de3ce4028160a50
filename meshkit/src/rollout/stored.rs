//! A rollout run under a rollout store: take the route's lease (or wait for it),
//! find the route's open record and resume it or start a new one, run with the
//! keeper beside the runner, then end the record and release the lease.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio::time::{Instant, sleep};

use super::events::Event;
use super::handle::{Control, RolloutHandle};
use super::keeper::{Keeper, Tending};
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

impl StoreConfig {
    /// The store settings of a builder, validated: the lease lasts at least 1 s and
    /// twice `call_timeout` (default: 60 s or twice the call timeout).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        store: Arc<dyn RolloutStore>,
        key: String,
        holder: Option<Holder>,
        ttl: Option<Duration>,
        wait: Option<Duration>,
        max_entries: Option<usize>,
        clock: Option<Clock>,
        call_timeout: Duration,
    ) -> Result<Self, crate::error::ConfigError> {
        let ttl = ttl.unwrap_or((call_timeout * 2).max(Duration::from_secs(60)));
        if ttl < Duration::from_secs(1) || ttl < call_timeout * 2 {
            return Err(crate::error::ConfigError::Policy {
                field: "lease_ttl",
                problem: format!(
                    "{ttl:?} is too short: at least 1 s and twice the call timeout ({call_timeout:?})"
                ),
            });
        }
        Ok(Self {
            key,
            store,
            holder: holder.unwrap_or_else(Holder::current),
            ttl,
            wait,
            max_entries: max_entries.unwrap_or(crate::store::DEFAULT_MAX_ENTRIES),
            clock: clock.unwrap_or_else(crate::store::system_clock),
        })
    }
}

/// Takes the lease; with `wait`, polls until it is free or `wait` passed.
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

/// `id`, or when the store already has a rollout of that id, `id` with a random
/// suffix (within the 32 characters an id may have).
async fn unique_id(sc: &StoreConfig, id: &str) -> Result<String, StoreError> {
    let mut candidate = id.to_owned();
    for _ in 0..5 {
        if sc.store.get(&candidate).await?.is_none() {
            return Ok(candidate);
        }
        let stem: String = id.chars().take(32 - 7).collect();
        candidate = format!("{stem}-{:06x}", fastrand::u32(..0x0100_0000));
    }
    Err(StoreError::Busy(format!(
        "could not find an unused rollout id near '{id}'"
    )))
}

/// All traffic on one target.
fn at_safe_end(w: &Weights) -> bool {
    w.iter().filter(|(_, u)| *u > 0).count() == 1
}

/// One read of the route, bounded by the call timeout.
async fn read_route(cfg: &Config, route: &str) -> Result<Weights, RolloutError> {
    let start = |source| RolloutError::Start {
        route: route.to_owned(),
        source,
    };
    match tokio::time::timeout(cfg.policy.call_timeout, cfg.router.read(&cfg.route)).await {
        Ok(Ok(o)) => Ok(o.weights),
        Ok(Err(source)) => Err(start(source)),
        Err(_) => Err(start(crate::traffic::TrafficError::transport(
            "the read got no answer",
        ))),
    }
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
        // A route put back at a safe end by hand (`meshkit rollback` after a crash)
        // that the record never wrote: the old rollout is over; start afresh.
        let found = read_route(cfg, route).await?;
        let stages = cfg.strategy.stages();
        let resumable = crate::rollout::resume::from_record(
            &rec.progress,
            &found,
            &cfg.stable,
            &cfg.candidate,
            &stages,
        )
        .is_ok();
        if !resumable && at_safe_end(&found) {
            return Ok(Prior::Abandon(Box::new(rec), found));
        }
        return Ok(Prior::Resume(Box::new(rec)));
    }
    // Other versions: only when the route is at a safe end may the old one be closed.
    let found = read_route(cfg, route).await?;
    if at_safe_end(&found) {
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

/// For drivers other than the runner (an ECS native deployment): takes the lease on
/// `sc.key`, carries on with the key's open record when it is of the same versions
/// (or closes another one as abandoned: the deployment's state lives in the
/// service), opens the record, and starts the keeper's heartbeat and gates. The
/// caller records events through the keeper and ends with [`finish`]. The time is
/// when the open record taken over started (`None`: a new record).
#[cfg_attr(not(feature = "ecs"), allow(dead_code))]
pub(crate) async fn keep(
    sc: &StoreConfig,
    mut new: NewRollout,
    handle: RolloutHandle,
    check_every: Duration,
) -> Result<(Arc<Keeper>, Tending, Option<std::time::SystemTime>), RolloutError> {
    let lease = acquire(sc, &sc.key).await?;
    let mut note = format!("took the lease (fencing token {})", lease.token);
    let mut resumed = None;
    let opened = async {
        match sc.store.open_rollout(&sc.key).await? {
            Some(rec)
                if rec.rollout.stable == new.stable && rec.rollout.candidate == new.candidate =>
            {
                note = format!(
                    "took over rollout {} ({} earlier attempt(s), state {})",
                    rec.rollout.id,
                    rec.attempts.len(),
                    rec.state
                );
                new.id = rec.rollout.id.clone();
                resumed = Some(rec.started);
            }
            Some(rec) => {
                let update = crate::store::RecordUpdate {
                    end: Some((
                        RecordState::Abandoned,
                        format!(
                            "superseded by a rollout of {} \u{2192} {}",
                            new.stable, new.candidate
                        ),
                    )),
                    ..Default::default()
                };
                sc.store.record(&lease, &rec.rollout.id, &update).await?;
                new.id = unique_id(sc, &new.id).await?;
            }
            None => new.id = unique_id(sc, &new.id).await?,
        }
        sc.store.open(&lease, &new).await
    };
    if let Err(e) = opened.await {
        if let Err(r) = sc.store.release(&lease).await {
            tracing::warn!(error = %r, "could not release the lease; it expires on its own");
        }
        return Err(e.into());
    }
    let keeper = Arc::new(Keeper::new(
        sc.store.clone(),
        lease,
        new.id.clone(),
        sc.ttl,
        sc.max_entries,
        sc.clock.clone(),
        Progress::default(),
    ));
    keeper.note("Lease", note);
    if resumed.is_some() {
        keeper.carry_pause(&handle).await;
    }
    let tend = Tending::spawn(keeper.clone(), handle, check_every);
    Ok((keeper, tend, resumed))
}

/// Ends what [`keep`] started: stops the keeper after its store call in progress,
/// records the end and releases the lease.
#[cfg_attr(not(feature = "ecs"), allow(dead_code))]
pub(crate) async fn finish(
    sc: &StoreConfig,
    keeper: &Keeper,
    tend: Tending,
    end: (RecordState, String),
) {
    tend.stop(keeper, sc.ttl / 2).await;
    keeper.finish(end).await;
}

pub(crate) async fn run(
    mut cfg: Config,
    events: Option<broadcast::Sender<(Duration, Event)>>,
    control: mpsc::UnboundedReceiver<Control>,
    control_tx: mpsc::UnboundedSender<Control>,
) -> Result<Outcome, RolloutError> {
    let Some(sc) = cfg.store.take() else {
        return Err(RolloutError::Config(crate::error::ConfigError::Missing(
            "store",
        )));
    };
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
    // A new rollout never reuses a recorded id (ids derived from the route and
    // versions repeat when the same versions are rolled out again).
    if !matches!(found, Prior::Resume(_)) {
        match unique_id(&sc, &cfg.id).await {
            Ok(id) => cfg.id = id,
            Err(e) => {
                release(lease).await;
                return Err(e.into());
            }
        }
    }
    let mut notes = Vec::new();
    let (resumed, progress) = match found {
        Prior::None => (None, Progress::default()),
        Prior::Resume(rec) => {
            notes.push(format!(
                "took over rollout {} ({} earlier attempt(s), state {}) and resumes from its record",
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
        notes.push(format!("took the lease (fencing token {})", lease.token));
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
    let resumed_run = resumed.is_some();
    let handle = RolloutHandle { tx: control_tx };
    if resumed_run {
        keeper.carry_pause(&handle).await;
    }
    let tend = Tending::spawn(keeper.clone(), handle, cfg.policy.check_interval);
    let result = Runner::new(cfg, events, control)
        .with_store(keeper.clone(), resumed)
        .run()
        .await;
    tend.stop(&keeper, sc.ttl / 2).await;
    let end = match &result {
        Ok(o @ Outcome::Promoted { .. }) => (RecordState::Promoted, o.to_string()),
        Ok(o @ Outcome::RolledBack { .. }) => (RecordState::RolledBack, o.to_string()),
        // A resumed rollout whose route someone else changed cannot go on: closed, so
        // the next run starts afresh (and says so) instead of refusing forever.
        Err(e @ RolloutError::Record { .. }) if resumed_run => {
            (RecordState::Abandoned, e.to_string())
        }
        // Refused before any write: a new record is closed; a resumed one stays open
        // for the next run (the refusal may pass: a read that failed, say).
        Err(e) if e.nothing_written() && !resumed_run => (RecordState::Refused, e.to_string()),
        Err(e) => (RecordState::Stopped, e.to_string()),
    };
    keeper.finish(end).await;
    result
}
