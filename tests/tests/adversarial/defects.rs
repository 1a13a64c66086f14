//! One case for each defect issue 16 found by attacking the AWS example, sent through the
//! adapters as an attacker would (each defect also has its own regression test in its crate;
//! RELIABILITY.md lists them).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use guard_core::audit::Outcome;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::envelopes::{ALL, Envelope, SQS_ALLOWED, SQS_FOREIGN};
use crate::messages::lambda;
use crate::orders::{WEBHOOK_KEY, fixture, now, order, policy};
use crate::{HTTP, assert_refused, hygiene_problems, outside, request, send_to, through};

fn sqs_record(id: &str, source: &str, arn: &str, body: &[u8]) -> Value {
    json!({
        "messageId": id,
        "receiptHandle": "handle",
        "body": String::from_utf8_lossy(body),
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": source,
        "eventSourceARN": arn,
        "awsRegion": "us-east-1"
    })
}

fn v2_event(method: &str, headers: Value, body: &str, base64: bool) -> Value {
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": "/orders", "rawQueryString": "",
        "headers": headers,
        "requestContext": {"accountId": "123456789012", "apiId": "abc",
            "domainName": "abc.execute-api.us-east-1.amazonaws.com",
            "http": {"method": method, "path": "/orders", "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.10", "userAgent": "adversarial"},
            "requestId": "r-1", "routeKey": "$default", "stage": "$default",
            "time": "01/Dec/2026:20:00:00 +0000", "timeEpoch": 1_796_155_200_000u64},
        "body": body,
        "isBase64Encoded": base64
    })
}

fn json_headers() -> Value {
    json!({"content-type": "application/json"})
}

/// Defect 1: events the adapter cannot decode are refused with one security event each, and a
/// malformed record fails only itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_1_undecodable_events_are_refused_with_one_security_event() {
    let order_text = String::from_utf8(order()).unwrap();
    let cases = [
        (
            "defect_1_invalid_base64_with_is_base64_encoded_is_refused_with_one_event",
            v2_event("POST", json_headers(), "!!! not base64 !!!", true),
        ),
        (
            "defect_1_a_method_with_a_space_is_refused_with_one_event",
            v2_event("PO ST", json_headers(), &order_text, false),
        ),
    ];
    for (name, event) in cases {
        let (seen, _) = lambda(event, "aws-apigw-v2").await;
        assert_refused(name, &[seen], 400, "guard.adapter.malformed_event", &[]);
    }

    // A batch: one good record, one whose eventSource is not aws:sqs.
    let event = json!({"Records": [
        sqs_record("good", "aws:sqs", SQS_ALLOWED, &order()),
        sqs_record("odd", "aws:kinesis", SQS_ALLOWED, &order()),
    ]});
    let (seen, out) = lambda(event, "aws-sqs").await;
    let name = "defect_1_a_record_from_another_event_source_fails_only_itself";
    assert_eq!(
        out.unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "odd"}]}),
        "{name}"
    );
    assert_eq!(seen.calls, 1, "{name}: the good record reaches the handler");
    let outcomes: Vec<(Outcome, &str)> = seen
        .events
        .iter()
        .map(|e| (e.outcome, e.code.as_str()))
        .collect();
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| o.0 == Outcome::Deny)
            .collect::<Vec<_>>(),
        [&(Outcome::Deny, "guard.adapter.malformed_event")],
        "{name}"
    );
    assert_eq!(outcomes.len(), 2, "{name}: one event per record");
    assert!(hygiene_problems(&seen, &[]).is_empty(), "{name}");
}

/// Defect 2: 30,000 distinct header names (past `http::HeaderMap`'s panicking capacity) are a
/// 431 with one event, on AWS and in Azure's invocation envelope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_2_thirty_thousand_distinct_header_names_are_431_not_a_panic() {
    let mut req = request(order());
    req.headers
        .extend((0..30_000).map(|i| (format!("x-{i}"), "1".to_owned())));
    let seen = through(
        &[
            Envelope::ApiGatewayV1,
            Envelope::ApiGatewayV2,
            Envelope::FunctionUrl,
            Envelope::Alb,
            Envelope::AzureInvocation,
        ],
        &req,
        None,
        policy,
    )
    .await;
    assert_refused(
        "defect_2_thirty_thousand_distinct_header_names_are_431_not_a_panic",
        &seen,
        431,
        "guard.ingress.headers_too_large",
        &[],
    );
}

