//! [`EcsNative`]: runs an ECS `LINEAR` or `CANARY` deployment to its end, judging
//! every step with meshkit's checks.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{
    CanaryConfiguration, DeploymentConfiguration, DeploymentLifecycleHook,
    DeploymentLifecycleHookAction, DeploymentLifecycleHookStage, DeploymentLifecycleHookTargetType,
    DeploymentLifecycleHookTimeoutConfiguration, DeploymentStrategy, LinearConfiguration,
    StopServiceDeploymentStopType,
};
use opentelemetry::KeyValue;
use opentelemetry::global::BoxedSpan;
use opentelemetry::trace::{Span, Status, Tracer};
use tokio::sync::{broadcast, mpsc};
use tokio::time::{Instant, sleep_until, timeout};

use super::snapshot::{End, Snapshot};
use crate::aws::Kind;
use crate::error::ConfigError;
use crate::health::{self, CheckContext, HealthCheck, Verdict};
use crate::rollout::{
    Control, Emitter, Judgement, Keeper, Policy, StoreConfig, Tally, finish_stored, keep,
    lease_lost,
};
use crate::rollout::{
    Event, Events, InconclusivePolicy, Outcome, RollbackReason, RolloutError, RolloutHandle,
};
use crate::store::{Holder, NewRollout, RecordState, RolloutStore};
use crate::traffic::Weights;

/// Attempts of a call that changes the deployment (throttled or unanswered).
const CALL_ATTEMPTS: u32 = 4;

fn retryable(kind: Kind) -> bool {
    matches!(kind, Kind::Throttled | Kind::Transport | Kind::Other)
}

/// ECS's traffic-shifting strategy and its parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NativeStrategy {
    /// `LINEAR`: `step_percent` (3-100) more of the traffic at each step, `step_bake`
    /// between steps (whole minutes, up to 24 h).
    Linear {
        /// The share moved per step, 3-100.
        step_percent: f64,
        /// The bake between steps.
        step_bake: Duration,
    },
    /// `CANARY`: `percent` (0.1-100) first, `bake` later all of it.
    Canary {
        /// The canary's share, 0.1-100.
        percent: f64,
        /// The bake before the rest moves.
        bake: Duration,
    },
}

impl NativeStrategy {
    fn validate(&self) -> Result<(), ConfigError> {
        let (field, ok, bake) = match *self {
            Self::Linear {
                step_percent,
                step_bake,
            } => (
                "step_percent",
                (3.0..=100.0).contains(&step_percent),
                step_bake,
            ),
            Self::Canary { percent, bake } => ("percent", (0.1..=100.0).contains(&percent), bake),
        };
        if !ok {
            return Err(ConfigError::Strategy {
                strategy: self.name().to_owned(),
                field,
                problem: "outside what ECS accepts (LINEAR 3-100, CANARY 0.1-100)".into(),
            });
        }
        minutes("the step bake", bake).map(|_| ())
    }

    /// The traffic steps ECS will take, as new-version percentages.
    pub fn steps(&self) -> Vec<f64> {
        match *self {
            Self::Linear { step_percent, .. } => {
                let mut out = Vec::new();
                let mut w: f64 = 0.0;
                while w < 100.0 && step_percent > 0.0 {
                    // In tenths of a percent, as ECS reports them: 3 × 33.3 is 99.9.
                    w = (((w + step_percent) * 10.0).round() / 10.0).min(100.0);
                    out.push(w);
                }
                out
            }
            Self::Canary { percent, .. } => vec![percent, 100.0],
        }
    }

    /// The plan as the store records it: one line per traffic step.
    fn plan(&self) -> Vec<String> {
        let bake = match self {
            Self::Linear { step_bake, .. } => *step_bake,
            Self::Canary { bake, .. } => *bake,
        };
        self.steps()
            .iter()
            .map(|w| {
                format!(
                    "ECS shifts to {w}% after meshkit's answer, bakes {}s",
                    bake.as_secs()
                )
            })
            .collect()
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Linear { .. } => "ecs-linear",
            Self::Canary { .. } => "ecs-canary",
        }
    }
}

/// A rollout id for the store from the cluster's and the service's names: `ecs-`,
/// then up to 24 characters of `cluster-service` that ids allow.
fn rollout_id(cluster: &str, service: &str) -> String {
    let last = |s: &str| s.rsplit('/').next().unwrap_or(s).to_owned();
    let name: String = format!("{}-{}", last(cluster), last(service))
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(24)
        .collect();
    format!("ecs-{name}")
}

/// A duration as ECS's whole minutes (0 to 24 h).
fn minutes(what: &str, d: Duration) -> Result<i32, ConfigError> {
    let secs = d.as_secs();
    if !secs.is_multiple_of(60) || secs > 24 * 3600 {
        return Err(ConfigError::Policy {
            field: "ecs-native",
            problem: format!("{what} must be whole minutes up to 24 h (ECS's unit), not {d:?}"),
        });
    }
    i32::try_from(secs / 60).map_err(|_| ConfigError::Policy {
        field: "ecs-native",
        problem: format!("{what} is too long"),
    })
}

