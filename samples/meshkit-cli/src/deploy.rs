//! The AWS canary pipeline's `deploy.json` (aws-app-mesh-examples,
//! `blogs/ecs-canary-deployments-pipeline`), mapped to a spec: a Linear rollout on
//! route `<svc>-route` of router `<svc>-vr` in mesh `EnvironmentName`, to node
//! `<svc>-<Sha>`, checked after every step by the pipeline's own health check.
//!
//! The check is the pipeline's `gather_healthcheck_status` Lambda, to the dimension:
//! `envoy_http_downstream_rq_xx` in `ECS/ContainerInsights/Prometheus`, `Sum` over
//! 60-second periods in the last `FailureThresholdTime` seconds, with dimensions
//! `ClusterName` = `EnvironmentName`, `TaskDefinitionFamily` = `<svc>` (the pipeline's
//! stack names the family after the service, without the Sha),
//! `appmesh_virtual_node` = `<svc>-<Sha>`, `envoy_http_conn_manager_prefix` = `ingress`,
//! `envoy_response_code_class` = `5`. More than `FailureThresholdValue` is unhealthy.
//!
//! Two differences from the pipeline, both on the safe side and both adjustable:
//! - no datapoints is *inconclusive* (three in a row roll back); the pipeline counted
//!   it as healthy. `--inconclusive pass` gives the pipeline's rule.
//! - the 100% step is checked too; the pipeline promoted on reaching 100% unchecked.

use serde::Deserialize;

use crate::spec::{
    Backend, CheckKind, CheckSpec, Dur, PolicySpec, RouteSpec, Spec, SpecError, StrategyKind,
    StrategySpec,
};

/// What `plan` shows for the stable node of a `deploy.json` when `--stable` is not
/// given: `run` reads it from the route.
pub const STABLE_AT_RUN_TIME: &str = "(stable: read from the route at run time)";

/// A number the pipeline may write as `10` or `"10"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Num {
    /// A JSON number.
    Number(f64),
    /// A number in a string.
    Text(String),
}

impl Num {
    fn get(&self, field: &str) -> Result<f64, SpecError> {
        let v = match self {
            Self::Number(n) => Some(*n),
            Self::Text(t) => t.trim().parse().ok(),
        };
        v.filter(|n| n.is_finite() && *n >= 0.0)
            .ok_or_else(|| bad(field, "not a non-negative number"))
    }

    /// A whole number, as the pipeline's `int(...)` takes it.
    fn whole(&self, field: &str) -> Result<u32, SpecError> {
        let n = self.get(field)?;
        if n.fract() != 0.0 || n > f64::from(u32::MAX) {
            return Err(bad(field, &format!("{n} is not a whole number")));
        }
        Ok(n as u32)
    }
}

fn bad(field: &str, message: &str) -> SpecError {
    SpecError {
        field: Some(field.into()),
        at: None,
        message: message.into(),
    }
}

/// The fields of `deploy.json` meshkit uses (others, such as `Protocol`, `Port`,
/// `Namespace`, `ContainerImage` and `CanaryTemplate`, are accepted and ignored).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[allow(non_snake_case)]
pub struct DeployJson {
    /// Percent added per step (a whole number).
    pub PercentageStep: Num,
    /// Seconds per step.
    pub WaitTime: Num,
    /// The highest healthy 5xx count (the pipeline's default: 0).
    #[serde(default)]
    pub FailureThresholdValue: Option<Num>,
    /// Seconds over which 5xx are counted (the pipeline's default: 600).
    #[serde(default)]
    pub FailureThresholdTime: Option<Num>,
    /// The mesh (and ECS cluster) name.
    pub EnvironmentName: String,
    /// The service, unless `--service` is given.
    #[serde(default)]
    pub MicroserviceName: Option<String>,
    /// The new version's commit.
    pub Sha: String,
}

/// True when `text` looks like a pipeline `deploy.json` rather than a meshkit spec.
pub fn is_deploy_json(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .is_some_and(|v| v.get("PercentageStep").is_some())
}

/// Parses a `deploy.json`.
pub fn parse(text: &str) -> Result<DeployJson, SpecError> {
    serde_json::from_str(text).map_err(|e| SpecError {
        field: None,
        at: Some((e.line(), e.column())),
        message: e.to_string(),
    })
}

