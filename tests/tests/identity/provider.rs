//! A real OpenID Provider: `oidc-provider` (installed by `scripts/setup-tools.sh` under
//! `scripts/tools/oidc`, pinned by its lockfile), started by the test on a free loopback port
//! over https with a certificate made here (rcgen), stopped by its PID. Guard finds its keys by
//! discovery, follows a key rotation, refuses a second, untrusted provider, and verifies ID tokens
//! (authorization code flow) for their own audience only.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use guard_core::{Guard, GuardBuilder, GuardDeps, Policy};
use guard_http::HttpClient;
use guard_secrets::SecretStore;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::Value;
use tower::{Layer, ServiceExt, service_fn};

use crate::support::{Events, code, handler};

/// The audience of the provider's access tokens.
pub(crate) const AUDIENCE: &str = "https://orders.example";
const CONFIGURATION: &str = "/.well-known/openid-configuration";

/// A CA and a certificate for `127.0.0.1` signed by it, written under a fresh directory.
struct Certificates {
    dir: PathBuf,
    ca_der: Vec<u8>,
}

impl Certificates {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("guard-oidc-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "guard oidc test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &Issuer::from_params(&ca, &ca_key))
            .unwrap();
        std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        Certificates {
            dir,
            ca_der: ca_cert.der().to_vec(),
        }
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running `oidc-provider`, stopped (by PID) when dropped.
pub(crate) struct OpenIdProvider {
    child: Child,
    pub(crate) issuer: String,
    /// A client trusting the test CA (for Guard and for the test's own token requests).
    pub(crate) client: HttpClient,
    _certs: Certificates,
}

impl OpenIdProvider {
    pub(crate) fn start(name: &str) -> Self {
        let certs = Certificates::new(name);
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/tools/oidc");
        assert!(
            script.join("node_modules/oidc-provider").exists(),
            "oidc-provider is not installed: run scripts/setup-tools.sh"
        );
        let stderr = std::fs::File::create(certs.dir.join("stderr.log")).unwrap();
        let mut child = Command::new("node")
            .arg(script.join("provider.mjs"))
            .arg(certs.dir.join("cert.pem"))
            .arg(certs.dir.join("key.pem"))
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("node is needed for the identity tests (scripts/setup-tools.sh)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(issuer) = line.trim().strip_prefix("READY ").map(String::from) else {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(certs.dir.join("stderr.log")).unwrap_or_default();
            panic!("oidc-provider did not start: {line} {log}");
        };
        let client = HttpClient::builder()
            .root_certificates_der([certs.ca_der.clone()])
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        OpenIdProvider {
            child,
            issuer,
            client,
            _certs: certs,
        }
    }

    async fn send(&self, method: &str, path: &str, auth: Option<String>, body: &str) -> Value {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.issuer))
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let req = req.body(Bytes::from(body.to_string())).unwrap();
        let resp = self.client.send(req).await.unwrap();
        assert_eq!(
            resp.status(),
            200,
            "{path}: {}",
            String::from_utf8_lossy(resp.body())
        );
        serde_json::from_slice(resp.body()).unwrap()
    }

    /// A client-credentials access token (JWT) for `client` with `scope`.
    pub(crate) async fn token(&self, client: &str, scope: &str) -> String {
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("{client}:secret-{client}"));
        let body = format!("grant_type=client_credentials&scope={scope}");
        let v = self
            .send("POST", "/token", Some(format!("Basic {basic}")), &body)
            .await;
        v["access_token"].as_str().unwrap().to_string()
    }

    /// A new signing key; the old one stays published. Returns the new `kid`.
    pub(crate) async fn rotate(&self) -> String {
        let v = self.send("POST", "/_rotate", None, "").await;
        v["kid"].as_str().unwrap().to_string()
    }

    /// Requests the provider received, by path (control endpoints not counted).
    pub(crate) async fn hits(&self, path: &str) -> u64 {
        let v = self.send("GET", "/_stats", None, "").await;
        v[path].as_u64().unwrap_or(0)
    }

    /// All requests the provider received.
    pub(crate) async fn total(&self) -> u64 {
        let v = self.send("GET", "/_stats", None, "").await;
        v.as_object()
            .unwrap()
            .values()
            .filter_map(Value::as_u64)
            .sum()
    }

    /// An ID token for the client `web` (its audience), from the authorization code flow with
    /// the provider's development login as `login`.
    pub(crate) async fn id_token(&self, login: &str) -> String {
        let v = self
            .send("GET", &format!("/_id_token?login={login}"), None, "")
            .await;
        v["id_token"].as_str().unwrap().to_string()
    }

    /// A guard trusting this provider by its issuer alone, with `extra` policy lines.
    pub(crate) fn guard(&self, extra: &str, events: &Events) -> Guard {
        self.guard_for(AUDIENCE, extra, events)
    }

    /// As [`guard`](Self::guard), for tokens whose audience is `audience`.
    pub(crate) fn guard_for(&self, audience: &str, extra: &str, events: &Events) -> Guard {
        let policy = Policy::from_toml_str(&format!(
            "[verify.jwt]\nissuer = \"{}\"\naudiences = [\"{audience}\"]\njwks_cooldown_secs = 1\n{extra}",
            self.issuer
        ))
        .unwrap();
        let store = SecretStore::new(|n: &str, _| Err(guard_secrets::SecretsError::not_found(n)));
        let deps = GuardDeps::with_secrets(store).http_client(self.client.clone());
        GuardBuilder::from_policy_with(&policy, deps)
            .unwrap()
            .audit(events.audit())
            .build()
    }
}