/// An ECS native deployment judged by meshkit. Build with [`EcsNative::builder`].
///
/// `run` starts the deployment with `UpdateService` (the new task definition and a
/// `deploymentConfiguration` with the strategy and `PAUSE` hooks before every traffic
/// shift and after the last one, timing out to `ROLLBACK` so a judge that crashed
/// rolls back rather than promotes), or finds the service's deployment in progress
/// and carries on (after a restart of the judge). It then watches the deployment:
///
/// - at each pause (a hook `AWAITING_ACTION` with a new `hookId`) it runs a round of
///   checks and answers `CONTINUE` when they pass, `ROLLBACK` when the policy says to
///   roll back, and holds (runs another round each check interval) while they are
///   inconclusive; never twice for one hook;
/// - between pauses, a failing check calls `StopServiceDeployment(ROLLBACK)`;
/// - the handle: pause = do not answer the next hook (ECS's timeout still applies),
///   promote = continue every remaining hook, abort = roll back now;
/// - a hook that expired before an answer is said so in the outcome.
///
/// Ends `Promoted` when ECS reports `SUCCESSFUL`, `RolledBack` on
/// `ROLLBACK_SUCCESSFUL`, and an error naming the split for `ROLLBACK_FAILED` or
/// `STOPPED`.
pub struct EcsNative {
    cfg: NativeConfig,
    events: std::sync::OnceLock<broadcast::Sender<(Duration, Event)>>,
    control: mpsc::UnboundedReceiver<Control>,
    control_tx: mpsc::UnboundedSender<Control>,
}

struct NativeConfig {
    client: Client,
    cluster: String,
    service: String,
    task_definition: Option<String>,
    strategy: NativeStrategy,
    bake: Duration,
    hook_timeout: Duration,
    check: Arc<dyn HealthCheck>,
    policy: Policy,
    stable: String,
    candidate: String,
    /// All traffic on the stable revision: the split shown when ECS reports none.
    all_stable: Weights,
    poll: Duration,
    store: Option<StoreConfig>,
}

impl std::fmt::Debug for EcsNative {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcsNative")
            .field("cluster", &self.cfg.cluster)
            .field("service", &self.cfg.service)
            .field("task_definition", &self.cfg.task_definition)
            .field("strategy", &self.cfg.strategy)
            .finish_non_exhaustive()
    }
}

/// Builds an [`EcsNative`]. Setters take and return the builder.
#[derive(Default)]
pub struct EcsNativeBuilder {
    client: Option<Client>,
    cluster: Option<String>,
    service: Option<String>,
    task_definition: Option<String>,
    strategy: Option<NativeStrategy>,
    bake: Duration,
    hook_timeout: Option<Duration>,
    checks: Vec<Arc<dyn HealthCheck>>,
    policy: Policy,
    names: Option<(String, String)>,
    poll: Option<Duration>,
    store: Option<Arc<dyn RolloutStore>>,
    holder: Option<Holder>,
    lease_ttl: Option<Duration>,
    wait_for_lease: Option<Duration>,
    store_key: Option<String>,
    store_clock: Option<crate::store::Clock>,
}

impl EcsNative {
    /// Starts a builder.
    pub fn builder() -> EcsNativeBuilder {
        EcsNativeBuilder::default()
    }

    /// A receiver for this deployment's events. Take it before calling `run`.
    pub fn events(&self) -> Events {
        Events {
            rx: self
                .events
                .get_or_init(|| broadcast::channel(1024).0)
                .subscribe(),
        }
    }

    /// A handle to pause, resume, promote or abort while it runs.
    pub fn handle(&self) -> RolloutHandle {
        RolloutHandle {
            tx: self.control_tx.clone(),
        }
    }
}

