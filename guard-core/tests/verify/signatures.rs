//! HMAC webhook signatures.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use guard_core::ConfigError;
use guard_core::GuardRequest;
use guard_core::RejectionKind;
use guard_core::request::PrincipalKind;
use guard_core::verify::{HmacScheme, HmacVerifier, MemoryReplayStore};

use crate::support::{Keys, Stack, T0, clock, down_store, hmac_hex};

const GH_SECRET: &[u8] = b"It's a Secret to Everybody";
const GH_BODY: &[u8] = b"Hello, World!";
/// GitHub's published signature for the two values above.
const GH_SIG: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

fn github_stack() -> Stack {
    let v = HmacVerifier::builder(HmacScheme::github(), Keys::new(GH_SECRET).store("gh"), "gh")
        .build()
        .unwrap();
    Stack::of(v)
}

fn gh_request(sig_header: &str, body: &'static [u8]) -> GuardRequest {
    http::Request::builder()
        .header("x-hub-signature-256", sig_header)
        .body(Bytes::from_static(body))
        .unwrap()
}

#[tokio::test]
async fn github_published_test_vector_passes() {
    assert_eq!(
        hmac_hex(GH_SECRET, GH_BODY),
        GH_SIG,
        "the helper agrees with GitHub"
    );
    let s = github_stack();
    let p = s
        .allowed(gh_request(&format!("sha256={GH_SIG}"), GH_BODY))
        .await;
    assert_eq!(p.kind, PrincipalKind::Hmac);
    assert_eq!(p.subject, "gh");
    // Upper-case hex is the same signature.
    s.allowed(gh_request(
        &format!("sha256={}", GH_SIG.to_uppercase()),
        GH_BODY,
    ))
    .await;
}

#[tokio::test]
async fn github_one_changed_byte_fails() {
    let s = github_stack();
    s.denied(
        gh_request(&format!("sha256={GH_SIG}"), b"Hello, World?"),
        RejectionKind::BadSignature,
    )
    .await;
    let mut flipped = GH_SIG.to_string();
    flipped.replace_range(0..1, "6");
    s.denied(
        gh_request(&format!("sha256={flipped}"), GH_BODY),
        RejectionKind::BadSignature,
    )
    .await;
}

#[tokio::test]
async fn reserialized_json_body_fails() {
    let s = github_stack();
    let original = br#"{"order_id": "ord_12345678", "qty": 1}"#;
    let sig = hmac_hex(GH_SECRET, original);
    s.allowed(gh_request(&format!("sha256={sig}"), original))
        .await;
    // Same JSON value, different bytes: the signature covers the raw bytes.
    let reserialized = br#"{"order_id":"ord_12345678","qty":1}"#;
    s.denied(
        gh_request(&format!("sha256={sig}"), reserialized),
        RejectionKind::BadSignature,
    )
    .await;
}

#[tokio::test]
async fn downgraded_truncated_and_non_hex_signatures_fail_without_panic() {
    let s = github_stack();
    let sha1 = "sha1=0a4d55a8d778e5022fab701977c5d840bbc486d0";
    for header in [
        sha1.to_string(),
        format!("sha256={}", &GH_SIG[..62]),
        format!("sha256={}", &GH_SIG[..63]),
        format!("sha256={}00", GH_SIG),
        format!("sha256={}", "zz".repeat(32)),
        "sha256=".to_string(),
        format!("SHA256={GH_SIG}"),
        format!("sha256={}", "é".repeat(32)),
        GH_SIG.to_string(),
        format!("sha256={}", "a".repeat(5000)),
    ] {
        let req = http::Request::builder()
            .header("x-hub-signature-256", header.as_bytes())
            .body(Bytes::from_static(GH_BODY))
            .unwrap();
        s.denied(req, RejectionKind::BadSignature).await;
    }
    // The legacy SHA-1 header alone is not a credential.
    let req = http::Request::builder()
        .header("x-hub-signature", sha1)
        .body(Bytes::from_static(GH_BODY))
        .unwrap();
    s.denied(req, RejectionKind::MissingCredentials).await;
}

fn stripe_stack(keys: &Keys, replay: bool) -> (Stack, guard_core::clock::WallClock) {
    let (s, clock, _) = stripe_stack_with_capacity(keys, replay.then_some(100));
    (s, clock)
}

