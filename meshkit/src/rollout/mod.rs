//! The rollout runner: [`Rollout`], its builder, events, control handle and outcome.

mod begin;
mod error;
mod events;
mod handle;
mod keeper;
mod outcome;
mod policy;
mod resume;
mod runner;
mod set;
mod stored;
mod tally;
mod writer;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::global::BoxedTracer;
use tokio::sync::{broadcast, mpsc};

pub use crate::strategy::RollbackReason;
pub use error::RolloutError;
pub use events::{Event, Events};
pub use handle::{Ended, RolloutHandle};
pub use outcome::Outcome;
pub use policy::{Backoff, InconclusivePolicy, Policy};
pub use set::{SetReport, SetWeights};

// For the other drivers of a rollout (the ECS native judge): unused without them.
#[cfg_attr(not(feature = "ecs"), allow(unused_imports))]
pub(crate) use events::Emitter;
#[cfg_attr(not(feature = "ecs"), allow(unused_imports))]
pub(crate) use handle::Control;
#[cfg_attr(not(feature = "ecs"), allow(unused_imports))]
pub(crate) use keeper::Keeper;
#[cfg_attr(not(feature = "ecs"), allow(unused_imports))]
pub(crate) use runner::lease_lost;
#[cfg_attr(not(feature = "ecs"), allow(unused_imports))]
pub(crate) use stored::{StoreConfig, finish as finish_stored, keep};
#[cfg_attr(not(feature = "ecs"), allow(unused_imports))]
pub(crate) use tally::{Judgement, Tally};

use crate::error::ConfigError;
use crate::fleet::Fleet;
use crate::health::{self, HealthCheck};
use crate::store::{Holder, RolloutStore};
use crate::strategy::{Stage, Strategy};
use crate::traffic::{RouteRef, TrafficRouter, Weights};

/// Events a slow receiver may fall behind by before it gets [`Event::Missed`].
const EVENT_BUFFER: usize = 1024;

/// A configured rollout, ready to [`run`](Rollout::run). Built with [`Rollout::builder`].
pub struct Rollout {
    pub(crate) cfg: Config,
    /// Made on the first [`Rollout::events`] call: a rollout nobody watches keeps no
    /// event buffer (1,024 slots of it were ~130 KB per rollout).
    pub(crate) events: std::sync::OnceLock<broadcast::Sender<(Duration, Event)>>,
    pub(crate) control: mpsc::UnboundedReceiver<handle::Control>,
    control_tx: mpsc::UnboundedSender<handle::Control>,
}

/// Everything the runner needs, validated.
pub(crate) struct Config {
    pub(crate) id: String,
    pub(crate) router: Arc<dyn TrafficRouter>,
    pub(crate) route: RouteRef,
    pub(crate) stable: String,
    pub(crate) candidate: String,
    pub(crate) strategy: Arc<dyn Strategy>,
    pub(crate) check: Arc<dyn HealthCheck>,
    pub(crate) fleet: Option<Arc<dyn Fleet>>,
    pub(crate) policy: Policy,
    pub(crate) tracer: BoxedTracer,
    /// Boxed: most rollouts have none, and each carries its config.
    pub(crate) store: Option<Box<stored::StoreConfig>>,
}

impl Rollout {
    /// Starts a builder.
    pub fn builder() -> RolloutBuilder {
        RolloutBuilder::default()
    }

    /// A receiver for this rollout's events. Take it before calling [`Rollout::run`].
    pub fn events(&self) -> Events {
        Events {
            rx: self
                .events
                .get_or_init(|| broadcast::channel(EVENT_BUFFER).0)
                .subscribe(),
        }
    }

    /// A handle to pause, resume, promote or abort the rollout while it runs.
    pub fn handle(&self) -> RolloutHandle {
        RolloutHandle {
            tx: self.control_tx.clone(),
        }
    }

    /// The rollout id (part of every idempotency token, with the step and a per-run
    /// suffix).
    pub fn id(&self) -> &str {
        &self.cfg.id
    }

    /// The strategy's plan.
    pub fn plan(&self) -> Vec<Stage> {
        self.cfg.strategy.stages()
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.cfg.policy
    }

