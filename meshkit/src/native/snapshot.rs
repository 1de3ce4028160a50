//! A service deployment as meshkit reads it: status, stage, the split, the hook
//! awaiting an answer. Plain values from the ECS answer, and what the judge does next,
//! tested with a table.

use std::time::SystemTime;

use aws_sdk_ecs::types::ServiceDeployment;

/// The PAUSE hook of the current lifecycle stage, as ECS reports it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Hook {
    pub(crate) id: String,
    /// `AWAITING_ACTION`, `SUCCEEDED`, `TIMED_OUT`, `FAILED`, `IN_PROGRESS`.
    pub(crate) status: String,
    pub(crate) expires_at: Option<SystemTime>,
    pub(crate) timeout_action: Option<String>,
}

impl Hook {
    pub(crate) fn awaiting(&self) -> bool {
        self.status == "AWAITING_ACTION"
    }
}

/// One read of a service deployment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot {
    /// `PENDING`, `IN_PROGRESS`, `SUCCESSFUL`, `ROLLBACK_*`, `STOP*`.
    pub(crate) status: String,
    /// The lifecycle stage, as ECS spells it (matched as a string: aws-sdk-ecs 1.157
    /// has no variant for `PRE_PRODUCTION_TRAFFIC_SHIFT`).
    pub(crate) stage: String,
    /// The new revision's requested share of production traffic, 0-100.
    pub(crate) new_percent: f64,
    pub(crate) hook: Option<Hook>,
    /// Why it ended or rolled back, when ECS says.
    pub(crate) reason: Option<String>,
}

/// How a deployment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Promoted,
    RolledBack,
    /// Stopped, or the rollback failed: traffic may be anywhere.
    Failed,
}

impl Snapshot {
    pub(crate) fn from_sdk(d: &ServiceDeployment) -> Self {
        let hook = d.lifecycle_hook_details().last().map(|h| Hook {
            id: h.hook_id().unwrap_or_default().to_owned(),
            status: h
                .status()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            expires_at: h.expires_at().and_then(|t| SystemTime::try_from(*t).ok()),
            timeout_action: h.timeout_action().map(|a| a.as_str().to_owned()),
        });
        let new_percent = d
            .target_service_revision()
            .and_then(|r| r.requested_production_traffic_weight())
            .unwrap_or(0.0)
            .clamp(0.0, 100.0);
        let reason = d
            .rollback()
            .and_then(|r| r.reason())
            .or(d.status_reason())
            .map(str::to_owned);
        Self {
            status: d
                .status()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            stage: d
                .lifecycle_stage()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            new_percent,
            hook,
            reason,
        }
    }

    /// The end, once the deployment has one.
    pub(crate) fn end(&self) -> Option<End> {
        match self.status.as_str() {
            "SUCCESSFUL" => Some(End::Promoted),
            "ROLLBACK_SUCCESSFUL" => Some(End::RolledBack),
            "ROLLBACK_FAILED" | "STOPPED" => Some(End::Failed),
            _ => None,
        }
    }

    /// The hook awaiting an answer, if any.
    pub(crate) fn awaiting(&self) -> Option<&Hook> {
        self.hook.as_ref().filter(|h| h.awaiting())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::types::{
        DeploymentLifecycleHookDetail, DeploymentLifecycleHookStatus, Rollback,
        ServiceDeploymentLifecycleStage, ServiceDeploymentStatus, ServiceRevisionSummary,
    };

    use super::*;

    fn deployment(status: &str, stage: &str, weight: f64, hook: Option<&str>) -> ServiceDeployment {
        let mut b = ServiceDeployment::builder()
            .status(ServiceDeploymentStatus::from(status))
            .lifecycle_stage(ServiceDeploymentLifecycleStage::from(stage))
            .target_service_revision(
                ServiceRevisionSummary::builder()
                    .requested_production_traffic_weight(weight)
                    .build(),
            );
        if let Some(h) = hook {
            b = b.lifecycle_hook_details(
                DeploymentLifecycleHookDetail::builder()
                    .hook_id("h-1")
                    .status(DeploymentLifecycleHookStatus::from(h))
                    .build(),
            );
        }
        b.build()
    }

    #[test]
    fn table() {
        let cases = [
            (
                "IN_PROGRESS",
                "PRE_PRODUCTION_TRAFFIC_SHIFT",
                0.0,
                Some("AWAITING_ACTION"),
                None,
                true,
            ),
            (
                "IN_PROGRESS",
                "PRODUCTION_TRAFFIC_SHIFT",
                10.0,
                Some("SUCCEEDED"),
                None,
                false,
            ),
            ("IN_PROGRESS", "BAKE_TIME", 100.0, None, None, false),
            (
                "SUCCESSFUL",
                "CLEAN_UP",
                100.0,
                None,
                Some(End::Promoted),
                false,
            ),
            (
                "ROLLBACK_SUCCESSFUL",
                "CLEAN_UP",
                0.0,
                Some("TIMED_OUT"),
                Some(End::RolledBack),
                false,
            ),
            (
                "ROLLBACK_FAILED",
                "CLEAN_UP",
                50.0,
                None,
                Some(End::Failed),
                false,
            ),
            ("STOPPED", "CLEAN_UP", 50.0, None, Some(End::Failed), false),
            ("ROLLBACK_IN_PROGRESS", "CLEAN_UP", 50.0, None, None, false),
        ];
        for (status, stage, weight, hook, end, awaiting) in cases {
            let s = Snapshot::from_sdk(&deployment(status, stage, weight, hook));
            assert_eq!(s.stage, stage, "{status}");
            assert_eq!(s.end(), end, "{status} {stage}");
            assert_eq!(s.awaiting().is_some(), awaiting, "{status} {stage}");
            assert_eq!(s.new_percent, weight);
        }
        // The rollback's reason wins over the status reason.
        let d = ServiceDeployment::builder()
            .status(ServiceDeploymentStatus::RollbackSuccessful)
            .status_reason("status")
            .rollback(Rollback::builder().reason("hook timed out").build())
            .build();
        assert_eq!(
            Snapshot::from_sdk(&d).reason.as_deref(),
            Some("hook timed out")
        );
    }
}
