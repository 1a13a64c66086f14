//! `WAIT` after each replay record (`require_replicas`, `[rate_limit] replay_min_replicas`):
//! against a real primary with one replica, and a real 3 + 3 cluster where only the key's own
//! primary may answer. With the replica up a record is admitted (and already on the replica);
//! with it stopped, a new signature fails closed (503 `guard.verify.unavailable`) and its record
//! is removed again, so the retry succeeds once the replica is back.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use guard_core::rate_limit::{RedisConnection, RedisReplayStore};
use guard_core::replay::ReplayStore;
use guard_core::request::Peer;
use guard_core::{GuardRequest, Policy};
use guard_secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
use guard_tests::redis::{RedisCluster, RedisServer};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::support::{Counting, prefix, runtime, send};

const TTL: Duration = Duration::from_secs(300);
/// How long `WAIT` may take: generous, because a loaded 2-core test machine can take tens of
/// milliseconds to replicate one write; the connection's budget is larger still.
const WAIT: Duration = Duration::from_millis(1000);

fn connection(url: &str) -> RedisConnection {
    RedisConnection::open(url, WAIT * 3, Duration::from_millis(500)).unwrap()
}

fn wait_until(limit: Duration, what: &str, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "not {what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_record_counts_only_once_its_replica_acknowledged_it() {
    let primary = RedisServer::start_primary();
    let mut replica = RedisServer::start_replica_of(&primary);
    let p = prefix("wait-single");
    let store = |replicas: u32| {
        RedisReplayStore::new(connection(&primary.url()), p.clone())
            .require_replicas(replicas, WAIT)
    };
    let redis_key = |k: &[u8]| format!("{p}{}", hex::encode(k));
    runtime().block_on(async {
        let one = store(1);
        assert!(one.first_use(b"sig-1", TTL).await.unwrap());
        // WAIT returned: the replica holds the record before the request is admitted.
        assert_eq!(
            replica.cli(None, &["EXISTS", &redis_key(b"sig-1")]).trim(),
            "1"
        );
        assert!(!one.first_use(b"sig-1", TTL).await.unwrap(), "a replay");

        // More replicas than there are: refused after the wait, and the record removed again.
        let started = Instant::now();
        let err = store(2).first_use(b"sig-2", TTL).await.unwrap_err();
        assert!(started.elapsed() >= WAIT, "{err}");
        assert!(err.reason.contains("1 of 2 replicas"), "{err}");
        assert!(
            !one.seen(b"sig-2").await.unwrap(),
            "the refused record is gone"
        );
    });

    replica.kill();
    wait_until(Duration::from_secs(5), "replica gone", || {
        primary.online_replicas() == 0
    });
    runtime().block_on(async {
        let one = store(1);
        let err = one.first_use(b"sig-3", TTL).await.unwrap_err();
        assert!(err.reason.contains("0 of 1 replicas"), "{err}");
        assert!(!one.seen(b"sig-3").await.unwrap());
        // The replay of an acknowledged record is still refused without asking the replica.
        assert!(!one.first_use(b"sig-1", TTL).await.unwrap());
        // Without the option the same primary admits (asynchronous replication).
        assert!(store(0).first_use(b"sig-4", TTL).await.unwrap());
    });

    replica.restart();
    wait_until(Duration::from_secs(20), "replica back", || {
        primary.online_replicas() == 1
    });
    runtime().block_on(async {
        assert!(
            store(1).first_use(b"sig-3", TTL).await.unwrap(),
            "the retry"
        );
    });
}

fn signed(body: &'static [u8]) -> GuardRequest {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut mac = Hmac::<Sha256>::new_from_slice(b"hook-key").unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let sig = hex::encode(mac.finalize().into_bytes());
    let mut req = http::Request::post("/hook")
        .header("content-type", "application/json")
        .header("x-guard-signature", format!("t={t},v1={sig}"))
        .body(Bytes::from_static(body))
        .unwrap();
    req.extensions_mut()
        .insert(Peer::new("198.51.100.7".parse().unwrap()));
    req
}

/// The same signed request again (same signature, same peer).
fn resend(request: &GuardRequest) -> GuardRequest {
    let mut r = http::Request::new(request.body().clone());
    *r.method_mut() = request.method().clone();
    *r.uri_mut() = request.uri().clone();
    *r.headers_mut() = request.headers().clone();
    r.extensions_mut()
        .insert(Peer::new("198.51.100.7".parse().unwrap()));
    r
}

