//! The server span of each invocation, read back from `opentelemetry_sdk`'s in-memory exporter.

use std::collections::HashMap;
use std::convert::Infallible;

use bytes::Bytes;
use guard_core::audit::{AuditLayer, SecurityEvent};
use guard_core::request::{Cloud, Invocation, MessageTrigger, Peer, Trigger};
use guard_core::{GuardRequest, GuardResponse, Policy};
use opentelemetry::trace::{SpanKind, Status, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tower::{Layer, ServiceExt, service_fn};
use tracing_subscriber::layer::SubscriberExt;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Runs `f` with a subscriber that bridges `tracing` spans to an SDK tracer exporting into memory,
/// and returns the finished spans.
async fn collect_spans<F, Fut>(f: F) -> Vec<SpanData>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let _one = crate::ONE_AT_A_TIME.lock().await;
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("guard-test")));
    let guard = tracing::subscriber::set_default(subscriber);
    f().await;
    drop(guard);
    provider.force_flush().unwrap();
    exporter.get_finished_spans().unwrap()
}

fn attributes(span: &SpanData) -> HashMap<String, String> {
    span.attributes
        .iter()
        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect()
}

fn server_span(spans: &[SpanData]) -> &SpanData {
    let server: Vec<_> = spans
        .iter()
        .filter(|s| s.span_kind == SpanKind::Server)
        .collect();
    assert_eq!(
        server.len(),
        1,
        "one server span per invocation: {spans:#?}"
    );
    server[0]
}

fn aws_invocation() -> Invocation {
    let mut inv = Invocation::new(Cloud::Aws);
    inv.region = Some("us-east-1".into());
    inv.account = Some("123456789012".into());
    inv.function = Some("aws-orders".into());
    inv.request_id = Some("c6af9ac6-7b61-11e6-9a41-93e8deadbeef".into());
    inv
}

/// The handler opens a span of its own (it must become a child of the server span).
async fn handler(_req: GuardRequest) -> Result<GuardResponse, Infallible> {
    let _inner = tracing::info_span!("handler.work").entered();
    let mut resp = GuardResponse::new(Bytes::from_static(b"{}"));
    *resp.status_mut() = http::StatusCode::CREATED;
    Ok(resp)
}

fn request(header: (&str, &str)) -> GuardRequest {
    let mut req = http::Request::post("/orders")
        .header(header.0, header.1)
        .body(Bytes::new())
        .unwrap();
    req.extensions_mut().insert(aws_invocation());
    req.extensions_mut().insert(Trigger::Http);
    req
}

async fn one_span(req: GuardRequest) -> (SpanData, Vec<SpanData>) {
    let spans = collect_spans(|| async move {
        let svc = AuditLayer::new(|_: SecurityEvent| {}).layer(service_fn(handler));
        svc.oneshot(req).await.unwrap();
    })
    .await;
    (server_span(&spans).clone(), spans)
}

