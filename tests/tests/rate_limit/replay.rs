//! The Redis replay store: first use true, later uses false, records expire.

use std::sync::Arc;
use std::time::Duration;

use guard_core::rate_limit::RedisReplayStore;
use guard_core::replay::ReplayStore;
use guard_tests::redis::RedisServer;

use crate::support::{connection, prefix, runtime};

#[test]
fn replay_store_accepts_a_key_once_until_it_expires() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let store = RedisReplayStore::new(connection(&redis.url()), prefix("replay"));
        let ttl = Duration::from_millis(400);
        assert!(store.first_use(b"sig-1", ttl).await.unwrap());
        assert!(!store.first_use(b"sig-1", ttl).await.unwrap());
        assert!(store.first_use(b"sig-2", ttl).await.unwrap());
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(
            store.first_use(b"sig-1", ttl).await.unwrap(),
            "expired record"
        );
    });
}

#[test]
fn replay_store_admits_exactly_one_of_many_concurrent_uses() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        // Two instances (two connections) racing on the same signature.
        let p = prefix("race");
        let stores = [
            Arc::new(RedisReplayStore::new(connection(&redis.url()), p.clone())),
            Arc::new(RedisReplayStore::new(connection(&redis.url()), p)),
        ];
        let mut tasks = Vec::new();
        for i in 0..32 {
            let store = stores[i % 2].clone();
            tasks.push(tokio::spawn(async move {
                store
                    .first_use(&[0xde, 0xad, 0xbe, 0xef], Duration::from_secs(60))
                    .await
                    .unwrap()
            }));
        }
        let mut firsts = 0;
        for t in tasks {
            if t.await.unwrap() {
                firsts += 1;
            }
        }
        assert_eq!(firsts, 1);
    });
}

#[test]
fn replay_store_reports_an_unreachable_redis_as_an_error() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    redis.kill();
    runtime().block_on(async {
        let store = RedisReplayStore::new(connection(&url), prefix("down"));
        let err = store
            .first_use(b"sig", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(!err.reason.is_empty());
    });
}
