//! X-Ray tracing through OpenTelemetry and opentelemetry-aws.
//!
//! Each service builds its own [`Tracing`] (not the global provider), so several
//! services can run in one process (tests, the demo) with their own service names.
//! Pitfalls handled here (see samples-spec.md, "Tracing pitfalls"): incoming spans are
//! `SpanKind::Server` so they become X-Ray segments; ids come from `XrayIdGenerator`;
//! a trace header without `Sampled=` is sampled; the daemon client is built explicitly
//! and a failure to bind is an error, not a panic.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    Link, Span, SpanContext, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer, TracerProvider,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_aws::trace::{MissingSampledBehavior, XrayIdGenerator, XrayPropagator};
use opentelemetry_aws::xray_exporter::daemon_client::XrayDaemonClient;
use opentelemetry_aws::xray_exporter::{SegmentTranslator, XrayExporter};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SamplingDecision, SamplingResult, SdkTracer,
    SdkTracerProvider, ShouldSample,
};

/// The X-Ray trace header.
pub const TRACE_HEADER: &str = "x-amzn-trace-id";

/// [`TRACE_HEADER`] as a header name (no parsing per use).
pub const TRACE_HEADER_NAME: HeaderName = HeaderName::from_static(TRACE_HEADER);

/// The default daemon address.
pub const DEFAULT_DAEMON: &str = "127.0.0.1:2000";

/// Which requests are traced when no sampling decision comes with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// X-Ray's default rule: the first request each second, then 5% of the rest.
    XrayDefault,
    /// Every request.
    Always,
    /// None.
    Never,
}

/// How to set up tracing for one service.
#[derive(Debug, Clone)]
pub struct TracingConfig {
    /// The service name (`SERVICE_NAME`): the X-Ray segment name.
    pub service: String,
    /// The service version: an indexed annotation (`meshkit_version`).
    pub version: String,
    /// The X-Ray daemon's UDP address.
    pub daemon: SocketAddr,
    /// The sampling rule for requests without a decision.
    pub sampling: Sampling,
    /// How often finished spans are sent. Default in [`Tracing::from_env`]: 1 s.
    pub batch_delay: Duration,
}

/// A service's tracer, propagator and exporter. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Tracing {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: XrayPropagator,
}

impl Tracing {
    /// Tracing that exports to the configured daemon.
    pub fn new(cfg: TracingConfig) -> io::Result<Self> {
        let client = XrayDaemonClient::new(cfg.daemon)?;
        let translator = SegmentTranslator::new().with_indexed_attr("meshkit.version".to_owned());
        let exporter = XrayExporter::new(client).with_translator(translator);
        // A short queue: at the X-Ray default rate (5% of a busy service) a 2048-span
        // queue stays full between exports and holds megabytes; spans beyond the queue
        // are dropped (and counted by the SDK), never blocking a request.
        let batch = BatchConfigBuilder::default()
            .with_scheduled_delay(cfg.batch_delay)
            .with_max_queue_size(256)
            .with_max_export_batch_size(64)
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        let builder = SdkTracerProvider::builder().with_span_processor(processor);
        Ok(Self::build(
            builder,
            &cfg.service,
            &cfg.version,
            cfg.sampling,
        ))
    }