impl EcsNativeBuilder {
    /// The ECS client. Required.
    pub fn client(mut self, client: Client) -> Self {
        self.client = Some(client);
        self
    }
    /// The cluster (name or ARN). Required.
    pub fn cluster(mut self, cluster: impl Into<String>) -> Self {
        self.cluster = Some(cluster.into());
        self
    }
    /// The service (name or ARN). Required.
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }
    /// The new task definition (`family:revision` or ARN). Required to start a
    /// deployment; without it `run` only carries on with the one in progress.
    pub fn task_definition(mut self, td: impl Into<String>) -> Self {
        self.task_definition = Some(td.into());
        self
    }
    /// ECS's strategy. Required.
    pub fn strategy(mut self, s: NativeStrategy) -> Self {
        self.strategy = Some(s);
        self
    }
    /// ECS's bake after the last shift (`bakeTimeInMinutes`). Default 0.
    pub fn bake(mut self, d: Duration) -> Self {
        self.bake = d;
        self
    }
    /// How long ECS waits at a pause for meshkit's answer before rolling back
    /// (`timeoutInMinutes`). Default 30 min; at least 1 min.
    pub fn hook_timeout(mut self, d: Duration) -> Self {
        self.hook_timeout = Some(d);
        self
    }
    /// Adds a health check; all must pass. At least one is required.
    pub fn check(mut self, check: impl HealthCheck + 'static) -> Self {
        self.checks.push(Arc::new(check));
        self
    }
    /// Names for the two revisions in weights and events. Default `current` and the
    /// task definition.
    pub fn names(mut self, stable: impl Into<String>, new: impl Into<String>) -> Self {
        self.names = Some((stable.into(), new.into()));
        self
    }
    /// How often the deployment is read. Default: the check interval, at most 5 s.
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll = Some(d);
        self
    }
    /// Judges under a rollout store (see [`crate::store`]): the service's lease (one
    /// judge per service; a second is refused at once), fenced answers, the record of
    /// every event, and gates (pause, resume, promote, rollback) from any machine.
    pub fn store(mut self, store: Arc<dyn RolloutStore>) -> Self {
        self.store = Some(store);
        self
    }
    /// Who judges, in the lease and the record. Default `user@host:pid`.
    pub fn holder(mut self, holder: Holder) -> Self {
        self.holder = Some(holder);
        self
    }
    /// The lease time (see [`crate::RolloutBuilder::lease_ttl`]). Default 60 s.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = Some(ttl);
        self
    }
    /// Waits up to this long for the service's lease instead of failing at once.
    pub fn wait_for_lease(mut self, wait: Duration) -> Self {
        self.wait_for_lease = Some(wait);
        self
    }
    /// The clock of timeline lines (give the store's when you gave it one). Default:
    /// the system clock.
    pub fn store_clock(mut self, clock: crate::store::Clock) -> Self {
        self.store_clock = Some(clock);
        self
    }
    /// The service's key in the store. Default `ecs:CLUSTER/SERVICE`.
    pub fn store_key(mut self, key: impl Into<String>) -> Self {
        self.store_key = Some(key.into());
        self
    }
    /// How often the checks run. Default 10 s.
    pub fn check_interval(mut self, d: Duration) -> Self {
        self.policy.check_interval = d;
        self
    }
    /// Consecutive unhealthy verdicts that roll back. Default 1.
    pub fn failure_threshold(mut self, n: u32) -> Self {
        self.policy.failure_threshold = n;
        self
    }
    /// What inconclusive verdicts mean. Default: 3 in a row roll back.
    pub fn inconclusive(mut self, p: InconclusivePolicy) -> Self {
        self.policy.inconclusive = p;
        self
    }
    /// The overall deadline; past it the deployment is rolled back. Default 4 h.
    pub fn deadline(mut self, d: Duration) -> Self {
        self.policy.deadline = d;
        self
    }
    /// How long one ECS call may take. Default 30 s.
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.policy.call_timeout = d;
        self
    }

    /// Validates and builds. Makes no call.
    pub fn build(mut self) -> Result<EcsNative, ConfigError> {
        self.policy.check_timeout = self.policy.check_timeout.min(self.policy.check_interval);
        self.policy.validate()?;
        let client = self.client.ok_or(ConfigError::Missing("client"))?;
        let cluster = self.cluster.ok_or(ConfigError::Missing("cluster"))?;
        let service = self.service.ok_or(ConfigError::Missing("service"))?;
        let strategy = self.strategy.ok_or(ConfigError::Missing("strategy"))?;
        strategy.validate()?;
        minutes("the bake", self.bake)?;
        let hook_timeout = self.hook_timeout.unwrap_or(Duration::from_secs(1800));
        if minutes("the hook timeout", hook_timeout)? < 1 {
            return Err(ConfigError::Policy {
                field: "hook_timeout",
                problem: "at least one minute".into(),
            });
        }
        let check: Arc<dyn HealthCheck> = match self.checks.len() {
            0 => return Err(ConfigError::NoChecks),
            1 => self.checks.remove(0),
            _ => Arc::new(health::all(self.checks)),
        };
        let (stable, candidate) = self.names.unwrap_or_else(|| {
            (
                "current".to_owned(),
                self.task_definition
                    .clone()
                    .unwrap_or_else(|| "new".to_owned()),
            )
        });
        let all_stable = Weights::split(&stable, &candidate, 0)?;
        let poll = self
            .poll
            .unwrap_or_else(|| self.policy.check_interval.min(Duration::from_secs(5)));
        let store = match self.store {
            None => None,
            Some(store) => Some(StoreConfig::new(
                store,
                self.store_key
                    .unwrap_or_else(|| format!("ecs:{cluster}/{service}")),
                self.holder,
                self.lease_ttl,
                self.wait_for_lease,
                None,
                self.store_clock,
                self.policy.call_timeout,
            )?),
        };
        let (control_tx, control) = mpsc::unbounded_channel();
        Ok(EcsNative {
            cfg: NativeConfig {
                client,
                cluster,
                service,
                task_definition: self.task_definition,
                strategy,
                bake: self.bake,
                hook_timeout,
                check,
                policy: self.policy,
                stable,
                candidate,
                all_stable,
                poll,
                store,
            },
            events: std::sync::OnceLock::new(),
            control,
            control_tx,
        })
    }
}

/// What the judge has asked of ECS, once it asked to roll back.
struct Judge {
    /// The deployment's span: hook answers and the rollback are its events.
    span: BoxedSpan,
    cfg: NativeConfig,
    emit: Emitter,
    control: mpsc::UnboundedReceiver<Control>,
    control_open: bool,
    arn: String,
    tally: Tally,
    paused: bool,
    promote: bool,
    /// Why meshkit asked ECS to roll back (once asked, nothing else is asked).
    rolling_back: Option<RollbackReason>,
    answered: HashSet<String>,
    /// Hooks seen awaiting and not answered by meshkit: one that times out is named.
    unanswered: HashSet<String>,
    held_said: HashSet<String>,
    last: Option<(String, u32)>,
    started: Instant,
    /// With a store: the keeper, and what it says when the lease is lost.
    keeper: Option<Arc<Keeper>>,
    lost: Option<tokio::sync::watch::Receiver<Option<String>>>,
    /// The split last read.
    snap_weights: Option<Weights>,
    /// The largest share the new revision was given.
    max_percent: f64,
}

