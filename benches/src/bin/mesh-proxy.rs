//! The local mesh as a standalone proxy, for the data-plane comparison with nginx.
//! Usage: `mesh-proxy LISTEN_PORT ADMIN_PORT name=host:port:weight [name=host:port:weight ...]`.
//! `MESH_THREADS` sets the tokio worker threads (default: one per core).

use std::net::SocketAddr;

use meshkit::traffic::Weights;
use meshkit::traffic::local::LocalMesh;

fn parse(spec: &str) -> Option<(String, SocketAddr, u32)> {
    let (name, rest) = spec.split_once('=')?;
    let (addr, weight) = rest.rsplit_once(':')?;
    Some((name.to_owned(), addr.parse().ok()?, weight.parse().ok()?))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // MESH_THREADS: worker threads (default: one per core).
    let threads = std::env::var("MESH_THREADS")
        .ok()
        .and_then(|t| t.parse::<usize>().ok());
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        rt.worker_threads(n.max(1));
    }
    rt.enable_all().build()?.block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: mesh-proxy LISTEN_PORT ADMIN_PORT name=host:port:weight...";
    let port: u16 = args.first().and_then(|p| p.parse().ok()).ok_or(usage)?;
    let admin: u16 = args.get(1).and_then(|p| p.parse().ok()).ok_or(usage)?;
    let targets: Vec<(String, SocketAddr, u32)> = args[2..]
        .iter()
        .map(|s| parse(s).ok_or(usage))
        .collect::<Result<_, _>>()?;
    let weights = Weights::new(targets.iter().map(|(n, _, w)| (n.clone(), *w)))?;
    let mesh = LocalMesh::builder()
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
    tokio::signal::ctrl_c().await?;
    mesh.shutdown().await;
    Ok(())
}
