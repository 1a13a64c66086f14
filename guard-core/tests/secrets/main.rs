//! SecretsLayer over a SecretStore, with a counting source and a fake clock (the store's own
//! behaviour is tested in guard-secrets).
#![cfg(feature = "secrets")]

/// guard-secrets' scriptable source and log capture, shared with the store's own tests.
#[path = "../../../guard-secrets/tests/store/support.rs"]
#[allow(dead_code)] // the store tests use more of it than these
mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use guard_core::clock::WallClock;
use guard_core::secrets::{SecretHandles, SecretsLayer};
use guard_core::{GuardRequest, GuardResponse};
use guard_secrets::{SecretStore, SecretsError};
use support::{FakeSource, V1, V2, builder, capture_logs, is, secs, three_bad_settings};
use tower::{Layer, ServiceExt, service_fn};

#[test]
fn builder_reports_every_bad_setting_as_a_config_error() {
    let err = three_bad_settings().build().unwrap_err();
    let err = guard_core::ConfigError::from(err);
    let guard_core::ConfigError::SecretStore(problems) = &err else {
        panic!("not a secret store error: {err}");
    };
    assert_eq!(problems.len(), 3, "{err}");
}

// ---- the layer ----

fn counting_handler(
    calls: Arc<AtomicUsize>,
) -> impl tower::Service<GuardRequest, Response = GuardResponse, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    service_fn(move |req: GuardRequest| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            let handles = req.extensions().get::<SecretHandles>().cloned();
            let body = match handles.and_then(|h| h.get("api-key")) {
                Some(v) if is(&v, V1) => "has-key",
                Some(_) => "other-key",
                None => "no-key",
            };
            Ok(GuardResponse::new(Bytes::from_static(body.as_bytes())))
        }
    })
}

fn request() -> GuardRequest {
    GuardRequest::new(Bytes::from_static(b"{}"))
}

#[tokio::test]
async fn layer_hands_required_secrets_to_the_handler() {
    let src = FakeSource::new();
    src.set_current("api-key", V1);
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = SecretsLayer::new(SecretStore::new(src))
        .require("api-key")
        .optional("absent")
        .layer(counting_handler(calls.clone()));
    let resp = svc.oneshot(request()).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.body(), "has-key");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn cold_failure_is_503_and_the_handler_is_not_called() {
    let (logs, _guard) = capture_logs();
    let src = FakeSource::new();
    src.fail_with(SecretsError::transient("api-key", "connection refused"));
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = SecretsLayer::new(SecretStore::new(src))
        .require("api-key")
        .layer(counting_handler(calls.clone()));
    let resp = svc.oneshot(request()).await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(body["code"], "guard.secrets.unavailable");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "handler must not run");
    assert!(logs.text().contains("failing closed"));
}

