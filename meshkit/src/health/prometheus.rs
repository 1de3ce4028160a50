//! The Prometheus query check.

use std::ops::RangeInclusive;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{CheckContext, HealthCheck, Verdict};
use crate::error::ConfigError;

/// Runs a PromQL instant query against a Prometheus HTTP API and is healthy when the
/// result lies in a range. An empty result is inconclusive ("no data" is not healthy);
/// so is a query that returns more than one series (make it aggregate), an error from
/// Prometheus, or Prometheus being unreachable.
///
/// `{candidate}` and `{stable}` in the query are replaced by the target names, so one
/// query serves every rollout:
///
/// ```
/// use meshkit::health::PrometheusQuery;
///
/// let check = PrometheusQuery::builder(
///     "http://127.0.0.1:9090",
///     r#"sum(rate(meshkit_responses_total{target="{candidate}",class="5xx"}[1m]))
///        / sum(rate(meshkit_requests_total{target="{candidate}"}[1m]))"#,
/// )
/// .range(0.0..=0.01)
/// .build()?;
/// # Ok::<(), meshkit::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct PrometheusQuery {
    name: String,
    base: String,
    query: String,
    range: RangeInclusive<f64>,
    timeout: Duration,
    client: Client<HttpConnector, Empty<Bytes>>,
}

/// Builder for [`PrometheusQuery`].
#[derive(Debug, Clone)]
pub struct PrometheusQueryBuilder {
    base: String,
    query: String,
    range: RangeInclusive<f64>,
    timeout: Duration,
    name: Option<String>,
}

impl PrometheusQuery {
    /// A check of `query` against the Prometheus at `base_url` (e.g. `http://prom:9090`).
    pub fn builder(
        base_url: impl Into<String>,
        query: impl Into<String>,
    ) -> PrometheusQueryBuilder {
        PrometheusQueryBuilder {
            base: base_url.into(),
            query: query.into(),
            range: f64::NEG_INFINITY..=f64::INFINITY,
            timeout: Duration::from_secs(5),
            name: None,
        }
    }

    async fn value(&self, query: &str) -> Result<Option<f64>, String> {
        let url = format!("{}/api/v1/query?query={}", self.base, encode(query));
        let uri: Uri = url.parse().map_err(|e| format!("bad query URL: {e}"))?;
        let fetch = async {
            let resp = self
                .client
                .get(uri)
                .await
                .map_err(|e| format!("prometheus unreachable: {e}"))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), 4 * 1024 * 1024)
                .collect()
                .await
                .map_err(|e| format!("reading answer: {e}"))?;
            Ok::<_, String>((status, body.to_bytes()))
        };
        let (status, body) = tokio::time::timeout(self.timeout, fetch)
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))??;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| format!("answer is not JSON ({status}): {e}"))?;
        if v["status"] != "success" {
            return Err(format!(
                "query failed ({status}): {}",
                v["error"].as_str().unwrap_or("unknown error")
            ));
        }
        parse_result(&v["data"])
    }
}

/// The single value of an instant-query result; `None` when it is empty.
fn parse_result(data: &serde_json::Value) -> Result<Option<f64>, String> {
    let sample = match data["resultType"].as_str() {
        Some("scalar") => &data["result"],
        Some("vector") => {
            let series = data["result"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            match series {
                [] => return Ok(None),
                [one] => &one["value"],
                many => {
                    return Err(format!(
                        "query returned {} series; aggregate it to one",
                        many.len()
                    ));
                }
            }
        }
        other => return Err(format!("unsupported result type {other:?}")),
    };
    let text = sample[1].as_str().ok_or("sample has no value")?;
    let value: f64 = text
        .parse()
        .map_err(|_| format!("sample value '{text}' is not a number"))?;
    // NaN (for example 0/0 with no traffic) is no data.
    Ok((!value.is_nan()).then_some(value))
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl PrometheusQueryBuilder {
    /// The healthy range of the result. Default: any number.
    pub fn range(mut self, range: RangeInclusive<f64>) -> Self {
        self.range = range;
        self
    }

    /// The timeout of each query. Default: 5 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The name in events. Default: `prometheus <query>`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<PrometheusQuery, ConfigError> {
        let bad = |m: &str| ConfigError::Check(format!("prometheus check: {m}"));
        let base = self.base.trim_end_matches('/').to_owned();
        let uri: Uri = base.parse().map_err(|_| bad("base URL is not valid"))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(bad("only http://host:port base URLs are supported"));
        }
        if self.query.trim().is_empty() {
            return Err(bad("empty query"));
        }
        if self.range.start().is_nan() || self.range.end().is_nan() || self.range.is_empty() {
            return Err(bad("the healthy range is empty"));
        }
        if self.timeout.is_zero() {
            return Err(bad("timeout must be positive"));
        }
        Ok(PrometheusQuery {
            name: self.name.unwrap_or_else(|| {
                format!(
                    "prometheus {}",
                    self.query.split_whitespace().collect::<Vec<_>>().join(" ")
                )
            }),
            base,
            query: self.query,
            range: self.range,
            timeout: self.timeout,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }
}

#[async_trait]
impl HealthCheck for PrometheusQuery {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self, ctx: &CheckContext) -> Verdict {
        let query = self
            .query
            .replace("{candidate}", &ctx.candidate)
            .replace("{stable}", &ctx.stable);
        match self.value(&query).await {
            Ok(None) => Verdict::inconclusive("no data: the query returned no result"),
            Ok(Some(v)) if self.range.contains(&v) => Verdict::Healthy,
            Ok(Some(v)) => Verdict::unhealthy(format!("{v} is outside {:?}", self.range)),
            Err(e) => Verdict::inconclusive(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn result_shapes() {
        let vector = |r: serde_json::Value| json!({"resultType": "vector", "result": r});
        assert_eq!(parse_result(&vector(json!([]))), Ok(None));
        assert_eq!(
            parse_result(&vector(json!([{"metric": {}, "value": [1.0, "0.25"]}]))),
            Ok(Some(0.25))
        );
        assert_eq!(
            parse_result(&vector(json!([{"metric": {}, "value": [1.0, "NaN"]}]))),
            Ok(None)
        );
        assert!(parse_result(&vector(json!([{"value": [1, "1"]}, {"value": [1, "2"]}]))).is_err());
        assert_eq!(
            parse_result(&json!({"resultType": "scalar", "result": [1.0, "3"]})),
            Ok(Some(3.0))
        );
        assert!(parse_result(&json!({"resultType": "matrix", "result": []})).is_err());
    }

    #[test]
    fn encoding_and_validation() {
        assert_eq!(encode(r#"up{job="a b"}"#), "up%7Bjob%3D%22a%20b%22%7D");
        assert!(PrometheusQuery::builder("ftp://x", "up").build().is_err());
        assert!(
            PrometheusQuery::builder("http://x:9090", " ")
                .build()
                .is_err()
        );
        #[allow(clippy::reversed_empty_ranges)]
        let empty = 2.0..=1.0;
        assert!(
            PrometheusQuery::builder("http://x:9090", "up")
                .range(empty)
                .build()
                .is_err()
        );
    }
}
