//! SNS signature verification with a locally generated key and certificate (rcgen): v1 and v2
//! verify; every certificate-URL bypass is refused before any fetch; stale, tampered, unknown
//! versions and topics off the allow-list are refused; certificates are fetched once; and the
//! production fetcher over real HTTPS (`https`).

mod https;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use guard_aws::sns::{CertFetchError, CertUrl, SnsMessage, SnsVerifier};
use guard_core::RejectionKind;
use guard_core::clock::WallClock;
use guard_core::request::PrincipalKind;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use serde_json::{Value, json};

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:orders";
const CERT_URL: &str = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef0123456789abcdef.pem";
/// 2024-05-01T12:00:00Z
const NOW: u64 = 1_714_564_800;
const TIMESTAMP: &str = "2024-05-01T11:59:30.125Z";

struct Signer_ {
    key: rsa::RsaPrivateKey,
    cert_pem: String,
}

fn signer() -> &'static Signer_ {
    static S: std::sync::OnceLock<Signer_> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("rsa key");
        let params =
            rcgen::CertificateParams::new(vec!["sns.amazonaws.com".to_owned()]).expect("params");
        let cert = params.self_signed(&kp).expect("self-signed cert");
        let key = rsa::RsaPrivateKey::from_pkcs8_der(kp.serialized_der()).expect("pkcs8");
        Signer_ {
            key,
            cert_pem: cert.pem(),
        }
    })
}

/// A fetcher serving the local certificate, counting fetches.
fn local_fetcher() -> (
    Arc<AtomicUsize>,
    impl Fn(CertUrl) -> std::future::Ready<Result<Bytes, CertFetchError>> + Send + Sync + 'static,
) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let pem = Bytes::from(signer().cert_pem.clone());
    (count, move |url: CertUrl| {
        c.fetch_add(1, Ordering::SeqCst);
        assert_eq!(
            url.as_str(),
            CERT_URL,
            "only the validated URL is ever fetched"
        );
        std::future::ready(Ok(pem.clone()))
    })
}

fn verifier_with(fetcher: impl guard_aws::sns::CertFetcher, clock: WallClock) -> SnsVerifier {
    SnsVerifier::builder()
        .allow_topic(TOPIC)
        .max_age(Duration::from_secs(600))
        .clock(clock)
        .build(fetcher)
        .unwrap()
}

fn string_to_sign(m: &Value) -> String {
    let keys: &[&str] = if m["Type"] == "Notification" {
        &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ]
    } else {
        &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ]
    };
    keys.iter()
        .filter_map(|k| {
            m.get(*k)
                .and_then(Value::as_str)
                .map(|v| format!("{k}\n{v}\n"))
        })
        .collect()
}

fn sign(m: Value, version: &str) -> Value {
    sign_with(&signer().key, m, version)
}

fn sign_with(key: &rsa::RsaPrivateKey, mut m: Value, version: &str) -> Value {
    let data = string_to_sign(&m);
    let key = key.clone();
    let sig = match version {
        "1" => rsa::pkcs1v15::SigningKey::<sha1::Sha1>::new(key)
            .sign(data.as_bytes())
            .to_vec(),
        _ => rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key)
            .sign(data.as_bytes())
            .to_vec(),
    };
    m["SignatureVersion"] = json!(version);
    m["Signature"] = json!(base64::engine::general_purpose::STANDARD.encode(sig));
    m
}

fn notification() -> Value {
    json!({
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": TOPIC,
        "Subject": "order",
        "Message": "{\"order_id\":\"ord_12345678\"}",
        "Timestamp": TIMESTAMP,
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"
    })
}

