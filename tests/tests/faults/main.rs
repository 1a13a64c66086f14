//! Faults across crates, against real local servers:
//!
//! - 100 concurrent cold requests make exactly one JWKS fetch and one secret fetch (plus one
//!   managed-identity token), counted at the servers that answer them.
//! - SIGTERM while the Azure custom handler and the Cloud Run service are in the middle of a
//!   batch of queue and Pub/Sub deliveries: no message is acknowledged that the handler did not
//!   finish (the ones still running at the drain deadline get no answer, so the platform
//!   redelivers them).
//!
//! This binary's SIGTERM test signals its own process; it is the only test here whose servers
//! listen for the signal, and it sends it only once they are listening.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use guard_core::audit::{AuditLayer, SecurityEvent};
use guard_core::request::{Peer, Trigger};
use guard_core::{GuardDeps, GuardRequest, GuardResponse, Policy};
use guard_tests::http::{Reply, StubServer, response};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::util::BoxCloneService;
use tower::{Layer, ServiceExt};

const KID: &str = "faults-1";
const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "https://orders.example.com/api";
const API_KEY: &str = "faults-api-key-3b9d";

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn key_pem() -> Vec<u8> {
    std::fs::read(root().join("../examples/gcp-orders/tests/data/push-signing-key.pem")).unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn jwks() -> Vec<u8> {
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::PublicKeyParts;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(&String::from_utf8(key_pem()).unwrap()).unwrap();
    json!({"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": KID,
                     "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be())}]})
    .to_string()
    .into_bytes()
}

fn token() -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(KID.into());
    let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "client-7",
                        "iat": now(), "exp": now() + 3600});
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&key_pem()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_cold_requests_fetch_the_jwks_once_and_the_secret_once() {
    let jwks_body = jwks();
    let jwks_server = StubServer::start(move |_| {
        Reply::Respond(response(
            "200 OK",
            &[("content-type", "application/json")],
            &jwks_body,
        ))
    })
    .await;
    let vault = StubServer::start(|seen| {
        let body = if seen.head.starts_with("GET /secrets/orders-api-key?") {
            json!({"value": API_KEY, "id": "https://vault/secrets/orders-api-key/v1"}).to_string()
        } else {
            return Reply::Respond(response("404 Not Found", &[], b"{}"));
        };
        Reply::Respond(response(
            "200 OK",
            &[("content-type", "application/json")],
            body.as_bytes(),
        ))
    })
    .await;
    let identity = StubServer::start(|_| {
        let body = json!({"access_token": "identity-token-8c1e", "token_type": "Bearer",
                          "expires_on": (now() + 3600).to_string(),
                          "resource": "https://vault.azure.net"})
        .to_string();
        Reply::Respond(response(
            "200 OK",
            &[("content-type", "application/json")],
            body.as_bytes(),
        ))
    })
    .await;

    let policy = Policy::from_toml_str(&format!(
        r#"
        [verify.jwt]
        jwks_url = "{}"
        issuers = ["{ISSUER}"]
        audiences = ["{AUDIENCE}"]

        [secrets]
        provider = "azure"
        required = ["orders-api-key"]
        prefetch = false
        "#,
        jwks_server.url("/jwks.json")
    ))
    .unwrap();
    let source = guard_azure::keyvault::KeyVaultSource::new(
        &vault.url(""),
        &identity.url("/msi/token"),
        "identity-header",
        guard_http::HttpClient::builder().build().unwrap(),
    )
    .unwrap();
    let guard =
        guard_core::GuardBuilder::from_policy_with(&policy, GuardDeps::with_secret_source(source))
            .unwrap()
            .build();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let handler = tower::service_fn(move |_req: GuardRequest| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(GuardResponse::new(Bytes::from_static(b"ok"))) }
    });
    let stack = guard.layer(handler);
    let token = token();
    let requests: Vec<_> = (0..100)
        .map(|i| {
            let mut req = http::Request::builder()
                .method("POST")
                .uri("/orders")
                .header("authorization", format!("Bearer {token}"))
                .body(Bytes::new())
                .unwrap();
            req.extensions_mut().insert(Trigger::Http);
            req.extensions_mut()
                .insert(Peer::new(format!("192.0.2.{}", i % 250).parse().unwrap()));
            tokio::spawn(stack.clone().oneshot(req))
        })
        .collect();
    for r in requests {
        let resp = r.await.unwrap().unwrap();
        assert_eq!(resp.status(), 200, "{:?}", resp.body());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 100);
    assert_eq!(jwks_server.hits(), 1, "JWKS fetches");
    assert_eq!(vault.hits(), 1, "secret fetches");
    assert_eq!(identity.hits(), 1, "managed-identity token fetches");
}

