//! A real Redis Cluster (3 primaries + 3 replicas on loopback, `cluster-node-timeout 1000`): one
//! limit shared by two instances, keys on every slot, and the primary that owns a test key killed
//! mid-run — fail-closed answers 503 until a replica is promoted, fail-open admits and counts,
//! then the same connections share limits again and the replay store still refuses a recorded
//! signature; the same over TLS (clients, bus and replication), with a shared limit and an unknown
//! CA refused.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use guard_core::rate_limit::{
    AdmittedOnBackendError, FailureMode, Rate, RateLimitLayer, RedisConnection, RedisReplayStore,
    key, key::BucketKey,
};
use guard_core::replay::ReplayStore;
use guard_tests::redis::RedisCluster;
use tower::Layer;

use crate::exactness::{TASKS, WINDOW, assert_exact, rate};
use crate::support::{Counting, from, hammer, prefix, redis_backend, runtime, send, warm_up};

pub(crate) fn cluster_connection(cluster: &RedisCluster) -> RedisConnection {
    RedisConnection::builder(cluster.url())
        .cluster(true)
        .timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

#[test]
fn a_cluster_shared_by_two_instances_enforces_one_limit_with_keys_on_every_slot() {
    let _heavy = crate::support::one_heavy_test_at_a_time();
    let cluster = RedisCluster::start();
    runtime().block_on(async {
        // Keys spread over all three primaries: each is its own bucket.
        let conn = cluster_connection(&cluster);
        let spread = redis_backend(&conn, rate(), &prefix("spread"), FailureMode::Closed);
        for i in 0..64 {
            let d = spread
                .check(&BucketKey::named(format!("k{i}")))
                .await
                .unwrap();
            assert!(d.allowed, "key {i}");
        }
        let store = RedisReplayStore::new(conn.clone(), prefix("cluster-replay"));
        for i in 0..32u8 {
            assert!(
                store
                    .first_use(&[i], Duration::from_secs(60))
                    .await
                    .unwrap()
            );
            assert!(
                !store
                    .first_use(&[i], Duration::from_secs(60))
                    .await
                    .unwrap()
            );
            assert!(store.seen(&[i]).await.unwrap());
        }

        let handler = Counting::default();
        let shared_prefix = prefix("cluster-shared");
        // Connected before the window opens: the limit is measured, not the handshakes.
        let conns = [cluster_connection(&cluster), cluster_connection(&cluster)];
        for conn in &conns {
            warm_up(conn).await;
        }
        let instances: Vec<_> = conns
            .iter()
            .map(|conn| {
                let backend = redis_backend(conn, rate(), &shared_prefix, FailureMode::Closed);
                RateLimitLayer::new(backend, key::RateKey::global()).layer(handler.service())
            })
            .collect();
        let (loads, elapsed) = hammer(instances, TASKS / 2, WINDOW).await;
        let total = loads[0].admitted + loads[1].admitted;
        assert!(loads[0].admitted > 0 && loads[1].admitted > 0, "{loads:?}");
        assert!(
            loads[0].refused + loads[1].refused > total,
            "demand must exceed the limit"
        );
        assert_eq!(handler.calls(), total);
        assert_exact("redis cluster, two instances", total, elapsed);
    });
}

#[test]
fn killing_the_primary_of_a_key_fails_closed_until_a_replica_is_promoted_then_limits_are_shared_again()
 {
    let _heavy = crate::support::one_heavy_test_at_a_time();
    let mut cluster = RedisCluster::start();
    // One hash tag: every key of this test lives on one slot, owned by one primary.
    let tag = format!("{{{}}}", prefix("failover").replace(':', "-"));
    let rate3 = Rate::per_minute(NonZeroU32::new(3).unwrap());
    runtime().block_on(async {
        let (a, b) = (cluster_connection(&cluster), cluster_connection(&cluster));
        let closed = redis_backend(&a, rate3, &format!("{tag}:closed:"), FailureMode::Closed);
        let open = redis_backend(&a, rate3, &format!("{tag}:open:"), FailureMode::Open);
        let (closed_handler, open_handler) = (Counting::default(), Counting::default());
        let mut closed_svc =
            RateLimitLayer::new(closed.clone(), key::RateKey::global()).layer(closed_handler.service());
        let mut open_svc =
            RateLimitLayer::new(open.clone(), key::RateKey::global()).layer(open_handler.service());
        let store = RedisReplayStore::new(b.clone(), format!("{tag}:replay:"));

        // Before: limits hold, a signature is recorded (and has reached the replica).
        for svc in [&mut closed_svc, &mut open_svc] {
            let mut statuses = Vec::new();
            for _ in 0..4 {
                statuses.push(send(svc, from("203.0.113.7")).await.status().as_u16());
            }
            assert_eq!(statuses, [200, 200, 200, 429]);
        }
        assert!(store.first_use(b"sig-before", Duration::from_secs(300)).await.unwrap());
        let owner = cluster.primary_port_of(&format!("{tag}:closed:g"));
        let replay_key = format!("{tag}:replay:{}", hex::encode(b"sig-before"));
        let synced = Instant::now() + Duration::from_secs(5);
        while !cluster.replicas_hold(owner, &replay_key) {
            assert!(Instant::now() < synced, "the record never reached the replica");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        cluster.kill(owner);
        let killed = Instant::now();

        // While the slot has no primary: 503 / admitted-and-counted, never a decision from Redis.
        let mut refused_503 = 0;
        loop {
            let resp = send(&mut closed_svc, from("203.0.113.7")).await;
            match resp.status().as_u16() {
                503 => refused_503 += 1,
                429 => break, // the promoted replica answers, with the bucket it replicated
                other => panic!("fail-closed answered {other} during the failover"),
            }
            let resp = send(&mut open_svc, from("203.0.113.7")).await;
            if resp.extensions().get::<AdmittedOnBackendError>().is_some() {
                assert_eq!(resp.status(), 200);
            } else {
                assert_eq!(resp.status(), 429, "fail-open decided by Redis again");
            }
            assert!(killed.elapsed() < Duration::from_secs(30), "no recovery within 30 s");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let recovered_after = killed.elapsed();
        println!(
            "failover: fail-closed answered 503 {refused_503} times, recovered after {recovered_after:?}; \
             fail-open admitted {} on error",
            open.allowed_on_error()
        );
        assert!(refused_503 > 0, "the kill was seen");
        assert!(open.allowed_on_error() > 0, "fail-open admitted and counted");
        assert_eq!(closed_handler.calls(), 3, "fail-closed admitted nothing while re-electing");
        assert_eq!(open_handler.calls() as u64, 3 + open.allowed_on_error());
        let new_owner = cluster.wait_for_failover(&format!("{tag}:closed:g"), owner, Duration::from_secs(20));
        assert_ne!(new_owner, owner);

        // Afterwards: the replay store still refuses the recorded signature, and both
        // connections (made before the failover, never restarted) share one fresh limit.
        assert!(!store.first_use(b"sig-before", Duration::from_secs(300)).await.unwrap());
        assert!(store.first_use(b"sig-after", Duration::from_secs(300)).await.unwrap());
        let after = prefix("after");
        let handler = Counting::default();
        let mut one = RateLimitLayer::new(
            redis_backend(&a, rate3, &format!("{tag}:{after}"), FailureMode::Closed),
            key::RateKey::global(),
        )
        .layer(handler.service());
        let mut two = RateLimitLayer::new(
            redis_backend(&b, rate3, &format!("{tag}:{after}"), FailureMode::Closed),
            key::RateKey::global(),
        )
        .layer(handler.service());
        let mut statuses = Vec::new();
        for i in 0..5 {
            let svc = if i % 2 == 0 { &mut one } else { &mut two };
            statuses.push(send(svc, from("203.0.113.7")).await.status().as_u16());
        }
        assert_eq!(statuses, [200, 200, 200, 429, 429]);
    });
}

#[test]
fn a_tls_cluster_shared_by_two_instances_enforces_one_limit_and_refuses_an_unknown_ca() {
    let _heavy = crate::support::one_heavy_test_at_a_time();
    let dir = crate::tls::temp_dir("tls-cluster");
    let ca = crate::tls::TestCa::new("guard test CA");
    let other_ca = crate::tls::TestCa::new("some other CA");
    let cluster = RedisCluster::start_tls(&ca.server_files(&dir, "node", &["127.0.0.1"]));
    let tls_cluster = |pem: &str| {
        RedisConnection::builder(cluster.url())
            .cluster(true)
            .tls_ca_pem(pem)
            .timeout(Duration::from_millis(500))
            .connect_timeout(Duration::from_millis(500))
            .build()
            .unwrap()
    };
    runtime().block_on(async {
        // Keys on every primary, each reached over TLS with the node's certificate verified.
        let spread = redis_backend(
            &tls_cluster(ca.pem()),
            rate(),
            &prefix("tls-spread"),
            FailureMode::Closed,
        );
        for i in 0..32 {
            assert!(
                spread
                    .check(&BucketKey::named(format!("k{i}")))
                    .await
                    .unwrap()
                    .allowed
            );
        }
        let stranger = redis_backend(
            &tls_cluster(other_ca.pem()),
            rate(),
            &prefix("tls-stranger"),
            FailureMode::Closed,
        );
        assert!(
            stranger.check(&BucketKey::global()).await.is_err(),
            "an unknown CA is refused"
        );

        let handler = Counting::default();
        let shared_prefix = prefix("tls-cluster-shared");
        // Connected before the window opens: the limit is measured, not the handshakes.
        let conns = [tls_cluster(ca.pem()), tls_cluster(ca.pem())];
        for conn in &conns {
            warm_up(conn).await;
        }
        let instances: Vec<_> = conns
            .iter()
            .map(|conn| {
                let backend = redis_backend(conn, rate(), &shared_prefix, FailureMode::Closed);
                RateLimitLayer::new(backend, key::RateKey::global()).layer(handler.service())
            })
            .collect();
        let (loads, elapsed) = hammer(instances, TASKS / 2, WINDOW).await;
        let total = loads[0].admitted + loads[1].admitted;
        assert!(loads[0].admitted > 0 && loads[1].admitted > 0, "{loads:?}");
        assert!(
            loads[0].refused + loads[1].refused > total,
            "demand must exceed the limit"
        );
        assert_eq!(handler.calls(), total);
        assert_exact("redis cluster over TLS, two instances", total, elapsed);
    });
    drop(cluster);
    let _ = std::fs::remove_dir_all(dir);
}