fn code(resp: &guard_core::GuardResponse) -> String {
    let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap_or_default();
    body["code"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_policy_asking_for_one_replica_fails_signed_requests_closed_while_it_is_down() {
    let primary = RedisServer::start_primary();
    let mut replica = RedisServer::start_replica_of(&primary);
    // `failure_mode = "open"` is the limiter's: the replay store fails closed regardless.
    let policy = Policy::from_toml_str(&format!(
        "[function]\nname = \"wait-policy\"\n\
         [rate_limit]\nper_second = 1000\nfailure_mode = \"open\"\ntimeout_ms = 1500\n\
         backend = \"{}\"\nkey_prefix = \"{}\"\nreplay_min_replicas = 1\nreplay_replica_timeout_ms = 1000\n\
         [verify.hmac]\npreset = \"stripe\"\nheader = \"X-Guard-Signature\"\nsecret = \"hook-key\"",
        primary.url(),
        prefix("wait-policy"),
    ))
    .unwrap();
    let secrets = SecretStore::new(|name: &str, v: SecretVersion| match (name, v) {
        ("hook-key", SecretVersion::Current) => Ok(SecretValue::from("hook-key")),
        _ => Err(SecretsError::not_found(name)),
    });
    let handler = Counting::default();
    let instance = || {
        guard_core::GuardBuilder::from_policy_with(
            &policy,
            guard_core::GuardDeps::with_secrets(secrets.clone()),
        )
        .unwrap()
        .audit(guard_core::audit::AuditLayer::new(
            |_: guard_core::audit::SecurityEvent| {},
        ))
        .build()
        .wrap(handler.service())
    };
    runtime().block_on(async {
        let (mut a, mut b) = (instance(), instance());
        // One signature, sent twice (signing twice could straddle a second and differ).
        let first = signed(b"{\"n\":1}");
        assert_eq!(send(&mut a, resend(&first)).await.status(), 200);
        // The record is in Redis: the other instance refuses the replay.
        let replay = send(&mut b, resend(&first)).await;
        assert_eq!(
            (replay.status().as_u16(), code(&replay)),
            (401, "guard.verify.replayed".into())
        );
        assert_eq!(handler.calls(), 1);
    });

    replica.kill();
    wait_until(Duration::from_secs(5), "replica gone", || {
        primary.online_replicas() == 0
    });
    let request = signed(b"{\"n\":2}");
    let retry = || resend(&request);
    runtime().block_on(async {
        let mut a = instance();
        let down = send(&mut a, retry()).await;
        assert_eq!(
            (down.status().as_u16(), code(&down)),
            (503, "guard.verify.unavailable".into())
        );
        assert_eq!(handler.calls(), 1, "the handler never ran");
    });

    replica.restart();
    wait_until(Duration::from_secs(20), "replica back", || {
        primary.online_replicas() == 1
    });
    runtime().block_on(async {
        let mut a = instance();
        assert_eq!(
            send(&mut a, retry()).await.status(),
            200,
            "the same signed request, retried"
        );
        assert_eq!(handler.calls(), 2);
    });
}

#[test]
fn in_a_cluster_wait_asks_the_primary_that_owns_the_key() {
    let _heavy = crate::support::one_heavy_test_at_a_time();
    let mut cluster = RedisCluster::start();
    let p = prefix("cluster-wait");
    let redis_key = |k: &[u8]| format!("{p}{}", hex::encode(k));
    // One runtime for the whole test: the connection's tasks live on it.
    let rt = runtime();
    let conn = RedisConnection::builder(cluster.url())
        .cluster(true)
        .timeout(WAIT * 3)
        .connect_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let store = RedisReplayStore::new(conn, p.clone()).require_replicas(1, WAIT);
    rt.block_on(async {
        // Keys on every primary, each acknowledged by that primary's own replica.
        for i in 0..24u8 {
            assert!(store.first_use(&[i], TTL).await.unwrap(), "key {i}");
            assert!(!store.first_use(&[i], TTL).await.unwrap(), "key {i}");
        }
    });

    // The primary of one key loses its replica; the other primaries keep theirs.
    let owner = cluster.primary_port_of(&redis_key(b"probe"));
    for replica in cluster.replicas_of(owner) {
        cluster.kill(replica);
    }
    wait_until(Duration::from_secs(5), "the replica gone", || {
        cluster.online_replicas_of(owner) == 0
    });
    rt.block_on(async {
        let (mut refused, mut admitted) = (0, 0);
        for i in 0..24u8 {
            let k = [b'n', i];
            let result = store.first_use(&k, TTL).await;
            if cluster.primary_port_of(&redis_key(&k)) == owner {
                // Asked of any other node (or of every primary), WAIT would have said yes.
                let err = result.expect_err("the owner has no replica");
                assert!(err.reason.contains("0 of 1 replicas"), "{err}");
                assert!(!store.seen(&k).await.unwrap());
                refused += 1;
            } else {
                assert!(result.unwrap(), "key n{i} on a primary with its replica");
                admitted += 1;
            }
        }
        assert!(
            refused > 0 && admitted > 0,
            "{refused} refused, {admitted} admitted"
        );
    });
}
