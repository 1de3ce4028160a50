//! A bare hyper 1 hello-world: the baseline the sample services are compared with.
//! Usage: `hyper-hello PORT`.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("hyper-hello on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = service_fn(|_req: Request<hyper::body::Incoming>| async {
                let mut r = Response::new(Full::new(Bytes::from_static(
                    br#"{"message":"ok","service":"hello","version":"1"}"#,
                )));
                r.headers_mut().insert(
                    "content-type",
                    "application/json; charset=utf-8"
                        .parse()
                        .unwrap_or_else(|_| {
                            hyper::header::HeaderValue::from_static("application/json")
                        }),
                );
                Ok::<_, Infallible>(r)
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
