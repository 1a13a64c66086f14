//! The JWKS fetcher over real HTTP: no redirect followed, the document cap, the timeout, and a
//! stalled endpoint answered with 503 `guard.verify.unavailable` within the budget.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use guard_core::Unavailable;
use guard_core::verify::{JwksCache, JwtVerifier, VerifyLayer};
use guard_core::{GuardRequest, GuardResponse};
use guard_http::HttpClient;
use guard_tests::http::{Reply, StubServer, response};
use guard_tests::server::within;
use tower::{Layer, ServiceExt, service_fn};

/// A cache of the JWKS at `url` over a client with `timeout`: its `refresh` is one fetch.
fn fetcher(url: &str, timeout: Duration) -> JwksCache {
    let client = HttpClient::builder().timeout(timeout).build().unwrap();
    JwksCache::from_url_with_client(url, client).unwrap()
}

#[tokio::test]
async fn a_redirecting_jwks_endpoint_is_not_followed() {
    let attacker =
        StubServer::start(|_| Reply::Respond(response("200 OK", &[], br#"{"keys":[]}"#))).await;
    let location = attacker.url("/jwks.json");
    let endpoint = StubServer::start(move |_| {
        Reply::Respond(response("302 Found", &[("location", &location)], b""))
    })
    .await;
    let err = fetcher(&endpoint.url("/jwks.json"), Duration::from_secs(2))
        .refresh()
        .await
        .unwrap_err();
    assert_eq!(err, Unavailable::new("status 302"));
    assert_eq!(endpoint.hits(), 1);
    assert_eq!(attacker.hits(), 0, "the redirect target was never fetched");
}

#[tokio::test]
async fn a_jwks_document_over_the_cap_is_refused_even_by_a_roomier_client() {
    let big = format!(
        r#"{{"keys":[],"pad":"{}"}}"#,
        "x".repeat(JwksCache::MAX_DOCUMENT_BYTES)
    );
    let endpoint =
        StubServer::start(move |_| Reply::Respond(response("200 OK", &[], big.as_bytes()))).await;
    let roomy = HttpClient::builder()
        .max_response_bytes(4 * JwksCache::MAX_DOCUMENT_BYTES)
        .build()
        .unwrap();
    for f in [
        JwksCache::from_url(&endpoint.url("/jwks.json")).unwrap(),
        JwksCache::from_url_with_client(&endpoint.url("/jwks.json"), roomy).unwrap(),
    ] {
        assert_eq!(
            f.refresh().await.unwrap_err(),
            Unavailable::new("document too large")
        );
    }
}

#[tokio::test]
async fn plain_http_to_a_public_host_is_refused_at_build() {
    for url in ["http://idp.example/jwks.json", "http://10.1.2.3/jwks.json"] {
        assert!(JwksCache::from_url(url).is_err(), "{url}");
    }
}

/// A token whose header names a key; its signature is never reached when no key can be had.
fn unverifiable_token() -> String {
    let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    format!(
        "{}.{}.{}",
        b64(r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#),
        b64(r#"{"iss":"https://issuer.example","aud":"orders","sub":"u","exp":4102444800}"#),
        b64("sig")
    )
}

#[tokio::test]
async fn a_stalled_jwks_endpoint_ends_within_the_budget_as_503_unavailable() {
    let stalled = StubServer::stalling().await;
    let budget = Duration::from_millis(400);
    let jwks = fetcher(&stalled.url("/jwks.json"), budget);
    let verifier = JwtVerifier::builder(jwks.clone())
        .issuers(["https://issuer.example"])
        .audiences(["orders"])
        .build()
        .unwrap();
    let handler = service_fn(|_req: GuardRequest| async {
        Ok::<_, Infallible>(GuardResponse::new(Bytes::from_static(b"reached")))
    });
    let svc = VerifyLayer::new(verifier).layer(handler);
    let req = http::Request::builder()
        .header("authorization", format!("Bearer {}", unverifiable_token()))
        .body(Bytes::new())
        .unwrap();
    let started = Instant::now();
    let resp = within(budget * 10, svc.oneshot(req)).await.unwrap();
    let took = started.elapsed();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(body["code"], "guard.verify.unavailable");
    assert!(took >= budget && took < budget * 3, "took {took:?}");
    assert_eq!(stalled.hits(), 1);
    assert_eq!(jwks.fetches(), 1);
}
