//! End to end on Azure Functions' custom-handler contract: `examples/azure-orders` is started as
//! the Functions host starts it (working directory = the app root with `host.json` and the
//! functions' `function.json`, `FUNCTIONS_CUSTOMHANDLER_PORT` on a free loopback port) and is sent
//! the host's documented requests over real HTTP: invocation mode (`POST /orders`, `POST
//! /orders-queue` with `{"Data", "Metadata"}`) and proxy mode (`/api/orders`). Checks the orders
//! verdicts, queue replies (non-2xx for a refused message), Easy Auth, one security event per
//! decision, no secret in the output, and Key Vault with the managed identity against a local
//! server that implements the documented requests.
//!
//! The payload shapes follow the Azure Functions custom-handler documentation (request and
//! response payloads of invocation mode, `enableProxyingHttpRequest`) and the host's HTTP and
//! queue binding serialization; see `host.rs` and `fixtures/`.

mod host;
mod keyvault;

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use host::{Handler, Mode, app_root};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const API_KEY: &str = "e2e-azure-orders-api-key";
const HMAC_KEY: &str = "e2e-azure-webhook-key";

fn env_secrets() -> Vec<(&'static str, &'static str)> {
    vec![
        ("GUARD_SECRETS_PROVIDER", "env"),
        ("GUARD_SECRET_ORDERS_API_KEY", API_KEY),
        ("GUARD_SECRET_ORDERS_WEBHOOK_HMAC", HMAC_KEY),
    ]
}

fn order() -> Value {
    let path = guard_tests::server::repo_root().join("examples/orders/order.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn key_id(key: &str) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..4])
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `t=<t>,v1=<hex HMAC-SHA256("<t>.<body>")>` with `key`.
fn signature_at(key: &str, t: u64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn json_from(ip: &str) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".to_owned()),
        ("x-forwarded-for", ip.to_owned()),
    ]
}

/// The orders contract in one mode. `net` is the third octet's offset so that each mode's
/// callers have their own addresses (the limiter counts per address).
fn orders_contract(h: &Handler, mode: Mode, net: u8) -> usize {
    let ok = order().to_string();
    let ip = |n: u8| format!("203.0.113.{}", net + n);
    let mut decisions = 0;
    let mut call = |method: &str, headers: &[(&str, String)], body: &str| {
        decisions += 1;
        h.client(mode, method, headers, body)
    };

    // Valid order from a partner network → 201 with the key fingerprint.
    let r = call("POST", &json_from(&ip(1)), &ok);
    assert_eq!(r.status, 201, "{mode:?}: {}", r.body);
    assert_eq!(
        r.json(),
        json!({"accepted": order()["order_id"], "items": 2, "key_id": key_id(API_KEY)})
    );

    // Each schema break → 400.
    let breaks: [(&str, Value); 5] = [
        ("/items/0/qty", json!(0)),
        ("/currency", json!("JPY")),
        ("/order_id", json!("nope")),
        ("/customer_email", json!("not an email")),
        ("/extra", json!(true)),
    ];
    for (i, (pointer, value)) in breaks.iter().enumerate() {
        let mut bad = order();
        match bad.pointer_mut(pointer) {
            Some(slot) => *slot = value.clone(),
            None => {
                bad["extra"] = value.clone();
            }
        }
        let r = call("POST", &json_from(&ip(2 + i as u8)), &bad.to_string());
        assert_eq!(r.status, 400, "{mode:?} {pointer}: {}", r.body);
        assert!(r.headers["content-type"].starts_with("application/problem+json"));
    }

    // Oversize (64 KiB + 1) → 413; wrong content type → 415; GET → 405.
    let big = format!("{{\"pad\":\"{}\"}}", "a".repeat(65536));
    assert_eq!(
        call("POST", &json_from(&ip(8)), &big).status,
        413,
        "{mode:?}"
    );
    let text = vec![
        ("content-type", "text/plain".to_owned()),
        ("x-forwarded-for", ip(9)),
    ];
    assert_eq!(call("POST", &text, &ok).status, 415, "{mode:?}");
    assert_eq!(call("GET", &json_from(&ip(10)), "").status, 405, "{mode:?}");

    // Outside address → 403; a spoofed left-most entry changes nothing.
    let outside = format!("198.18.{net}.1");
    let r = call(
        "POST",
        &json_from(&format!("203.0.113.200, {outside}")),
        &ok,
    );
    assert_eq!(r.status, 403, "{mode:?}: {}", r.body);

    // Outside address with a valid signature → 201; replay, stale, tampered → 401. Each mode
    // signs its own order (a signature is accepted once, whichever way it arrives).
    let mut own = order();
    own["order_id"] = json!(format!("ord_Signed{mode:?}"));
    let ok = own.to_string();
    let t = now();
    let signed = |sig: String| {
        let mut h = json_from(&outside);
        h.push(("x-guard-signature", sig));
        h
    };
    let good = signature_at(HMAC_KEY, t, &ok);
    let r = call("POST", &signed(good.clone()), &ok);
    assert_eq!(r.status, 201, "{mode:?} signed: {}", r.body);
    assert_eq!(
        call("POST", &signed(good), &ok).status,
        401,
        "{mode:?} replay"
    );
    let stale = signature_at(HMAC_KEY, t - 1000, &ok);
    assert_eq!(
        call("POST", &signed(stale), &ok).status,
        401,
        "{mode:?} stale"
    );
    let tampered = signature_at(HMAC_KEY, t, &ok).replace("v1=", "v1=0");
    assert_eq!(
        call("POST", &signed(tampered), &ok).status,
        401,
        "{mode:?} tampered"
    );

    // Burst of 14 from one address → 429 with Retry-After once the burst of 10 is spent.
    let mut limited = None;
    for _ in 0..14 {
        let r = call("POST", &json_from(&ip(11)), &ok);
        if r.status == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status, 201, "{mode:?} burst: {}", r.body);
    }
    let limited = limited.unwrap_or_else(|| panic!("{mode:?}: no 429 in a burst of 14"));
    assert!(
        limited
            .headers
            .get("retry-after")
            .is_some_and(|v| v.parse::<u64>().is_ok()),
        "{mode:?}: {:?}",
        limited.headers
    );
    decisions
}

