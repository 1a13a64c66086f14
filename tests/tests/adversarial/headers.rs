//! Headers an attacker controls: `X-Forwarded-For` spoofing (also with 1,000 entries), floods of
//! 1,000 fields, a 10 MB value, and a forged Azure Easy Auth principal. The AWS envelopes and
//! Azure's invocation mode carry headers inside the event; Azure's proxy mode and Cloud Run
//! receive them over HTTP, so those go through guard-core's server on loopback as each example
//! serves them.

use std::time::Duration;

use base64::Engine as _;
use guard_core::Policy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::Layer;

use crate::envelopes::{self, Cloud, Envelope, Observed};
use crate::orders::{Fixture, fixture, order, policy, policy_with};
use crate::{HTTP, Seen, assert_refused, outside, through};

/// The envelopes whose headers arrive inside the event.
const IN_EVENT: [Envelope; 5] = [
    Envelope::ApiGatewayV1,
    Envelope::ApiGatewayV2,
    Envelope::FunctionUrl,
    Envelope::Alb,
    Envelope::AzureInvocation,
];

/// Azure proxy mode and Cloud Run: served over HTTP by guard-core's server, as the examples do.
#[derive(Clone, Copy, Debug)]
enum Served {
    AzureProxy,
    CloudRun,
}

