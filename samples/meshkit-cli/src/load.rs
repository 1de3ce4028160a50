//! Reading a spec or a pipeline `deploy.json`, and validating it with no backend call.

use meshkit::health::HealthCheck;
use meshkit::traffic::TrafficRouter;
use meshkit::{Rollout, RolloutBuilder};

use crate::spec::{self, Format, Spec, SpecError};
use crate::{Cli, aws_env, build, deploy};

/// A spec ready to use, and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The spec (a `deploy.json` is mapped to one).
    pub spec: Spec,
    /// The file was a pipeline `deploy.json`.
    pub deploy_json: bool,
    /// A run reads the stable node from the route first (one `DescribeRoute` before
    /// anything else): a `deploy.json` without `--stable`.
    pub stable_read: bool,
}

/// Why a spec could not be loaded.
pub(crate) enum Loading {
    /// The spec is wrong (exit 2).
    Invalid(SpecError),
    /// The AWS settings are wrong: endpoint, region, credentials (exit 2).
    Environment(String),
    /// Reading the route to find the stable node failed (exit 4).
    Failed(String),
    /// Nothing to do: the route is all on the new node already (exit 0).
    Done(String),
}

/// Reads, parses and validates the spec or `deploy.json` at `path`. `needs_route`: the
/// command will call the backend, so a `deploy.json`'s stable node may be read from
/// the route; `plan` calls nothing and shows it as read at run time.
pub(crate) async fn load(cli: &Cli, path: &str, needs_route: bool) -> Result<Loaded, Loading> {
    let raw = std::fs::read_to_string(path).map_err(|e| {
        Loading::Invalid(SpecError {
            field: None,
            at: None,
            message: format!("cannot read it: {e}"),
        })
    })?;
    let text = spec::strip_bom(&raw);
    if !deploy::is_deploy_json(text) {
        let mut spec = load_spec(text, Format::of(path)).map_err(Loading::Invalid)?;
        override_policy(cli, &mut spec).map_err(Loading::Invalid)?;
        return Ok(Loaded {
            spec,
            deploy_json: false,
            stable_read: false,
        });
    }
    let d = deploy::parse(text).map_err(Loading::Invalid)?;
    let service = cli.service.as_deref();
    let stable = match (&cli.stable, needs_route) {
        (Some(s), _) => s.clone(),
        (None, false) => deploy::STABLE_AT_RUN_TIME.to_string(),
        (None, true) => {
            let probe = deploy::to_spec(&d, service, deploy::STABLE_AT_RUN_TIME)
                .map_err(Loading::Invalid)?;
            current_stable(cli, &probe).await?
        }
    };
    let mut spec = deploy::to_spec(&d, service, &stable).map_err(Loading::Invalid)?;
    spec.check().map_err(Loading::Invalid)?;
    override_policy(cli, &mut spec).map_err(Loading::Invalid)?;
    Ok(Loaded {
        spec,
        deploy_json: true,
        stable_read: cli.stable.is_none(),
    })
}

/// Applies command-line overrides of the spec's policy, and validates again.
fn override_policy(cli: &Cli, spec: &mut Spec) -> Result<(), SpecError> {
    if let Some(i) = cli.inconclusive {
        spec.policy.inconclusive = Some(i);
    }
    validate(spec).map(drop)
}

/// Parses and validates a meshkit spec in process, with no I/O: what `meshkit plan`
/// checks. Errors name the field and where it is.
pub fn load_spec(text: &str, format: Format) -> Result<Spec, SpecError> {
    let text = spec::strip_bom(text);
    let spec = spec::parse(text, format)?;
    spec.check()
        .and_then(|()| validate(&spec).map(drop))
        .map_err(|mut e| {
            if e.at.is_none()
                && let Some(field) = &e.field
            {
                let key = field.split('[').next().unwrap_or(field);
                e.at = spec::locate(text, key, format);
            }
            e
        })?;
    Ok(spec)
}

/// Everything the rollout builder checks, with no backend call. An `ecs-native`
/// spec is checked by [`crate::native::validate`] (ECS runs the strategy; there is no
/// meshkit plan to build) and gives `None`.
pub(crate) fn validate(spec: &Spec) -> Result<Option<Rollout>, SpecError> {
    if spec.route.backend == crate::spec::Backend::EcsNative {
        return crate::native::validate(spec).map(|_| None);
    }
    build::local_addrs(spec)?;
    let checks = build::checks(spec, None, None, &build::Groups::new())?;
    let b = rollout_builder(spec, NullRouter(build::resolution(spec)), checks)?;
    b.build().map(Some).map_err(build::config_error_in(spec))
}

/// The rollout builder for `spec` on `router` with `checks`.
pub(crate) fn rollout_builder(
    spec: &Spec,
    router: impl TrafficRouter + 'static,
    checks: Vec<Box<dyn HealthCheck>>,
) -> Result<RolloutBuilder, SpecError> {
    let (stable, new) = build::versions(spec);
    let mut b = Rollout::builder()
        .router(router)
        .route(build::route_name(spec))
        .from(stable)
        .to(new);
    b = build::strategy(b, spec)?;
    b = build::policy(b, spec)?;
    for c in checks {
        b = b.check(c);
    }
    Ok(b)
}

/// The node the route now sends the most traffic to, other than the new one.
async fn current_stable(cli: &Cli, spec: &Spec) -> Result<String, Loading> {
    let Some(route) = build::appmesh_route(spec) else {
        return Err(Loading::Failed("not an App Mesh route".into()));
    };
    let rr = route
        .route_ref()
        .map_err(|e| Loading::Invalid(build::config_error(e)))?;
    let sdk = aws_env::sdk(cli).await.map_err(Loading::Environment)?;
    let router =
        meshkit::traffic::appmesh::AppMeshRouter::new(meshkit::sdk::appmesh::Client::new(&sdk));
    let now = router
        .read(&rr)
        .await
        .map_err(|e| Loading::Failed(e.to_string()))?;
    now.weights
        .iter()
        .filter(|(n, _)| *n != spec.route.new)
        .max_by_key(|(_, w)| *w)
        .map(|(n, _)| n.to_string())
        .ok_or_else(|| {
            Loading::Done(format!(
                "{rr} is all on {} already: promoted, nothing to do (to roll back, name the \
                 old node with --stable)",
                spec.route.new
            ))
        })
}

use null::NullRouter;

mod null {
    //! A router for validation only: every call fails, and none is made.
    use meshkit::TrafficError;
    use meshkit::traffic::{Observed, Percent, RouteRef, TrafficRouter, WriteRequest};

    /// Stands in for the real router while a spec is validated, with the resolution
    /// of the spec's backend.
    pub struct NullRouter(pub Percent);

    #[meshkit::async_trait]
    impl TrafficRouter for NullRouter {
        async fn read(&self, _: &RouteRef) -> Result<Observed, TrafficError> {
            Err(TrafficError::Unsupported {
                message: "validation only".into(),
            })
        }
        async fn write(
            &self,
            _: &RouteRef,
            _: &WriteRequest,
        ) -> Result<Option<Observed>, TrafficError> {
            Err(TrafficError::Unsupported {
                message: "validation only".into(),
            })
        }
        fn resolution(&self) -> Percent {
            self.0
        }
    }
}
