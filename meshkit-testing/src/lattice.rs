//! A VPC Lattice topology on the emulator: a service, four target groups with a
//! target each, an HTTP listener forwarding to `web-v1`, and a listener rule (priority
//! 10, path prefix `/api`) forwarding to `web-v1`. The operations moto lacks (GetRule,
//! UpdateRule, ListRules, UpdateListener, RegisterTargets, ListTargets) are served by
//! meshkit's extension of the emulator wrapper. Setup helpers panic: they are for tests.

use aws_sdk_vpclattice::types::{
    ForwardAction, HttpMatch, PathMatch, PathMatchType, RuleAction, RuleMatch, Target,
    TargetGroupConfig, TargetGroupProtocol, TargetGroupType, WeightedTargetGroup,
};
use aws_types::SdkConfig;

use crate::{CallCounter, MotoServer};

/// The target groups created, in order.
pub const GROUPS: [&str; 4] = ["web-v1", "web-v2", "web-v3", "web-spare"];

/// What [`build`] made.
#[derive(Debug, Clone)]
pub struct LatticeTopology {
    /// The service id.
    pub service: String,
    /// The listener id.
    pub listener: String,
    /// The rule id.
    pub rule: String,
    /// `(name, id)` of each target group, in [`GROUPS`] order.
    pub groups: Vec<(String, String)>,
    /// `(name, ARN)` of each target group, in [`GROUPS`] order.
    pub arns: Vec<(String, String)>,
}

impl LatticeTopology {
    /// The id of target group `name`.
    pub fn id(&self, name: &str) -> &str {
        self.groups
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, i)| i.as_str())
            .unwrap_or_else(|| panic!("no target group {name}"))
    }

    /// The ARN of target group `name`.
    pub fn arn(&self, name: &str) -> &str {
        self.arns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.as_str())
            .unwrap_or_else(|| panic!("no target group {name}"))
    }

    /// The rule as a route: `svc-…/listener-…/rule-…`.
    pub fn rule_route(&self) -> String {
        format!("{}/{}/{}", self.service, self.listener, self.rule)
    }

    /// The listener's default action as a route: `svc-…/listener-…`.
    pub fn listener_route(&self) -> String {
        format!("{}/{}", self.service, self.listener)
    }
}

/// A Lattice client on the emulator that counts its calls.
pub fn client(sdk: &SdkConfig, counter: &CallCounter) -> aws_sdk_vpclattice::Client {
    let conf = aws_sdk_vpclattice::config::Builder::from(sdk)
        .interceptor(counter.clone())
        .build();
    aws_sdk_vpclattice::Client::from_conf(conf)
}

/// A forward action to `(target group id, weight)`s.
pub fn forward(groups: &[(&str, i32)]) -> RuleAction {
    let tuples = groups
        .iter()
        .map(|(id, w)| {
            WeightedTargetGroup::builder()
                .target_group_identifier(*id)
                .weight(*w)
                .build()
                .unwrap()
        })
        .collect();
    RuleAction::Forward(
        ForwardAction::builder()
            .set_target_groups(Some(tuples))
            .build()
            .unwrap(),
    )
}

/// The topology (see the module docs).
pub async fn build(sdk: &SdkConfig, _moto: &MotoServer) -> LatticeTopology {
    let c = aws_sdk_vpclattice::Client::new(sdk);
    let service = c
        .create_service()
        .name("web")
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateService: {e:?}"));
    let service = service.id().unwrap().to_owned();
    let mut groups = Vec::new();
    let mut arns = Vec::new();
    for (i, name) in GROUPS.iter().enumerate() {
        let g = c
            .create_target_group()
            .name(*name)
            .r#type(TargetGroupType::Ip)
            .config(
                TargetGroupConfig::builder()
                    .port(8080)
                    .protocol(TargetGroupProtocol::Http)
                    .vpc_identifier("vpc-0123456789abcdef0")
                    .build(),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateTargetGroup {name}: {e:?}"));
        let id = g.id().unwrap().to_owned();
        arns.push(((*name).to_owned(), g.arn().unwrap().to_owned()));
        c.register_targets()
            .target_group_identifier(&id)
            .targets(
                Target::builder()
                    .id(format!("10.0.2.{}", 10 + i))
                    .port(8080)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("RegisterTargets {name}: {e:?}"));
        groups.push(((*name).to_owned(), id));
    }
    let v1 = groups[0].1.clone();
    let listener = c
        .create_listener()
        .service_identifier(&service)
        .name("http")
        .protocol(aws_sdk_vpclattice::types::ListenerProtocol::Http)
        .port(80)
        .default_action(forward(&[(&v1, 100)]))
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateListener: {e:?}"));
    let listener = listener.id().unwrap().to_owned();
    let rule = c
        .create_rule()
        .service_identifier(&service)
        .listener_identifier(&listener)
        .name("api")
        .priority(10)
        .r#match(RuleMatch::HttpMatch(
            HttpMatch::builder()
                .path_match(
                    PathMatch::builder()
                        .r#match(PathMatchType::Prefix("/api".into()))
                        .build(),
                )
                .build(),
        ))
        .action(forward(&[(&v1, 100)]))
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateRule: {e:?}"));
    LatticeTopology {
        service,
        listener,
        rule: rule.id().unwrap().to_owned(),
        groups,
        arns,
    }
}
