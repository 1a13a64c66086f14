//! OIDC / JWT bearer tokens against a local JWKS server.

use std::time::Duration;

use guard_core::RejectionKind;
use guard_core::clock::WallClock;
use guard_core::request::PrincipalKind;
use guard_core::verify::{ClaimPredicate, JwksCache, JwtVerifier};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::support::{JwksServer, Stack, T0, b64u, bearer, clock, data, es256, hs256_raw, rs256};

const ISS: &str = "https://issuer.example";
const AUD: &str = "orders-api";

fn claims() -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "user-1", "exp": T0 + 600, "iat": T0, "email_verified": true})
}

fn with(mut c: Value, key: &str, v: Value) -> Value {
    c[key] = v;
    c
}

fn without(mut c: Value, key: &str) -> Value {
    c.as_object_mut().unwrap().remove(key);
    c
}

struct Fixture {
    server: JwksServer,
    clock: WallClock,
    stack: Stack,
}

fn fixture_with(
    configure: impl FnOnce(
        guard_core::verify::JwtVerifierBuilder,
    ) -> guard_core::verify::JwtVerifierBuilder,
) -> Fixture {
    let server = JwksServer::start(data("jwks.json"));
    let clock = clock();
    let jwks = JwksCache::from_url(&server.url)
        .unwrap()
        .cooldown(Duration::from_secs(30))
        .ttl(Duration::from_secs(600))
        .clock(clock.clone());
    let b = JwtVerifier::builder(jwks)
        .issuers([ISS])
        .audiences([AUD])
        .algorithms([Algorithm::RS256, Algorithm::ES256])
        .clock(clock.clone());
    let stack = Stack::of(configure(b).build().unwrap());
    Fixture {
        server,
        clock,
        stack,
    }
}

fn fixture() -> Fixture {
    fixture_with(|b| b)
}

#[tokio::test]
async fn valid_rs256_and_es256_tokens_pass() {
    let f = fixture();
    let p = f.stack.allowed(bearer(&rs256("rsa-1", &claims()))).await;
    assert_eq!(p.kind, PrincipalKind::Jwt);
    assert_eq!(p.subject, "user-1");
    assert_eq!(p.issuer.as_deref(), Some(ISS));
    assert_eq!(p.claims["email_verified"], json!(true));
    f.stack.allowed(bearer(&es256(&claims()))).await;
    assert_eq!(f.server.fetches(), 1, "keys are cached");
}

#[tokio::test]
async fn missing_or_non_bearer_authorization_is_missing_credentials() {
    let f = fixture();
    f.stack
        .denied(
            http::Request::new(bytes::Bytes::new()),
            RejectionKind::MissingCredentials,
        )
        .await;
    let basic = http::Request::builder()
        .header("authorization", "Basic dXNlcjpwYXNz")
        .body(bytes::Bytes::new())
        .unwrap();
    f.stack
        .denied(basic, RejectionKind::MissingCredentials)
        .await;
}

#[tokio::test]
async fn alg_none_is_refused() {
    let f = fixture();
    let header = json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"});
    let unsigned = format!(
        "{}.{}.",
        b64u(header.to_string()),
        b64u(claims().to_string())
    );
    f.stack
        .denied(bearer(&unsigned), RejectionKind::BadToken)
        .await;
    let with_junk_sig = format!("{unsigned}AAAA");
    f.stack
        .denied(bearer(&with_junk_sig), RejectionKind::BadToken)
        .await;
    let header = json!({"alg": "None", "kid": "rsa-1"});
    let t = format!(
        "{}.{}.AAAA",
        b64u(header.to_string()),
        b64u(claims().to_string())
    );
    f.stack.denied(bearer(&t), RejectionKind::BadToken).await;
}

#[tokio::test]
async fn rs256_public_key_used_as_hs256_secret_is_refused() {
    let f = fixture();
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"});
    for secret in [data("rsa-public.pem"), data("jwks.json")] {
        let t = hs256_raw(&header, &claims(), &secret);
        f.stack.denied(bearer(&t), RejectionKind::BadToken).await;
    }
}

#[tokio::test]
async fn audience_and_issuer_are_enforced() {
    let f = fixture();
    f.stack
        .denied(
            bearer(&rs256("rsa-1", &without(claims(), "aud"))),
            RejectionKind::BadToken,
        )
        .await;
    f.stack
        .denied(
            bearer(&rs256(
                "rsa-1",
                &with(claims(), "aud", json!("someone-else")),
            )),
            RejectionKind::BadToken,
        )
        .await;
    f.stack
        .allowed(bearer(&rs256(
            "rsa-1",
            &with(claims(), "aud", json!(["x", AUD])),
        )))
        .await;
    f.stack
        .denied(
            bearer(&rs256(
                "rsa-1",
                &with(claims(), "iss", json!("https://evil.example")),
            )),
            RejectionKind::BadToken,
        )
        .await;
    f.stack
        .denied(
            bearer(&rs256("rsa-1", &without(claims(), "iss"))),
            RejectionKind::BadToken,
        )
        .await;
}

