//! The orders policy (`examples/orders/guard.toml`) through `GuardBuilder::from_policy_with`: the
//! layer order the README promises, and when a signature is used up: only once every check
//! (the per-principal rate limit included) admitted the request, atomically, before the handler.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use guard_core::Unavailable;
use guard_core::audit::{AuditLayer, SecurityEvent};
use guard_core::clock::WallClock;
use guard_core::rate_limit::{MemoryBackend, Rate, RateLimitLayer, key};
use guard_core::replay::ReplayStore;
use guard_core::request::{Peer, Trigger};
use guard_core::verify::MemoryReplayStore;
use guard_core::{GuardBuilder, GuardDeps, Policy};
use guard_core::{GuardRequest, GuardResponse};
use guard_secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
use tower::{Layer, Service, ServiceExt};

use crate::support::{Handler, T0, hmac_hex};

const KEY: &[u8] = b"orders-webhook-key";
const ORDER: &[u8] = br#"{"order_id":"ord_7Hx9Kq2LmN4p","customer_email":"ana@example.com","items":[{"sku":"BOOK-42","qty":2}],"total_cents":4599,"currency":"EUR"}"#;
const OUTSIDE: &str = "192.0.2.1";

fn orders_policy() -> Policy {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("examples/orders/guard.toml");
    Policy::load(path).unwrap()
}

/// The HMAC key, and the handler's API key unless `api_key` is false.
fn secrets(api_key: bool) -> SecretStore {
    SecretStore::new(move |name: &str, v: SecretVersion| match (name, v) {
        ("orders-webhook-hmac", SecretVersion::Current) => Ok(SecretValue::new(KEY.to_vec())),
        ("orders-api-key", SecretVersion::Current) if api_key => Ok(SecretValue::from("ak")),
        _ => Err(SecretsError::not_found(name)),
    })
}

struct Orders {
    svc: guard_core::GuardService<
        tower::util::BoxCloneService<GuardRequest, GuardResponse, std::convert::Infallible>,
    >,
    handler: Handler,
    events: Arc<Mutex<Vec<SecurityEvent>>>,
    rate_clock: WallClock,
}

struct Options {
    api_key: bool,
    /// The per-principal limit on a fake clock instead of the policy's (5/s, burst 10).
    principal_burst: Option<u32>,
    replay: Option<Arc<dyn ReplayStore>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            api_key: true,
            principal_burst: None,
            replay: None,
        }
    }
}

fn orders(opts: Options) -> Orders {
    let wall = WallClock::fake_at_unix(T0);
    let store = secrets(opts.api_key);
    let deps = GuardDeps::with_secrets(store)
        .clock(wall.clone())
        .replay_store(
            opts.replay
                .unwrap_or_else(|| Arc::new(MemoryReplayStore::new(1000).with_clock(wall.clone()))),
        );
    let events: Arc<Mutex<Vec<SecurityEvent>>> = Arc::default();
    let sink = events.clone();
    let mut b = GuardBuilder::from_policy_with(&orders_policy(), deps)
        .unwrap()
        .audit(AuditLayer::new(move |e: SecurityEvent| {
            sink.lock().unwrap().push(e)
        }));
    let rate_clock = WallClock::fake_at_unix(0);
    if let Some(burst) = opts.principal_burst {
        let rate = Rate::per_second(NonZeroU32::new(1).unwrap())
            .with_burst(NonZeroU32::new(burst).unwrap());
        let mem = MemoryBackend::with_clock(rate, rate_clock.clone());
        b = b.rate_limit_post_auth(RateLimitLayer::new(mem, key::RateKey::principal()));
    }
    let handler = Handler::default();
    let svc = b
        .build()
        .layer(tower::util::BoxCloneService::new(handler.service()));
    Orders {
        svc,
        handler,
        events,
        rate_clock,
    }
}

impl Orders {
    async fn send(&self, req: GuardRequest) -> GuardResponse {
        let mut svc = self.svc.clone();
        svc.ready().await.unwrap().call(req).await.unwrap()
    }