// ------------------------------------------------------------------------------------ SIGTERM

/// A handler that records which message it started and finished, and waits for a permit of
/// `gate` in between.
#[derive(Clone)]
struct Gated {
    started: Arc<Mutex<BTreeSet<u64>>>,
    finished: Arc<Mutex<BTreeSet<u64>>>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl Gated {
    fn new() -> Self {
        Gated {
            started: Arc::default(),
            finished: Arc::default(),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
        }
    }

    fn service(&self) -> BoxCloneService<GuardRequest, GuardResponse, Infallible> {
        let me = self.clone();
        BoxCloneService::new(tower::service_fn(move |req: GuardRequest| {
            let me = me.clone();
            async move {
                let n = serde_json::from_slice::<serde_json::Value>(req.body())
                    .ok()
                    .and_then(|v| v["n"].as_u64())
                    .expect("a message {\"n\": ...}");
                me.started.lock().unwrap().insert(n);
                me.gate.acquire().await.unwrap().forget();
                me.finished.lock().unwrap().insert(n);
                Ok(GuardResponse::new(Bytes::from_static(b"{}")))
            }
        }))
    }
}

/// Sends `request` and reads the whole answer; `None` when the connection ended without one.
async fn exchange(addr: SocketAddr, request: Vec<u8>) -> Option<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream.write_all(&request).await.ok()?;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace().nth(1)?.parse().ok()
}

fn post(path: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nhost: local\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r.push_str(body);
    r.into_bytes()
}

const BATCH: u64 = 10;
const DRAIN: Duration = Duration::from_secs(2);