impl Drop for OpenIdProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn post_orders(token: &str) -> guard_core::GuardRequest {
    http::Request::post("/orders")
        .header("authorization", format!("Bearer {token}"))
        .body(Bytes::new())
        .unwrap()
}

#[tokio::test]
async fn a_real_providers_tokens_are_verified_through_discovery_and_rotation_is_followed() {
    let idp = OpenIdProvider::start("rotation");
    let events = Events::default();
    let svc = idp
        .guard("jwks_ttl_secs = 4\n", &events)
        .layer(service_fn(handler));
    let old = idp.token("writer", "orders:write").await;
    let resp = svc.clone().oneshot(post_orders(&old)).await.unwrap();
    assert_eq!(resp.status(), 200, "{}", code(&resp));
    assert_eq!(
        (idp.hits(CONFIGURATION).await, idp.hits("/jwks").await),
        (1, 1)
    );

    let kid = idp.rotate().await;
    let new = idp.token("writer", "orders:write").await;
    let header = jsonwebtoken::decode_header(&new).unwrap();
    assert_eq!(
        header.kid.as_deref(),
        Some(kid.as_str()),
        "signed with the new key"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the 1 s JWKS cooldown
    for _ in 0..5 {
        let resp = svc.clone().oneshot(post_orders(&new)).await.unwrap();
        assert_eq!(resp.status(), 200, "{}", code(&resp));
    }
    assert_eq!(idp.hits("/jwks").await, 2, "the new kid is fetched once");
    assert_eq!(
        idp.hits(CONFIGURATION).await,
        1,
        "the configuration is not fetched again"
    );
    let resp = svc.clone().oneshot(post_orders(&old)).await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "the old key is still published: its tokens stay valid"
    );
    assert_eq!(idp.hits("/jwks").await, 2);

    // The old key is withdrawn: once the cached keys are older than the TTL they are fetched
    // again, and the old key's tokens are refused from then on.
    let retire = idp.send("POST", "/_retire", None, "").await;
    assert_eq!(retire["kid"], kid.as_str());
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let resp = svc.clone().oneshot(post_orders(&old)).await.unwrap();
    assert_eq!(
        (resp.status().as_u16(), code(&resp).as_str()),
        (401, "guard.verify.bad_token")
    );
    assert_eq!(idp.hits("/jwks").await, 3);
    let resp = svc.oneshot(post_orders(&new)).await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn an_untrusted_provider_with_the_same_claims_is_refused_without_a_fetch() {
    let trusted = OpenIdProvider::start("trusted");
    let untrusted = OpenIdProvider::start("untrusted");
    let events = Events::default();
    let svc = trusted.guard("", &events).layer(service_fn(handler));
    for (client, scope) in [("writer", "orders:write"), ("reader", "orders:read")] {
        let token = untrusted.token(client, scope).await;
        let resp = svc.clone().oneshot(post_orders(&token)).await.unwrap();
        assert_eq!(resp.status(), 401);
        assert_eq!(code(&resp), "guard.verify.bad_token");
    }
    assert_eq!(
        untrusted.total().await,
        untrusted.hits("/token").await,
        "Guard asked the untrusted provider for nothing"
    );
    assert_eq!(
        trusted.total().await,
        0,
        "a refused issuer costs no fetch at all"
    );
    let token = trusted.token("writer", "orders:write").await;
    assert_eq!(
        svc.oneshot(post_orders(&token)).await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn id_tokens_are_verified_for_their_own_audience_only() {
    let idp = OpenIdProvider::start("id-token");
    let events = Events::default();
    let web = idp.guard_for("web", "", &events).layer(service_fn(handler));
    let api = idp.guard("", &events).layer(service_fn(handler));
    let id_token = idp.id_token("alice").await;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(id_token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (claims["aud"].as_str(), claims["sub"].as_str()),
        (Some("web"), Some("alice"))
    );
    let resp = web.clone().oneshot(post_orders(&id_token)).await.unwrap();
    assert_eq!(resp.status(), 200, "{}", code(&resp));
    // Each token is for its own audience: an ID token is no access token for the API, and back.
    let resp = api.oneshot(post_orders(&id_token)).await.unwrap();
    assert_eq!(
        (resp.status().as_u16(), code(&resp).as_str()),
        (401, "guard.verify.bad_token")
    );
    let access = idp.token("writer", "orders:write").await;
    let resp = web.oneshot(post_orders(&access)).await.unwrap();
    assert_eq!(
        (resp.status().as_u16(), code(&resp).as_str()),
        (401, "guard.verify.bad_token")
    );
}
