//! The AWS canary pipeline's `deploy.json`, mapped to a spec: a Linear rollout on
//! route `<svc>-route` of router `<svc>-vr` in mesh `EnvironmentName`, to node
//! `<svc>-<Sha>`, checked by the new node's ingress 5xx count in CloudWatch over
//! `FailureThresholdTime` (more than `FailureThresholdValue` is unhealthy; no data is
//! inconclusive), after every step including the last.

use serde::Deserialize;

use crate::spec::{
    Backend, CheckKind, CheckSpec, PolicySpec, RouteSpec, Spec, SpecError, StrategyKind,
    StrategySpec,
};

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
            .ok_or_else(|| SpecError {
                field: Some(field.into()),
                at: None,
                message: "not a non-negative number".into(),
            })
    }
}

/// The fields of `deploy.json` meshkit uses (others, such as `Protocol`, `Port` and
/// `Namespace`, are accepted and ignored).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[allow(non_snake_case)]
pub struct DeployJson {
    /// Percent added per step.
    pub PercentageStep: Num,
    /// Seconds per step.
    pub WaitTime: Num,
    /// The highest healthy 5xx count.
    pub FailureThresholdValue: Num,
    /// Seconds over which 5xx are counted.
    pub FailureThresholdTime: Num,
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

/// Maps a `deploy.json` to a spec. `stable` is the node now taking the traffic (read
/// from the route by the caller when not given).
pub fn to_spec(d: &DeployJson, service: Option<&str>, stable: &str) -> Result<Spec, SpecError> {
    let svc = service
        .map(str::to_string)
        .or_else(|| d.MicroserviceName.clone())
        .ok_or_else(|| SpecError {
            field: Some("MicroserviceName".into()),
            at: None,
            message: "missing: give it in deploy.json or with --service".into(),
        })?;
    let new = format!("{svc}-{}", d.Sha);
    let step = d.PercentageStep.get("PercentageStep")?;
    let wait = d.WaitTime.get("WaitTime")?;
    let window = d.FailureThresholdTime.get("FailureThresholdTime")?;
    Ok(Spec {
        route: RouteSpec {
            backend: Backend::Appmesh,
            stable: stable.to_string(),
            new: new.clone(),
            mesh: Some(d.EnvironmentName.clone()),
            mesh_owner: None,
            router: Some(format!("{svc}-vr")),
            route: Some(format!("{svc}-route")),
            listen: None,
            stable_addr: None,
            new_addr: None,
        },
        strategy: StrategySpec {
            kind: StrategyKind::Linear,
            steps: None,
            bake: None,
            pre_check: None,
            step: Some(step.round() as u32),
            wait: Some(format!("{wait}s")),
            step_bake: None,
        },
        checks: vec![CheckSpec {
            kind: CheckKind::Envoy5xx,
            cluster: Some(d.EnvironmentName.clone()),
            task_family: Some(new.clone()),
            virtual_node: Some(new),
            window: Some(format!("{window}s")),
            max: Some(d.FailureThresholdValue.get("FailureThresholdValue")?),
            ..CheckSpec::empty(CheckKind::Envoy5xx)
        }],
        policy: PolicySpec::default(),
    })
}
