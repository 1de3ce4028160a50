//! `meshkit run`: the rollout, its events on stdout, signals, and the exit code.

use std::io::IsTerminal;
use std::sync::Arc;

use meshkit::rollout::Event;
use meshkit::traffic::TrafficRouter;
use meshkit::traffic::appmesh::AppMeshRouter;
use meshkit::traffic::local::LocalMesh;
use meshkit::{Outcome, RolloutError};
use serde_json::json;

use crate::load::{Loaded, rollout_builder};
use crate::signals::{Signal, Signals};
use crate::spec::{Backend, CheckKind, Spec};
use crate::{Cli, aws_env, build, exit};

fn needs_aws(spec: &Spec) -> bool {
    spec.route.backend != Backend::Local
        || spec
            .checks
            .iter()
            .any(|c| matches!(c.kind, CheckKind::Cloudmap | CheckKind::Envoy5xx))
}

/// Runs the rollout of `loaded`; returns the exit code.
pub(crate) async fn run(
    cli: &Cli,
    loaded: &Loaded,
    adopt: bool,
    wait: Option<std::time::Duration>,
    ui: Option<std::net::SocketAddr>,
) -> u8 {
    let spec = &loaded.spec;
    if spec.route.backend == Backend::EcsNative {
        return crate::native::run(cli, loaded, wait, ui).await;
    }
    // The store first: who holds the route is said before anything starts (a local
    // gateway binding its port, a load balancer's preflight).
    let holder = match crate::store::holder(cli) {
        Ok(h) => h,
        Err(e) => return crate::failed(cli, exit::INVALID, &e),
    };
    let store = match crate::store::open_coded(cli).await {
        Ok(s) => s,
        Err((code, e)) => return crate::failed(cli, code, &e),
    };
    let key = build::store_key(spec);
    match store.lease(&key).await {
        Ok(Some(l)) => {
            let held = meshkit::store::StoreError::Held {
                route: key.clone(),
                holder: Box::new(l.holder.clone()),
                since: l.since,
                expires: l.expires,
                rollout: l.rollout.clone(),
            };
            match wait {
                None => return crate::failed(cli, exit::FAILED, &held.to_string()),
                Some(w) => err!("meshkit: {held}; waiting up to {w:?} for the lease"),
            }
            if spec.route.backend == Backend::Local {
                // The holder's gateway has the port: wait here, before binding it.
                let until = tokio::time::Instant::now() + wait.unwrap_or_default();
                loop {
                    match store.lease(&key).await {
                        Ok(None) => break,
                        Ok(Some(_)) if tokio::time::Instant::now() < until => {
                            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                        }
                        Ok(Some(_)) => return crate::failed(cli, exit::FAILED, &held.to_string()),
                        Err(e) => return crate::failed(cli, exit::FAILED, &e.to_string()),
                    }
                }
            }
        }
        Ok(None) => {}
        Err(e) => {
            return crate::failed(cli, exit::FAILED, &format!("the rollout store: {e}"));
        }
    }
    let sdk = if needs_aws(spec) {
        match aws_env::sdk(cli).await {
            Ok(sdk) => Some(sdk),
            Err(e) => {
                err!("meshkit: {e}");
                return exit::INVALID;
            }
        }
    } else {
        None
    };
    // A load balancer or Lattice route: preflight, and the versions' target groups by
    // name.
    let (mut elb_router, resolved): (Option<Arc<dyn TrafficRouter>>, _) =
        match (spec.route.backend, &sdk) {
            (Backend::Alb | Backend::Nlb, Some(sdk)) => {
                match crate::elb::connect(spec, sdk, true).await {
                    Ok(elb) => (Some(Arc::new(elb.router)), Some((elb.spec, elb.groups))),
                    Err(e) => {
                        return crate::failed(cli, exit::FAILED, &format!("cannot start: {e}"));
                    }
                }
            }
            (Backend::Lattice, Some(sdk)) => match crate::lattice::connect(spec, sdk, true).await {
                Ok(l) => (Some(Arc::new(l.router)), Some((l.spec, l.groups))),
                Err(e) => {
                    return crate::failed(cli, exit::FAILED, &format!("cannot start: {e}"));
                }
            },
            _ => (None, None),
        };
    let spec = resolved.as_ref().map_or(spec, |r| &r.0);
    let groups = resolved.as_ref().map(|r| r.1.clone()).unwrap_or_default();
    let (stable, new) = build::versions(spec);
    let mut local_mesh = None;
    let router: Arc<dyn TrafficRouter> = match (spec.route.backend, elb_router.take()) {
        (Backend::Alb | Backend::Nlb | Backend::Lattice, Some(router)) => router,
        (Backend::Appmesh, _) => {
            let Some(sdk) = &sdk else {
                return exit::INVALID;
            };
            let router = AppMeshRouter::new(meshkit::sdk::appmesh::Client::new(sdk));
            let resume = spec.policy.resume.unwrap_or(true);
            let Some(route) = build::appmesh_route(spec) else {
                return exit::INVALID;
            };
            if let Err(e) = router.preflight(&route, stable, new, resume).await {
                return crate::failed(cli, exit::FAILED, &format!("cannot start: {e}"));
            }
            Arc::new(router)
        }
        _ => {
            let Ok(Some([listen, stable_addr, new_addr])) = build::local_addrs(spec) else {
                return exit::INVALID;
            };
            let started = LocalMesh::builder()
                .gateway(listen)
                .route("local", "/", [(stable, stable_addr), (new, new_addr)])
                .start()
                .await;
            match started {
                Ok(mesh) => {
                    let router = Arc::new(mesh.router());
                    err!(
                        "meshkit: local mesh gateway on http://{}/",
                        mesh.gateway_addr()
                    );
                    local_mesh = Some(mesh);
                    router
                }
                Err(e) => {
                    err!("meshkit: cannot start the local mesh: {e}");
                    return exit::FAILED;
                }
            }
        }
    };
    let metrics = local_mesh.as_ref().map(|m| m.metrics("local"));
    let checks = match build::checks(spec, sdk.as_ref(), metrics.as_ref(), &groups) {
        Ok(c) => c,
        Err(e) => {
            err!("meshkit: invalid spec: {e}");
            return exit::INVALID;
        }
    };
    let view = match ui {
        Some(addr) => {
            let served = metrics.clone().map(|m| (key.clone(), m));
            match crate::ui::start(store.clone(), addr, served, meshkit::ui::DEFAULT_POLL).await {
                Ok(v) => {
                    crate::ui::announce(cli, &v, Some(&key));
                    Some(v)
                }
                Err((code, e)) => return crate::failed(cli, code, &format!("--ui: {e}")),
            }
        }
        None => None,
    };
    let rollout = match rollout_builder(spec, router, checks).and_then(|b| {
        let b = b
            .adopt(adopt)
            .store(store)
            .store_key(key.clone())
            .holder(holder);
        let b = match wait {
            Some(w) => b.wait_for_lease(w),
            None => b,
        };
        b.build().map_err(build::config_error_in(spec))
    }) {
        Ok(r) => r,
        Err(e) => {
            err!("meshkit: invalid spec: {e}");
            return exit::INVALID;
        }
    };
    let events = rollout.events();
    let handle = rollout.handle();
    let code = supervise(cli.json, rollout.run(), handle, events, stable, new).await;
    crate::ui::finish(view).await;
    code
}

