//! `meshkit status`, `meshkit promote`, `meshkit rollback`: one read, or one safe write.

use std::sync::Arc;

use meshkit::rollout::SetWeights;
use meshkit::traffic::appmesh::AppMeshRouter;
use meshkit::traffic::elb::ElbRouter;
use meshkit::traffic::lattice::LatticeRouter;
use meshkit::traffic::{Percent, RouteRef, TrafficRouter, Weights, client_token};
use serde_json::json;

use crate::load::Loaded;
use crate::spec::{Backend, Spec};
use crate::{Cli, aws_env, build, exit};

/// A route opened for a command.
struct Opened {
    router: Arc<dyn TrafficRouter>,
    route: RouteRef,
    /// The spec with its versions by the names the route uses.
    spec: Spec,
    /// Load balancers: the router again, to ask a target group's health.
    elb: Option<Arc<ElbRouter>>,
    /// VPC Lattice: the same.
    lattice: Option<Arc<LatticeRouter>>,
}

impl Opened {
    /// `Some(healthy targets)` of target group `name` on a load balancer or Lattice
    /// route; `None` elsewhere.
    async fn healthy(&self, name: &str) -> Option<Result<usize, String>> {
        if let Some(elb) = &self.elb {
            let count = match elb.target_group(name).await {
                Ok(g) => elb.targets(&g).await.map(|(_, h)| h),
                Err(e) => Err(e),
            };
            return Some(count.map_err(|e| e.to_string()));
        }
        if let Some(lattice) = &self.lattice {
            let count = match lattice.target_group(name).await {
                Ok(g) => lattice.targets(&g).await.map(|(_, h)| h),
                Err(e) => Err(e),
            };
            return Some(count.map_err(|e| e.to_string()));
        }
        None
    }
}

/// The router and route of an App Mesh or load balancer spec, and the spec with its
/// versions by the names the route uses; or an exit code.
async fn open(cli: &Cli, loaded: &Loaded) -> Result<Opened, u8> {
    if loaded.spec.route.backend == Backend::Local {
        return Err(crate::failed(
            cli,
            exit::INVALID,
            "a local route exists only inside `meshkit run`",
        ));
    }
    let sdk = aws_env::sdk(cli)
        .await
        .map_err(|e| crate::failed(cli, exit::INVALID, &e.to_string()))?;
    if loaded.spec.route.backend == Backend::Lattice {
        let l = crate::lattice::connect(&loaded.spec, &sdk, false)
            .await
            .map_err(|e| crate::failed(cli, exit::FAILED, &e.to_string()))?;
        let router = Arc::new(l.router);
        return Ok(Opened {
            router: router.clone(),
            route: l.route,
            spec: l.spec,
            elb: None,
            lattice: Some(router),
        });
    }
    if loaded.spec.route.backend != Backend::Appmesh {
        let elb = crate::elb::connect(&loaded.spec, &sdk, false)
            .await
            .map_err(|e| crate::failed(cli, exit::FAILED, &e.to_string()))?;
        let router = Arc::new(elb.router);
        return Ok(Opened {
            router: router.clone(),
            route: elb.route,
            spec: elb.spec,
            elb: Some(router),
            lattice: None,
        });
    }
    let Some(route) = build::appmesh_route(&loaded.spec) else {
        return Err(exit::INVALID);
    };
    let rr = route
        .route_ref()
        .map_err(|e| crate::failed(cli, exit::INVALID, &e.to_string()))?;
    Ok(Opened {
        router: Arc::new(AppMeshRouter::new(meshkit::sdk::appmesh::Client::new(&sdk))),
        route: rr,
        spec: loaded.spec.clone(),
        elb: None,
        lattice: None,
    })
}

