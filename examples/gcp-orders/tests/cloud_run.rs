//! End to end as Cloud Run runs it: the `gcp-orders` binary starts with `PORT` on a free loopback
//! port and gets real HTTP — plain orders, Pub/Sub push envelopes with OIDC tokens signed by a
//! local key (served from a local JWKS), Eventarc CloudEvents in both modes — and, in its own
//! tests, Secret Manager and the metadata server played by a local server that checks the
//! documented requests. Every decision must be one JSON line on stdout; no secret or token may
//! appear in any output.

mod support;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::*;

const API_KEY: &str = "e2e-gcp-orders-api-key";
const HMAC_KEY: &str = "e2e-gcp-webhook-key";
/// Statuses Pub/Sub takes as an acknowledgement.
const ACK: [u16; 5] = [102, 200, 201, 202, 204];

fn key_id(key: &str) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..4])
}

fn assert_event(events: &[Value], status: u16, code: &str, trigger: &str) {
    assert_eq!(events.len(), 1, "one event per decision: {events:?}");
    let e = &events[0];
    assert_eq!(e["status"], status, "{e}");
    assert_eq!(e["code"], code, "{e}");
    assert_eq!(e["trigger"], trigger, "{e}");
    assert_eq!(e["cloud"], "gcp", "{e}");
}

fn order_from(ip: &str, body: impl Into<Vec<u8>>) -> Req {
    post("/orders", body)
        .header("content-type", "application/json")
        .header("x-forwarded-for", ip)
}

fn push(envelope: &Value, token: Option<&str>) -> Req {
    let req = post("/pubsub", envelope.to_string()).header("content-type", "application/json");
    match token {
        Some(t) => req.header("authorization", format!("Bearer {t}")),
        None => req,
    }
}

fn assert_no_secrets(f: &Function, tokens: &[String]) {
    let out = [f.stdout(), f.stderr()].concat().join("\n");
    for needle in [API_KEY, HMAC_KEY, METADATA_TOKEN]
        .into_iter()
        .chain(tokens.iter().map(String::as_str))
    {
        assert!(!out.contains(needle), "output shows a secret or token");
    }
}

fn env_function(google: &Google) -> Function {
    Function::start(&[
        ("GUARD_SECRETS_PROVIDER", "env"),
        ("GUARD_SECRET_ORDERS_API_KEY", API_KEY),
        ("GUARD_SECRET_ORDERS_WEBHOOK_HMAC", HMAC_KEY),
        ("GUARD_GCP_JWKS_URL", &google.url("/oauth2/v3/certs")),
    ])
}

