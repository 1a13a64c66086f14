//! Authorization rules, the same three verdicts whatever verified the caller: `orders:write`
//! (or the writer role) may `POST /orders` (200), a principal holding only `orders:read` is
//! refused (403 `guard.authz.forbidden`, the event naming the rule and no claim value), and a
//! request no rule decides is refused (403). Through a real OpenID Provider's tokens, the AWS
//! adapter with an API Gateway JWT authorizer, Azure Easy Auth roles and a GCP push identity.

use std::convert::Infallible;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use guard_core::audit::SecurityEvent;
use guard_core::request::{Peer, Trigger};
use guard_core::{GuardBuilder, GuardRequest, GuardResponse, Policy};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use tower::util::BoxCloneService;
use tower::{Layer, ServiceExt, service_fn};

use crate::provider::OpenIdProvider;
use crate::support::{Events, Idp, code, handler, now};

type Stack = BoxCloneService<GuardRequest, GuardResponse, Infallible>;

/// The rules every cloud shares (Azure adds its `/api` route prefix).
const RULES: &str = r#"
[[authz.rules]]
name = "write-orders"
methods = ["POST"]
paths = ["/orders", "/api/orders"]
scopes = ["orders:write"]

[[authz.rules]]
name = "read-orders"
methods = ["GET"]
paths = ["/orders", "/api/orders"]
scopes = ["orders:read"]
"#;

/// Asserts the one event of a refusal: layer `authz`, the rule named (or "no rule"), and none of
/// the principal's claim values.
fn assert_refusal_event(events: &Events, rule: Option<&str>, secrets: &[&str]) {
    let e: Vec<SecurityEvent> = events.take();
    assert_eq!(e.len(), 1, "one security event per decision: {e:?}");
    let e = &e[0];
    assert_eq!(e.code, "guard.authz.forbidden");
    assert_eq!(e.status, 403);
    assert_eq!(e.layer, "authz");
    let reason = e.reason.clone().unwrap_or_default();
    match rule {
        Some(rule) => assert!(reason.contains(&format!("`{rule}`")), "{reason}"),
        None => assert!(reason.contains("no rule"), "{reason}"),
    }
    let line = serde_json::to_string(e).unwrap();
    for s in secrets {
        assert!(!line.contains(s), "the event leaks {s}: {line}");
    }
}

#[tokio::test]
async fn a_real_providers_scopes_decide_write_read_and_unmatched_requests() {
    let idp = OpenIdProvider::start("authz");
    let events = Events::default();
    let svc = idp.guard(RULES, &events).layer(service_fn(handler));
    let call = |method: &str, path: &str, token: &str| {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .body(Bytes::new())
            .unwrap();
        svc.clone().oneshot(req)
    };
    let writer = idp.token("writer", "orders:write").await;
    let reader = idp.token("reader", "orders:read").await;

    let resp = call("POST", "/orders", &writer).await.unwrap();
    assert_eq!(resp.status(), 200, "{}", code(&resp));
    events.take();

    let resp = call("POST", "/orders", &reader).await.unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(code(&resp), "guard.authz.forbidden");
    assert!(
        !String::from_utf8_lossy(resp.body()).contains("write-orders"),
        "the client is told nothing"
    );
    assert_refusal_event(&events, Some("write-orders"), &["orders:read", &reader]);

    let resp = call("GET", "/orders", &reader).await.unwrap();
    assert_eq!(resp.status(), 200);
    events.take();

    let resp = call("DELETE", "/orders", &writer).await.unwrap();
    assert_eq!(
        (resp.status().as_u16(), code(&resp).as_str()),
        (403, "guard.authz.forbidden")
    );
    assert_refusal_event(&events, None, &["orders:write"]);
}

// ------------------------------------------------------------------------------------------- AWS

/// An API Gateway HTTP API (v2) event whose JWT authorizer verified a token with `scopes`.
fn aws_event(method: &str, path: &str, scopes: &[&str]) -> Value {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc",
            "authorizer": {"jwt": {
                "claims": {"sub": "client-7", "iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbC",
                           "client_id": "client-7", "token_use": "access"},
                "scopes": scopes
            }},
            "domainName": "abc.execute-api.us-east-1.amazonaws.com",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "198.51.100.7", "userAgent": "identity-test"},
            "requestId": "r-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Dec/2026:20:00:00 +0000",
            "timeEpoch": 1_796_155_200_000u64
        },
        "body": "{}",
        "isBase64Encoded": false
    })
}

