//! The traffic client: requests a URL at a steady rate, tallies the
//! `service:version` of each JSON answer, and prints the original client's line
//! `<status> <statusText> <report>` after every answer, then a summary.
#![warn(missing_docs)]

mod tally;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::{Request, Uri};
use http_body_util::Empty;
use sample_support::client::{new_client, read_limited};
use tokio::sync::Semaphore;
use tokio::time::{Instant, MissedTickBehavior};

pub use tally::{Summary, Tally};

/// Command-line options.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "traffic-client",
    version,
    about = "Sends steady traffic and tallies which service:version answered."
)]
pub struct Options {
    /// Host name (requests `http://<host>/`) or a full http:// URL.
    pub target: String,
    /// Requests per second.
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Stop after this many requests.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Stop sending after this long (e.g. `30s`, `2m`, `500ms`).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Per-request timeout.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub timeout: Duration,
    /// Print the final summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Do not print a line per answer.
    #[arg(long)]
    pub quiet: bool,
}

impl Options {
    /// The URL to request.
    pub fn url(&self) -> Result<Uri, String> {
        let s = if self.target.contains("://") {
            self.target.clone()
        } else {
            format!("http://{}", self.target)
        };
        let uri: Uri = s
            .parse()
            .map_err(|e| format!("'{}' is not a host or URL: {e}", self.target))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(format!(
                "'{}': only http:// targets are supported",
                self.target
            ));
        }
        Ok(uri)
    }

    /// Checks the numbers.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.rate > 0.0 && self.rate <= 100_000.0) {
            return Err("--rate must be above 0 and at most 100000".into());
        }
        if self.concurrency == 0 {
            return Err("--concurrency must be at least 1".into());
        }
        self.url().map(|_| ())
    }
}

/// Parses `500ms`, `30s`, `2m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration like 500ms, 30s or 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("'{s}': unknown unit '{unit}' (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("'{s}' is not a valid duration"))
}

/// Runs the client, writing lines to `out`, and returns the summary. Stops after
/// `requests`, or after `duration` (in-flight requests still finish); without either,
/// runs until the process is stopped.
pub async fn run(opts: &Options, out: Arc<Mutex<dyn Write + Send>>) -> Result<Summary, String> {
    run_until(opts, out, std::future::pending()).await
}

/// Like [`run`], and also stops sending when `stop` completes.
pub async fn run_until(
    opts: &Options,
    out: Arc<Mutex<dyn Write + Send>>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Summary, String> {
    opts.validate()?;
    tokio::pin!(stop);
    let url = opts.url()?;
    let client = new_client();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let permits = Arc::new(Semaphore::new(opts.concurrency));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / opts.rate));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let stop_at = opts.duration.map(|d| Instant::now() + d);
    let mut tasks = tokio::task::JoinSet::new();
    let mut sent = 0u64;
    loop {
        if opts.requests.is_some_and(|n| sent >= n) {
            break;
        }
        tokio::select! {
            _ = ticker.tick() => {},
            () = sleep_until_opt(stop_at) => break,
            () = &mut stop => break,
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        sent += 1;
        let (client, url, tally, out) = (client.clone(), url.clone(), tally.clone(), out.clone());
        let (timeout, quiet) = (opts.timeout, opts.quiet);
        tasks.spawn(async move {
            let _permit = permit;
            let mut req = Request::new(Empty::<Bytes>::new());
            *req.uri_mut() = url;
            let answer = tokio::time::timeout(timeout, async {
                let resp = client.request(req).await.map_err(|e| e.to_string())?;
                let status = resp.status();
                let body = read_limited(resp.into_body(), 1024 * 1024)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>((status, body))
            })
            .await
            .unwrap_or_else(|_| Err(format!("timed out after {timeout:?}")));
            let line = {
                let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
                match &answer {
                    Ok((status, body)) => {
                        match key(status.is_success(), body) {
                            Some(k) => t.add(k),
                            None => t.add_error(),
                        }
                        format!(
                            "{} {} {}",
                            status.as_u16(),
                            status.canonical_reason().unwrap_or(""),
                            t.report()
                        )
                    }
                    Err(e) => {
                        t.add_error();
                        format!("ERR {e} {}", t.report())
                    }
                }
            };
            if !quiet {
                let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
                let _ = writeln!(o, "{line}");
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let summary = tally.lock().unwrap_or_else(|e| e.into_inner()).summary();
    Ok(summary)
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `service:version` from a successful JSON answer, or `None`.
fn key(success: bool, body: &[u8]) -> Option<String> {
    if !success {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let field = |name: &str| match v.get(name)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    };
    Some(format!("{}:{}", field("service")?, field("version")?))
}
