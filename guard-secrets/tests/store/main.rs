//! SecretStore cache behaviour, with a counting source and a fake clock.
#![cfg(feature = "store")]

mod support;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use guard_secrets::{SecretStore, SecretVersion, SecretsError, WallClock};
use support::{FakeSource, V1, V2, builder, capture_logs, is, secs, three_bad_settings};

/// A store holding `k` = V1 (TTL 100 s) that refreshes in the last 20 s before expiry.
fn refreshing_ahead_store() -> (FakeSource, WallClock, SecretStore) {
    let (src, clock) = (FakeSource::new(), WallClock::fake_at_unix(1_000));
    src.set_current("k", V1);
    let store = builder(&src, &clock)
        .refresh_ahead(secs(20))
        .build()
        .unwrap();
    (src, clock, store)
}

/// The refresh window opens exactly `refresh_ahead` before expiry: not a millisecond earlier,
/// and at that very instant.
#[tokio::test]
async fn the_refresh_ahead_window_opens_exactly_at_ttl_minus_refresh_ahead() {
    let (_src, clock, store) = refreshing_ahead_store();
    store.get("k").await.unwrap();
    clock.advance(secs(80) - Duration::from_millis(1));
    store.get("k").await.unwrap();
    assert_eq!(store.stats().refreshed_ahead, 0, "before the window");
    clock.advance(Duration::from_millis(1));
    store.get("k").await.unwrap();
    assert_eq!(
        store.stats().refreshed_ahead,
        1,
        "at the window's first instant"
    );
}

/// A secret without a previous version is normal, not a failure: the absence is cached like a
/// value (no error counted, no new fetch inside the TTL).
#[tokio::test]
async fn a_missing_previous_version_is_cached_as_absent_not_counted_as_an_error() {
    let (src, clock) = (FakeSource::new(), WallClock::fake_at_unix(1_000));
    src.set_current("hmac", V1);
    let store = builder(&src, &clock).build().unwrap();
    let first = store.versions("hmac").await.unwrap();
    assert!(is(&first.current, V1) && first.previous.is_none());
    assert_eq!(
        store.stats().fetch_errors,
        0,
        "an absent previous version is not an error"
    );
    let fetches = src.fetches();
    clock.advance(secs(10));
    let again = store.versions("hmac").await.unwrap();
    assert!(again.previous.is_none());
    assert_eq!(src.fetches(), fetches, "the absence is cached for the TTL");
}

/// The least recently used name goes, whatever order the name map holds the names in (each new
/// store hashes them differently, so sixteen stores cover both orders).
#[tokio::test]
async fn eviction_follows_last_use_not_the_map_order() {
    for round in 0..16 {
        let (src, clock) = (FakeSource::new(), WallClock::fake_at_unix(1_000));
        let old = format!("old-{round}");
        let recent = format!("recent-{round}");
        let new = format!("new-{round}");
        for n in [&old, &recent, &new] {
            src.set_current(n.as_str(), V1);
        }
        let store = builder(&src, &clock)
            .max_entries(NonZeroUsize::new(2).unwrap())
            .build()
            .unwrap();
        store.get(&recent).await.unwrap();
        clock.advance(secs(1));
        store.get(&old).await.unwrap();
        clock.advance(secs(1));
        store.get(&recent).await.unwrap(); // `old` is now the least recently used
        clock.advance(secs(1));
        store.get(&new).await.unwrap();
        let fetches = src.fetches();
        store.get(&recent).await.unwrap();
        assert_eq!(
            src.fetches(),
            fetches,
            "round {round}: a recently used name was evicted"
        );
    }
}

