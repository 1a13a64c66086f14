//! The schema engine's safety properties and policy loading.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use guard_core::Policy;
use guard_core::validate::ValidateLayer;
use serde_json::json;
use tower::Layer;

use crate::support::{CountingHandler, call, json_post, problem};

#[tokio::test]
async fn redos_pattern_is_decided_in_linear_time() {
    // `^(a+)+$` against 40 × "a" + "!" takes ~2^40 steps on a backtracking engine; the linear-time
    // engine decides it at once. The bound below is generous on purpose (a behaviour check, not a
    // benchmark: the measured figure is in BENCHMARKS.md).
    let schema =
        json!({"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}});
    let h = CountingHandler::default();
    let mut svc = ValidateLayer::with_schema(&schema)
        .unwrap()
        .layer(h.clone());
    let body = serde_json::to_vec(&json!({"s": format!("{}!", "a".repeat(40))})).unwrap();
    let start = Instant::now();
    let resp = call(&mut svc, json_post(&body)).await;
    let took = start.elapsed();
    assert_eq!(resp.status(), 400);
    assert_eq!(problem(&resp)["code"], "guard.validate.schema");
    assert!(took < Duration::from_millis(50), "took {took:?}");
    assert_eq!(h.calls(), 0);
}

#[test]
fn remote_ref_fails_at_build_without_any_network_call() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let schema = json!({"$ref": format!("http://127.0.0.1:{port}/order.schema.json")});
    let err = ValidateLayer::with_schema(&schema).unwrap_err();
    assert!(err.to_string().contains("schema does not compile"), "{err}");
    std::thread::sleep(Duration::from_millis(50));
    while listener.accept().is_ok() {
        hits.fetch_add(1, Ordering::SeqCst);
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "no connection was attempted"
    );
}

#[test]
fn file_ref_is_not_resolved_either() {
    let schema = json!({"$ref": "file:///etc/passwd"});
    assert!(ValidateLayer::with_schema(&schema).is_err());
}

#[test]
fn a_policy_with_three_mistakes_reports_all_three_with_key_paths() {
    let dir = std::env::temp_dir().join(format!("guard-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("guard.toml");
    std::fs::write(
        &file,
        r#"
[function]
name = "shop-orders-prod-intake"

[ingress]
max_body_bytes = 0                # mistake 1: zero limit
methods = ["POST", "P OST"]       # mistake 2: not a method

[validate]
schema = "missing.schema.json"    # mistake 3: no such file
"#,
    )
    .unwrap();
    let err = Policy::load(&file).unwrap_err();
    let paths: Vec<&str> = err.problems().iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths.len(), 3, "{err}");
    assert!(paths.contains(&"ingress.max_body_bytes"), "{err}");
    assert!(paths.contains(&"ingress.methods[1]"), "{err}");
    assert!(paths.contains(&"validate.schema"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_policy_whose_schema_does_not_compile_is_refused_at_load() {
    let dir = std::env::temp_dir().join(format!("guard-policy-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("s.json"),
        r#"{"$ref": "https://example.com/x.json"}"#,
    )
    .unwrap();
    std::fs::write(dir.join("guard.toml"), "[validate]\nschema = \"s.json\"\n").unwrap();
    let err = Policy::load(dir.join("guard.toml")).unwrap_err();
    assert_eq!(err.problems()[0].path, "validate.schema");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_orders_policy_loads() {
    let policy = Policy::load(crate::support::repo_file("examples/orders/guard.toml")).unwrap();
    assert!(policy.warnings().is_empty(), "{:?}", policy.warnings());
    assert_eq!(policy.max_body_bytes(), 64 * 1024);
    let store = guard_secrets::SecretStore::new(
        |_: &str,
         _: guard_secrets::SecretVersion|
         -> Result<guard_secrets::SecretValue, guard_secrets::SecretsError> {
            Ok(guard_secrets::SecretValue::from("test-key"))
        },
    );
    let deps = guard_core::GuardDeps::with_secrets(store);
    assert!(guard_core::GuardBuilder::from_policy_with(&policy, deps).is_ok());
}

#[test]
fn a_policy_without_verify_is_refused_unless_it_says_so() {
    let policy = Policy::from_toml_str("[ingress]\nmax_depth = 4").unwrap();
    let err = guard_core::Guard::from_policy(&policy).unwrap_err();
    assert_eq!(err.problems()[0].path, "verify");
    let explicit = Policy::from_toml_str("[function]\nallow_unverified = true").unwrap();
    assert!(guard_core::Guard::from_policy(&explicit).is_ok());
}

#[test]
fn hmac_without_a_secret_store_is_a_build_error() {
    let policy =
        Policy::from_toml_str("[verify.hmac]\npreset = \"github\"\nsecret = \"webhook\"").unwrap();
    let err = guard_core::Guard::from_policy(&policy).unwrap_err();
    assert_eq!(err.problems()[0].path, "verify.hmac.secret");
}

#[test]
fn a_cloud_secrets_provider_needs_its_adapter() {
    let policy = Policy::from_toml_str(
        "[function]\nallow_unverified = true\n[secrets]\nprovider = \"aws\"\nrequired = [\"k\"]",
    )
    .unwrap();
    let err = guard_core::Guard::from_policy(&policy).unwrap_err();
    assert_eq!(err.problems()[0].path, "secrets.provider");
}