#[test]
fn orders_contract_in_invocation_and_proxy_mode() {
    let h = Handler::start(&app_root(), &env_secrets());
    let mut sent = orders_contract(&h, Mode::Invocation, 0);
    sent += orders_contract(&h, Mode::Proxy, 100);
    let events = h.wait_for_decisions(sent);
    assert_eq!(events.len(), sent, "one security event per decision");
    for e in &events {
        assert_eq!(e["cloud"], "azure", "{e}");
        assert_eq!(e["trigger"], "http", "{e}");
        assert_eq!(e["function"], "shop-orders-prod-intake", "{e}");
        assert!(
            e["request_id"].as_str().is_some_and(|s| !s.is_empty()) || e["peer"].is_string(),
            "{e}"
        );
    }
    // Peers are the right-most X-Forwarded-For entry, never the spoofed left-most one.
    assert!(events.iter().all(|e| e["peer"] != "203.0.113.200"));
    assert!(
        events
            .iter()
            .any(|e| e["peer"] == "198.18.0.1" && e["status"] == 403)
    );
    // Invocation mode: the request id is the host's invocation id.
    assert!(events.iter().any(|e| {
        e["request_id"]
            .as_str()
            .is_some_and(|s| s.starts_with("5d2e3c7a-"))
    }));
    let output = h.all_output();
    assert!(
        !output.contains(API_KEY) && !output.contains(HMAC_KEY),
        "a secret in the output"
    );
}

fn queue_envelope(message: &str, id: &str) -> Value {
    json!({
        "Data": {"msg": message},
        "Metadata": {
            "DequeueCount": 1,
            "ExpirationTime": "2026-12-08T20:00:00+00:00",
            "Id": id,
            "InsertionTime": "2026-12-01T20:00:00+00:00",
            "NextVisibleTime": "2026-12-01T20:10:00+00:00",
            "PopReceipt": "AgAAAAMAAAAAAAAA",
            "sys": {"MethodName": "orders-queue", "UtcNow": "2026-12-01T20:00:01.000Z", "RandGuid": "7c9e6679-7425-40de-944b-e07fc1f90ae7"}
        }
    })
}

