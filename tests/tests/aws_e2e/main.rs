//! End to end on AWS's own local tooling: `examples/aws-orders` runs under `cargo lambda watch`
//! and is invoked over the Lambda Runtime API with API Gateway (REST v1, HTTP API v2), Function URL
//! and SQS events. Checks the verdicts (201 / 400 / 403 / 431 / partial batch failure) and that the
//! function wrote one security event per decision on stdout, the adapter's own refusals included.
//! The function's secrets (the API key and the webhook HMAC key) come from a local moto server
//! through the real AWS SDK (`GUARD_SECRETS_PROVIDER=aws`, `AWS_ENDPOINT_URL`).
//!
//! Needs `cargo-lambda` and `moto_server` (`scripts/setup-tools.sh` installs both into `.tools/venv`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_secretsmanager::config::Credentials;
use base64::Engine as _;
use guard_tests::lambda::LambdaWatch;
use guard_tests::moto::{ACCESS_KEY_ID, Moto, REGION, SECRET_ACCESS_KEY};
use guard_tests::server::repo_root;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const FUNCTION: &str = "aws-orders";
const API_KEY: &str = "e2e-orders-api-key";
const HMAC_KEY: &str = "e2e-webhook-key";
const QUEUE: &str = "arn:aws:sqs:us-east-1:123456789012:orders";
/// The first invocation may wait for cargo (shared target directory) before the function starts.
const FIRST_INVOKE: Duration = Duration::from_secs(600);
const INVOKE: Duration = Duration::from_secs(60);
/// How long to keep watching stdout after the expected events arrived, for unexpected ones.
const SETTLE: Duration = Duration::from_millis(300);

fn fixture(name: &str) -> Value {
    let path = repo_root().join("guard-aws/tests/fixtures/data").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn order() -> Value {
    let path = repo_root().join("examples/orders/order.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn key_id() -> String {
    hex::encode(&Sha256::digest(API_KEY.as_bytes())[..4])
}

/// The decision events (`"event": "guard.decision"`) among the function's stdout lines.
fn decisions(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(|v| v["event"] == "guard.decision")
        .collect()
}

/// Invokes and returns the payload and the decision events this invocation added.
fn invoke(
    watch: &LambdaWatch,
    event: &Value,
    expected_events: usize,
    timeout: Duration,
) -> (Value, Vec<Value>) {
    let before = decisions(&watch.stdout_lines()).len();
    let out = watch.invoke(FUNCTION, event.to_string().as_bytes(), timeout);
    assert_eq!(
        out.status,
        200,
        "invoke API status; body {}",
        String::from_utf8_lossy(&out.body)
    );
    let payload: Value = serde_json::from_slice(&out.body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.body)));
    watch.wait_for_stdout(Duration::from_secs(5), |l| {
        decisions(l).len() >= before + expected_events
    });
    // Settle: events are flushed before the answer, so nothing more may arrive; wait anyway so
    // an extra (duplicate) event would be seen.
    std::thread::sleep(SETTLE);
    let new: Vec<Value> = decisions(&watch.stdout_lines())
        .into_iter()
        .skip(before)
        .collect();
    assert_eq!(
        new.len(),
        expected_events,
        "one security event per decision; got {new:?}\nstderr:\n{}",
        watch.stderr_text()
    );
    (payload, new)
}

fn assert_event(
    e: &Value,
    outcome: &str,
    code: &str,
    status: u16,
    trigger: &str,
    peer: Option<&str>,
) {
    assert_eq!(e["outcome"], outcome, "{e}");
    assert_eq!(e["code"], code, "{e}");
    assert_eq!(e["status"], status, "{e}");
    assert_eq!(e["trigger"], trigger, "{e}");
    assert_eq!(e["cloud"], "aws", "{e}");
    assert_eq!(e["function"], "shop-orders-prod-intake", "{e}");
    assert!(
        e["request_id"].as_str().is_some_and(|s| !s.is_empty()),
        "{e}"
    );
    assert_eq!(e["peer"].as_str(), peer, "{e}");
}