    /// Sends and returns the status and problem code; asserts exactly one security event with them.
    async fn status(&self, req: GuardRequest) -> (u16, String) {
        self.events.lock().unwrap().clear();
        let resp = self.send(req).await;
        let code = serde_json::from_slice::<serde_json::Value>(resp.body())
            .ok()
            .and_then(|v| v["code"].as_str().map(String::from))
            .unwrap_or_default();
        let events = self.events.lock().unwrap();
        assert_eq!(events.len(), 1, "one security event per decision");
        assert_eq!(events[0].status, resp.status().as_u16());
        (resp.status().as_u16(), code)
    }
}

fn post(ip: &str, body: &[u8]) -> GuardRequest {
    let mut req = http::Request::post("/orders")
        .header("content-type", "application/json")
        .body(Bytes::copy_from_slice(body))
        .unwrap();
    req.extensions_mut().insert(Trigger::Http);
    req.extensions_mut().insert(Peer::new(ip.parse().unwrap()));
    req
}

fn signed(ip: &str, t: u64, body: &[u8]) -> GuardRequest {
    let mut msg = format!("{t}.").into_bytes();
    msg.extend_from_slice(body);
    let mut req = post(ip, body);
    req.headers_mut().insert(
        "x-guard-signature",
        format!("t={t},v1={}", hmac_hex(KEY, &msg)).parse().unwrap(),
    );
    req
}

fn code(c: &str) -> String {
    c.to_string()
}

#[tokio::test]
async fn the_pre_auth_limit_runs_before_verify() {
    let o = orders(Options::default());
    for i in 0..10 {
        assert_eq!(
            o.status(post(OUTSIDE, ORDER)).await,
            (403, code("guard.verify.forbidden_address")),
            "request {i}"
        );
    }
    assert_eq!(
        o.status(post(OUTSIDE, ORDER)).await,
        (429, code("guard.rate.limited"))
    );
    assert_eq!(o.handler.calls(), 0);
}

#[tokio::test]
async fn ingress_runs_before_verify_and_verify_before_validate() {
    let o = orders(Options::default());
    let mut get = post(OUTSIDE, ORDER);
    *get.method_mut() = http::Method::GET;
    assert_eq!(o.status(get).await.0, 405, "method before address");
    let big = vec![b' '; 65_537];
    assert_eq!(
        o.status(post(OUTSIDE, &big)).await.0,
        413,
        "size before address"
    );
    assert_eq!(
        o.status(post(OUTSIDE, b"{\"order_id\":1}")).await,
        (403, code("guard.verify.forbidden_address")),
        "address before the schema"
    );
    assert_eq!(o.handler.calls(), 0);
}

#[tokio::test]
async fn validate_runs_before_secrets_and_secrets_before_the_handler() {
    let o = orders(Options {
        api_key: false,
        ..Options::default()
    });
    // Signed, invalid body, the handler's secret missing: the schema answers (400), not 503.
    assert_eq!(
        o.status(signed(OUTSIDE, T0, b"{\"order_id\":1}")).await,
        (400, code("guard.validate.schema"))
    );
    // Signed, valid body, secret missing: 503 and the handler is not called.
    assert_eq!(
        o.status(signed(OUTSIDE, T0, ORDER)).await,
        (503, code("guard.secrets.unavailable"))
    );
    assert_eq!(o.handler.calls(), 0);
}

#[tokio::test]
async fn the_principal_limit_runs_after_verify_and_before_validate() {
    let o = orders(Options {
        principal_burst: Some(1),
        ..Options::default()
    });
    assert_eq!(o.status(signed(OUTSIDE, T0, ORDER)).await.0, 200);
    // Same principal (the signing key) from another address, invalid body: 429, not 400.
    assert_eq!(
        o.status(signed("192.0.2.2", T0, b"{\"order_id\":1}")).await,
        (429, code("guard.rate.limited"))
    );
    // A bad signature is refused by verify before the principal limit is asked.
    let mut bad = signed("192.0.2.3", T0, ORDER);
    *bad.body_mut() = Bytes::from_static(b"{}");
    assert_eq!(
        o.status(bad).await,
        (401, code("guard.verify.bad_signature"))
    );
    assert_eq!(o.handler.calls(), 1);
}

