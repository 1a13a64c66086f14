//! OpenTelemetry (feature `otel`): [`AuditLayer`](crate::audit::AuditLayer) opens one server
//! span per invocation through `tracing`, bridged to OpenTelemetry by `tracing-opentelemetry`.
//!
//! The span is a child of the caller's trace: W3C `traceparent` (with `tracestate`), AWS
//! `X-Amzn-Trace-Id`, Google `X-Cloud-Trace-Context` in the request, else the trace the platform
//! reported for the invocation (the Lambda context's X-Ray id). It carries the semantic-convention
//! attributes `faas.trigger`, `faas.invocation_id`, `faas.name`, `cloud.provider`, `cloud.region`,
//! `cloud.account.id`, `http.request.method`, `http.response.status_code`, and Guard's decision
//! as `guard.outcome`, `guard.code` and `guard.layer`. The handler runs inside it, so its own spans
//! (and [`outbound`](crate::outbound) calls) join the same trace.
//!
//! Nothing is exported unless the application installs a `tracing` subscriber with the
//! `tracing-opentelemetry` layer ([`otlp`] does that from the standard `OTEL_*` variables); without
//! one the span is disabled and costs one callsite check.
//!
//! ```
//! use bytes::Bytes;
//! use guard_core::audit::{AuditLayer, SecurityEvent};
//! use opentelemetry::trace::TracerProvider as _;
//! use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
//! use tower::{Layer, ServiceExt, service_fn};
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let exporter = InMemorySpanExporter::default();
//! let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
//! let subscriber = tracing_subscriber::registry()
//!     .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("guard")));
//! let _default = tracing::subscriber::set_default(subscriber);
//!
//! let svc = AuditLayer::new(|_: SecurityEvent| {}).layer(service_fn(|_req: http::Request<Bytes>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(Bytes::new()))
//! }));
//! let req = http::Request::post("/")
//!     .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
//!     .body(Bytes::new())
//!     .unwrap();
//! svc.oneshot(req).await.unwrap();
//! let spans = exporter.get_finished_spans().unwrap();
//! assert_eq!(spans[0].span_context.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
//! # });
//! ```

#[cfg(feature = "otlp")]
pub mod otlp;

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::request::{Cloud, GuardRequest, Invocation, TraceContext, Trigger};
use crate::{Rejection, RejectionKind};

/// Opens the invocation's server span (disabled, and nothing computed, when no subscriber wants
/// it), its parent the caller's or the platform's trace.
pub(crate) fn invocation_span(req: &GuardRequest, function: Option<&str>) -> tracing::Span {
    let inv = req.extensions().get::<Invocation>();
    let trigger = req.extensions().get::<Trigger>();
    let name = inv
        .and_then(|i| i.function.as_deref())
        .or(function)
        .unwrap_or("guard.invocation");
    let span = tracing::info_span!(
        target: "guard::invocation",
        "guard.invocation",
        otel.name = name,
        otel.kind = "server",
        otel.status_code = Empty,
        faas.trigger = faas_trigger(trigger),
        faas.invocation_id = inv.and_then(|i| i.request_id.as_deref()),
        faas.name = name,
        cloud.provider = inv.and_then(|i| cloud_provider(i.cloud)),
        cloud.region = inv.and_then(|i| i.region.as_deref()),
        cloud.account.id = inv.and_then(|i| i.account.as_deref()),
        http.request.method = matches!(trigger, None | Some(Trigger::Http))
            .then(|| req.method().as_str()),
        http.response.status_code = Empty,
        guard.outcome = Empty,
        guard.code = Empty,
        guard.layer = Empty,
    );
    if !span.is_disabled()
        && let Some(parent) = remote_parent(req.headers(), inv)
    {
        // Only fails when no OpenTelemetry layer is installed: the span then has no parent to take.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
    }
    span
}

