//! JWTs (RFC 8725's attacks) in two places: Google's push token on Pub/Sub and Eventarc
//! deliveries (GCP), and a bearer token under `[verify.jwt]` in every HTTP envelope of the three
//! clouds. Keys named by the token (`jwk`, `jku`, `x5u`) are never used or fetched: a local
//! server named in the header counts zero requests.

use guard_core::Policy;
use guard_tests::http::{Reply, StubServer, response};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use crate::envelopes::{Cloud, Envelope, PushTokens};
use crate::orders::{KID, PUSH_ACCOUNT, b64url, now, order, policy, policy_with, private_key_pem};
use crate::{HTTP, assert_refused, outside, request, through};

const PUSH_AUDIENCE: &str = "https://orders.example.com/pubsub";
const EVENTS_AUDIENCE: &str = "https://orders.example.com/events";
const API_AUDIENCE: &str = "https://orders.example.com/api";
const ISSUER: &str = "https://accounts.google.com";

/// An RSA key that is not in the JWKS: the attacker's.
fn attacker_pem() -> Vec<u8> {
    std::fs::read(crate::orders::root().join("../guard-core/tests/data/verify/rsa-private.pem"))
        .unwrap()
}

fn attacker_jwk() -> Value {
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::PublicKeyParts;
    let pem = String::from_utf8(attacker_pem()).unwrap();
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(&pem).unwrap();
    json!({"kty": "RSA", "kid": "attacker-1", "alg": "RS256",
           "n": b64url(&key.n().to_bytes_be()), "e": b64url(&key.e().to_bytes_be())})
}

/// The JWKS key's public half as PEM: what an HS/RS confusion uses as the HMAC secret.
fn public_pem() -> Vec<u8> {
    use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
    let pem = String::from_utf8(private_key_pem()).unwrap();
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(&pem).unwrap();
    key.to_public_key()
        .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
        .unwrap()
        .into_bytes()
}

/// Claims Google would mint for `aud`.
fn claims(aud: &str) -> Value {
    let now = now();
    json!({"iss": ISSUER, "aud": aud, "sub": "1234567890", "email": PUSH_ACCOUNT,
           "email_verified": true, "iat": now, "exp": now + 3600})
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    if value.is_null() {
        claims.as_object_mut().unwrap().remove(key);
    } else {
        claims[key] = value;
    }
    claims
}

/// `header.claims.signature`, signed as `alg` with `key` (no signature for `None`).
fn token(header: Value, claims: &Value, key: Option<(&EncodingKey, Algorithm)>) -> String {
    let message = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let signature = match key {
        Some((key, alg)) => jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap(),
        None => String::new(),
    };
    format!("{message}.{signature}")
}

fn real_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(&private_key_pem()).unwrap()
}

fn attacker_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(&attacker_pem()).unwrap()
}

/// Signed by the JWKS's own key with its `kid`.
fn genuine(claims: &Value) -> String {
    token(
        json!({"alg": "RS256", "typ": "JWT", "kid": KID}),
        claims,
        Some((&real_key(), Algorithm::RS256)),
    )
}

