//! Shared helpers: a counting handler, secret stores, a local JWKS server, token minting.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use guard_core::audit::{AuditLayer, Outcome, SecurityEvent};
use guard_core::clock::WallClock;
use guard_core::request::Principal;
use guard_core::verify::{Verifier, VerifyLayer};
use guard_core::{GuardRequest, GuardResponse};
use guard_core::{Rejection, RejectionKind};
use guard_secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
use tower::{Layer, Service, ServiceExt};

/// 2023-11-14T22:13:20Z: every test runs at this (fake) time.
pub(crate) const T0: u64 = 1_700_000_000;

pub(crate) fn clock() -> WallClock {
    WallClock::fake_at_unix(T0)
}

pub(crate) fn data(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/verify")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// A handler that counts its calls and remembers the principal it saw.
#[derive(Clone, Default)]
pub(crate) struct Handler {
    pub(crate) calls: Arc<AtomicUsize>,
    pub(crate) seen: Arc<Mutex<Option<Principal>>>,
}

impl Handler {
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub(crate) fn service(
        &self,
    ) -> impl Service<GuardRequest, Response = GuardResponse, Error = Infallible, Future: Send>
    + Clone
    + Send
    + 'static {
        let me = self.clone();
        tower::service_fn(move |req: GuardRequest| {
            let me = me.clone();
            async move {
                me.calls.fetch_add(1, Ordering::SeqCst);
                *me.seen.lock().unwrap() = req.extensions().get::<Principal>().cloned();
                Ok::<_, Infallible>(http::Response::new(Bytes::from_static(b"handled")))
            }
        })
    }
}

/// A verifier behind a `VerifyLayer` in front of a counting handler.
/// The audit layer (outermost, with a capturing sink) around the verify layer.
pub(crate) struct Stack {
    pub(crate) layer: VerifyLayer,
    pub(crate) handler: Handler,
    pub(crate) events: Arc<Mutex<Vec<SecurityEvent>>>,
}

impl Stack {
    pub(crate) fn new(layer: VerifyLayer) -> Self {
        Self {
            layer,
            handler: Handler::default(),
            events: Arc::default(),
        }
    }

    pub(crate) fn of(verifier: impl Verifier) -> Self {
        Self::new(VerifyLayer::new(verifier))
    }

    pub(crate) async fn call(&self, req: GuardRequest) -> GuardResponse {
        let events = self.events.clone();
        let audit = AuditLayer::new(move |e: SecurityEvent| events.lock().unwrap().push(e));
        let mut svc = audit.layer(self.layer.layer(self.handler.service()));
        svc.ready().await.unwrap().call(req).await.unwrap()
    }

    /// Takes the single security event the last call produced (asserts there was exactly one).
    fn one_event(&self) -> SecurityEvent {
        let mut events = self.events.lock().unwrap();
        assert_eq!(
            events.len(),
            1,
            "exactly one security event per decision: {events:?}"
        );
        events.pop().unwrap()
    }

    /// Calls and asserts a denial: status, stable code in the body and the `Rejection` extension,
    /// and that the handler was not reached by this call.
    pub(crate) async fn denied(&self, req: GuardRequest, kind: RejectionKind) -> GuardResponse {
        let before = self.handler.calls();
        let resp = self.call(req).await;
        assert_eq!(resp.status(), kind.status(), "status for {}", kind.code());
        let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(body["code"], kind.code());
        assert_eq!(
            resp.extensions().get::<Rejection>().map(|d| d.kind()),
            Some(kind)
        );
        assert!(resp.extensions().get::<Principal>().is_none());
        assert_eq!(self.handler.calls(), before, "handler must not be called");
        let e = self.one_event();
        assert_eq!(e.outcome, Outcome::Deny);
        assert_eq!(e.code, kind.code());
        assert_eq!(e.status, kind.status().as_u16());
        assert_eq!(e.layer, kind.layer());
        assert_eq!(e.principal, None);
        resp
    }