#[tokio::test]
async fn the_aws_adapter_gives_the_same_verdicts_for_an_api_gateway_jwt_authorizer() {
    let policy = Policy::from_toml_str(&format!("[verify.aws_authorizer]\n{RULES}")).unwrap();
    let events = Events::default();
    let guard = guard_aws::builder_from_policy(&policy)
        .await
        .unwrap()
        .audit(events.audit())
        .build();
    let stack: Stack = BoxCloneService::new(guard.layer(service_fn(handler)));
    let lambda = guard_aws::GuardLayer::new().layer(stack);
    let call = |method: &str, path: &str, scopes: &[&str]| {
        let mut ctx = Context::default();
        ctx.request_id = "identity-test".into();
        lambda
            .clone()
            .oneshot(LambdaEvent::new(aws_event(method, path, scopes), ctx))
    };
    let status = |out: &Value| out["statusCode"].as_u64().unwrap();
    let out = call("POST", "/orders", &["orders:write"]).await.unwrap();
    assert_eq!(status(&out), 200, "{out}");
    events.take();
    let out = call("POST", "/orders", &["orders:read"]).await.unwrap();
    assert_eq!(status(&out), 403, "{out}");
    assert!(
        out["body"]
            .as_str()
            .unwrap()
            .contains("guard.authz.forbidden")
    );
    assert_refusal_event(&events, Some("write-orders"), &["orders:read"]);
    let out = call("POST", "/admin", &["orders:write"]).await.unwrap();
    assert_eq!(status(&out), 403, "{out}");
    assert_refusal_event(&events, None, &["orders:write"]);
}

// ----------------------------------------------------------------------------------------- Azure

fn easy_auth(roles: &[&str]) -> String {
    let mut claims = vec![json!({"typ": "name", "val": "ana@contoso.example"})];
    claims.extend(roles.iter().map(|r| json!({"typ": "roles", "val": r})));
    B64.encode(
        json!({"auth_typ": "aad", "name_typ": "name", "role_typ": "roles", "claims": claims})
            .to_string(),
    )
}

#[tokio::test]
async fn the_azure_adapter_gives_the_same_verdicts_for_easy_auth_roles() {
    let rules = r#"
[[authz.rules]]
name = "write-orders"
methods = ["POST"]
paths = ["/orders", "/api/orders"]
roles = ["Orders.Writer"]
"#;
    let policy = Policy::from_toml_str(&format!("[verify.azure_easy_auth]\n{rules}")).unwrap();
    let events = Events::default();
    let guard = GuardBuilder::from_policy(&policy)
        .unwrap()
        .audit(events.audit())
        .build();
    let stack: Stack = BoxCloneService::new(guard.layer(service_fn(handler)));
    let functions = guard_azure::functions::Functions::default().with(
        "orders",
        guard_azure::functions::Functions::parse(
            &std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../examples/azure-orders/orders/function.json"),
            )
            .unwrap(),
        )
        .unwrap(),
    );
    let service = guard_azure::AzureService::new(
        stack,
        functions,
        guard_azure::decode::DecodeOptions::from_policy(&policy),
    );
    let call = |path: &str, roles: &[&str]| {
        let mut req = http::Request::post(path)
            .header("content-type", "application/json")
            .header("x-ms-client-principal", easy_auth(roles))
            .body(Bytes::from_static(b"{}"))
            .unwrap();
        req.extensions_mut().insert(Trigger::Http);
        req.extensions_mut()
            .insert(Peer::new("198.51.100.7".parse().unwrap()));
        service.clone().oneshot(req)
    };
    let resp = call("/api/orders", &["Orders.Writer"]).await.unwrap();
    assert_eq!(resp.status(), 200, "{}", code(&resp));
    events.take();
    let resp = call("/api/orders", &["Orders.Reader"]).await.unwrap();
    assert_eq!(
        (resp.status().as_u16(), code(&resp).as_str()),
        (403, "guard.authz.forbidden")
    );
    assert_refusal_event(&events, Some("write-orders"), &["Orders.Reader"]);
    let resp = call("/api/admin", &["Orders.Writer"]).await.unwrap();
    assert_eq!(
        (resp.status().as_u16(), code(&resp).as_str()),
        (403, "guard.authz.forbidden")
    );
    assert_refusal_event(&events, None, &["Orders.Writer"]);
}

// ------------------------------------------------------------------------------------------- GCP

const PUSH_ACCOUNT: &str = "orders-push@shop-prod.iam.gserviceaccount.com";
const ORDERS_SUB: &str = "projects/shop-prod/subscriptions/orders-push";
const RETURNS_SUB: &str = "projects/shop-prod/subscriptions/returns-push";
const PUSH_AUD: &str = "https://orders.example.com/pubsub";

