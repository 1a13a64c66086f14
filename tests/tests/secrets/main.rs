//! The secret store and AWS Secrets Manager source against a real moto server: rotation, outage,
//! recovery, single-flight, and no secret value in any output.

use std::convert::Infallible;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::Credentials;
use aws_sdk_secretsmanager::primitives::Blob;
use bytes::Bytes;
use guard_aws::secrets::{SecretsManagerSource, https_client};
use guard_core::clock::WallClock;
use guard_core::secrets::{SecretHandles, SecretsLayer};
use guard_core::{GuardRequest, GuardResponse};
use guard_secrets::{SecretSource, SecretStore, SecretVersion};
use guard_tests::moto::{ACCESS_KEY_ID, Moto, REGION, SECRET_ACCESS_KEY};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tower::{Layer, ServiceExt, service_fn};

// ---- log capture shared by every test of this binary (TRACE, every target, the SDK's included) ----

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        captured
    })
}

fn log_text() -> String {
    String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned()
}

/// Fails (without printing it) when `value` appears in the captured logs or in `texts`.
fn assert_not_leaked(value: &str, texts: &[String]) {
    assert!(
        !log_text().contains(value),
        "a secret value appears in the log output"
    );
    for t in texts {
        assert!(
            !t.contains(value),
            "a secret value appears in an error or Debug string"
        );
    }
}

// ---- helpers ----

async fn sdk_config(moto: &Moto) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(moto.endpoint())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            ACCESS_KEY_ID,
            SECRET_ACCESS_KEY,
            None,
            None,
            "moto",
        ))
        .http_client(https_client())
        .load()
        .await
}

/// Counts the fetches that reach the Secrets Manager source.
#[derive(Clone)]
struct Counting {
    inner: SecretsManagerSource,
    fetches: Arc<AtomicUsize>,
}

impl SecretSource for Counting {
    fn fetch<'a>(
        &'a self,
        name: &'a str,
        version: SecretVersion,
    ) -> futures_util::future::BoxFuture<
        'a,
        Result<guard_secrets::SecretValue, guard_secrets::SecretsError>,
    > {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        self.inner.fetch(name, version)
    }
}

fn hmac_hex(key: &[u8], msg: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(msg);
    hex::encode(mac.finalize().into_bytes())
}

/// A handler that counts its calls and answers with the length of secret `name`.
fn handler(
    name: &'static str,
    calls: Arc<AtomicUsize>,
) -> impl tower::Service<GuardRequest, Response = GuardResponse, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    service_fn(move |req: GuardRequest| {
        calls.fetch_add(1, Ordering::SeqCst);
        let len = req
            .extensions()
            .get::<SecretHandles>()
            .and_then(|h| h.get(name))
            .map(|v| v.len());
        async move {
            Ok(GuardResponse::new(Bytes::from(format!(
                "len={}",
                len.unwrap_or(0)
            ))))
        }
    })
}

fn request() -> GuardRequest {
    GuardRequest::new(Bytes::from_static(b"{}"))
}

