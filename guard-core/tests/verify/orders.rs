//! The orders scenario of examples/orders: the verification layer the builder makes from `[verify]`.

use std::time::Duration;

use bytes::Bytes;
use guard_core::GuardRequest;
use guard_core::Policy;
use guard_core::RejectionKind;
use guard_core::clock::WallClock;
use guard_core::request::{MessageTrigger, Peer, PrincipalKind, Trigger};
use guard_core::{GuardBuilder, GuardDeps};
use serde_json::json;

use crate::support::{JwksServer, Keys, Stack, T0, clock, data, hmac_hex, rs256};

/// Exactly the `[verify]` section documented in `guard_core::verify` (less `gcp_push`, tested
/// below with a local JWKS).
const ORDERS: &str = r#"
[verify]
mode = "any"

[verify.sources]
sqs = ["arn:aws:sqs:us-east-1:123456789012:orders"]
azure-queue = ["orders"]
pubsub = ["projects/shop-prod/subscriptions/orders-push"]

[verify.cidr]
allow = ["203.0.113.0/24", "198.51.100.0/24"]

[verify.hmac]
preset = "stripe"
header = "X-Guard-Signature"
secret = "orders-webhook-hmac"
tolerance_secs = 300
replay = true
"#;

const KEY: &[u8] = b"orders-webhook-key";
const BODY: &[u8] = br#"{"order_id":"ord_ABCDEFGH","items":[{"sku":"a","qty":1}]}"#;

fn orders_stack(policy: &str) -> (Stack, WallClock) {
    let policy = Policy::from_toml_str(policy).unwrap();
    let clock = clock();
    let guard_deps =
        GuardDeps::with_secrets(Keys::new(KEY).store("orders-webhook-hmac")).clock(clock.clone());
    let guard = GuardBuilder::from_policy_with(&policy, guard_deps)
        .unwrap()
        .build();
    let layer = guard.verify_layer().unwrap().clone();
    (Stack::new(layer), clock)
}

fn from(ip: &str) -> GuardRequest {
    let mut req = http::Request::builder()
        .method("POST")
        .body(Bytes::from_static(BODY))
        .unwrap();
    req.extensions_mut().insert(Trigger::Http);
    req.extensions_mut().insert(Peer::new(ip.parse().unwrap()));
    req
}

fn signed_from(ip: &str, t: u64) -> GuardRequest {
    let mut msg = format!("{t}.").into_bytes();
    msg.extend_from_slice(BODY);
    let mut req = from(ip);
    req.headers_mut().insert(
        "x-guard-signature",
        format!("t={t},v1={}", hmac_hex(KEY, &msg)).parse().unwrap(),
    );
    req
}

fn message(kind: &str, source: &str) -> GuardRequest {
    let mut req = http::Request::new(Bytes::from_static(BODY));
    req.extensions_mut()
        .insert(Trigger::Message(MessageTrigger::new(kind, source, "m-1")));
    req
}

#[tokio::test]
async fn allow_listed_address_passes_without_signature() {
    let (s, _) = orders_stack(ORDERS);
    let p = s.allowed(from("203.0.113.7")).await;
    assert_eq!(p.kind, PrincipalKind::Network);
    s.allowed(from("198.51.100.250")).await;
}

#[tokio::test]
async fn unlisted_unsigned_caller_is_403_forbidden_address() {
    let (s, _) = orders_stack(ORDERS);
    s.denied(from("192.0.2.1"), RejectionKind::ForbiddenAddress)
        .await;
}

