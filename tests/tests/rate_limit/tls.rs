//! `rediss://` against a real TLS-only `redis-server` (certificates made at test time with
//! rcgen): one limit shared by two instances over TLS, and every trust failure (wrong CA, wrong
//! host name, platform roots for a private CA, a plaintext server) refuses to connect — the
//! failure mode applies and nothing falls back to plaintext. Passwords come from the secret store
//! and are read again after Redis refuses a rotated one.

use std::path::Path;
use std::time::Duration;

use guard_core::Policy;
use guard_core::rate_limit::{
    AdmittedOnBackendError, FailureMode, RateLimitLayer, RedisConnection, key,
};
use guard_secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
use guard_tests::redis::{RedisServer, TlsFiles};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tower::Layer;

use crate::exactness::{TASKS, WINDOW, assert_exact, rate};
use crate::support::{Counting, from, hammer, prefix, redis_backend, runtime, send, warm_up};

/// A CA, and files in `dir`: `ca.pem`, and a server certificate for `names` with its key.
pub(crate) struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

impl TestCa {
    pub(crate) fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa { params, key, pem }
    }

    pub(crate) fn pem(&self) -> &str {
        &self.pem
    }

    /// Writes `<stem>.crt`, `<stem>.key` and `ca.pem` under `dir` for a server named `names`.
    pub(crate) fn server_files(&self, dir: &Path, stem: &str, names: &[&str]) -> TlsFiles {
        std::fs::create_dir_all(dir).unwrap();
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let files = TlsFiles {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
            ca: dir.join("ca.pem"),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        std::fs::write(&files.ca, &self.pem).unwrap();
        files
    }
}

pub(crate) fn temp_dir(test: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(prefix(test).replace(':', "-"))
}

pub(crate) fn tls_url(server: &RedisServer) -> String {
    format!("rediss://127.0.0.1:{}", server.port())
}

pub(crate) fn tls_connection(server: &RedisServer, ca: &TestCa) -> RedisConnection {
    RedisConnection::builder(tls_url(server))
        .timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(500))
        .tls_ca_pem(ca.pem())
        .build()
        .unwrap()
}

#[test]
fn two_instances_over_tls_enforce_one_combined_limit() {
    let _heavy = crate::support::one_heavy_test_at_a_time();
    let dir = temp_dir("tls-exact");
    let ca = TestCa::new("guard test CA");
    let redis = RedisServer::start_tls(&ca.server_files(&dir, "server", &["127.0.0.1"]));
    runtime().block_on(async {
        let handler = Counting::default();
        let shared_prefix = prefix("tls-shared");
        // Connected before the window opens: the limit is measured, not the handshakes.
        let conns = [tls_connection(&redis, &ca), tls_connection(&redis, &ca)];
        for conn in &conns {
            warm_up(conn).await;
        }
        let instances: Vec<_> = conns
            .iter()
            .map(|conn| {
                let backend = redis_backend(conn, rate(), &shared_prefix, FailureMode::Closed);
                RateLimitLayer::new(backend, key::RateKey::global()).layer(handler.service())
            })
            .collect();
        let (loads, elapsed) = hammer(instances, TASKS / 2, WINDOW).await;
        let total = loads[0].admitted + loads[1].admitted;
        assert!(loads[0].admitted > 0 && loads[1].admitted > 0, "{loads:?}");
        assert!(
            loads[0].refused + loads[1].refused > total,
            "demand must exceed the limit"
        );
        assert_eq!(handler.calls(), total);
        assert_exact("redis over TLS, two instances", total, elapsed);
    });
    let _ = std::fs::remove_dir_all(dir);
}

/// Fail-closed answers 503 and fail-open admits, marks and counts: the check never reached Redis.
async fn assert_refused_to_connect(conn: RedisConnection, what: &str) {
    let rate = guard_core::rate_limit::Rate::per_minute(std::num::NonZeroU32::new(1).unwrap());
    let closed = redis_backend(&conn, rate, &prefix("bad-tls-closed"), FailureMode::Closed);
    let open = redis_backend(&conn, rate, &prefix("bad-tls-open"), FailureMode::Open);
    let handler = Counting::default();
    let mut closed_svc =
        RateLimitLayer::new(closed, key::RateKey::global()).layer(handler.service());
    let mut open_svc =
        RateLimitLayer::new(open.clone(), key::RateKey::global()).layer(handler.service());
    for n in 1..=3 {
        let resp = send(&mut closed_svc, from("203.0.113.7")).await;
        assert_eq!(resp.status(), 503, "{what}: fail-closed");
        let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(body["code"], "guard.rate.backend_unavailable", "{what}");
        // A limit of 1 per minute: were Redis reached, the 2nd and 3rd would be 429.
        let resp = send(&mut open_svc, from("203.0.113.7")).await;
        assert_eq!(resp.status(), 200, "{what}: fail-open");
        assert!(
            resp.extensions().get::<AdmittedOnBackendError>().is_some(),
            "{what}"
        );
        assert_eq!(open.allowed_on_error(), n, "{what}");
    }
    assert_eq!(
        handler.calls(),
        3,
        "{what}: only fail-open reached the handler"
    );
}

