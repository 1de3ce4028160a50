//! [`ElbRoute`]: a listener or listener rule, named by its ARN.

use std::fmt;

use crate::traffic::{RouteRef, TrafficError};

/// What a load balancer route is: a listener's default action or one listener rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElbRouteKind {
    /// A listener; meshkit rewrites its default action.
    Listener,
    /// A listener rule; meshkit rewrites its actions.
    Rule,
}

/// The kind of load balancer, from the ARN (`app/` or `net/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoadBalancerType {
    /// An Application Load Balancer (`AWS/ApplicationELB` metrics).
    Application,
    /// A Network Load Balancer (`AWS/NetworkELB` metrics).
    Network,
}

impl LoadBalancerType {
    /// The CloudWatch namespace of its metrics.
    pub fn namespace(self) -> &'static str {
        match self {
            Self::Application => "AWS/ApplicationELB",
            Self::Network => "AWS/NetworkELB",
        }
    }
}

/// A listener or listener-rule ARN, checked and taken apart.
///
/// ```
/// use meshkit::traffic::elb::{ElbRoute, ElbRouteKind, LoadBalancerType};
///
/// let rule = ElbRoute::parse(
///     "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2/9683b2d02a6cabee",
/// )?;
/// assert_eq!(rule.kind(), ElbRouteKind::Rule);
/// assert_eq!(rule.load_balancer_type(), LoadBalancerType::Application);
/// // The `LoadBalancer` dimension of its CloudWatch metrics.
/// assert_eq!(rule.load_balancer_dimension(), "app/web/50dc6c495c0c9188");
/// # Ok::<(), meshkit::TrafficError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ElbRoute {
    arn: String,
    kind: ElbRouteKind,
    lb_type: LoadBalancerType,
    lb_dimension: String,
}

impl ElbRoute {
    /// Parses a listener ARN (`…:listener/app/<lb>/<id>/<id>`) or a listener-rule ARN
    /// (`…:listener-rule/app/<lb>/<id>/<id>/<id>`); `net/` for a Network Load Balancer.
    pub fn parse(arn: &str) -> Result<Self, TrafficError> {
        let bad = || TrafficError::BadRequest {
            message: format!(
                "'{}' is not a listener or listener-rule ARN (arn:aws:elasticloadbalancing:<region>:<account>:listener[-rule]/app|net/<name>/<id>/…)",
                arn.chars().take(120).collect::<String>()
            ),
            source: None,
        };
        let mut fields = arn.splitn(6, ':');
        let (
            Some("arn"),
            Some(_partition),
            Some("elasticloadbalancing"),
            Some(_),
            Some(_),
            Some(resource),
        ) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        )
        else {
            return Err(bad());
        };
        let parts: Vec<&str> = resource.split('/').collect();
        let (kind, ids) = match parts.first() {
            Some(&"listener") => (ElbRouteKind::Listener, 5),
            Some(&"listener-rule") => (ElbRouteKind::Rule, 6),
            _ => return Err(bad()),
        };
        if parts.len() != ids || parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        let lb_type = match parts[1] {
            "app" => LoadBalancerType::Application,
            "net" => LoadBalancerType::Network,
            _ => return Err(bad()),
        };
        Ok(Self {
            arn: arn.to_owned(),
            kind,
            lb_type,
            lb_dimension: parts[1..4].join("/"),
        })
    }

    /// Parses a [`RouteRef`] holding an ARN.
    pub fn from_route(route: &RouteRef) -> Result<Self, TrafficError> {
        Self::parse(route.as_str())
    }

    /// The ARN.
    pub fn arn(&self) -> &str {
        &self.arn
    }

    /// The listener's ARN: the route's own for a listener, its listener's for a rule.
    pub fn listener_arn(&self) -> String {
        match self.kind {
            ElbRouteKind::Listener => self.arn.clone(),
            ElbRouteKind::Rule => {
                let base = self.arn.replacen(":listener-rule/", ":listener/", 1);
                base.rsplit_once('/')
                    .map_or(base.clone(), |(l, _)| l.to_owned())
            }
        }
    }

    /// Listener or rule.
    pub fn kind(&self) -> ElbRouteKind {
        self.kind
    }

    /// Application or network load balancer.
    pub fn load_balancer_type(&self) -> LoadBalancerType {
        self.lb_type
    }

    /// The `LoadBalancer` dimension of the load balancer's CloudWatch metrics
    /// (`app/<name>/<id>`).
    pub fn load_balancer_dimension(&self) -> &str {
        &self.lb_dimension
    }
}

impl fmt::Display for ElbRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

/// The `TargetGroup` dimension of a target group's CloudWatch metrics: the part of its
/// ARN after the last `:` (`targetgroup/<name>/<id>`).
pub fn target_group_dimension(arn: &str) -> &str {
    arn.rsplit_once(':').map_or(arn, |(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_are_checked() {
        let base = "arn:aws:elasticloadbalancing:eu-west-1:123456789012";
        let ok = [
            (
                format!("{base}:listener/app/web/1/2"),
                ElbRouteKind::Listener,
                LoadBalancerType::Application,
            ),
            (
                format!("{base}:listener-rule/net/tcp/1/2/3"),
                ElbRouteKind::Rule,
                LoadBalancerType::Network,
            ),
        ];
        for (arn, kind, t) in ok {
            let r = ElbRoute::parse(&arn).unwrap();
            assert_eq!((r.kind(), r.load_balancer_type()), (kind, t));
        }
        for bad in [
            "listener/app/web/1/2".to_owned(),
            format!("{base}:listener/app/web/1"),
            format!("{base}:listener-rule/app/web/1/2"),
            format!("{base}:listener/gwy/web/1/2"),
            format!("{base}:targetgroup/web/1"),
            format!("{base}:listener/app//1/2"),
            "arn:aws:appmesh:x:y:mesh/m".to_owned(),
        ] {
            assert!(ElbRoute::parse(&bad).is_err(), "{bad}");
        }
        let rule = ElbRoute::parse(&format!("{base}:listener-rule/app/web/1/2/3")).unwrap();
        assert_eq!(rule.listener_arn(), format!("{base}:listener/app/web/1/2"));
        assert_eq!(
            target_group_dimension("arn:aws:elasticloadbalancing:r:a:targetgroup/v1/abc"),
            "targetgroup/v1/abc"
        );
    }
}