fn msg(v: Value) -> SnsMessage {
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn verifies_v1_and_v2_signatures() {
    let (fetches, fetcher) = local_fetcher();
    let v = verifier_with(fetcher, WallClock::fake_at_unix(NOW));
    for version in ["1", "2"] {
        let p = v
            .verify_message(&msg(sign(notification(), version)))
            .await
            .unwrap();
        assert_eq!(p.kind, PrincipalKind::Custom("sns".into()));
        assert_eq!(p.subject, TOPIC);
        assert_eq!(p.issuer.as_deref(), Some("sns.us-east-1.amazonaws.com"));
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "the certificate is cached"
    );
}

#[tokio::test]
async fn verifies_a_notification_without_subject_and_a_confirmation() {
    let (_, fetcher) = local_fetcher();
    let v = verifier_with(fetcher, WallClock::fake_at_unix(NOW));
    let mut n = notification();
    n.as_object_mut().unwrap().remove("Subject");
    v.verify_message(&msg(sign(n, "2"))).await.unwrap();
    let confirmation = json!({
        "Type": "SubscriptionConfirmation",
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3beb71854e285d6ad02428b09ceece29417f1f02d609c582afbacc99c583a916b9981dd2728f4ae6fdb82efd087cc3b7849e05798d2d2785c03b0879594eeac82c01f235d0e717736",
        "TopicArn": TOPIC,
        "Message": "You have chosen to subscribe to the topic.",
        "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=x&Token=y",
        "Timestamp": TIMESTAMP,
        "SigningCertURL": CERT_URL
    });
    let p = v
        .verify_message(&msg(sign(confirmation, "1")))
        .await
        .unwrap();
    assert_eq!(p.claims["type"], "SubscriptionConfirmation");
}

#[tokio::test]
async fn rejects_every_certificate_url_bypass_before_any_fetch() {
    let (fetches, fetcher) = local_fetcher();
    let v = verifier_with(fetcher, WallClock::fake_at_unix(NOW));
    let bypasses = [
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef0123456789abcdef.pem",
        "https://sns.us-east-1.amazonaws.com.evil.com/SimpleNotificationService-0123456789abcdef.pem",
        "https://sns.us-east-1.amazonaws.com@evil.com/SimpleNotificationService-0123456789abcdef.pem",
        "https://user:pw@sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem",
        "https://evil.com/cert?x=.pem",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem?x=.pem",
        "https://s3.amazonaws.com/evil-bucket/SimpleNotificationService-0123456789abcdef.pem",
        "https://evil-bucket.s3.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem",
        "https://sns.us-east-1.amazonaws.com/evil/SimpleNotificationService-0123456789abcdef.pem",
        "https://sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-0123456789abcdef.pem",
        // Region of the certificate must be the topic's region.
        "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem",
    ];
    for url in bypasses {
        let mut m = notification();
        m["SigningCertURL"] = json!(url);
        let refused = v.verify_message(&msg(sign(m, "2"))).await.unwrap_err();
        assert_eq!(refused.kind(), RejectionKind::BadSignature, "{url}");
        assert_eq!(refused.status(), 401);
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 0, "nothing was fetched");
}

#[tokio::test]
async fn rejects_unknown_signature_versions_before_any_fetch() {
    let (fetches, fetcher) = local_fetcher();
    let v = verifier_with(fetcher, WallClock::fake_at_unix(NOW));
    for version in ["3", "", "0", "2 ", "v2"] {
        let mut m = sign(notification(), "2");
        m["SignatureVersion"] = json!(version);
        let refused = v.verify_message(&msg(m)).await.unwrap_err();
        assert_eq!(refused.kind(), RejectionKind::BadSignature, "{version:?}");
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn rejects_tampered_fields_and_downgraded_versions() {
    let (_, fetcher) = local_fetcher();
    let v = verifier_with(fetcher, WallClock::fake_at_unix(NOW));
    for (field, value) in [
        ("Message", "{\"order_id\":\"ord_evil0000\"}"),
        ("MessageId", "other"),
        ("Subject", "other"),
        ("Type", "SubscriptionConfirmation"),
    ] {
        let mut m = sign(notification(), "2");
        m[field] = json!(value);
        let refused = v.verify_message(&msg(m)).await.unwrap_err();
        assert_eq!(refused.kind(), RejectionKind::BadSignature, "{field}");
    }
    // A v2 signature relabelled as v1 (and the reverse) does not verify.
    let mut m = sign(notification(), "2");
    m["SignatureVersion"] = json!("1");
    assert_eq!(
        v.verify_message(&msg(m)).await.unwrap_err().kind(),
        RejectionKind::BadSignature
    );
    let mut m = sign(notification(), "2");
    m["Signature"] = json!("not base64!");
    assert_eq!(
        v.verify_message(&msg(m)).await.unwrap_err().kind(),
        RejectionKind::BadSignature
    );
}

#[tokio::test]
async fn rejects_stale_and_future_timestamps() {
    let (_, fetcher) = local_fetcher();
    let clock = WallClock::fake_at_unix(NOW);
    let v = verifier_with(fetcher, clock.clone());
    let signed = msg(sign(notification(), "2"));
    v.verify_message(&signed).await.unwrap();
    clock.advance(Duration::from_secs(700));
    assert_eq!(
        v.verify_message(&signed).await.unwrap_err().kind(),
        RejectionKind::StaleSignature
    );
    clock.set_unix(NOW - 3600);
    assert_eq!(
        v.verify_message(&signed).await.unwrap_err().kind(),
        RejectionKind::StaleSignature
    );
}

#[tokio::test]
async fn rejects_topics_off_the_allow_list_before_any_fetch() {
    let (fetches, fetcher) = local_fetcher();
    let v = verifier_with(fetcher, WallClock::fake_at_unix(NOW));
    let mut m = notification();
    m["TopicArn"] = json!("arn:aws:sns:us-east-1:123456789012:other");
    let refused = v.verify_message(&msg(sign(m, "2"))).await.unwrap_err();
    assert_eq!(refused.kind(), RejectionKind::ForbiddenSource);
    assert_eq!(refused.status(), 403);
    assert_eq!(fetches.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn unreachable_certificate_is_a_503_and_not_refetched_at_once() {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let v = verifier_with(
        move |_u: CertUrl| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Err::<Bytes, _>(CertFetchError("connection refused".into())) }
        },
        WallClock::fake_at_unix(NOW),
    );
    let m = msg(sign(notification(), "2"));
    for _ in 0..3 {
        let refused = v.verify_message(&m).await.unwrap_err();
        assert_eq!(refused.kind(), RejectionKind::VerifyUnavailable);
        assert_eq!(refused.status(), 503);
    }
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn concurrent_first_verifications_fetch_once() {
    let (fetches, fetcher) = local_fetcher();
    let v = verifier_with(fetcher, WallClock::fake_at_unix(NOW));
    let m = msg(sign(notification(), "2"));
    let all = futures_util::future::join_all((0..20).map(|_| v.verify_message(&m))).await;
    assert!(all.iter().all(Result::is_ok));
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn verifies_lambda_records_and_sns_inside_sqs_through_the_decoder() {
    use guard_aws::decode::{DecodeOptions, decode};
    use lambda_runtime::{Context, LambdaEvent};

    let (_, fetcher) = local_fetcher();
    let v = verifier_with(fetcher, WallClock::fake_at_unix(NOW));
    let mut signed = sign(notification(), "2");
    // Lambda records spell the URL fields `SigningCertUrl` / `UnsubscribeUrl`.
    let url = signed
        .as_object_mut()
        .unwrap()
        .remove("SigningCertURL")
        .unwrap();
    signed["SigningCertUrl"] = url;
    let lambda = json!({"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0",
        "EventSubscriptionArn": format!("{TOPIC}:sub"), "Sns": signed}]});
    let decoded = decode(
        LambdaEvent::new(lambda, Context::default()),
        &DecodeOptions::default(),
    )
    .unwrap();
    let req = &decoded.requests[0];
    assert_eq!(req.body().as_ref(), br#"{"order_id":"ord_12345678"}"#);
    v.verify_request(req).await.unwrap();

    let envelope = sign(notification(), "1");
    let sqs = json!({"Records": [{"eventSource": "aws:sqs", "messageId": "q-1",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:orders",
        "body": envelope.to_string()}]});
    let decoded = decode(
        LambdaEvent::new(sqs, Context::default()),
        &DecodeOptions::default(),
    )
    .unwrap();
    let req = &decoded.requests[0];
    assert_eq!(req.body().as_ref(), br#"{"order_id":"ord_12345678"}"#);
    let p = v.verify_request(req).await.unwrap();
    assert_eq!(p.subject, TOPIC);
}

#[tokio::test]
async fn verifies_http_subscription_deliveries_and_refuses_plain_bodies() {
    let (_, fetcher) = local_fetcher();
    let v = verifier_with(fetcher, WallClock::fake_at_unix(NOW));
    let body = sign(notification(), "2").to_string();
    let mut req = http::Request::new(Bytes::from(body));
    req.headers_mut()
        .insert("x-amz-sns-message-type", "Notification".parse().unwrap());
    v.verify_request(&req).await.unwrap();
    req.headers_mut().insert(
        "x-amz-sns-message-type",
        "SubscriptionConfirmation".parse().unwrap(),
    );
    assert_eq!(
        v.verify_request(&req).await.unwrap_err().kind(),
        RejectionKind::BadSignature
    );
    let plain = http::Request::new(Bytes::from_static(b"{\"order_id\":\"x\"}"));
    assert_eq!(
        v.verify_request(&plain).await.unwrap_err().kind(),
        RejectionKind::MissingCredentials
    );
}

#[tokio::test]
async fn works_as_a_guard_core_verifier_and_the_handler_never_sees_a_refused_message() {
    use guard_core::verify::VerifyLayer;
    use tower::{Layer, ServiceExt};

    let (_, fetcher) = local_fetcher();
    let v = verifier_with(fetcher, WallClock::fake_at_unix(NOW));
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let handler = tower::service_fn(move |_req: guard_core::GuardRequest| {
        c.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, std::convert::Infallible>(guard_core::GuardResponse::new(Bytes::new())) }
    });
    let svc = VerifyLayer::new(v).layer(handler);

    let good = http::Request::new(Bytes::from(sign(notification(), "2").to_string()));
    assert_eq!(svc.clone().oneshot(good).await.unwrap().status(), 200);
    let mut tampered = sign(notification(), "2");
    tampered["Message"] = json!("{}");
    let bad = http::Request::new(Bytes::from(tampered.to_string()));
    let resp = svc.oneshot(bad).await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the refused message never reached the handler"
    );
}

/// Each URL breaks exactly one rule of the region check, so weakening any single rule (an `&&`
/// turned `||`) lets one through: userinfo and `?` / `#` smuggled into the host would make
/// `http::Uri` read the host as `evil.com`.
#[test]
fn each_region_rule_is_needed_on_its_own() {
    let url = |region: &str| {
        format!("https://sns.{region}.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem")
    };
    // The reference: three parts, at most 32 characters, lower-case letters and digits, a number last.
    assert!(CertUrl::parse(&url("us-east-1")).is_some());
    let longest = format!("us-{}-1", "a".repeat(27));
    assert_eq!(longest.len(), 32);
    assert!(CertUrl::parse(&url(&longest)).is_some());
    let too_long = format!("us-{}-1", "a".repeat(28));
    assert_eq!(too_long.len(), 33);
    for (region, rule) in [
        ("x@evil.com?-a-1", "userinfo and a query in the host"),
        ("x@evil.com#-a-1", "userinfo and a fragment in the host"),
        ("x?-a-1", "a query in the host"),
        ("x#-a-1", "a fragment in the host"),
        ("x:443-a-1", "a port in the host"),
        ("us-1", "two parts"),
        ("useast1", "one part"),
        (too_long.as_str(), "33 characters"),
        ("us-east-x", "the last part is not a number"),
        ("us--1", "an empty part"),
        ("US-east-1", "upper case"),
        ("us-east-1.evil", "a dot"),
    ] {
        assert!(
            CertUrl::parse(&url(region)).is_none(),
            "{rule}: {}",
            url(region)
        );
    }
    // The attacker's full URL from the mutation report.
    assert!(
        CertUrl::parse(
            "https://sns.x@evil.com?-a-1.amazonaws.com/SimpleNotificationService-abc.pem"
        )
        .is_none()
    );
    assert!(
        CertUrl::parse(
            "https://sns.x@evil.com#-a-1.amazonaws.com/SimpleNotificationService-abc.pem"
        )
        .is_none()
    );
}