#[tokio::test]
async fn a_traceparent_makes_the_invocation_a_server_span_in_that_trace_with_faas_attributes() {
    let mut req = request(("traceparent", TRACEPARENT));
    req.headers_mut()
        .insert("tracestate", "vendor=opaque".parse().unwrap());
    let (span, spans) = one_span(req).await;
    assert_eq!(
        span.span_context.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(span.parent_span_id.to_string(), "00f067aa0ba902b7");
    assert!(span.parent_span_is_remote);
    assert_eq!(span.span_context.trace_state().header(), "vendor=opaque");
    assert_eq!(span.name, "aws-orders");
    let a = attributes(&span);
    for (key, value) in [
        ("faas.trigger", "http"),
        ("faas.invocation_id", "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"),
        ("faas.name", "aws-orders"),
        ("cloud.provider", "aws"),
        ("cloud.region", "us-east-1"),
        ("cloud.account.id", "123456789012"),
        ("http.request.method", "POST"),
        ("http.response.status_code", "201"),
        ("guard.outcome", "allow"),
        ("guard.code", "guard.allow"),
        ("guard.layer", "handler"),
    ] {
        assert_eq!(
            a.get(key).map(String::as_str),
            Some(value),
            "{key} in {a:#?}"
        );
    }
    // The handler's own span is the server span's child, in the same trace.
    let child = spans.iter().find(|s| s.name == "handler.work").unwrap();
    assert_eq!(child.parent_span_id, span.span_context.span_id());
    assert_eq!(child.span_context.trace_id(), span.span_context.trace_id());
}

#[tokio::test]
async fn an_x_amzn_trace_id_parents_the_span_in_the_same_trace_as_x_ray() {
    let (span, _) = one_span(request((
        "x-amzn-trace-id",
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    )))
    .await;
    assert_eq!(
        span.span_context.trace_id().to_string(),
        "5759e988bd862e3fe1be46a994272793"
    );
    assert_eq!(span.parent_span_id.to_string(), "53995c3f42cd8ad8");
}

#[tokio::test]
async fn an_x_cloud_trace_context_parents_the_span_with_its_decimal_span_id() {
    let (span, _) = one_span(request((
        "x-cloud-trace-context",
        "105445aa7843bc8bf206b12000100000/2706;o=1",
    )))
    .await;
    assert_eq!(
        span.span_context.trace_id().to_string(),
        "105445aa7843bc8bf206b12000100000"
    );
    assert_eq!(span.parent_span_id.to_string(), "0000000000000a92");
}

#[tokio::test]
async fn the_platform_trace_is_the_parent_when_the_request_carries_none() {
    let mut req = request(("x-unrelated", "1"));
    let inv = req.extensions_mut().get_mut::<Invocation>().unwrap();
    inv.trace_id = Some("1-5759e988-bd862e3fe1be46a994272793".into());
    inv.parent_span_id = Some("53995c3f42cd8ad8".into());
    let (span, _) = one_span(req).await;
    assert_eq!(
        span.span_context.trace_id().to_string(),
        "5759e988bd862e3fe1be46a994272793"
    );
}

#[tokio::test]
async fn a_message_is_a_pubsub_trigger_without_an_http_method() {
    let mut req = request(("x-unrelated", "1"));
    req.extensions_mut()
        .insert(Trigger::Message(MessageTrigger::new(
            "sqs",
            "arn:aws:sqs:us-east-1:123456789012:orders",
            "m-1",
        )));
    let (span, _) = one_span(req).await;
    let a = attributes(&span);
    assert_eq!(a["faas.trigger"], "pubsub");
    assert!(!a.contains_key("http.request.method"), "{a:#?}");
}

#[tokio::test]
async fn a_refusal_records_the_guard_code_and_layer_on_the_span() {
    let policy = Policy::from_toml_str(
        r#"
        [verify.cidr]
        allow = ["10.0.0.0/8"]
    "#,
    )
    .unwrap();
    let guard = guard_core::GuardBuilder::from_policy(&policy)
        .unwrap()
        .audit(AuditLayer::new(|_: SecurityEvent| {}))
        .build();
    let spans = collect_spans(|| async move {
        let mut req = request(("traceparent", TRACEPARENT));
        req.extensions_mut()
            .insert(Peer::new("203.0.113.9".parse().unwrap()));
        let resp = guard.layer(service_fn(handler)).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 403);
    })
    .await;
    let span = server_span(&spans);
    let a = attributes(span);
    assert_eq!(a["guard.outcome"], "deny");
    assert_eq!(a["guard.code"], "guard.verify.forbidden_address");
    assert_eq!(a["guard.layer"], "verify");
    assert_eq!(a["http.response.status_code"], "403");
    assert_eq!(
        span.status,
        Status::Unset,
        "a 4xx is the caller's error, not the span's"
    );
    assert!(spans.iter().all(|s| s.name != "handler.work"));
}

#[tokio::test]
async fn a_malformed_trace_header_starts_a_new_trace_instead_of_failing() {
    let (span, _) = one_span(request(("traceparent", "00-zz-yy-01"))).await;
    assert!(span.span_context.is_valid());
    assert!(!span.parent_span_is_remote);
}