/// Runs `run` to its end with its events on stdout, the signals handled (Ctrl-C
/// asks, SIGTERM and SIGHUP abort through `handle`), and returns the exit code.
pub(crate) async fn supervise(
    json: bool,
    run: impl std::future::Future<Output = Result<Outcome, RolloutError>>,
    handle: meshkit::RolloutHandle,
    mut events: meshkit::rollout::Events,
    stable: &str,
    new: &str,
) -> u8 {
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            err!("meshkit: cannot install signal handlers, not starting: {e}");
            return exit::FAILED;
        }
    };
    let printer = tokio::spawn(async move {
        while let Some((at, event)) = events.recv_timed().await {
            print_event(json, at, &event);
        }
    });
    tokio::pin!(run);
    let (answer_tx, mut answer) = tokio::sync::mpsc::unbounded_channel::<bool>();
    // The first signal, and the one that made the run roll back (for the exit code).
    let mut first: Option<Signal> = None;
    let mut ended_by: Option<Signal> = None;
    let result = loop {
        tokio::select! {
            result = &mut run => break result,
            Some(roll_back) = answer.recv() => {
                if !roll_back {
                    err!("meshkit: leaving the route as it is");
                    return exit::INTERRUPTED;
                }
                let _ = handle.abort();
                ended_by = Some(Signal::Interrupt);
                err!("meshkit: rolling back");
            }
            signal = signals.next() => {
                if let Some(earlier) = first {
                    err!(
                        "meshkit: {} again while ending after {}: exiting now; the route \
                         may be left between versions (check it with `meshkit status`)",
                        signal.name(),
                        earlier.name()
                    );
                    return signal.code();
                }
                first = Some(signal);
                if signal == Signal::Interrupt && std::io::stdin().is_terminal() {
                    let tx = answer_tx.clone();
                    tokio::spawn(async move {
                        let _ = tx.send(ask_roll_back().await);
                    });
                } else {
                    // Abort first: the terminal may be gone (SIGHUP), and a message
                    // must never stand between the signal and the rollback.
                    let _ = handle.abort();
                    ended_by = Some(signal);
                    err!(
                        "meshkit: {}, rolling back (send it again to exit at once)",
                        signal.name()
                    );
                }
            }
        }
    };
    let _ = printer.await;
    finish(json, stable, new, &result, ended_by)
}

