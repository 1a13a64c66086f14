//! `RateLimitLayer` on the memory backend, driven by governor's fake clock.
#![cfg(feature = "rate-limit")]

use std::convert::Infallible;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use guard_core::clock::WallClock;
use guard_core::rate_limit::key::{self, BucketKey};
use guard_core::rate_limit::{MemoryBackend, Rate, RateLimitLayer};
use guard_core::request::{MessageTrigger, Peer, Principal, PrincipalKind, Trigger};
use guard_core::{GuardRequest, GuardResponse, Policy, Rejection};
use tower::util::BoxCloneService;
use tower::{Layer, Service, ServiceExt};

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// A handler that counts its calls and answers 200.
#[derive(Clone, Default)]
struct Counting(Arc<AtomicUsize>);

impl Counting {
    fn calls(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    fn service(&self) -> BoxCloneService<GuardRequest, GuardResponse, Infallible> {
        let calls = self.0.clone();
        BoxCloneService::new(tower::service_fn(move |_req: GuardRequest| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(http::Response::new(Bytes::from_static(b"ok"))) }
        }))
    }
}

fn from(ip: &str) -> GuardRequest {
    let mut req = http::Request::new(Bytes::new());
    req.extensions_mut().insert(Peer::new(ip.parse().unwrap()));
    req
}

async fn send<S>(svc: &mut S, req: GuardRequest) -> GuardResponse
where
    S: Service<GuardRequest, Response = GuardResponse, Error = Infallible>,
{
    svc.ready().await.unwrap().call(req).await.unwrap()
}

fn limiter(rate: Rate, k: key::RateKey) -> (RateLimitLayer, WallClock) {
    let clock = WallClock::fake_at_unix(0);
    let mem = MemoryBackend::with_clock(rate, clock.clone());
    (RateLimitLayer::new(mem, k), clock)
}

#[tokio::test]
async fn refuses_past_the_burst_with_retry_after_and_ratelimit_headers() {
    let handler = Counting::default();
    let (layer, _clock) = limiter(
        Rate::per_second(nz(5)).with_burst(nz(10)),
        key::RateKey::peer(),
    );
    let mut svc = layer.layer(handler.service());
    for _ in 0..10 {
        assert_eq!(send(&mut svc, from("203.0.113.7")).await.status(), 200);
    }
    let refused = send(&mut svc, from("203.0.113.7")).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(
        handler.calls(),
        10,
        "the handler must not see a refused request"
    );
    let h = refused.headers();
    assert_eq!(h["retry-after"], "1"); // 200 ms, rounded up
    assert_eq!(h["ratelimit-limit"], "10");
    assert_eq!(h["ratelimit-remaining"], "0");
    assert_eq!(h["ratelimit-reset"], "2"); // 200 ms + 9 × 200 ms
    assert_eq!(h["content-type"], "application/problem+json");
    let body: serde_json::Value = serde_json::from_slice(refused.body()).unwrap();
    assert_eq!(body["code"], "guard.rate.limited");
    let denial = refused
        .extensions()
        .get::<Rejection>()
        .expect("denial for the audit layer");
    assert_eq!(denial.kind(), guard_core::RejectionKind::RateLimited);
}

#[tokio::test]
async fn retry_after_rounds_up_to_whole_seconds() {
    let handler = Counting::default();
    let (layer, clock) = limiter(
        Rate::per_minute(nz(2)).with_burst(nz(1)),
        key::RateKey::global(),
    );
    let mut svc = layer.layer(handler.service());
    assert_eq!(send(&mut svc, from("192.0.2.1")).await.status(), 200);
    clock.advance(Duration::from_millis(10_500));
    let refused = send(&mut svc, from("192.0.2.1")).await;
    assert_eq!(refused.status(), 429);
    // 30 s interval, 10.5 s gone: 19.5 s left → 20.
    assert_eq!(refused.headers()["retry-after"], "20");
    assert_eq!(refused.headers()["ratelimit-reset"], "20");
}