#[test]
fn wrong_ca_wrong_host_name_or_plaintext_refuse_to_connect_and_the_failure_mode_applies() {
    let dir = temp_dir("tls-bad");
    let ca = TestCa::new("guard test CA");
    let other_ca = TestCa::new("some other CA");
    let good = RedisServer::start_tls(&ca.server_files(&dir, "good", &["127.0.0.1"]));
    let misnamed =
        RedisServer::start_tls(&ca.server_files(&dir, "misnamed", &["redis.other.test"]));
    let plaintext = RedisServer::start();
    runtime().block_on(async {
        let budget = Duration::from_millis(500);
        let build = |url: String, ca_pem: Option<&str>| {
            let b = RedisConnection::builder(url)
                .timeout(budget)
                .connect_timeout(budget);
            match ca_pem {
                Some(pem) => b.tls_ca_pem(pem),
                None => b,
            }
            .build()
            .unwrap()
        };
        // Sanity: the right CA and name connect.
        let ok = redis_backend(
            &tls_connection(&good, &ca),
            rate(),
            &prefix("tls-ok"),
            FailureMode::Closed,
        );
        let mut ok_svc =
            RateLimitLayer::new(ok, key::RateKey::global()).layer(Counting::default().service());
        assert_eq!(send(&mut ok_svc, from("203.0.113.7")).await.status(), 200);

        assert_refused_to_connect(build(tls_url(&good), Some(other_ca.pem())), "wrong CA").await;
        assert_refused_to_connect(build(tls_url(&misnamed), Some(ca.pem())), "wrong host name")
            .await;
        assert_refused_to_connect(build(tls_url(&good), None), "platform roots, private CA").await;
        assert_refused_to_connect(
            build(format!("rediss://127.0.0.1:{}", plaintext.port()), None),
            "rediss:// to a plaintext server",
        )
        .await;
        assert_refused_to_connect(
            build(format!("redis://127.0.0.1:{}", good.port()), None),
            "redis:// to a TLS-only server",
        )
        .await;

        // The loudly named opt-out does what it says (and only that): the misnamed server is
        // accepted without any check.
        let insecure = RedisConnection::builder(tls_url(&misnamed))
            .timeout(budget)
            .dangerous_skip_tls_verification_for_tests()
            .build()
            .unwrap();
        let b = redis_backend(
            &insecure,
            rate(),
            &prefix("tls-insecure"),
            FailureMode::Closed,
        );
        let mut svc =
            RateLimitLayer::new(b, key::RateKey::global()).layer(Counting::default().service());
        assert_eq!(send(&mut svc, from("203.0.113.7")).await.status(), 200);
    });
    let _ = std::fs::remove_dir_all(dir);
}

fn store_with(password: &'static str) -> SecretStore {
    SecretStore::new(move |name: &str, v: SecretVersion| match (name, v) {
        ("redis-password", SecretVersion::Current) => Ok(SecretValue::from(password)),
        _ => Err(SecretsError::not_found(name)),
    })
}