fn signature(body: &[u8]) -> String {
    let t = now();
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_KEY.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Defect 3: a valid signature sent from a partner address is used up, so its replay from
/// outside is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_3_a_signature_presented_from_a_partner_address_is_used_up() {
    let body = order();
    let sig = signature(&body);
    let mut from_partner = request(body.clone());
    from_partner
        .headers
        .push(("X-Guard-Signature".into(), sig.clone()));
    let mut replay = outside(body);
    replay
        .headers
        .push(("X-Guard-Signature".into(), sig.clone()));
    let mut seen = Vec::new();
    for envelope in HTTP {
        let policy = policy(envelope.cloud());
        let f = fixture(&policy, "all");
        let first = send_to(&f, envelope, &from_partner, &policy, None).await;
        assert_eq!(first.calls, 1, "{}", first.place);
        seen.push(send_to(&f, envelope, &replay, &policy, None).await);
    }
    assert_refused(
        "defect_3_a_signature_presented_from_a_partner_address_is_used_up",
        &seen,
        401,
        "guard.verify.replayed",
        &[sig],
    );
}

/// Defect 4: a signed request refused 429 by the per-principal limit has not used its
/// signature up: retried after `Retry-After`, it is admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_4_a_signed_request_refused_429_is_admitted_when_retried() {
    for envelope in [
        Envelope::ApiGatewayV2,
        Envelope::AzureProxy,
        Envelope::GcpHttp,
    ] {
        let policy = policy(envelope.cloud());
        let f = fixture(&policy, "all");
        // Ten signed orders from ten outside addresses use the principal's burst of 10 (each
        // address stays far below its own pre-auth limit).
        for i in 0..10 {
            let body = String::from_utf8(order())
                .unwrap()
                .replacen("ord_", &format!("ord_{i}"), 1)
                .into_bytes();
            let mut req = outside(body.clone());
            req.peer = format!("192.0.2.{}", 100 + i);
            req.headers
                .push(("X-Guard-Signature".into(), signature(&body)));
            let seen = send_to(&f, envelope, &req, &policy, None).await;
            assert_eq!(seen.calls, 1, "{}: order {i}", seen.place);
        }
        let body = order();
        let sig = signature(&body);
        let mut req = outside(body);
        req.peer = "192.0.2.200".into();
        req.headers.push(("X-Guard-Signature".into(), sig.clone()));
        let limited = send_to(&f, envelope, &req, &policy, None).await;
        assert!(
            limited.observed.retry_after,
            "{}: no Retry-After",
            limited.place
        );
        assert_refused(
            "defect_4_the_eleventh_signed_request_is_refused_429",
            &[limited],
            429,
            "guard.rate.limited",
            std::slice::from_ref(&sig),
        );
        // 5 per second: one token is back after 200 ms; Retry-After says 1 s.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let retried = send_to(&f, envelope, &req, &policy, None).await;
        assert_eq!(
            retried.calls, 1,
            "{}: the retry was refused: {:?}",
            retried.place, retried.events
        );
        let replayed = send_to(&f, envelope, &req, &policy, None).await;
        assert_refused(
            "defect_4_but_a_replay_of_the_admitted_retry_is_refused",
            &[replayed],
            401,
            "guard.verify.replayed",
            &[sig],
        );
    }
}

/// Defect 5: queue messages are not throttled as one anonymous caller: 500 valid orders after
/// a 500-record batch from a foreign queue are all accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_5_a_burst_of_valid_queue_orders_after_a_foreign_batch_is_never_throttled() {
    let f = fixture(&policy(crate::envelopes::Cloud::Aws), "all");
    let run = |records: Vec<Value>| {
        let stack = f.stack.clone();
        async move {
            use tower::{Layer, ServiceExt};
            guard_aws::GuardLayer::new()
                .layer(stack)
                .oneshot(lambda_runtime::LambdaEvent::new(
                    json!({"Records": records}),
                    crate::envelopes::lambda_context(0),
                ))
                .await
                .unwrap()
        }
    };
    let foreign: Vec<Value> = (0..500)
        .map(|i| sqs_record(&format!("f-{i}"), "aws:sqs", SQS_FOREIGN, &order()))
        .collect();
    let out = run(foreign).await;
    assert_eq!(out["batchItemFailures"].as_array().unwrap().len(), 500);
    let valid: Vec<Value> = (0..500)
        .map(|i| sqs_record(&format!("v-{i}"), "aws:sqs", SQS_ALLOWED, &order()))
        .collect();
    let out = run(valid).await;
    assert_eq!(
        out["batchItemFailures"],
        json!([]),
        "valid orders would be redelivered and dead-lettered"
    );
    let events = std::mem::take(&mut *f.events.lock().unwrap());
    assert_eq!(events.len(), 1000, "one event per record");
    assert!(
        events[..500]
            .iter()
            .all(|e| e.code == "guard.verify.forbidden_source")
    );
    assert!(events[500..].iter().all(|e| e.outcome == Outcome::Allow));
}

