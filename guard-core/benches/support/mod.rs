//! Shared pieces of the guard-core benches: the orders payload and policy (examples/orders), request
//! builders, a secret store, the trivial handler, and a poll loop for futures that never wait.
//!
//! Every bench file includes this module with `mod support;`; not all of them use every item.
#![allow(dead_code)]

use std::convert::Infallible;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use guard_core::audit::JsonLinesSink;
use guard_core::clock::WallClock;
use guard_core::request::Peer;
use guard_core::validate::JsonBody;
use guard_core::{Guard, GuardBuilder, GuardDeps, GuardRequest, GuardResponse, Policy};
use guard_secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
use tower::Service;

/// The HMAC key of the orders policy (`orders-webhook-hmac`) in these benches.
pub(crate) const HMAC_KEY: &[u8] = b"bench-webhook-key-0123456789abcdef";

/// The repository root.
pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `examples/orders/order.json` (the 191-byte order), as the body arrives (no trailing newline).
pub(crate) fn order() -> Bytes {
    let raw = std::fs::read(repo().join("examples/orders/order.json")).unwrap();
    Bytes::from(raw.trim_ascii_end().to_vec())
}

/// `examples/orders/guard.toml` with its schema.
pub(crate) fn policy() -> Policy {
    Policy::load(repo().join("examples/orders/guard.toml")).unwrap()
}

/// The orders policy with the rate raised to 10⁹/s, burst 100, so a benchmark loop never hits it
/// (the two limiters still check every call and send `RateLimit-*` headers with real-sized
/// counts): for allow-path timings.
pub(crate) fn policy_unlimited() -> Policy {
    let dir = repo().join("examples/orders");
    let text = std::fs::read_to_string(dir.join("guard.toml")).unwrap();
    let raised = text
        .replacen("per_second = 5\n", "per_second = 1000000000\n", 1)
        .replacen("burst = 10\n", "burst = 100\n", 1);
    assert!(
        raised.contains("per_second = 1000000000\n") && raised.contains("burst = 100\n"),
        "examples/orders/guard.toml no longer says per_second = 5, burst = 10"
    );
    let schema = std::fs::read_to_string(dir.join("order.schema.json")).unwrap();
    Policy::from_toml_str_with_schema(&raised, &schema).unwrap()
}

/// The orders schema (examples/orders/order.schema.json).
pub(crate) fn orders_schema() -> serde_json::Value {
    let text = std::fs::read(repo().join("examples/orders/order.schema.json")).unwrap();
    serde_json::from_slice(&text).unwrap()
}

/// `POST /orders`, JSON, from a peer inside the allow-list.
pub(crate) fn request(body: &Bytes) -> GuardRequest {
    request_from(body, "203.0.113.7")
}

/// `POST /orders`, JSON, from `peer`.
pub(crate) fn request_from(body: &Bytes, peer: &str) -> GuardRequest {
    let mut req = http::Request::post("/orders")
        .header("content-type", "application/json")
        .body(body.clone())
        .unwrap();
    req.extensions_mut()
        .insert(Peer::new(peer.parse().unwrap()));
    req
}

/// Secrets of the orders function: the API key and the webhook HMAC key; anything else is absent.
pub(crate) fn store() -> SecretStore {
    SecretStore::new(
        |name: &str, v: SecretVersion| -> Result<SecretValue, SecretsError> {
            match (name, v) {
                ("orders-api-key", SecretVersion::Current) => Ok(SecretValue::from("bench-key")),
                ("orders-webhook-hmac", SecretVersion::Current) => {
                    Ok(SecretValue::new(HMAC_KEY.to_vec()))
                }
                _ => Err(SecretsError::not_found(name)),
            }
        },
    )
}

/// `X-Guard-Signature` value (stripe style) for `body` at unix time `t` under `key`.
pub(crate) fn stripe_signature(key: &[u8], t: u64, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Seconds since the epoch, now.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A schema-valid order whose `order_id` differs on every call (for replay-protected signatures).
pub(crate) fn unique_order() -> Bytes {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    Bytes::from(format!(
        "{{\"order_id\":\"ord_bench{n:012}\",\"customer_email\":\"ana@example.com\",\"items\":[{{\"sku\":\"BOOK-42\",\"qty\":2}},{{\"sku\":\"PEN-7\",\"qty\":10}}],\"total_cents\":4599,\"currency\":\"EUR\"}}"
    ))
}

/// The trivial handler: 201, touches the parsed body if there is one.
pub(crate) async fn handler(req: GuardRequest) -> Result<GuardResponse, Infallible> {
    black_box(req.extensions().get::<JsonBody>());
    let mut r = http::Response::new(Bytes::from_static(b"{\"accepted\":true}"));
    *r.status_mut() = http::StatusCode::CREATED;
    Ok(r)
}

/// A non-blocking JSON-lines sink that writes to `io::sink()` (formatting still happens, on the
/// writer thread, as in production).
pub(crate) fn null_sink() -> JsonLinesSink {
    JsonLinesSink::new(std::io::sink(), 4096)
}

/// The orders stack built from `policy` the way `examples/aws-orders` builds it, with the audit
/// sink replaced by `sink`.
pub(crate) fn guard(policy: &Policy, sink: &JsonLinesSink) -> Guard {
    guard_with(policy, sink, GuardDeps::with_secrets(store()))
}

/// Like [`guard`], with the wall clock of signature windows and the replay store set to `clock`.
pub(crate) fn guard_at(policy: &Policy, sink: &JsonLinesSink, clock: &WallClock) -> Guard {
    let deps = GuardDeps::with_secrets(store()).clock(clock.clone());
    guard_with(policy, sink, deps)
}

fn guard_with(policy: &Policy, sink: &JsonLinesSink, deps: GuardDeps) -> Guard {
    GuardBuilder::from_policy_with(policy, deps)
        .unwrap()
        .audit_sink(sink.clone())
        .build()
}

/// Calls `svc` and drives the future to completion by polling it (every layer in these benches
/// answers without waiting on I/O once secrets are cached).
pub(crate) fn run<S>(svc: &mut S, req: GuardRequest) -> GuardResponse
where
    S: Service<GuardRequest, Response = GuardResponse, Error = Infallible>,
{
    match block(svc.call(req)) {
        Ok(r) => r,
        Err(e) => match e {},
    }
}

/// Polls `fut` with a no-op waker until it is ready.
pub(crate) fn block<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::hint::spin_loop();
    }
}

/// Panics unless `svc` answers `req` with `status`: a bench never times a path it does not take.
pub(crate) fn expect<S>(svc: &mut S, req: GuardRequest, status: u16, what: &str)
where
    S: Service<GuardRequest, Response = GuardResponse, Error = Infallible>,
{
    let resp = run(svc, req);
    assert_eq!(
        resp.status().as_u16(),
        status,
        "{what}: {}",
        String::from_utf8_lossy(resp.body())
    );
}