#[test]
fn policy_with_tls_ca_file_and_password_secret_shares_a_limit_over_tls() {
    let dir = temp_dir("tls-policy");
    let ca = TestCa::new("guard test CA");
    let files = ca.server_files(&dir, "server", &["127.0.0.1"]);
    let redis = RedisServer::start_tls_with_password(&files, "s3cret-pw");
    let policy = |ca_file: &Path| {
        Policy::from_toml_str(&format!(
            "[function]\nname = \"tls-policy\"\nallow_unverified = true\n[rate_limit]\nper_minute = 2\npre_auth = \"global\"\npost_auth = \"off\"\nfailure_mode = \"closed\"\ntimeout_ms = 500\nbackend = \"rediss://127.0.0.1:{}\"\npassword_secret = \"redis-password\"\ntls_ca_file = \"{}\"\nkey_prefix = \"{}\"",
            redis.port(),
            ca_file.display(),
            prefix("tls-policy"),
        ))
        .unwrap()
    };
    let p = policy(&files.ca);
    // Without a store the password cannot be had: refused at build, naming the key, not the value.
    let err = guard_core::GuardBuilder::from_policy(&p).unwrap_err();
    assert_eq!(err.problems()[0].path, "rate_limit.password_secret");
    runtime().block_on(async {
        let handler = Counting::default();
        let mut instances: Vec<_> = (0..2)
            .map(|_| {
                pre_auth(&p, store_with("s3cret-pw"))
                    .unwrap()
                    .layer(handler.service())
            })
            .collect();
        let mut statuses = Vec::new();
        for i in 0..4 {
            statuses.push(
                send(&mut instances[i % 2], from("203.0.113.7"))
                    .await
                    .status()
                    .as_u16(),
            );
        }
        assert_eq!(
            statuses,
            [200, 200, 429, 429],
            "one limit of 2 across both instances"
        );

        // A wrong password: refused by Redis, fail-closed answers 503.
        let mut wrong = pre_auth(&p, store_with("wrong"))
            .unwrap()
            .layer(handler.service());
        assert_eq!(send(&mut wrong, from("203.0.113.7")).await.status(), 503);
    });
    // Through the Guard builder: the policy's store holds the password.
    let guarded = Policy::from_toml_str(&format!(
        "[function]\nname = \"tls-policy\"\nallow_unverified = true\n[ingress]\ncontent_types = []\n[rate_limit]\nper_minute = 1\npre_auth = \"global\"\npost_auth = \"off\"\nfailure_mode = \"closed\"\ntimeout_ms = 500\nbackend = \"rediss://127.0.0.1:{}\"\npassword_secret = \"redis-password\"\ntls_ca_file = \"{}\"\nkey_prefix = \"{}\"",
        redis.port(),
        files.ca.display(),
        prefix("tls-builder"),
    ))
    .unwrap();
    let err = guard_core::GuardBuilder::from_policy(&guarded).unwrap_err();
    assert_eq!(err.problems()[0].path, "rate_limit.password_secret");
    runtime().block_on(async {
        let guard = guard_core::GuardBuilder::from_policy_with(
            &guarded,
            guard_core::GuardDeps::with_secrets(store_with("s3cret-pw")),
        )
        .unwrap()
        .audit(guard_core::audit::AuditLayer::new(
            |_: guard_core::audit::SecurityEvent| {},
        ))
        .build();
        let handler = Counting::default();
        let mut svc = guard.wrap(handler.service());
        let first = send(&mut svc, from("203.0.113.7")).await.status().as_u16();
        let second = send(&mut svc, from("203.0.113.7")).await.status().as_u16();
        assert_eq!(
            (first, second),
            (200, 429),
            "the limit is kept in Redis over TLS"
        );
    });
    // A CA file that is not there is a policy problem at build.
    let err = pre_auth(&policy(&dir.join("missing.pem")), store_with("s3cret-pw")).unwrap_err();
    assert_eq!(err.problems()[0].path, "rate_limit.tls_ca_file");
    let _ = std::fs::remove_dir_all(dir);
}

/// The pre-auth limiter the builder makes from `policy`, with `store` holding the password.
fn pre_auth(
    policy: &Policy,
    store: SecretStore,
) -> Result<RateLimitLayer, guard_core::policy::PolicyError> {
    let guard = guard_core::GuardBuilder::from_policy_with(
        policy,
        guard_core::GuardDeps::with_secrets(store),
    )?
    .build();
    Ok(guard
        .rate_limit_layers()
        .0
        .expect("a pre-auth limiter")
        .clone())
}

#[test]
fn a_rotated_password_is_read_again_from_the_secret_store_after_redis_refuses_the_old_one() {
    let redis = RedisServer::start_with_password("old-pw");
    let current = std::sync::Arc::new(std::sync::Mutex::new("old-pw"));
    let source = current.clone();
    let store = SecretStore::new(move |name: &str, v: SecretVersion| match (name, v) {
        ("redis-password", SecretVersion::Current) => {
            Ok(SecretValue::from(*source.lock().unwrap()))
        }
        _ => Err(SecretsError::not_found(name)),
    });
    runtime().block_on(async {
        let conn = RedisConnection::builder(redis.url())
            .timeout(Duration::from_millis(500))
            .password_secret(store, "redis-password")
            .build()
            .unwrap();
        let rate =
            guard_core::rate_limit::Rate::per_minute(std::num::NonZeroU32::new(100).unwrap());
        let backend = redis_backend(&conn, rate, &prefix("rotate"), FailureMode::Closed);
        let mut svc = RateLimitLayer::new(backend, key::RateKey::global())
            .layer(Counting::default().service());
        assert_eq!(send(&mut svc, from("203.0.113.7")).await.status(), 200);

        // Rotation: Redis takes the new password, the store serves it, connections are cut.
        assert!(
            redis
                .cli(Some("old-pw"), &["CONFIG", "SET", "requirepass", "new-pw"])
                .contains("OK")
        );
        *current.lock().unwrap() = "new-pw";
        redis.cli(Some("new-pw"), &["CLIENT", "KILL", "TYPE", "normal"]);

        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut refused = 0;
        loop {
            match send(&mut svc, from("203.0.113.7")).await.status().as_u16() {
                200 => break,
                503 => refused += 1,
                other => panic!("unexpected {other}"),
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the new password was never used"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!("rotation: {refused} checks refused before the new password was used");
    });
}