/// Prints the route's weights and revision.
pub(crate) async fn status(cli: &Cli, loaded: &Loaded) -> u8 {
    if loaded.spec.route.backend == Backend::EcsNative {
        return crate::native::status(cli, loaded).await;
    }
    let key = build::store_key(&loaded.spec);
    let holder = match crate::store::holder_of(cli, &key).await {
        Ok(h) => h,
        Err(e) => {
            return crate::failed(
                cli,
                exit::FAILED,
                &format!("cannot read the rollout store: {e}"),
            );
        }
    };
    if loaded.spec.route.backend == Backend::Local {
        // A local route lives inside its `run`: only the store can say who runs it.
        if let Some(l) = &holder {
            out!(
                "rollout {} running, lease held by {} since {} (expires {}); the local route lives inside that run",
                l.rollout.as_deref().unwrap_or("?"),
                l.holder,
                meshkit::store::utc(l.since),
                meshkit::store::utc(l.expires)
            );
            return exit::OK;
        }
    }
    // A load balancer's status reads the route alone: its target groups need not
    // resolve (one may have been deleted since).
    let (router, rr): (Arc<dyn TrafficRouter>, RouteRef) = if matches!(
        loaded.spec.route.backend,
        Backend::Alb | Backend::Nlb | Backend::Lattice
    ) {
        let sdk = match aws_env::sdk(cli).await {
            Ok(sdk) => sdk,
            Err(e) => {
                return crate::failed(cli, exit::INVALID, &e.to_string());
            }
        };
        let Ok(rr) = RouteRef::new(build::route_name(&loaded.spec)) else {
            return exit::INVALID;
        };
        let router: Arc<dyn TrafficRouter> = if loaded.spec.route.backend == Backend::Lattice {
            Arc::new(crate::lattice::router(&loaded.spec, &sdk))
        } else {
            Arc::new(crate::elb::router(&loaded.spec, &sdk))
        };
        (router, rr)
    } else {
        match open(cli, loaded).await {
            Ok(o) => (o.router, o.route),
            Err(code) => return code,
        }
    };
    match router.read(&rr).await {
        Ok(now) => {
            if cli.json {
                let lease = holder.as_ref().map(|l| json!({
                    "holder": l.holder.name, "host": l.holder.host, "pid": l.holder.pid,
                    "since": meshkit::store::utc(l.since), "expires": meshkit::store::utc(l.expires),
                    "rollout": l.rollout, "token": l.token,
                }));
                out!(
                    "{}",
                    json!({"route": rr.as_str(), "weights": now.weights.to_string(),
                           "revision": now.revision, "lease": lease})
                );
            } else {
                let what = if loaded.spec.route.backend == Backend::Appmesh {
                    "version"
                } else {
                    "revision"
                };
                out!(
                    "{rr}: {} ({what} {})",
                    now.weights,
                    now.revision.as_deref().unwrap_or("?")
                );
                match &holder {
                    Some(l) => out!(
                        "rollout {} running, lease held by {} since {} (expires {})",
                        l.rollout.as_deref().unwrap_or("?"),
                        l.holder,
                        meshkit::store::utc(l.since),
                        meshkit::store::utc(l.expires)
                    ),
                    None => out!("no rollout running (the route's lease is free)"),
                }
            }
            exit::OK
        }
        Err(e) => crate::failed(cli, exit::FAILED, &e.to_string()),
    }
}

/// Sets `new_percent` on the new version (100: promote, 0: roll back) with the
/// runner's guarantees: retried, read back, and refused if the route changes between
/// the read this command shows and the write.
/// How long a gate is waited for: two of the spec's check intervals and 5 s.
fn gate_wait(loaded: &Loaded) -> std::time::Duration {
    let interval = loaded
        .spec
        .policy
        .check_interval
        .as_ref()
        .map_or(std::time::Duration::from_secs(10), |d| d.value);
    interval * 2 + std::time::Duration::from_secs(5)
}

/// `pause` / `resume`: a gate for the running rollout, through the store.
pub(crate) async fn gate(cli: &Cli, loaded: &Loaded, gate: meshkit::store::Gate) -> u8 {
    let key = build::store_key(&loaded.spec);
    match crate::store::ask(cli, &key, gate, gate_wait(loaded)).await {
        Ok(asked) => crate::store::said(cli, gate, &asked),
        Err(e) => crate::failed(cli, exit::FAILED, &format!("cannot record the {gate}: {e}")),
    }
}

/// Sets `new_percent` on the new version (100: promote, 0: roll back). While a
/// rollout runs on the route (its lease is held), this is a gate recorded in the
/// store for the process running it, which applies it at its next check round.
pub(crate) async fn set(cli: &Cli, loaded: &Loaded, new_percent: u8, force: bool) -> u8 {
    let gate = if new_percent == 100 {
        meshkit::store::Gate::Promote
    } else {
        meshkit::store::Gate::Rollback
    };
    let key = build::store_key(&loaded.spec);
    match crate::store::ask(cli, &key, gate, gate_wait(loaded)).await {
        Ok(crate::store::Asked::NoHolder) if loaded.spec.route.backend == Backend::EcsNative => {
            crate::native::set_directly(cli, loaded, new_percent == 100).await
        }
        Ok(crate::store::Asked::NoHolder) => set_directly(cli, loaded, new_percent, force).await,
        // An ECS judge that does not answer (crashed, its lease not expired yet): a
        // rollback cannot wait for it; ECS is asked directly (the safe direction).
        Ok(asked @ crate::store::Asked::Waiting(_))
            if loaded.spec.route.backend == Backend::EcsNative && new_percent == 0 =>
        {
            let _ = crate::store::said(cli, gate, &asked);
            err!("meshkit: the judge did not apply the rollback: asking ECS directly");
            crate::native::set_directly(cli, loaded, false).await
        }
        Ok(asked) => crate::store::said(cli, gate, &asked),
        Err(e) => crate::failed(
            cli,
            exit::FAILED,
            &format!("cannot read the rollout store: {e}; nothing written"),
        ),
    }
}