/// Maps a `deploy.json` to a spec. `stable` is the node now taking the traffic (read
/// from the route by the caller when not given). The rollout id depends on the route
/// and the new node only, so `plan` shows the id `run` uses.
pub fn to_spec(d: &DeployJson, service: Option<&str>, stable: &str) -> Result<Spec, SpecError> {
    let svc = service
        .map(str::to_string)
        .or_else(|| d.MicroserviceName.clone())
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| {
            bad(
                "MicroserviceName",
                "missing: give it in deploy.json or with --service",
            )
        })?;
    if d.Sha.trim().is_empty() {
        return Err(bad("Sha", "must not be empty"));
    }
    if d.EnvironmentName.trim().is_empty() {
        return Err(bad("EnvironmentName", "must not be empty"));
    }
    let new = format!("{svc}-{}", d.Sha);
    let step = d.PercentageStep.whole("PercentageStep")?;
    let wait = d.WaitTime.get("WaitTime")?;
    let max = match &d.FailureThresholdValue {
        Some(v) => v.get("FailureThresholdValue")?,
        None => 0.0,
    };
    // The Lambda: `failure_threshold_time or 600`, so 0 means 600 as well.
    let window = match &d.FailureThresholdTime {
        Some(v) => v.get("FailureThresholdTime")?,
        None => 0.0,
    };
    let window = if window == 0.0 { 600.0 } else { window };
    let secs = |field: &str, n: f64| {
        Dur::parse(&format!("{n}s")).ok_or_else(|| bad(field, "not a usable number of seconds"))
    };
    let route = format!("{svc}-route");
    let router = format!("{svc}-vr");
    let id = format!(
        "mk{:016x}",
        crate::build::fnv(&format!("{}/{router}/{route}|{new}", d.EnvironmentName))
    );
    Ok(Spec {
        route: RouteSpec {
            backend: Backend::Appmesh,
            stable: stable.to_string(),
            new: new.clone(),
            mesh: Some(d.EnvironmentName.clone()),
            mesh_owner: None,
            router: Some(router),
            route: Some(route),
            listen: None,
            stable_addr: None,
            new_addr: None,
            service: None,
            listener: None,
            rule: None,
            settle_delay: None,
            confirm_traffic: None,
            min_requests: None,
            confirm_within: None,
            cluster: None,
            task_definition: None,
            hook_timeout: None,
        },
        strategy: StrategySpec {
            kind: StrategyKind::Linear,
            steps: None,
            bake: None,
            pre_check: None,
            step: Some(crate::spec::Step(
                meshkit::traffic::Percent::whole(step)
                    .map_err(|e| bad("PercentageStep", &e.to_string()))?,
            )),
            wait: Some(secs("WaitTime", wait)?),
            step_bake: None,
        },
        checks: vec![CheckSpec {
            kind: CheckKind::Envoy5xx,
            cluster: Some(d.EnvironmentName.clone()),
            task_family: Some(svc),
            virtual_node: Some(new),
            window: Some(secs("FailureThresholdTime", window)?),
            max: Some(max),
            ..CheckSpec::empty(CheckKind::Envoy5xx)
        }],
        policy: PolicySpec {
            id: Some(id),
            ..PolicySpec::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(step: &str) -> DeployJson {
        parse(&format!(
            r#"{{"EnvironmentName": "ecs-blogpost", "MicroserviceName": "yelb-appserver",
                "Protocol": "http", "Port": 4567, "Namespace": "yelb.local",
                "PercentageStep": {step}, "WaitTime": 60, "FailureThresholdValue": 1,
                "FailureThresholdTime": 600, "Sha": "0123abcd"}}"#
        ))
        .unwrap()
    }

    #[test]
    fn the_pipelines_dimensions_and_names() {
        let spec = to_spec(&deploy("10"), None, "yelb-appserver-ffff0000").unwrap();
        let c = &spec.checks[0];
        assert_eq!(c.task_family.as_deref(), Some("yelb-appserver"));
        assert_eq!(c.virtual_node.as_deref(), Some("yelb-appserver-0123abcd"));
        assert_eq!(c.cluster.as_deref(), Some("ecs-blogpost"));
        assert_eq!(c.max, Some(1.0));
        assert_eq!(spec.route.router.as_deref(), Some("yelb-appserver-vr"));
        assert_eq!(spec.route.route.as_deref(), Some("yelb-appserver-route"));
        assert_eq!(
            spec.strategy.step.map(|s| s.0),
            Some(meshkit::traffic::Percent::whole(10).unwrap())
        );
        // The id does not depend on the stable node: plan and run agree.
        let other = to_spec(&deploy("10"), None, STABLE_AT_RUN_TIME).unwrap();
        assert_eq!(spec.policy.id, other.policy.id);
    }

    #[test]
    fn steps_are_whole_numbers_and_thresholds_default_as_in_the_lambda() {
        let err = to_spec(&deploy("10.5"), None, "s").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("PercentageStep"));
        assert!(err.message.contains("whole number"), "{err}");
        assert_eq!(
            to_spec(&deploy("\"25\""), None, "s")
                .unwrap()
                .strategy
                .step
                .map(|s| s.0),
            Some(meshkit::traffic::Percent::whole(25).unwrap())
        );
        let d = parse(
            r#"{"EnvironmentName": "e", "MicroserviceName": "s", "PercentageStep": 10,
                "WaitTime": 60, "Sha": "1", "FailureThresholdTime": 0}"#,
        )
        .unwrap();
        let spec = to_spec(&d, None, "s-0").unwrap();
        assert_eq!(spec.checks[0].max, Some(0.0));
        assert_eq!(spec.checks[0].window.as_ref().unwrap().value.as_secs(), 600);
    }
}
