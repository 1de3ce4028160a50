//! X-Ray tracing through OpenTelemetry and opentelemetry-aws.
//!
//! Each service builds its own [`Tracing`] (not the global provider), so several
//! services can run in one process (tests, the demo) with their own service names.
//! Pitfalls handled here (see samples-spec.md, "Tracing pitfalls"): incoming spans are
//! `SpanKind::Server` so they become X-Ray segments; ids come from `XrayIdGenerator`;
//! a trace header without `Sampled=` (or with `Sampled=?`) is decided by the service's
//! own sampling rule and the decision reported; the daemon client is built explicitly
//! and a failure to bind is an error, not a panic.
//!
//! The incoming `X-Amzn-Trace-Id` is parsed by opentelemetry-aws' `XrayPropagator`, and
//! then handled as X-Ray services do, where OpenTelemetry's defaults differ:
//!
//! - `Root=…` without `Parent` (what an ALB adds) continues that trace: the service's
//!   segment is in the incoming trace, with no parent.
//! - `Sampled=?` asks the receiver to decide: this service's [`Sampling`] rule decides,
//!   and the decision (`Sampled=1` or `Sampled=0`) is echoed and sent downstream.
//! - Only `X-Amzn-Trace-Id` is read; not `_X_AMZN_TRACE_ID`, which the propagator also
//!   accepts (it is the Lambda environment variable, and some servers map a header of
//!   that name to the same CGI variable).
//! - Other `key=value` pairs are carried along, within [`MAX_EXTRA_PAIRS`] and
//!   [`MAX_EXTRA_BYTES`].

use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    Link, Span, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer, TracerProvider,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_aws::trace::{MissingSampledBehavior, XrayIdGenerator, XrayPropagator};
use opentelemetry_aws::xray_exporter::{SegmentTranslator, XrayExporter};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, IdGenerator, SamplingDecision, SamplingResult,
    SdkTracer, SdkTracerProvider, ShouldSample,
};

mod daemon;

use daemon::{AddressError, DaemonClient, daemon_address};

/// The X-Ray trace header.
pub const TRACE_HEADER: &str = "x-amzn-trace-id";

/// [`TRACE_HEADER`] as a header name (no parsing per use).
pub const TRACE_HEADER_NAME: HeaderName = HeaderName::from_static(TRACE_HEADER);

/// The default daemon address.
pub const DEFAULT_DAEMON: &str = "127.0.0.1:2000";

/// At most this many `key=value` pairs other than `Root`, `Parent` and `Sampled` are
/// taken from an incoming trace header, and so echoed and sent downstream.
///
/// The X-Ray SDKs carry such pairs along unbounded, and an ALB keeps them until the
/// header passes 7 KB (AWS documents that it then rewrites the header to `Root` only):
/// 32 pairs of 250 characters would otherwise make an 8 KB header on every downstream
/// call. Here the pairs are taken in order: the first four that fit in
/// [`MAX_EXTRA_BYTES`] are kept and the rest dropped, as are pairs the propagator could
/// not carry (a key outside `[a-z0-9][a-z0-9_*/-]*` once lowercased, a value with `,` or
/// `=`), which would otherwise make it discard the whole header. The header this
/// service sends is then at most 74 bytes (`Root`, `Parent`, `Sampled`) plus 260.
pub const MAX_EXTRA_PAIRS: usize = 4;