#[test]
fn queue_messages_are_acked_only_when_valid_and_from_the_orders_queue() {
    // The app root plus a function on another queue (`payments`), as a second deployment would have.
    let root = std::env::temp_dir().join(format!("guard-azure-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for dir in ["orders", "orders-queue", "payments-queue"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    for f in [
        "host.json",
        "orders/function.json",
        "orders-queue/function.json",
    ] {
        std::fs::copy(app_root().join(f), root.join(f)).unwrap();
    }
    std::fs::write(
        root.join("payments-queue/function.json"),
        r#"{"bindings":[{"type":"queueTrigger","direction":"in","name":"msg","queueName":"payments","connection":"AzureWebJobsStorage"}]}"#,
    )
    .unwrap();
    let h = Handler::start(&root, &env_secrets());

    let ok = order().to_string();
    let a = h.invoke("orders-queue", &queue_envelope(&ok, "m-valid"));
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["Outputs"], json!({}));

    let mut bad = order();
    bad["items"] = json!([]);
    let a = h.invoke("orders-queue", &queue_envelope(&bad.to_string(), "m-bad"));
    assert_eq!(a.status, 400, "a refused message is never acked");

    let a = h.invoke("payments-queue", &queue_envelope(&ok, "m-foreign"));
    assert_eq!(a.status, 403, "a message from a foreign queue is refused");

    let a = h.send("POST", "/orders-queue", &[], b"{not json");
    assert_eq!(a.status, 400, "a malformed envelope is refused");

    let events = h.wait_for_decisions(4);
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(events[0]["outcome"], "allow");
    assert_eq!(
        events[0]["status"], 201,
        "the handler answered the valid message"
    );
    assert_eq!(events[0]["trigger"], "azure-queue");
    assert_eq!(events[0]["source_id"], "orders");
    assert_eq!(events[1]["code"], "guard.validate.schema");
    assert_eq!(events[2]["source_id"], "payments");
    assert_eq!(events[2]["status"], 403);
    assert_eq!(events[3]["code"], "guard.adapter.malformed_event");
    drop(h);
    let _ = std::fs::remove_dir_all(&root);
}

fn principal(roles: &[&str]) -> String {
    use base64::Engine as _;
    let mut claims = vec![
        json!({"typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name", "val": "ana@shop.example"}),
        json!({"typ": "aud", "val": "api://orders"}),
    ];
    claims.extend(roles.iter().map(|r| json!({"typ": "roles", "val": r})));
    let p = json!({
        "auth_typ": "aad",
        "name_typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
        "role_typ": "roles",
        "claims": claims,
    });
    base64::engine::general_purpose::STANDARD.encode(p.to_string())
}

#[test]
fn forged_easy_auth_is_ignored_when_platform_auth_is_off() {
    let h = Handler::start(&app_root(), &env_secrets());
    let forged = principal(&["orders.write"]);
    for mode in [Mode::Invocation, Mode::Proxy] {
        let mut headers = json_from("198.18.5.5");
        headers.push(("x-ms-client-principal", forged.clone()));
        headers.push(("x-ms-client-principal-name", "ana@shop.example".to_owned()));
        let r = h.client(mode, "POST", &headers, &order().to_string());
        assert_eq!(
            r.status, 403,
            "{mode:?}: a forged principal admits nothing: {}",
            r.body
        );
    }
    let events = h.wait_for_decisions(2);
    assert_eq!(events.len(), 2);
    let output = h.all_output();
    assert!(!output.contains("ana@shop.example") && !output.contains(&forged));
    assert!(
        !output.to_ascii_lowercase().contains("x-ms-"),
        "X-MS-* headers are never logged"
    );
}