/// Defect 6: a source allow-list entry admits only its own trigger kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_6_source_entries_admit_only_their_own_trigger_kind() {
    let eventbridge = json!({
        "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "OrderPlaced", "source": "orders",
        "account": "123456789012", "time": "2026-12-01T20:00:00Z", "region": "us-east-1",
        "resources": [], "detail": serde_json::from_slice::<Value>(&order()).unwrap()
    });
    let (seen, _) = lambda(eventbridge, "aws-eventbridge").await;
    assert_refused(
        "defect_6_an_eventbridge_source_named_like_the_azure_queue_is_forbidden",
        &[seen],
        403,
        "guard.verify.forbidden_source",
        &[],
    );
    let kinesis = json!({"Records": [{
        "kinesis": {"partitionKey": "1", "kinesisSchemaVersion": "1.0", "data": B64.encode(order()),
                    "sequenceNumber": "49590338271490256608559692538361571095921575989136588898",
                    "approximateArrivalTimestamp": 1_545_084_650.987},
        "eventSource": "aws:kinesis", "eventVersion": "1.0",
        "eventID": "shardId-000000000006:49590338271490256608559692538361571095921575989136588898",
        "eventName": "aws:kinesis:record", "awsRegion": "us-east-1",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
        "eventSourceARN": SQS_ALLOWED
    }]});
    let (seen, out) = lambda(kinesis, "aws-kinesis").await;
    assert_eq!(
        out.unwrap()["batchItemFailures"].as_array().map(Vec::len),
        Some(1)
    );
    assert_refused(
        "defect_6_a_kinesis_record_carrying_the_sqs_queue_arn_is_forbidden",
        &[seen],
        403,
        "guard.verify.forbidden_source",
        &[],
    );
}

/// Defect 7: bidirectional overrides and isolates in a logged string are escaped (here in a
/// foreign EventBridge source, which the event records).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_7_bidi_overrides_in_a_logged_source_are_escaped() {
    let event = json!({
        "version": "0", "id": "1", "detail-type": "OrderPlaced",
        "source": "orders\u{202e}exe.gnp\u{2066}\u{2069}\u{202a}",
        "account": "123456789012", "time": "2026-12-01T20:00:00Z", "region": "us-east-1",
        "resources": [], "detail": {}
    });
    let (seen, _) = lambda(event, "aws-eventbridge").await;
    assert_refused(
        "defect_7_bidi_overrides_in_a_logged_source_are_escaped",
        &[seen],
        403,
        "guard.verify.forbidden_source",
        &[],
    );
}

/// Defect 8: integers beyond 64 bits are refused, never handed over rounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_8_integers_beyond_64_bits_are_refused_not_rounded() {
    let text = String::from_utf8(order()).unwrap();
    let at = text.find("\"total_cents\":").unwrap() + "\"total_cents\":".len();
    let end = at + text[at..].find([',', '}']).unwrap();
    for (name, literal) in [
        (
            "defect_8_two_to_the_64_plus_one_is_refused_not_rounded",
            "18446744073709551617",
        ),
        (
            "defect_8_ten_to_the_twentieth_written_out_is_refused_not_rounded",
            "100000000000000000000",
        ),
    ] {
        let body = format!("{}{literal}{}", &text[..at], &text[end..]).into_bytes();
        let seen = through(&ALL, &request(body), None, policy).await;
        assert_refused(name, &seen, 400, "guard.validate.malformed_json", &[]);
    }
}
