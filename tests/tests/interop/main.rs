//! A user's existing axum app drops into Guard, on the Lambda adapter and on `guard_core::server`:
//! the `axum::Router` is the handler, a tower-http `CompressionLayer` sits inside Guard (on the
//! router) and a tower-http `TimeoutLayer` around it (on the whole Guard stack).
//!
//! Guard speaks `http::Request<Bytes>` → `http::Response<Bytes>`; axum speaks its own `Body`. The
//! conversion is two tower combinators, written here as a user would ([`axum_handler`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use guard_core::audit::{AuditLayer, Outcome, SecurityEvent};
use guard_core::server::Server;
use guard_core::{GuardBuilder, GuardRequest, GuardResponse, Policy};
use guard_http::HttpClient;
use http::StatusCode;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_http::compression::CompressionLayer;
use tower_http::timeout::TimeoutLayer;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const POLICY: &str = r#"
[function]
name = "shop-orders-test-interop"

[ingress]
methods = ["POST"]
content_types = ["application/json"]
max_body_bytes = 4096

[verify.cidr]
allow = ["127.0.0.0/8", "203.0.113.0/24"]
"#;

/// The timeout tower-http enforces around the Guard stack.
const TIMEOUT: Duration = Duration::from_millis(300);

/// The user's app, as it was before Guard: a router with a compression layer of its own.
fn app(calls: Arc<AtomicUsize>) -> Router {
    async fn create(
        State(calls): State<Arc<AtomicUsize>>,
        Json(order): Json<Value>,
    ) -> (StatusCode, Json<Value>) {
        calls.fetch_add(1, Ordering::SeqCst);
        // Large enough for the compression layer to compress.
        let note = "accepted ".repeat(200);
        (
            StatusCode::CREATED,
            Json(json!({"accepted": order["order_id"], "note": note})),
        )
    }
    async fn slow(State(calls): State<Arc<AtomicUsize>>) -> &'static str {
        calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(10)).await;
        "too late"
    }
    Router::new()
        .route("/orders", post(create))
        .route("/slow", post(slow))
        .with_state(calls)
        .layer(CompressionLayer::new())
}

/// An axum `Router` as a Guard handler: the request body goes in as axum's `Body`, the response
/// body (here compressed by tower-http) comes back as the `Bytes` Guard returns. Guard has already
/// bounded the request body; the response is the app's own, so it is read whole.
fn axum_handler(
    router: Router,
) -> impl Service<GuardRequest, Response = GuardResponse, Error = BoxError, Future: Send>
+ Clone
+ Send
+ 'static {
    router
        .map_request(|req: GuardRequest| req.map(axum::body::Body::from))
        .and_then(|resp: axum::response::Response| async move {
            let (parts, body) = resp.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX).await?;
            Ok::<_, BoxError>(GuardResponse::from_parts(parts, bytes))
        })
}

/// Guard from the policy around the app, events captured; tower-http's timeout around Guard.
fn stack(
    calls: Arc<AtomicUsize>,
    events: Arc<Mutex<Vec<SecurityEvent>>>,
) -> impl Service<GuardRequest, Response = GuardResponse, Error = BoxError, Future: Send>
+ Clone
+ Send
+ 'static {
    let policy = Policy::from_toml_str(POLICY).unwrap();
    let guard = GuardBuilder::from_policy(&policy)
        .unwrap()
        .audit(AuditLayer::new(move |e: SecurityEvent| {
            events.lock().unwrap().push(e)
        }))
        .build();
    ServiceBuilder::new()
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            TIMEOUT,
        ))
        .service(guard.wrap(axum_handler(app(calls))))
}

fn order() -> Value {
    json!({"order_id": "ord_12345678", "items": [{"sku": "a", "qty": 1}]})
}

/// The checks both paths share: what the client saw for (created, refused, timed out), and the
/// events Guard recorded.
fn assert_verdicts(
    created: (u16, Option<String>, Vec<u8>),
    refused: (u16, Vec<u8>),
    timed_out: u16,
    calls: usize,
    events: &[SecurityEvent],
) {
    let (status, encoding, body) = created;
    assert_eq!(status, 201);
    assert_eq!(
        encoding.as_deref(),
        Some("gzip"),
        "compressed by tower-http inside Guard"
    );
    assert_eq!(&body[..2], &[0x1f, 0x8b], "a gzip stream");
    let (status, body) = refused;
    assert_eq!(status, 415);
    let problem: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["code"], "guard.ingress.unsupported_media_type");
    assert_eq!(timed_out, 408, "tower-http's timeout around Guard");
    assert_eq!(
        calls, 2,
        "the router ran for /orders and /slow, never for the refused request"
    );
    let codes: Vec<_> = events.iter().map(|e| (e.code.as_str(), e.status)).collect();
    assert_eq!(
        codes,
        [
            ("guard.allow", 201),
            ("guard.ingress.unsupported_media_type", 415),
            ("guard.internal", 499),
        ],
        "one event per request; the timed-out one recorded as cancelled"
    );
    assert_eq!(events[0].outcome, Outcome::Allow);
}

