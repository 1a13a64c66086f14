//! `KeyVaultSource` against a local server speaking the documented protocol: the App Service
//! managed-identity endpoint (API 2019-08-01) and Key Vault's secrets API 7.4.

#![cfg(feature = "key-vault")]

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use guard_azure::keyvault::KeyVaultSource;
use guard_http::HttpClient;
use guard_secrets::{SecretSource, SecretVersion, SecretsError};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const HEADER: &str = "identity-header-value";
const TOKEN: &str = "token-value-1";

type Reply = Box<dyn Fn(&str, &str) -> (u16, Value) + Send + Sync>;

/// A local server: records each request head and answers `reply(target, head)`.
struct Local {
    base: String,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Local {
    async fn start(reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (seen, reply) = (heads.clone(), Arc::new(reply));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (seen, reply) = (seen.clone(), reply.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).into_owned();
                    seen.lock().unwrap().push(head.clone());
                    let target = head
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or_default()
                        .to_owned();
                    let (status, body) = reply(&target, &head);
                    let body = body.to_string();
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(resp.as_bytes()).await;
                });
            }
        });
        Local { base, heads }
    }

    fn targets(&self) -> Vec<String> {
        self.heads
            .lock()
            .unwrap()
            .iter()
            .map(|h| h.split_whitespace().nth(1).unwrap_or_default().to_owned())
            .collect()
    }

    fn source(&self) -> KeyVaultSource {
        KeyVaultSource::new(
            &self.base,
            &format!("{}/msi/token", self.base),
            HEADER,
            HttpClient::builder().build().unwrap(),
        )
        .unwrap()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

const TOKEN_TARGET: &str = "/msi/token?resource=https://vault.azure.net&api-version=2019-08-01";

/// Token endpoint answering with `expires_in_secs`; secrets answered by `secret`.
fn vault(
    expires_in_secs: u64,
    secret: impl Fn(&str) -> (u16, Value) + Send + Sync + 'static,
) -> Reply {
    Box::new(move |target, head| {
        if target == TOKEN_TARGET {
            assert!(
                head.to_ascii_lowercase()
                    .contains(&format!("x-identity-header: {HEADER}")),
                "{head}"
            );
            return (
                200,
                json!({"access_token": TOKEN, "expires_on": (now() + expires_in_secs).to_string(),
                                "resource": "https://vault.azure.net", "token_type": "Bearer"}),
            );
        }
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("authorization: bearer {TOKEN}")),
            "{head}"
        );
        secret(target)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_fetched_once_and_reused_until_shortly_before_expiry() {
    let server = Local::start(vault(3600, |_| {
        (200, json!({"value": "v1", "id": "x/secrets/a/1"}))
    }))
    .await;
    let source = server.source();
    for _ in 0..3 {
        let v = source
            .fetch("orders-api-key", SecretVersion::Current)
            .await
            .unwrap();
        assert_eq!(v.expose_bytes(), b"v1");
    }
    let targets = server.targets();
    assert_eq!(
        targets.iter().filter(|t| *t == TOKEN_TARGET).count(),
        1,
        "{targets:?}"
    );
    assert_eq!(
        targets
            .iter()
            .filter(|t| *t == "/secrets/orders-api-key?api-version=7.4")
            .count(),
        3
    );

    // A token within 5 minutes of expiry is replaced before use.
    let short = Local::start(vault(60, |_| (200, json!({"value": "v1"})))).await;
    let source = short.source();
    source.fetch("k", SecretVersion::Current).await.unwrap();
    source.fetch("k", SecretVersion::Current).await.unwrap();
    assert_eq!(
        short
            .targets()
            .iter()
            .filter(|t| *t == TOKEN_TARGET)
            .count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_are_classified_and_a_401_drops_the_token() {
    let server = Local::start(vault(3600, |target| {
        let status = match target.split('?').next().unwrap_or_default() {
            "/secrets/missing" => 404,
            "/secrets/denied" => 403,
            "/secrets/busy" => 503,
            "/secrets/throttled" => 429,
            "/secrets/revoked" => 401,
            _ => 400,
        };
        (status, json!({"error": {"code": "X"}}))
    }))
    .await;
    let source = server.source();
    let read = |name: &'static str| {
        let source = source.clone();
        async move {
            source
                .fetch(name, SecretVersion::Current)
                .await
                .unwrap_err()
        }
    };
    assert!(matches!(
        read("missing").await,
        SecretsError::NotFound { .. }
    ));
    assert!(matches!(
        read("denied").await,
        SecretsError::AccessDenied { .. }
    ));
    assert!(read("busy").await.is_transient());
    assert!(read("throttled").await.is_transient());
    assert!(matches!(
        read("other").await,
        SecretsError::Permanent { .. }
    ));
    assert_eq!(
        server
            .targets()
            .iter()
            .filter(|t| *t == TOKEN_TARGET)
            .count(),
        1
    );
    assert!(matches!(
        read("revoked").await,
        SecretsError::AccessDenied { .. }
    ));
    read("missing").await;
    assert_eq!(
        server
            .targets()
            .iter()
            .filter(|t| *t == TOKEN_TARGET)
            .count(),
        2,
        "a 401 drops the cached token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previous_is_the_newest_enabled_version_before_the_current_one() {
    let server = Local::start(vault(3600, |target| match target {
        "/secrets/hmac/versions?api-version=7.4" => (200, json!({
            "value": [
                {"id": "https://v/secrets/hmac/aaa111", "attributes": {"enabled": true, "created": 100}},
                {"id": "https://v/secrets/hmac/ccc333", "attributes": {"enabled": true, "created": 300}},
                {"id": "https://v/secrets/hmac/ddd444", "attributes": {"enabled": false, "created": 250}}
            ],
            "nextLink": null
        })),
        "/secrets/hmac/aaa111?api-version=7.4" => (200, json!({"value": "old"})),
        _ => (404, json!({})),
    }))
    .await;
    let source = server.source();
    let previous = source.fetch("hmac", SecretVersion::Previous).await.unwrap();
    assert_eq!(previous.expose_bytes(), b"old");
    assert!(matches!(
        source.fetch("hmac", SecretVersion::Pending).await,
        Err(SecretsError::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_outside_key_vault_syntax_never_reach_the_network_and_nothing_leaks() {
    let server = Local::start(vault(3600, |_| (403, json!({})))).await;
    let source = server.source();
    for name in ["../keys/x", "a?b", "", "a/b"] {
        assert!(matches!(
            source.fetch(name, SecretVersion::Current).await,
            Err(SecretsError::NotFound { .. })
        ));
    }
    assert!(server.targets().is_empty());
    let err = source
        .fetch("denied", SecretVersion::Current)
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?} {source:?}");
    assert!(!shown.contains(TOKEN) && !shown.contains(HEADER), "{shown}");
}
