//! OIDC discovery against local providers: one configuration fetch and one JWKS fetch for a
//! cold burst, refused configurations reported at start and answered 503, every bad token 401
//! without a request to anything but the configured issuer's two URLs, several issuers with
//! their own audiences.

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use guard_core::{GuardBuilder, GuardDeps, Policy};
use serde_json::json;
use tower::{Layer, ServiceExt, service_fn};

use crate::support::{AUD, Events, Idp, bearer, claims, code, handler, now, rs256};

const CONFIGURATION: &str = "/.well-known/openid-configuration";

fn policy(tables: &[(&str, &str)]) -> Policy {
    let mut toml = String::new();
    for (issuer, aud) in tables {
        toml.push_str(&format!(
            "[[verify.jwt]]\nissuer = \"{issuer}\"\naudiences = [\"{aud}\"]\n"
        ));
    }
    Policy::from_toml_str(&toml).unwrap()
}

fn guard(policy: &Policy, events: &Events) -> guard_core::Guard {
    GuardBuilder::from_policy_with(policy, GuardDeps::default())
        .unwrap()
        .audit(events.audit())
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_cold_requests_make_one_configuration_fetch_and_one_jwks_fetch() {
    let idp = Idp::start().await;
    let events = Events::default();
    let svc = guard(&policy(&[(&idp.issuer, AUD)]), &events).layer(service_fn(handler));
    let token = rs256(&claims(&idp.issuer, AUD));
    let calls: Vec<_> = (0..100)
        .map(|_| tokio::spawn(svc.clone().oneshot(bearer(&token))))
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().status(), 200);
    }
    assert_eq!(idp.hits(CONFIGURATION), 1);
    assert_eq!(idp.hits("/jwks"), 1);
    assert_eq!(idp.total(), 2);
    assert_eq!(events.take().len(), 100, "one security event per decision");
}

/// Captures what is logged on the current thread.
fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(buf.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    (buf, tracing::subscriber::set_default(subscriber))
}

/// A provider whose configuration Guard must refuse: logged at start, tokens answered 503 with
/// one security event each, and the keys it names never fetched.
async fn refused_at_start(configuration: fn(&str) -> serde_json::Value, why: &str) {
    let idp = Idp::with(configuration).await;
    let events = Events::default();
    let (logs, _guard) = capture_logs();
    let g = guard(&policy(&[(&idp.issuer, AUD)]), &events);
    assert!(g.prefetch().await.is_ok(), "no secret to prefetch");
    let logged = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(logged.contains("ERROR"), "{logged}");
    assert!(logged.contains("OIDC discovery failed"), "{logged}");
    assert!(logged.contains(why), "{logged}");
    assert!(
        logged.contains(&idp.issuer),
        "the log names the issuer: {logged}"
    );
    let svc = g.layer(service_fn(handler));
    let resp = svc
        .oneshot(bearer(&rs256(&claims(&idp.issuer, AUD))))
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(code(&resp), "guard.verify.unavailable");
    let e = events.take();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].code, "guard.verify.unavailable");
    assert_eq!(
        idp.hits("/jwks"),
        0,
        "keys named by a refused configuration are never fetched"
    );
    assert_eq!(idp.total(), idp.hits(CONFIGURATION));
}

#[tokio::test]
async fn a_configuration_naming_another_issuer_is_refused_at_start() {
    refused_at_start(
        |issuer| json!({"issuer": format!("{issuer}/other"), "jwks_uri": format!("{issuer}/jwks")}),
        "names another issuer",
    )
    .await;
}

#[tokio::test]
async fn a_configuration_whose_jwks_uri_is_not_https_is_refused_at_start() {
    refused_at_start(
        |issuer| json!({"issuer": issuer, "jwks_uri": "http://idp.example/jwks"}),
        "jwks_uri is not an https URL",
    )
    .await;
}

#[test]
fn an_issuer_that_is_not_https_is_refused_when_the_policy_loads() {
    for issuer in [
        "http://idp.example",
        "https://idp.example/?tenant=1",
        "idp.example",
    ] {
        let err = Policy::from_toml_str(&format!(
            "[verify.jwt]\nissuer = \"{issuer}\"\naudiences = [\"orders\"]\n"
        ))
        .unwrap_err();
        assert!(
            err.problems().iter().any(|p| p.path == "verify.jwt.issuer"),
            "{issuer}: {err}"
        );
    }
}