#[tokio::test]
async fn signed_request_from_anywhere_is_accepted_once() {
    let (s, clock) = orders_stack(ORDERS);
    let p = s.allowed(signed_from("192.0.2.1", T0)).await;
    assert_eq!(p.kind, PrincipalKind::Hmac);
    assert_eq!(p.subject, "orders-webhook-hmac");
    clock.advance(Duration::from_secs(5));
    s.denied(signed_from("192.0.2.1", T0), RejectionKind::Replayed)
        .await;
    s.denied(
        signed_from("192.0.2.1", T0 - 400),
        RejectionKind::StaleSignature,
    )
    .await;
    let mut bad = signed_from("192.0.2.1", T0 + 5);
    *bad.body_mut() = Bytes::from_static(br#"{"order_id":"ord_ABCDEFGH","items":[]}"#);
    s.denied(bad, RejectionKind::BadSignature).await;
}

#[tokio::test]
async fn a_signature_presented_from_an_allowed_address_is_checked_and_used_up() {
    let (s, clock) = orders_stack(ORDERS);
    // Admitted by address and signed: the signature is checked and spent too.
    assert_eq!(
        s.allowed(signed_from("203.0.113.7", T0)).await.kind,
        PrincipalKind::Hmac
    );
    // The identical request replayed from outside within the window is a replay.
    clock.advance(Duration::from_secs(5));
    s.denied(signed_from("192.0.2.1", T0), RejectionKind::Replayed)
        .await;
    // ...and from the allowed address too: a presented credential is never ignored.
    s.denied(signed_from("203.0.113.7", T0), RejectionKind::Replayed)
        .await;
    // An invalid signature from an allowed address is refused, not admitted by the address.
    let mut bad = signed_from("203.0.113.7", T0 + 5);
    *bad.body_mut() = Bytes::from_static(br#"{"order_id":"ord_ABCDEFGH","items":[]}"#);
    s.denied(bad, RejectionKind::BadSignature).await;
    let mut garbage = from("203.0.113.7");
    garbage
        .headers_mut()
        .insert("x-guard-signature", "t=1,v1=zz".parse().unwrap());
    s.denied(garbage, RejectionKind::BadSignature).await;
    s.denied(
        signed_from("198.51.100.9", T0 - 400),
        RejectionKind::StaleSignature,
    )
    .await;
}

#[tokio::test]
async fn messages_only_from_the_configured_sources() {
    let (s, _) = orders_stack(ORDERS);
    let p = s
        .allowed(message("sqs", "arn:aws:sqs:us-east-1:123456789012:orders"))
        .await;
    assert_eq!(p.kind, PrincipalKind::Source);
    s.allowed(message("azure-queue", "orders")).await;
    s.denied(
        message("sqs", "arn:aws:sqs:us-east-1:123456789012:orders-dlq"),
        RejectionKind::ForbiddenSource,
    )
    .await;
    // A message from another queue does not get in by carrying a valid signature or address.
    let mut signed = message("sqs", "arn:aws:sqs:us-east-1:999999999999:orders");
    let mut msg = format!("{T0}.").into_bytes();
    msg.extend_from_slice(BODY);
    signed.headers_mut().insert(
        "x-guard-signature",
        format!("t={T0},v1={}", hmac_hex(KEY, &msg))
            .parse()
            .unwrap(),
    );
    signed
        .extensions_mut()
        .insert(Peer::new("203.0.113.7".parse().unwrap()));
    s.denied(signed, RejectionKind::ForbiddenSource).await;
}

#[tokio::test]
async fn a_source_entry_admits_only_its_own_trigger_kind() {
    let (s, _) = orders_stack(ORDERS);
    // "orders" is the Azure queue: an EventBridge event whose `source` is "orders" is not it.
    s.denied(
        message("eventbridge", "orders"),
        RejectionKind::ForbiddenSource,
    )
    .await;
    // The SQS queue's ARN on a Kinesis (or SNS) record admits nothing.
    for kind in ["kinesis", "sns", "dynamodb"] {
        s.denied(
            message(kind, "arn:aws:sqs:us-east-1:123456789012:orders"),
            RejectionKind::ForbiddenSource,
        )
        .await;
    }
    s.denied(
        message("pubsub", "arn:aws:sqs:us-east-1:123456789012:orders"),
        RejectionKind::ForbiddenSource,
    )
    .await;
}

#[tokio::test]
async fn http_request_cannot_pose_as_a_listed_source() {
    let (s, _) = orders_stack(ORDERS);
    // An HTTP request is verified by the request checks, whatever it claims to be about.
    let mut req = from("192.0.2.1");
    req.headers_mut().insert(
        "x-source",
        "arn:aws:sqs:us-east-1:123456789012:orders".parse().unwrap(),
    );
    s.denied(req, RejectionKind::ForbiddenAddress).await;
}

#[tokio::test]
async fn gcp_push_messages_need_googles_token() {
    let server = JwksServer::start(data("jwks.json"));
    let policy = format!(
        r#"{ORDERS}
[verify.gcp_push]
audience = "https://orders.example.com/pubsub"
service_account = "orders-push@shop-prod.iam.gserviceaccount.com"
jwks_url = "{}"
"#,
        server.url
    );
    let (s, _) = orders_stack(&policy);
    let claims = json!({
        "iss": "https://accounts.google.com",
        "aud": "https://orders.example.com/pubsub",
        "sub": "1234567890",
        "email": "orders-push@shop-prod.iam.gserviceaccount.com",
        "email_verified": true,
        "exp": T0 + 3600,
        "iat": T0,
    });
    let push = |token: Option<String>, source: &str| {
        let mut req = message("pubsub", source);
        if let Some(t) = token {
            req.headers_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        req
    };
    let sub = "projects/shop-prod/subscriptions/orders-push";
    let p = s.allowed(push(Some(rs256("rsa-1", &claims)), sub)).await;
    assert_eq!(p.kind, PrincipalKind::Platform("gcp-push".into()));
    assert_eq!(p.claims["source"], json!(sub));
    s.denied(push(None, sub), RejectionKind::MissingCredentials)
        .await;
    let mut other = claims.clone();
    other["email"] = json!("intruder@evil.iam.gserviceaccount.com");
    // The service account says who pushed: another one's token is not ours at all (401).
    s.denied(
        push(Some(rs256("rsa-1", &other)), sub),
        RejectionKind::BadToken,
    )
    .await;
    let mut unverified = claims.clone();
    unverified["email_verified"] = json!(false);
    s.denied(
        push(Some(rs256("rsa-1", &unverified)), sub),
        RejectionKind::BadToken,
    )
    .await;
    let mut aud = claims.clone();
    aud["aud"] = json!("https://other.example.com");
    s.denied(
        push(Some(rs256("rsa-1", &aud)), sub),
        RejectionKind::BadToken,
    )
    .await;
    s.denied(
        push(
            Some(rs256("rsa-1", &claims)),
            "projects/shop-prod/subscriptions/other",
        ),
        RejectionKind::ForbiddenSource,
    )
    .await;
    // SQS messages (another cloud, same shared policy) are not asked for Google's token.
    s.allowed(message("sqs", "arn:aws:sqs:us-east-1:123456789012:orders"))
        .await;
}
