//! `meshkit-demo`: a live canary on the local embedded mesh. See the README.
//!
//! Exit codes: 0 promoted, 3 rolled back, 4 stopped with an error, 2 bad arguments,
//! 1 could not start.

mod args;
mod display;
mod report;
mod scenario;
mod web;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use meshkit::traffic::local::LocalMesh;
use tokio::sync::watch;

use crate::args::Args;
use meshkit::rollout::Event;

use crate::display::{Resize, Screen, Status, Target, event_line};
use crate::report::Report;
use crate::scenario::{Checks, HEALTH_PATH, ROUTE, rollout, start_service, validate_plan};

/// Why the demo could not run.
enum Failure {
    /// A bad argument or plan (exit 2).
    Args(String),
    /// Could not start (exit 1).
    Start(Box<dyn std::error::Error>),
}

impl<E: Into<Box<dyn std::error::Error>>> From<E> for Failure {
    fn from(e: E) -> Self {
        Self::Start(e.into())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = args.validate().and_then(|()| validate_plan(&args)) {
        eprintln!("meshkit-demo: {e}");
        return ExitCode::from(2);
    }
    if std::env::var_os("RUST_LOG").is_some() {
        sample_support::init_logs();
    }
    match run(args).await {
        Ok(code) => ExitCode::from(code),
        Err(Failure::Args(e)) => {
            eprintln!("meshkit-demo: {e}");
            ExitCode::from(2)
        }
        Err(Failure::Start(e)) => {
            eprintln!("meshkit-demo: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: Args) -> Result<u8, Failure> {
    let blue = start_service("blue", "1", 0.0, 0.0).await?;
    let green = start_service("green", "2", args.user_fail_rate(), args.health_fail_rate()).await?;
    let mesh = LocalMesh::builder()
        .route(
            ROUTE,
            "/split",
            [("blue", blue.addr), ("green", green.addr)],
        )
        .start()
        .await?;
    let checks = Checks::new(&args, green.addr);
    let web = match args.ui {
        Some(listen) => Some(web::Web::start(listen, ROUTE, mesh.metrics(ROUTE)).await?),
        None => None,
    };
    let rollout = rollout(&args, &mesh, &checks, web.as_ref().map(|w| w.store.clone()))
        .map_err(|e| Failure::Args(format!("invalid rollout: {e}")))?;
    // With --json, stdout carries only the summary.
    let mut screen = Screen::new(if args.json {
        Target::Stderr
    } else {
        Target::Stdout
    });
    let url = format!("http://{}/split", mesh.gateway_addr());
    screen.line(&format!("blue v1 on http://{}/", blue.addr));
    screen.line(&format!(
        "green v2 on http://{}/{}",
        green.addr,
        if args.broken {
            format!(
                " (broken: {:.0}% of user requests fail; {HEALTH_PATH} ok)",
                args.fail_rate * 100.0
            )
        } else if args.broken_probe {
            format!(
                " (broken: {HEALTH_PATH} fails, and {:.0}% of user requests)",
                args.fail_rate * 100.0
            )
        } else {
            String::new()
        },
    ));
    screen.line(&format!("mesh gateway {url}"));
    screen.line(&format!(
        "mesh metrics http://{}/metrics",
        mesh.admin_addr()
    ));
    screen.line(&format!(
        "{:?} rollout blue -> green: {} stages, traffic {} req/s",
        args.strategy,
        rollout.plan().len(),
        args.rate
    ));
    for l in checks.intro() {
        screen.line(&l);
    }
    if let Some(w) = &web {
        screen.line(&format!("web view: {}", w.view.link_route(Some(ROUTE))));
    }

    // Traffic: the traffic client, quiet, until told to stop.
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let opts = traffic_client::Options::parse_from([
        "traffic-client",
        &url,
        "--rate",
        &args.rate.to_string(),
        "--quiet",
        "--timeout",
        "2s",
    ]);
    let sink: Arc<Mutex<dyn std::io::Write + Send>> = Arc::new(Mutex::new(std::io::sink()));
    let traffic = tokio::spawn(async move {
        traffic_client::run_until(&opts, sink, async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        })
        .await
    });
    // Let a little traffic flow on blue first, so the display has something to show.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let metrics = mesh.metrics(ROUTE);
    let mut events = rollout.events();
    let started = tokio::time::Instant::now();
    let task = tokio::spawn(rollout.run());
    let mut status = Status::default();
    let mut refresh = tokio::time::interval(screen.refresh());
    let mut resize = Resize::new();
    loop {
        tokio::select! {
            e = events.recv_timed() => match e {
                Some((at, event)) => {
                    status.update(at, &event);
                    if let Some(text) = event_line(&event) {
                        screen.line(&format!("[{:6.1}s] {text}", at.as_secs_f64()));
                    }
                    if let (Event::RollbackStarted { .. }, Some(why)) = (&event, &status.why) {
                        screen.line(&format!("[{:6.1}s] {why}", at.as_secs_f64()));
                    }
                }
                None => break,
            },
            _ = refresh.tick() => screen.status(&status.rows(started.elapsed(), &metrics)),
            () = resize.next() => {
                screen.resized();
                screen.status(&status.rows(started.elapsed(), &metrics));
            }
        }
    }
    let result = task.await?;
    // Keep traffic flowing briefly to observe where it goes after the end.
    let before = mesh.totals(ROUTE).unwrap_or_default();
    tokio::time::sleep(if args.fast {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(2)
    })
    .await;
    let after = mesh.totals(ROUTE).unwrap_or_default();
    let _ = stop_tx.send(true);
    let summary = traffic.await?.map_err(|e| format!("traffic: {e}"))?;
    let report = Report::new(
        &result,
        &summary,
        &status,
        &before,
        &after,
        checks.describe(),
    );
    screen.line(&format!("final tally: {}", summary.report()));
    for l in report.lines() {
        screen.line(&l);
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    if let Some(w) = web {
        w.finish(|l| screen.line(l)).await;
    }
    mesh.shutdown().await;
    Ok(report.exit_code())
}