#[tokio::test]
async fn tokens_come_back_at_the_configured_rate() {
    let handler = Counting::default();
    let (layer, clock) = limiter(
        Rate::per_second(nz(5)).with_burst(nz(10)),
        key::RateKey::peer(),
    );
    let mut svc = layer.layer(handler.service());
    for _ in 0..10 {
        send(&mut svc, from("203.0.113.7")).await;
    }
    assert_eq!(send(&mut svc, from("203.0.113.7")).await.status(), 429);
    clock.advance(Duration::from_secs(1));
    let mut admitted = 0;
    for _ in 0..10 {
        if send(&mut svc, from("203.0.113.7")).await.status() == 200 {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 5);
    assert_eq!(handler.calls(), 15);
}

#[tokio::test]
async fn admitted_responses_carry_ratelimit_headers_unless_turned_off() {
    let handler = Counting::default();
    let (layer, _clock) = limiter(
        Rate::per_second(nz(5)).with_burst(nz(3)),
        key::RateKey::peer(),
    );
    let mut svc = layer.clone().layer(handler.service());
    let ok = send(&mut svc, from("203.0.113.7")).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["ratelimit-limit"], "3");
    assert_eq!(ok.headers()["ratelimit-remaining"], "2");
    assert_eq!(ok.headers()["ratelimit-reset"], "1");

    let mut quiet = layer.headers_on_allow(false).layer(handler.service());
    let ok = send(&mut quiet, from("203.0.113.8")).await;
    assert_eq!(ok.status(), 200);
    assert!(ok.headers().get("ratelimit-remaining").is_none());
}

#[tokio::test]
async fn stacked_limiters_report_the_one_closest_to_exhaustion() {
    let handler = Counting::default();
    let (outer, _c1) = limiter(Rate::per_second(nz(100)), key::RateKey::peer());
    let (inner, _c2) = limiter(
        Rate::per_second(nz(5)).with_burst(nz(2)),
        key::RateKey::principal(),
    );
    let mut svc = outer.layer(inner.layer(handler.service()));
    let ok = send(&mut svc, from("203.0.113.7")).await;
    assert_eq!(ok.headers()["ratelimit-limit"], "2");
    assert_eq!(ok.headers()["ratelimit-remaining"], "1");
}

#[tokio::test]
async fn forwarded_headers_do_not_change_the_bucket() {
    let handler = Counting::default();
    let (layer, _clock) = limiter(Rate::per_minute(nz(3)), key::RateKey::peer());
    let mut svc = layer.layer(handler.service());
    for i in 0..10 {
        let mut req = from("203.0.113.7");
        req.headers_mut().insert(
            "x-forwarded-for",
            format!("10.0.0.{i}, 198.51.100.{i}").parse().unwrap(),
        );
        send(&mut svc, req).await;
    }
    assert_eq!(handler.calls(), 3);
    // Another platform-observed address has its own bucket.
    assert_eq!(send(&mut svc, from("203.0.113.8")).await.status(), 200);
}

#[tokio::test]
async fn rotating_ipv6_inside_one_slash_64_shares_a_bucket() {
    let handler = Counting::default();
    let (layer, _clock) = limiter(Rate::per_minute(nz(4)), key::RateKey::peer());
    let mut svc = layer.layer(handler.service());
    for i in 0..20u16 {
        send(
            &mut svc,
            from(&format!("2001:db8:5:6:{i:x}:{:x}::1", i * 7)),
        )
        .await;
    }
    assert_eq!(handler.calls(), 4);
    assert_eq!(send(&mut svc, from("2001:db8:5:7::1")).await.status(), 200);
}

#[tokio::test]
async fn principal_key_counts_per_principal_and_falls_back_to_peer() {
    let handler = Counting::default();
    let (layer, _clock) = limiter(Rate::per_minute(nz(1)), key::RateKey::principal());
    let mut svc = layer.layer(handler.service());
    let signed = |who: &str| {
        let mut req = from("203.0.113.7");
        req.extensions_mut()
            .insert(Principal::new(PrincipalKind::Hmac, who));
        req
    };
    assert_eq!(send(&mut svc, signed("alice")).await.status(), 200);
    assert_eq!(send(&mut svc, signed("alice")).await.status(), 429);
    assert_eq!(send(&mut svc, signed("bob")).await.status(), 200);
    // Same address, no principal: its own (peer) bucket, still limited.
    assert_eq!(send(&mut svc, from("203.0.113.7")).await.status(), 200);
    assert_eq!(send(&mut svc, from("203.0.113.7")).await.status(), 429);
    assert_eq!(handler.calls(), 3);
}

#[tokio::test]
async fn messages_without_a_peer_share_one_bucket_and_get_a_retryable_429() {
    let handler = Counting::default();
    let (layer, _clock) = limiter(Rate::per_minute(nz(2)), key::RateKey::peer());
    let mut svc = layer.layer(handler.service());
    let mut statuses = Vec::new();
    for i in 0..3 {
        let mut req = http::Request::new(Bytes::new());
        req.extensions_mut()
            .insert(Trigger::Message(MessageTrigger::new(
                "sqs",
                "arn:aws:sqs:us-east-1:123456789012:orders",
                format!("m-{i}"),
            )));
        statuses.push(send(&mut svc, req).await.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429]);
    assert!(guard_core::RejectionKind::RateLimited.is_transient());
    assert_eq!(handler.calls(), 2);
}