impl EcsNative {
    /// Runs the deployment to its end; see the type's docs.
    pub async fn run(self) -> Result<Outcome, RolloutError> {
        let Self {
            cfg,
            events,
            control,
            control_tx,
        } = self;
        let started = Instant::now();
        let mut emit = Emitter::new(events.into_inner(), started);
        let mut kept = None;
        let mut resumed = None;
        if let Some(sc) = &cfg.store {
            let new = NewRollout {
                id: rollout_id(&cfg.cluster, &cfg.service),
                route: sc.key.clone(),
                stable: cfg.stable.clone(),
                candidate: cfg.candidate.clone(),
                strategy: cfg.strategy.name().to_owned(),
                plan: cfg.strategy.plan(),
                started_by: sc.holder.clone(),
            };
            let handle = RolloutHandle {
                tx: control_tx.clone(),
            };
            let (keeper, tend, took_over) =
                keep(sc, new, handle, cfg.policy.check_interval).await?;
            emit.record_to(keeper.clone());
            kept = Some((keeper, tend));
            resumed = took_over;
        }
        drop(control_tx);
        let arn = match start(&cfg, &emit, resumed).await {
            Ok(Start::Deployment(arn)) => arn,
            Ok(Start::AlreadyOn(weights)) => {
                let outcome = Outcome::Promoted {
                    weights,
                    manual: false,
                    elapsed: started.elapsed(),
                };
                emit.send(Event::Done {
                    outcome: outcome.clone(),
                });
                if let (Some(sc), Some((keeper, tend))) = (&cfg.store, kept) {
                    let end = (RecordState::Promoted, outcome.to_string());
                    finish_stored(sc, &keeper, tend, end).await;
                }
                return Ok(outcome);
            }
            Err(e) => {
                emit.send(Event::Stopped {
                    error: e.to_string(),
                    in_force: None,
                });
                if let (Some(sc), Some((keeper, tend))) = (&cfg.store, kept) {
                    finish_stored(sc, &keeper, tend, (RecordState::Refused, e.to_string())).await;
                }
                return Err(e);
            }
        };
        let mut span = opentelemetry::global::tracer("meshkit").start("meshkit.ecs_native");
        span.set_attributes([
            KeyValue::new("meshkit.cluster", cfg.cluster.clone()),
            KeyValue::new("meshkit.service", cfg.service.clone()),
            KeyValue::new("meshkit.deployment", arn.clone()),
            KeyValue::new("meshkit.strategy", cfg.strategy.name()),
        ]);
        let mut judge = Judge {
            span,
            cfg,
            emit,
            control,
            control_open: true,
            arn,
            tally: Tally::default(),
            paused: false,
            promote: false,
            rolling_back: None,
            answered: HashSet::new(),
            unanswered: HashSet::new(),
            held_said: HashSet::new(),
            last: None,
            started,
            lost: kept.as_ref().map(|(k, _)| k.lost()),
            keeper: kept.as_ref().map(|(k, _)| k.clone()),
            snap_weights: None,
            max_percent: 0.0,
        };
        let result = judge.watch().await;
        let outcome = match &result {
            Ok(o) if o.is_promoted() => "promoted",
            Ok(_) => "rolled_back",
            Err(_) => "stopped",
        };
        judge
            .span
            .set_attribute(KeyValue::new("meshkit.outcome", outcome));
        match &result {
            Ok(o) if !o.is_promoted() => judge.span.set_status(Status::error(o.to_string())),
            Err(e) => judge.span.set_status(Status::error(e.to_string())),
            Ok(_) => {}
        }
        judge.span.end();
        match &result {
            Ok(outcome) => judge.emit.send(Event::Done {
                outcome: outcome.clone(),
            }),
            Err(e) => judge.emit.send(Event::Stopped {
                error: e.to_string(),
                in_force: e.in_force().cloned(),
            }),
        }
        if let (Some(sc), Some((keeper, tend))) = (&judge.cfg.store, kept) {
            let end = match &result {
                Ok(o) if o.is_promoted() => (RecordState::Promoted, o.to_string()),
                Ok(o) => (RecordState::RolledBack, o.to_string()),
                Err(e) => (RecordState::Stopped, e.to_string()),
            };
            finish_stored(sc, &keeper, tend, end).await;
        }
        result
    }
}

/// The error of a failed ECS call, `what` naming it (`"UpdateService failed, nothing
/// started"`), for `map_err`.
fn call_failed<'a, E, R>(
    cfg: &'a NativeConfig,
    what: &'a str,
) -> impl FnOnce(aws_smithy_runtime_api::client::result::SdkError<E, R>) -> RolloutError + 'a
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    R: crate::aws::HttpStatus + std::fmt::Debug,
{
    move |e| deployment_error(cfg, format!("{what}: {}", crate::aws::describe(&e)), None)
}

