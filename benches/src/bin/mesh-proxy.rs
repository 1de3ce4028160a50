//! The local mesh as a standalone proxy, for the data-plane comparison with nginx.
//! Usage: `mesh-proxy LISTEN_PORT ADMIN_PORT name=host:port:weight [name=host:port:weight ...]`.
//! `MESH_WORKERS` sets the gateway's worker threads (default: one per core, at most 4);
//! the accept loop and the admin listener run on a single-threaded runtime.

use std::net::SocketAddr;

use meshkit::traffic::Weights;
use meshkit::traffic::local::LocalMesh;

fn parse(spec: &str) -> Option<(String, SocketAddr, u32)> {
    let (name, rest) = spec.split_once('=')?;
    let (addr, weight) = rest.rsplit_once(':')?;
    Some((name.to_owned(), addr.parse().ok()?, weight.parse().ok()?))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let workers = std::env::var("MESH_WORKERS")
        .ok()
        .and_then(|t| t.parse::<usize>().ok());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(workers))
}

async fn run(workers: Option<usize>) -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: mesh-proxy LISTEN_PORT ADMIN_PORT name=host:port:weight...";
    let port: u16 = args.first().and_then(|p| p.parse().ok()).ok_or(usage)?;
    let admin: u16 = args.get(1).and_then(|p| p.parse().ok()).ok_or(usage)?;
    let targets: Vec<(String, SocketAddr, u32)> = args[2..]
        .iter()
        .map(|s| parse(s).ok_or(usage))
        .collect::<Result<_, _>>()?;
    let weights = Weights::new(targets.iter().map(|(n, _, w)| (n.clone(), *w)))?;
    let mut builder = LocalMesh::builder();
    if let Some(n) = workers {
        builder = builder.workers(n);
    }
    let mesh = builder
        .gateway(SocketAddr::from(([127, 0, 0, 1], port)))
        .admin(SocketAddr::from(([127, 0, 0, 1], admin)))
        .route(
            "bench",
            "/",
            targets.iter().map(|(n, a, _)| (n.clone(), *a)),
        )
        .weights("bench", weights)
        .start()
        .await?;
    println!(
        "mesh-proxy on {} (admin {})",
        mesh.gateway_addr(),
        mesh.admin_addr()
    );
    // SIGINT or SIGTERM: stop accepting, let requests in flight finish, exit 0.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    mesh.shutdown().await;
    Ok(())
}
