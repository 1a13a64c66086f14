//! [`SnsVerifier`]: checks an SNS message envelope before anything else trusts it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use futures_util::future::BoxFuture;
use guard_core::GuardRequest;
use guard_core::clock::WallClock;
use guard_core::request::{Principal, PrincipalKind};
use guard_core::verify::Verifier;
use guard_core::{Rejection, RejectionKind};
use rsa::RsaPublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier as _;
use tokio::sync::OnceCell;

use super::{CertFetcher, CertUrl, SnsMessage};

/// How long a certificate URL whose fetch failed is not fetched again.
const FAILURE_COOLDOWN: Duration = Duration::from_secs(10);

/// The verifier's configuration was refused; every problem is listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid SNS verifier configuration: {}", problems.join("; "))]
pub struct SnsConfigError {
    /// What is wrong.
    pub problems: Vec<String>,
}

/// Builds an [`SnsVerifier`].
#[derive(Clone)]
pub struct SnsVerifierBuilder {
    topics: Vec<String>,
    max_age: Duration,
    future_skew: Duration,
    clock: WallClock,
    cache_capacity: usize,
}

impl std::fmt::Debug for SnsVerifierBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnsVerifierBuilder")
            .field("topics", &self.topics)
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl SnsVerifierBuilder {
    /// Allows messages from topics matching `pattern`: a topic ARN where any `:`-separated
    /// segment may be `*` (`arn:aws:sns:*:123456789012:orders`). At least one is required.
    pub fn allow_topic(mut self, pattern: impl Into<String>) -> Self {
        self.topics.push(pattern.into());
        self
    }

    /// How old (by its `Timestamp`) a message may be. Default 1 hour. SNS keeps retrying a
    /// failing endpoint for longer: raise it if those late deliveries must be accepted.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// How far in the future a `Timestamp` may be (clock skew). Default 5 minutes.
    pub fn future_skew(mut self, skew: Duration) -> Self {
        self.future_skew = skew;
        self
    }

    /// The wall clock (default the system clock; tests use `WallClock::fake_at_unix`).
    pub fn clock(mut self, clock: WallClock) -> Self {
        self.clock = clock;
        self
    }

    /// How many certificates to keep (default 32).
    pub fn cache_capacity(mut self, n: usize) -> Self {
        self.cache_capacity = n;
        self
    }

    /// Builds the verifier with `fetcher`, or lists every configuration problem.
    pub fn build(self, fetcher: impl CertFetcher) -> Result<SnsVerifier, SnsConfigError> {
        let mut problems = Vec::new();
        if self.topics.is_empty() {
            problems.push("at least one allowed topic is required".to_owned());
        }
        for t in &self.topics {
            let parts: Vec<&str> = t.split(':').collect();
            if parts.len() != 6 || parts[0] != "arn" || parts[2] != "sns" {
                problems.push(format!(
                    "topic pattern `{t}` is not an SNS topic ARN (arn:<partition>:sns:<region>:<account>:<name>)"
                ));
            } else if parts.iter().any(|p| p.is_empty()) {
                problems.push(format!("topic pattern `{t}` has an empty segment"));
            }
        }
        if self.max_age.is_zero() {
            problems.push("max_age must be greater than zero".to_owned());
        }
        if self.cache_capacity == 0 {
            problems.push("cache_capacity must be at least 1".to_owned());
        }
        if !problems.is_empty() {
            return Err(SnsConfigError { problems });
        }
        Ok(SnsVerifier {
            inner: Arc::new(Inner {
                topics: self.topics,
                max_age: self.max_age,
                future_skew: self.future_skew,
                clock: self.clock,
                cache_capacity: self.cache_capacity,
                fetcher: Box::new(fetcher),
                keys: Mutex::new(HashMap::new()),
                failures: Mutex::new(HashMap::new()),
            }),
        })
    }
}

