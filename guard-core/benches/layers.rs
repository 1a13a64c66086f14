//! Per-layer and full-stack overhead on the orders payload (DESIGN.md §6).
//!
//! `cargo bench -p guard-core --bench layers`. Each bench calls the tower service directly with a
//! fresh request per iteration; "bare" is the handler alone, so a layer's overhead is its figure
//! minus bare.

use std::convert::Infallible;
use std::hint::black_box;
use std::path::PathBuf;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use guard_core::audit::{AuditLayer, JsonLinesSink};
use guard_core::ingress::IngressLayer;
use guard_core::request::Peer;
use guard_core::secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
use guard_core::validate::{JsonBody, TypedValidateLayer, ValidateLayer, parse_strict};
use guard_core::{GuardBuilder, GuardDeps, GuardRequest, GuardResponse, Policy};
use tower::{Layer, Service, service_fn};
use validator::Validate;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn order() -> Bytes {
    Bytes::from(std::fs::read(repo().join("examples/orders/order.json")).unwrap())
}

fn request(body: &Bytes) -> GuardRequest {
    let mut req = http::Request::post("/orders")
        .header("content-type", "application/json")
        .body(body.clone())
        .unwrap();
    req.extensions_mut()
        .insert(Peer::new("203.0.113.7".parse().unwrap()));
    req
}

fn store() -> SecretStore {
    SecretStore::new(
        |_: &str, _: SecretVersion| -> Result<SecretValue, SecretsError> {
            Ok(SecretValue::from("bench-key"))
        },
    )
}

async fn handler(req: GuardRequest) -> Result<GuardResponse, Infallible> {
    black_box(req.extensions().get::<JsonBody>());
    let mut r = http::Response::new(Bytes::from_static(b"{\"accepted\":true}"));
    *r.status_mut() = http::StatusCode::CREATED;
    Ok(r)
}

/// Drives a service future that never waits (every layer here answers synchronously).
fn run<S>(svc: &mut S, req: GuardRequest) -> GuardResponse
where
    S: Service<GuardRequest, Response = GuardResponse, Error = Infallible>,
{
    let fut = svc.call(req);
    match futures_executor_lite(fut) {
        Ok(r) => r,
        Err(e) => match e {},
    }
}

fn futures_executor_lite<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

#[derive(serde::Deserialize, serde::Serialize, validator::Validate)]
#[allow(dead_code)]
struct Item {
    #[validate(length(max = 64))]
    sku: String,
    #[validate(range(min = 1, max = 1000))]
    qty: u32,
}

#[derive(serde::Deserialize, validator::Validate)]
#[allow(dead_code)]
struct Order {
    #[validate(length(min = 12, max = 36))]
    order_id: String,
    #[validate(email)]
    customer_email: String,
    #[validate(length(min = 1, max = 50), nested)]
    items: Vec<Item>,
    total_cents: u64,
    currency: String,
}

fn benches(c: &mut Criterion) {
    let body = order();
    let policy = Policy::load(repo().join("examples/orders/guard.toml")).unwrap();
    let schema = policy
        .validate
        .as_ref()
        .unwrap()
        .schema_document
        .clone()
        .unwrap();

    let mut g = c.benchmark_group("layer");
    let mut bare = service_fn(handler);
    g.bench_function("bare_handler", |b| {
        b.iter(|| run(&mut bare, request(&body)))
    });

    let mut ingress = IngressLayer::from_policy(&policy.ingress)
        .unwrap()
        .layer(service_fn(handler));
    g.bench_function("ingress", |b| b.iter(|| run(&mut ingress, request(&body))));

    g.bench_function("parse_strict", |b| {
        b.iter(|| parse_strict(black_box(&body)).unwrap())
    });
    g.bench_function("serde_json_from_slice", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&body)).unwrap())
    });

    let mut schema_svc = ValidateLayer::with_schema(&schema)
        .unwrap()
        .layer(service_fn(handler));
    g.bench_function("validate_schema", |b| {
        b.iter(|| run(&mut schema_svc, request(&body)))
    });

    let validator = guard_core::validate::compile_schema(&schema).unwrap();
    let value = parse_strict(&body).unwrap();
    g.bench_function("jsonschema_is_valid", |b| {
        b.iter(|| validator.is_valid(black_box(&value)))
    });

    let mut typed = TypedValidateLayer::<Order>::new().layer(service_fn(handler));
    g.bench_function("validate_typed", |b| {
        b.iter(|| run(&mut typed, request(&body)))
    });

    let sink = JsonLinesSink::new(std::io::sink(), 1 << 16);
    let mut audit = AuditLayer::new(sink.clone()).layer(service_fn(handler));
    g.bench_function("audit_to_nonblocking_sink", |b| {
        b.iter(|| run(&mut audit, request(&body)))
    });
    g.finish();

    let mut g = c.benchmark_group("stack");
    g.bench_function("build_from_policy", |b| {
        b.iter(|| {
            GuardBuilder::from_policy_with(black_box(&policy), GuardDeps::with_secrets(store()))
                .unwrap()
                .build()
        })
    });
    let guard = GuardBuilder::from_policy_with(&policy, GuardDeps::with_secrets(store()))
        .unwrap()
        .audit(AuditLayer::new(sink.clone()))
        .build();
    let mut full = guard.wrap(service_fn(handler));
    g.bench_function("allow_path", |b| b.iter(|| run(&mut full, request(&body))));
    let mut bad = serde_json::from_slice::<serde_json::Value>(&body).unwrap();
    bad["items"][0]["qty"] = 0.into();
    let bad = Bytes::from(serde_json::to_vec(&bad).unwrap());
    g.bench_function("deny_schema", |b| b.iter(|| run(&mut full, request(&bad))));
    let deep = Bytes::from(vec![b'['; 64]);
    g.bench_function("deny_too_deep", |b| {
        b.iter(|| run(&mut full, request(&deep)))
    });
    g.bench_function("deny_method", |b| {
        b.iter(|| {
            let mut r = request(&body);
            *r.method_mut() = http::Method::GET;
            run(&mut full, r)
        })
    });
    g.finish();
    sink.flush(std::time::Duration::from_secs(5));
}

criterion_group!(layers, benches);
criterion_main!(layers);