    /// Runs the rollout to its end: `Ok` when all traffic is on one version (promoted
    /// or rolled back, read back from the route), `Err` when it stopped otherwise; the
    /// error names the weights in force ([`RolloutError::in_force`]).
    pub async fn run(self) -> Result<Outcome, RolloutError> {
        let Self {
            cfg,
            events,
            control,
            control_tx,
        } = self;
        // Boxed: a rollout without a store must not carry the stored run's state in
        // its future (every idle rollout would pay for it).
        if cfg.store.is_some() {
            return Box::pin(stored::run(cfg, events.into_inner(), control, control_tx)).await;
        }
        drop(control_tx);
        runner::Runner::new(cfg, events.into_inner(), control)
            .run()
            .await
    }
}

impl fmt::Debug for Rollout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rollout")
            .field("id", &self.cfg.id)
            .field("route", &self.cfg.route)
            .field("stable", &self.cfg.stable)
            .field("candidate", &self.cfg.candidate)
            .field("strategy", &self.cfg.strategy)
            .field("policy", &self.cfg.policy)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Rollout`]. Setters take and return the builder by value; [`build`]
/// validates everything and makes no call to any backend.
///
/// [`build`]: RolloutBuilder::build
#[derive(Default)]
pub struct RolloutBuilder {
    id: Option<String>,
    router: Option<Arc<dyn TrafficRouter>>,
    route: Option<String>,
    stable: Option<String>,
    candidate: Option<String>,
    strategy: Option<Arc<dyn Strategy>>,
    checks: Vec<Arc<dyn HealthCheck>>,
    fleet: Option<Arc<dyn Fleet>>,
    policy: Policy,
    check_timeout_set: bool,
    tracer: Option<BoxedTracer>,
    store: Option<Arc<dyn RolloutStore>>,
    holder: Option<Holder>,
    lease_ttl: Option<Duration>,
    wait_for_lease: Option<Duration>,
    max_record_entries: Option<usize>,
    store_clock: Option<crate::store::Clock>,
    store_key: Option<String>,
}

macro_rules! policy_setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.policy.$name = value;
            self
        }
    };
}

impl RolloutBuilder {
    /// The backend that reads and writes the route. Required.
    pub fn router(mut self, router: impl TrafficRouter + 'static) -> Self {
        self.router = Some(Arc::new(router));
        self
    }

    /// The route to shift. Required.
    pub fn route(mut self, route: impl Into<String>) -> Self {
        self.route = Some(route.into());
        self
    }

    /// The stable (old) version's target name on the route. Required.
    pub fn from(mut self, stable: impl Into<String>) -> Self {
        self.stable = Some(stable.into());
        self
    }

    /// The new version's target name on the route. Required.
    pub fn to(mut self, candidate: impl Into<String>) -> Self {
        self.candidate = Some(candidate.into());
        self
    }

    /// The strategy. Required.
    pub fn strategy(mut self, strategy: impl Strategy + 'static) -> Self {
        self.strategy = Some(Arc::new(strategy));
        self
    }

    /// Adds a health check; all added checks must pass (see [`health::all`]). At least
    /// one is required.
    pub fn check(mut self, check: impl HealthCheck + 'static) -> Self {
        self.checks.push(Arc::new(check));
        self
    }

    /// A fleet to provision the new version and retire the loser. Optional: without
    /// one, both versions are assumed to be running and stay running.
    pub fn fleet(mut self, fleet: impl Fleet + 'static) -> Self {
        self.fleet = Some(Arc::new(fleet));
        self
    }

    /// The rollout id, in events, spans and idempotency tokens: 1-32 of
    /// `[A-Za-z0-9_-]`. Default: a random id. Tokens add the step and a per-run suffix,
    /// so a rerun's writes are never taken for retries of an earlier run's; resuming
    /// after a crash goes by the route's state (see [`resume`](Self::resume)), not by
    /// tokens.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The OpenTelemetry tracer for the rollout's spans. Default: the global tracer
    /// provider's `meshkit` tracer.
    pub fn tracer(mut self, tracer: BoxedTracer) -> Self {
        self.tracer = Some(tracer);
        self
    }

    /// Runs the rollout under a rollout store (see [`crate::store`]): the route's
    /// lease is taken before the first read and kept with a heartbeat, every write is
    /// fenced, every event is recorded, gates requested through the store are
    /// applied, and an open record of the same rollout on the route is resumed.
    /// Default: no store (the rollout lives only in this process).
    pub fn store(mut self, store: Arc<dyn RolloutStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The route's key in the store: its lease and its records. Default: the route's
    /// name. Give one when routes of different routers share names (two local meshes,
    /// two App Mesh meshes with the same route names in different accounts).
    pub fn store_key(mut self, key: impl Into<String>) -> Self {
        self.store_key = Some(key.into());
        self
    }

    /// Who runs the rollout, in the lease and the record. Default:
    /// [`Holder::current`] (`user@host:pid`).
    pub fn holder(mut self, holder: Holder) -> Self {
        self.holder = Some(holder);
        self
    }

    /// How long the route's lease lasts without renewal: a crashed run's route can be
    /// taken over after at most this long. Renewed every third of it; no write starts
    /// with less than half of it left, and since a write may take up to the call
    /// timeout, the lease must be at least twice the call timeout (and at least 1 s).
    /// Default: 60 s, or twice the call timeout when that is longer.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = Some(ttl);
        self
    }

    /// Waits up to `wait` for a route whose lease another process holds, instead of
    /// failing at once with [`StoreError::Held`](crate::store::StoreError::Held).
    pub fn wait_for_lease(mut self, wait: Duration) -> Self {
        self.wait_for_lease = Some(wait);
        self
    }

    /// Timeline lines kept per rollout in the store: check verdicts and retries beyond
    /// it are counted, not kept (writes, gates and the end always are). Default:
    /// [`DEFAULT_MAX_ENTRIES`](crate::store::DEFAULT_MAX_ENTRIES).
    pub fn max_record_entries(mut self, n: usize) -> Self {
        self.max_record_entries = Some(n);
        self
    }

    /// The clock timeline lines are stamped with; give the same clock as the store's
    /// when you gave it one. Default: the system clock.
    pub fn store_clock(mut self, clock: crate::store::Clock) -> Self {
        self.store_clock = Some(clock);
        self
    }

    policy_setter!(
        /// How often the checks run while a stage bakes. Default: 10 s; at least 10 ms.
        check_interval: Duration
    );
    /// The time one evaluation of the checks may take before it counts as
    /// inconclusive. Default: 5 s, or the check interval when that is shorter; at most
    /// the check interval.
    pub fn check_timeout(mut self, value: Duration) -> Self {
        self.policy.check_timeout = value;
        self.check_timeout_set = true;
        self
    }
    policy_setter!(
        /// Consecutive unhealthy evaluations that trigger a rollback. Default: 1.
        failure_threshold: u32
    );
    policy_setter!(
        /// What inconclusive evaluations mean. Default: 3 in a row roll back.
        inconclusive: InconclusivePolicy
    );
    policy_setter!(
        /// Retry and backoff for writes. Default: 200 ms doubling to 5 s, 6 attempts.
        write_backoff: Backoff
    );
    policy_setter!(
        /// How long to wait for a write to become visible in reads (and, where the
        /// backend can tell, applied by the data plane). Default: 10 s.
        settle_timeout: Duration
    );
    policy_setter!(
        /// The overall deadline; past it the rollout rolls back. Default: 4 h; must be
        /// longer than the strategy's total bake time.
        deadline: Duration
    );
    policy_setter!(
        /// How long a rollback keeps retrying its write before giving up loudly.
        /// Default: 5 min.
        rollback_deadline: Duration
    );
    policy_setter!(
        /// How long the fleet may take to make the new version ready. Default: 10 min.
        ready_timeout: Duration
    );
    policy_setter!(
        /// Resume from the weights found on the route instead of refusing a route that
        /// is not at 100% stable. Only a split this plan writes is resumed from (the
        /// step that wrote it runs again, writing nothing); any other split is refused
        /// with [`RolloutError::NotResumable`] unless [`adopt`](Self::adopt) is set.
        /// Default: false.
        resume: bool
    );
    policy_setter!(
        /// Carry on from any split between the two versions, even one this plan never
        /// writes (set by a person or another tool), from the first step at or above it;
        /// implies [`resume`](Self::resume). An explicit operator's choice; meshkit never
        /// adopts a foreign state on its own. Default: false.
        adopt: bool
    );
    policy_setter!(
        /// How long one call to the router (a read or a write) may take before it
        /// counts as a transport failure whose outcome is unknown: a backend that never
        /// answers cannot hold a rollout, a rollback or an abort. Default: 30 s.
        call_timeout: Duration
    );
    policy_setter!(
        /// After promotion, how long to keep the stable version running (and the checks
        /// running on the new one) before the fleet retires it. A failed check or an
        /// abort in this window rolls back to the still-running stable version.
        /// Default: 0 (retire at once). Without a fleet the window still watches.
        rollback_window: Duration
    );
    policy_setter!(
        /// Run one round of the checks just before a shift that raises the new
        /// version's share, unless a healthy verdict is less than one check interval
        /// old. An unhealthy verdict there counts like any other (see
        /// [`failure_threshold`](Self::failure_threshold)) and the shift waits; an
        /// inconclusive one (no traffic yet) does not hold the shift. This is what keeps
        /// a new version that fails its direct probe from receiving any user traffic.
        /// Default: true.
        check_before_shift: bool
    );

    /// Validates and builds. Makes no call to any backend.
    pub fn build(mut self) -> Result<Rollout, ConfigError> {
        if !self.check_timeout_set {
            self.policy.check_timeout = self.policy.check_timeout.min(self.policy.check_interval);
        }
        let router = self.router.ok_or(ConfigError::Missing("router"))?;
        let route = RouteRef::new(self.route.ok_or(ConfigError::Missing("route"))?)?;
        let stable = self
            .stable
            .ok_or(ConfigError::Missing("from (stable version)"))?;
        let candidate = self
            .candidate
            .ok_or(ConfigError::Missing("to (new version)"))?;
        // Validates both names as split targets.
        Weights::split(&stable, &candidate, 0)?;
        let strategy = self.strategy.ok_or(ConfigError::Missing("strategy"))?;
        strategy.validate()?;
        let resolution = router.resolution();
        if let Some(step) = strategy
            .stages()
            .iter()
            .filter_map(Stage::new_percent)
            .find(|p| !p.is_multiple_of(resolution))
        {
            return Err(ConfigError::FinerThanBackend {
                step: step.to_string(),
                resolution: resolution.to_string(),
            });
        }
        if self.checks.is_empty() {
            return Err(ConfigError::NoChecks);
        }
        self.policy.validate()?;
        let planned = strategy
            .stages()
            .iter()
            .try_fold(self.policy.rollback_window, |sum, s| {
                sum.checked_add(s.bake())
            })
            .ok_or(ConfigError::Policy {
                field: "deadline",
                problem: "the plan's bake times do not add up to a duration".into(),
            })?;
        if self.policy.deadline <= planned {
            return Err(ConfigError::DeadlineTooShort {
                deadline: self.policy.deadline,
                planned,
            });
        }
        let id = match self.id {
            Some(id) => check_id(id)?,
            None => format!("mk{:016x}", fastrand::u64(..)),
        };
        let check: Arc<dyn HealthCheck> = match self.checks.len() {
            1 => self
                .checks
                .into_iter()
                .next()
                .ok_or(ConfigError::NoChecks)?,
            _ => Arc::new(health::all(self.checks)),
        };
        let tracer = self
            .tracer
            .unwrap_or_else(|| opentelemetry::global::tracer("meshkit"));
        let store = match self.store {
            None => None,
            Some(store) => Some(Box::new(stored::StoreConfig::new(
                store,
                self.store_key.unwrap_or_else(|| route.to_string()),
                self.holder,
                self.lease_ttl,
                self.wait_for_lease,
                self.max_record_entries,
                self.store_clock,
                self.policy.call_timeout,
            )?)),
        };
        let events = std::sync::OnceLock::new();
        let (control_tx, control) = mpsc::unbounded_channel();
        let cfg = Config {
            id,
            router,
            route,
            stable,
            candidate,
            strategy,
            check,
            fleet: self.fleet,
            policy: self.policy,
            tracer,
            store,
        };
        Ok(Rollout {
            cfg,
            events,
            control,
            control_tx,
        })
    }
}

fn check_id(id: String) -> Result<String, ConfigError> {
    let ok = !id.is_empty()
        && id.len() <= 32
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(id)
    } else {
        Err(ConfigError::BadRolloutId(id))
    }
}