/// Verifies SNS message signatures (v1 RSA-SHA1, v2 RSA-SHA256), the certificate URL, the
/// `Timestamp` window and the topic allow-list. Cheap to clone; clones share the certificate cache.
///
/// Order of checks, so that nothing is fetched for a message that fails a local check: type,
/// topic allow-list, `SignatureVersion`, certificate URL (and its region = the topic's region),
/// timestamp, signature encoding; then the certificate (cached per URL, single-flight), its
/// validity period, and the signature. `SubscribeURL` is never fetched: confirming a subscription
/// is the application's decision.
///
/// ```
/// use guard_aws::sns::{CertFetchError, CertUrl, SnsMessage, SnsVerifier};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
/// let counter = fetches.clone();
/// let verifier = SnsVerifier::builder()
///     .allow_topic("arn:aws:sns:us-east-1:123456789012:orders")
///     .build(move |_url: CertUrl| {
///         counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
///         async { Err::<bytes::Bytes, _>(CertFetchError("offline".into())) }
///     })
///     .unwrap();
/// let msg: SnsMessage = serde_json::from_value(serde_json::json!({
///     "Type": "Notification", "MessageId": "1", "TopicArn": "arn:aws:sns:us-east-1:123456789012:orders",
///     "Message": "{}", "Timestamp": "2024-01-01T00:00:00Z", "SignatureVersion": "2", "Signature": "AA==",
///     "SigningCertURL": "https://sns.us-east-1.amazonaws.com.evil.com/SimpleNotificationService-1.pem"
/// })).unwrap();
/// let refused = verifier.verify_message(&msg).await.unwrap_err();
/// assert_eq!(refused.status(), 401);
/// assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 0);
/// # }
/// ```
#[derive(Clone)]
pub struct SnsVerifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SnsVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnsVerifier")
            .field("topics", &self.inner.topics)
            .field("max_age", &self.inner.max_age)
            .finish_non_exhaustive()
    }
}

struct Inner {
    topics: Vec<String>,
    max_age: Duration,
    future_skew: Duration,
    clock: WallClock,
    cache_capacity: usize,
    fetcher: Box<dyn CertFetcher>,
    keys: Mutex<HashMap<CertUrl, Arc<OnceCell<Arc<SigningCert>>>>>,
    failures: Mutex<HashMap<CertUrl, SystemTime>>,
}

/// A parsed signing certificate.
struct SigningCert {
    key: RsaPublicKey,
    not_before: i64,
    not_after: i64,
}

#[derive(Clone, Copy)]
enum Version {
    V1Sha1,
    V2Sha256,
}

fn reject(kind: RejectionKind, reason: &'static str) -> Rejection {
    Rejection::new(kind).with_reason(reason)
}

impl SnsVerifier {
    /// A builder with the defaults (1 h max age, 5 min skew, system clock) and no topics.
    pub fn builder() -> SnsVerifierBuilder {
        SnsVerifierBuilder {
            topics: Vec::new(),
            max_age: Duration::from_secs(3600),
            future_skew: Duration::from_secs(300),
            clock: WallClock::system(),
            cache_capacity: 32,
        }
    }

    /// Verifies the SNS envelope of a request: the [`SnsMessage`] extension the Lambda decoder
    /// attached (SNS records, SNS inside SQS), or else the body of an HTTP(S) subscription delivery.
    pub async fn verify_request(&self, req: &GuardRequest) -> Result<Principal, Rejection> {
        if let Some(msg) = req.extensions().get::<SnsMessage>() {
            return self.verify_message(msg).await;
        }
        let msg: SnsMessage = serde_json::from_slice(req.body())
            .map_err(|_| reject(RejectionKind::MissingCredentials, "no SNS message envelope"))?;
        if let Some(header) = req.headers().get("x-amz-sns-message-type")
            && header.as_bytes() != msg.kind.as_bytes()
        {
            return Err(reject(
                RejectionKind::BadSignature,
                "x-amz-sns-message-type does not match Type",
            ));
        }
        self.verify_message(&msg).await
    }