#[tokio::test]
async fn exp_must_be_a_number_and_present() {
    let f = fixture();
    let as_string = with(claims(), "exp", json!((T0 + 600).to_string()));
    f.stack
        .denied(bearer(&rs256("rsa-1", &as_string)), RejectionKind::BadToken)
        .await;
    f.stack
        .denied(
            bearer(&rs256("rsa-1", &without(claims(), "exp"))),
            RejectionKind::BadToken,
        )
        .await;
    f.stack
        .denied(
            bearer(&rs256("rsa-1", &with(claims(), "exp", json!(null)))),
            RejectionKind::BadToken,
        )
        .await;
}

#[tokio::test]
async fn nbf_in_the_future_is_refused() {
    let f = fixture();
    let later = with(claims(), "nbf", json!(T0 + 61));
    f.stack
        .denied(bearer(&rs256("rsa-1", &later)), RejectionKind::BadToken)
        .await;
    let within_leeway = with(claims(), "nbf", json!(T0 + 60));
    f.stack
        .allowed(bearer(&rs256("rsa-1", &within_leeway)))
        .await;
    let nbf_string = with(claims(), "nbf", json!("0"));
    f.stack
        .denied(
            bearer(&rs256("rsa-1", &nbf_string)),
            RejectionKind::BadToken,
        )
        .await;
}

#[tokio::test]
async fn expired_61s_with_60s_leeway_is_refused() {
    let f = fixture();
    let at_leeway = with(claims(), "exp", json!(T0 - 60));
    f.stack.allowed(bearer(&rs256("rsa-1", &at_leeway))).await;
    let past = with(claims(), "exp", json!(T0 - 61));
    f.stack
        .denied(bearer(&rs256("rsa-1", &past)), RejectionKind::BadToken)
        .await;
    // Time moves: the token that was fine a moment ago expires.
    f.clock.advance(Duration::from_secs(1));
    f.stack
        .denied(bearer(&rs256("rsa-1", &at_leeway)), RejectionKind::BadToken)
        .await;
}

#[tokio::test]
async fn two_and_four_segment_tokens_are_refused() {
    let f = fixture();
    let good = rs256("rsa-1", &claims());
    let parts: Vec<&str> = good.split('.').collect();
    for t in [
        format!("{}.{}", parts[0], parts[1]),
        format!("{good}.{}", parts[2]),
        format!("{}..{}", parts[0], parts[2]),
        format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
        "a".repeat(9000),
        String::new(),
    ] {
        f.stack.denied(bearer(&t), RejectionKind::BadToken).await;
    }
}

#[tokio::test]
async fn tampered_payload_fails_the_signature() {
    let f = fixture();
    let good = rs256("rsa-1", &claims());
    let parts: Vec<&str> = good.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64u(with(claims(), "sub", json!("admin")).to_string()),
        parts[2]
    );
    f.stack
        .denied(bearer(&forged), RejectionKind::BadToken)
        .await;
}

#[tokio::test]
async fn key_family_pins_the_algorithm() {
    let f = fixture();
    // The EC key's kid on an RS256 token: no key of that family has that kid.
    f.stack
        .denied(bearer(&rs256("ec-1", &claims())), RejectionKind::BadToken)
        .await;
}

/// The test keys re-published with other `use` / `key_ops` members (RFC 7517 §4.2, §4.3).
fn jwks_with(members: &str) -> Vec<u8> {
    let mut doc: Value = serde_json::from_slice(&data("jwks.json")).unwrap();
    let extra: Value = serde_json::from_str(members).unwrap();
    for key in doc["keys"].as_array_mut().unwrap() {
        let key = key.as_object_mut().unwrap();
        key.remove("use");
        for (k, v) in extra.as_object().unwrap() {
            key.insert(k.clone(), v.clone());
        }
    }
    serde_json::to_vec(&doc).unwrap()
}

fn stack_over(doc: Vec<u8>) -> Stack {
    let jwks = JwksCache::new(move || Ok(doc.clone()));
    let v = JwtVerifier::builder(jwks)
        .issuers([ISS])
        .audiences([AUD])
        .algorithms([Algorithm::RS256, Algorithm::ES256])
        .clock(clock())
        .build()
        .unwrap();
    Stack::of(v)
}

