//! SNS records delivered to Lambda (guard-aws): certificate-URL tricks that would make the
//! verifier fetch a key from somewhere other than SNS, and a `SubscribeURL` naming a metadata
//! address. Every URL points at a local listener, and the production HTTPS fetcher is used: the
//! listener counts zero requests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use guard_aws::sns::{CertFetchError, CertUrl, HttpsCertFetcher, SnsVerifier};
use guard_core::clock::WallClock;
use guard_core::{GuardDeps, Policy};
use guard_tests::http::{Reply, StubServer, response};
use lambda_runtime::LambdaEvent;
use rsa::signature::{SignatureEncoding, Signer};
use serde_json::{Value, json};
use tower::{Layer, ServiceExt};

use crate::envelopes::{self, Cloud, Observed};
use crate::orders::{fixture_with, policy_with, private_key_pem, secret_store};
use crate::{Seen, assert_refused};

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:orders";
const CERT_URL: &str = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef0123456789abcdef.pem";
/// 2024-05-01T12:00:00Z, the verifier's clock.
const NOW: u64 = 1_714_564_800;
const TIMESTAMP: &str = "2024-05-01T11:59:30.125Z";

/// The orders policy with SNS deliveries from `TOPIC` allowed when signed.
fn sns_policy() -> Policy {
    policy_with(
        Cloud::Aws,
        |t| {
            t.replace(
                "[verify.sources]\n",
                &format!("[verify.sources]\nsns = [\"{TOPIC}\"]\n"),
            ) + &format!("\n[verify.sns]\ntopics = [\"{TOPIC}\"]\n")
        },
        &[],
    )
}

/// A self-signed certificate for the push key (the SNS signer of these tests).
fn cert_pem() -> &'static str {
    static PEM: OnceLock<String> = OnceLock::new();
    PEM.get_or_init(|| {
        let pem = String::from_utf8(private_key_pem()).unwrap();
        let kp = rcgen::KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).unwrap();
        rcgen::CertificateParams::new(vec!["sns.amazonaws.com".to_owned()])
            .unwrap()
            .self_signed(&kp)
            .unwrap()
            .pem()
    })
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

/// Signs `m` with SignatureVersion 2 (RSA-SHA256); returns the message and the signature.
fn sign(mut m: Value) -> (Value, String) {
    use rsa::pkcs8::DecodePrivateKey;
    let pem = String::from_utf8(private_key_pem()).unwrap();
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(&pem).unwrap();
    let sig = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key)
        .sign(string_to_sign(&m).as_bytes())
        .to_vec();
    let sig = base64::engine::general_purpose::STANDARD.encode(sig);
    m["SignatureVersion"] = json!("2");
    m["Signature"] = json!(sig);
    (m, sig)
}

fn notification(cert_url: &str) -> Value {
    json!({
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": TOPIC,
        "Subject": "order",
        "Message": String::from_utf8(crate::orders::order()).unwrap(),
        "Timestamp": TIMESTAMP,
        "SigningCertUrl": cert_url,
        "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"
    })
}

/// Sends one SNS record through guard-aws with `verifier` checking signatures.
async fn deliver(sns: Value, verifier: SnsVerifier, name: &str) -> Seen {
    crate::logs();
    let policy = sns_policy();
    let f = fixture_with(
        &policy,
        GuardDeps::with_secrets(secret_store("all")).message_verifier("sns", verifier),
    );
    let event = json!({"Records": [{
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": format!("{TOPIC}:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55"),
        "Sns": sns,
    }]});
    let out = guard_aws::GuardLayer::new()
        .layer(f.stack.clone())
        .oneshot(LambdaEvent::new(event, envelopes::lambda_context(0)))
        .await;
    let observed = match out {
        // A refused SNS record fails the invocation (Lambda retries, then its DLQ).
        Err(e) => Observed {
            code: Some(e.error_type.clone()),
            acked: Some(false),
            raw: format!("{} {}", e.error_type, e.error_message),
            ..Observed::default()
        },
        Ok(v) => Observed {
            acked: Some(true),
            raw: v.to_string(),
            ..Observed::default()
        },
    };
    Seen::collect(name, observed, &f, 0)
}

fn production_verifier() -> SnsVerifier {
    SnsVerifier::builder()
        .allow_topic(TOPIC)
        .max_age(Duration::from_secs(3600))
        .clock(WallClock::fake_at_unix(NOW))
        .build(HttpsCertFetcher::new().unwrap())
        .unwrap()
}

/// A verifier whose fetcher serves the local certificate for `CERT_URL` only, counting fetches.
fn local_verifier(fetches: Arc<AtomicUsize>) -> SnsVerifier {
    let pem = Bytes::from(cert_pem().to_owned());
    let fetcher = move |url: CertUrl| {
        fetches.fetch_add(1, Ordering::SeqCst);
        let answer = if url.as_str() == CERT_URL {
            Ok(pem.clone())
        } else {
            Err(CertFetchError("not the local certificate".into()))
        };
        std::future::ready(answer)
    };
    SnsVerifier::builder()
        .allow_topic(TOPIC)
        .max_age(Duration::from_secs(3600))
        .clock(WallClock::fake_at_unix(NOW))
        .build(fetcher)
        .unwrap()
}