#[tokio::test]
async fn untrusted_expired_wrong_audience_and_unsigned_tokens_are_401_without_other_requests() {
    let idp = Idp::start().await;
    let untrusted = Idp::start().await;
    let events = Events::default();
    let svc = guard(&policy(&[(&idp.issuer, AUD)]), &events).layer(service_fn(handler));
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    // Same key, same claims, another issuer, and a header pointing at that issuer's keys.
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    header.jku = Some(format!("{}/jwks", untrusted.issuer));
    let key =
        jsonwebtoken::EncodingKey::from_rsa_pem(&crate::support::data("rsa-private.pem")).unwrap();
    let from_untrusted =
        jsonwebtoken::encode(&header, &claims(&untrusted.issuer, AUD), &key).unwrap();
    let mut expired = claims(&idp.issuer, AUD);
    expired["exp"] = json!(now() - 3600);
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims(&idp.issuer, AUD))
    );
    let unsigned_named = format!("{unsigned}c2ln");
    for token in [
        from_untrusted,
        rs256(&expired),
        rs256(&claims(&idp.issuer, "another-api")),
        unsigned,
        unsigned_named,
    ] {
        let resp = svc.clone().oneshot(bearer(&token)).await.unwrap();
        assert_eq!(resp.status(), 401, "{token}");
        assert_eq!(code(&resp), "guard.verify.bad_token");
    }
    assert_eq!(
        untrusted.total(),
        0,
        "nothing is fetched from an untrusted issuer"
    );
    assert!(idp.hits(CONFIGURATION) <= 1 && idp.hits("/jwks") <= 1);
    assert_eq!(idp.total(), idp.hits(CONFIGURATION) + idp.hits("/jwks"));
    let ok = svc
        .oneshot(bearer(&rs256(&claims(&idp.issuer, AUD))))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!((idp.hits(CONFIGURATION), idp.hits("/jwks")), (1, 1));
    let codes: Vec<_> = events.take().into_iter().map(|e| e.code).collect();
    assert_eq!(codes.len(), 6, "one security event per decision");
    assert!(codes[..5].iter().all(|c| c == "guard.verify.bad_token"));
}

#[tokio::test]
async fn several_issuers_are_trusted_each_with_its_own_audiences() {
    let a = Idp::start().await;
    let b = Idp::start().await;
    let events = Events::default();
    let svc = guard(
        &policy(&[(&a.issuer, "a-api"), (&b.issuer, "b-api")]),
        &events,
    )
    .layer(service_fn(handler));
    let status = |token: String| {
        let svc = svc.clone();
        async move { svc.oneshot(bearer(&token)).await.unwrap().status() }
    };
    assert_eq!(status(rs256(&claims(&a.issuer, "a-api"))).await, 200);
    assert_eq!(b.total(), 0, "b's keys are fetched only for b's tokens");
    assert_eq!(status(rs256(&claims(&b.issuer, "a-api"))).await, 401);
    assert_eq!(status(rs256(&claims(&b.issuer, "b-api"))).await, 200);
    assert_eq!(status(rs256(&claims(&a.issuer, "b-api"))).await, 401);
    for idp in [&a, &b] {
        assert_eq!((idp.hits(CONFIGURATION), idp.hits("/jwks")), (1, 1));
    }
}

#[test]
fn one_issuer_in_two_tables_is_a_policy_problem() {
    let err = Policy::from_toml_str(
        "[[verify.jwt]]\nissuer = \"https://idp.example\"\naudiences = [\"a\"]\n\
         [[verify.jwt]]\nissuer = \"https://idp.example\"\naudiences = [\"b\"]\n",
    )
    .unwrap_err();
    assert!(
        err.problems()
            .iter()
            .any(|p| p.path == "verify.jwt[1].issuer"),
        "{err}"
    );
}

#[test]
fn the_readme_identity_example_loads() {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
    )
    .unwrap();
    let section = readme
        .split("### One identity provider, every cloud")
        .nth(1)
        .unwrap();
    let toml = section
        .split("```toml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .unwrap();
    Policy::from_toml_str(toml).unwrap_or_else(|e| panic!("{e}"));
    // The policy loaded (it refuses unknown keys), so its tables are the issuers and rules.
    let table: toml::Table = toml::from_str(toml).unwrap();
    let len = |section: &str, key: &str| table[section][key].as_array().map(Vec::len);
    assert_eq!(len("verify", "jwt"), Some(2));
    assert_eq!(len("authz", "rules"), Some(3));
}