#[test]
fn easy_auth_when_the_policy_trusts_it() {
    let policy =
        guard_tests::server::repo_root().join("tests/tests/azure_e2e/fixtures/easy-auth.toml");
    let mut env = env_secrets();
    let policy = policy.to_string_lossy().into_owned();
    env.push(("GUARD_POLICY", &policy));
    let mut h = Handler::start(&app_root(), &env);
    let ok = order().to_string();
    let with = |p: String| {
        let mut headers = json_from("198.18.6.6");
        headers.push(("x-ms-client-principal", p));
        headers
    };
    for mode in [Mode::Invocation, Mode::Proxy] {
        let r = h.client(mode, "POST", &with(principal(&["orders.write"])), &ok);
        assert_eq!(r.status, 201, "{mode:?}: {}", r.body);
        let r = h.client(mode, "POST", &with(principal(&["orders.read"])), &ok);
        assert_eq!(r.status, 403, "{mode:?}: role requirement unmet");
        let r = h.client(mode, "POST", &with("%%% not base64 %%%".to_owned()), &ok);
        assert_eq!(r.status, 401, "{mode:?}: garbage");
        let r = h.client(
            mode,
            "POST",
            &with(base64_of(&[0xff, 0x00, 0x7b, 0x22])),
            &ok,
        );
        assert_eq!(r.status, 401, "{mode:?}: base64 of garbage");
        let r = h.client(mode, "POST", &with("A".repeat(20 * 1024)), &ok);
        assert_eq!(r.status, 401, "{mode:?}: over the Easy Auth size limit");
        let r = h.client(mode, "POST", &json_from("198.18.6.6"), &ok);
        assert_eq!(r.status, 401, "{mode:?}: no principal");
    }
    // A 1 MB principal reaches the verifier in both modes: 401, one event, no panic.
    let huge = "A".repeat(1024 * 1024);
    for mode in [Mode::Invocation, Mode::Proxy] {
        let mut headers = json_from("198.18.6.6");
        headers.push(("x-ms-client-principal", huge.clone()));
        let r = h.client(mode, "POST", &headers, &ok);
        assert_eq!(r.status, 401, "{mode:?}: a 1 MB principal");
        assert_eq!(problem_code(&r.body), "guard.verify.bad_token", "{mode:?}");
    }
    // Every other header keeps the generic limits (64 KiB of header fields → 431).
    for mode in [Mode::Invocation, Mode::Proxy] {
        let mut headers = with(principal(&["orders.write"]));
        headers.push(("x-padding", "p".repeat(100 * 1024)));
        let r = h.client(mode, "POST", &headers, &ok);
        assert_eq!(r.status, 431, "{mode:?}: an oversized ordinary header");
    }
    // Far past the 2 MiB made for the principal, the transport refuses first: the envelope is
    // over the server's body limit (413), the head over its read buffer (431, hyper's own
    // answer: it checks the buffer after each read, so a head a little over the limit may still
    // be read whole, and then the verifier answers 401); one event each.
    let mut headers = json_from("198.18.6.6");
    headers.push(("x-ms-client-principal", "A".repeat(3 * 1024 * 1024)));
    let a = h.invoke("orders", &host::http_envelope("POST", &headers, &ok));
    assert_eq!(
        a.status, 413,
        "invocation mode: envelope over the body limit"
    );
    let mut headers = json_from("198.18.6.6");
    headers.push(("x-ms-client-principal", "A".repeat(16 * 1024 * 1024)));
    let a = h.send("POST", "/api/orders", &headers, ok.as_bytes());
    assert_eq!(a.status, 431, "proxy mode: head over the server's buffer");
    assert!(h.is_running(), "the handler survived");
    let events = h.wait_for_decisions(18);
    assert_eq!(events.len(), 18, "one event per decision: {events:?}");
    assert!(events.iter().any(|e| {
        e["principal"]
            .as_str()
            .is_some_and(|p| p.contains("ana@shop.example"))
    }));
    let codes: Vec<&str> = events[12..]
        .iter()
        .map(|e| e["code"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        codes,
        [
            "guard.verify.bad_token",
            "guard.verify.bad_token",
            "guard.ingress.headers_too_large",
            "guard.ingress.headers_too_large",
            "guard.ingress.too_large",
            "guard.ingress.headers_too_large",
        ]
    );
    assert!(
        !h.all_output().contains(&huge[..64]),
        "the principal is never logged"
    );
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn problem_code(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[test]
fn event_grid_handshakes_only_for_configured_subscription_and_origin() {
    let mut env = env_secrets();
    env.push(("GUARD_AZURE_EVENTGRID_SUBSCRIPTIONS", "orders-events"));
    env.push(("GUARD_AZURE_WEBHOOK_ORIGINS", "eventgrid.azure.net"));
    let h = Handler::start(&app_root(), &env);
    let path = guard_tests::server::repo_root()
        .join("tests/tests/azure_e2e/fixtures/eventgrid-subscription-validation.json");
    let validation = std::fs::read_to_string(path).unwrap();
    let code = "512d38b6-c7b8-40c8-89fe-f46f9e9622b6";
    let headers = |subscription: &str| {
        vec![
            ("content-type", "application/json".to_owned()),
            ("aeg-event-type", "SubscriptionValidation".to_owned()),
            ("aeg-subscription-name", subscription.to_owned()),
            ("x-forwarded-for", "52.160.0.10".to_owned()),
        ]
    };
    for mode in [Mode::Invocation, Mode::Proxy] {
        let r = h.client(mode, "POST", &headers("ORDERS-EVENTS"), &validation);
        assert_eq!(r.status, 200, "{mode:?}: {}", r.body);
        assert_eq!(r.json(), json!({"validationResponse": code}));
        let r = h.client(mode, "POST", &headers("SOMEONE-ELSES"), &validation);
        assert_eq!(r.status, 403, "{mode:?}: {}", r.body);
        assert!(!r.body.contains(code));
    }
    let options = |origin: &str| {
        h.send(
            "OPTIONS",
            "/api/orders",
            &[("webhook-request-origin", origin.to_owned())],
            b"",
        )
    };
    let granted = options("eventgrid.azure.net");
    assert_eq!(granted.status, 200);
    assert_eq!(
        granted.headers["webhook-allowed-origin"],
        "eventgrid.azure.net"
    );
    assert_eq!(granted.headers["webhook-allowed-rate"], "*");
    assert_eq!(granted.headers["allow"], "POST");
    let refused = options("attacker.example");
    assert_eq!(refused.status, 403);
    assert!(!refused.headers.contains_key("webhook-allowed-origin"));
    // The same handshake forwarded by the host in invocation mode (Data.req.Method OPTIONS).
    let origin = |o: &str| vec![("webhook-request-origin", o.to_owned())];
    let granted = h.client_of(
        "orders-events",
        Mode::Invocation,
        "OPTIONS",
        &origin("eventgrid.azure.net"),
        "",
    );
    assert_eq!(granted.status, 200);
    assert_eq!(
        granted.headers["webhook-allowed-origin"],
        "eventgrid.azure.net"
    );
    assert_eq!(granted.headers["allow"], "POST");
    let refused = h.client_of(
        "orders-events",
        Mode::Invocation,
        "OPTIONS",
        &origin("attacker.example"),
        "",
    );
    assert_eq!(refused.status, 403);
    assert!(!refused.headers.contains_key("webhook-allowed-origin"));

    let events = h.wait_for_decisions(8);
    assert_eq!(events.len(), 8, "one event per handshake: {events:?}");
    let outcomes: Vec<(&str, u64)> = events
        .iter()
        .map(|e| {
            (
                e["outcome"].as_str().unwrap_or_default(),
                e["status"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        outcomes.iter().filter(|(_, s)| *s == 200).count(),
        4,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|(_, s)| *s == 403).count(),
        4,
        "{outcomes:?}"
    );
}

fn fixture(name: &str) -> String {
    let path = guard_tests::server::repo_root()
        .join("tests/tests/azure_e2e/fixtures")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

/// Event Grid's delivery headers for subscription `subscription`.
fn delivery_headers(subscription: &str, content_type: &str) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", content_type.to_owned()),
        ("aeg-event-type", "Notification".to_owned()),
        ("aeg-subscription-name", subscription.to_owned()),
        ("aeg-delivery-count", "0".to_owned()),
        ("aeg-metadata-version", "1".to_owned()),
        ("aeg-data-version", "1.0".to_owned()),
        ("x-forwarded-for", "52.160.0.10".to_owned()),
    ]
}

#[test]
fn event_grid_deliveries_are_split_and_each_event_checked() {
    let mut env = env_secrets();
    env.push(("GUARD_AZURE_EVENTGRID_SUBSCRIPTIONS", "orders-events"));
    let h = Handler::start(&app_root(), &env);
    let batch: Value = serde_json::from_str(&fixture("eventgrid-orders-delivery.json")).unwrap();
    let one = json!([batch[0]]).to_string();
    let cloud_event = fixture("cloudevents-order.json");
    let eg = delivery_headers("ORDERS-EVENTS", "application/json");
    let ce = delivery_headers(
        "ORDERS-EVENTS",
        "application/cloudevents+json; charset=utf-8",
    );
    let mut expected = Vec::new();
    for mode in [Mode::Invocation, Mode::Proxy] {
        // One event from the orders topic, each schema: accepted by the handler → 200.
        let r = h.client_of("orders-events", mode, "POST", &eg, &one);
        assert_eq!(r.status, 200, "{mode:?}: {}", r.body);
        let r = h.client_of("orders-events", mode, "POST", &ce, &cloud_event);
        assert_eq!(r.status, 200, "{mode:?} CloudEvents: {}", r.body);
        // A batch of three: accepted, foreign topic (403), schema break (400). Both refusals
        // are permanent, so the delivery gets the first one: 403, never a 2xx.
        let r = h.client_of("orders-events", mode, "POST", &eg, &batch.to_string());
        assert_eq!(r.status, 403, "{mode:?}: {}", r.body);
        assert_eq!(problem_code(&r.body), "guard.verify.forbidden_source");
        // A subscription that is not configured: the delivery is refused whole.
        let other = delivery_headers("SOMEONE-ELSES", "application/json");
        let r = h.client_of("orders-events", mode, "POST", &other, &one);
        assert_eq!(r.status, 403, "{mode:?}: {}", r.body);
        // The same delivery to `orders` (authLevel anonymous): deliveries are unsigned, so an
        // open function never takes them (the orders would pass its address check otherwise).
        let r = h.client_of("orders", mode, "POST", &eg, &one);
        assert_eq!(r.status, 403, "{mode:?}: {}", r.body);
        expected.extend([
            ("allow", "eventgrid", ""),
            ("allow", "eventgrid", ""),
            ("allow", "eventgrid", ""),
            ("deny", "eventgrid", "guard.verify.forbidden_source"),
            ("deny", "eventgrid", "guard.validate.schema"),
            ("deny", "http", "guard.verify.forbidden_source"),
            ("deny", "http", "guard.verify.forbidden_source"),
        ]);
    }
    let events = h.wait_for_decisions(expected.len());
    assert_eq!(
        events.len(),
        expected.len(),
        "one event per event: {events:?}"
    );
    let mut seen: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            let code = if e["outcome"] == "allow" {
                String::new()
            } else {
                s("code")
            };
            (s("outcome"), s("trigger"), code)
        })
        .collect();
    let mut expected: Vec<(String, String, String)> = expected
        .into_iter()
        .map(|(a, b, c)| (a.into(), b.into(), c.into()))
        .collect();
    // The events of one batch run concurrently: compare without their order.
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected);
    let topic = batch[0]["topic"].as_str().unwrap();
    for e in events.iter().filter(|e| e["trigger"] == "eventgrid") {
        let source = e["source_id"].as_str().unwrap_or_default();
        assert!(
            source == topic || source.ends_with("/topics/payments"),
            "{e}"
        );
    }
    assert!(!h.all_output().contains(API_KEY), "a secret in the output");
}