/// Serves the orders stack of `f` as `which` on a loopback port, sends `request` (raw bytes),
/// and reads the answer.
async fn over_http(which: Served, policy: &Policy, f: &Fixture, request: Vec<u8>) -> Seen {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (server, name) = match which {
        Served::AzureProxy => (guard_azure::server_config(policy), "azure-proxy (served)"),
        Served::CloudRun => (guard_gcp::server_config(policy), "gcp-http (served)"),
    };
    let server = server.shutdown_on_sigterm(false).audit(f.audit.clone());
    let running = match which {
        Served::AzureProxy => {
            let service = guard_azure::AzureService::new(
                f.stack.clone(),
                guard_azure::functions::Functions::default(),
                guard_azure::decode::DecodeOptions::from_policy(policy),
            );
            tokio::spawn(server.serve(listener, service))
        }
        Served::CloudRun => {
            let service = guard_gcp::GcpLayer::from_policy(policy).layer(f.stack.clone());
            tokio::spawn(server.serve(listener, service))
        }
    };
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before the whole request is written.
    let _ = stream.write_all(&request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    running.abort();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok());
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let observed = Observed {
        status,
        code: envelopes::problem_code(body.as_bytes()),
        raw: text.clone(),
        ..Observed::default()
    };
    // The security event is written as the answer goes out; give it a moment.
    for _ in 0..100 {
        if !f.events.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Seen::collect(name, observed, f, 0)
}

/// An order request as raw HTTP/1.1 with `extra` header lines, from an outside client (the
/// platform's front end appends its address to `X-Forwarded-For`).
fn raw_order(extra: &str) -> Vec<u8> {
    let body = order();
    let mut head = format!(
        "POST /api/orders HTTP/1.1\r\nhost: orders\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}",
        body.len()
    );
    if !extra.to_ascii_lowercase().contains("x-forwarded-for") {
        head.push_str("x-forwarded-for: 192.0.2.77\r\n");
    }
    head.push_str("\r\n");
    [head.into_bytes(), body].concat()
}

/// `request` through every envelope: in process for the event-borne ones, over HTTP for the
/// served ones (`raw` is the same request as raw HTTP).
async fn everywhere(
    envelopes: &[Envelope],
    request: &envelopes::Request,
    raw: Option<Vec<u8>>,
    policy_of: impl Fn(Cloud) -> Policy,
) -> Vec<Seen> {
    let mut seen = through(envelopes, request, None, &policy_of).await;
    if let Some(raw) = raw {
        for (which, cloud) in [
            (Served::AzureProxy, Cloud::Azure),
            (Served::CloudRun, Cloud::Gcp),
        ] {
            let policy = policy_of(cloud);
            let f = fixture(&policy, "all");
            let mut raw = raw.clone();
            if matches!(which, Served::CloudRun) {
                // Cloud Run's path for the orders function.
                let text =
                    String::from_utf8_lossy(&raw[..20]).replacen("/api/orders", "/orders", 1);
                raw.splice(..20, text.into_bytes());
            }
            seen.push(over_http(which, &policy, &f, raw).await);
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outside_caller_claiming_a_partner_address_in_x_forwarded_for_is_forbidden() {
    let mut req = outside(order());
    req.forwarded = Some("203.0.113.10".into());
    let seen = everywhere(
        &IN_EVENT,
        &req,
        Some(raw_order("x-forwarded-for: 203.0.113.10, 192.0.2.77\r\n")),
        policy,
    )
    .await;
    assert_refused(
        "an_outside_caller_claiming_a_partner_address_in_x_forwarded_for_is_forbidden",
        &seen,
        403,
        "guard.verify.forbidden_address",
        &[],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_partner_entries_in_x_forwarded_for_do_not_make_an_outside_caller_a_partner() {
    let spoofed = vec!["203.0.113.10"; 1000].join(", ");
    let mut req = outside(order());
    req.forwarded = Some(spoofed.clone());
    let seen = everywhere(
        &IN_EVENT,
        &req,
        Some(raw_order(&format!(
            "x-forwarded-for: {spoofed}, 192.0.2.77\r\n"
        ))),
        policy,
    )
    .await;
    assert_refused(
        "a_thousand_partner_entries_in_x_forwarded_for_do_not_make_an_outside_caller_a_partner",
        &seen,
        403,
        "guard.verify.forbidden_address",
        &[],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_header_fields_are_refused_431_in_every_envelope() {
    let mut req = crate::request(order());
    let lines: String = (0..1000).map(|i| format!("x-pad-{i}: {i}\r\n")).collect();
    req.headers
        .extend((0..1000).map(|i| (format!("X-Pad-{i}"), i.to_string())));
    let seen = everywhere(&IN_EVENT, &req, Some(raw_order(&lines)), policy).await;
    assert_refused(
        "a_thousand_header_fields_are_refused_431_in_every_envelope",
        &seen,
        431,
        "guard.ingress.headers_too_large",
        &[],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_megabyte_header_value_is_refused_431_in_every_envelope() {
    let value = "v".repeat(10 << 20);
    let mut req = crate::request(order());
    req.headers.push(("X-Pad".into(), value.clone()));
    let seen = everywhere(
        &IN_EVENT,
        &req,
        Some(raw_order(&format!("x-pad: {value}\r\n"))),
        policy,
    )
    .await;
    assert_refused(
        "a_ten_megabyte_header_value_is_refused_431_in_every_envelope",
        &seen,
        431,
        "guard.ingress.headers_too_large",
        &[],
    );
}

// ------------------------------------------------------------------------------ Easy Auth

fn principal(auth_typ: &str, roles: &[&str]) -> String {
    let mut claims = vec![serde_json::json!({"typ": "name", "val": "mallory@example.com"})];
    claims.extend(
        roles
            .iter()
            .map(|r| serde_json::json!({"typ": "roles", "val": r})),
    );
    let json = serde_json::json!({"auth_typ": auth_typ, "name_typ": "name", "role_typ": "roles",
                                  "claims": claims});
    base64::engine::general_purpose::STANDARD.encode(json.to_string())
}

/// The orders policy trusting Easy Auth for AAD principals with the `orders.write` role.
fn easy_auth(cloud: Cloud) -> Policy {
    let section = "\n[verify.azure_easy_auth]\nauth_types = [\"aad\"]\nclaims = [{ claim = \"roles\", contains = \"orders.write\" }]\n";
    policy_with(cloud, |t| format!("{t}{section}"), &[])
}

/// A request from outside carrying `X-MS-CLIENT-PRINCIPAL: value` and an Easy Auth token.
fn forged(value: &str) -> envelopes::Request {
    let mut req = outside(order());
    req.headers
        .push(("X-MS-CLIENT-PRINCIPAL".into(), value.to_owned()));
    req.headers.push((
        "X-MS-TOKEN-AAD-ID-TOKEN".into(),
        "forged-id-token-5e1f0c7d".into(),
    ));
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_easy_auth_principal_is_ignored_where_easy_auth_is_not_trusted() {
    let req = forged(&principal("aad", &["orders.write", "admin"]));
    let seen = through(&HTTP, &req, None, policy).await;
    assert_refused(
        "a_forged_easy_auth_principal_is_ignored_where_easy_auth_is_not_trusted",
        &seen,
        403,
        "guard.verify.forbidden_address",
        &["forged-id-token-5e1f0c7d".into()],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_easy_auth_principal_outside_azure_is_refused_even_when_trusted() {
    let req = forged(&principal("aad", &["orders.write"]));
    let not_azure = [
        Envelope::ApiGatewayV1,
        Envelope::ApiGatewayV2,
        Envelope::FunctionUrl,
        Envelope::Alb,
        Envelope::GcpHttp,
    ];
    let seen = through(&not_azure, &req, None, easy_auth).await;
    assert_refused(
        "a_forged_easy_auth_principal_outside_azure_is_refused_even_when_trusted",
        &seen,
        401,
        "guard.verify.bad_token",
        &["forged-id-token-5e1f0c7d".into()],
    );
}

struct EasyAuthCase {
    name: &'static str,
    value: fn() -> String,
    status: u16,
    code: &'static str,
}

const EASY_AUTH_CASES: &[EasyAuthCase] = &[
    EasyAuthCase {
        name: "an_easy_auth_principal_that_is_not_base64_is_refused",
        value: || "not base64 at all!".into(),
        status: 401,
        code: "guard.verify.bad_token",
    },
    EasyAuthCase {
        name: "an_easy_auth_principal_that_is_base64_of_garbage_is_refused",
        value: || base64::engine::general_purpose::STANDARD.encode("{\"auth_typ\":"),
        status: 401,
        code: "guard.verify.bad_token",
    },
    EasyAuthCase {
        name: "an_easy_auth_principal_over_16_kib_is_refused_unparsed",
        // About 26 KiB: over the principal's cap, under the 64 KiB of all headers.
        value: || {
            let roles: Vec<String> = (0..600).map(|i| format!("role-{i}")).collect();
            let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
            principal("aad", &roles)
        },
        status: 401,
        code: "guard.verify.bad_token",
    },
    EasyAuthCase {
        name: "an_easy_auth_principal_of_another_identity_provider_is_forbidden",
        value: || principal("facebook", &["orders.write"]),
        status: 403,
        code: "guard.verify.forbidden",
    },
    EasyAuthCase {
        name: "an_easy_auth_principal_without_the_required_role_is_forbidden",
        value: || principal("aad", &["orders.read"]),
        status: 403,
        code: "guard.verify.forbidden",
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_or_insufficient_easy_auth_principals_are_refused_on_azure() {
    for case in EASY_AUTH_CASES {
        let req = forged(&(case.value)());
        let seen = through(
            &[Envelope::AzureInvocation, Envelope::AzureProxy],
            &req,
            None,
            easy_auth,
        )
        .await;
        assert_refused(
            case.name,
            &seen,
            case.status,
            case.code,
            &["forged-id-token-5e1f0c7d".into()],
        );
    }
}

/// A header value the HTTP grammar forbids (CR LF, a forged second header, an ANSI escape) can
/// only arrive inside an event. The adapters drop such a pair (every check fails closed on a
/// missing header, so dropping never widens access): the order is served, and the value never
/// becomes a header, a second header or a log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_value_with_cr_lf_inside_an_event_is_dropped_and_never_logged() {
    const INJECTED: &str = "a\r\nX-MS-CLIENT-PRINCIPAL: e30=\r\n\u{1b}[2J";
    let mut req = crate::request(order());
    req.headers.push(("X-Trace-Note".into(), INJECTED.into()));
    for seen in through(&IN_EVENT, &req, None, policy).await {
        let at = &seen.place;
        assert_eq!(seen.calls, 1, "{at}: {:?}", seen.events);
        assert_eq!(seen.events.len(), 1, "{at}");
        assert_eq!(
            seen.events[0].code,
            guard_core::audit::SecurityEvent::ALLOW_CODE,
            "{at}"
        );
        assert!(crate::hygiene_problems(&seen, &[]).is_empty(), "{at}");
    }
    assert!(
        !crate::log_text().contains(INJECTED),
        "the raw value reached a log line"
    );
}

/// X-Forwarded-For shapes only a direct invocation or a misbehaving front end would produce: an
/// API Gateway event without `sourceIp`, and ALB multi-value headers listing the spoofed entry
/// first. The address is never taken from the left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_shapes_of_a_forged_event_never_yield_the_spoofed_address() {
    let order_text = String::from_utf8(order()).unwrap();
    let no_source_ip = serde_json::json!({
        "resource": "/orders", "path": "/orders", "httpMethod": "POST",
        "headers": {"content-type": "application/json", "x-forwarded-for": "203.0.113.10"},
        "multiValueHeaders": {"content-type": ["application/json"], "x-forwarded-for": ["203.0.113.10"]},
        "requestContext": {"accountId": "123456789012", "resourcePath": "/orders",
            "httpMethod": "POST", "path": "/prod/orders", "stage": "prod", "requestId": "r-1",
            "identity": {"userAgent": "adversarial"}},
        "body": order_text, "isBase64Encoded": false
    });
    let alb_multi = serde_json::json!({
        "requestContext": {"elb": {"targetGroupArn":
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/orders/6d0ecf831eec9f09"}},
        "httpMethod": "POST", "path": "/orders", "queryStringParameters": {},
        "multiValueHeaders": {"content-type": ["application/json"],
                              "x-forwarded-for": ["203.0.113.10", "192.0.2.77"]},
        "body": order_text, "isBase64Encoded": false
    });
    for (name, event) in [
        (
            "an_api_gateway_event_without_source_ip_does_not_fall_back_to_x_forwarded_for",
            no_source_ip,
        ),
        (
            "alb_multi_value_x_forwarded_for_is_read_from_the_right",
            alb_multi,
        ),
    ] {
        let (seen, _) = crate::messages::lambda(event, "aws").await;
        assert_refused(name, &[seen], 403, "guard.verify.forbidden_address", &[]);
    }
}