/// At most this many bytes of `key=value` pairs (separators not counted) are kept
/// besides `Root`, `Parent` and `Sampled`; see [`MAX_EXTRA_PAIRS`].
pub const MAX_EXTRA_BYTES: usize = 256;

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
    /// Tracing that exports to the configured daemon (IPv4 or IPv6).
    pub fn new(cfg: TracingConfig) -> io::Result<Self> {
        let client = DaemonClient::new(cfg.daemon)?;
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

    /// Tracing from the environment: `AWS_XRAY_DAEMON_ADDRESS` (`host:port`, default
    /// 127.0.0.1:2000; a host name is resolved once, now) and `XRAY_SAMPLING`
    /// (`default`, `always` or `never`). If the daemon client cannot be set up (a
    /// malformed address, a host that does not resolve, a socket that cannot be bound),
    /// traces are still propagated and echoed but not exported, with a warning that says
    /// which: tracing never takes a service down.
    pub fn from_env(service: &str, version: &str) -> Self {
        let daemon_var =
            std::env::var("AWS_XRAY_DAEMON_ADDRESS").unwrap_or_else(|_| DEFAULT_DAEMON.to_owned());
        let sampling = match std::env::var("XRAY_SAMPLING").as_deref() {
            Ok("always") => Sampling::Always,
            Ok("never") => Sampling::Never,
            _ => Sampling::XrayDefault,
        };
        let daemon = match daemon_address(&daemon_var) {
            Ok(a) => a,
            Err(AddressError::Malformed) => {
                tracing::warn!(value = %daemon_var, "AWS_XRAY_DAEMON_ADDRESS is not host:port; traces will not be exported");
                return Self::local_only(service, version, sampling);
            }
            Err(AddressError::Unresolved { host, source }) => {
                tracing::warn!(value = %daemon_var, error = %source, "AWS_XRAY_DAEMON_ADDRESS: the host {host:?} could not be resolved; traces will not be exported");
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
        let rule = match sampling {
            Sampling::XrayDefault => Rule::XrayDefault(XrayDefaultSampler::default()),
            Sampling::Always => Rule::Always,
            Sampling::Never => Rule::Never,
        };
        let resource = Resource::builder_empty()
            .with_service_name(service.to_owned())
            .with_attribute(KeyValue::new("service.version", version.to_owned()))
            .build();
        let provider = builder
            .with_id_generator(XrayIds::default())
            .with_sampler(XraySampler { rule })
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("meshkit-samples");
        let propagator =
            // No `Sampled=` (an ALB adds `Root=` alone) is like `Sampled=?`: this service
            // decides by its own rule, as the X-Ray SDKs do, and reports its decision.
            XrayPropagator::new().with_missing_sampled_behavior(MissingSampledBehavior::Deferred);
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
    /// `X-Amzn-Trace-Id` when present (see the module documentation for how). Returns
    /// the context holding the span.
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
        let base = Context::current();
        let builder = self
            .inner
            .tracer
            .span_builder("request")
            .with_kind(SpanKind::Server);
        let mut span = match self.incoming(headers) {
            None => builder.start_with_context(&self.inner.tracer, &base),
            Some((incoming, parent_id)) => {
                let parent = if parent_id == SpanId::INVALID {
                    base.clone()
                } else {
                    let flags = if incoming.decision == Some(true) {
                        TraceFlags::SAMPLED
                    } else {
                        TraceFlags::default()
                    };
                    base.with_remote_span_context(SpanContext::new(
                        incoming.trace_id,
                        parent_id,
                        flags,
                        true,
                        incoming.trace_state.clone(),
                    ))
                }
                .with_value(incoming);
                // Current while the span starts, so that `XrayIds` continues the
                // incoming trace when there is no parent to take it from.
                let _current = parent.clone().attach();
                builder.start_with_context(&self.inner.tracer, &parent)
            }
        };
        if span.is_recording() {
            span.update_name(format!("{method} {path}"));
            span.set_attributes([
                KeyValue::new("http.request.method", method.to_owned()),
                KeyValue::new("url.path", path.to_owned()),
                KeyValue::new("meshkit.version", version.to_owned()),
            ]);
        }
        base.with_span(span)
    }

    /// The trace context of the request's `X-Amzn-Trace-Id` (bounded, see
    /// [`MAX_EXTRA_PAIRS`]) and its `Parent` (`SpanId::INVALID` when absent), parsed by
    /// the X-Ray propagator.
    fn incoming(&self, headers: &HeaderMap) -> Option<(Incoming, SpanId)> {
        let header = bounded_trace_header(headers)?;
        let cx = self
            .inner
            .propagator
            .extract_with_context(&Context::new(), &TraceHeaderOnly(&header));
        let span = cx.span();
        let sc = span.span_context();
        if sc.trace_id() == TraceId::INVALID {
            return None;
        }
        let decision = if sc.trace_flags() & DEFERRED == DEFERRED {
            None
        } else {
            Some(sc.is_sampled())
        };
        let incoming = Incoming {
            trace_id: sc.trace_id(),
            decision,
            trace_state: sc.trace_state().clone(),
        };
        Some((incoming, sc.span_id()))
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

/// What a request's trace header says, for the span that serves it.
#[derive(Debug, Clone)]
struct Incoming {
    trace_id: TraceId,
    /// `Sampled=1` / `Sampled=0`; `None` for `Sampled=?` (decide here).
    decision: Option<bool>,
    /// The other `key=value` pairs, to carry along.
    trace_state: TraceState,
}

/// The request's `X-Amzn-Trace-Id`, with surrounding spaces and empty or valueless
/// fields removed and other pairs bounded as [`MAX_EXTRA_PAIRS`] says. Borrowed when
/// nothing is removed (the common case).
fn bounded_trace_header(headers: &HeaderMap) -> Option<Cow<'_, str>> {
    let raw = headers.get(TRACE_HEADER_NAME)?.to_str().ok()?.trim();
    let mut budget = ExtraBudget::default();
    if raw.split(';').all(|p| p == p.trim() && budget.keep(p)) {
        return Some(Cow::Borrowed(raw));
    }
    let mut budget = ExtraBudget::default();
    let mut out = String::with_capacity(raw.len().min(128 + MAX_EXTRA_BYTES));
    for pair in raw.split(';').map(str::trim).filter(|p| budget.keep(p)) {
        if !out.is_empty() {
            out.push(';');
        }
        out.push_str(pair);
    }
    if budget.dropped > 0 {
        tracing::debug!(
            dropped = budget.dropped,
            "X-Amzn-Trace-Id: extra key=value pairs dropped (at most {MAX_EXTRA_PAIRS} pairs, {MAX_EXTRA_BYTES} bytes)"
        );
    }
    Some(Cow::Owned(out))
}

/// Which fields of a trace header to keep, in order.
#[derive(Debug, Default)]
struct ExtraBudget {
    /// Extra pairs kept so far.
    pairs: usize,
    /// Their bytes.
    bytes: usize,
    /// Extra pairs dropped.
    dropped: usize,
}

impl ExtraBudget {
    /// Whether to keep `pair` (counting it if it is an extra pair).
    fn keep(&mut self, pair: &str) -> bool {
        let Some((key, value)) = pair.split_once('=') else {
            return false;
        };
        if matches!(key, "Root" | "Parent" | "Sampled") {
            return true;
        }
        let ok = self.pairs < MAX_EXTRA_PAIRS
            && self.bytes + pair.len() <= MAX_EXTRA_BYTES
            && carriable(key, value);
        if ok {
            self.pairs += 1;
            self.bytes += pair.len();
        } else {
            self.dropped += 1;
        }
        ok
    }
}

/// Whether the propagator can carry `key=value` (as W3C trace state, which it checks).
fn carriable(key: &str, value: &str) -> bool {
    let key_ok = key.bytes().enumerate().all(|(i, b)| {
        let b = b.to_ascii_lowercase();
        b.is_ascii_lowercase()
            || b.is_ascii_digit()
            || (i > 0 && matches!(b, b'_' | b'-' | b'*' | b'/'))
    });
    !key.is_empty() && key_ok && !value.contains([',', '='])
}

/// Gives the propagator the trace header and nothing else: it also reads
/// `_X_AMZN_TRACE_ID`, which must not come from a request.
struct TraceHeaderOnly<'a>(&'a str);

impl Extractor for TraceHeaderOnly<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        key.eq_ignore_ascii_case(TRACE_HEADER).then_some(self.0)
    }
    fn keys(&self) -> Vec<&str> {
        vec![TRACE_HEADER]
    }
}

