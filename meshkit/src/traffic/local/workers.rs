//! The gateway's worker threads.
//!
//! Each worker runs its own single-threaded tokio runtime and serves the connections
//! the accept loop hands it, round robin. A downstream connection, its upstream
//! connections and their tasks all stay on one thread, as with nginx's and Envoy's
//! workers: no work stealing, no waking of another thread per request.

use std::net::TcpStream as StdStream;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use super::Shared;
use super::limit::{ConnLimit, Slot, accept_next};
use super::proxy::{ConnServer, Downstream, handle};

/// A connection handed to a worker, with its place under the gateway's cap.
type Handed = (StdStream, Slot);

/// A worker thread as the accept loop sees it.
pub(crate) struct Worker {
    conns: mpsc::UnboundedSender<Handed>,
    done: oneshot::Receiver<()>,
}

/// Starts `n` worker threads (at least one). Fails when a runtime or a thread cannot
/// be created.
pub(crate) fn start(
    n: usize,
    shared: &Arc<Shared>,
    limit: &Arc<ConnLimit>,
    stopped: &watch::Receiver<bool>,
) -> std::io::Result<Vec<Worker>> {
    (0..n.max(1))
        .map(|i| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (conns, rx) = mpsc::unbounded_channel();
            let (done_tx, done) = oneshot::channel();
            let (shared, limit, stopped) = (shared.clone(), limit.clone(), stopped.clone());
            std::thread::Builder::new()
                .name(format!("meshkit-mesh-{i}"))
                .spawn(move || {
                    rt.block_on(run(i, rx, shared, limit, stopped));
                    let _ = done_tx.send(());
                })?;
            Ok(Worker { conns, done })
        })
        .collect()
}

/// One worker: serves what it is handed until told to stop or the accept loop ends,
/// then lets in-flight requests finish (10 s at most).
async fn run(
    worker: usize,
    mut conns: mpsc::UnboundedReceiver<Handed>,
    shared: Arc<Shared>,
    limit: Arc<ConnLimit>,
    stopped: watch::Receiver<bool>,
) {
    let server = ConnServer::new(limit, stopped.clone());
    let mut stopped = stopped;
    let stop = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    tokio::pin!(stop);
    loop {
        let (conn, slot) = tokio::select! {
            c = conns.recv() => match c {
                Some(c) => c,
                None => break,
            },
            () = &mut stop => break,
        };
        match TcpStream::from_std(conn) {
            Ok(stream) => {
                let peer = stream.peer_addr().ok();
                let conn = Downstream::new(shared.clone(), worker, peer);
                server.serve(stream, slot, move |req| handle(conn.clone(), req));
            }
            Err(e) => tracing::warn!(error = %e, "local mesh worker cannot take a connection"),
        }
    }
    // Connections handed over but not served yet: close them, so their places under
    // the cap come back before the drain waits for them.
    conns.close();
    while conns.try_recv().is_ok() {}
    server.drain(Duration::from_secs(10)).await;
}

/// Accepts gateway connections and deals them out to `workers` in turn, until
/// `stopped`; then waits for the workers to drain.
pub(crate) async fn accept(
    listener: TcpListener,
    workers: Vec<Worker>,
    limit: Arc<ConnLimit>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut next = 0usize;
    while let Some((stream, slot)) = accept_next(&listener, &limit, &mut stopped).await {
        let Ok(std) = stream.into_std() else {
            continue;
        };
        let mut conn = (std, slot);
        // A worker whose thread has ended hands the connection back; try the others.
        let mut taken = false;
        for _ in 0..workers.len() {
            let Some(worker) = workers.get(next % workers.len()) else {
                break;
            };
            next = next.wrapping_add(1);
            match worker.conns.send(conn) {
                Ok(()) => {
                    taken = true;
                    break;
                }
                Err(mpsc::error::SendError(back)) => conn = back,
            }
        }
        if !taken {
            tracing::error!("no local mesh worker is running; connection closed");
        }
    }
    drop(listener);
    let mut done = Vec::new();
    for w in workers {
        drop(w.conns);
        done.push(w.done);
    }
    for d in done {
        let _ = d.await;
    }
}