#[tokio::test]
async fn len_is_empty_and_debug_describe_the_cache_without_its_values() {
    let src = FakeSource::new();
    src.set_current("api-key", V1);
    let clock = WallClock::fake_at_unix(1_000);
    let store = builder(&src, &clock).build().unwrap();
    assert!(store.is_empty());
    assert_eq!(store.len(), 0);
    store.get("api-key").await.unwrap();
    assert!(!store.is_empty());
    assert_eq!(store.len(), 1);
    let shown = format!("{store:?}");
    assert!(shown.starts_with("SecretStore {"), "{shown}");
    assert!(shown.contains("names: 1"), "{shown}");
    assert!(!shown.contains(V1), "a secret value leaked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_cold_requests_make_one_fetch() {
    let src = FakeSource::new();
    src.set_current("api-key", V1);
    src.delay(Duration::from_millis(100));
    let store = SecretStore::new(src.clone());
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.get("api-key").await })
        })
        .collect();
    for t in tasks {
        assert!(is(&t.await.unwrap().unwrap(), V1), "wrong value");
    }
    assert_eq!(src.fetches(), 1);
    assert_eq!(store.stats().fetches, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_cold_requests_share_one_failed_fetch() {
    let src = FakeSource::new();
    src.fail_with(SecretsError::transient("api-key", "connection refused"));
    src.delay(Duration::from_millis(100));
    let store = SecretStore::builder(src.clone())
        .retry_after_error(Duration::ZERO)
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.get("api-key").await })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().unwrap_err().is_transient());
    }
    assert_eq!(src.fetches(), 1);
}

#[tokio::test]
async fn serves_from_cache_until_ttl_then_fetches_again() {
    let (src, clock) = (FakeSource::new(), WallClock::fake_at_unix(1_000));
    src.set_current("k", V1);
    let store = builder(&src, &clock).build().unwrap();
    assert!(is(&store.get("k").await.unwrap(), V1));
    src.set_current("k", V2);
    clock.advance(secs(99));
    assert!(is(&store.get("k").await.unwrap(), V1), "still fresh");
    assert_eq!(src.fetches(), 1);
    clock.advance(secs(1));
    assert!(is(&store.get("k").await.unwrap(), V2), "expired: refetched");
    assert_eq!(src.fetches(), 2);
    let stats = store.stats();
    assert_eq!((stats.hits, stats.misses), (1, 2));
}

