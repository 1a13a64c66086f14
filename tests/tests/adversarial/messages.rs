//! Messages an attacker shapes: Pub/Sub and CloudEvents base64 bombs, forged push deliveries,
//! and log injection (newlines, ANSI escapes, bidirectional overrides) through the fields that
//! reach the security event (source ARNs, subscriptions, message ids), on all three clouds.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::{Value, json};
use tower::{Layer, ServiceExt};

use crate::envelopes::{self, Cloud, Observed};
use crate::orders::{fixture, order, policy, push_tokens};
use crate::{Seen, assert_refused};

/// One Lambda event through guard-aws around a fresh orders stack.
pub(crate) async fn lambda(event: Value, name: &str) -> (Seen, Result<Value, Diagnostic>) {
    crate::logs();
    let f = fixture(&policy(Cloud::Aws), "all");
    let out = guard_aws::GuardLayer::new()
        .layer(f.stack.clone())
        .oneshot(LambdaEvent::new(event, envelopes::lambda_context(0)))
        .await;
    let observed = match &out {
        Err(e) => Observed {
            code: Some(e.error_type.clone()),
            acked: Some(false),
            raw: format!("{} {}", e.error_type, e.error_message),
            ..Observed::default()
        },
        Ok(v) => Observed {
            // An HTTP answer: its status and problem code.
            status: v["statusCode"].as_u64().map(|s| s as u16),
            code: v["body"]
                .as_str()
                .and_then(|b| envelopes::problem_code(b.as_bytes())),
            // A batch answer: acknowledged when no record is reported as failed.
            acked: v
                .get("batchItemFailures")
                .map(|f| f.as_array().is_some_and(Vec::is_empty)),
            raw: v.to_string(),
            ..Observed::default()
        },
    };
    (Seen::collect(name, observed, &f, 0), out)
}

/// A Pub/Sub push (or CloudEvent) through guard-gcp around a fresh orders stack, with the
/// valid push token; each of `extra` replaces the header of its name (an empty value removes it).
async fn gcp(
    path: &str,
    content_type: &str,
    body: Vec<u8>,
    extra: &[(&str, &str)],
    name: &str,
) -> Seen {
    crate::logs();
    let policy = policy(Cloud::Gcp);
    let f = fixture(&policy, "all");
    let token = if path == "/events" {
        &push_tokens().events
    } else {
        &push_tokens().pubsub
    };
    let mut headers = envelopes::push_headers(token, content_type);
    for (name, value) in extra {
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        if !value.is_empty() {
            headers.push(((*name).to_owned(), (*value).to_owned()));
        }
    }
    let req = envelopes::served(
        envelopes::plain_request("POST", path, &headers, body),
        false,
    );
    let resp = guard_gcp::GcpLayer::from_policy(&policy)
        .layer(f.stack.clone())
        .oneshot(req)
        .await
        .unwrap();
    let observed = envelopes::message_observed(resp, envelopes::is_pubsub_ack);
    Seen::collect(name, observed, &f, 0)
}

fn push(data: &str, subscription: &str, message_id: &str) -> Vec<u8> {
    json!({
        "message": {"data": data, "attributes": {}, "messageId": message_id,
                    "publishTime": "2026-12-01T20:00:00.000Z"},
        "subscription": subscription,
        "deliveryAttempt": 1
    })
    .to_string()
    .into_bytes()
}

