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

/// A Stripe-style verifier whose signatures are remembered in Redis, behind a `VerifyLayer`.
fn verified_stack(
    store: RedisReplayStore,
    handler: &crate::support::Counting,
) -> impl tower::Service<
    guard_core::GuardRequest,
    Response = guard_core::GuardResponse,
    Error = std::convert::Infallible,
> {
    use guard_core::verify::{HmacScheme, HmacVerifier, VerifyLayer};
    use guard_secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
    use tower::Layer;
    let keys = SecretStore::new(|name: &str, v: SecretVersion| match (name, v) {
        ("hook", SecretVersion::Current) => Ok(SecretValue::from("k")),
        _ => Err(SecretsError::not_found(name)),
    });
    let v = HmacVerifier::builder(HmacScheme::stripe(), keys, "hook")
        .replay_store(Arc::new(store))
        .build()
        .unwrap();
    VerifyLayer::new(v).layer(handler.service())
}

fn signed(body: &'static [u8]) -> guard_core::GuardRequest {
    use hmac::Mac;
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"k").unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let sig = hex::encode(mac.finalize().into_bytes());
    http::Request::builder()
        .header("stripe-signature", format!("t={t},v1={sig}"))
        .body(bytes::Bytes::from_static(body))
        .unwrap()
}

#[test]
fn a_killed_redis_fails_a_new_signature_closed_with_503() {
    let mut redis = RedisServer::start();
    runtime().block_on(async {
        let handler = crate::support::Counting::default();
        let store = RedisReplayStore::new(connection(&redis.url()), prefix("verify-down"));
        let mut svc = verified_stack(store, &handler);
        let ok = crate::support::send(&mut svc, signed(b"{\"n\":1}")).await;
        assert_eq!(ok.status(), 200);
        let again = crate::support::send(&mut svc, signed(b"{\"n\":1}")).await;
        assert_eq!(again.status(), 401, "a replay while Redis is up");
        redis.kill();
        let resp = crate::support::send(&mut svc, signed(b"{\"n\":2}")).await;
        assert_eq!(resp.status(), 503);
        let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(body["code"], "guard.verify.unavailable");
        assert_eq!(
            handler.calls(),
            1,
            "the handler never sees the unverified request"
        );
    });
}

#[test]
fn seen_reports_a_recorded_key_without_recording() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let store = RedisReplayStore::new(connection(&redis.url()), prefix("seen"));
        assert!(!store.seen(b"sig").await.unwrap());
        assert!(!store.seen(b"sig").await.unwrap(), "asking does not record");
        assert!(
            store
                .first_use(b"sig", Duration::from_secs(60))
                .await
                .unwrap()
        );
        assert!(store.seen(b"sig").await.unwrap());
    });
}