#[tokio::test]
async fn a_request_refused_by_the_principal_limit_can_be_retried_with_its_signature() {
    let o = orders(Options {
        principal_burst: Some(1),
        ..Options::default()
    });
    assert_eq!(o.status(signed(OUTSIDE, T0, ORDER)).await.0, 200);
    // Another signed order (another timestamp): over the principal's limit.
    let second = ORDER;
    let resp = o.send(signed(OUTSIDE, T0 + 1, second)).await;
    assert_eq!(resp.status(), 429);
    let wait: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    o.rate_clock.advance(Duration::from_secs(wait));
    // The retry, with the very same signature, is admitted: the 429 did not use it up.
    assert_eq!(o.status(signed(OUTSIDE, T0 + 1, second)).await.0, 200);
    assert_eq!(o.handler.calls(), 2);
    // A replay of an admitted request is not.
    o.rate_clock.advance(Duration::from_secs(wait));
    assert_eq!(
        o.status(signed(OUTSIDE, T0 + 1, second)).await,
        (401, code("guard.verify.replayed"))
    );
    assert_eq!(
        o.status(signed("203.0.113.7", T0, ORDER)).await,
        (401, code("guard.verify.replayed")),
        "not from an allowed address either"
    );
    assert_eq!(o.handler.calls(), 2);
}

/// A memory store whose `seen` answers only once two callers asked, so both copies of a request
/// pass verification ("not seen") before either is recorded: only the atomic commit can keep one
/// out.
struct BothSeeFirst {
    inner: MemoryReplayStore,
    barrier: tokio::sync::Barrier,
}

impl ReplayStore for BothSeeFirst {
    fn first_use<'a>(
        &'a self,
        key: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, Unavailable>> {
        self.inner.first_use(key, ttl)
    }

    fn seen<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<bool, Unavailable>> {
        Box::pin(async move {
            let seen = self.inner.seen(key).await;
            self.barrier.wait().await;
            seen
        })
    }
}

#[tokio::test]
async fn of_two_concurrent_copies_exactly_one_reaches_the_handler() {
    let store = Arc::new(BothSeeFirst {
        inner: MemoryReplayStore::new(100).with_clock(WallClock::fake_at_unix(T0)),
        barrier: tokio::sync::Barrier::new(2),
    });
    let o = orders(Options {
        replay: Some(store),
        ..Options::default()
    });
    let (a, b) = tokio::join!(
        o.send(signed(OUTSIDE, T0, ORDER)),
        o.send(signed("192.0.2.2", T0, ORDER))
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 401]);
    let refused = if a.status() == 401 { a } else { b };
    let body: serde_json::Value = serde_json::from_slice(refused.body()).unwrap();
    assert_eq!(body["code"], "guard.verify.replayed");
    assert_eq!(o.handler.calls(), 1, "exactly one copy reaches the handler");
    assert_eq!(o.events.lock().unwrap().len(), 2, "one event per copy");
}

#[tokio::test]
async fn a_request_refused_for_an_unavailable_secret_can_be_retried_with_its_signature() {
    let replay: Arc<dyn ReplayStore> =
        Arc::new(MemoryReplayStore::new(100).with_clock(WallClock::fake_at_unix(T0)));
    // The handler's secret cannot be read: 503, a transient refusal the sender retries.
    let down = orders(Options {
        api_key: false,
        replay: Some(replay.clone()),
        ..Options::default()
    });
    assert_eq!(
        down.status(signed(OUTSIDE, T0, ORDER)).await,
        (503, code("guard.secrets.unavailable"))
    );
    // The secret is back (same replay store): the retry with the same signature gets in, once.
    let up = orders(Options {
        replay: Some(replay),
        ..Options::default()
    });
    assert_eq!(up.status(signed(OUTSIDE, T0, ORDER)).await.0, 200);
    assert_eq!(
        up.status(signed(OUTSIDE, T0, ORDER)).await,
        (401, code("guard.verify.replayed"))
    );
    assert_eq!(down.handler.calls() + up.handler.calls(), 1);
}