/// X-Ray ids (`XrayIdGenerator`), except that a server span started for a request whose
/// header has a `Root` but no `Parent` gets that trace id: the SDK only takes the trace
/// id from a valid parent (which needs a span id), and otherwise asks for a new one.
#[derive(Debug, Default)]
struct XrayIds(XrayIdGenerator);

impl IdGenerator for XrayIds {
    fn new_trace_id(&self) -> TraceId {
        Context::map_current(|cx| cx.get::<Incoming>().map(|i| i.trace_id))
            .unwrap_or_else(|| self.0.new_trace_id())
    }
    fn new_span_id(&self) -> SpanId {
        self.0.new_span_id()
    }
}

/// The service's own sampling rule.
#[derive(Debug, Clone)]
enum Rule {
    XrayDefault(XrayDefaultSampler),
    Always,
    Never,
}

/// Samples as X-Ray services do: a span in this service follows its local parent; the
/// server span follows the incoming header's decision, or decides by the [`Rule`] when
/// there is none (`Sampled=?`) and reports that decision; a span with nothing to follow
/// decides by the rule. The incoming header's other pairs are kept in the trace state.
#[derive(Debug, Clone)]
struct XraySampler {
    rule: Rule,
}

impl XraySampler {
    fn decide(&self) -> bool {
        match &self.rule {
            Rule::XrayDefault(s) => s.sample(),
            Rule::Always => true,
            Rule::Never => false,
        }
    }
}

