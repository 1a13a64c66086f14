//! The Guard demo: loads the orders policy (`examples/orders/guard.toml`), wraps the orders handler,
//! sends canned requests through the whole stack in-process and prints each verdict. Security
//! events go to stdout as JSON lines, as they would on a cloud.
//!
//! Run it with `scripts/demo.sh` (or `cargo run -p guard-demo`). Secrets come from the
//! environment (`GUARD_SECRET_ORDERS_API_KEY`, `GUARD_SECRET_ORDERS_WEBHOOK_HMAC`); the demo sets
//! demo values for the ones that are unset.

use std::convert::Infallible;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use guard_core::request::Peer;
use guard_core::secrets::SecretHandles;
use guard_core::validate::JsonBody;
use guard_core::{Guard, GuardRequest, GuardResponse, Policy};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tower::{Service, ServiceExt, service_fn};

const DEMO_HMAC_KEY: &str = "demo-only-webhook-key";

/// The orders handler of examples/orders: 201 with the order id, the item count and the first
/// 8 hex characters of SHA-256 of the API key (proof the secret arrived, without showing it).
async fn orders(req: GuardRequest) -> Result<GuardResponse, Infallible> {
    let order = req
        .extensions()
        .get::<JsonBody>()
        .and_then(|b| b.value().ok().cloned());
    let key_id = req
        .extensions()
        .get::<SecretHandles>()
        .and_then(|s| s.get("orders-api-key"))
        .map(|k| hex::encode(&Sha256::digest(k.expose_bytes())[..4]))
        .unwrap_or_default();
    let (id, items) = order
        .as_ref()
        .map(|v| {
            (
                v["order_id"].as_str().unwrap_or_default().to_string(),
                v["items"].as_array().map_or(0, |a| a.len()),
            )
        })
        .unwrap_or_default();
    let out = serde_json::json!({"accepted": id, "items": items, "key_id": key_id});
    let mut resp = http::Response::new(Bytes::from(out.to_string()));
    *resp.status_mut() = http::StatusCode::CREATED;
    Ok(resp)
}

/// A request as an adapter would hand it over, from `peer` (the address the platform observed).
fn request(method: &str, content_type: &str, body: &[u8], peer: &str) -> GuardRequest {
    let mut req = http::Request::builder()
        .method(method)
        .uri("/orders")
        .header("content-type", content_type)
        .body(Bytes::copy_from_slice(body))
        .expect("static request");
    req.extensions_mut()
        .insert(Peer::new(peer.parse().expect("literal address")));
    req
}

/// Signs like the orders webhook senders: `X-Guard-Signature: t=<unix>,v1=<hex HMAC-SHA256("<t>.<body>")>`.
fn signed(mut req: GuardRequest, key: &str) -> GuardRequest {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(req.body());
    let sig = hex::encode(mac.finalize().into_bytes());
    let value = format!("t={t},v1={sig}");
    req.headers_mut().insert(
        "x-guard-signature",
        value.parse().expect("ascii header value"),
    );
    req
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Demo secrets: when the caller did not set them, run a child copy of this process with demo
    // values (setting variables in-process needs `unsafe` in edition 2024, which we forbid).
    let wanted = [
        ("GUARD_SECRET_ORDERS_API_KEY", "demo-only-api-key"),
        ("GUARD_SECRET_ORDERS_WEBHOOK_HMAC", DEMO_HMAC_KEY),
    ];
    if wanted.iter().any(|(v, _)| std::env::var_os(v).is_none()) {
        let status = std::process::Command::new(std::env::current_exe()?)
            .envs(
                wanted
                    .iter()
                    .filter(|(v, _)| std::env::var_os(v).is_none())
                    .copied(),
            )
            .status()?;
        std::process::exit(status.code().unwrap_or(1));
    }
    let hmac_key = std::env::var("GUARD_SECRET_ORDERS_WEBHOOK_HMAC")?;

    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../orders");
    let policy = Policy::load(dir.join("guard.toml"))?;
    let order = std::fs::read(dir.join("order.json"))?;
    let guard = Guard::from_policy(&policy)?;
    if let Err(errors) = guard.prefetch().await {
        eprintln!("prefetch failed for {} secret(s)", errors.len());
    }
    let mut svc = guard.wrap(service_fn(orders));

    let mut bad_qty: serde_json::Value = serde_json::from_slice(&order)?;
    bad_qty["items"][0]["qty"] = 0.into();
    let partner = "203.0.113.7";
    let outsider = "192.0.2.66";
    let replayed = signed(
        request("POST", "application/json", &order, outsider),
        &hmac_key,
    );
    let cases: Vec<(&str, GuardRequest)> = vec![
        (
            "valid order, partner network",
            request("POST", "application/json", &order, partner),
        ),
        (
            "outside address, unsigned",
            request("POST", "application/json", &order, outsider),
        ),
        ("outside address, signed", replayed.clone()),
        ("same signature replayed", replayed),
        (
            "outside address, wrong key",
            signed(
                request("POST", "application/json", &order, outsider),
                "not-the-key",
            ),
        ),
        (
            "schema violation (qty 0)",
            request(
                "POST",
                "application/json",
                &serde_json::to_vec(&bad_qty)?,
                partner,
            ),
        ),
        (
            "duplicate keys",
            request(
                "POST",
                "application/json",
                br#"{"order_id":"a","order_id":"b"}"#,
                partner,
            ),
        ),
        (
            "wrong method",
            request("GET", "application/json", b"", partner),
        ),
        (
            "wrong content type",
            request("POST", "text/plain", &order, partner),
        ),
        (
            "too deep",
            request("POST", "application/json", &[b'['; 64], partner),
        ),
    ];
    println!(
        "== Guard demo: {} requests through the orders perimeter ==",
        cases.len()
    );
    for (name, req) in cases {
        let resp = svc.ready().await?.call(req).await?;
        let status = resp.status().as_u16();
        let body = String::from_utf8_lossy(resp.body()).into_owned();
        // Let the audit thread write this request's event before the verdict line.
        guard.flush_audit(Duration::from_secs(1));
        println!("verdict: {name:<30} -> {status} {body}");
    }

    // Rate limit: burst 10 per caller address. Twelve quick orders from one partner address: the
    // first ten pass, then 429 with Retry-After.
    let burst_peer = "198.51.100.42";
    let mut last = (0, String::new(), None);
    let mut admitted = 0;
    for _ in 0..12 {
        let req = request("POST", "application/json", &order, burst_peer);
        let resp = svc.ready().await?.call(req).await?;
        if resp.status().is_success() {
            admitted += 1;
        }
        let retry = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        last = (
            resp.status().as_u16(),
            String::from_utf8_lossy(resp.body()).into_owned(),
            retry,
        );
    }
    guard.flush_audit(Duration::from_secs(2));
    println!(
        "verdict: {:<30} -> {admitted} admitted, then {} {} (Retry-After: {})",
        "12 quick orders, one address",
        last.0,
        last.1,
        last.2.unwrap_or_default()
    );
    Ok(())
}