#[tokio::test]
async fn keys_whose_key_ops_or_use_exclude_verify_never_verify() {
    // Validly signed tokens; the RSA and EC keys are published for another operation.
    for members in [
        r#"{"key_ops": ["encrypt"]}"#,
        r#"{"key_ops": ["sign"]}"#,
        r#"{"key_ops": []}"#,
        r#"{"key_ops": ["verify"], "use": "enc"}"#,
        r#"{"use": "wrap"}"#,
    ] {
        let s = stack_over(jwks_with(members));
        s.denied(bearer(&rs256("rsa-1", &claims())), RejectionKind::BadToken)
            .await;
        s.denied(bearer(&es256(&claims())), RejectionKind::BadToken)
            .await;
    }
    // `key_ops` containing `verify` (with or without `use: sig`) is a verification key.
    for members in [
        r#"{"key_ops": ["verify"]}"#,
        r#"{"key_ops": ["sign", "verify"], "use": "sig"}"#,
    ] {
        let s = stack_over(jwks_with(members));
        s.allowed(bearer(&rs256("rsa-1", &claims()))).await;
        s.allowed(bearer(&es256(&claims()))).await;
    }
}

#[tokio::test]
async fn unknown_kid_flood_costs_at_most_one_fetch_per_cooldown() {
    let f = fixture();
    f.stack.allowed(bearer(&rs256("rsa-1", &claims()))).await;
    assert_eq!(f.server.fetches(), 1);
    let flood = |n: usize| {
        let stack = &f.stack;
        futures_util::future::join_all((0..n).map(move |i| async move {
            let t = rs256(&format!("made-up-{i}"), &claims());
            stack.denied(bearer(&t), RejectionKind::BadToken).await;
        }))
    };
    flood(50).await;
    assert_eq!(
        f.server.fetches(),
        1,
        "inside the cooldown: no fetch at all"
    );
    f.clock.advance(Duration::from_secs(31));
    flood(50).await;
    assert_eq!(
        f.server.fetches(),
        2,
        "after the cooldown: exactly one (single-flight)"
    );
    f.stack.allowed(bearer(&rs256("rsa-1", &claims()))).await;
    assert_eq!(f.server.fetches(), 2);
}

#[tokio::test]
async fn jwks_server_down_with_cached_keys_still_verifies() {
    let f = fixture();
    f.stack.allowed(bearer(&rs256("rsa-1", &claims()))).await;
    f.server.set_failing(true);
    // Past the TTL and the cooldown: a refresh is tried, fails, and the cached keys stay.
    f.clock.advance(Duration::from_secs(601));
    let c = with(claims(), "exp", json!(T0 + 1200));
    f.stack.allowed(bearer(&rs256("rsa-1", &c))).await;
    assert_eq!(f.server.fetches(), 2, "the refresh was attempted");
    // The server goes away entirely: still fine.
    drop(f.server);
    f.clock.advance(Duration::from_secs(601));
    let c = with(claims(), "exp", json!(T0 + 1800));
    f.stack.allowed(bearer(&rs256("rsa-1", &c))).await;
}

#[tokio::test]
async fn no_keys_ever_fetched_is_503_unavailable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let jwks = JwksCache::from_url(&format!("http://127.0.0.1:{port}/jwks.json"))
        .unwrap()
        .clock(clock());
    let v = JwtVerifier::builder(jwks)
        .issuers([ISS])
        .audiences([AUD])
        .clock(clock())
        .build()
        .unwrap();
    let s = Stack::of(v);
    s.denied(
        bearer(&rs256("rsa-1", &claims())),
        RejectionKind::VerifyUnavailable,
    )
    .await;
}

#[tokio::test]
async fn keys_named_in_the_token_are_never_fetched() {
    let f = fixture();
    let attacker = JwksServer::start(br#"{"keys":[]}"#.to_vec());
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    header.jku = Some(attacker.url.clone());
    header.x5u = Some(attacker.url.clone());
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&data("rsa-private.pem")).unwrap();
    // Signed by the real key: the headers are simply ignored.
    let t = jsonwebtoken::encode(&header, &claims(), &key).unwrap();
    f.stack.allowed(bearer(&t)).await;
    // An embedded `jwk` with an attacker key and an unknown kid is not used either.
    let header = json!({"alg": "HS256", "kid": "evil", "jwk": {"kty": "oct", "k": b64u("s")}});
    f.stack
        .denied(
            bearer(&hs256_raw(&header, &claims(), b"s")),
            RejectionKind::BadToken,
        )
        .await;
    assert_eq!(attacker.fetches(), 0);
}

