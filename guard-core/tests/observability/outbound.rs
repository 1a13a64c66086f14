//! The outbound helper: a signed call passes the next Guard perimeter for every HMAC scheme, an
//! unsigned or wrongly keyed one does not, and the call carries the caller's trace.

use std::convert::Infallible;

use bytes::Bytes;
use guard_core::audit::{AuditLayer, SecurityEvent};
use guard_core::outbound::OutboundLayer;
use guard_core::verify::{HmacScheme, SignatureEncoding};
use guard_core::{GuardBuilder, GuardDeps, GuardRequest, GuardResponse, Policy};
use guard_secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
use http::HeaderName;
use opentelemetry::trace::{SpanKind, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tower::{Layer, ServiceExt, service_fn};
use tracing_subscriber::layer::SubscriberExt;

fn store(key: &'static str) -> SecretStore {
    SecretStore::new(
        move |_: &str, _: SecretVersion| -> Result<SecretValue, SecretsError> {
            Ok(SecretValue::from(key))
        },
    )
}

async fn accepted(_req: GuardRequest) -> Result<GuardResponse, Infallible> {
    let mut r = GuardResponse::new(Bytes::from_static(b"{}"));
    *r.status_mut() = http::StatusCode::CREATED;
    Ok(r)
}

/// The next function: a Guard perimeter whose `[verify.hmac]` is `hmac` (keyed `peer-key`).
fn next_function(
    hmac: &str,
) -> impl tower::Service<
    GuardRequest,
    Response = GuardResponse,
    Error = Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ 'static {
    let policy = Policy::from_toml_str(&format!(
        "[verify]\nmode = \"any\"\n[verify.hmac]\nsecret = \"peer-key\"\n{hmac}"
    ))
    .unwrap();
    let guard = GuardBuilder::from_policy_with(&policy, GuardDeps::with_secrets(store("k-1")))
        .unwrap()
        .audit(AuditLayer::new(|_: SecurityEvent| {}))
        .build();
    guard.layer(service_fn(accepted))
}

fn post() -> http::Request<Bytes> {
    http::Request::post("http://127.0.0.1/orders")
        .header("content-type", "application/json")
        .body(Bytes::from_static(br#"{"order_id":"ord_12345678"}"#))
        .unwrap()
}

#[tokio::test]
async fn a_signed_call_passes_the_next_perimeter_in_every_scheme_and_an_unsigned_one_does_not() {
    let _one = crate::ONE_AT_A_TIME.lock().await;
    let generic = HmacScheme::Generic {
        header: HeaderName::from_static("x-sig"),
        prefix: "sha256=".into(),
        encoding: SignatureEncoding::Base64,
        timestamp_header: Some(HeaderName::from_static("x-ts")),
    };
    for (policy, scheme) in [
        (
            "preset = \"stripe\"\nheader = \"X-Guard-Signature\"",
            HmacScheme::stripe_style("X-Guard-Signature").unwrap(),
        ),
        ("preset = \"github\"", HmacScheme::github()),
        ("preset = \"slack\"", HmacScheme::slack()),
        (
            "preset = \"generic\"\nheader = \"x-sig\"\nprefix = \"sha256=\"\nencoding = \"base64\"\ntimestamp_header = \"x-ts\"",
            generic.clone(),
        ),
    ] {
        let next = next_function(policy);
        let signed = OutboundLayer::new()
            .sign_with(store("k-1"), "peer-key", scheme.clone())
            .layer(next.clone());
        let resp = signed.oneshot(post()).await.unwrap();
        assert_eq!(resp.status(), 201, "{policy}");

        let unsigned = OutboundLayer::new().layer(next.clone());
        assert_eq!(
            unsigned.oneshot(post()).await.unwrap().status(),
            401,
            "{policy}"
        );

        let wrong_key = OutboundLayer::new()
            .sign_with(store("another-key"), "peer-key", scheme)
            .layer(next);
        assert_eq!(
            wrong_key.oneshot(post()).await.unwrap().status(),
            401,
            "{policy}"
        );
    }
}

#[tokio::test]
async fn an_unreadable_key_fails_the_call_instead_of_sending_it_unsigned() {
    let failing = SecretStore::new(
        |name: &str, _: SecretVersion| -> Result<SecretValue, SecretsError> {
            Err(SecretsError::not_found(name))
        },
    );
    let reached = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r = reached.clone();
    let client = service_fn(move |_req: http::Request<Bytes>| {
        r.store(true, std::sync::atomic::Ordering::SeqCst);
        async { Ok::<_, Infallible>(http::Response::new(Bytes::new())) }
    });
    let call = OutboundLayer::new()
        .sign_with(failing, "peer-key", HmacScheme::github())
        .layer(client);
    assert!(call.oneshot(post()).await.is_err());
    assert!(!reached.load(std::sync::atomic::Ordering::SeqCst));
}

#[tokio::test]
async fn the_call_carries_the_current_span_so_the_next_server_span_joins_its_trace() {
    let _one = crate::ONE_AT_A_TIME.lock().await;
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("guard-test")));
    let _default = tracing::subscriber::set_default(subscriber);

    let next = next_function("preset = \"github\"");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let s = seen.clone();
    let spy = service_fn(move |req: http::Request<Bytes>| {
        *s.lock().unwrap() = req
            .headers()
            .get("traceparent")
            .map(|v| v.to_str().unwrap().to_owned());
        next.clone().oneshot(req)
    });
    let call = OutboundLayer::new()
        .sign_with(store("k-1"), "peer-key", HmacScheme::github())
        .layer(spy);
    let caller = tracing::info_span!("caller.handler");
    let sc = {
        use opentelemetry::trace::TraceContextExt as _;
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        caller.context().span().span_context().clone()
    };
    let (trace, span_id) = (sc.trace_id(), sc.span_id());
    let resp = tracing::Instrument::instrument(call.oneshot(post()), caller.clone())
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    drop(caller);
    provider.force_flush().unwrap();

    let header = seen.lock().unwrap().clone().expect("traceparent sent");
    assert_eq!(header, format!("00-{trace}-{span_id}-01"));
    let spans = exporter.get_finished_spans().unwrap();
    let server = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Server)
        .expect("the next function's server span");
    assert_eq!(server.span_context.trace_id(), trace);
    assert_eq!(server.parent_span_id, span_id);
}
