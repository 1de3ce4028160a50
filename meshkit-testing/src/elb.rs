//! A load balancer topology on the emulator: a VPC, an Application (or Network) Load
//! Balancer, four target groups with a target each, a listener forwarding to `web-v1`
//! and a listener rule with conditions, a priority and target-group stickiness, also
//! forwarding to `web-v1`. Setup helpers panic on failure: they are for tests.

use std::time::SystemTime;

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, HostHeaderConditionConfig, LoadBalancerTypeEnum,
    PathPatternConditionConfig, ProtocolEnum, RuleCondition, TargetDescription,
    TargetGroupStickinessConfig, TargetGroupTuple, TargetTypeEnum,
};
use aws_types::SdkConfig;

use crate::{CallCounter, MotoServer};

/// The target groups created, in order: three versions and a spare.
pub const GROUPS: [&str; 4] = ["web-v1", "web-v2", "web-v3", "web-spare"];

/// What [`alb`] or [`nlb`] built.
#[derive(Debug, Clone)]
pub struct ElbTopology {
    /// The load balancer's ARN.
    pub load_balancer: String,
    /// Its `LoadBalancer` metric dimension (`app/<name>/<id>`).
    pub lb_dimension: String,
    /// The listener (default action forwards to `web-v1`).
    pub listener: String,
    /// The listener rule (ALB only): path `/api/*`, host `api.example.com`, priority
    /// 10, stickiness on for 300 s, forwarding to `web-v1`.
    pub rule: Option<String>,
    /// `(name, ARN)` of each target group, in [`GROUPS`] order.
    pub groups: Vec<(String, String)>,
    /// The VPC.
    pub vpc: String,
}

impl ElbTopology {
    /// The ARN of target group `name`.
    pub fn arn(&self, name: &str) -> &str {
        self.groups
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.as_str())
            .unwrap_or_else(|| panic!("no target group {name}"))
    }
}

/// An ELBv2 client on the emulator that counts its calls.
pub fn client(sdk: &SdkConfig, counter: &CallCounter) -> aws_sdk_elasticloadbalancingv2::Client {
    let conf = aws_sdk_elasticloadbalancingv2::config::Builder::from(sdk)
        .interceptor(counter.clone())
        .build();
    aws_sdk_elasticloadbalancingv2::Client::from_conf(conf)
}

fn between<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{tag}> in the emulator's answer: {xml}"))
        + open.len();
    let end = xml[start..]
        .find(&format!("</{tag}>"))
        .unwrap_or_else(|| panic!("no </{tag}> in the emulator's answer"));
    &xml[start..start + end]
}

/// A VPC with two subnets in two zones, through raw EC2 Query calls.
fn vpc(moto: &MotoServer) -> (String, Vec<String>) {
    let v = moto.query(
        "ec2",
        "Action=CreateVpc&Version=2016-11-15&CidrBlock=10.0.0.0%2F16",
    );
    let vpc = between(&v, "vpcId").to_owned();
    let subnets = ["a", "b"]
        .iter()
        .enumerate()
        .map(|(i, az)| {
            let s = moto.query(
                "ec2",
                &format!(
                    "Action=CreateSubnet&Version=2016-11-15&VpcId={vpc}&CidrBlock=10.0.{i}.0%2F24&AvailabilityZone=us-east-1{az}"
                ),
            );
            between(&s, "subnetId").to_owned()
        })
        .collect();
    (vpc, subnets)
}

/// A forward action to the `(ARN, weight)` groups, with stickiness when `sticky`.
pub fn forward(groups: &[(&str, i32)], sticky: Option<i32>) -> Action {
    let tuples = groups
        .iter()
        .map(|(arn, w)| {
            TargetGroupTuple::builder()
                .target_group_arn(*arn)
                .weight(*w)
                .build()
        })
        .collect::<Vec<_>>();
    let stickiness = match sticky {
        Some(secs) => TargetGroupStickinessConfig::builder()
            .enabled(true)
            .duration_seconds(secs)
            .build(),
        None => TargetGroupStickinessConfig::builder()
            .enabled(false)
            .build(),
    };
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(
            ForwardActionConfig::builder()
                .set_target_groups(Some(tuples))
                .target_group_stickiness_config(stickiness)
                .build(),
        )
        .build()
}

/// The ALB topology (see the module docs).
pub async fn alb(sdk: &SdkConfig, moto: &MotoServer) -> ElbTopology {
    build(sdk, moto, LoadBalancerTypeEnum::Application).await
}