    /// Tracing from the environment: `AWS_XRAY_DAEMON_ADDRESS` (default
    /// 127.0.0.1:2000) and `XRAY_SAMPLING` (`default`, `always` or `never`). If the
    /// daemon client cannot be set up, traces are still propagated and echoed but not
    /// exported, with a warning: tracing never takes a service down.
    pub fn from_env(service: &str, version: &str) -> Self {
        let daemon_var =
            std::env::var("AWS_XRAY_DAEMON_ADDRESS").unwrap_or_else(|_| DEFAULT_DAEMON.to_owned());
        let sampling = match std::env::var("XRAY_SAMPLING").as_deref() {
            Ok("always") => Sampling::Always,
            Ok("never") => Sampling::Never,
            _ => Sampling::XrayDefault,
        };
        let daemon = match parse_daemon(&daemon_var) {
            Some(a) => a,
            None => {
                tracing::warn!(value = %daemon_var, "AWS_XRAY_DAEMON_ADDRESS is not host:port; traces will not be exported");
                return Self::local_only(service, version, sampling);
            }
        };
        let cfg = TracingConfig {
            service: service.to_owned(),
            version: version.to_owned(),
            daemon,
            sampling,
            batch_delay: Duration::from_secs(1),
        };
        match Self::new(cfg) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the X-Ray daemon address; traces will not be exported");
                Self::local_only(service, version, sampling)
            }
        }
    }

    /// Propagates and echoes trace headers but exports nothing.
    pub fn local_only(service: &str, version: &str, sampling: Sampling) -> Self {
        Self::build(SdkTracerProvider::builder(), service, version, sampling)
    }

    fn build(
        builder: opentelemetry_sdk::trace::TracerProviderBuilder,
        service: &str,
        version: &str,
        sampling: Sampling,
    ) -> Self {
        let root: Box<dyn ShouldSample> = match sampling {
            Sampling::XrayDefault => Box::new(XrayDefaultSampler::default()),
            Sampling::Always => Box::new(Sampler::AlwaysOn),
            Sampling::Never => Box::new(Sampler::AlwaysOff),
        };
        let resource = Resource::builder_empty()
            .with_service_name(service.to_owned())
            .with_attribute(KeyValue::new("service.version", version.to_owned()))
            .build();
        let provider = builder
            .with_id_generator(XrayIdGenerator::default())
            .with_sampler(Sampler::ParentBased(root))
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("meshkit-samples");
        let propagator =
            XrayPropagator::new().with_missing_sampled_behavior(MissingSampledBehavior::Sampled);
        let _ = version;
        Self {
            inner: Arc::new(Inner {
                provider,
                tracer,
                propagator,
            }),
        }
    }

    /// Starts the server span for an incoming request, continuing its
    /// `X-Amzn-Trace-Id` when present. Returns the context holding the span.
    ///
    /// The span's name (`GET /path`) and attributes are only built for a span that is
    /// recorded: at the X-Ray default rate most are not, and they cost allocations on
    /// every request. The samplers here do not look at names or attributes.
    pub fn server_span(
        &self,
        headers: &HeaderMap,
        method: &str,
        path: &str,
        version: &str,
    ) -> Context {
        let parent = self.inner.propagator.extract(&HeaderReader(headers));
        let mut span = self
            .inner
            .tracer
            .span_builder("request")
            .with_kind(SpanKind::Server)
            .start_with_context(&self.inner.tracer, &parent);
        if span.is_recording() {
            span.update_name(format!("{method} {path}"));
            span.set_attributes([
                KeyValue::new("http.request.method", method.to_owned()),
                KeyValue::new("url.path", path.to_owned()),
                KeyValue::new("meshkit.version", version.to_owned()),
            ]);
        }
        parent.with_span(span)
    }

    /// Starts a client span for an outgoing call to `peer` (a child of `parent`).
    pub fn client_span(&self, parent: &Context, peer: &str, url: &str) -> Context {
        let span = self
            .inner
            .tracer
            .span_builder(format!("GET {peer}"))
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("peer.service", peer.to_owned()),
                KeyValue::new("url.full", url.to_owned()),
                KeyValue::new("http.request.method", "GET"),
            ])
            .start_with_context(&self.inner.tracer, parent);
        parent.with_span(span)
    }

    /// Writes the trace header for `cx` into `headers` (for an outgoing call).
    pub fn inject(&self, cx: &Context, headers: &mut HeaderMap) {
        self.inner
            .propagator
            .inject_context(cx, &mut HeaderWriter(headers));
    }

    /// The trace header value for `cx` (to echo on a response): what the X-Ray
    /// propagator writes, formatted without allocating in the common case (no trace
    /// state, a definite sampling decision).
    pub fn header_value(&self, cx: &Context) -> Option<HeaderValue> {
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            return None;
        }
        if *sc.trace_state() == TraceState::NONE && sc.trace_flags() & DEFERRED != DEFERRED {
            return HeaderValue::from_bytes(&header_bytes(sc)).ok();
        }
        let mut h = HeaderMap::new();
        self.inject(cx, &mut h);
        h.remove(TRACE_HEADER)
    }

    /// Echoes the trace header for `cx` on a response's `headers`.
    pub fn echo(&self, cx: &Context, headers: &mut HeaderMap) {
        if let Some(v) = self.header_value(cx) {
            headers.insert(TRACE_HEADER_NAME, v);
        }
    }

    /// Ends the span in `cx` with the response status (5xx marks it as an error).
    pub fn finish(cx: &Context, status: u16) {
        let span = cx.span();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if status >= 500 {
            span.set_status(Status::error(format!("HTTP {status}")));
        }
        span.end();
    }

    /// Ends the span in `cx` with an error (for a failed outgoing call).
    pub fn fail(cx: &Context, error: &str) {
        let span = cx.span();
        span.set_status(Status::error(error.to_owned()));
        span.end();
    }

    /// The X-Ray form of the trace id in `cx` (`1-<8 hex>-<24 hex>`).
    pub fn xray_trace_id(cx: &Context) -> String {
        let hex = format!("{:032x}", cx.span().span_context().trace_id());
        format!("1-{}-{}", &hex[..8], &hex[8..])
    }

    /// Sends what is buffered and stops the exporter.
    pub fn shutdown(&self) {
        if let Err(e) = self.inner.provider.shutdown() {
            tracing::debug!(error = %e, "tracer shutdown");
        }
    }

    /// Sends what is buffered now.
    pub fn flush(&self) {
        let _ = self.inner.provider.force_flush();
    }
}

