//! Pub/Sub push through a Guard stack behind `GcpLayer`: the handler sees the decoded data and
//! the message's attributes; an accepted message is acked even when the handler answers 203;
//! a refused one keeps a non-ack status.

use std::convert::Infallible;

use bytes::Bytes;
use guard_core::request::{Invocation, Trigger};
use guard_core::{Guard, GuardRequest, GuardResponse, Policy};
use guard_gcp::GcpLayer;
use guard_gcp::decode::PubSubMessage;
use serde_json::{Value, json};
use tower::{Layer, ServiceExt};

const POLICY: &str = r#"
[verify.sources]
pubsub = ["projects/shop-prod/subscriptions/orders-push"]
"#;

/// Answers 203 with what it saw.
async fn echo(req: GuardRequest) -> Result<GuardResponse, Infallible> {
    let msg = req
        .extensions()
        .get::<PubSubMessage>()
        .cloned()
        .unwrap_or_default();
    let trace = req
        .extensions()
        .get::<Invocation>()
        .and_then(|i| i.trace_id.clone());
    let body = json!({
        "data": String::from_utf8_lossy(req.body()),
        "attributes": msg.attributes,
        "ordering_key": msg.ordering_key,
        "source": req.extensions().get::<Trigger>().and_then(|t| t.source_id()),
        "trace": trace,
    });
    let mut resp = GuardResponse::new(Bytes::from(body.to_string()));
    *resp.status_mut() = http::StatusCode::NON_AUTHORITATIVE_INFORMATION;
    Ok(resp)
}

fn push(subscription: &str) -> GuardRequest {
    let envelope = json!({
        "message": {
            "data": "eyJvcmRlciI6IDF9",
            "attributes": {"origin": "checkout"},
            "messageId": "42",
            "orderingKey": "customer-42",
        },
        "subscription": subscription,
    });
    let mut req = GuardRequest::new(Bytes::from(envelope.to_string()));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = "/pubsub".parse().unwrap();
    req.headers_mut().insert(
        "x-cloud-trace-context",
        "4bf92f3577b34da6a3ce929d0e0e4736/7;o=1".parse().unwrap(),
    );
    req
}

fn guard() -> Guard {
    Guard::from_policy(&Policy::from_toml_str(POLICY).unwrap()).unwrap()
}

#[tokio::test]
async fn an_accepted_message_reaches_the_handler_with_its_attributes_and_is_acked() {
    let svc = GcpLayer::new().layer(guard().layer(tower::service_fn(echo)));
    let resp = svc
        .oneshot(push("projects/shop-prod/subscriptions/orders-push"))
        .await
        .unwrap();
    // 203 would be a nack for Pub/Sub: the accepted message is answered with 200.
    assert_eq!(resp.status(), 200);
    let seen: Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(seen["data"], r#"{"order": 1}"#);
    assert_eq!(seen["attributes"]["origin"], "checkout");
    assert_eq!(seen["ordering_key"], "customer-42");
    assert_eq!(
        seen["source"],
        "projects/shop-prod/subscriptions/orders-push"
    );
    assert_eq!(seen["trace"], "4bf92f3577b34da6a3ce929d0e0e4736");
}

#[tokio::test]
async fn a_message_from_another_subscription_is_refused_with_a_non_ack_status() {
    let svc = GcpLayer::new().layer(guard().layer(tower::service_fn(echo)));
    let resp = svc
        .oneshot(push("projects/evil/subscriptions/orders-push"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(!matches!(
        resp.status().as_u16(),
        102 | 200 | 201 | 202 | 204
    ));
}

#[tokio::test]
async fn plain_http_keeps_the_handlers_status() {
    let svc = GcpLayer::new().layer(tower::service_fn(echo));
    let mut req = GuardRequest::new(Bytes::from_static(b"{}"));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = "/orders".parse().unwrap();
    let resp = svc.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 203);
}
