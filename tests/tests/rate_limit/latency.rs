//! The time of one check (one GCRA script call) on loopback, plaintext, over TLS, over the
//! cluster and over a TLS cluster: 2000 sequential checks each after a warm-up, p50 / p99 printed (BENCHMARKS.md quotes
//! them); every check must be decided by Redis within its budget.
//!
//! `cargo test -p guard-tests --test rate_limit latency -- --nocapture`

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use guard_core::rate_limit::{FailureMode, Rate, RedisConnection, key::BucketKey};
use guard_tests::redis::{RedisCluster, RedisServer};

use crate::cluster::cluster_connection;
use crate::support::{connection, prefix, redis_backend, runtime};
use crate::tls::{TestCa, temp_dir, tls_connection};

const CHECKS: usize = 2000;

async fn measure(what: &str, conn: &RedisConnection) -> (Duration, Duration) {
    let rate = Rate::per_second(NonZeroU32::new(1_000_000).unwrap());
    let backend = redis_backend(conn, rate, &prefix("latency"), FailureMode::Closed);
    let keys: Vec<_> = (0..64).map(|i| BucketKey::named(format!("k{i}"))).collect();
    for k in &keys {
        backend.check(k).await.unwrap();
    }
    let mut times = Vec::with_capacity(CHECKS);
    for i in 0..CHECKS {
        let started = Instant::now();
        let d = backend.check(&keys[i % keys.len()]).await.unwrap();
        times.push(started.elapsed());
        assert!(d.allowed);
    }
    times.sort();
    let (p50, p99) = (times[CHECKS / 2], times[CHECKS * 99 / 100]);
    println!("one check, {what}: p50 {p50:?}, p99 {p99:?} ({CHECKS} sequential checks)");
    assert!(
        times[CHECKS - 1] < conn.timeout(),
        "{what}: a check outlasted its budget"
    );
    (p50, p99)
}

#[test]
fn one_check_p50_p99_on_loopback_plaintext_tls_cluster_and_tls_cluster() {
    let _heavy = crate::support::one_heavy_test_at_a_time();
    let plain = RedisServer::start();
    let dir = temp_dir("latency-tls");
    let ca = TestCa::new("guard test CA");
    let tls = RedisServer::start_tls(&ca.server_files(&dir, "server", &["127.0.0.1"]));
    let cluster = RedisCluster::start();
    let tls_cluster = RedisCluster::start_tls(&ca.server_files(&dir, "node", &["127.0.0.1"]));
    runtime().block_on(async {
        measure("plaintext", &connection(&plain.url())).await;
        measure("TLS", &tls_connection(&tls, &ca)).await;
        measure("cluster (3 primaries)", &cluster_connection(&cluster)).await;
        let conn = RedisConnection::builder(tls_cluster.url())
            .cluster(true)
            .tls_ca_pem(ca.pem())
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        measure("cluster over TLS", &conn).await;
    });
    let _ = std::fs::remove_dir_all(dir);
}
