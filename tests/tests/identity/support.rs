//! Shared helpers: an OpenID Provider stub on a loopback port that counts requests by path, token
//! minting with the test RSA key, and a stack that records its security events.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use guard_core::audit::{AuditLayer, SecurityEvent};
use guard_core::{GuardRequest, GuardResponse};
use guard_tests::http::{Reply, StubServer, response};
use serde_json::{Value, json};

pub(crate) const AUD: &str = "orders-api";

pub(crate) fn data(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../guard-core/tests/data/verify")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Valid claims for `iss` and `aud`, expiring in ten minutes.
pub(crate) fn claims(iss: &str, aud: &str) -> Value {
    json!({"iss": iss, "aud": aud, "sub": "client-1", "iat": now(), "exp": now() + 600,
           "scope": "orders:write"})
}

/// Signs `claims` RS256 with the test key (`kid` `rsa-1`, published in `jwks.json`).
pub(crate) fn rs256(claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&data("rsa-private.pem")).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// A request with a bearer token.
pub(crate) fn bearer(token: &str) -> GuardRequest {
    http::Request::post("/orders")
        .header("authorization", format!("Bearer {token}"))
        .body(Bytes::new())
        .unwrap()
}

/// An OpenID Provider stub: its configuration (from `configuration(issuer)`) at
/// `/.well-known/openid-configuration`, the test JWKS at `/jwks`, 404 elsewhere; every request
/// counted by path.
pub(crate) struct Idp {
    pub(crate) server: StubServer,
    pub(crate) issuer: String,
    hits: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl Idp {
    /// A provider whose configuration names itself and its own `/jwks`.
    pub(crate) async fn start() -> Self {
        Self::with(|issuer| json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")})).await
    }

    pub(crate) async fn with(
        configuration: impl Fn(&str) -> Value + Send + Sync + 'static,
    ) -> Self {
        let hits = Arc::new(Mutex::new(BTreeMap::<String, usize>::new()));
        let me: Arc<OnceLock<String>> = Arc::default();
        let (h, issuer) = (hits.clone(), me.clone());
        let jwks = data("jwks.json");
        let server = StubServer::start(move |seen| {
            let path = seen
                .head
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string();
            *h.lock().unwrap().entry(path.clone()).or_default() += 1;
            let json = [("content-type", "application/json")];
            Reply::Respond(match path.as_str() {
                "/.well-known/openid-configuration" => {
                    let doc = configuration(issuer.get().unwrap());
                    response("200 OK", &json, doc.to_string().as_bytes())
                }
                "/jwks" => response("200 OK", &json, &jwks),
                _ => response("404 Not Found", &[], b""),
            })
        })
        .await;
        let issuer = server.url("");
        me.set(issuer.clone()).unwrap();
        Idp {
            server,
            issuer,
            hits,
        }
    }

    /// Requests received at `path`.
    pub(crate) fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Requests received in all.
    pub(crate) fn total(&self) -> usize {
        self.server.hits()
    }
}

/// Security events a stack recorded.
#[derive(Clone, Default)]
pub(crate) struct Events(pub(crate) Arc<Mutex<Vec<SecurityEvent>>>);

impl Events {
    pub(crate) fn audit(&self) -> AuditLayer {
        let events = self.0.clone();
        AuditLayer::new(move |e: SecurityEvent| events.lock().unwrap().push(e))
    }

    pub(crate) fn take(&self) -> Vec<SecurityEvent> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// A handler answering 200 `handled`.
pub(crate) async fn handler(_req: GuardRequest) -> Result<GuardResponse, Infallible> {
    Ok(GuardResponse::new(Bytes::from_static(b"handled")))
}

/// The `code` of a problem+json body (`guard.allow` for a handler's answer).
pub(crate) fn code(resp: &GuardResponse) -> String {
    serde_json::from_slice::<Value>(resp.body())
        .ok()
        .and_then(|v| v["code"].as_str().map(String::from))
        .unwrap_or_else(|| "guard.allow".into())
}
