//! The Lua GCRA script itself: decisions, headers, and keys that always expire.

use std::num::NonZeroU32;
use std::time::Duration;

use guard_core::rate_limit::key::BucketKey;
use guard_core::rate_limit::{FailureMode, Rate, RateLimitLayer, key};
use guard_tests::redis::RedisServer;
use redis::Commands;
use tower::Layer;

use crate::support::{Counting, connection, from, prefix, redis_backend, runtime, send};

#[test]
fn script_admits_the_burst_then_reports_the_wait() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let rate =
            Rate::per_second(NonZeroU32::new(2).unwrap()).with_burst(NonZeroU32::new(3).unwrap());
        let b = redis_backend(
            &connection(&redis.url()),
            rate,
            &prefix("gcra"),
            FailureMode::Closed,
        );
        let k = BucketKey::named("client");
        let remaining: Vec<u32> = [
            b.check(&k).await.unwrap(),
            b.check(&k).await.unwrap(),
            b.check(&k).await.unwrap(),
        ]
        .iter()
        .map(|d| {
            assert!(d.allowed);
            assert_eq!(d.limit, 3);
            d.remaining
        })
        .collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = b.check(&k).await.unwrap();
        assert!(!refused.allowed);
        // One token every 500 ms; a few ms went by since the first check.
        assert!(
            refused.retry_after <= Duration::from_millis(500),
            "{refused:?}"
        );
        assert!(
            refused.retry_after >= Duration::from_millis(300),
            "{refused:?}"
        );
        assert!(
            refused.reset >= Duration::from_millis(1300)
                && refused.reset <= Duration::from_millis(1500)
        );
        tokio::time::sleep(refused.retry_after + Duration::from_millis(20)).await;
        assert!(b.check(&k).await.unwrap().allowed);
        assert!(!b.check(&k).await.unwrap().allowed);
        // Another key is untouched.
        assert_eq!(
            b.check(&BucketKey::named("other")).await.unwrap().remaining,
            2
        );
    });
}

#[test]
fn the_redis_layer_sends_retry_after_and_ratelimit_headers() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let rate = Rate::per_minute(NonZeroU32::new(2).unwrap());
        let b = redis_backend(
            &connection(&redis.url()),
            rate,
            &prefix("hdr"),
            FailureMode::Closed,
        );
        let handler = Counting::default();
        let mut svc = RateLimitLayer::new(b, key::RateKey::peer()).layer(handler.service());
        let ok = send(&mut svc, from("203.0.113.9")).await;
        assert_eq!(ok.headers()["ratelimit-limit"], "2");
        assert_eq!(ok.headers()["ratelimit-remaining"], "1");
        assert_eq!(ok.headers()["ratelimit-reset"], "30");
        send(&mut svc, from("203.0.113.9")).await;
        let refused = send(&mut svc, from("203.0.113.9")).await;
        assert_eq!(refused.status(), 429);
        assert_eq!(refused.headers()["retry-after"], "30");
        assert_eq!(refused.headers()["ratelimit-remaining"], "0");
        assert_eq!(refused.headers()["ratelimit-reset"], "60");
        assert_eq!(handler.calls(), 2);
    });
}

#[test]
fn every_bucket_key_gets_a_ttl_no_longer_than_a_full_refill() {
    let redis = RedisServer::start();
    let p = prefix("ttl");
    runtime().block_on(async {
        let rate =
            Rate::per_second(NonZeroU32::new(5).unwrap()).with_burst(NonZeroU32::new(10).unwrap());
        let b = redis_backend(&connection(&redis.url()), rate, &p, FailureMode::Closed);
        for i in 0..20 {
            let k = BucketKey::peer(format!("192.0.2.{i}").parse().unwrap());
            for _ in 0..15 {
                b.check(&k).await.unwrap();
            }
        }
    });
    let mut c = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = c.keys(format!("{p}*")).unwrap();
    assert_eq!(keys.len(), 20);
    for k in keys {
        let ttl: i64 = c.pttl(&k).unwrap();
        // Drained bucket: TAT = now + 10 × 200 ms, so the key lives at most 2 s.
        assert!(ttl > 0 && ttl <= 2000, "{k}: pttl {ttl}");
    }
}