#[test]
fn orders_over_plain_http_give_the_contract_verdicts() {
    let google = Google::start(Secrets::new());
    let f = env_function(&google);
    let order = order();

    // An allowed partner address behind Google's front end: accepted, the key proven.
    let (r, events) = f.send(
        &order_from("203.0.113.7", order.clone()).header(
            "x-cloud-trace-context",
            "4bf92f3577b34da6a3ce929d0e0e4736/1;o=1",
        ),
        1,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["key_id"], key_id(API_KEY));
    assert_eq!(r.json()["accepted"], "ord_7Hx9Kq2LmN4p");
    assert_event(&events, 201, "guard.allow", "http");
    assert_eq!(events[0]["peer"], "203.0.113.7");
    assert_eq!(events[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");

    // A left-most forged address does not help: the front end's entry (right-most) counts.
    let (r, events) = f.send(&order_from("203.0.113.9, 192.0.2.10", order.clone()), 1);
    assert_eq!(r.status, 403, "{}", r.body);
    assert_event(&events, 403, "guard.verify.forbidden_address", "http");

    let mut bad: Value = serde_json::from_slice(&order).unwrap();
    bad["order_id"] = json!("nope");
    let (r, events) = f.send(&order_from("203.0.113.7", bad.to_string()), 1);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert_eq!(events[0]["status"], 400);
    assert_eq!(events.len(), 1);

    let (r, events) = f.send(&order_from("203.0.113.7", vec![b' '; 70 * 1024]), 1);
    assert_eq!(r.status, 413, "{}", r.body);
    assert_event(&events, 413, "guard.ingress.too_large", "http");

    let (r, events) = f.send(
        &post("/orders", order.clone())
            .header("content-type", "text/plain")
            .header("x-forwarded-for", "203.0.113.7"),
        1,
    );
    assert_eq!(r.status, 415, "{}", r.body);
    assert_eq!(events.len(), 1);

    let (r, events) = f.send(&order_from("203.0.113.7", "").method("GET"), 1);
    assert_eq!(r.status, 405, "{}", r.body);
    assert_eq!(events.len(), 1);

    // Outside the partner networks, unsigned: 403; with a signature that does not verify: 401.
    let (r, events) = f.send(&order_from("192.0.2.10", order.clone()), 1);
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(events.len(), 1);
    let forged = format!("t={},v1={}", now(), "ab".repeat(32));
    let (r, events) = f.send(
        &order_from("192.0.2.10", order.clone()).header("x-guard-signature", forged),
        1,
    );
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(events.len(), 1);

    // 5 per second, burst 10, per caller address: a burst of 14 is cut.
    let mut statuses = Vec::new();
    for _ in 0..14 {
        statuses.push(
            order_from("198.51.100.77", order.clone())
                .send(f.port)
                .status,
        );
    }
    assert!(statuses.contains(&201), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let limited = f
        .decisions()
        .iter()
        .filter(|e| e["peer"] == "198.51.100.77")
        .count();
    assert_eq!(limited, 14, "one event per request of the burst");

    assert_no_secrets(&f, &[]);
}

#[test]
fn pubsub_push_is_acked_only_with_a_valid_google_token_from_the_subscription() {
    let google = Google::start(Secrets::new());
    let f = env_function(&google);
    let envelope = json_fixture("pubsub-push.json");
    let good = rs256(KID, &claims(PUSH_AUDIENCE));

    let (r, events) = f.send(&push(&envelope, Some(&good)), 1);
    assert!(ACK.contains(&r.status), "{} {}", r.status, r.body);
    assert_eq!(r.json()["key_id"], key_id(API_KEY));
    assert_event(&events, 201, "guard.allow", "pubsub");
    assert_eq!(events[0]["source_id"], SUBSCRIPTION);

    // Every bad token: refused (never an ack status), handler not called (one deny event).
    let with = |k: &str, v: Value| {
        let mut c = claims(PUSH_AUDIENCE);
        c[k] = v;
        c
    };
    let cases: Vec<(&str, Option<String>, u16)> = vec![
        ("missing", None, 401),
        (
            "wrong aud",
            Some(rs256(KID, &claims("https://other.example.com"))),
            401,
        ),
        (
            "wrong issuer",
            Some(rs256(KID, &with("iss", json!("https://evil.example.com")))),
            401,
        ),
        (
            "expired",
            Some(rs256(KID, &with("exp", json!(now() - 3600)))),
            401,
        ),
        (
            "unknown kid",
            Some(rs256("not-a-google-key", &claims(PUSH_AUDIENCE))),
            401,
        ),
        ("alg none", Some(unsigned(&claims(PUSH_AUDIENCE))), 401),
        (
            "hs256 with the public key",
            Some(hs256_with_public_key(&claims(PUSH_AUDIENCE))),
            401,
        ),
        (
            "wrong email",
            Some(rs256(
                KID,
                &with("email", json!("intruder@evil.iam.gserviceaccount.com")),
            )),
            401,
        ),
        (
            "unverified email",
            Some(rs256(KID, &with("email_verified", json!(false)))),
            401,
        ),
    ];
    let mut tokens = vec![good.clone()];
    for (what, token, status) in cases {
        let (r, events) = f.send(&push(&envelope, token.as_deref()), 1);
        assert_eq!(r.status, status, "{what}: {}", r.body);
        assert!(!ACK.contains(&r.status), "{what} acked");
        assert_eq!(events.len(), 1, "{what}: {events:?}");
        assert_eq!(events[0]["outcome"], "deny", "{what}");
        tokens.extend(token);
    }

    // A valid token on a push from another subscription: refused, not acked.
    let mut foreign = envelope.clone();
    foreign["subscription"] = json!("projects/evil/subscriptions/orders-push");
    let (r, events) = f.send(&push(&foreign, Some(&good)), 1);
    assert_eq!(r.status, 403, "{}", r.body);
    assert_event(&events, 403, "guard.verify.forbidden_source", "pubsub");

    // A base64 bomb: data far over the policy's 64 KiB is refused without decoding it all.
    let mut bomb = envelope.clone();
    bomb["message"]["data"] = json!("QUFB".repeat(30 * 1024));
    let (r, events) = f.send(&push(&bomb, Some(&good)), 1);
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(events.len(), 1);
    bomb["message"]["data"] = json!("QUFB".repeat(1024 * 1024));
    let (r, events) = f.send(&push(&bomb, Some(&good)), 1);
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(events.len(), 1);

    // Not a push envelope: 400 with its event, not a panic.
    let (r, events) = f.send(&push(&json!({"messages": []}), Some(&good)), 1);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_event(&events, 400, "guard.adapter.malformed_event", "http");
    let (r, _) = f.send(&push(&envelope, Some(&good)), 1);
    assert!(ACK.contains(&r.status), "still serving: {}", r.status);

    assert_no_secrets(&f, &tokens);
}

#[test]
fn eventarc_cloud_events_in_both_modes_reach_the_handler_alike() {
    let google = Google::start(Secrets::new());
    let f = env_function(&google);
    let token = rs256(KID, &claims(EVENTS_AUDIENCE));
    let binary = json_fixture("eventarc-pubsub-binary.json");
    let binary_req = |token: &str| {
        let mut req = post("/events", binary["body"].to_string())
            .header("authorization", format!("Bearer {token}"));
        for (k, v) in binary["headers"].as_object().unwrap() {
            req = req.header(k, v.as_str().unwrap());
        }
        req
    };
    let structured = post("/events", data("eventarc-pubsub-structured.json"))
        .header(
            "content-type",
            "application/cloudevents+json; charset=utf-8",
        )
        .header("authorization", format!("Bearer {token}"));

    let (a, ea) = f.send(&binary_req(&token), 1);
    let (b, eb) = f.send(&structured, 1);
    for (r, e) in [(&a, &ea), (&b, &eb)] {
        assert!(ACK.contains(&r.status), "{} {}", r.status, r.body);
        assert_event(e, 201, "guard.allow", "eventarc");
        assert_eq!(e[0]["source_id"], EVENT_SOURCE);
    }
    assert_eq!(a.json(), b.json(), "same body reached the handler");
    assert_eq!(a.json()["key_id"], key_id(API_KEY));

    // The Pub/Sub audience is not the events audience.
    let pubsub_token = rs256(KID, &claims(PUSH_AUDIENCE));
    let (r, events) = f.send(&binary_req(&pubsub_token), 1);
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(events.len(), 1);

    // Binary mode without its ce-* attributes: malformed, 400 with its event.
    let (r, events) = f.send(
        &post("/events", binary["body"].to_string())
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}")),
        1,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_event(&events, 400, "guard.adapter.malformed_event", "http");

    assert_no_secrets(&f, &[token, pubsub_token]);
}

fn secrets(api_key_crc: u32) -> Secrets {
    let mut s = Secrets::new();
    s.insert("orders-api-key".into(), (API_KEY.into(), api_key_crc));
    s.insert(
        "orders-webhook-hmac".into(),
        (HMAC_KEY.into(), crc32c(HMAC_KEY.as_bytes())),
    );
    s
}

fn gcp_function(google: &Google) -> Function {
    Function::start(&[
        ("GUARD_SECRETS_PROVIDER", "gcp"),
        ("GUARD_GCP_SECRETMANAGER_URL", &google.url("")),
        ("GCE_METADATA_HOST", &google.host()),
        ("GUARD_GCP_JWKS_URL", &google.url("/oauth2/v3/certs")),
    ])
}

#[test]
fn secret_manager_is_read_with_one_metadata_token() {
    let google = Google::start(secrets(crc32c(API_KEY.as_bytes())));
    let f = gcp_function(&google);
    for _ in 0..3 {
        let (r, _) = f.send(&order_from("203.0.113.7", order()), 1);
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(r.json()["key_id"], key_id(API_KEY));
    }
    let seen = google.seen();
    let token_path = "/computeMetadata/v1/instance/service-accounts/default/token";
    let tokens: Vec<_> = seen.iter().filter(|s| s.path == token_path).collect();
    assert_eq!(tokens.len(), 1, "token fetched once: {seen:?}");
    for m in seen
        .iter()
        .filter(|s| s.path.starts_with("/computeMetadata/"))
    {
        assert_eq!(m.method, "GET");
        assert_eq!(m.headers["metadata-flavor"], "Google");
    }
    // No GOOGLE_CLOUD_PROJECT: the project comes from the metadata server.
    assert!(
        seen.iter()
            .any(|s| s.path == "/computeMetadata/v1/project/project-id")
    );
    let access: Vec<_> = seen.iter().filter(|s| s.path.starts_with("/v1/")).collect();
    assert!(!access.is_empty());
    for a in &access {
        assert_eq!(a.method, "GET");
        assert_eq!(
            a.path,
            "/v1/projects/shop-prod/secrets/orders-api-key/versions/latest:access"
        );
        assert_eq!(
            a.headers["authorization"],
            format!("Bearer {METADATA_TOKEN}")
        );
    }
    assert_no_secrets(&f, &[]);
}

#[test]
fn a_secret_whose_crc32c_does_not_match_is_never_used() {
    let google = Google::start(secrets(crc32c(API_KEY.as_bytes()) ^ 0x5a5a));
    let f = gcp_function(&google);
    let (r, events) = f.send(&order_from("203.0.113.7", order()), 1);
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(events.len(), 1);
    assert!(
        f.stderr()
            .iter()
            .any(|l| l.contains("could not be prefetched")),
        "{:?}",
        f.stderr()
    );
    assert_no_secrets(&f, &[]);
}

#[test]
fn sigterm_answers_requests_in_flight_flushes_and_exits_zero() {
    use std::io::Write;
    let google = Google::start(Secrets::new());
    let mut f = env_function(&google);
    let order = order();
    let req = order_from("203.0.113.7", order.clone());
    // A request in flight: its head and half its body sent before SIGTERM, the rest after.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", f.port)).unwrap();
    stream.write_all(&req.head()).unwrap();
    stream.write_all(&order[..order.len() / 2]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let before = f.decisions().len();
    let pid = f.pid().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    stream.write_all(&order[order.len() / 2..]).unwrap();
    let r = read_response(stream);
    assert_eq!(r.status, 201, "{}", r.body);
    let status = f.wait_exit();
    assert!(status.success(), "{status:?}");
    let after = f.decisions();
    assert_eq!(
        after.len(),
        before + 1,
        "the in-flight decision was flushed"
    );
    assert_eq!(after[before]["status"], 201);
}
