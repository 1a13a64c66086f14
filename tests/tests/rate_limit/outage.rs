//! Redis killed mid-test: fail-open admits and counts, fail-closed answers 503, and once Redis is
//! back the limit holds again without restarting anything.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use guard_core::rate_limit::{AdmittedOnBackendError, FailureMode, Rate, RateLimitLayer, key};
use guard_tests::redis::RedisServer;
use tower::Layer;

use crate::support::{Counting, connection, from, prefix, redis_backend, runtime, send};

#[test]
fn redis_outage_fail_open_admits_and_counts_fail_closed_refuses_and_both_recover() {
    let mut redis = RedisServer::start();
    runtime().block_on(async {
        let rate = Rate::per_minute(NonZeroU32::new(3).unwrap());
        let conn = connection(&redis.url());
        let open_backend = redis_backend(&conn, rate, &prefix("open"), FailureMode::Open);
        let closed_backend = redis_backend(&conn, rate, &prefix("closed"), FailureMode::Closed);
        let (open_handler, closed_handler) = (Counting::default(), Counting::default());
        let mut open = RateLimitLayer::new(open_backend.clone(), key::RateKey::global())
            .layer(open_handler.service());
        let mut closed = RateLimitLayer::new(closed_backend.clone(), key::RateKey::global())
            .layer(closed_handler.service());

        // Redis up: the limit holds on both.
        for svc in [&mut open, &mut closed] {
            let mut statuses = Vec::new();
            for _ in 0..4 {
                statuses.push(send(svc, from("203.0.113.7")).await.status().as_u16());
            }
            assert_eq!(statuses, [200, 200, 200, 429]);
        }

        redis.kill();

        // Fail-open: admitted, counted, marked.
        for n in 1..=5 {
            let resp = send(&mut open, from("203.0.113.7")).await;
            assert_eq!(resp.status(), 200);
            assert!(resp.extensions().get::<AdmittedOnBackendError>().is_some());
            assert_eq!(open_backend.allowed_on_error(), n);
        }
        assert_eq!(open_handler.calls(), 3 + 5);

        // Fail-closed: 503 guard.rate.backend_unavailable, the handler is not reached.
        for _ in 0..3 {
            let resp = send(&mut closed, from("203.0.113.7")).await;
            assert_eq!(resp.status(), 503);
            let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
            assert_eq!(body["code"], "guard.rate.backend_unavailable");
        }
        assert_eq!(closed_handler.calls(), 3);
        assert_eq!(closed_backend.allowed_on_error(), 0);

        redis.restart();

        // Same layers, same connection object: they reconnect by themselves.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = send(&mut closed, from("203.0.113.7")).await.status();
            if status == 200 {
                break;
            }
            assert_eq!(status, 503);
            assert!(Instant::now() < deadline, "no recovery within 10 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Redis came back empty: a fresh bucket of 3, then the limit holds again.
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(
                send(&mut closed, from("203.0.113.7"))
                    .await
                    .status()
                    .as_u16(),
            );
        }
        let admitted = 1 + statuses.iter().filter(|s| **s == 200).count();
        assert_eq!(admitted, 3, "{statuses:?}");
        assert_eq!(statuses.last(), Some(&429));

        let errors_before = open_backend.allowed_on_error();
        let mut statuses = Vec::new();
        for _ in 0..4 {
            let resp = send(&mut open, from("203.0.113.7")).await;
            assert!(resp.extensions().get::<AdmittedOnBackendError>().is_none());
            statuses.push(resp.status().as_u16());
        }
        assert_eq!(statuses, [200, 200, 200, 429]);
        assert_eq!(open_backend.allowed_on_error(), errors_before);
    });
}