fn events_sink() -> (AuditLayer, Arc<Mutex<Vec<SecurityEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    (
        AuditLayer::new(move |e: SecurityEvent| sink.lock().unwrap().push(e)),
        events,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_mid_batch_acknowledges_only_messages_the_handler_finished() {
    let policy = Policy::from_toml_str(
        r#"
        [verify.sources]
        azure-queue = ["orders"]
        pubsub = ["projects/shop-prod/subscriptions/orders-push"]
        "#,
    )
    .unwrap();

    // Azure: the custom handler, function `orders-queue` bound to queue `orders`.
    let azure = Gated::new();
    let (azure_audit, azure_events) = events_sink();
    let azure_guard = guard_core::GuardBuilder::from_policy_with(&policy, GuardDeps::default())
        .unwrap()
        .audit(azure_audit.clone())
        .build();
    let functions = guard_azure::functions::Functions::default().with(
        "orders-queue",
        guard_azure::functions::Functions::parse(
            r#"{"bindings":[{"type":"queueTrigger","direction":"in","name":"msg","queueName":"orders"}]}"#,
        )
        .unwrap(),
    );
    let azure_service = guard_azure::AzureService::new(
        azure_guard.layer(azure.service()),
        functions,
        guard_azure::decode::DecodeOptions::from_policy(&policy),
    );
    let azure_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let azure_addr = azure_listener.local_addr().unwrap();
    let azure_server = guard_azure::server_config(&policy)
        .drain_timeout(DRAIN)
        .audit(azure_audit);
    let azure_running = tokio::spawn(azure_server.serve(azure_listener, azure_service));

    // GCP: the Cloud Run service, Pub/Sub push on /pubsub.
    let gcp = Gated::new();
    let (gcp_audit, gcp_events) = events_sink();
    let gcp_guard = guard_core::GuardBuilder::from_policy_with(&policy, GuardDeps::default())
        .unwrap()
        .audit(gcp_audit.clone())
        .build();
    let gcp_service =
        guard_gcp::GcpLayer::from_policy(&policy).layer(gcp_guard.layer(gcp.service()));
    let gcp_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gcp_addr = gcp_listener.local_addr().unwrap();
    let gcp_server = guard_gcp::server_config(&policy)
        .drain_timeout(DRAIN)
        .audit(gcp_audit);
    let gcp_running = tokio::spawn(gcp_server.serve(gcp_listener, gcp_service));

    // A batch of deliveries to each, all in the handler before the signal.
    let mut deliveries = Vec::new();
    for n in 0..BATCH {
        let message = json!({"n": n}).to_string();
        let envelope = json!({"Data": {"msg": message},
                              "Metadata": {"Id": format!("q-{n}"), "DequeueCount": 1}})
        .to_string();
        let invocation = format!("inv-{n}");
        let req = post(
            "/orders-queue",
            &[("x-azure-functions-invocationid", &invocation)],
            &envelope,
        );
        deliveries.push(("azure", n, tokio::spawn(exchange(azure_addr, req))));
        let push = json!({
            "message": {"data": base64::engine::general_purpose::STANDARD.encode(&message),
                        "messageId": format!("p-{n}"), "publishTime": "2026-12-01T20:00:00Z"},
            "subscription": "projects/shop-prod/subscriptions/orders-push"
        })
        .to_string();
        let req = post("/pubsub", &[("x-forwarded-for", "66.249.84.1")], &push);
        deliveries.push(("gcp", n, tokio::spawn(exchange(gcp_addr, req))));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while azure.started.lock().unwrap().len() < BATCH as usize
        || gcp.started.lock().unwrap().len() < BATCH as usize
    {
        assert!(
            Instant::now() < deadline,
            "the batch never reached the handlers"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let kill = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    // Half of each batch finishes within the drain window; the rest is still running when
    // the window closes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    azure.gate.add_permits(BATCH as usize / 2);
    gcp.gate.add_permits(BATCH as usize / 2);

    let mut acked = BTreeSet::new();
    for (cloud, n, answer) in deliveries {
        let status = answer.await.unwrap();
        let is_ack = match cloud {
            "azure" => status.is_some_and(|s| (200..300).contains(&s)),
            _ => status.is_some_and(|s| matches!(s, 102 | 200 | 201 | 202 | 204)),
        };
        if is_ack {
            acked.insert((cloud, n));
        }
    }
    tokio::time::timeout(Duration::from_secs(10), azure_running)
        .await
        .expect("the Azure server stopped after the drain window")
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), gcp_running)
        .await
        .expect("the Cloud Run server stopped after the drain window")
        .unwrap()
        .unwrap();

    for (cloud, handler, events) in [("azure", &azure, &azure_events), ("gcp", &gcp, &gcp_events)] {
        let finished = handler.finished.lock().unwrap().clone();
        let acked_here: BTreeSet<u64> = acked
            .iter()
            .filter(|(c, _)| *c == cloud)
            .map(|(_, n)| *n)
            .collect();
        assert_eq!(
            finished.len(),
            BATCH as usize / 2,
            "{cloud}: the released half finished"
        );
        assert_eq!(
            acked_here, finished,
            "{cloud}: acknowledged messages must be exactly the finished ones"
        );
        // Every finished message wrote its decision before the server returned.
        let allowed = events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.outcome == guard_core::audit::Outcome::Allow)
            .count();
        assert_eq!(
            allowed,
            finished.len(),
            "{cloud}: one allow event per finished message"
        );
    }
}