const SUBSCRIPTION: &str = envelopes::SUBSCRIPTION_ALLOWED;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_and_cloudevents_base64_bombs_are_refused() {
    let ten_mb = "A".repeat(10 << 20);
    let nested = B64.encode(format!("{}{}", "[".repeat(100), "]".repeat(100)));
    let cases: Vec<(&str, Seen, u16, &str)> = vec![
        (
            "ten_megabytes_of_base64_in_pubsub_data_are_refused_413_before_decoding",
            gcp(
                "/pubsub",
                "application/json",
                push(&ten_mb, SUBSCRIPTION, "m-1"),
                &[],
                "gcp-pubsub",
            )
            .await,
            413,
            "guard.ingress.too_large",
        ),
        (
            "pubsub_data_that_is_not_base64_is_the_adapters_refusal",
            gcp(
                "/pubsub",
                "application/json",
                push("%%% not base64 %%%", SUBSCRIPTION, "m-2"),
                &[],
                "gcp-pubsub",
            )
            .await,
            400,
            "guard.adapter.malformed_event",
        ),
        (
            "pubsub_data_decoding_to_a_nesting_bomb_is_too_deep",
            gcp(
                "/pubsub",
                "application/json",
                push(&nested, SUBSCRIPTION, "m-3"),
                &[],
                "gcp-pubsub",
            )
            .await,
            400,
            "guard.ingress.too_deep",
        ),
        (
            "ten_megabytes_of_data_base64_in_a_structured_cloudevent_are_refused_413",
            gcp(
                "/events",
                "application/cloudevents+json",
                json!({"specversion": "1.0", "id": "e-1", "type": "com.example.order.placed",
                       "source": envelopes::EVENTS_ALLOWED, "data_base64": ten_mb})
                .to_string()
                .into_bytes(),
                &[],
                "gcp-cloudevents",
            )
            .await,
            413,
            "guard.ingress.too_large",
        ),
    ];
    for (name, seen, status, code) in cases {
        assert_refused(name, &[seen], status, code, &[]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_push_deliveries_are_refused() {
    let body = push(&B64.encode(order()), SUBSCRIPTION, "m-9");
    let events_token = format!("Bearer {}", push_tokens().events);
    let cases = [
        (
            "a_push_envelope_posted_without_googles_token_is_refused",
            gcp(
                "/pubsub",
                "application/json",
                body.clone(),
                &[("Authorization", "")],
                "gcp-pubsub",
            )
            .await,
            401,
            "guard.verify.missing_credentials",
        ),
        (
            "a_push_envelope_carrying_the_eventarc_token_is_refused_by_audience",
            gcp(
                "/pubsub",
                "application/json",
                body,
                &[("Authorization", &events_token)],
                "gcp-pubsub",
            )
            .await,
            401,
            "guard.verify.bad_token",
        ),
    ];
    for (name, seen, status, code) in cases {
        assert_refused(name, &[seen], status, code, &[push_tokens().events.clone()]);
    }
}

/// A string carrying a newline, a forged JSON tail, ANSI escapes and bidirectional overrides.
const INJECTION: &str =
    "evil\n{\"outcome\":\"allow\"}\r\u{1b}[2J\u{1b}[32mOK\u{202e}gnp.exe\u{2066}\u{2028}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_in_message_fields_are_escaped_in_the_one_security_event() {
    let sqs = json!({"Records": [{
        "messageId": format!("m-1{INJECTION}"),
        "receiptHandle": "handle",
        "body": String::from_utf8(order()).unwrap(),
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": format!("arn:aws:sqs:us-east-1:123456789012:{INJECTION}"),
        "awsRegion": "us-east-1"
    }]});
    let (sqs_seen, _) = lambda(sqs, "aws-sqs").await;
    assert_refused(
        "newlines_ansi_and_bidi_in_an_sqs_queue_arn_and_message_id_are_escaped",
        &[sqs_seen],
        403,
        "guard.verify.forbidden_source",
        &[],
    );

    let pubsub = gcp(
        "/pubsub",
        "application/json",
        push(
            &B64.encode(order()),
            &format!("projects/shop-prod/subscriptions/{INJECTION}"),
            &format!("m-2{INJECTION}"),
        ),
        &[],
        "gcp-pubsub",
    )
    .await;
    assert_refused(
        "newlines_ansi_and_bidi_in_a_pubsub_subscription_and_message_id_are_escaped",
        &[pubsub],
        403,
        "guard.verify.forbidden_source",
        &[],
    );

    // Azure: a queue message whose metadata id carries the injection, from a function bound
    // to another queue.
    let policy = policy(Cloud::Azure);
    let f = fixture(&policy, "all");
    let service = guard_azure::AzureService::new(
        f.stack.clone(),
        envelopes::azure_functions(),
        guard_azure::decode::DecodeOptions::from_policy(&policy),
    );
    let envelope = json!({
        "Data": {"msg": String::from_utf8(order()).unwrap()},
        "Metadata": {"Id": format!("m-3{INJECTION}"), "DequeueCount": 1,
                     "InsertionTime": "2026-12-01T20:00:00+00:00"}
    });
    let host = envelopes::served(
        envelopes::plain_request(
            "POST",
            "/returns-queue",
            &[("X-Azure-Functions-InvocationId".into(), "inv-1".into())],
            envelope.to_string().into_bytes(),
        ),
        false,
    );
    let reply = service.oneshot(host).await.unwrap();
    let observed = envelopes::message_observed(reply, |s| (200..300).contains(&s));
    let azure = Seen::collect("azure-queue", observed, &f, 0);
    assert_refused(
        "newlines_ansi_and_bidi_in_an_azure_queue_message_id_are_escaped",
        &[azure],
        403,
        "guard.verify.forbidden_source",
        &[],
    );
}