/// The X-Ray propagator's "sampling deferred" trace flag (`Sampled=?`).
const DEFERRED: TraceFlags = TraceFlags::new(0x02);

/// `Root=1-<8 hex>-<24 hex>;Parent=<16 hex>;Sampled=<0|1>`.
fn header_bytes(sc: &SpanContext) -> [u8; 74] {
    fn hex(out: &mut [u8], bytes: &[u8]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 0xf)];
        }
    }
    let mut out = *b"Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0";
    let trace = sc.trace_id().to_bytes();
    hex(&mut out[7..15], &trace[..4]);
    hex(&mut out[16..40], &trace[4..]);
    hex(&mut out[48..64], &sc.span_id().to_bytes());
    if sc.is_sampled() {
        out[73] = b'1';
    }
    out
}

fn parse_daemon(s: &str) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    s.to_socket_addrs().ok()?.next()
}

struct HeaderReader<'a>(&'a HeaderMap);

impl Extractor for HeaderReader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let value = if key.eq_ignore_ascii_case(TRACE_HEADER) {
            self.0.get(TRACE_HEADER_NAME)
        } else {
            self.0.get(key)
        };
        value?.to_str().ok()
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeaderWriter<'a>(&'a mut HeaderMap);

impl Injector for HeaderWriter<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// X-Ray's default sampling rule: a reservoir of one trace per second, then a fixed
/// 5% of the rest.
#[derive(Debug, Clone, Default)]
pub struct XrayDefaultSampler {
    /// The last second (Unix time) whose reservoir trace was taken.
    taken: Arc<AtomicU64>,
}

impl XrayDefaultSampler {
    fn take_reservoir(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.taken.load(Ordering::Relaxed);
        last != now
            && self
                .taken
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

impl ShouldSample for XrayDefaultSampler {
    fn should_sample(
        &self,
        _parent: Option<&Context>,
        _trace_id: TraceId,
        _name: &str,
        _kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        let sampled = self.take_reservoir() || fastrand::f64() < 0.05;
        SamplingResult {
            decision: if sampled {
                SamplingDecision::RecordAndSample
            } else {
                SamplingDecision::Drop
            },
            attributes: Vec::new(),
            trace_state: TraceState::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::SpanId;

    #[test]
    fn the_fast_header_is_what_the_propagator_writes() {
        let tracing = Tracing::local_only("svc", "1", Sampling::Always);
        for flags in [TraceFlags::SAMPLED, TraceFlags::default()] {
            let sc = SpanContext::new(
                TraceId::from_hex("5759e988bd862e3fe1be46a994272793").unwrap(),
                SpanId::from_hex("53995c3f42cd8ad8").unwrap(),
                flags,
                true,
                TraceState::NONE,
            );
            let cx = Context::new().with_remote_span_context(sc);
            let mut h = HeaderMap::new();
            tracing.inject(&cx, &mut h);
            assert_eq!(tracing.header_value(&cx), h.remove(TRACE_HEADER));
        }
        let sampled =
            tracing.header_value(&Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from_hex("5759e988bd862e3fe1be46a994272793").unwrap(),
                SpanId::from_hex("53995c3f42cd8ad8").unwrap(),
                TraceFlags::SAMPLED,
                true,
                TraceState::NONE,
            )));
        assert_eq!(
            sampled.unwrap(),
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
        );
        assert_eq!(tracing.header_value(&Context::new()), None);
    }

    #[test]
    fn the_reservoir_gives_one_trace_a_second() {
        let s = XrayDefaultSampler::default();
        assert!(s.take_reservoir());
        // Within the same second (the test runs well under one, or crosses at most one
        // boundary), at most one more is taken.
        let more = (0..1000).filter(|_| s.take_reservoir()).count();
        assert!(more <= 1, "{more}");
    }
}