#[tokio::test]
async fn refreshes_ahead_of_expiry_in_the_background() {
    let (src, clock, store) = refreshing_ahead_store();
    store.get("k").await.unwrap();
    src.set_current("k", V2);
    src.delay(Duration::from_millis(20));
    clock.advance(secs(85));
    // Inside the refresh window: answered at once from the cache, refresh started behind.
    assert!(is(&store.get("k").await.unwrap(), V1));
    assert!(is(&store.get("k").await.unwrap(), V1));
    for _ in 0..100 {
        if src.fetches() == 2 && is(&store.get("k").await.unwrap(), V2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(src.fetches(), 2, "exactly one background refresh");
    assert!(is(&store.get("k").await.unwrap(), V2));
    assert_eq!(store.stats().refreshed_ahead, 1);
    assert_eq!(store.stats().misses, 1, "no request waited for the refresh");
}

#[tokio::test(flavor = "current_thread")]
async fn serves_stale_on_transient_errors_counted_and_logged_once() {
    let (logs, _guard) = capture_logs();
    let (src, clock) = (FakeSource::new(), WallClock::fake_at_unix(1_000));
    src.set_current("k", V1);
    let store = builder(&src, &clock).build().unwrap();
    store.get("k").await.unwrap();
    src.fail_with(SecretsError::transient("k", "connection refused"));
    clock.advance(secs(150));
    for _ in 0..5 {
        assert!(is(&store.get("k").await.unwrap(), V1));
        clock.advance(secs(10)); // past retry_after_error: asks the source again each time
    }
    assert_eq!(src.fetches(), 6);
    assert_eq!(store.stats().stale_served, 5);
    let text = logs.text();
    assert_eq!(
        text.matches("serving the cached value").count(),
        1,
        "one warning per outage: {text}"
    );
    // Recovery is logged, and a new outage is logged again.
    src.heal();
    src.set_current("k", V2);
    assert!(is(&store.get("k").await.unwrap(), V2));
    assert_eq!(
        logs.text().matches("source recovered").count(),
        1,
        "{}",
        logs.text()
    );
    src.fail_with(SecretsError::transient("k", "timeout"));
    clock.advance(secs(150));
    assert!(is(&store.get("k").await.unwrap(), V2));
    assert_eq!(logs.text().matches("serving the cached value").count(), 2);
    assert!(!logs.text().contains(V1) && !logs.text().contains(V2));
}

#[tokio::test]
async fn stops_serving_stale_after_max_staleness() {
    let (src, clock) = (FakeSource::new(), WallClock::fake_at_unix(1_000));
    src.set_current("k", V1);
    let store = builder(&src, &clock).build().unwrap();
    store.get("k").await.unwrap();
    src.fail_with(SecretsError::transient("k", "down"));
    clock.advance(secs(100 + 599));
    assert!(store.get("k").await.is_ok());
    clock.advance(secs(1));
    assert!(store.get("k").await.unwrap_err().is_transient());
}

#[tokio::test]
async fn after_a_failure_the_source_is_not_asked_again_until_retry_after_error() {
    let (src, clock) = (FakeSource::new(), WallClock::fake_at_unix(1_000));
    src.fail_with(SecretsError::transient("k", "down"));
    let store = builder(&src, &clock).build().unwrap();
    for _ in 0..10 {
        assert!(store.get("k").await.is_err());
    }
    assert_eq!(src.fetches(), 1);
    src.heal();
    src.set_current("k", V1);
    clock.advance(secs(5));
    assert!(
        is(&store.get("k").await.unwrap(), V1),
        "recovers after the wait"
    );
    assert_eq!(src.fetches(), 2);
}

#[tokio::test]
async fn permanent_errors_drop_the_cached_value() {
    let (src, clock) = (FakeSource::new(), WallClock::fake_at_unix(1_000));
    src.set_current("k", V1);
    let store = builder(&src, &clock).build().unwrap();
    store.get("k").await.unwrap();
    src.fail_with(SecretsError::AccessDenied { name: "k".into() });
    clock.advance(secs(100));
    assert!(matches!(
        store.get("k").await,
        Err(SecretsError::AccessDenied { .. })
    ));
    src.heal();
    clock.advance(secs(1));
    assert!(
        store.get("k").await.is_err(),
        "still within retry_after_error"
    );
    assert_eq!(store.stats().stale_served, 0);
}

#[tokio::test]
async fn a_deleted_secret_is_not_served_from_the_cache() {
    let (src, clock) = (FakeSource::new(), WallClock::fake_at_unix(1_000));
    src.set_current("k", V1);
    let store = builder(&src, &clock).build().unwrap();
    store.get("k").await.unwrap();
    src.remove("k");
    clock.advance(secs(100));
    assert_eq!(
        store.get("k").await.unwrap_err(),
        SecretsError::not_found("k")
    );
}

#[tokio::test]
async fn rotation_keeps_the_source_previous_version() {
    let (src, clock) = (FakeSource::new(), WallClock::fake_at_unix(1_000));
    src.set_current("hmac", V1);
    let store = builder(&src, &clock).build().unwrap();
    let before = store.versions("hmac").await.unwrap();
    assert!(is(&before.current, V1) && before.previous.is_none());
    // The provider rotates: V2 becomes current, V1 previous.
    src.set_current("hmac", V2);
    src.set("hmac", SecretVersion::Previous, V1);
    assert!(store.force_refresh("hmac").await.unwrap());
    let after = store.versions("hmac").await.unwrap();
    assert!(is(&after.current, V2), "new value after force_refresh");
    assert!(
        after.previous.as_deref().is_some_and(|p| is(p, V1)),
        "previous kept"
    );
    assert_eq!(after.iter().count(), 2);
}

#[tokio::test]
async fn rotation_remembers_the_replaced_value_for_the_grace_period() {
    let (src, clock) = (FakeSource::new(), WallClock::fake_at_unix(1_000));
    src.set_current("hmac", V1);
    let store = builder(&src, &clock)
        .previous_grace(secs(300))
        .build()
        .unwrap();
    store.get("hmac").await.unwrap();
    src.set_current("hmac", V2); // a source without versions (env, plain file)
    store.force_refresh("hmac").await.unwrap();
    let v = store.versions("hmac").await.unwrap();
    assert!(is(&v.current, V2) && v.previous.as_deref().is_some_and(|p| is(p, V1)));
    clock.advance(secs(300));
    src.set_current("hmac", V2);
    let v = store.versions("hmac").await.unwrap();
    assert!(v.previous.is_none(), "grace period over");
}

#[tokio::test]
async fn force_refresh_is_rate_limited_per_name() {
    let (src, clock) = (FakeSource::new(), WallClock::fake_at_unix(1_000));
    src.set_current("a", V1);
    src.set_current("b", V1);
    let store = builder(&src, &clock)
        .force_refresh_interval(secs(10))
        .build()
        .unwrap();
    store.get("a").await.unwrap();
    assert!(store.force_refresh("a").await.unwrap());
    for _ in 0..50 {
        assert!(!store.force_refresh("a").await.unwrap());
    }
    assert!(
        store.force_refresh("b").await.unwrap(),
        "other names unaffected"
    );
    clock.advance(secs(10));
    assert!(store.force_refresh("a").await.unwrap());
    assert_eq!(src.fetches(), 1 + 1 + 1 + 1);
    assert_eq!(store.stats().forced_refreshes_limited, 50);
}

#[tokio::test]
async fn a_failed_force_refresh_keeps_serving_the_cached_value() {
    let (src, clock) = (FakeSource::new(), WallClock::fake_at_unix(1_000));
    src.set_current("k", V1);
    let store = builder(&src, &clock).build().unwrap();
    store.get("k").await.unwrap();
    src.fail_with(SecretsError::transient("k", "down"));
    assert!(store.force_refresh("k").await.is_err());
    assert!(is(&store.get("k").await.unwrap(), V1));
}

#[tokio::test]
async fn size_is_bounded_by_evicting_the_least_recently_used() {
    let (src, clock) = (FakeSource::new(), WallClock::fake_at_unix(1_000));
    for n in ["a", "b", "c"] {
        src.set_current(n, V1);
    }
    let store = builder(&src, &clock)
        .max_entries(NonZeroUsize::new(2).unwrap())
        .build()
        .unwrap();
    store.get("a").await.unwrap();
    clock.advance(secs(1));
    store.get("b").await.unwrap();
    clock.advance(secs(1));
    store.get("a").await.unwrap(); // a is now more recent than b
    clock.advance(secs(1));
    store.get("c").await.unwrap(); // evicts b
    assert_eq!(store.len(), 2);
    assert_eq!(store.stats().evictions, 1);
    let fetches = src.fetches();
    store.get("a").await.unwrap();
    assert_eq!(src.fetches(), fetches, "a still cached");
    store.get("b").await.unwrap();
    assert_eq!(src.fetches(), fetches + 1, "b was evicted");
}

#[tokio::test]
async fn json_fields_come_from_one_fetch() {
    let (src, clock) = (FakeSource::new(), WallClock::fake_at_unix(1_000));
    src.set_current("db", r#"{"user":"app","password":"s3cr3t-pw","port":5432}"#);
    let store = builder(&src, &clock).build().unwrap();
    assert!(is(&store.get("db#user").await.unwrap(), "app"));
    assert!(is(&store.get("db#password").await.unwrap(), "s3cr3t-pw"));
    assert!(is(&store.get("db#port").await.unwrap(), "5432"));
    let err = store.get("db#nope").await.unwrap_err();
    assert!(!format!("{err} {err:?}").contains("s3cr3t"));
    assert_eq!(src.fetches(), 1);
}

/// A JSON field is derived once per cached value and then served from memory (the same `Arc`),
/// for at most 64 fields of one value: past that bound each request derives it again, so a caller
/// naming many fields cannot grow the cache without limit.
#[tokio::test]
async fn json_fields_are_memoised_up_to_sixty_four_per_value() {
    let (src, clock) = (FakeSource::new(), WallClock::fake_at_unix(1_000));
    let doc: Vec<String> = (0..65).map(|i| format!(r#""f{i}":"v{i}""#)).collect();
    src.set_current("db", &format!("{{{}}}", doc.join(",")));
    let store = builder(&src, &clock).build().unwrap();
    for i in 0..64 {
        let name = format!("db#f{i}");
        let (first, again) = (
            store.get(&name).await.unwrap(),
            store.get(&name).await.unwrap(),
        );
        assert!(is(&first, &format!("v{i}")));
        assert!(Arc::ptr_eq(&first, &again), "field {i} is memoised");
    }
    let (first, again) = (
        store.get("db#f64").await.unwrap(),
        store.get("db#f64").await.unwrap(),
    );
    assert!(is(&first, "v64") && is(&again, "v64"));
    assert!(
        !Arc::ptr_eq(&first, &again),
        "the 65th field is past the bound"
    );
    assert_eq!(src.fetches(), 1);
}

#[tokio::test]
async fn prefetch_fills_the_cache_and_reports_every_error() {
    let (src, clock) = (FakeSource::new(), WallClock::fake_at_unix(1_000));
    src.set_current("a", V1);
    src.set_current("b", V2);
    let store = builder(&src, &clock).build().unwrap();
    store.prefetch(["a", "b"]).await.unwrap();
    assert_eq!(src.fetches(), 2);
    store.get("a").await.unwrap();
    store.get("b").await.unwrap();
    assert_eq!(src.fetches(), 2);
    let errors = store.prefetch(["x", "a", "y"]).await.unwrap_err();
    assert_eq!(errors.len(), 2);
}

#[tokio::test]
async fn a_hanging_source_times_out_as_transient() {
    let src = FakeSource::new();
    src.set_current("k", V1);
    src.delay(secs(60));
    let store = SecretStore::builder(src)
        .fetch_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    assert!(store.get("k").await.unwrap_err().is_transient());
}

#[test]
fn builder_reports_every_bad_setting() {
    let err = three_bad_settings().build().unwrap_err();
    let problems = err.problems();
    assert_eq!(problems.len(), 3, "{err}");
}

#[tokio::test]
async fn get_now_answers_only_what_get_would_answer_without_fetching() {
    let (src, clock) = (FakeSource::new(), WallClock::fake_at_unix(1_000));
    src.set_current("k", V1);
    let store = builder(&src, &clock).build().unwrap();
    assert!(
        store.get_now("k").is_none(),
        "nothing cached: get must fetch"
    );
    assert_eq!(src.fetches(), 0, "get_now never fetches");
    store.get("k").await.unwrap();
    assert!(is(&store.get_now("k").unwrap().unwrap(), V1));
    clock.advance(secs(100));
    assert!(store.get_now("k").is_none(), "expired: get must fetch");
    // A transient failure with the value still within max staleness: served stale, at once.
    src.fail_with(SecretsError::transient("k", "down"));
    assert!(is(&store.get("k").await.unwrap(), V1));
    assert!(is(&store.get_now("k").unwrap().unwrap(), V1));
    assert_eq!(store.stats().stale_served, 2);
    // A permanent failure: the recent error is the answer (fail closed), still without a fetch.
    src.heal();
    src.remove("k");
    clock.advance(secs(5));
    assert!(store.get("k").await.is_err());
    let fetches = src.fetches();
    assert!(matches!(
        store.get_now("k"),
        Some(Err(SecretsError::NotFound { .. }))
    ));
    assert_eq!(src.fetches(), fetches);
}
