//! The built-in HTTP probe check.

use std::ops::RangeInclusive;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{CheckContext, HealthCheck, Verdict};
use crate::error::ConfigError;

/// Probes a URL with plain-HTTP GET requests: healthy when at least `min_success_ratio`
/// of `requests` answer with a status in the expected range within the timeout.
///
/// A refused connection or a timeout counts as a failed request (the version is not
/// serving). Only `http://` URLs are supported; probe the service inside the mesh or on
/// its task's address.
///
/// ```
/// use std::time::Duration;
/// use meshkit::health::HttpCheck;
///
/// let check = HttpCheck::builder("http://127.0.0.1:8080/health")
///     .requests(5)
///     .min_success_ratio(0.8)
///     .timeout(Duration::from_secs(2))
///     .build()?;
/// # Ok::<(), meshkit::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct HttpCheck {
    name: String,
    uri: Uri,
    statuses: RangeInclusive<u16>,
    timeout: Duration,
    requests: u32,
    min_success_ratio: f64,
    client: Client<HttpConnector, Empty<Bytes>>,
}

/// Builder for [`HttpCheck`].
#[derive(Debug, Clone)]
pub struct HttpCheckBuilder {
    url: String,
    name: Option<String>,
    statuses: RangeInclusive<u16>,
    timeout: Duration,
    requests: u32,
    min_success_ratio: f64,
}

impl HttpCheck {
    /// Starts a builder for a check of `url`.
    pub fn builder(url: impl Into<String>) -> HttpCheckBuilder {
        HttpCheckBuilder {
            url: url.into(),
            name: None,
            statuses: 200..=299,
            timeout: Duration::from_secs(2),
            requests: 1,
            min_success_ratio: 1.0,
        }
    }

    async fn probe(&self) -> Result<u16, String> {
        let fut = self.client.get(self.uri.clone());
        match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => Err(format!("timed out after {:?}", self.timeout)),
            Ok(Err(e)) => {
                // The innermost cause in words ("Connection refused (os error 111)"),
                // with the address probed: hyper's own text is "client error (Connect)".
                let mut cause = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    cause = s.to_string();
                    source = s.source();
                }
                Err(format!("{}: {cause}", self.uri))
            }
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                // Drain the body so the connection can be reused; its content is not judged.
                let _ = tokio::time::timeout(self.timeout, resp.into_body().collect()).await;
                Ok(status)
            }
        }
    }
}

impl HttpCheckBuilder {
    /// The name used in events and logs. Default: `http <url>`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The statuses that count as success. Default: `200..=299`.
    pub fn expect_status(mut self, statuses: RangeInclusive<u16>) -> Self {
        self.statuses = statuses;
        self
    }

    /// The timeout for each request. Default: 2 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many requests each evaluation makes (sequentially). Default: 1; at most 100.
    pub fn requests(mut self, requests: u32) -> Self {
        self.requests = requests;
        self
    }

    /// The share of requests that must succeed, from 0.0 (exclusive) to 1.0. Default: 1.0.
    pub fn min_success_ratio(mut self, ratio: f64) -> Self {
        self.min_success_ratio = ratio;
        self
    }

    /// Validates and builds the check.
    pub fn build(self) -> Result<HttpCheck, ConfigError> {
        let bad = |why: &str| ConfigError::Check(format!("http check {}: {why}", self.url));
        let uri: Uri = self.url.parse().map_err(|_| bad("not a valid URL"))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(bad("only http://host[:port]/path URLs are supported"));
        }
        if self.statuses.is_empty() || *self.statuses.start() < 100 || *self.statuses.end() > 599 {
            return Err(bad("expected status range must lie within 100-599"));
        }
        if self.timeout.is_zero() {
            return Err(bad("timeout must be positive"));
        }
        if self.requests == 0 || self.requests > 100 {
            return Err(bad("requests must be 1-100"));
        }
        if !(self.min_success_ratio > 0.0 && self.min_success_ratio <= 1.0) {
            return Err(bad("min_success_ratio must be in (0, 1]"));
        }
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(HttpCheck {
            name: self.name.unwrap_or_else(|| format!("http {}", self.url)),
            uri,
            statuses: self.statuses,
            timeout: self.timeout,
            requests: self.requests,
            min_success_ratio: self.min_success_ratio,
            client,
        })
    }
}

#[async_trait]
impl HealthCheck for HttpCheck {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self, _ctx: &CheckContext) -> Verdict {
        let mut ok = 0u32;
        let mut last_problem = String::new();
        for _ in 0..self.requests {
            match self.probe().await {
                Ok(s) if self.statuses.contains(&s) => ok += 1,
                Ok(s) => last_problem = format!("status {s}"),
                Err(e) => last_problem = e,
            }
        }
        let ratio = f64::from(ok) / f64::from(self.requests);
        if ratio >= self.min_success_ratio {
            Verdict::Healthy
        } else {
            Verdict::unhealthy(format!(
                "{ok}/{} requests succeeded (need {:.0}%); last: {last_problem}",
                self.requests,
                self.min_success_ratio * 100.0
            ))
        }
    }
}