fn deployment_error(cfg: &NativeConfig, detail: String, in_force: Option<Weights>) -> RolloutError {
    RolloutError::Deployment {
        service: format!("{}/{}", cfg.cluster, cfg.service),
        detail,
        in_force,
    }
}

/// The service's deployment in progress, if any.
async fn in_progress(cfg: &NativeConfig) -> Result<Option<String>, RolloutError> {
    let call = cfg
        .client
        .list_service_deployments()
        .cluster(&cfg.cluster)
        .service(&cfg.service)
        .status(aws_sdk_ecs::types::ServiceDeploymentStatus::InProgress)
        .status(aws_sdk_ecs::types::ServiceDeploymentStatus::Pending)
        .send();
    let out = bounded(cfg, call)
        .await?
        .map_err(call_failed(cfg, "ListServiceDeployments failed"))?;
    Ok(out
        .service_deployments()
        .first()
        .and_then(|d| d.service_deployment_arn())
        .map(str::to_owned))
}

async fn bounded<T>(
    cfg: &NativeConfig,
    f: impl std::future::Future<Output = T>,
) -> Result<T, RolloutError> {
    timeout(cfg.policy.call_timeout, f).await.map_err(|_| {
        deployment_error(
            cfg,
            format!("ECS gave no answer within {:?}", cfg.policy.call_timeout),
            None,
        )
    })
}

/// Where a run begins.
enum Start {
    /// Judge this deployment (started, in progress, or, taking over a record, the
    /// service's last one, which may have ended meanwhile).
    Deployment(String),
    /// The service already runs the new task definition and nothing is in progress.
    AlreadyOn(Weights),
}

/// The service's newest deployment created since `since`, whatever its status.
async fn newest(
    cfg: &NativeConfig,
    since: std::time::SystemTime,
) -> Result<Option<String>, RolloutError> {
    let call = cfg
        .client
        .list_service_deployments()
        .cluster(&cfg.cluster)
        .service(&cfg.service)
        .send();
    let out = bounded(cfg, call)
        .await?
        .map_err(call_failed(cfg, "ListServiceDeployments failed"))?;
    // Five seconds of slack for clocks: an older deployment is another rollout's.
    let since = since - Duration::from_secs(5);
    Ok(out
        .service_deployments()
        .first()
        .filter(|d| {
            d.created_at()
                .and_then(|t| std::time::SystemTime::try_from(*t).ok())
                .is_some_and(|t| t >= since)
        })
        .and_then(|d| d.service_deployment_arn())
        .map(str::to_owned))
}

/// Whether the service already runs `td` (`family:revision` or ARN).
async fn already_on(cfg: &NativeConfig, td: &str) -> Result<bool, RolloutError> {
    let call = cfg
        .client
        .describe_services()
        .cluster(&cfg.cluster)
        .services(&cfg.service)
        .send();
    let out = bounded(cfg, call)
        .await?
        .map_err(call_failed(cfg, "DescribeServices failed, nothing started"))?;
    if let Some(f) = out.failures().first() {
        return Err(deployment_error(
            cfg,
            format!(
                "ECS does not know the service ({}), nothing started",
                f.reason().unwrap_or("no reason given")
            ),
            None,
        ));
    }
    let running = out
        .services()
        .first()
        .and_then(|s| s.task_definition())
        .unwrap_or_default();
    Ok(running == td || running.ends_with(&format!("/{td}")))
}

/// Carries on with the deployment in progress, or (taking over a record) reads the
/// service's last one, or starts one.
async fn start(
    cfg: &NativeConfig,
    emit: &Emitter,
    resumed: Option<std::time::SystemTime>,
) -> Result<Start, RolloutError> {
    if let Some(arn) = in_progress(cfg).await? {
        emit.send(Event::DeploymentFound { arn: arn.clone() });
        return Ok(Start::Deployment(arn));
    }
    // The record this run took over had a deployment: it ended while no judge ran.
    // Report its end; never start another one behind the record's back.
    if let Some(since) = resumed
        && let Some(arn) = newest(cfg, since).await?
    {
        emit.send(Event::DeploymentFound { arn: arn.clone() });
        return Ok(Start::Deployment(arn));
    }
    let Some(td) = &cfg.task_definition else {
        return Err(deployment_error(
            cfg,
            "no deployment is in progress and no new task definition was given".into(),
            None,
        ));
    };
    if already_on(cfg, td).await? {
        let weights = Weights::relative([(cfg.stable.as_str(), 0), (cfg.candidate.as_str(), 1)])
            .unwrap_or_else(|_| cfg.all_stable.clone());
        emit.send(Event::AlreadyInForce {
            weights: weights.clone(),
        });
        return Ok(Start::AlreadyOn(weights));
    }
    let to_minutes = |d: Duration| i32::try_from(d.as_secs() / 60).unwrap_or(i32::MAX);
    let mut config = DeploymentConfiguration::builder()
        .bake_time_in_minutes(to_minutes(cfg.bake))
        .lifecycle_hooks(
            DeploymentLifecycleHook::builder()
                .target_type(DeploymentLifecycleHookTargetType::Pause)
                .lifecycle_stages(DeploymentLifecycleHookStage::PreProductionTrafficShift)
                .lifecycle_stages(DeploymentLifecycleHookStage::PostProductionTrafficShift)
                .timeout_configuration(
                    DeploymentLifecycleHookTimeoutConfiguration::builder()
                        .timeout_in_minutes(to_minutes(cfg.hook_timeout))
                        .action(DeploymentLifecycleHookAction::Rollback)
                        .build(),
                )
                .build(),
        );
    config = match cfg.strategy {
        NativeStrategy::Linear {
            step_percent,
            step_bake,
        } => config
            .strategy(DeploymentStrategy::Linear)
            .linear_configuration(
                LinearConfiguration::builder()
                    .step_percent(step_percent)
                    .step_bake_time_in_minutes(to_minutes(step_bake))
                    .build(),
            ),
        NativeStrategy::Canary { percent, bake } => config
            .strategy(DeploymentStrategy::Canary)
            .canary_configuration(
                CanaryConfiguration::builder()
                    .canary_percent(percent)
                    .canary_bake_time_in_minutes(to_minutes(bake))
                    .build(),
            ),
    };
    let call = cfg
        .client
        .update_service()
        .cluster(&cfg.cluster)
        .service(&cfg.service)
        .task_definition(td)
        .deployment_configuration(config.build())
        .send();
    bounded(cfg, call)
        .await?
        .map_err(call_failed(cfg, "UpdateService failed, nothing started"))?;
    let call = cfg
        .client
        .describe_services()
        .cluster(&cfg.cluster)
        .services(&cfg.service)
        .send();
    let described = bounded(cfg, call).await?.map_err(call_failed(
        cfg,
        "DescribeServices failed after UpdateService",
    ))?;
    let arn = match described
        .services()
        .first()
        .and_then(|s| s.current_service_deployment())
    {
        Some(arn) => Some(arn.to_owned()),
        None => in_progress(cfg).await?,
    };
    let arn = arn.ok_or_else(|| {
        deployment_error(
            cfg,
            "UpdateService started no deployment ECS reports".into(),
            None,
        )
    })?;
    emit.send(Event::DeploymentStarted { arn: arn.clone() });
    Ok(Start::Deployment(arn))
}

