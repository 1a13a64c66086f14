//! The Guard demo: loads the orders policy (`examples/orders/guard.toml`), wraps the orders handler,
//! sends a few canned requests through the stack in-process and prints each verdict. Security
//! events go to stdout as JSON lines, as they would on a cloud.
//!
//! Run it with `cargo run -p guard-demo`.

use std::convert::Infallible;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use guard_core::audit::{AuditLayer, JsonLinesSink};
use guard_core::request::Peer;
use guard_core::secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
use guard_core::validate::JsonBody;
use guard_core::{GuardBuilder, GuardDeps, GuardRequest, GuardResponse, Policy};
use tower::{Service, ServiceExt, service_fn};

/// The orders handler of DESIGN.md §6 (the secret arrives with the secrets layer).
async fn orders(req: GuardRequest) -> Result<GuardResponse, Infallible> {
    let body = req.extensions().get::<JsonBody>().map(|b| b.0.clone());
    let (id, items) = body
        .as_ref()
        .map(|v| {
            (
                v["order_id"].as_str().unwrap_or_default().to_string(),
                v["items"].as_array().map_or(0, |a| a.len()),
            )
        })
        .unwrap_or_default();
    let out = serde_json::json!({"accepted": id, "items": items});
    let mut resp = http::Response::new(Bytes::from(out.to_string()));
    *resp.status_mut() = http::StatusCode::CREATED;
    Ok(resp)
}

fn request(method: &str, content_type: &str, body: &[u8]) -> GuardRequest {
    let mut req = http::Request::builder()
        .method(method)
        .uri("/orders")
        .header("content-type", content_type)
        .body(Bytes::copy_from_slice(body))
        .expect("static request");
    // What an adapter would set: the address the platform observed (a partner network).
    req.extensions_mut()
        .insert(Peer::new("203.0.113.7".parse().expect("literal address")));
    req
}

fn from_outside(mut req: GuardRequest) -> GuardRequest {
    req.extensions_mut()
        .insert(Peer::new("192.0.2.66".parse().expect("literal address")));
    req
}

/// Demo secrets: `GUARD_SECRET_<NAME>` from the environment, with demo values when unset.
fn demo_secrets() -> SecretStore {
    SecretStore::new(
        |name: &str, version: SecretVersion| -> Result<SecretValue, SecretsError> {
            if version != SecretVersion::Current {
                return Err(SecretsError::not_found(name));
            }
            let var: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            match std::env::var(format!("GUARD_SECRET_{var}")) {
                Ok(v) => Ok(SecretValue::from(v)),
                Err(_) => Ok(SecretValue::from(format!("demo-only-{name}"))),
            }
        },
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../orders");
    let policy = Policy::load(dir.join("guard.toml"))?;
    let order = std::fs::read(dir.join("order.json"))?;
    let sink = JsonLinesSink::stdout(policy.audit.buffer);
    // The policy's stack, with the demo's own sink so it can flush between lines.
    let guard = GuardBuilder::from_policy_with(&policy, GuardDeps::with_secrets(demo_secrets()))?
        .audit(AuditLayer::new(sink.clone()).max_field_len(policy.audit.max_field_len))
        .build();
    let mut svc = guard.wrap(service_fn(orders));

    let mut bad_qty: serde_json::Value = serde_json::from_slice(&order)?;
    bad_qty["items"][0]["qty"] = 0.into();
    let cases: Vec<(&str, GuardRequest)> = vec![
        ("valid order", request("POST", "application/json", &order)),
        (
            "schema violation (qty 0)",
            request("POST", "application/json", &serde_json::to_vec(&bad_qty)?),
        ),
        (
            "duplicate keys",
            request(
                "POST",
                "application/json",
                br#"{"order_id":"a","order_id":"b"}"#,
            ),
        ),
        ("wrong method", request("GET", "application/json", b"")),
        (
            "outside address, unsigned",
            from_outside(request("POST", "application/json", &order)),
        ),
        ("wrong content type", request("POST", "text/plain", &order)),
        ("too deep", request("POST", "application/json", &[b'['; 64])),
    ];
    println!(
        "== Guard demo: {} requests through the orders perimeter ==",
        cases.len()
    );
    for (name, req) in cases {
        let resp = svc.ready().await?.call(req).await?;
        let body = String::from_utf8_lossy(resp.body()).into_owned();
        // Give the audit thread a moment so each event line follows its verdict.
        sink.flush(Duration::from_secs(1));
        println!("verdict: {name:<28} -> {} {body}", resp.status().as_u16());
    }
    sink.flush(Duration::from_secs(2));
    Ok(())
}