    /// Verifies one message envelope; on success the principal is the topic
    /// (`PrincipalKind::Custom("sns")`, issuer `sns.<region>.amazonaws.com`).
    pub async fn verify_message(&self, msg: &SnsMessage) -> Result<Principal, Rejection> {
        let inner = &self.inner;
        let to_sign = string_to_sign(msg).ok_or(reject(
            RejectionKind::BadSignature,
            "SNS message type unknown or fields missing",
        ))?;
        if !inner
            .topics
            .iter()
            .any(|p| topic_matches(p, &msg.topic_arn))
        {
            return Err(reject(
                RejectionKind::ForbiddenSource,
                "SNS topic not on the allow-list",
            ));
        }
        let version = match msg.signature_version.as_str() {
            "1" => Version::V1Sha1,
            "2" => Version::V2Sha256,
            _ => {
                return Err(reject(
                    RejectionKind::BadSignature,
                    "unknown SNS SignatureVersion",
                ));
            }
        };
        let url = CertUrl::parse(&msg.signing_cert_url).ok_or(reject(
            RejectionKind::BadSignature,
            "SNS certificate URL refused",
        ))?;
        if msg.topic_arn.split(':').nth(3) != Some(url.region()) {
            return Err(reject(
                RejectionKind::BadSignature,
                "SNS certificate region differs from the topic's",
            ));
        }
        let now = inner.clock.now();
        let published = parse_timestamp(&msg.timestamp).ok_or(reject(
            RejectionKind::BadSignature,
            "SNS Timestamp unparsable",
        ))?;
        let now_secs = unix(now);
        if published > now_secs.saturating_add(secs(inner.future_skew))
            || now_secs.saturating_sub(published) > secs(inner.max_age)
        {
            return Err(reject(
                RejectionKind::StaleSignature,
                "SNS Timestamp outside the window",
            ));
        }
        let signature = base64::engine::general_purpose::STANDARD
            .decode(msg.signature.trim())
            .ok()
            .and_then(|b| Signature::try_from(b.as_slice()).ok())
            .ok_or(reject(
                RejectionKind::BadSignature,
                "SNS Signature is not base64",
            ))?;
        let cert = self.certificate(&url, now).await?;
        if now_secs < cert.not_before || now_secs > cert.not_after {
            return Err(reject(
                RejectionKind::BadSignature,
                "SNS certificate outside its validity period",
            ));
        }
        let ok = match version {
            Version::V1Sha1 => VerifyingKey::<sha1::Sha1>::new(cert.key.clone())
                .verify(to_sign.as_bytes(), &signature)
                .is_ok(),
            Version::V2Sha256 => VerifyingKey::<sha2::Sha256>::new(cert.key.clone())
                .verify(to_sign.as_bytes(), &signature)
                .is_ok(),
        };
        if !ok {
            return Err(reject(
                RejectionKind::BadSignature,
                "SNS signature does not verify",
            ));
        }
        let mut principal = Principal::new(PrincipalKind::Custom("sns".into()), &msg.topic_arn)
            .with_issuer(format!("sns.{}.amazonaws.com", url.region()));
        principal.claims.insert(
            "message_id".into(),
            serde_json::Value::String(msg.message_id.clone()),
        );
        principal
            .claims
            .insert("type".into(), serde_json::Value::String(msg.kind.clone()));
        Ok(principal)
    }