impl Judge {
    fn weights(&self, new_percent: f64) -> Weights {
        let tenths = (new_percent * 10.0).round().clamp(0.0, 1000.0) as u32;
        Weights::relative([
            (self.cfg.stable.as_str(), 1000 - tenths),
            (self.cfg.candidate.as_str(), tenths),
        ])
        .unwrap_or_else(|_| self.cfg.all_stable.clone())
    }

    async fn describe(&self) -> Result<Snapshot, String> {
        let call = self
            .cfg
            .client
            .describe_service_deployments()
            .service_deployment_arns(&self.arn)
            .send();
        match timeout(self.cfg.policy.call_timeout, call).await {
            Err(_) => Err(format!(
                "no answer within {:?}",
                self.cfg.policy.call_timeout
            )),
            Ok(Err(e)) => Err(crate::aws::describe(&e)),
            Ok(Ok(out)) => out
                .service_deployments()
                .first()
                .map(Snapshot::from_sdk)
                .ok_or_else(|| format!("ECS does not know deployment {}", self.arn)),
        }
    }

    async fn answer(
        &mut self,
        hook: &str,
        action: DeploymentLifecycleHookAction,
    ) -> Result<(), String> {
        // Never twice for one hook, whatever happens to the call.
        if self.answered.contains(hook) {
            return Ok(());
        }
        self.may_act().await?;
        self.answered.insert(hook.to_owned());
        self.unanswered.remove(hook);
        // Throttling and lost answers are tried again: ECS refuses a second answer to
        // a hook that took the first (it no longer awaits), which is then success.
        let mut r = Err(String::new());
        for attempt in 1..=CALL_ATTEMPTS {
            let call = self
                .cfg
                .client
                .continue_service_deployment()
                .service_deployment_arn(&self.arn)
                .hook_id(hook)
                .action(action.clone())
                .send();
            let (done, result) = match timeout(self.cfg.policy.call_timeout, call).await {
                Ok(Ok(_)) => (true, Ok(())),
                Ok(Err(e)) if attempt > 1 && crate::aws::classify(&e) == Kind::BadRequest => {
                    (true, Ok(()))
                }
                Ok(Err(e)) => (
                    !retryable(crate::aws::classify(&e)),
                    Err(crate::aws::describe(&e)),
                ),
                Err(_) => (
                    false,
                    Err(format!(
                        "no answer within {:?}",
                        self.cfg.policy.call_timeout
                    )),
                ),
            };
            r = result;
            if done || attempt == CALL_ATTEMPTS {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
        self.span.add_event(
            "hook answered",
            vec![
                KeyValue::new("hook", hook.to_owned()),
                KeyValue::new("action", action.as_str().to_owned()),
                KeyValue::new("ok", r.is_ok()),
            ],
        );
        self.emit.send(Event::HookAnswered {
            hook_id: hook.to_owned(),
            action: action.as_str().to_owned(),
            error: r.clone().err(),
        });
        r
    }

    async fn stop(&mut self) -> Result<(), String> {
        self.may_act().await?;
        let mut last = String::new();
        for attempt in 1..=CALL_ATTEMPTS {
            let call = self
                .cfg
                .client
                .stop_service_deployment()
                .service_deployment_arn(&self.arn)
                .stop_type(StopServiceDeploymentStopType::Rollback)
                .send();
            match timeout(self.cfg.policy.call_timeout, call).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) if !retryable(crate::aws::classify(&e)) => {
                    return Err(crate::aws::describe(&e));
                }
                Ok(Err(e)) => last = crate::aws::describe(&e),
                Err(_) => last = format!("no answer within {:?}", self.cfg.policy.call_timeout),
            }
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
        Err(last)
    }

    /// With a store: confirms the lease before an action on the deployment (a fenced
    /// store write); `Err` means this process must not act.
    async fn may_act(&self) -> Result<(), String> {
        match (&self.keeper, &self.snap_weights) {
            (Some(keeper), Some(w)) => keeper.fence(w).await,
            (Some(keeper), None) => keeper.fence(&self.cfg.all_stable).await,
            (None, _) => Ok(()),
        }
    }

    /// Asks ECS to roll back: the awaiting hook's answer, or a stop between pauses.
    async fn roll_back(&mut self, reason: RollbackReason, snap: &Snapshot) {
        if self.rolling_back.is_some() {
            return;
        }
        self.emit.send(Event::RollbackStarted {
            reason: reason.clone(),
        });
        self.span.add_event(
            "rollback",
            vec![KeyValue::new("reason", reason.to_string())],
        );
        self.rolling_back = Some(reason);
        let hook = snap
            .awaiting()
            .filter(|h| !self.answered.contains(&h.id))
            .map(|h| h.id.clone());
        let Some(id) = hook else {
            // Between pauses. A refusal (the deployment already ended: a conflict) is
            // read at the next poll.
            if let Err(e) = self.stop().await {
                tracing::warn!(deployment = %self.arn, error = %e, "StopServiceDeployment failed");
            }
            return;
        };
        if let Err(e) = self
            .answer(&id, DeploymentLifecycleHookAction::Rollback)
            .await
        {
            // The hook may have moved on meanwhile: stop the deployment instead.
            tracing::warn!(deployment = %self.arn, error = %e, "answering ROLLBACK failed; trying StopServiceDeployment");
            if let Err(e) = self.stop().await {
                tracing::warn!(deployment = %self.arn, error = %e, "StopServiceDeployment failed");
            }
        }
    }

    fn outcome(&self, end: End, snap: &Snapshot) -> Result<Outcome, Box<RolloutError>> {
        let weights = self.weights(snap.new_percent);
        let elapsed = self.started.elapsed();
        match end {
            End::Promoted => Ok(Outcome::Promoted {
                weights,
                manual: self.promote,
                elapsed,
            }),
            End::RolledBack => {
                let timed_out = snap
                    .hook
                    .as_ref()
                    .filter(|h| h.status == "TIMED_OUT" && !self.answered.contains(&h.id));
                let reason = match (&self.rolling_back, timed_out) {
                    (Some(r), _) => r.clone(),
                    (None, Some(h)) => RollbackReason::Native(format!(
                        "the lifecycle hook {} expired before meshkit answered it{}",
                        h.id,
                        if self.paused {
                            " (the rollout was paused)"
                        } else if !self.unanswered.contains(&h.id) {
                            " (no judge was running when it expired)"
                        } else {
                            ""
                        }
                    )),
                    (None, None) => RollbackReason::Native(
                        snap.reason
                            .clone()
                            .unwrap_or_else(|| "ECS rolled the deployment back".into()),
                    ),
                };
                Ok(Outcome::RolledBack {
                    reason,
                    stage: self.reached(),
                    weights,
                    elapsed,
                })
            }
            End::Failed => Err(Box::new(deployment_error(
                &self.cfg,
                format!(
                    "the deployment ended {}{}",
                    snap.status,
                    snap.reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ),
                Some(weights),
            ))),
        }
    }

    async fn watch(&mut self) -> Result<Outcome, RolloutError> {
        let deadline = self.started + self.cfg.policy.deadline;
        let interval = self.cfg.policy.check_interval;
        let mut next_check = Instant::now() + interval;
        let mut next_poll = Instant::now();
        let mut failed_reads = 0u32;
        let mut snap: Option<Snapshot> = None;
        // A hook waiting for a passing round of checks.
        let mut pending_hook: Option<String> = None;
        loop {
            tokio::select! {
                biased;
                c = self.control.recv(), if self.control_open => {
                    match c {
                        Some(Control::Abort) => {
                            if let Some(s) = snap.clone() {
                                self.roll_back(RollbackReason::Aborted, &s).await;
                            } else {
                                self.rolling_back.get_or_insert(RollbackReason::Aborted);
                                let _ = self.stop().await;
                            }
                        }
                        Some(Control::Promote) => {
                            self.promote = true;
                            self.emit.send(Event::PromoteRequested);
                            next_poll = Instant::now();
                        }
                        Some(Control::Pause) if !self.paused => {
                            self.paused = true;
                            self.emit.send(Event::Paused);
                        }
                        Some(Control::Resume) if self.paused => {
                            self.paused = false;
                            self.emit.send(Event::Resumed);
                            next_poll = Instant::now();
                        }
                        Some(_) => {}
                        None => self.control_open = false,
                    }
                }
                detail = lease_lost(&mut self.lost) => {
                    return Err(RolloutError::LeaseLost {
                        route: self.cfg.store.as_ref().map(|s| s.key.clone()).unwrap_or_default(),
                        detail: format!("{detail}; this judge stopped acting on {}", self.arn),
                        in_force: self.snap_weights.clone().unwrap_or_else(|| self.cfg.all_stable.clone()),
                    });
                }
                _ = sleep_until(deadline), if self.rolling_back.is_none() => {
                    let s = snap.clone().unwrap_or(Snapshot {
                        status: String::new(), stage: String::new(), new_percent: 0.0, hook: None, reason: None,
                    });
                    self.roll_back(RollbackReason::DeadlineExceeded, &s).await;
                }
                _ = sleep_until(next_poll) => {
                    next_poll = Instant::now() + self.cfg.poll;
                    let s = match self.describe().await {
                        Ok(s) => { failed_reads = 0; s }
                        Err(e) => {
                            failed_reads += 1;
                            tracing::warn!(deployment = %self.arn, error = %e, "reading the deployment failed");
                            if failed_reads >= 10 {
                                return Err(deployment_error(&self.cfg, format!(
                                    "cannot read deployment {} (10 tries): {e}; ECS carries on without meshkit, and its hooks roll back when they time out", self.arn), None));
                            }
                            continue;
                        }
                    };
                    self.progress(&s);
                    self.snap_weights = Some(self.weights(s.new_percent));
                    self.max_percent = self.max_percent.max(s.new_percent);
                    if let Some(end) = s.end() {
                        return self.outcome(end, &s).map_err(|e| *e);
                    }
                    if let Some(h) = s.awaiting().filter(|h| !self.answered.contains(&h.id)) {
                        let id = h.id.clone();
                        if self.unanswered.insert(id.clone()) {
                            self.emit.send(Event::HookAwaiting {
                                hook_id: id.clone(),
                                stage: s.stage.clone(),
                                expires_at: h.expires_at,
                            });
                        }
                        if self.rolling_back.is_none() {
                            if self.promote {
                                let _ = self.answer(&id, DeploymentLifecycleHookAction::Continue).await;
                            } else if self.paused {
                                if self.held_said.insert(id.clone()) {
                                    tracing::info!(hook = %id, "paused: the hook is held; ECS rolls back if it expires first");
                                }
                            } else if pending_hook.as_deref() != Some(id.as_str()) {
                                // A fresh round of checks decides this step.
                                pending_hook = Some(id);
                                next_check = Instant::now();
                            }
                        }
                    }
                    snap = Some(s);
                }
                _ = sleep_until(next_check) => {
                    next_check = Instant::now() + interval;
                    let Some(s) = snap.clone() else { continue };
                    if self.rolling_back.is_some() { continue; }
                    let verdict = self.evaluate(&s).await;
                    let judgement = self.tally.record(&verdict, &self.cfg.policy, Instant::now());
                    self.emit.send(Event::Verdict {
                        stage: self.step_index(&s),
                        verdict: verdict.clone(),
                        failures: self.tally.failures,
                        inconclusive: self.tally.inconclusive,
                    });
                    match judgement {
                        Judgement::RollBack(reason) => self.roll_back(reason, &s).await,
                        Judgement::Continue { passes: true } if !self.paused => {
                            if let Some(id) = pending_hook.take() {
                                let _ = self.answer(&id, DeploymentLifecycleHookAction::Continue).await;
                                next_poll = Instant::now();
                            }
                        }
                        Judgement::Continue { .. } => {}
                    }
                }
            }
        }
    }

    /// The last traffic step reached before the end (its index among ECS's steps),
    /// `None` when no traffic moved.
    fn reached(&self) -> Option<usize> {
        let steps = self.cfg.strategy.steps();
        steps.iter().rposition(|s| *s <= self.max_percent + 1e-9)
    }

    /// The index of the traffic step the deployment is at (for verdict events).
    fn step_index(&self, s: &Snapshot) -> usize {
        self.cfg
            .strategy
            .steps()
            .iter()
            .position(|w| *w > s.new_percent + 1e-9)
            .unwrap_or(self.cfg.strategy.steps().len())
    }

    /// Emits the stage and split when either changed.
    fn progress(&mut self, s: &Snapshot) {
        let tenths = (s.new_percent * 10.0).round() as u32;
        let now = (s.stage.clone(), tenths);
        if self.last.as_ref() != Some(&now) {
            self.emit.send(Event::DeploymentProgress {
                status: s.status.clone(),
                stage: s.stage.clone(),
                weights: self.weights(s.new_percent),
            });
            self.last = Some(now);
        }
    }

    async fn evaluate(&self, s: &Snapshot) -> Verdict {
        let ctx = CheckContext {
            stage: self.step_index(s),
            stable: self.cfg.stable.clone(),
            candidate: self.cfg.candidate.clone(),
            weights: self.weights(s.new_percent),
            stage_elapsed: self.started.elapsed(),
        };
        let limit = self.cfg.policy.check_timeout;
        use futures_util::FutureExt as _;
        let check = std::panic::AssertUnwindSafe(self.cfg.check.check(&ctx)).catch_unwind();
        match timeout(limit, check).await {
            Ok(Ok(v)) => v,
            Ok(Err(_)) => Verdict::inconclusive("a check panicked"),
            Err(_) => Verdict::inconclusive(format!("checks did not answer within {limit:?}")),
        }
    }
}
