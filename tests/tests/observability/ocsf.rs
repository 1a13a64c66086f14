//! `[audit] format = "ocsf"`: the orders perimeter's events for an allowed order and for each
//! kind of denial, written by the OCSF sink and accepted by the OCSF schema validator
//! (`scripts/tools/ocsf_validate.py`: `ocsf-json-schema`'s OCSF 1.5.0 class schema with the
//! declared profiles, checked by `jsonschema`).

use std::io::Write;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use guard_core::audit::{AuditLayer, JsonLinesSink};
use guard_core::request::{MessageTrigger, Peer, Trigger};
use guard_core::{GuardBuilder, GuardDeps, GuardRequest, GuardResponse, Policy};
use guard_secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
use guard_tests::server::{repo_root, tool};
use tower::{Layer, ServiceExt, service_fn};

const WEBHOOK_KEY: &str = "ocsf-webhook-key";

/// Lines written by the sink, shared with the test.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn handler(_req: GuardRequest) -> Result<GuardResponse, std::convert::Infallible> {
    let mut r = GuardResponse::new(Bytes::from_static(b"{}"));
    *r.status_mut() = http::StatusCode::CREATED;
    Ok(r)
}

fn stack(
    lines: &Lines,
    with_api_key: bool,
) -> (
    impl tower::Service<
        GuardRequest,
        Response = GuardResponse,
        Error = std::convert::Infallible,
        Future: Send,
    > + Clone,
    JsonLinesSink,
) {
    let orders = repo_root().join("examples/orders");
    let text = std::fs::read_to_string(orders.join("guard.toml")).unwrap();
    assert!(
        text.contains("[audit]\n"),
        "the orders policy has an [audit] section"
    );
    let text = text.replacen("[audit]\n", "[audit]\nformat = \"ocsf\"\n", 1);
    let schema = std::fs::read_to_string(orders.join("order.schema.json")).unwrap();
    let policy = Policy::from_toml_str_with_schema(&text, &schema).unwrap();
    let source = move |name: &str, _: SecretVersion| -> Result<SecretValue, SecretsError> {
        match name {
            "orders-webhook-hmac" => Ok(SecretValue::from(WEBHOOK_KEY)),
            "orders-api-key" if with_api_key => Ok(SecretValue::from("ocsf-api-key")),
            _ => Err(SecretsError::not_found(name)),
        }
    };
    let sink = JsonLinesSink::ocsf(lines.clone(), 1024);
    let guard =
        GuardBuilder::from_policy_with(&policy, GuardDeps::with_secrets(SecretStore::new(source)))
            .unwrap()
            .audit(AuditLayer::new(sink.clone()).function_name("shop-orders-prod-intake"))
            .build();
    (guard.layer(service_fn(handler)), sink)
}

fn post(peer: &str, body: Vec<u8>) -> GuardRequest {
    let mut req = http::Request::post("/orders")
        .header("content-type", "application/json")
        .body(Bytes::from(body))
        .unwrap();
    req.extensions_mut().insert(Trigger::Http);
    req.extensions_mut()
        .insert(Peer::new(peer.parse().unwrap()));
    req
}

#[tokio::test]
async fn an_allow_and_every_kind_of_denial_are_valid_ocsf_api_activity() {
    let lines = Lines::default();
    let (svc, sink) = stack(&lines, true);
    let order = crate::order();
    let partner = "203.0.113.5";
    let outside = "192.0.2.77";
    let mut expected: Vec<(u16, &str)> = Vec::new();
    let mut send = async |req: GuardRequest, status: u16, code: &'static str| {
        let resp = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), status, "{code}");
        expected.push((status, code));
    };

    send(post(partner, order.clone()), 201, "guard.allow").await;
    let mut signed = post(outside, order.clone());
    let sig = crate::guard_signature(WEBHOOK_KEY.as_bytes(), &order);
    signed
        .headers_mut()
        .insert("x-guard-signature", sig.parse().unwrap());
    send(signed, 201, "guard.allow").await;
    send(
        post(partner, vec![b' '; 70_000]),
        413,
        "guard.ingress.too_large",
    )
    .await;
    let mut text = post(partner, order.clone());
    text.headers_mut()
        .insert("content-type", "text/plain".parse().unwrap());
    send(text, 415, "guard.ingress.unsupported_media_type").await;
    let mut get = post(partner, Vec::new());
    *get.method_mut() = http::Method::GET;
    send(get, 405, "guard.ingress.method_not_allowed").await;
    let deep = format!("{}{}", "[".repeat(40), "]".repeat(40)).into_bytes();
    send(post(partner, deep), 400, "guard.ingress.too_deep").await;
    send(
        post(partner, b"{\"order_id\":".to_vec()),
        400,
        "guard.validate.malformed_json",
    )
    .await;
    send(
        post(partner, b"{\"order_id\":\"x\"}".to_vec()),
        400,
        "guard.validate.schema",
    )
    .await;
    send(
        post(outside, order.clone()),
        403,
        "guard.verify.forbidden_address",
    )
    .await;
    let mut forged = post(outside, order.clone());
    let bad = crate::guard_signature(b"not-the-key", &order);
    forged
        .headers_mut()
        .insert("x-guard-signature", bad.parse().unwrap());
    send(forged, 401, "guard.verify.bad_signature").await;
    let mut foreign = post(partner, order.clone());
    foreign.extensions_mut().remove::<Peer>();
    foreign
        .extensions_mut()
        .insert(Trigger::Message(MessageTrigger::new(
            "sqs",
            "arn:aws:sqs:us-east-1:123456789012:returns",
            "m-1",
        )));
    send(foreign, 403, "guard.verify.forbidden_source").await;
    // 5 per second, burst 10, per caller address: the burst is spent by now or within a few more.
    let limited = "198.51.100.9";
    let mut status = 0;
    for _ in 0..30 {
        status = svc
            .clone()
            .oneshot(post(limited, order.clone()))
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 429 {
            break;
        }
    }
    assert_eq!(status, 429, "the limiter answered");
    let (no_key, no_key_sink) = stack(&lines, false);
    let resp = no_key.oneshot(post(partner, order.clone())).await.unwrap();
    assert_eq!(resp.status(), 503);
    assert!(sink.flush(Duration::from_secs(2)) && no_key_sink.flush(Duration::from_secs(2)));

    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (status, code) in expected.iter().chain([
        &(429, "guard.rate.limited"),
        &(503, "guard.secrets.unavailable"),
    ]) {
        assert!(
            events.iter().any(|e| e["metadata"]["event_code"] == *code
                && e["status_code"].as_str() == Some(status.to_string().as_str())),
            "an OCSF event for {status} {code}"
        );
    }
    assert!(events.iter().all(|e| e["class_uid"] == 6003));

    let file = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ocsf-events-{}.jsonl", std::process::id()));
    std::fs::write(&file, &text).unwrap();
    let out = Command::new(tool("python3"))
        .arg(repo_root().join("scripts/tools/ocsf_validate.py"))
        .arg(&file)
        .output()
        .expect("run the OCSF validator");
    let report = String::from_utf8_lossy(&out.stdout);
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "the OCSF validator refused events:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains(&format!("{} passed, 0 failed", events.len())),
        "{report}"
    );
}
