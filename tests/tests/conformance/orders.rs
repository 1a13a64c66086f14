//! The orders function as each cloud's example builds it: the shared policy (with GCP's push
//! identity and its JWKS on loopback), the secrets, and a fresh stack around the orders handler
//! that counts handler calls and captures every security event. Shared by the conformance suite
//! and the adversarial catalogue.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use guard_core::audit::{AuditLayer, SecurityEvent};
use guard_core::{GuardRequest, GuardResponse, Policy};
use guard_secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
use serde_json::json;
use tower::Layer;
use tower::util::BoxCloneService;

use crate::envelopes::{Cloud, PushTokens, Stack};

// The examples' own handler (its next-hop forwarding is not used here).
#[allow(dead_code)]
#[path = "../../../examples/aws-orders/src/handler.rs"]
mod handler;

/// The `orders-webhook-hmac` secret.
pub(crate) const WEBHOOK_KEY: &str = "conformance-webhook-key";
/// The `orders-api-key` secret.
pub(crate) const API_KEY: &str = "conformance-api-key";
/// The push subscription's service account.
pub(crate) const PUSH_ACCOUNT: &str = "orders-push@shop-prod.iam.gserviceaccount.com";
/// The `kid` of the push signing key in the loopback JWKS.
pub(crate) const KID: &str = "conformance-1";

pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The example order, as sent.
pub(crate) fn order() -> Vec<u8> {
    let text = std::fs::read_to_string(root().join("../examples/orders/order.json")).unwrap();
    text.trim_end().as_bytes().to_vec()
}

/// The push signing key (PKCS#8 PEM) whose public half the loopback JWKS serves.
pub(crate) fn private_key_pem() -> Vec<u8> {
    std::fs::read(root().join("../examples/gcp-orders/tests/data/push-signing-key.pem")).unwrap()
}

pub(crate) fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A JWKS on a loopback port (the JWKS URL of `[verify.gcp_push]`), answering every request.
pub(crate) fn jwks_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        use rsa::pkcs8::DecodePrivateKey;
        use rsa::traits::PublicKeyParts;
        let pem = String::from_utf8(private_key_pem()).unwrap();
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(&pem).unwrap();
        let jwks = json!({"keys": [{
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": KID,
            "n": b64url(&key.n().to_bytes_be()),
            "e": b64url(&key.e().to_bytes_be()),
        }]})
        .to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{jwks}",
                    jwks.len()
                );
            }
        });
        format!("http://127.0.0.1:{port}/certs")
    })
}

/// A push token as Google mints it, for `aud`, signed with the JWKS's key.
pub(crate) fn push_token(aud: &str) -> String {
    let now = now();
    let claims = json!({
        "iss": "https://accounts.google.com", "aud": aud, "sub": "1234567890",
        "email": PUSH_ACCOUNT, "email_verified": true, "iat": now, "exp": now + 3600,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(KID.into());
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&private_key_pem()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

pub(crate) fn push_tokens() -> &'static PushTokens {
    static TOKENS: OnceLock<PushTokens> = OnceLock::new();
    TOKENS.get_or_init(|| PushTokens {
        pubsub: push_token("https://orders.example.com/pubsub"),
        events: push_token("https://orders.example.com/events"),
    })
}

/// The orders policy as each cloud's example loads it: the shared guard.toml, plus gcp.toml's
/// push identity on Google Cloud (its JWKS on loopback).
pub(crate) fn policy(cloud: Cloud) -> Policy {
    policy_with(cloud, |toml| toml.to_owned(), &[])
}

/// [`policy`] with its guard.toml text changed by `edit` and `files` (name, content) written
/// next to it (a schema the edited text names).
pub(crate) fn policy_with(
    cloud: Cloud,
    edit: impl Fn(&str) -> String,
    files: &[(&str, &str)],
) -> Policy {
    let orders = root().join("../examples/orders");
    let mut text = std::fs::read_to_string(orders.join("guard.toml")).unwrap();
    if cloud == Cloud::Gcp {
        // gcp-orders appends gcp.toml to guard.toml.
        text += &std::fs::read_to_string(root().join("../examples/gcp-orders/gcp.toml")).unwrap();
    }
    // The combined file sits next to the schema; one directory per call (tests run in parallel).
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "orders-{}-{}",
        std::process::id(),
        CALLS.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("guard.toml"), edit(&text)).unwrap();
    std::fs::copy(
        orders.join("order.schema.json"),
        dir.join("order.schema.json"),
    )
    .unwrap();
    for (name, content) in files {
        std::fs::write(dir.join(name), content).unwrap();
    }
    let loaded = Policy::load(dir.join("guard.toml"));
    // The schema is compiled at load: the files are no longer needed.
    let _ = std::fs::remove_dir_all(&dir);
    let mut policy = loaded.unwrap();
    policy.set_gcp_push_jwks_url(jwks_url());
    policy
}

/// A fresh stack: handler calls counted, security events captured.
pub(crate) struct Fixture {
    pub(crate) stack: Stack,
    pub(crate) calls: Arc<AtomicUsize>,
    pub(crate) events: Arc<Mutex<Vec<SecurityEvent>>>,
    /// The stack's audit layer (a server in front of the stack reports its own refusals to it;
    /// the adversarial catalogue serves the Azure and GCP services that way).
    #[allow(dead_code)]
    pub(crate) audit: AuditLayer,
}

/// The secret store of the examples: `"all"`, or `"no-api-key"` (the handler's secret missing).
pub(crate) fn secret_store(secrets: &str) -> SecretStore {
    let with_api_key = match secrets {
        "all" => true,
        "no-api-key" => false,
        other => panic!("secrets = {other:?}"),
    };
    let source = move |name: &str, _v: SecretVersion| -> Result<SecretValue, SecretsError> {
        match name {
            "orders-webhook-hmac" => Ok(SecretValue::from(WEBHOOK_KEY)),
            "orders-api-key" if with_api_key => Ok(SecretValue::from(API_KEY)),
            _ => Err(SecretsError::not_found(name)),
        }
    };
    SecretStore::new(source)
}

/// The orders stack `policy` describes, with `deps` (the secret store and any message verifier).
pub(crate) fn fixture_with(policy: &Policy, deps: guard_core::GuardDeps) -> Fixture {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let audit = AuditLayer::new(move |e: SecurityEvent| sink.lock().unwrap().push(e));
    let guard = guard_core::GuardBuilder::from_policy_with(policy, deps)
        .unwrap()
        .audit(audit.clone())
        .build();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let handler = tower::service_fn(move |req: GuardRequest| {
        counter.fetch_add(1, Ordering::SeqCst);
        handler::orders(req)
    });
    let stack: BoxCloneService<GuardRequest, GuardResponse, std::convert::Infallible> =
        BoxCloneService::new(guard.layer(handler));
    Fixture {
        stack,
        calls,
        events,
        audit,
    }
}

pub(crate) fn fixture(policy: &Policy, secrets: &str) -> Fixture {
    fixture_with(
        policy,
        guard_core::GuardDeps::with_secrets(secret_store(secrets)),
    )
}