/// A Stripe-style verifier (tolerance 300 s) on the fake clock, with a memory replay store of
/// `capacity` keys when given (returned, on the same clock).
fn stripe_stack_with_capacity(
    keys: &Keys,
    capacity: Option<usize>,
) -> (
    Stack,
    guard_core::clock::WallClock,
    Option<MemoryReplayStore>,
) {
    let clock = clock();
    let mut b = HmacVerifier::builder(
        HmacScheme::stripe_style("X-Guard-Signature").unwrap(),
        keys.store("orders-webhook-hmac"),
        "orders-webhook-hmac",
    )
    .clock(clock.clone());
    let store = capacity.map(|c| MemoryReplayStore::new(c).with_clock(clock.clone()));
    if let Some(store) = &store {
        b = b.replay_store(Arc::new(store.clone()));
    }
    (Stack::of(b.build().unwrap()), clock, store)
}

fn signed(key: &[u8], t: u64, body: &'static [u8]) -> GuardRequest {
    let mut msg = format!("{t}.").into_bytes();
    msg.extend_from_slice(body);
    let sig = hmac_hex(key, &msg);
    http::Request::builder()
        .header("x-guard-signature", format!("t={t},v1={sig}"))
        .body(Bytes::from_static(body))
        .unwrap()
}

#[tokio::test]
async fn stale_and_future_timestamps_fail() {
    let keys = Keys::new(b"k1");
    let (s, _) = stripe_stack(&keys, false);
    s.allowed(signed(b"k1", T0 - 300, b"{}")).await;
    s.allowed(signed(b"k1", T0 + 300, b"{}")).await;
    s.denied(
        signed(b"k1", T0 - 301, b"{}"),
        RejectionKind::StaleSignature,
    )
    .await;
    s.denied(
        signed(b"k1", T0 + 301, b"{}"),
        RejectionKind::StaleSignature,
    )
    .await;
    s.denied(signed(b"k1", 0, b"{}"), RejectionKind::StaleSignature)
        .await;
}

#[tokio::test]
async fn rejects_replayed_signature() {
    let keys = Keys::new(b"k1");
    let (s, clock) = stripe_stack(&keys, true);
    s.allowed(signed(b"k1", T0, b"{\"n\":1}")).await;
    clock.advance(Duration::from_secs(10));
    s.denied(signed(b"k1", T0, b"{\"n\":1}"), RejectionKind::Replayed)
        .await;
    // A different message with the same timestamp is not a replay.
    s.allowed(signed(b"k1", T0, b"{\"n\":2}")).await;
}

#[tokio::test]
async fn a_future_dated_signature_is_remembered_until_its_window_closes() {
    let keys = Keys::new(b"k1");
    let (s, clock) = stripe_stack(&keys, true);
    // Signed 300 s in the future: accepted now, and its timestamp passes the window until the
    // clock reads T0 + 600 in whole seconds, i.e. until T0 + 601.
    s.allowed(signed(b"k1", T0 + 300, b"{}")).await;
    clock.advance(Duration::from_millis(600_500));
    s.denied(signed(b"k1", T0 + 300, b"{}"), RejectionKind::Replayed)
        .await;
    clock.advance(Duration::from_millis(499));
    s.denied(signed(b"k1", T0 + 300, b"{}"), RejectionKind::Replayed)
        .await;
    clock.advance(Duration::from_millis(1));
    s.denied(
        signed(b"k1", T0 + 300, b"{}"),
        RejectionKind::StaleSignature,
    )
    .await;
}

#[tokio::test]
async fn the_replay_record_lives_exactly_until_the_window_closes() {
    let keys = Keys::new(b"k1");
    // One slot: while the record lives the store is full, so a new signature is 503 (fail
    // closed, never a forgotten record); once it expired, the slot is free again.
    let (s, clock, store) = stripe_stack_with_capacity(&keys, Some(1));
    let store = store.unwrap();
    s.allowed(signed(b"k1", T0, b"{\"n\":1}")).await;
    assert_eq!(store.len(), 1);
    clock.advance(Duration::from_millis(300_999)); // T0 + 300.999: the last moment t = T0 passes
    s.denied(signed(b"k1", T0, b"{\"n\":1}"), RejectionKind::Replayed)
        .await;
    s.denied(
        signed(b"k1", T0 + 300, b"{\"n\":2}"),
        RejectionKind::VerifyUnavailable,
    )
    .await;
    clock.advance(Duration::from_millis(1)); // T0 + 301: the record is gone
    s.allowed(signed(b"k1", T0 + 300, b"{\"n\":2}")).await;
    assert_eq!(store.len(), 1, "the expired record made room");
}

