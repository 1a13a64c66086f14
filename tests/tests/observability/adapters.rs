//! Each adapter, in process, hands the audit layer what the invocation's server span needs: the
//! caller's trace from each kind of trace header and the platform's facts (`faas.*`, `cloud.*`),
//! read back through `opentelemetry_sdk`'s in-memory exporter.

use std::collections::HashMap;
use std::convert::Infallible;

use bytes::Bytes;
use guard_core::audit::{AuditLayer, SecurityEvent};
use guard_core::request::{Peer, Trigger};
use guard_core::{GuardBuilder, GuardRequest, GuardResponse, Policy};
use lambda_runtime::{Context, LambdaEvent};
use opentelemetry::trace::{SpanKind, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::json;
use tower::{Layer, ServiceExt, service_fn};
use tracing_subscriber::layer::SubscriberExt;

const POLICY: &str = "[function]\nallow_unverified = true\n";

async fn ok(_req: GuardRequest) -> Result<GuardResponse, Infallible> {
    Ok(GuardResponse::new(Bytes::from_static(b"{}")))
}

fn guard() -> guard_core::Guard {
    GuardBuilder::from_policy(&Policy::from_toml_str(POLICY).unwrap())
        .unwrap()
        .audit(AuditLayer::new(|_: SecurityEvent| {}))
        .build()
}

/// The one server span `f` produced, with its attributes.
async fn server_span<F: std::future::Future<Output = ()>>(
    f: impl FnOnce() -> F,
) -> (SpanData, HashMap<String, String>) {
    let _one = crate::ONE_AT_A_TIME.lock().await;
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("adapter-test")));
    let default = tracing::subscriber::set_default(subscriber);
    f().await;
    drop(default);
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let server: Vec<SpanData> = spans
        .into_iter()
        .filter(|s| s.span_kind == SpanKind::Server)
        .collect();
    assert_eq!(server.len(), 1, "{server:#?}");
    let span = server.into_iter().next().unwrap();
    let attrs = span
        .attributes
        .iter()
        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect();
    (span, attrs)
}

#[tokio::test]
async fn aws_an_api_gateway_request_with_x_amzn_trace_id_is_a_span_in_that_x_ray_trace() {
    let (span, a) = server_span(|| async {
        let event = json!({
            "version": "2.0", "routeKey": "$default", "rawPath": "/orders", "rawQueryString": "",
            "headers": {"content-type": "application/json",
                        "x-amzn-trace-id": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"},
            "requestContext": {"accountId": "123456789012", "apiId": "abc",
                "domainName": "abc.execute-api.us-east-1.amazonaws.com",
                "http": {"method": "POST", "path": "/orders", "protocol": "HTTP/1.1",
                         "sourceIp": "203.0.113.5", "userAgent": "t"},
                "requestId": "api-1", "routeKey": "$default", "stage": "$default",
                "time": "01/Dec/2026:20:00:00 +0000", "timeEpoch": 1_796_155_200_000u64},
            "body": "{}", "isBase64Encoded": false
        });
        let mut ctx = Context::default();
        ctx.request_id = "lambda-req-1".into();
        ctx.invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:aws-orders".into();
        let out = guard_aws::GuardLayer::new()
            .layer(guard().layer(service_fn(ok)))
            .oneshot(LambdaEvent::new(event, ctx))
            .await
            .unwrap();
        assert_eq!(out["statusCode"], 200, "{out}");
    })
    .await;
    assert_eq!(
        span.span_context.trace_id().to_string(),
        "5759e988bd862e3fe1be46a994272793"
    );
    assert_eq!(span.parent_span_id.to_string(), "53995c3f42cd8ad8");
    for (k, v) in [
        ("cloud.provider", "aws"),
        ("cloud.region", "eu-west-1"),
        ("cloud.account.id", "123456789012"),
        ("faas.name", "aws-orders"),
        ("faas.invocation_id", "lambda-req-1"),
        ("faas.trigger", "http"),
        ("http.request.method", "POST"),
    ] {
        assert_eq!(a.get(k).map(String::as_str), Some(v), "{k}: {a:#?}");
    }
}

#[tokio::test]
async fn aws_an_sqs_record_is_a_pubsub_span_in_the_lambda_context_trace() {
    let (span, a) = server_span(|| async {
        let event = json!({"Records": [{
            "messageId": "m-1", "receiptHandle": "h", "body": "{}",
            "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1796155200000"},
            "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:orders", "awsRegion": "us-east-1"
        }]});
        let mut ctx = Context::default();
        ctx.request_id = "lambda-req-2".into();
        ctx.invoked_function_arn =
            "arn:aws:lambda:us-east-1:123456789012:function:aws-orders".into();
        ctx.xray_trace_id = Some(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".into(),
        );
        guard_aws::GuardLayer::new()
            .layer(guard().layer(service_fn(ok)))
            .oneshot(LambdaEvent::new(event, ctx))
            .await
            .unwrap();
    })
    .await;
    assert_eq!(
        span.span_context.trace_id().to_string(),
        "5759e988bd862e3fe1be46a994272793"
    );
    assert_eq!(a["faas.trigger"], "pubsub");
    assert!(!a.contains_key("http.request.method"));
}

#[tokio::test]
async fn azure_a_proxied_request_with_traceparent_is_a_span_in_that_trace() {
    let (span, a) = server_span(|| async {
        let service = guard_azure::AzureService::new(
            guard().layer(service_fn(ok)),
            guard_azure::functions::Functions::default(),
            guard_azure::decode::DecodeOptions::default(),
        );
        let mut req = http::Request::post("/api/orders")
            .header("content-type", "application/json")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .header("x-azure-functions-invocationid", "inv-9")
            .body(Bytes::from_static(b"{}"))
            .unwrap();
        req.extensions_mut().insert(Trigger::Http);
        req.extensions_mut()
            .insert(Peer::new("203.0.113.5".parse().unwrap()));
        let resp = service.oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200);
    })
    .await;
    assert_eq!(
        span.span_context.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(span.parent_span_id.to_string(), "00f067aa0ba902b7");
    assert_eq!(a["cloud.provider"], "azure");
    assert_eq!(a["faas.trigger"], "http");
}

#[tokio::test]
async fn gcp_a_request_with_x_cloud_trace_context_is_a_span_in_that_trace() {
    let (span, a) = server_span(|| async {
        let policy = Policy::from_toml_str(POLICY).unwrap();
        let service =
            guard_gcp::GcpLayer::from_policy(&policy).layer(guard().layer(service_fn(ok)));
        let mut req = http::Request::post("/orders")
            .header("content-type", "application/json")
            .header(
                "x-cloud-trace-context",
                "105445aa7843bc8bf206b12000100000/2706;o=1",
            )
            .header("function-execution-id", "exec-3")
            .body(Bytes::from_static(b"{}"))
            .unwrap();
        req.extensions_mut().insert(Trigger::Http);
        let resp = service.oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200);
    })
    .await;
    assert_eq!(
        span.span_context.trace_id().to_string(),
        "105445aa7843bc8bf206b12000100000"
    );
    assert_eq!(span.parent_span_id.to_string(), "0000000000000a92");
    assert_eq!(a["cloud.provider"], "gcp");
    assert_eq!(a["faas.invocation_id"], "exec-3");
}
