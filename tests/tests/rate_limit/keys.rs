//! Spoofing: the key comes from the platform-observed peer, never from headers; IPv6 by /64.
//! Checked on both backends.

use std::num::NonZeroU32;

use guard_core::rate_limit::{FailureMode, MemoryBackend, Rate, RateLimitLayer, key};
use guard_tests::redis::RedisServer;
use tower::Layer;

use crate::support::{Counting, connection, from, prefix, redis_backend, runtime, send};

fn rate() -> Rate {
    Rate::per_minute(NonZeroU32::new(3).unwrap())
}

/// A limiter by peer on each backend.
fn limiters(redis: &RedisServer, test: &str) -> Vec<(&'static str, RateLimitLayer)> {
    let redis = redis_backend(
        &connection(&redis.url()),
        rate(),
        &prefix(test),
        FailureMode::Closed,
    );
    vec![
        (
            "memory",
            RateLimitLayer::new(MemoryBackend::new(rate()), key::RateKey::peer()),
        ),
        ("redis", RateLimitLayer::new(redis, key::RateKey::peer())),
    ]
}

#[test]
fn changing_x_forwarded_for_does_not_change_the_key() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        for (name, limiter) in limiters(&redis, "xff") {
            let handler = Counting::default();
            let mut svc = limiter.layer(handler.service());
            let mut statuses = Vec::new();
            for i in 0..6 {
                let mut req = from("198.51.100.20");
                req.headers_mut().insert(
                    "x-forwarded-for",
                    format!("10.{i}.0.1, 192.0.2.{i}").parse().unwrap(),
                );
                req.headers_mut()
                    .insert("x-real-ip", format!("10.9.9.{i}").parse().unwrap());
                statuses.push(send(&mut svc, req).await.status().as_u16());
            }
            assert_eq!(statuses, [200, 200, 200, 429, 429, 429], "{name}");
            assert_eq!(handler.calls(), 3, "{name}");
            // A different platform-observed address is a different bucket.
            assert_eq!(
                send(&mut svc, from("198.51.100.21")).await.status(),
                200,
                "{name}"
            );
        }
    });
}

#[test]
fn rotating_ipv6_inside_one_slash_64_shares_a_bucket() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        for (name, limiter) in limiters(&redis, "ipv6") {
            let handler = Counting::default();
            let mut svc = limiter.layer(handler.service());
            let mut admitted = 0;
            for i in 0..12u32 {
                let ip = format!("2001:db8:77:1:{:x}:{:x}:{:x}:1", i, i * 31, i * 977);
                if send(&mut svc, from(&ip)).await.status() == 200 {
                    admitted += 1;
                }
            }
            assert_eq!(admitted, 3, "{name}");
            assert_eq!(handler.calls(), 3, "{name}");
            // The neighbouring /64 has its own bucket.
            assert_eq!(
                send(&mut svc, from("2001:db8:77:2::1")).await.status(),
                200,
                "{name}"
            );
        }
    });
}