/// GitHub signs no timestamp: an identical delivery is refused for the tolerance (here 60 s)
/// from its acceptance, and accepted again once that has passed.
#[tokio::test]
async fn a_signature_without_a_timestamp_is_remembered_for_the_tolerance() {
    let clock = clock();
    let store = MemoryReplayStore::new(10).with_clock(clock.clone());
    let v = HmacVerifier::builder(HmacScheme::github(), Keys::new(GH_SECRET).store("gh"), "gh")
        .tolerance(Duration::from_secs(60))
        .clock(clock.clone())
        .replay_store(Arc::new(store))
        .build()
        .unwrap();
    let s = Stack::of(v);
    let sig = format!("sha256={GH_SIG}");
    s.allowed(gh_request(&sig, GH_BODY)).await;
    clock.advance(Duration::from_millis(59_999));
    s.denied(gh_request(&sig, GH_BODY), RejectionKind::Replayed)
        .await;
    clock.advance(Duration::from_millis(1));
    s.allowed(gh_request(&sig, GH_BODY)).await;
}

#[tokio::test]
async fn a_full_replay_store_fails_closed_with_503() {
    let keys = Keys::new(b"k1");
    let (s, _, _) = stripe_stack_with_capacity(&keys, Some(2));
    s.allowed(signed(b"k1", T0, b"{\"n\":1}")).await;
    s.allowed(signed(b"k1", T0, b"{\"n\":2}")).await;
    let resp = s
        .denied(
            signed(b"k1", T0, b"{\"n\":3}"),
            RejectionKind::VerifyUnavailable,
        )
        .await;
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(body["code"], "guard.verify.unavailable");
}

#[tokio::test]
async fn the_signature_header_cap_is_2_kib_exactly() {
    let keys = Keys::new(b"k1");
    let (s, _) = stripe_stack(&keys, false);
    let padded = |len: usize| {
        let mut req = signed(b"k1", T0, b"{}");
        let mut v = req.headers()["x-guard-signature"]
            .to_str()
            .unwrap()
            .to_string();
        v.push_str(",x=");
        v.push_str(&"a".repeat(len - v.len()));
        assert_eq!(v.len(), len);
        req.headers_mut()
            .insert("x-guard-signature", v.parse().unwrap());
        req
    };
    // An unknown item is ignored, so only the length differs.
    s.allowed(padded(
        guard_core::verify::HmacVerifier::MAX_SIGNATURE_HEADER,
    ))
    .await;
    s.denied(
        padded(guard_core::verify::HmacVerifier::MAX_SIGNATURE_HEADER + 1),
        RejectionKind::BadSignature,
    )
    .await;
    assert_eq!(guard_core::verify::HmacVerifier::MAX_SIGNATURE_HEADER, 2048);
}

#[tokio::test]
async fn replay_is_keyed_on_the_message_not_the_header_spelling() {
    let keys = Keys::new(b"k1");
    let (s, _) = stripe_stack(&keys, true);
    let msg = format!("{T0}.{{}}");
    let sig = hmac_hex(b"k1", msg.as_bytes());
    let req = |v: String| {
        http::Request::builder()
            .header("x-guard-signature", v)
            .body(Bytes::from_static(b"{}"))
            .unwrap()
    };
    s.allowed(req(format!("t={T0},v1={sig}"))).await;
    s.denied(
        req(format!("t={T0},v1={}", sig.to_uppercase())),
        RejectionKind::Replayed,
    )
    .await;
    s.denied(req(format!("v1={sig}, t={T0}")), RejectionKind::Replayed)
        .await;
}

#[tokio::test]
async fn previous_key_and_several_v1_are_accepted_during_a_roll() {
    let keys = Keys::new(b"new");
    *keys.previous.lock().unwrap() = Some(b"old".to_vec());
    let (s, _) = stripe_stack(&keys, false);
    s.allowed(signed(b"old", T0, b"{}")).await;
    s.allowed(signed(b"new", T0, b"{}")).await;
    let msg = format!("{T0}.{{}}");
    let header = format!(
        "t={T0},v1={},v1={}",
        hmac_hex(b"unknown", msg.as_bytes()),
        hmac_hex(b"new", msg.as_bytes())
    );
    let req = http::Request::builder()
        .header("x-guard-signature", header)
        .body(Bytes::from_static(b"{}"))
        .unwrap();
    s.allowed(req).await;
    s.denied(signed(b"unknown", T0, b"{}"), RejectionKind::BadSignature)
        .await;
}