#[tokio::test]
async fn missing_optional_secret_is_absent_not_an_error() {
    let src = FakeSource::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = SecretsLayer::new(SecretStore::new(src))
        .optional("api-key")
        .layer(counting_handler(calls.clone()));
    let resp = svc.oneshot(request()).await.unwrap();
    assert_eq!(resp.body(), "no-key");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn secret_values_never_appear_in_debug_errors_or_logs() {
    let (logs, _guard) = capture_logs();
    let (src, clock) = (FakeSource::new(), WallClock::fake_at_unix(1_000));
    src.set_current("k", V1);
    src.set_current("j", &format!(r#"{{"password":"{V2}"}}"#));
    let store = builder(&src, &clock).build().unwrap();
    let v = store.get("k").await.unwrap();
    let versions = store.versions("k").await.unwrap();
    let field = store.get("j#password").await.unwrap();
    let bad_field = store.get("j#missing").await.unwrap_err();
    let handles = {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(std::sync::Mutex::new(String::new()));
        let seen2 = seen.clone();
        let svc = SecretsLayer::new(store.clone())
            .require("k")
            .layer(service_fn(move |req: GuardRequest| {
                *seen2.lock().unwrap() = format!("{:?}", req.extensions().get::<SecretHandles>());
                calls.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, Infallible>(GuardResponse::new(Bytes::new())) }
            }));
        svc.oneshot(request()).await.unwrap();
        seen.lock().unwrap().clone()
    };
    src.fail_with(SecretsError::transient("k", "down"));
    clock.advance(secs(200));
    store.get("k").await.unwrap();
    let text = format!(
        "{v:?} {v} {versions:?} {field:?} {bad_field} {bad_field:?} {handles} {store:?} {:?} {}",
        store.stats(),
        logs.text()
    );
    assert!(handles.contains("\"k\""), "handles list the names");
    for secret in [V1, V2] {
        assert!(!text.contains(secret), "a secret value leaked");
    }
}

// ---- the layer's synchronous path (every secret answered by the cache at once) ----

/// A handler that reports every secret it was handed, as `name=value;...` in list order.
fn listing_handler()
-> impl tower::Service<GuardRequest, Response = GuardResponse, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    service_fn(|req: GuardRequest| async move {
        let handles = req.extensions().get::<SecretHandles>().cloned().unwrap();
        let listed: Vec<String> = handles
            .names()
            .map(|n| {
                let v = handles.get(n).unwrap();
                format!("{n}={}", v.expose_str().unwrap())
            })
            .collect();
        Ok(GuardResponse::new(Bytes::from(listed.join(";"))))
    })
}

#[tokio::test]
async fn a_secret_near_expiry_is_refreshed_ahead_through_the_synchronous_path() {
    let (src, clock) = (FakeSource::new(), WallClock::fake_at_unix(1_000));
    src.set_current("api-key", V1);
    let store = builder(&src, &clock)
        .refresh_ahead(secs(20))
        .build()
        .unwrap();
    let layer = SecretsLayer::new(store.clone()).require("api-key");
    layer.prefetch().await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer.layer(counting_handler(calls.clone()));
    src.set_current("api-key", V2);
    clock.advance(secs(85));
    // Inside the refresh window: the layer answers from the cache at once (the old value) and
    // the refresh starts behind it; no request waits for it.
    let resp = svc.clone().oneshot(request()).await.unwrap();
    assert_eq!(resp.body(), "has-key");
    for _ in 0..100 {
        if src.fetches() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(src.fetches(), 2, "exactly one background refresh");
    assert_eq!(store.stats().refreshed_ahead, 1);
    assert_eq!(store.stats().misses, 1, "only the prefetch missed");
    let resp = svc.oneshot(request()).await.unwrap();
    assert_eq!(
        resp.body(),
        "other-key",
        "the refreshed value is served next"
    );
}

#[tokio::test]
async fn a_cached_failure_of_a_required_secret_is_503_at_once() {
    let (src, clock) = (FakeSource::new(), WallClock::fake_at_unix(1_000));
    let store = builder(&src, &clock).build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = SecretsLayer::new(store)
        .require("api-key")
        .layer(counting_handler(calls.clone()));
    // The first request fetches and fails; the second is answered by the cached failure.
    for _ in 0..2 {
        let resp = svc.clone().oneshot(request()).await.unwrap();
        assert_eq!(resp.status(), 503);
    }
    assert_eq!(
        src.fetches(),
        1,
        "the failure is remembered for retry_after_error"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0, "handler must not run");
}

#[tokio::test]
async fn each_secret_is_asked_once_per_request_whichever_path_answers() {
    let (src, clock) = (FakeSource::new(), WallClock::fake_at_unix(1_000));
    for (name, value) in [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")] {
        src.set_current(name, value);
    }
    let store = builder(&src, &clock).build().unwrap();
    let layer = SecretsLayer::new(store.clone())
        .require("a")
        .require("b")
        .optional("c")
        .optional("absent")
        .optional("d");
    let svc = layer.layer(listing_handler());
    // Cold: `a` and `b` are fetched, then the optional ones (`absent` fails: not found).
    let resp = svc.clone().oneshot(request()).await.unwrap();
    assert_eq!(resp.body(), "a=1;b=2;c=3;d=4");
    assert_eq!(src.fetches(), 5);
    // Everything cached (`absent` as a remembered failure): one hit per name found, no fetch.
    let before = store.stats();
    let resp = svc.clone().oneshot(request()).await.unwrap();
    assert_eq!(resp.body(), "a=1;b=2;c=3;d=4");
    let after = store.stats();
    assert_eq!(src.fetches(), 5, "no fetch");
    assert_eq!(after.hits - before.hits, 4);
    assert_eq!(
        after.misses - before.misses,
        1,
        "the absent optional secret"
    );
    // Everything expired but `a`: `a` is answered at once (and counted once), the rest fetched.
    clock.advance(secs(100));
    store.get("a").await.unwrap();
    let before = store.stats();
    let resp = svc.clone().oneshot(request()).await.unwrap();
    assert_eq!(resp.body(), "a=1;b=2;c=3;d=4");
    assert_eq!(
        src.fetches(),
        6 + 4,
        "`b`, `c`, `absent` and `d` fetched, not `a`"
    );
    assert_eq!(store.stats().hits - before.hits, 1);
    // The required ones fresh, optional ones to fetch: only those are fetched.
    clock.advance(secs(100));
    store.get("a").await.unwrap();
    store.get("b").await.unwrap();
    store.get("c").await.unwrap();
    let fetches = src.fetches();
    let resp = svc.oneshot(request()).await.unwrap();
    assert_eq!(resp.body(), "a=1;b=2;c=3;d=4");
    assert_eq!(
        src.fetches(),
        fetches + 2,
        "`absent` and `d` fetched, nothing else"
    );
}
