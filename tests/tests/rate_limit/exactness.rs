//! Exactness on a 2-thread runtime with many concurrent tasks: admitted ≤ B + R·T + 1, and at least
//! 95 % of B + R·T when demand exceeds it; one limit across instances with Redis, one per instance
//! in memory.

use std::num::NonZeroU32;
use std::time::Duration;

use guard_core::rate_limit::{FailureMode, Rate, RateLimitLayer, key};
use guard_tests::redis::RedisServer;
use tower::Layer;

use crate::support::{
    Counting, connection, hammer, lower_bound, prefix, redis_backend, runtime, upper_bound,
};

pub(crate) const WINDOW: Duration = Duration::from_secs(2);
pub(crate) const TASKS: usize = 64;

pub(crate) fn rate() -> Rate {
    Rate::per_second(NonZeroU32::new(100).unwrap()).with_burst(NonZeroU32::new(20).unwrap())
}

pub(crate) fn assert_exact(what: &str, admitted: usize, elapsed: Duration) {
    let (hi, lo) = (upper_bound(rate(), elapsed), lower_bound(rate(), WINDOW));
    println!("{what}: admitted {admitted} over {elapsed:?} (bounds {lo:.1}..={hi:.1})");
    assert!(
        admitted as f64 <= hi,
        "{what}: admitted {admitted} > B + R·T + 1 = {hi:.1}"
    );
    assert!(
        admitted as f64 >= lo,
        "{what}: admitted {admitted} < 95 % of B + R·T = {lo:.1}"
    );
}

#[test]
fn memory_backend_is_exact_under_contention() {
    runtime().block_on(async {
        let handler = Counting::default();
        let svc = RateLimitLayer::memory(rate(), key::RateKey::global()).layer(handler.service());
        let (loads, elapsed) = hammer(vec![svc], TASKS, WINDOW).await;
        assert!(
            loads[0].refused > loads[0].admitted,
            "demand must exceed the limit"
        );
        assert_eq!(handler.calls(), loads[0].admitted);
        assert_exact("memory", loads[0].admitted, elapsed);
    });
}

#[test]
fn redis_backend_is_exact_under_contention() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let handler = Counting::default();
        let backend = redis_backend(
            &connection(&redis.url()),
            rate(),
            &prefix("exact"),
            FailureMode::Closed,
        );
        let svc =
            RateLimitLayer::new(backend.clone(), key::RateKey::global()).layer(handler.service());
        let (loads, elapsed) = hammer(vec![svc], TASKS, WINDOW).await;
        assert!(
            loads[0].refused > loads[0].admitted,
            "demand must exceed the limit"
        );
        assert_eq!(handler.calls(), loads[0].admitted);
        assert_eq!(backend.allowed_on_error(), 0);
        assert_exact("redis", loads[0].admitted, elapsed);
    });
}

#[test]
fn two_instances_sharing_redis_enforce_one_combined_limit() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let handler = Counting::default();
        let shared_prefix = prefix("shared");
        // Two "function instances": separate connections, layers and handlers' clones.
        let instances: Vec<_> = (0..2)
            .map(|_| {
                let backend = redis_backend(
                    &connection(&redis.url()),
                    rate(),
                    &shared_prefix,
                    FailureMode::Closed,
                );
                RateLimitLayer::new(backend, key::RateKey::global()).layer(handler.service())
            })
            .collect();
        let (loads, elapsed) = hammer(instances, TASKS / 2, WINDOW).await;
        let total = loads[0].admitted + loads[1].admitted;
        assert!(loads[0].admitted > 0 && loads[1].admitted > 0, "{loads:?}");
        assert_eq!(handler.calls(), total);
        assert_exact("redis, two instances", total, elapsed);
    });
}

#[test]
fn two_memory_instances_each_admit_their_own_limit() {
    runtime().block_on(async {
        let handler = Counting::default();
        let instances: Vec<_> = (0..2)
            .map(|_| {
                RateLimitLayer::memory(rate(), key::RateKey::global()).layer(handler.service())
            })
            .collect();
        let (loads, elapsed) = hammer(instances, TASKS / 2, WINDOW).await;
        for (i, load) in loads.iter().enumerate() {
            assert_exact(&format!("memory instance {i}"), load.admitted, elapsed);
        }
        let total = loads[0].admitted + loads[1].admitted;
        assert!(
            total as f64 > upper_bound(rate(), elapsed),
            "memory instances do not share a limit: together they admit more than one limit"
        );
    });
}