#[tokio::test]
async fn a_closure_key_returning_none_exempts_the_request() {
    let handler = Counting::default();
    let by_tenant = key::RateKey::custom(|req: &GuardRequest| {
        req.headers()
            .get("x-tenant")
            .and_then(|v| v.to_str().ok())
            .map(BucketKey::named)
    });
    let (layer, _clock) = limiter(Rate::per_minute(nz(1)), by_tenant);
    let mut svc = layer.layer(handler.service());
    let tenant = |t: &str| {
        let mut req = from("203.0.113.7");
        req.headers_mut().insert("x-tenant", t.parse().unwrap());
        req
    };
    assert_eq!(send(&mut svc, tenant("a")).await.status(), 200);
    assert_eq!(send(&mut svc, tenant("a")).await.status(), 429);
    assert_eq!(send(&mut svc, tenant("b")).await.status(), 200);
    for _ in 0..3 {
        assert_eq!(send(&mut svc, from("203.0.113.7")).await.status(), 200);
    }
    assert_eq!(handler.calls(), 5);
}

#[tokio::test]
async fn readiness_never_waits_for_tokens() {
    let handler = Counting::default();
    let (layer, _clock) = limiter(Rate::per_minute(nz(1)), key::RateKey::global());
    let mut svc = layer.layer(handler.service());
    send(&mut svc, from("203.0.113.7")).await;
    // Exhausted, yet the service is ready at once and answers 429 at once.
    let waker = futures_util::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    assert!(svc.poll_ready(&mut cx).is_ready());
    let mut fut = std::pin::pin!(svc.call(from("203.0.113.7")));
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(Ok(resp)) => assert_eq!(resp.status(), 429),
        _ => panic!("a refusal must be ready at once"),
    }
}

#[tokio::test]
async fn two_memory_instances_each_admit_their_own_burst() {
    let handler = Counting::default();
    let rate = Rate::per_minute(nz(3));
    let mut one = RateLimitLayer::memory(rate, key::RateKey::global()).layer(handler.service());
    let mut two = RateLimitLayer::memory(rate, key::RateKey::global()).layer(handler.service());
    for _ in 0..5 {
        send(&mut one, from("203.0.113.7")).await;
        send(&mut two, from("203.0.113.7")).await;
    }
    assert_eq!(handler.calls(), 6);
}

#[tokio::test]
async fn policy_builds_a_pre_auth_peer_and_a_post_auth_principal_layer() {
    let policy = Policy::from_toml_str(
        "[function]\nname = \"shop-orders-prod-intake\"\nallow_unverified = true\n[rate_limit]\nper_minute = 2\nburst = 2",
    )
    .unwrap();
    let guard = guard_core::Guard::from_policy(&policy).unwrap();
    let (pre, post) = guard.rate_limit_layers();
    let (pre, post) = (pre.unwrap(), post.unwrap());
    let handler = Counting::default();
    let mut pre_svc = pre.layer(handler.service());
    let mut post_svc = post.layer(handler.service());
    // pre_auth counts by peer: principals do not matter.
    for who in ["a", "b", "c"] {
        let mut req = from("203.0.113.7");
        req.extensions_mut()
            .insert(Principal::new(PrincipalKind::Jwt, who));
        send(&mut pre_svc, req).await;
    }
    assert_eq!(handler.calls(), 2);
    // post_auth counts by principal: three principals from one address all pass.
    for who in ["a", "b", "c"] {
        let mut req = from("203.0.113.7");
        req.extensions_mut()
            .insert(Principal::new(PrincipalKind::Jwt, who));
        assert_eq!(send(&mut post_svc, req).await.status(), 200);
    }
    assert_eq!(handler.calls(), 5);
}

#[test]
fn policy_placements_can_be_turned_off() {
    let policy = Policy::from_toml_str(
        "[function]\nallow_unverified = true\n[rate_limit]\nper_second = 1\npost_auth = \"off\"",
    )
    .unwrap();
    let guard = guard_core::Guard::from_policy(&policy).unwrap();
    let (pre_auth, post_auth) = guard.rate_limit_layers();
    assert!(pre_auth.is_some());
    assert!(post_auth.is_none());
}

#[cfg(not(feature = "redis"))]
#[test]
fn redis_backend_without_the_feature_is_a_policy_problem() {
    let err =
        Policy::from_toml_str("[rate_limit]\nper_second = 1\nbackend = \"redis://cache:6379\"")
            .unwrap_err();
    assert_eq!(err.problems()[0].path, "rate_limit.backend");
}
