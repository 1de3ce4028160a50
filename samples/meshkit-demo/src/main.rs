//! `meshkit-demo`: a live canary on the local embedded mesh. See the README.
//!
//! Exit codes: 0 promoted, 3 rolled back, 4 stopped with an error, 2 bad arguments,
//! 1 could not start.

mod args;
mod display;
mod report;
mod scenario;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use meshkit::traffic::local::LocalMesh;
use tokio::sync::watch;

use crate::args::Args;
use crate::display::{Screen, Status};
use crate::report::Report;
use crate::scenario::{ROUTE, rollout, start_service};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = args.validate() {
        eprintln!("meshkit-demo: {e}");
        return ExitCode::from(2);
    }
    if std::env::var_os("RUST_LOG").is_some() {
        sample_support::init_logs();
    }
    match run(args).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("meshkit-demo: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: Args) -> Result<u8, Box<dyn std::error::Error>> {
    let green_fail = if args.broken { args.fail_rate } else { 0.0 };
    let blue = start_service("blue", "1", 0.0).await?;
    let green = start_service("green", "2", green_fail).await?;
    let mesh = LocalMesh::builder()
        .route(
            ROUTE,
            "/split",
            [("blue", blue.addr), ("green", green.addr)],
        )
        .start()
        .await?;
    let rollout = rollout(&args, &mesh, green.addr).map_err(|e| format!("invalid rollout: {e}"))?;
    let mut screen = Screen::new(std::io::stdout().is_terminal() && !args.json);
    let url = format!("http://{}/split", mesh.gateway_addr());
    screen.line(&format!(
        "blue v1 on {}, green v2 on {}{}; mesh gateway {url}, metrics http://{}/metrics",
        blue.addr,
        green.addr,
        if args.broken {
            format!(" (broken: {:.0}% of requests fail)", green_fail * 100.0)
        } else {
            String::new()
        },
        mesh.admin_addr()
    ));
    screen.line(&format!(
        "{:?} rollout blue -> green: {} stages, traffic {} req/s",
        args.strategy,
        rollout.plan().len(),
        args.rate
    ));

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
    loop {
        tokio::select! {
            e = events.recv_timed() => match e {
                Some((at, event)) => {
                    status.update(at, &event);
                    if !matches!(event, meshkit::rollout::Event::Verdict { verdict: meshkit::health::Verdict::Healthy, .. }) {
                        screen.line(&format!("[{:6.1}s] {event}", at.as_secs_f64()));
                    }
                }
                None => break,
            },
            _ = refresh.tick() => screen.status(&status.line(started.elapsed(), &metrics)),
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
    let report = Report::new(&result, &summary, &status, &before, &after);
    screen.line(&format!("final tally: {}", summary.report()));
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        for l in report.lines() {
            screen.line(&l);
        }
    }
    mesh.shutdown().await;
    Ok(report.exit_code())
}