// ---- tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_rotation_and_keeps_the_previous_version() {
    logs();
    const V1: &str = "whsec-rot-v1-5d1e0c8a";
    const V2: &str = "whsec-rot-v2-9b7f2e41";
    let moto = Moto::start();
    moto.reset();
    let config = sdk_config(&moto).await;
    let admin = Client::new(&config);
    let name = "orders-webhook-hmac";
    let created = admin
        .create_secret()
        .name(name)
        .secret_string(V1)
        .send()
        .await
        .expect("create secret");
    let v1_id = created.version_id().expect("version id").to_string();

    let store = SecretStore::new(SecretsManagerSource::from_conf(&config));
    assert!(store.get(name).await.unwrap().expose_bytes() == V1.as_bytes());
    let before = store.versions(name).await.unwrap();
    assert!(before.previous.is_none(), "no AWSPREVIOUS before rotation");

    // Rotate: put V2 as AWSPENDING, then move AWSCURRENT to it.
    let put = admin
        .put_secret_value()
        .secret_id(name)
        .secret_string(V2)
        .version_stages("AWSPENDING")
        .send()
        .await
        .expect("put new version");
    let v2_id = put.version_id().expect("version id").to_string();
    let pending = SecretsManagerSource::from_conf(&config)
        .fetch(name, SecretVersion::Pending)
        .await
        .unwrap();
    assert!(pending.expose_bytes() == V2.as_bytes(), "AWSPENDING read");
    admin
        .update_secret_version_stage()
        .secret_id(name)
        .version_stage("AWSCURRENT")
        .move_to_version_id(&v2_id)
        .remove_from_version_id(&v1_id)
        .send()
        .await
        .expect("move AWSCURRENT");

    // Cached until told otherwise; force_refresh follows the rotation at once.
    assert!(store.get(name).await.unwrap().expose_bytes() == V1.as_bytes());
    assert!(store.force_refresh(name).await.unwrap());
    assert!(store.get(name).await.unwrap().expose_bytes() == V2.as_bytes());
    assert!(!store.force_refresh(name).await.unwrap(), "rate-limited");

    // Grace window: a request signed with the old key still verifies against the versions.
    let versions = store.versions(name).await.unwrap();
    assert!(
        versions
            .previous
            .as_deref()
            .is_some_and(|p| p.expose_bytes() == V1.as_bytes()),
        "previous version (AWSPREVIOUS) kept"
    );
    let body = b"1700000000.{\"order_id\":\"ord_12345678\"}";
    let old_signature = hmac_hex(V1.as_bytes(), body);
    let new_signature = hmac_hex(V2.as_bytes(), body);
    let verifies = |sig: &str| {
        versions
            .iter()
            .any(|key| hmac_hex(key.expose_bytes(), body) == sig)
    };
    assert!(verifies(&old_signature) && verifies(&new_signature));
    assert!(!verifies(&hmac_hex(b"someone-else", body)));

    assert!(
        log_text().contains("aws_smithy_runtime"),
        "the SDK's own TRACE events are captured (and searched) too"
    );
    let texts = vec![
        format!("{store:?} {versions:?} {:?}", store.stats()),
        format!("{:?}", SecretsManagerSource::from_conf(&config)),
    ];
    assert_not_leaked(V1, &texts);
    assert_not_leaked(V2, &texts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_binary_secrets_json_fields_and_reports_missing_ones() {
    logs();
    const BIN: &[u8] = &[0, 159, 146, 150, 0xff, 42];
    let moto = Moto::start();
    let config = sdk_config(&moto).await;
    let admin = Client::new(&config);
    admin
        .create_secret()
        .name("bin-key")
        .secret_binary(Blob::new(BIN))
        .send()
        .await
        .expect("create binary secret");
    admin
        .create_secret()
        .name("db")
        .secret_string(r#"{"user":"app","password":"pw-json-3c5a7e"}"#)
        .send()
        .await
        .expect("create JSON secret");
    let store = SecretStore::new(SecretsManagerSource::from_conf(&config));
    assert!(store.get("bin-key").await.unwrap().expose_bytes() == BIN);
    assert!(store.get("db#password").await.unwrap().expose_bytes() == b"pw-json-3c5a7e");
    let missing = store.get("no-such-secret").await.unwrap_err();
    assert!(
        matches!(missing, guard_secrets::SecretsError::NotFound { .. }),
        "{missing}"
    );
    assert!(!missing.is_transient());
    assert_not_leaked("pw-json-3c5a7e", &[format!("{missing} {missing:?}")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_serves_cached_fails_cold_and_recovers_without_rebuilding() {
    logs();
    const WARM_V1: &str = "api-key-warm-v1-0a9d3f";
    const WARM_V2: &str = "api-key-warm-v2-6e21bb17";
    const COLD: &str = "api-key-cold-48c2e9";
    let (warm, cold) = ("outage-warm", "outage-cold");
    let mut moto = Moto::start();
    let config = sdk_config(&moto).await;
    let admin = Client::new(&config);
    admin
        .create_secret()
        .name(warm)
        .secret_string(WARM_V1)
        .send()
        .await
        .unwrap();

    let clock = WallClock::fake_at_unix(1_700_000_000);
    let store = SecretStore::builder(SecretsManagerSource::from_conf(&config))
        .clock(clock.clone())
        .ttl(Duration::from_secs(60))
        .refresh_ahead(Duration::ZERO)
        .max_staleness(Duration::from_secs(600))
        .retry_after_error(Duration::from_secs(1))
        .fetch_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let (warm_calls, cold_calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let warm_svc = SecretsLayer::new(store.clone())
        .require(warm)
        .layer(handler(warm, warm_calls.clone()));
    let cold_svc = SecretsLayer::new(store.clone())
        .require(cold)
        .layer(handler(cold, cold_calls.clone()));

    let resp = warm_svc.clone().oneshot(request()).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.body(), &format!("len={}", WARM_V1.len()));

    moto.stop();
    // Expired and the source is down: the cached value is served, counted, logged once.
    for _ in 0..3 {
        clock.advance(Duration::from_secs(61));
        let resp = warm_svc.clone().oneshot(request()).await.unwrap();
        assert_eq!(resp.status(), 200, "stale value served");
        assert_eq!(resp.body(), &format!("len={}", WARM_V1.len()));
    }
    assert_eq!(warm_calls.load(Ordering::SeqCst), 4);
    assert!(store.stats().stale_served >= 3);
    let warned = |text: &str| {
        text.lines()
            .filter(|l| l.contains("serving the cached value") && l.contains(warm))
            .count()
    };
    assert_eq!(warned(&log_text()), 1, "one warning per outage");

    // Never fetched: fail closed, handler not called.
    let resp = cold_svc.clone().oneshot(request()).await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(body["code"], "guard.secrets.unavailable");
    assert_eq!(cold_calls.load(Ordering::SeqCst), 0, "handler must not run");

    // moto comes back (empty: it keeps state in memory); the same stack recovers.
    moto.restart();
    admin
        .create_secret()
        .name(warm)
        .secret_string(WARM_V2)
        .send()
        .await
        .unwrap();
    admin
        .create_secret()
        .name(cold)
        .secret_string(COLD)
        .send()
        .await
        .unwrap();
    clock.advance(Duration::from_secs(2)); // past retry_after_error
    let resp = cold_svc.clone().oneshot(request()).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.body(), &format!("len={}", COLD.len()));
    assert_eq!(cold_calls.load(Ordering::SeqCst), 1);
    let resp = warm_svc.clone().oneshot(request()).await.unwrap();
    assert_eq!(
        resp.body(),
        &format!("len={}", WARM_V2.len()),
        "fresh value after recovery"
    );
    let text = log_text();
    assert!(
        text.lines()
            .any(|l| l.contains("source recovered") && l.contains(warm)),
        "recovery logged"
    );
    assert_eq!(warned(&text), 1);

    let texts = vec![format!("{store:?} {:?} {:?}", store.stats(), resp)];
    for v in [WARM_V1, WARM_V2, COLD] {
        assert_not_leaked(v, &texts);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_cold_requests_make_one_fetch() {
    logs();
    const VALUE: &str = "api-key-flight-1f4b9d2c";
    let moto = Moto::start();
    let config = sdk_config(&moto).await;
    Client::new(&config)
        .create_secret()
        .name("flight")
        .secret_string(VALUE)
        .send()
        .await
        .unwrap();
    let fetches = Arc::new(AtomicUsize::new(0));
    let store = SecretStore::new(Counting {
        inner: SecretsManagerSource::from_conf(&config),
        fetches: fetches.clone(),
    });
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = SecretsLayer::new(store)
        .require("flight")
        .layer(handler("flight", calls.clone()));
    let tasks: Vec<_> = (0..100)
        .map(|_| tokio::spawn(svc.clone().oneshot(request())))
        .collect();
    for t in tasks {
        let resp = t.await.unwrap().unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.body(), &format!("len={}", VALUE.len()));
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "exactly one fetch");
    assert_eq!(calls.load(Ordering::SeqCst), 100);
    assert_not_leaked(VALUE, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_comes_from_the_sdk_standard_configuration() {
    logs();
    const VALUE: &str = "api-key-env-endpoint-77e0c3";
    let moto = Moto::start();
    Client::new(&sdk_config(&moto).await)
        .create_secret()
        .name("probe")
        .secret_string(VALUE)
        .send()
        .await
        .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_secret-probe"))
        .arg("probe")
        .env_clear()
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run secret-probe");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "secret-probe failed: {stderr}");
    let expected = &hex::encode(<Sha256 as sha2::Digest>::digest(VALUE.as_bytes()))[..8];
    assert_eq!(stdout.trim(), expected);
    assert_not_leaked(VALUE, &[stdout, stderr]);
}