/// Prints the outcome and returns the exit code.
fn finish(
    json: bool,
    stable: &str,
    new: &str,
    result: &Result<Outcome, RolloutError>,
    ended_by: Option<Signal>,
) -> u8 {
    // `meshkit promote` / `meshkit rollback` from another shell are manual gates: the
    // run sees another writer and stops without touching the route; say which gate.
    let manual = match result {
        Err(RolloutError::ConcurrentWriter { found, .. }) => {
            if found.is_all_on(new) {
                Some(("promoted by hand", exit::OK))
            } else if found.is_all_on(stable) {
                Some(("rolled back by hand", exit::ROLLED_BACK))
            } else {
                None
            }
        }
        _ => None,
    };
    let code = match (result, manual, ended_by) {
        (_, Some((_, code)), _) => code,
        (Ok(Outcome::Promoted { .. }), _, _) => exit::OK,
        (Ok(Outcome::RolledBack { .. }), _, Some(signal)) => signal.code(),
        (Ok(Outcome::RolledBack { .. }), _, None) => exit::ROLLED_BACK,
        (Err(_), _, _) => exit::FAILED,
    };
    match (result, manual) {
        (Err(e), Some((what, _))) if json => out!(
            "{}",
            json!({"outcome": what.replace(' ', "_"), "detail": e.to_string(), "exit": code})
        ),
        (Err(e), Some((what, _))) => out!("{what}: {e}"),
        (Ok(o), _) if json => out!(
            "{}",
            json!({"outcome": if o.is_promoted() {"promoted"} else {"rolled_back"},
                   "weights": o.weights().to_string(), "detail": o.to_string(), "exit": code})
        ),
        (Ok(o), _) => out!("{o}"),
        (Err(e), None) if json => out!(
            "{}",
            json!({"outcome": "error", "error": e.to_string(),
                   "in_force": e.in_force().map(ToString::to_string), "exit": code})
        ),
        (Err(e), None) => out!("stopped: {e}"),
    }
    code
}

async fn ask_roll_back() -> bool {
    err_inline!("\nmeshkit: roll back now [R], or leave the route as it is [l]? ");
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await;
    !matches!(answer, Ok(Ok(l)) if l.trim().eq_ignore_ascii_case("l"))
}

fn print_event(json: bool, at: std::time::Duration, event: &Event) {
    if json {
        let debug = format!("{event:?}");
        let kind: String = debug
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        out!(
            "{}",
            json!({"t_ms": at.as_millis() as u64, "event": kind, "message": event.to_string()})
        );
    } else {
        out!("[{:>7.1}s] {event}", at.as_secs_f64());
    }
}