/// Records the decision on the span: status, outcome, code, layer; 5xx marks the span an error.
pub(crate) fn record_decision(span: &tracing::Span, status: u16, denial: Option<&Rejection>) {
    if span.is_disabled() {
        return;
    }
    span.record("http.response.status_code", status);
    match denial {
        Some(d) => {
            span.record("guard.outcome", "deny");
            span.record("guard.code", d.kind().code());
            span.record("guard.layer", d.kind().layer());
        }
        None => {
            span.record("guard.outcome", "allow");
            span.record("guard.code", crate::audit::SecurityEvent::ALLOW_CODE);
            span.record("guard.layer", "handler");
        }
    }
    let internal = denial.is_some_and(|d| d.kind() == RejectionKind::Internal);
    if status >= 500 || internal {
        span.record("otel.status_code", "error");
    }
}

/// `faas.trigger`: `http`, `pubsub` for every message (queue, topic, stream, event bus), `other`
/// for a direct invocation.
fn faas_trigger(trigger: Option<&Trigger>) -> &'static str {
    match trigger {
        None | Some(Trigger::Http) => "http",
        Some(Trigger::Message(_)) => "pubsub",
        Some(_) => "other",
    }
}

/// `cloud.provider` as the semantic conventions spell it; nothing when running locally.
fn cloud_provider(cloud: Cloud) -> Option<&'static str> {
    match cloud {
        Cloud::Aws => Some("aws"),
        Cloud::Azure => Some("azure"),
        Cloud::Gcp => Some("gcp"),
        _ => None,
    }
}

/// The caller's span from the request's trace headers, else the platform's trace for this
/// invocation. A trace without a parent span id gives no parent (a remote parent needs one).
fn remote_parent(headers: &http::HeaderMap, inv: Option<&Invocation>) -> Option<SpanContext> {
    let (trace, parent, sampled) = match TraceContext::from_headers(headers) {
        Some(t) => {
            let sampled = t.sampled();
            let (trace, parent) = t.into_ids();
            (trace, parent, sampled)
        }
        None => {
            let inv = inv?;
            (inv.trace_id.clone()?, inv.parent_span_id.clone(), None)
        }
    };
    let trace_id = TraceId::from_hex(&otel_trace_id(&trace)?).ok()?;
    let span_id = SpanId::from_hex(parent.as_deref()?).ok()?;
    // `tracestate` belongs to `traceparent`: kept only when that is the header used.
    let state = headers
        .get("tracestate")
        .filter(|_| headers.contains_key("traceparent"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<TraceState>().ok())
        .unwrap_or_default();
    let flags = match sampled {
        Some(false) => TraceFlags::NOT_SAMPLED,
        _ => TraceFlags::SAMPLED,
    };
    let cx = SpanContext::new(trace_id, span_id, flags, true, state);
    cx.is_valid().then_some(cx)
}

/// A trace id as 32 hex digits: W3C and Cloud Trace ids already are; an X-Ray root
/// `1-<8 hex>-<24 hex>` is its two hex parts joined (how X-Ray and OpenTelemetry map them).
fn otel_trace_id(trace: &str) -> Option<String> {
    let hex = match trace.strip_prefix("1-") {
        Some(root) => root.replacen('-', "", 1),
        None => trace.to_owned(),
    };
    (hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xray_roots_map_to_w3c_trace_ids() {
        assert_eq!(
            otel_trace_id("1-5759e988-bd862e3fe1be46a994272793").as_deref(),
            Some("5759e988bd862e3fe1be46a994272793")
        );
        assert_eq!(otel_trace_id("not-a-trace"), None);
    }

    #[test]
    fn a_trace_without_a_parent_span_gives_no_remote_parent() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "x-cloud-trace-context",
            "105445aa7843bc8bf206b12000100000".parse().unwrap(),
        );
        assert!(remote_parent(&h, None).is_none());
        h.insert(
            "x-cloud-trace-context",
            "105445aa7843bc8bf206b12000100000/1;o=0".parse().unwrap(),
        );
        let cx = remote_parent(&h, None).unwrap();
        assert!(!cx.is_sampled());
        assert_eq!(cx.span_id().to_string(), "0000000000000001");
    }
}
