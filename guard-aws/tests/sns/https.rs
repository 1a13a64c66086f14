//! The production certificate fetcher over real HTTPS: a local TLS server holding a certificate
//! for `sns.us-east-1.amazonaws.com`, reached through the outbound client's pinned address and
//! trusted as its only root. A confirmation never fetches its `SubscribeURL`; certificates outside
//! their validity period, redirects, oversized answers and stalls are refused.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use guard_aws::sns::{CertFetchError, CertFetcher, CertUrl, HttpsCertFetcher, MAX_CERT_BYTES};
use guard_core::RejectionKind;
use guard_core::clock::WallClock;
use guard_http::HttpClient;
use rsa::pkcs8::DecodePrivateKey;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

use super::{CERT_URL, NOW, TIMESTAMP, TOPIC, msg, notification, sign, sign_with, signer};

const SNS_HOST: &str = "sns.us-east-1.amazonaws.com";

/// A TLS server on loopback presenting a certificate for [`SNS_HOST`], answering every request
/// with `reply` and counting requests. Returns the address and the certificate (DER) to trust.
async fn sns_server(reply: Vec<u8>) -> (SocketAddr, Vec<u8>, Arc<AtomicUsize>) {
    let issued = rcgen::generate_simple_self_signed(vec![SNS_HOST.to_string()]).unwrap();
    let der = issued.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(issued.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let mut head = vec![0u8; 4096];
            let _ = tls.read(&mut head).await;
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = tls.write_all(&reply).await;
            let _ = tls.shutdown().await;
        }
    });
    (addr, der.to_vec(), hits)
}

/// A listener that accepts connections, counts them and never answers.
async fn silent_listener() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            open.push(tcp);
        }
    });
    (addr, accepted)
}