impl ShouldSample for XraySampler {
    fn should_sample(
        &self,
        parent: Option<&Context>,
        _trace_id: TraceId,
        _name: &str,
        _kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        let result = |sampled: bool, trace_state: TraceState| SamplingResult {
            decision: if sampled {
                SamplingDecision::RecordAndSample
            } else {
                SamplingDecision::Drop
            },
            attributes: Vec::new(),
            trace_state,
        };
        let Some(cx) = parent else {
            return result(self.decide(), TraceState::default());
        };
        let span = cx.span();
        let sc = span.span_context();
        if sc.is_valid() && !sc.is_remote() {
            return result(sc.is_sampled(), sc.trace_state().clone());
        }
        if let Some(incoming) = cx.get::<Incoming>() {
            let sampled = incoming.decision.unwrap_or_else(|| self.decide());
            return result(sampled, incoming.trace_state.clone());
        }
        if sc.is_valid() {
            return result(sc.is_sampled(), sc.trace_state().clone());
        }
        result(self.decide(), TraceState::default())
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
    /// Whether to sample one more request.
    fn sample(&self) -> bool {
        self.take_reservoir() || fastrand::f64() < 0.05
    }

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
        SamplingResult {
            decision: if self.sample() {
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

    /// A trace id for now (the X-Ray exporter drops implausibly old ones).
    fn fresh_root() -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        format!("1-{now:08x}-abcdefabcdefabcdefabcdef")
    }

    fn trace_header(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    /// The echoed header and the header sent downstream for a request with `incoming`.
    fn echoed_and_forwarded(tracing: &Tracing, headers: &HeaderMap) -> (Context, String, String) {
        let cx = tracing.server_span(headers, "GET", "/", "1");
        let echoed = tracing.header_value(&cx).unwrap();
        let client = tracing.client_span(&cx, "down", "http://down/");
        let mut out = HeaderMap::new();
        tracing.inject(&client, &mut out);
        let forwarded = out.remove(TRACE_HEADER).unwrap();
        (
            cx,
            echoed.to_str().unwrap().to_owned(),
            forwarded.to_str().unwrap().to_owned(),
        )
    }

    #[test]
    fn a_root_without_parent_continues_the_trace() {
        let root = fresh_root();
        for sampling in [Sampling::Always, Sampling::Never] {
            let tracing = Tracing::local_only("svc", "1", sampling);
            // The ALB form (no decision: this service's rule decides), and a decision
            // without a parent (kept).
            let decided = if sampling == Sampling::Always {
                "1"
            } else {
                "0"
            };
            for (value, expected) in [
                (format!("Root={root}"), decided),
                (format!("Root={root};Sampled=1"), "1"),
            ] {
                let h = trace_header("x-amzn-trace-id", &value);
                let (cx, echoed, forwarded) = echoed_and_forwarded(&tracing, &h);
                assert_eq!(Tracing::xray_trace_id(&cx), root, "{value}");
                let prefix = format!("Root={root};Parent=");
                assert!(echoed.starts_with(&prefix), "{value}: {echoed}");
                assert!(forwarded.starts_with(&prefix), "{value}: {forwarded}");
                let end = format!(";Sampled={expected}");
                assert!(echoed.ends_with(&end), "{value}: {echoed}");
                assert!(forwarded.ends_with(&end), "{value}: {forwarded}");
            }
        }
    }

    #[test]
    fn a_deferred_decision_is_made_here_and_reported() {
        let root = fresh_root();
        for (sampling, decided) in [(Sampling::Always, "1"), (Sampling::Never, "0")] {
            let tracing = Tracing::local_only("svc", "1", sampling);
            for value in [
                format!("Root={root};Parent=53995c3f42cd8ad8;Sampled=?"),
                format!("Root={root};Sampled=?"),
            ] {
                let h = trace_header("x-amzn-trace-id", &value);
                let (cx, echoed, forwarded) = echoed_and_forwarded(&tracing, &h);
                assert_eq!(Tracing::xray_trace_id(&cx), root, "{value}");
                assert!(
                    echoed.ends_with(&format!(";Sampled={decided}")),
                    "{sampling:?} {value}: echoed {echoed}"
                );
                assert!(
                    forwarded.ends_with(&format!(";Sampled={decided}")),
                    "{sampling:?} {value}: forwarded {forwarded}"
                );
            }
        }
    }

    #[test]
    fn unknown_pairs_are_bounded() {
        let root = fresh_root();
        let mut value = format!("Root={root};Parent=53995c3f42cd8ad8;Sampled=1;CalledFrom=app");
        for i in 0..32 {
            value.push_str(&format!(";k{i:02}={}", "v".repeat(250)));
        }
        let tracing = Tracing::local_only("svc", "1", Sampling::Always);
        let h = trace_header("x-amzn-trace-id", &value);
        let (cx, echoed, forwarded) = echoed_and_forwarded(&tracing, &h);
        assert_eq!(Tracing::xray_trace_id(&cx), root);
        // Root, Parent and Sampled (74 bytes), then at most 256 bytes of other pairs
        // and their separators.
        const LIMIT: usize = 74 + 256 + 4;
        for header in [&echoed, &forwarded] {
            assert!(header.len() <= LIMIT, "{} bytes: {header}", header.len());
            // The first small pair is kept (keys come back title-cased, as the
            // propagator writes them).
            assert!(header.contains(";Calledfrom=app"), "{header}");
        }

        // Four small pairs are kept, in order; a pair the propagator cannot carry is
        // dropped instead of costing the whole header; spaces around fields are fine.
        let value =
            format!("Root={root}; Parent=53995c3f42cd8ad8 ;Sampled=1;Bad=x,y;a=1;b=2;c=3;d=4;e=5");
        let h = trace_header("x-amzn-trace-id", &value);
        let (cx, echoed, forwarded) = echoed_and_forwarded(&tracing, &h);
        assert_eq!(Tracing::xray_trace_id(&cx), root);
        assert!(echoed.ends_with(";Sampled=1;A=1;B=2;C=3;D=4"), "{echoed}");
        assert!(
            forwarded.ends_with(";Sampled=1;A=1;B=2;C=3;D=4"),
            "{forwarded}"
        );
    }

    #[test]
    fn the_underscore_header_is_not_trace_context() {
        let root = fresh_root();
        let tracing = Tracing::local_only("svc", "1", Sampling::Always);
        for name in ["_x_amzn_trace_id", "_X_AMZN_TRACE_ID"] {
            let h = trace_header(
                name,
                &format!("Root={root};Parent=53995c3f42cd8ad8;Sampled=1"),
            );
            let cx = tracing.server_span(&h, "GET", "/", "1");
            assert_ne!(
                Tracing::xray_trace_id(&cx),
                root,
                "{name} was taken as context"
            );
        }
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