#[tokio::test]
async fn mismatch_forces_one_refresh_so_a_rotated_key_is_picked_up() {
    let keys = Keys::new(b"k1");
    let (s, _) = stripe_stack(&keys, false);
    s.allowed(signed(b"k1", T0, b"{}")).await;
    // The key rotates in the secret source; the sender already signs with the new one.
    *keys.current.lock().unwrap() = Some(b"k2".to_vec());
    let before = keys.fetches.load(Ordering::SeqCst);
    s.allowed(signed(b"k2", T0, b"{}")).await;
    let after_refresh = keys.fetches.load(Ordering::SeqCst);
    assert!(after_refresh > before, "a mismatch asked the store again");
    // Another mismatch right away is not another fetch: the store rate-limits forced refreshes
    // (attackers decide how many bad signatures arrive).
    s.denied(signed(b"k3", T0, b"{}"), RejectionKind::BadSignature)
        .await;
    assert_eq!(keys.fetches.load(Ordering::SeqCst), after_refresh);
}

#[tokio::test]
async fn missing_signature_is_401_missing_credentials() {
    let keys = Keys::new(b"k1");
    let (s, _) = stripe_stack(&keys, false);
    s.denied(
        http::Request::new(Bytes::from_static(b"{}")),
        RejectionKind::MissingCredentials,
    )
    .await;
}

#[tokio::test]
async fn unreadable_or_empty_key_fails_closed_with_503() {
    let v = HmacVerifier::builder(HmacScheme::stripe(), down_store(), "k")
        .clock(clock())
        .build()
        .unwrap();
    let s = Stack::of(v);
    let req = || {
        let sig = hmac_hex(b"x", format!("{T0}.{{}}").as_bytes());
        http::Request::builder()
            .header("stripe-signature", format!("t={T0},v1={sig}"))
            .body(Bytes::from_static(b"{}"))
            .unwrap()
    };
    s.denied(req(), RejectionKind::SecretsUnavailable).await;
    let empty = Keys::new(b"");
    let v = HmacVerifier::builder(HmacScheme::stripe(), empty.store("k"), "k")
        .clock(clock())
        .build()
        .unwrap();
    Stack::of(v)
        .denied(req(), RejectionKind::SecretsUnavailable)
        .await;
}

#[tokio::test]
async fn slack_signatures_verify_with_their_timestamp_header() {
    let keys = Keys::new(b"slack-key");
    let v = HmacVerifier::builder(HmacScheme::slack(), keys.store("slack"), "slack")
        .clock(clock())
        .build()
        .unwrap();
    let s = Stack::of(v);
    let body = b"token=x&team_id=T1";
    let sig = hmac_hex(
        b"slack-key",
        format!("v0:{T0}:token=x&team_id=T1").as_bytes(),
    );
    let req = |ts: u64| {
        http::Request::builder()
            .header("x-slack-signature", format!("v0={sig}"))
            .header("x-slack-request-timestamp", ts.to_string())
            .body(Bytes::from_static(body))
            .unwrap()
    };
    s.allowed(req(T0)).await;
    s.denied(req(T0 + 1), RejectionKind::BadSignature).await;
}

#[test]
fn empty_secret_name_and_silly_tolerance_are_build_errors() {
    let store = Keys::new(b"k").store("k");
    let e = HmacVerifier::builder(HmacScheme::github(), store.clone(), " ")
        .build()
        .unwrap_err();
    assert_eq!(e, ConfigError::EmptySecretName);
    let e = HmacVerifier::builder(HmacScheme::github(), store, "k")
        .tolerance(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(matches!(e, ConfigError::OutOfRange { .. }));
}

#[test]
fn no_signature_header_is_decided_at_once_and_a_signature_waits_for_the_key() {
    use guard_core::verify::Verifier;
    let v = HmacVerifier::builder(HmacScheme::github(), Keys::new(GH_SECRET).store("gh"), "gh")
        .build()
        .unwrap();
    let none = http::Request::new(Bytes::new());
    let r = v.verify_now(&none).expect("decided at once").unwrap_err();
    assert_eq!(r.kind(), RejectionKind::MissingCredentials);
    assert!(
        v.verify_now(&gh_request(&format!("sha256={GH_SIG}"), GH_BODY))
            .is_none()
    );
}