/// An API Gateway HTTP API (v2) event from the guard-aws fixtures, re-aimed at `path`.
fn apigw_event(path: &str, content_type: &str, body: &str) -> Value {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../guard-aws/tests/fixtures/data/example-apigw-v2-request-no-authorizer.json"
    );
    let mut e: Value = serde_json::from_slice(&std::fs::read(fixture).unwrap()).unwrap();
    e["rawPath"] = json!(path);
    e["requestContext"]["http"]["method"] = json!("POST");
    e["requestContext"]["http"]["path"] = json!(path);
    e["requestContext"]["http"]["sourceIp"] = json!("203.0.113.9");
    e["headers"]["content-type"] = json!(content_type);
    e["headers"]["accept-encoding"] = json!("gzip");
    e["headers"]["content-length"] = json!(body.len().to_string());
    e["body"] = json!(body);
    e
}

#[tokio::test]
async fn axum_router_inside_guard_on_the_lambda_adapter() {
    let calls = Arc::new(AtomicUsize::new(0));
    let events = Arc::new(Mutex::new(Vec::new()));
    let lambda = guard_aws::GuardLayer::new().layer(stack(calls.clone(), events.clone()));
    let invoke = |event: Value| {
        let lambda = lambda.clone();
        async move {
            lambda
                .oneshot(LambdaEvent::new(event, Context::default()))
                .await
                .unwrap()
        }
    };

    let out = invoke(apigw_event(
        "/orders",
        "application/json",
        &order().to_string(),
    ))
    .await;
    let body = match out["isBase64Encoded"].as_bool() {
        Some(true) => base64::engine::general_purpose::STANDARD
            .decode(out["body"].as_str().unwrap())
            .unwrap(),
        _ => out["body"].as_str().unwrap().as_bytes().to_vec(),
    };
    let created = (
        out["statusCode"].as_u64().unwrap() as u16,
        out["headers"]["content-encoding"]
            .as_str()
            .map(str::to_owned),
        body,
    );
    let out = invoke(apigw_event("/orders", "text/plain", "hello")).await;
    let refused = (
        out["statusCode"].as_u64().unwrap() as u16,
        out["body"].as_str().unwrap().as_bytes().to_vec(),
    );
    let out = invoke(apigw_event("/slow", "application/json", "{}")).await;
    let timed_out = out["statusCode"].as_u64().unwrap() as u16;

    let events = events.lock().unwrap().clone();
    assert_verdicts(
        created,
        refused,
        timed_out,
        calls.load(Ordering::SeqCst),
        &events,
    );
    assert_eq!(events[0].peer.as_deref(), Some("203.0.113.9"));
    assert_eq!(events[0].cloud, "aws");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_router_inside_guard_on_the_http_server() {
    let calls = Arc::new(AtomicUsize::new(0));
    let events = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = Server::new()
        .shutdown_on_sigterm(false)
        // Refusals the server makes itself (413 / 431 / 408) would be recorded here; none occur.
        .audit(AuditLayer::new(|_: SecurityEvent| {}))
        .with_shutdown(async {
            let _ = stopped.await;
        });
    let running = tokio::spawn(server.serve(listener, stack(calls.clone(), events.clone())));

    // Guard's own outbound client (plain http to loopback only, redirects never followed).
    let client = HttpClient::builder().build().unwrap().allowing_local_http();
    let post = |path: &str, content_type: &str, body: String| {
        let mut req = http::Request::post(format!("http://{addr}{path}"))
            .header("content-type", content_type)
            .header("accept-encoding", "gzip")
            .body(bytes::Bytes::from(body))
            .unwrap();
        if content_type != "application/json" {
            req.headers_mut().remove("accept-encoding");
        }
        client.send(req)
    };
    let r = post("/orders", "application/json", order().to_string())
        .await
        .unwrap();
    let created = (
        r.status().as_u16(),
        r.headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        r.body().to_vec(),
    );
    let r = post("/orders", "text/plain", "hello".into()).await.unwrap();
    let refused = (r.status().as_u16(), r.body().to_vec());
    let r = post("/slow", "application/json", "{}".into())
        .await
        .unwrap();
    let timed_out = r.status().as_u16();

    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    let events = events.lock().unwrap().clone();
    assert_verdicts(
        created,
        refused,
        timed_out,
        calls.load(Ordering::SeqCst),
        &events,
    );
    assert_eq!(events[0].peer.as_deref(), Some("127.0.0.1"));
}

#[test]
fn the_handler_adapter_is_a_plain_tower_service() {
    // Compile-time: the adapted router is what `Guard::wrap` and `Server::serve` accept.
    fn is_stack<S: Service<GuardRequest, Response = GuardResponse> + Clone + Send + 'static>(
        _: &S,
    ) {
    }
    is_stack(&axum_handler(Router::new()));
}