    /// Calls and asserts the handler ran, the principal reached the handler's request and the
    /// security event, and nothing put it on the response (the audit layer learns it through its
    /// own per-request slot).
    pub(crate) async fn allowed(&self, req: GuardRequest) -> Principal {
        let before = self.handler.calls();
        let resp = self.call(req).await;
        assert_eq!(
            resp.status(),
            200,
            "body: {}",
            String::from_utf8_lossy(resp.body())
        );
        assert_eq!(self.handler.calls(), before + 1);
        assert!(resp.extensions().get::<Principal>().is_none());
        let in_req = self
            .handler
            .seen
            .lock()
            .unwrap()
            .clone()
            .expect("principal on request");
        let e = self.one_event();
        assert_eq!(e.outcome, Outcome::Allow);
        assert_eq!(
            e.principal.as_deref(),
            Some(format!("{}:{}", in_req.kind.as_str(), in_req.subject).as_str())
        );
        in_req
    }
}

/// A secret store whose values can change (rotation), counting fetches and force refreshes.
#[derive(Clone, Default)]
pub(crate) struct Keys {
    pub(crate) current: Arc<Mutex<Option<Vec<u8>>>>,
    pub(crate) previous: Arc<Mutex<Option<Vec<u8>>>>,
    pub(crate) fetches: Arc<AtomicUsize>,
}

impl Keys {
    pub(crate) fn new(current: &[u8]) -> Self {
        let k = Keys::default();
        *k.current.lock().unwrap() = Some(current.to_vec());
        k
    }

    pub(crate) fn store(&self, name: &'static str) -> SecretStore {
        let me = self.clone();
        SecretStore::new(move |n: &str, v: SecretVersion| {
            me.fetches.fetch_add(1, Ordering::SeqCst);
            let slot = match v {
                SecretVersion::Current => &me.current,
                SecretVersion::Previous => &me.previous,
                _ => return Err(SecretsError::not_found(n)),
            };
            match (n == name, slot.lock().unwrap().clone()) {
                (true, Some(b)) => Ok(SecretValue::new(b)),
                _ => Err(SecretsError::not_found(n)),
            }
        })
    }
}

/// A store that is always down.
pub(crate) fn down_store() -> SecretStore {
    SecretStore::new(
        |n: &str, _: SecretVersion| -> Result<SecretValue, SecretsError> {
            Err(SecretsError::transient(n, "connection refused"))
        },
    )
}

/// A tiny HTTP server on a free loopback port that serves a JWKS and counts requests.
pub(crate) struct JwksServer {
    pub(crate) url: String,
    hits: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl JwksServer {
    pub(crate) fn start(body: Vec<u8>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, f, s) = (hits.clone(), failing.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                        let mut buf = Vec::new();
                        let mut chunk = [0u8; 1024];
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                            match conn.read(&mut chunk) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        h.fetch_add(1, Ordering::SeqCst);
                        let (status, payload): (&str, &[u8]) = if f.load(Ordering::SeqCst) {
                            ("500 Internal Server Error", b"down")
                        } else {
                            ("200 OK", &body)
                        };
                        let head = format!(
                            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            payload.len()
                        );
                        let _ = conn.write_all(head.as_bytes());
                        let _ = conn.write_all(payload);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            url,
            hits,
            failing,
            stop,
            thread: Some(thread),
        }
    }

    pub(crate) fn fetches(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Answer 500 from now on (or recover).
    pub(crate) fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(crate) fn b64u(b: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Signs `claims` with the test RSA key (RS256) and `kid`.
pub(crate) fn rs256(kid: &str, claims: &serde_json::Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.into());
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&data("rsa-private.pem")).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// Signs `claims` with the test P-256 key (ES256), `kid` `ec-1`.
pub(crate) fn es256(claims: &serde_json::Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("ec-1".into());
    let key = jsonwebtoken::EncodingKey::from_ec_pem(&data("ec-private.pem")).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// A token with an arbitrary header, signed HS256 with `secret` (for confusion attacks).
pub(crate) fn hs256_raw(
    header: &serde_json::Value,
    claims: &serde_json::Value,
    secret: &[u8],
) -> String {
    use hmac::Mac;
    let msg = format!("{}.{}", b64u(header.to_string()), b64u(claims.to_string()));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(msg.as_bytes());
    format!("{msg}.{}", b64u(mac.finalize().into_bytes()))
}

/// `http::Request` with a bearer token.
pub(crate) fn bearer(token: &str) -> GuardRequest {
    http::Request::builder()
        .header("authorization", format!("Bearer {token}"))
        .body(Bytes::new())
        .unwrap()
}

/// HMAC-SHA256 hex of `msg` under `key`.
pub(crate) fn hmac_hex(key: &[u8], msg: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(msg);
    hex::encode(mac.finalize().into_bytes())
}