fn answer(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// The production fetcher, with [`SNS_HOST`] pinned to `addr` and `root` as its only root.
fn fetcher(addr: SocketAddr, root: Vec<u8>, timeout: Duration) -> HttpsCertFetcher {
    let client = HttpClient::builder()
        .resolve(SNS_HOST, addr)
        .root_certificates_der([root])
        .timeout(timeout)
        .build()
        .unwrap();
    HttpsCertFetcher::with_client(client)
}

fn verifier(f: HttpsCertFetcher) -> guard_aws::sns::SnsVerifier {
    guard_aws::sns::SnsVerifier::builder()
        .allow_topic(TOPIC)
        .max_age(Duration::from_secs(600))
        .clock(WallClock::fake_at_unix(NOW))
        .build(f)
        .unwrap()
}

fn cert_url() -> CertUrl {
    CertUrl::parse(CERT_URL).unwrap()
}

#[tokio::test]
async fn fetches_the_certificate_over_https_and_verifies() {
    let pem = signer().cert_pem.as_bytes();
    let (addr, root, hits) = sns_server(answer("200 OK", "", pem)).await;
    let v = verifier(fetcher(addr, root, Duration::from_secs(2)));
    v.verify_message(&msg(sign(notification(), "2")))
        .await
        .unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_subscription_confirmation_never_fetches_its_subscribe_url() {
    let pem = signer().cert_pem.as_bytes();
    let (addr, root, cert_hits) = sns_server(answer("200 OK", "", pem)).await;
    let (confirm_addr, confirm_hits) = silent_listener().await;
    let subscribe_url = format!("http://{confirm_addr}/?Action=ConfirmSubscription&Token=t");
    let confirmation = json!({
        "Type": "SubscriptionConfirmation",
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92",
        "TopicArn": TOPIC,
        "Message": "You have chosen to subscribe to the topic.",
        "SubscribeURL": subscribe_url,
        "Timestamp": TIMESTAMP,
        "SigningCertURL": CERT_URL
    });
    let v = verifier(fetcher(addr, root, Duration::from_secs(2)));
    let p = v
        .verify_message(&msg(sign(confirmation, "2")))
        .await
        .unwrap();
    assert_eq!(p.claims["type"], "SubscriptionConfirmation");
    // Give a stray background fetch time to arrive before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        confirm_hits.load(Ordering::SeqCst),
        0,
        "SubscribeURL fetched"
    );
    assert_eq!(cert_hits.load(Ordering::SeqCst), 1);
}

/// A signing certificate valid only from `not_before` to `not_after` (unix seconds) and a
/// notification signed with its key.
fn signed_with_validity(not_before: i64, not_after: i64) -> (String, Value) {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["sns.amazonaws.com".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(not_before as u64);
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(not_after as u64);
    let cert = params.self_signed(&kp).unwrap();
    let key = rsa::RsaPrivateKey::from_pkcs8_der(kp.serialized_der()).unwrap();
    (cert.pem(), sign_with(&key, notification(), "2"))
}

#[tokio::test]
async fn a_certificate_outside_its_validity_period_is_refused() {
    let now = NOW as i64;
    let day = 86_400;
    let cases = [
        ("expired", now - 400 * day, now - day),
        ("not yet valid", now + day, now + 400 * day),
    ];
    for (what, not_before, not_after) in cases {
        let (pem, m) = signed_with_validity(not_before, not_after);
        let (addr, root, hits) = sns_server(answer("200 OK", "", pem.as_bytes())).await;
        let v = verifier(fetcher(addr, root, Duration::from_secs(2)));
        let refused = v.verify_message(&msg(m)).await.unwrap_err();
        assert_eq!(refused.kind(), RejectionKind::BadSignature, "{what}");
        assert_eq!(
            refused.reason(),
            Some("SNS certificate outside its validity period"),
            "{what}"
        );
        assert_eq!(hits.load(Ordering::SeqCst), 1, "{what}: fetched over HTTPS");
    }
    // The same key and message inside the period verify (the refusal above is the period's).
    let (pem, m) = signed_with_validity(now - day, now + day);
    let (addr, root, _) = sns_server(answer("200 OK", "", pem.as_bytes())).await;
    verifier(fetcher(addr, root, Duration::from_secs(2)))
        .verify_message(&msg(m))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let (elsewhere, elsewhere_hits) = silent_listener().await;
    let location = format!("location: https://{elsewhere}/SimpleNotificationService-x.pem\r\n");
    let (addr, root, hits) = sns_server(answer("302 Found", &location, b"")).await;
    let err = fetcher(addr, root, Duration::from_secs(2))
        .fetch(&cert_url())
        .await
        .unwrap_err();
    assert_eq!(err, CertFetchError("status 302".into()));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(elsewhere_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_certificate_over_the_cap_is_refused() {
    let big = vec![b'A'; MAX_CERT_BYTES + 1];
    let (addr, root, _) = sns_server(answer("200 OK", "", &big)).await;
    let err = fetcher(addr, root, Duration::from_secs(2))
        .fetch(&cert_url())
        .await
        .unwrap_err();
    assert_eq!(err, CertFetchError("certificate too large".into()));
}

#[tokio::test]
async fn a_stalled_certificate_server_ends_within_the_budget_as_503() {
    // Accepts TCP and never speaks: the TLS handshake stalls.
    let (addr, accepted) = silent_listener().await;
    let budget = Duration::from_millis(400);
    let root = rcgen::generate_simple_self_signed(vec![SNS_HOST.to_string()]).unwrap();
    let v = verifier(fetcher(addr, root.cert.der().to_vec(), budget));
    let started = Instant::now();
    let verdict = tokio::time::timeout(
        budget * 10,
        v.verify_message(&msg(sign(notification(), "2"))),
    )
    .await
    .expect("still waiting long after the budget: no timeout applied");
    let refused = verdict.unwrap_err();
    let took = started.elapsed();
    assert_eq!(refused.kind(), RejectionKind::VerifyUnavailable);
    assert_eq!(refused.status(), 503);
    assert!(took >= budget && took < budget * 3, "took {took:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn refuses_a_server_its_roots_do_not_trust() {
    let (addr, _trusted, hits) = sns_server(answer("200 OK", "", b"pem")).await;
    // The platform's roots do not include the test certificate.
    let client = HttpClient::builder()
        .resolve(SNS_HOST, addr)
        .build()
        .unwrap();
    let err = HttpsCertFetcher::with_client(client)
        .fetch(&cert_url())
        .await
        .unwrap_err();
    assert!(err.0.starts_with("cannot connect"), "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}