/// The NLB topology: TCP target groups and a TCP listener; no rule (NLB listeners have
/// none). The emulator names NLBs `app/...` like ALBs.
pub async fn nlb(sdk: &SdkConfig, moto: &MotoServer) -> ElbTopology {
    build(sdk, moto, LoadBalancerTypeEnum::Network).await
}

async fn build(sdk: &SdkConfig, moto: &MotoServer, kind: LoadBalancerTypeEnum) -> ElbTopology {
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(sdk);
    let (vpc, subnets) = vpc(moto);
    let network = kind == LoadBalancerTypeEnum::Network;
    let lb = elb
        .create_load_balancer()
        .name("web")
        .r#type(kind)
        .set_subnets(Some(subnets))
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateLoadBalancer: {e:?}"));
    let load_balancer = lb.load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_owned();
    let lb_dimension = load_balancer
        .split_once(":loadbalancer/")
        .map(|(_, d)| d.to_owned())
        .unwrap();
    let protocol = if network {
        ProtocolEnum::Tcp
    } else {
        ProtocolEnum::Http
    };
    let mut groups = Vec::new();
    for (i, name) in GROUPS.iter().enumerate() {
        let g = elb
            .create_target_group()
            .name(*name)
            .protocol(protocol.clone())
            .port(8080)
            .vpc_id(&vpc)
            .target_type(TargetTypeEnum::Ip)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateTargetGroup {name}: {e:?}"));
        let arn = g.target_groups()[0].target_group_arn().unwrap().to_owned();
        elb.register_targets()
            .target_group_arn(&arn)
            .targets(
                TargetDescription::builder()
                    .id(format!("10.0.1.{}", 10 + i))
                    .port(8080)
                    .build(),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("RegisterTargets {name}: {e:?}"));
        groups.push(((*name).to_owned(), arn));
    }
    let v1 = groups[0].1.clone();
    let listener = elb
        .create_listener()
        .load_balancer_arn(&load_balancer)
        .protocol(protocol)
        .port(if network { 443 } else { 80 })
        .default_actions(forward(&[(&v1, 1)], None))
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateListener: {e:?}"));
    let listener = listener.listeners()[0].listener_arn().unwrap().to_owned();
    let rule = if network {
        None
    } else {
        let r = elb
            .create_rule()
            .listener_arn(&listener)
            .priority(10)
            .conditions(
                RuleCondition::builder()
                    .field("path-pattern")
                    .path_pattern_config(
                        PathPatternConditionConfig::builder()
                            .values("/api/*")
                            .build(),
                    )
                    .build(),
            )
            .conditions(
                RuleCondition::builder()
                    .field("host-header")
                    .host_header_config(
                        HostHeaderConditionConfig::builder()
                            .values("api.example.com")
                            .build(),
                    )
                    .build(),
            )
            .actions(forward(&[(&v1, 100)], Some(300)))
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateRule: {e:?}"));
        Some(r.rules()[0].rule_arn().unwrap().to_owned())
    };
    ElbTopology {
        load_balancer,
        lb_dimension,
        listener,
        rule,
        groups,
        vpc,
    }
}

/// Puts one datapoint of a load balancer metric of one target group (`RequestCount`,
/// `HTTPCode_Target_5XX_Count`, `TargetResponseTime`...) in `AWS/ApplicationELB` (or
/// `namespace`), with the dimensions the load balancer publishes, in its order.
pub async fn put_metric(
    client: &aws_sdk_cloudwatch::Client,
    namespace: &str,
    metric: &str,
    lb_dimension: &str,
    target_group_arn: &str,
    at: SystemTime,
    value: f64,
) {
    let tg = target_group_arn
        .rsplit_once(':')
        .map_or(target_group_arn, |(_, r)| r);
    let datum = MetricDatum::builder()
        .metric_name(metric)
        .value(value)
        .timestamp(DateTime::from(at))
        .dimensions(Dimension::builder().name("TargetGroup").value(tg).build())
        .dimensions(
            Dimension::builder()
                .name("LoadBalancer")
                .value(lb_dimension)
                .build(),
        )
        .build();
    // The emulator's server sometimes resets a pooled connection; SDK retries are off
    // in tests, so a put that was not sent is sent again.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let sent = client
            .put_metric_data()
            .namespace(namespace)
            .metric_data(datum.clone())
            .send()
            .await;
        match sent {
            Ok(_) => return,
            Err(aws_sdk_cloudwatch::error::SdkError::DispatchFailure(_)) if attempt < 3 => {}
            Err(e) => panic!("PutMetricData failed: {e:?}"),
        }
    }
}