#[tokio::test]
async fn failing_claim_predicate_is_403_forbidden() {
    let f = fixture_with(|b| {
        b.require(ClaimPredicate::equals("email_verified", true))
            .require(ClaimPredicate::contains("scope", "orders:write"))
    });
    let ok = with(claims(), "scope", json!("orders:read orders:write"));
    f.stack.allowed(bearer(&rs256("rsa-1", &ok))).await;
    let no_scope = with(claims(), "scope", json!("orders:read"));
    f.stack
        .denied(bearer(&rs256("rsa-1", &no_scope)), RejectionKind::Forbidden)
        .await;
    let unverified = with(ok, "email_verified", json!("true"));
    f.stack
        .denied(
            bearer(&rs256("rsa-1", &unverified)),
            RejectionKind::Forbidden,
        )
        .await;
}

#[tokio::test]
async fn crit_header_is_refused() {
    let f = fixture();
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    header.crit = Some(vec!["exp".into()]);
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&data("rsa-private.pem")).unwrap();
    let t = jsonwebtoken::encode(&header, &claims(), &key).unwrap();
    f.stack.denied(bearer(&t), RejectionKind::BadToken).await;
}

#[test]
fn hmac_and_none_algorithms_cannot_be_configured() {
    let jwks = JwksCache::new(|| Ok(br#"{"keys":[]}"#.to_vec()));
    assert!(
        JwtVerifier::builder(jwks.clone())
            .algorithms([Algorithm::HS256])
            .build()
            .is_err()
    );
    assert!(JwtVerifier::builder(jwks).algorithms([]).build().is_err());
}

#[tokio::test]
async fn an_audience_array_without_an_accepted_audience_is_refused() {
    let f = fixture();
    for aud in [json!(["other-service"]), json!(["x", "y"]), json!([])] {
        f.stack
            .denied(
                bearer(&rs256("rsa-1", &with(claims(), "aud", aud.clone()))),
                RejectionKind::BadToken,
            )
            .await;
    }
}

#[test]
fn leeway_over_300_seconds_is_refused_at_build() {
    let jwks = || JwksCache::new(|| Ok(br#"{"keys":[]}"#.to_vec()));
    let build = |secs: u64| {
        JwtVerifier::builder(jwks())
            .issuers([ISS])
            .audiences([AUD])
            .leeway(Duration::from_secs(secs))
            .build()
    };
    assert!(build(300).is_ok());
    assert!(build(301).is_err());
}

/// A valid RS256 token of exactly `len` bytes: a padding claim sets the payload's length and the
/// header varies (`typ`, `cty`) to reach every length (base64url never gives 4k + 1 characters).
fn token_of_len(len: usize) -> String {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&data("rsa-private.pem")).unwrap();
    let b64_len = |n: usize| (4 * n).div_ceil(3);
    let sig_len = rs256("rsa-1", &claims()).rsplit('.').next().unwrap().len();
    for (typ, cty) in [
        (Some("JWT"), None),
        (None, None),
        (Some("JWT"), Some("a")),
        (Some("JWT"), Some("ab")),
        (Some("JWT"), Some("abc")),
    ] {
        let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
        header.kid = Some("rsa-1".into());
        header.typ = typ.map(String::from);
        header.cty = cty.map(String::from);
        let h = b64_len(json_len(&header));
        for pad in 0..len {
            let c = with(claims(), "pad", json!("p".repeat(pad)));
            let total = h + 1 + b64_len(json_len(&c)) + 1 + sig_len;
            if total == len {
                let t = jsonwebtoken::encode(&header, &c, &key).unwrap();
                assert_eq!(t.len(), len);
                return t;
            }
            if total > len {
                break;
            }
        }
    }
    panic!("no token of {len} bytes")
}

/// The length of a value's JSON, as `jsonwebtoken` serialises it.
fn json_len(v: &impl serde::Serialize) -> usize {
    serde_json::to_vec(v).unwrap().len()
}

#[tokio::test]
async fn the_token_size_limit_admits_exactly_8_kib() {
    assert_eq!(guard_core::verify::JwtVerifier::MAX_TOKEN_LEN, 8192);
    let f = fixture();
    f.stack.allowed(bearer(&token_of_len(8191))).await;
    f.stack.allowed(bearer(&token_of_len(8192))).await;
    let over = token_of_len(8193);
    f.stack.denied(bearer(&over), RejectionKind::BadToken).await;
}

#[test]
fn no_bearer_token_is_decided_at_once_and_a_token_waits_for_the_keys() {
    use guard_core::verify::Verifier;
    let jwks = JwksCache::new(|| Ok(br#"{"keys":[]}"#.to_vec()));
    let v = JwtVerifier::builder(jwks)
        .issuers([ISS])
        .audiences([AUD])
        .build()
        .unwrap();
    let none = http::Request::new(bytes::Bytes::new());
    let r = v.verify_now(&none).expect("decided at once").unwrap_err();
    assert_eq!(r.kind(), RejectionKind::MissingCredentials);
    assert!(v.verify_now(&bearer("a.b.c")).is_none());
}