/// A Google push token (signed with the test key the stub provider publishes).
fn push_token(email: &str) -> String {
    crate::support::rs256(&json!({
        "iss": "https://accounts.google.com", "aud": PUSH_AUD, "sub": "1234567890",
        "email": email, "email_verified": true, "iat": now(), "exp": now() + 600
    }))
}

#[tokio::test]
async fn the_gcp_adapter_gives_the_same_verdicts_for_a_push_identity() {
    let keys = Idp::start().await;
    let policy = Policy::from_toml_str(&format!(
        r#"
[verify.sources]
pubsub = ["{ORDERS_SUB}", "{RETURNS_SUB}"]
[verify.gcp_push]
audience = "{PUSH_AUD}"
service_account = "{PUSH_ACCOUNT}"
jwks_url = "{}/jwks"

[[authz.rules]]
name = "orders-push"
sources = ["pubsub:{ORDERS_SUB}"]
principals = ["gcp-push:*"]
claims = [{{ claim = "email", equals = "{PUSH_ACCOUNT}" }}]
roles = ["orders.writer"]
"#,
        keys.issuer
    ))
    .unwrap();
    let events = Events::default();
    let guard = GuardBuilder::from_policy(&policy)
        .unwrap()
        .audit(events.audit())
        .build();
    let stack: Stack = BoxCloneService::new(guard.layer(service_fn(handler)));
    let service = guard_gcp::GcpLayer::from_policy(&policy).layer(stack);
    let push = |subscription: &str, token: &str| {
        let envelope = json!({
            "message": {"data": B64.encode(b"{}"), "attributes": {}, "messageId": "m-1",
                        "publishTime": "2026-12-01T20:00:00.000Z"},
            "subscription": subscription, "deliveryAttempt": 1
        });
        let mut req = http::Request::post("/pubsub")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Bytes::from(envelope.to_string()))
            .unwrap();
        req.extensions_mut().insert(Trigger::Http);
        service.clone().oneshot(req)
    };
    // The push identity holds no role: the rule that decides refuses it (nack, redelivered,
    // then dead-lettered).
    let resp = push(ORDERS_SUB, &push_token(PUSH_ACCOUNT)).await.unwrap();
    assert_eq!(
        (resp.status().as_u16(), code(&resp).as_str()),
        (403, "guard.authz.forbidden")
    );
    assert_refusal_event(&events, Some("orders-push"), &[PUSH_ACCOUNT]);
    // A verified message from a source no rule decides.
    let resp = push(RETURNS_SUB, &push_token(PUSH_ACCOUNT)).await.unwrap();
    assert_eq!(
        (resp.status().as_u16(), code(&resp).as_str()),
        (403, "guard.authz.forbidden")
    );
    assert_refusal_event(&events, None, &[PUSH_ACCOUNT]);

    // Without the role requirement the same identity is allowed.
    let allowed = policy_without_roles(&keys.issuer);
    let guard = GuardBuilder::from_policy(&allowed)
        .unwrap()
        .audit(events.audit())
        .build();
    let stack: Stack = BoxCloneService::new(guard.layer(service_fn(handler)));
    let service = guard_gcp::GcpLayer::from_policy(&allowed).layer(stack);
    let envelope = json!({
        "message": {"data": B64.encode(b"{}"), "attributes": {}, "messageId": "m-2",
                    "publishTime": "2026-12-01T20:00:00.000Z"},
        "subscription": ORDERS_SUB, "deliveryAttempt": 1
    });
    let mut req = http::Request::post("/pubsub")
        .header(
            "authorization",
            format!("Bearer {}", push_token(PUSH_ACCOUNT)),
        )
        .header("content-type", "application/json")
        .body(Bytes::from(envelope.to_string()))
        .unwrap();
    req.extensions_mut().insert(Trigger::Http);
    let resp = service.oneshot(req).await.unwrap();
    assert!(
        resp.status().is_success(),
        "{} {}",
        resp.status(),
        code(&resp)
    );
}

fn policy_without_roles(jwks: &str) -> Policy {
    Policy::from_toml_str(&format!(
        r#"
[verify.sources]
pubsub = ["{ORDERS_SUB}"]
[verify.gcp_push]
audience = "{PUSH_AUD}"
service_account = "{PUSH_ACCOUNT}"
jwks_url = "{jwks}/jwks"

[[authz.rules]]
name = "orders-push"
sources = ["pubsub:{ORDERS_SUB}"]
principals = ["gcp-push:*"]
claims = [{{ claim = "email", equals = "{PUSH_ACCOUNT}" }}]
"#
    ))
    .unwrap()
}