/// Creates the function's two secrets in moto with the real SDK.
fn create_secrets(moto: &Moto) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(moto.endpoint())
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new(
                ACCESS_KEY_ID,
                SECRET_ACCESS_KEY,
                None,
                None,
                "moto",
            ))
            .http_client(guard_aws::secrets::https_client())
            .load()
            .await;
        let client = aws_sdk_secretsmanager::Client::new(&config);
        for (name, value) in [
            ("orders-api-key", API_KEY),
            ("orders-webhook-hmac", HMAC_KEY),
        ] {
            client
                .create_secret()
                .name(name)
                .secret_string(value)
                .send()
                .await
                .expect("create secret in moto");
        }
    });
}

/// `X-Guard-Signature: t=<now>,v1=<hex HMAC-SHA256("<t>.<body>")>`, as the orders senders sign.
fn signature(body: &str) -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut mac = Hmac::<Sha256>::new_from_slice(HMAC_KEY.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[test]
fn orders_function_under_cargo_lambda_watch() {
    let moto = Moto::start();
    moto.reset();
    create_secrets(&moto);
    let endpoint = moto.endpoint();
    let watch = LambdaWatch::start(
        "aws-orders",
        "aws-orders",
        &[
            ("GUARD_SECRETS_PROVIDER", "aws"),
            ("AWS_ENDPOINT_URL", &endpoint),
            ("AWS_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        ],
    );

    // API Gateway REST (v1): a valid order from an allowed address → 201 with the key fingerprint.
    let mut v1 = fixture("ugly-apigw-v1-cognito-capitalised-base64.json");
    v1["requestContext"]["identity"]["sourceIp"] = json!("203.0.113.10");
    let (out, events) = invoke(&watch, &v1, 1, FIRST_INVOKE);
    assert_eq!(out["statusCode"], 201, "{out}");
    let body: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"accepted": order()["order_id"], "items": 2, "key_id": key_id()})
    );
    assert_event(
        &events[0],
        "allow",
        "guard.allow",
        201,
        "http",
        Some("203.0.113.10"),
    );

    // HTTP API (v2): a schema violation from an allowed address → 400 problem+json.
    let mut bad = order();
    bad["items"][0]["qty"] = json!(0);
    let mut v2 = fixture("example-apigw-v2-request-no-authorizer.json");
    v2["requestContext"]["http"]["method"] = json!("POST");
    v2["requestContext"]["http"]["sourceIp"] = json!("198.51.100.7");
    v2["headers"] = json!({"Content-Type": "application/json"});
    v2["body"] = json!(base64::engine::general_purpose::STANDARD.encode(bad.to_string()));
    v2["isBase64Encoded"] = json!(true);
    let (out, events) = invoke(&watch, &v2, 1, INVOKE);
    assert_eq!(out["statusCode"], 400, "{out}");
    assert_eq!(out["headers"]["content-type"], "application/problem+json");
    assert_event(
        &events[0],
        "deny",
        "guard.validate.schema",
        400,
        "http",
        Some("198.51.100.7"),
    );

    // Function URL: a valid order from an address outside the allow-list, unsigned → 403.
    let mut url = fixture("ugly-function-url-iam-base64.json");
    url["requestContext"]["http"]["sourceIp"] = json!("192.0.2.99");
    let (out, events) = invoke(&watch, &url, 1, INVOKE);
    assert_eq!(out["statusCode"], 403, "{out}");
    assert_eq!(events[0]["outcome"], "deny");
    assert_eq!(events[0]["status"], 403);
    assert_eq!(events[0]["peer"], "192.0.2.99");
    assert_eq!(events[0]["code"], "guard.verify.forbidden_address");

    // The same Function URL call from outside, signed with the webhook key held in Secrets
    // Manager → 201: the verifier read the HMAC key from moto through the SDK.
    let mut signed = fixture("example-apigw-v2-request-no-authorizer.json");
    let body = order().to_string();
    signed["requestContext"]["http"]["method"] = json!("POST");
    signed["requestContext"]["http"]["sourceIp"] = json!("192.0.2.99");
    let sig = signature(&body);
    signed["headers"] = json!({
        "content-type": "application/json",
        "x-guard-signature": sig,
    });
    signed["body"] = json!(body);
    signed["isBase64Encoded"] = json!(false);
    let (out, events) = invoke(&watch, &signed, 1, INVOKE);
    assert_eq!(out["statusCode"], 201, "{out}");
    assert_event(
        &events[0],
        "allow",
        "guard.allow",
        201,
        "http",
        Some("192.0.2.99"),
    );
    assert_eq!(events[0]["principal"], "hmac:orders-webhook-hmac");

    // SQS from the orders queue: three records, the second invalid → only it is reported.
    let mut batch = fixture("sqs-orders-batch.json");
    let records = batch["Records"].as_array_mut().unwrap();
    records.truncate(3);
    for r in records.iter_mut() {
        r["eventSourceARN"] = json!(QUEUE);
    }
    let (out, events) = invoke(&watch, &batch, 3, INVOKE);
    assert_eq!(
        out,
        json!({"batchItemFailures": [{"itemIdentifier": "order-msg-2"}]})
    );
    let mut codes: Vec<&str> = events.iter().map(|e| e["code"].as_str().unwrap()).collect();
    codes.sort();
    assert_eq!(
        codes,
        ["guard.allow", "guard.allow", "guard.validate.schema"]
    );
    for e in &events {
        assert_eq!(e["trigger"], "sqs");
        assert_eq!(e["source_id"], QUEUE);
        assert!(e["peer"].is_null(), "messages have no peer: {e}");
    }

    // The adapter's own refusals write their event too. A body flagged base64 that is not → 400.
    let mut broken = v2.clone();
    broken["body"] = json!("%%%not-base64");
    let (out, events) = invoke(&watch, &broken, 1, INVOKE);
    assert_eq!(out["statusCode"], 400, "{out}");
    assert_event(
        &events[0],
        "deny",
        "guard.adapter.malformed_event",
        400,
        "http",
        Some("198.51.100.7"),
    );
    assert_eq!(events[0]["layer"], "adapter");

    // 30,000 distinct header names → 431, not a crashed instance.
    let mut flood = v2.clone();
    flood["headers"] = (0..30_000)
        .map(|i| (format!("x-h-{i}"), json!("v")))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let (out, events) = invoke(&watch, &flood, 1, INVOKE);
    assert_eq!(out["statusCode"], 431, "{out}");
    assert_event(
        &events[0],
        "deny",
        "guard.ingress.headers_too_large",
        431,
        "http",
        Some("198.51.100.7"),
    );

    // A record that claims another event source fails only itself.
    batch["Records"][2]["eventSource"] = json!("aws:kinesis");
    let (out, events) = invoke(&watch, &batch, 3, INVOKE);
    assert_eq!(
        out,
        json!({"batchItemFailures": [{"itemIdentifier": "order-msg-2"}, {"itemIdentifier": "order-msg-3"}]})
    );
    let mut codes: Vec<&str> = events.iter().map(|e| e["code"].as_str().unwrap()).collect();
    codes.sort();
    assert_eq!(
        codes,
        [
            "guard.adapter.malformed_event",
            "guard.allow",
            "guard.validate.schema"
        ]
    );

    // Nothing the function printed carries a secret or the signature it verified.
    std::thread::sleep(SETTLE);
    let stdout = watch.stdout_lines().join("\n");
    let stderr = watch.stderr_text();
    let mac = sig.split("v1=").nth(1).unwrap();
    for secret in [API_KEY, HMAC_KEY, mac] {
        assert!(!stdout.contains(secret), "a secret reached stdout");
        assert!(!stderr.contains(secret), "a secret reached stderr");
    }
    assert_eq!(
        decisions(&watch.stdout_lines()).len(),
        12,
        "one event per decision, no more"
    );
}