/// Sets `new_percent` on the new version with the
/// runner's guarantees: retried, read back, and refused if the route changes between
/// the read this command shows and the write.
async fn set_directly(cli: &Cli, loaded: &Loaded, new_percent: u8, force: bool) -> u8 {
    let opened = match open(cli, loaded).await {
        Ok(o) => o,
        Err(code) => return code,
    };
    let (router, rr, spec) = (
        opened.router.clone(),
        opened.route.clone(),
        opened.spec.clone(),
    );
    let (stable, new) = build::versions(&spec);
    let before = match router.read(&rr).await {
        Ok(b) => b,
        Err(e) => {
            return crate::failed(
                cli,
                exit::FAILED,
                &format!("cannot read {rr}: {e}; nothing written"),
            );
        }
    };
    // Already there (a promotion that took the stable node off the route included):
    // nothing to write, and writing would put the stable node back.
    let there = if new_percent == 100 {
        before.weights.is_all_on(new)
    } else {
        before.weights.is_all_on(stable)
    };
    if there {
        if cli.json {
            out!(
                "{}",
                json!({"route": rr.as_str(), "before": before.weights.to_string(),
                       "weights": before.weights.to_string(), "written": false})
            );
        } else {
            out!(
                "{rr}: {} (already in force, nothing written)",
                before.weights
            );
        }
        return exit::OK;
    }
    // Other targets on the route (a spare target group) stay on it, at weight 0.
    let others: Vec<&str> = before
        .weights
        .iter()
        .map(|(n, _)| n)
        .filter(|n| *n != stable && *n != new)
        .collect();
    let share = if new_percent == 100 {
        Percent::ALL
    } else {
        Percent::ZERO
    };
    let target = match Weights::split_with(stable, new, share, others) {
        Ok(t) => t,
        Err(e) => {
            let message = format!(
                "{rr} is at {}: the change cannot be written ({e}); nothing written",
                before.weights
            );
            return crate::failed(cli, exit::FAILED, &message);
        }
    };
    // On a load balancer, all traffic goes to a target group only when it has a
    // healthy target (after a promotion the stable version's service may be retired).
    let to = if new_percent == 100 { new } else { stable };
    if !force {
        match opened.healthy(to).await {
            Some(Ok(0)) => {
                return crate::failed(
                    cli,
                    exit::FAILED,
                    &format!(
                        "target group {to} has no healthy target: all traffic sent there would fail; nothing written (--force writes anyway)"
                    ),
                );
            }
            Some(Err(e)) => {
                return crate::failed(
                    cli,
                    exit::FAILED,
                    &format!(
                        "cannot read the health of {to}: {e}; nothing written (--force writes anyway)"
                    ),
                );
            }
            Some(Ok(_)) | None => {}
        }
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let token = client_token(
        &build::rollout_id(&loaded.spec),
        &format!("m{new_percent}-{stamp}"),
    );
    let result = SetWeights::new(router, rr.clone(), target)
        .expect(before.clone())
        .token(token)
        .apply()
        .await;
    match result {
        Ok(report) if !report.data_plane.settled() => {
            let message = format!(
                "{rr}: {} -> {} written and read back, but the data plane was not seen applying it: {}",
                before.weights, report.after.weights, report.data_plane
            );
            crate::failed(cli, exit::FAILED, &message)
        }
        Ok(report) => {
            let what = if report.written {
                "written and read back"
            } else {
                "already in force, nothing written"
            };
            if cli.json {
                out!(
                    "{}",
                    json!({"route": rr.as_str(), "before": before.weights.to_string(),
                           "weights": report.after.weights.to_string(),
                           "written": report.written})
                );
            } else {
                out!(
                    "{rr}: {} -> {} ({what})",
                    before.weights,
                    report.after.weights
                );
            }
            exit::OK
        }
        Err(e) => {
            let in_force = e
                .in_force()
                .map_or_else(|| "unknown".to_string(), ToString::to_string);
            crate::failed(cli, exit::FAILED, &format!("{e} (in force: {in_force})"))
        }
    }
}
