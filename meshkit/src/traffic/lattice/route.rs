//! [`LatticeRoute`]: a VPC Lattice listener or listener rule, named by ids or ARN.

use std::fmt;

use crate::traffic::{RouteRef, TrafficError};

/// A VPC Lattice route: a service listener's default action, or one listener rule.
///
/// Written as `svc-…/listener-…` or `svc-…/listener-…/rule-…` (ids), or as the
/// listener's or rule's ARN (`arn:aws:vpc-lattice:<region>:<account>:service/svc-…/listener/listener-…[/rule/rule-…]`).
///
/// ```
/// use meshkit::traffic::lattice::LatticeRoute;
///
/// let rule = LatticeRoute::parse("svc-0123456789abcdefg/listener-0123456789abcdefg/rule-0123456789abcdefg")?;
/// assert_eq!(rule.rule(), Some("rule-0123456789abcdefg"));
/// let same = LatticeRoute::parse(
///     "arn:aws:vpc-lattice:us-east-1:123456789012:service/svc-0123456789abcdefg/listener/listener-0123456789abcdefg/rule/rule-0123456789abcdefg",
/// )?;
/// assert_eq!(rule, same);
/// # Ok::<(), meshkit::TrafficError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LatticeRoute {
    service: String,
    listener: String,
    rule: Option<String>,
}

fn id_like(s: &str, prefix: &str) -> bool {
    s.len() > prefix.len()
        && s.len() <= 64
        && s.starts_with(prefix)
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl LatticeRoute {
    /// Parses ids (`svc-…/listener-…[/rule-…]`) or a listener or rule ARN.
    pub fn parse(name: &str) -> Result<Self, TrafficError> {
        let bad = || TrafficError::BadRequest {
            message: format!(
                "'{}' is not a VPC Lattice route: write svc-…/listener-…[/rule-…] or a listener or rule ARN",
                name.chars().take(120).collect::<String>()
            ),
            source: None,
        };
        let ids: Vec<&str> = if let Some(rest) = name.strip_prefix("arn:") {
            let mut fields = rest.splitn(5, ':');
            let (Some(_partition), Some("vpc-lattice"), Some(_), Some(_), Some(resource)) = (
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
            ) else {
                return Err(bad());
            };
            let parts: Vec<&str> = resource.split('/').collect();
            match parts.as_slice() {
                ["service", s, "listener", l] => vec![s, l],
                ["service", s, "listener", l, "rule", r] => vec![s, l, r],
                _ => return Err(bad()),
            }
        } else {
            name.split('/').collect()
        };
        let ok = match ids.as_slice() {
            [s, l] => id_like(s, "svc-") && id_like(l, "listener-"),
            [s, l, r] => id_like(s, "svc-") && id_like(l, "listener-") && id_like(r, "rule-"),
            _ => false,
        };
        if !ok {
            return Err(bad());
        }
        Ok(Self {
            service: ids[0].to_owned(),
            listener: ids[1].to_owned(),
            rule: ids.get(2).map(|r| (*r).to_owned()),
        })
    }

    /// Parses a [`RouteRef`].
    pub fn from_route(route: &RouteRef) -> Result<Self, TrafficError> {
        Self::parse(route.as_str())
    }

    /// The service id.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The listener id.
    pub fn listener(&self) -> &str {
        &self.listener
    }

    /// The rule id, or `None` for the listener's default action.
    pub fn rule(&self) -> Option<&str> {
        self.rule.as_deref()
    }
}

impl fmt::Display for LatticeRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.service, self.listener)?;
        if let Some(r) = &self.rule {
            write!(f, "/{r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_arns_are_checked() {
        let arn = "arn:aws:vpc-lattice:us-east-1:123456789012:service/svc-a1/listener/listener-b2";
        for ok in [
            "svc-a1/listener-b2",
            "svc-a1/listener-b2/rule-c3",
            arn,
            "svc-d733caab-86fe-4b1/listener-x",
        ] {
            assert!(LatticeRoute::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "svc-a1",
            "svc-a1/rule-c3",
            "listener-b2/svc-a1",
            "svc-a1/listener-b2/rule-c3/x",
            "svc-/listener-b2",
            "svc-a1/listener-b 2",
            "arn:aws:elasticloadbalancing:r:a:listener/app/x/1/2",
            "arn:aws:vpc-lattice:r:a:service/svc-a1",
        ] {
            assert!(LatticeRoute::parse(bad).is_err(), "{bad}");
        }
        let r = LatticeRoute::parse(&format!("{arn}/rule/rule-c3")).unwrap();
        assert_eq!(
            (r.service(), r.listener(), r.rule()),
            ("svc-a1", "listener-b2", Some("rule-c3"))
        );
        assert_eq!(r.to_string(), "svc-a1/listener-b2/rule-c3");
    }
}