    /// The certificate for `url`: from the cache, or fetched once however many callers wait.
    async fn certificate(
        &self,
        url: &CertUrl,
        now: SystemTime,
    ) -> Result<Arc<SigningCert>, Rejection> {
        let inner = &self.inner;
        {
            let failures = inner.failures.lock().unwrap_or_else(|e| e.into_inner());
            if failures
                .get(url)
                .is_some_and(|at| now.duration_since(*at).unwrap_or_default() < FAILURE_COOLDOWN)
            {
                return Err(reject(
                    RejectionKind::VerifyUnavailable,
                    "SNS certificate recently unavailable",
                ));
            }
        }
        let cell = {
            let mut keys = inner.keys.lock().unwrap_or_else(|e| e.into_inner());
            if !keys.contains_key(url) && keys.len() >= inner.cache_capacity {
                keys.clear();
            }
            keys.entry(url.clone()).or_default().clone()
        };
        let result = cell
            .get_or_try_init(|| async {
                let pem = inner.fetcher.fetch(url).await.map_err(|e| {
                    tracing::warn!(target: "guard::aws", error = %e, "SNS certificate fetch failed");
                    reject(
                        RejectionKind::VerifyUnavailable,
                        "SNS certificate unavailable",
                    )
                })?;
                parse_certificate(&pem).map(Arc::new).ok_or(reject(
                    RejectionKind::BadSignature,
                    "SNS certificate unusable",
                ))
            })
            .await
            .cloned();
        if result.is_err() {
            inner
                .failures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(url.clone(), now);
        }
        result
    }
}

/// As a `guard_core` verifier (in `VerifyLayer`, or combined with `any` / `all`): verifies the
/// request's SNS envelope, see [`SnsVerifier::verify_request`].
impl Verifier for SnsVerifier {
    fn verify<'a>(&'a self, req: &'a GuardRequest) -> BoxFuture<'a, Result<Principal, Rejection>> {
        Box::pin(self.verify_request(req))
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => secs(d),
        Err(e) => -secs(e.duration()),
    }
}

/// PEM → X.509 → RSA public key (at least 2048 bits) and validity period.
fn parse_certificate(pem: &[u8]) -> Option<SigningCert> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    let key = RsaPublicKey::from_public_key_der(cert.public_key().raw).ok()?;
    if rsa::traits::PublicKeyParts::size(&key) < 256 {
        return None;
    }
    let validity = cert.validity();
    Some(SigningCert {
        key,
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
    })
}

/// `Key\nValue\n` for each signed field, in the order AWS documents: notifications sign
/// `Message, MessageId, Subject (if present), Timestamp, TopicArn, Type`; confirmations sign
/// `Message, MessageId, SubscribeURL, Timestamp, Token, TopicArn, Type`.
pub(super) fn string_to_sign(msg: &SnsMessage) -> Option<String> {
    let mut out = String::with_capacity(msg.message.len() + 256);
    let mut field = |k: &str, v: &str| {
        out.push_str(k);
        out.push('\n');
        out.push_str(v);
        out.push('\n');
    };
    match msg.kind.as_str() {
        "Notification" => {
            field("Message", &msg.message);
            field("MessageId", &msg.message_id);
            if let Some(subject) = &msg.subject {
                field("Subject", subject);
            }
            field("Timestamp", &msg.timestamp);
            field("TopicArn", &msg.topic_arn);
            field("Type", &msg.kind);
        }
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => {
            field("Message", &msg.message);
            field("MessageId", &msg.message_id);
            field("SubscribeURL", msg.subscribe_url.as_deref()?);
            field("Timestamp", &msg.timestamp);
            field("Token", msg.token.as_deref()?);
            field("TopicArn", &msg.topic_arn);
            field("Type", &msg.kind);
        }
        _ => return None,
    }
    Some(out)
}