struct TokenCase {
    name: &'static str,
    /// The token for audience `aud`; `url` is a local server's address for `jku` / `x5u`.
    make: fn(aud: &str, url: &str) -> String,
    /// The verdict on Pub/Sub push (`None`: the case is for bearer tokens only). The push
    /// identity (`email`, `email_verified`) is part of what the token must prove, so a token of
    /// another identity is 401 like a bad one, not 403.
    push: Option<(u16, &'static str)>,
    /// The verdict as a bearer token in an HTTP request (`None`: push only).
    bearer: Option<(u16, &'static str)>,
}

const BAD_TOKEN: Option<(u16, &str)> = Some((401, "guard.verify.bad_token"));

const CASES: &[TokenCase] = &[
    TokenCase {
        name: "alg_none_with_an_empty_signature_is_refused",
        make: |aud, _| token(json!({"alg": "none", "kid": KID}), &claims(aud), None),
        push: BAD_TOKEN,
        bearer: BAD_TOKEN,
    },
    TokenCase {
        name: "alg_none_spelt_in_capitals_is_refused",
        make: |aud, _| token(json!({"alg": "NONE", "kid": KID}), &claims(aud), None),
        push: BAD_TOKEN,
        bearer: BAD_TOKEN,
    },
    TokenCase {
        name: "hs256_keyed_with_the_rsa_public_key_is_refused_hs_rs_confusion",
        make: |aud, _| {
            let key = EncodingKey::from_secret(&public_pem());
            token(
                json!({"alg": "HS256", "kid": KID}),
                &claims(aud),
                Some((&key, Algorithm::HS256)),
            )
        },
        push: BAD_TOKEN,
        bearer: BAD_TOKEN,
    },
    TokenCase {
        name: "an_embedded_jwk_with_the_attackers_key_is_not_trusted",
        make: |aud, _| {
            token(
                json!({"alg": "RS256", "kid": "attacker-1", "jwk": attacker_jwk()}),
                &claims(aud),
                Some((&attacker_key(), Algorithm::RS256)),
            )
        },
        push: BAD_TOKEN,
        bearer: BAD_TOKEN,
    },
    TokenCase {
        name: "an_embedded_jwk_under_the_real_kid_does_not_replace_the_jwks_key",
        make: |aud, _| {
            let mut jwk = attacker_jwk();
            jwk["kid"] = json!(KID);
            token(
                json!({"alg": "RS256", "kid": KID, "jwk": jwk}),
                &claims(aud),
                Some((&attacker_key(), Algorithm::RS256)),
            )
        },
        push: BAD_TOKEN,
        bearer: BAD_TOKEN,
    },
    TokenCase {
        name: "a_jku_header_naming_a_local_server_is_never_fetched",
        make: |aud, url| {
            token(
                json!({"alg": "RS256", "kid": "attacker-1", "jku": url}),
                &claims(aud),
                Some((&attacker_key(), Algorithm::RS256)),
            )
        },
        push: BAD_TOKEN,
        bearer: BAD_TOKEN,
    },
    TokenCase {
        name: "an_x5u_header_naming_a_local_server_is_never_fetched",
        make: |aud, url| {
            token(
                json!({"alg": "RS256", "kid": "attacker-1", "x5u": url}),
                &claims(aud),
                Some((&attacker_key(), Algorithm::RS256)),
            )
        },
        push: BAD_TOKEN,
        bearer: BAD_TOKEN,
    },
    TokenCase {
        name: "a_kid_with_path_traversal_to_dev_null_and_an_empty_hmac_key_is_refused",
        make: |aud, _| {
            let key = EncodingKey::from_secret(b"");
            token(
                json!({"alg": "HS256", "kid": "../../../../../../../dev/null"}),
                &claims(aud),
                Some((&key, Algorithm::HS256)),
            )
        },
        push: BAD_TOKEN,
        bearer: BAD_TOKEN,
    },
    TokenCase {
        name: "a_kid_with_sql_injection_is_refused",
        make: |aud, _| {
            token(
                json!({"alg": "RS256", "kid": "x' UNION SELECT 'conformance-1' --"}),
                &claims(aud),
                Some((&attacker_key(), Algorithm::RS256)),
            )
        },
        push: BAD_TOKEN,
        bearer: BAD_TOKEN,
    },
    TokenCase {
        name: "the_real_kid_signed_by_another_key_is_a_forgery",
        make: |aud, _| {
            token(
                json!({"alg": "RS256", "kid": KID}),
                &claims(aud),
                Some((&attacker_key(), Algorithm::RS256)),
            )
        },
        push: BAD_TOKEN,
        bearer: BAD_TOKEN,
    },
    TokenCase {
        name: "a_genuine_token_without_aud_is_refused",
        make: |aud, _| genuine(&with(claims(aud), "aud", Value::Null)),
        push: BAD_TOKEN,
        bearer: BAD_TOKEN,
    },
    TokenCase {
        name: "a_genuine_token_for_another_audience_is_refused",
        make: |_, _| genuine(&claims("https://another-service.example.com")),
        push: BAD_TOKEN,
        bearer: BAD_TOKEN,
    },
    TokenCase {
        name: "a_genuine_token_with_exp_as_a_string_is_refused",
        make: |aud, _| genuine(&with(claims(aud), "exp", json!("9999999999"))),
        push: BAD_TOKEN,
        bearer: BAD_TOKEN,
    },
    TokenCase {
        name: "a_genuine_token_expired_an_hour_ago_is_refused",
        make: |aud, _| genuine(&with(claims(aud), "exp", json!(now() - 3600))),
        push: BAD_TOKEN,
        bearer: BAD_TOKEN,
    },
    TokenCase {
        name: "a_genuine_token_not_valid_before_an_hour_from_now_is_refused",
        make: |aud, _| genuine(&with(claims(aud), "nbf", json!(now() + 3600))),
        push: BAD_TOKEN,
        bearer: BAD_TOKEN,
    },
    TokenCase {
        name: "a_genuine_token_from_another_issuer_is_refused",
        make: |aud, _| genuine(&with(claims(aud), "iss", json!("https://evil.example"))),
        push: BAD_TOKEN,
        bearer: BAD_TOKEN,
    },
    TokenCase {
        name: "a_genuine_token_with_a_critical_header_extension_is_refused",
        make: |aud, _| {
            token(
                json!({"alg": "RS256", "kid": KID, "crit": ["exp"]}),
                &claims(aud),
                Some((&real_key(), Algorithm::RS256)),
            )
        },
        push: BAD_TOKEN,
        bearer: BAD_TOKEN,
    },
    TokenCase {
        name: "a_push_token_minted_for_another_service_account_is_not_the_push_identity",
        make: |aud, _| {
            genuine(&with(
                claims(aud),
                "email",
                json!("intruder@other-project.iam.gserviceaccount.com"),
            ))
        },
        push: BAD_TOKEN,
        bearer: None,
    },
    TokenCase {
        name: "a_push_token_with_an_unverified_email_is_not_the_push_identity",
        make: |aud, _| genuine(&with(claims(aud), "email_verified", json!(false))),
        push: BAD_TOKEN,
        bearer: None,
    },
    TokenCase {
        name: "a_genuine_token_over_the_8_kib_cap_is_refused_unparsed",
        // About 27 KiB: over the token cap, under the 64 KiB of all headers.
        make: |aud, _| {
            let padded = with(claims(aud), "pad", json!("p".repeat(20_000)));
            genuine(&padded)
        },
        push: BAD_TOKEN,
        bearer: BAD_TOKEN,
    },
];

/// The orders policy with a `[verify.jwt]` bearer check (the loopback JWKS, Google's issuer).
fn bearer_policy(cloud: Cloud) -> Policy {
    let jwt = format!(
        "\n[verify.jwt]\njwks_url = \"{}\"\nissuers = [\"{ISSUER}\"]\naudiences = [\"{API_AUDIENCE}\"]\n",
        crate::orders::jwks_url()
    );
    policy_with(cloud, |t| format!("{t}{jwt}"), &[])
}

fn signature_of(token: &str) -> String {
    token.rsplit('.').next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tokens_are_refused_and_keys_they_name_are_never_fetched() {
    let attacker =
        StubServer::start(|_| Reply::Respond(response("200 OK", &[], br#"{"keys":[]}"#))).await;
    let url = attacker.url("/keys.json");
    for case in CASES {
        if let Some((status, code)) = case.push {
            let tokens = PushTokens {
                pubsub: (case.make)(PUSH_AUDIENCE, &url),
                events: (case.make)(EVENTS_AUDIENCE, &url),
            };
            let secrets = [
                tokens.pubsub.clone(),
                tokens.events.clone(),
                signature_of(&tokens.pubsub),
            ];
            let seen = through(
                &[Envelope::GcpPubSub, Envelope::GcpEvents],
                &request(order()),
                Some(&tokens),
                policy,
            )
            .await;
            assert_refused(case.name, &seen, status, code, &secrets);
        }
        if let Some((status, code)) = case.bearer {
            let token = (case.make)(API_AUDIENCE, &url);
            let mut req = outside(order());
            req.headers
                .push(("Authorization".into(), format!("Bearer {token}")));
            let secrets = [token.clone(), signature_of(&token)];
            let seen = through(&HTTP, &req, None, bearer_policy).await;
            assert_refused(case.name, &seen, status, code, &secrets);
        }
    }
    assert_eq!(attacker.hits(), 0, "a key named by a token was fetched");
}

/// The control: a genuine bearer token from outside is admitted in every HTTP envelope, so the
/// refusals above are the token's doing, not the policy's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_genuine_bearer_token_is_admitted_in_every_http_envelope() {
    let token = genuine(&claims(API_AUDIENCE));
    let mut req = outside(order());
    req.headers
        .push(("Authorization".into(), format!("Bearer {token}")));
    for seen in through(&HTTP, &req, None, bearer_policy).await {
        assert_eq!(seen.calls, 1, "{}: {:?}", seen.place, seen.events);
        assert!(
            crate::hygiene_problems(&seen, std::slice::from_ref(&token)).is_empty(),
            "{}",
            seen.place
        );
    }
}