/// Certificate URLs that are not SNS's, each written to reach the local listener `addr`.
fn cert_url_tricks(addr: &str) -> Vec<(&'static str, String)> {
    let pem = "SimpleNotificationService-0123456789abcdef.pem";
    vec![
        (
            "an_sns_certificate_url_over_plain_http_is_never_fetched",
            format!("http://{addr}/{pem}"),
        ),
        (
            "an_sns_certificate_url_on_another_host_is_never_fetched",
            format!("https://{addr}/{pem}"),
        ),
        (
            "an_sns_certificate_url_with_the_sns_host_as_userinfo_is_never_fetched",
            format!("https://sns.us-east-1.amazonaws.com@{addr}/{pem}"),
        ),
        (
            "an_sns_certificate_url_ending_in_pem_only_in_its_query_is_never_fetched",
            format!("https://{addr}/evil?x=/{pem}"),
        ),
        (
            "an_sns_certificate_url_whose_host_only_starts_like_sns_is_never_fetched",
            format!("https://sns.us-east-1.amazonaws.com.{addr}/{pem}"),
        ),
        (
            "an_sns_certificate_url_on_another_port_is_never_fetched",
            format!(
                "https://sns.us-east-1.amazonaws.com:{}/{pem}",
                addr.rsplit(':').next().unwrap()
            ),
        ),
        (
            "an_sns_certificate_url_with_a_backslash_before_an_at_sign_is_never_fetched",
            format!("https://sns.us-east-1.amazonaws.com\\@{addr}/{pem}"),
        ),
        (
            "an_sns_certificate_url_with_a_fragment_before_the_real_host_is_never_fetched",
            format!("https://{addr}#sns.us-east-1.amazonaws.com/{pem}"),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_certificate_url_tricks_are_refused_without_any_fetch() {
    let listener =
        StubServer::start(|_| Reply::Respond(response("200 OK", &[], cert_pem().as_bytes()))).await;
    let addr = listener.addr().to_string();
    for (name, url) in cert_url_tricks(&addr) {
        let (message, signature) = sign(notification(&url));
        let seen = deliver(message, production_verifier(), name).await;
        assert_refused(
            name,
            &[seen],
            401,
            "guard.verify.bad_signature",
            &[signature],
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        listener.hits(),
        0,
        "a certificate URL that is not SNS's was fetched"
    );
}

struct SnsCase {
    name: &'static str,
    message: fn(subscribe_url: &str) -> Value,
    status: u16,
    code: &'static str,
}

const CASES: &[SnsCase] = &[
    SnsCase {
        name: "a_signed_subscription_confirmation_never_fetches_its_metadata_subscribe_url",
        message: |url| {
            sign(json!({
                "Type": "SubscriptionConfirmation",
                "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
                "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92",
                "TopicArn": TOPIC,
                "Message": "You have chosen to subscribe to the topic.",
                "SubscribeURL": url,
                "Timestamp": TIMESTAMP,
                "SigningCertUrl": CERT_URL
            }))
            .0
        },
        status: 400,
        code: "guard.validate.malformed_json",
    },
    SnsCase {
        name: "an_unsigned_subscription_confirmation_is_refused_and_its_subscribe_url_never_fetched",
        message: |url| {
            let (mut m, _) = sign(json!({
                "Type": "SubscriptionConfirmation",
                "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
                "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92",
                "TopicArn": TOPIC,
                "Message": "You have chosen to subscribe to the topic.",
                "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
                "Timestamp": TIMESTAMP,
                "SigningCertUrl": CERT_URL
            }));
            m["SubscribeURL"] = json!(url);
            m
        },
        status: 401,
        code: "guard.verify.bad_signature",
    },
    SnsCase {
        name: "an_sns_notification_two_hours_old_is_stale",
        message: |_| {
            let mut n = notification(CERT_URL);
            n["Timestamp"] = json!("2024-05-01T10:00:00.000Z");
            sign(n).0
        },
        status: 401,
        code: "guard.verify.stale",
    },
    SnsCase {
        name: "an_sns_signature_version_3_is_refused",
        message: |_| {
            let mut n = sign(notification(CERT_URL)).0;
            n["SignatureVersion"] = json!("3");
            n
        },
        status: 401,
        code: "guard.verify.bad_signature",
    },
    SnsCase {
        name: "an_sns_message_edited_after_signing_is_refused",
        message: |_| {
            let mut n = sign(notification(CERT_URL)).0;
            n["Message"] = json!(
                n["Message"]
                    .as_str()
                    .unwrap()
                    .replace("\"qty\":2", "\"qty\":200")
            );
            n
        },
        status: 401,
        code: "guard.verify.bad_signature",
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sns_messages_are_refused_and_subscribe_urls_are_never_fetched() {
    // Stands for the instance metadata address (169.254.169.254) a SubscribeURL could name.
    let metadata =
        StubServer::start(|_| Reply::Respond(response("200 OK", &[], b"secret-role"))).await;
    let subscribe_url = metadata.url("/latest/meta-data/iam/security-credentials/");
    for case in CASES {
        let fetches = Arc::new(AtomicUsize::new(0));
        let message = (case.message)(&subscribe_url);
        let signature = message["Signature"].as_str().unwrap_or_default().to_owned();
        let seen = deliver(message, local_verifier(fetches.clone()), case.name).await;
        assert_refused(case.name, &[seen], case.status, case.code, &[signature]);
        assert!(fetches.load(Ordering::SeqCst) <= 1, "{}", case.name);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(metadata.hits(), 0, "a SubscribeURL was fetched");
}