/// Exact match, or `*` standing for one whole `:`-separated segment.
fn topic_matches(pattern: &str, arn: &str) -> bool {
    let mut p = pattern.split(':');
    let mut a = arn.split(':');
    loop {
        match (p.next(), a.next()) {
            (None, None) => return true,
            (Some("*"), Some(seg)) if !seg.is_empty() => {}
            (Some(x), Some(y)) if x == y => {}
            _ => return false,
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` → Unix seconds (SNS always uses UTC with `Z`).
fn parse_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let rest = &s[19..];
    let rest = match rest.strip_prefix('.') {
        Some(frac) => {
            let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            &frac[digits..]
        }
        None => rest,
    };
    if rest != "Z"
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sns_timestamps() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_timestamp("2015-08-18T18:02:32.111Z"),
            Some(1_439_920_952)
        );
        assert_eq!(parse_timestamp("2024-02-29T12:00:00Z"), Some(1_709_208_000));
        for bad in [
            "",
            "2015-08-18 18:02:32Z",
            "2015-08-18T18:02:32",
            "2015-08-18T18:02:32+01:00",
            "2015-13-18T18:02:32Z",
            "2015-08-18T18:02:32.Z",
            "+015-08-18T18:02:32Z",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn topic_patterns_match_whole_segments() {
        let arn = "arn:aws:sns:us-east-1:123456789012:orders";
        assert!(topic_matches(arn, arn));
        assert!(topic_matches("arn:aws:sns:*:123456789012:orders", arn));
        assert!(!topic_matches("arn:aws:sns:*:123456789012:order", arn));
        assert!(!topic_matches(
            "arn:aws:sns:us-east-1:123456789012:orders",
            &format!("{arn}-x")
        ));
        assert!(!topic_matches("arn:aws:sns:us-east-1:123456789012", arn));
    }

    #[test]
    fn builder_reports_every_problem() {
        let err = SnsVerifier::builder()
            .allow_topic("orders")
            .allow_topic("arn:aws:sns::1:t")
            .max_age(Duration::ZERO)
            .build(|_u: CertUrl| async {
                Err::<bytes::Bytes, _>(super::super::CertFetchError("x".into()))
            })
            .unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
        let empty = SnsVerifier::builder()
            .build(|_u: CertUrl| async {
                Err::<bytes::Bytes, _>(super::super::CertFetchError("x".into()))
            })
            .unwrap_err();
        assert_eq!(empty.problems.len(), 1);
    }

    /// Days since the epoch of every date from 1600 to 2400, counted one day at a time.
    #[test]
    fn days_from_civil_counts_every_day_of_eight_centuries() {
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let month_len = |y: i64, m: i64| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let mut day = -(370 * 365 + 90); // 1600-01-01: 370 years of 365 days and 90 leap days
        for y in 1600..2400 {
            for m in 1..=12 {
                for d in 1..=month_len(y, m) {
                    assert_eq!(days_from_civil(y, m, d), day, "{y}-{m}-{d}");
                    day += 1;
                }
            }
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
    }

    #[test]
    fn each_timestamp_field_is_checked_on_its_own() {
        let ok = "2015-08-18T18:02:32Z";
        assert_eq!(parse_timestamp(ok), Some(1_439_920_952));
        // One separator wrong at a time.
        for at in [4, 7, 10, 13, 16] {
            let mut b = ok.as_bytes().to_vec();
            b[at] = b'x';
            let bad = String::from_utf8(b).unwrap();
            assert_eq!(parse_timestamp(&bad), None, "{bad}");
        }
        // Signs that `i64::from_str` would take, and a trailing character after `Z`.
        for bad in [
            "+015-08-18T18:02:32Z",
            "2015-+8-18T18:02:32Z",
            "2015-08-+8T18:02:32Z",
            "2015-08-18T+8:02:32Z",
            "2015-08-18T18:+2:32Z",
            "2015-08-18T18:02:+2Z",
            "2015-08-18T18:02:32ZZ",
            "2015-08-18T18:02:32.5",
            "2015-08-18T18:02:32.5z",
            "2015-08-18T18:02:3Z",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
        // The edges of each range: the last value in, the first one out.
        let at = |t: &str| parse_timestamp(t);
        assert_eq!(at("2015-12-31T23:59:60Z"), Some(1_451_606_400));
        assert_eq!(at("2015-01-01T00:00:00Z"), Some(1_420_070_400));
        assert_eq!(at("2015-01-01T00:00:00.000000001Z"), Some(1_420_070_400));
        for bad in [
            "2015-00-01T00:00:00Z",
            "2015-13-01T00:00:00Z",
            "2015-01-00T00:00:00Z",
            "2015-01-32T00:00:00Z",
            "2015-01-01T24:00:00Z",
            "2015-01-01T00:60:00Z",
            "2015-01-01T00:00:61Z",
        ] {
            assert_eq!(at(bad), None, "{bad}");
        }
        // Each component counts with its own weight.
        let base = at("2015-08-18T18:02:32Z").unwrap();
        assert_eq!(at("2015-08-19T18:02:32Z"), Some(base + 86_400));
        assert_eq!(at("2015-08-18T19:02:32Z"), Some(base + 3600));
        assert_eq!(at("2015-08-18T18:03:32Z"), Some(base + 60));
        assert_eq!(at("2015-08-18T18:02:33Z"), Some(base + 1));
    }

    #[test]
    fn times_before_the_epoch_are_negative_and_durations_saturate() {
        assert_eq!(unix(UNIX_EPOCH + Duration::from_secs(7)), 7);
        assert_eq!(unix(UNIX_EPOCH - Duration::from_secs(7)), -7);
        assert_eq!(secs(Duration::from_secs(5)), 5);
        assert_eq!(secs(Duration::MAX), i64::MAX);
    }

    #[test]
    fn a_wildcard_never_matches_an_empty_segment() {
        assert!(topic_matches(
            "arn:aws:sns:*:1:t",
            "arn:aws:sns:eu-west-1:1:t"
        ));
        assert!(!topic_matches("arn:aws:sns:*:1:t", "arn:aws:sns::1:t"));
        assert!(!topic_matches(
            "arn:aws:sns:*:1:t",
            "arn:aws:sns:eu-west-1:1:t:x"
        ));
    }

    fn problems(topic: &str, capacity: usize) -> Vec<String> {
        let built = SnsVerifier::builder()
            .allow_topic(topic)
            .cache_capacity(capacity)
            .build(|_u: CertUrl| async {
                Err::<bytes::Bytes, _>(super::super::CertFetchError("x".into()))
            });
        built.err().map(|e| e.problems).unwrap_or_default()
    }

    #[test]
    fn each_configuration_problem_is_found_on_its_own() {
        assert!(problems("arn:aws:sns:us-east-1:1:t", 1).is_empty());
        for bad in [
            "arn:aws:sns:us-east-1:1:t:x",
            "arn:aws:sns:us-east-1:1",
            "nra:aws:sns:us-east-1:1:t",
            "arn:aws:sqs:us-east-1:1:t",
            "arn:aws:sns::1:t",
            "arn:aws:sns:us-east-1:1:",
        ] {
            assert_eq!(problems(bad, 1).len(), 1, "{bad}");
        }
        assert_eq!(
            problems("arn:aws:sns:us-east-1:1:t", 0),
            ["cache_capacity must be at least 1"]
        );
    }

    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:orders";
    /// 2024-05-01T12:00:00Z
    const NOW: i64 = 1_714_564_800;

    fn cert_url(n: u8) -> String {
        format!("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-{n:032x}.pem")
    }

    /// A signing key and its self-signed certificate valid from `not_before` to `not_after`.
    fn signing_cert(not_before: i64, not_after: i64) -> (rsa::RsaPrivateKey, bytes::Bytes) {
        use rsa::pkcs8::DecodePrivateKey;
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["sns.amazonaws.com".to_owned()]).unwrap();
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        params.not_before = epoch + Duration::from_secs(not_before as u64);
        params.not_after = epoch + Duration::from_secs(not_after as u64);
        let pem = params.self_signed(&kp).unwrap().pem();
        let key = rsa::RsaPrivateKey::from_pkcs8_der(kp.serialized_der()).unwrap();
        (key, pem.into_bytes().into())
    }

    /// A v2 notification published at `timestamp`, signed with `key`, naming certificate `url`.
    fn notification(key: &rsa::RsaPrivateKey, timestamp: &str, url: &str) -> SnsMessage {
        use rsa::signature::{SignatureEncoding, Signer};
        let mut m: SnsMessage = serde_json::from_value(serde_json::json!({
            "Type": "Notification", "MessageId": "m-1", "TopicArn": TOPIC, "Message": "{}",
            "Timestamp": timestamp, "SignatureVersion": "2", "Signature": "",
            "SigningCertURL": url,
        }))
        .unwrap();
        let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone());
        let sig = signer.sign(string_to_sign(&m).unwrap().as_bytes());
        m.signature = base64::engine::general_purpose::STANDARD.encode(sig.to_bytes());
        m
    }

    /// A verifier at `NOW` (600 s max age, 300 s skew) whose fetcher serves `pem` (or fails
    /// when `None`), counting fetches.
    fn verifier(
        pem: Option<bytes::Bytes>,
        capacity: usize,
    ) -> (
        SnsVerifier,
        guard_core::clock::WallClock,
        Arc<std::sync::atomic::AtomicUsize>,
    ) {
        let clock = guard_core::clock::WallClock::fake_at_unix(NOW as u64);
        let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = fetches.clone();
        let v = SnsVerifier::builder()
            .allow_topic(TOPIC)
            .max_age(Duration::from_secs(600))
            .future_skew(Duration::from_secs(300))
            .cache_capacity(capacity)
            .clock(clock.clone())
            .build(move |_u: CertUrl| {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let pem = pem.clone();
                async move { pem.ok_or(super::super::CertFetchError("down".into())) }
            })
            .unwrap();
        (v, clock, fetches)
    }

    fn count(n: &std::sync::atomic::AtomicUsize) -> usize {
        n.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test]
    async fn the_timestamp_window_holds_to_the_second() {
        let (key, pem) = signing_cert(NOW - 86_400, NOW + 86_400);
        let (v, _, _) = verifier(Some(pem), 32);
        let at = |t: &str| notification(&key, t, &cert_url(1));
        for ok in ["2024-05-01T12:05:00Z", "2024-05-01T11:50:00Z"] {
            assert!(v.verify_message(&at(ok)).await.is_ok(), "{ok}");
        }
        for stale in ["2024-05-01T12:05:01Z", "2024-05-01T11:49:59Z"] {
            let refused = v.verify_message(&at(stale)).await.unwrap_err();
            assert_eq!(refused.kind(), RejectionKind::StaleSignature, "{stale}");
        }
    }

    #[tokio::test]
    async fn a_certificate_is_valid_from_its_first_to_its_last_second() {
        let ts = "2024-05-01T12:00:00Z";
        for (not_before, not_after, valid) in [
            (NOW, NOW + 86_400, true),
            (NOW - 86_400, NOW, true),
            (NOW + 1, NOW + 86_400, false),
            (NOW - 86_400, NOW - 1, false),
        ] {
            let (key, pem) = signing_cert(not_before, not_after);
            let (v, _, _) = verifier(Some(pem), 32);
            let r = v
                .verify_message(&notification(&key, ts, &cert_url(1)))
                .await;
            match r {
                Ok(_) => assert!(valid, "{not_before}..{not_after} accepted"),
                Err(e) => {
                    assert!(!valid, "{not_before}..{not_after}: {:?}", e.reason());
                    assert_eq!(
                        e.reason(),
                        Some("SNS certificate outside its validity period")
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn a_failed_certificate_fetch_is_retried_after_ten_seconds_not_before() {
        let (key, _) = signing_cert(NOW - 86_400, NOW + 86_400);
        let (v, clock, fetches) = verifier(None, 32);
        let m = notification(&key, "2024-05-01T12:00:00Z", &cert_url(1));
        let reason = |r: Result<Principal, Rejection>| r.unwrap_err().reason().map(str::to_owned);
        assert_eq!(
            reason(v.verify_message(&m).await).as_deref(),
            Some("SNS certificate unavailable")
        );
        clock.advance(Duration::from_millis(9_999));
        assert_eq!(
            reason(v.verify_message(&m).await).as_deref(),
            Some("SNS certificate recently unavailable")
        );
        assert_eq!(count(&fetches), 1);
        clock.advance(Duration::from_millis(1));
        assert_eq!(
            reason(v.verify_message(&m).await).as_deref(),
            Some("SNS certificate unavailable")
        );
        assert_eq!(count(&fetches), 2);
    }

    #[tokio::test]
    async fn the_certificate_cache_keeps_its_capacity_and_no_more() {
        let (key, pem) = signing_cert(NOW - 86_400, NOW + 86_400);
        let ts = "2024-05-01T12:00:00Z";
        let (v, _, fetches) = verifier(Some(pem.clone()), 2);
        for n in [1, 2, 1, 2] {
            v.verify_message(&notification(&key, ts, &cert_url(n)))
                .await
                .unwrap();
        }
        assert_eq!(count(&fetches), 2, "two certificates fit in two places");
        let (v, _, fetches) = verifier(Some(pem), 1);
        for n in [1, 2, 1] {
            v.verify_message(&notification(&key, ts, &cert_url(n)))
                .await
                .unwrap();
        }
        assert_eq!(
            count(&fetches),
            3,
            "with one place, the second URL evicts the first"
        );
    }

    /// A public key that is not rcgen's own, for a certificate over a key of any size.
    struct RsaSpki(Vec<u8>);

    impl rcgen::PublicKeyData for RsaSpki {
        fn der_bytes(&self) -> &[u8] {
            &self.0
        }
        fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
            &rcgen::PKCS_RSA_SHA256
        }
    }

    /// The PKCS#1 public key of a 2040-bit RSA key (255 bytes of modulus), made with
    /// `openssl genrsa 2040` (generating one in a debug build takes minutes).
    const RSA_2040_PUBLIC: &str = "MIIBCQKCAQAAv6cJkddQA5y8DfaslmaNo75svUd8ngMEzrI+uw3NylhNEfcf2LyOo73gob2K1ruHMNCOkkkfkqhOsxXlHyrZ4slm+J8gEr5Cn3NF7+TEVUyS6ZZ0RuIqY5dCBzsgv3UlKLjs8soXXQP02cQk95k+aXSyZUAb7JWz0nutho/yCeZnhIAq3I2+fqk5YM0/31Q6qg5FA+H1JROY6VzHLSt2RSb4k2KRT2lUFTrNXE9IoL8CeMXTQUQorl7EedGcytpnmEyp6252LQJlyZw/tOth/68+MfruFW6Mw43eaPltk5P3vvofcahZ1heQpA1MdRY5a0us30vSUNJ9FEUSY28TAgMBAAE=";

    #[test]
    fn a_signing_key_under_2048_bits_is_refused() {
        let issuer_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let issuer = rcgen::Issuer::new(
            rcgen::CertificateParams::new(vec!["issuer.example".to_owned()]).unwrap(),
            issuer_key,
        );
        let cert_for = |public: &dyn Fn() -> Vec<u8>| {
            let params =
                rcgen::CertificateParams::new(vec!["sns.amazonaws.com".to_owned()]).unwrap();
            params.signed_by(&RsaSpki(public()), &issuer).unwrap().pem()
        };
        let rsa_2048 = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let der_2048 = || rcgen::PublicKeyData::der_bytes(&rsa_2048).to_vec();
        let der_2040 = || {
            base64::engine::general_purpose::STANDARD
                .decode(RSA_2040_PUBLIC)
                .unwrap()
        };
        let key = parse_certificate(cert_for(&der_2048).as_bytes()).expect("2048 bits");
        assert_eq!(rsa::traits::PublicKeyParts::size(&key.key), 256);
        assert!(parse_certificate(cert_for(&der_2040).as_bytes()).is_none());
    }

    #[test]
    fn debug_shows_the_topics_and_max_age() {
        let builder = SnsVerifier::builder().allow_topic(TOPIC);
        let shown = format!("{builder:?}");
        assert!(
            shown.starts_with("SnsVerifierBuilder {") && shown.contains(TOPIC),
            "{shown}"
        );
        let (v, _, _) = verifier(None, 1);
        let shown = format!("{v:?}");
        assert!(
            shown.starts_with("SnsVerifier {") && shown.contains("600s"),
            "{shown}"
        );
    }
}
