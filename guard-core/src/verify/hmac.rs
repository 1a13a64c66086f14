//! [`HmacVerifier`]: webhook signatures (GitHub, Stripe-style, Slack, generic) over the raw body.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::hmac::{Hmac, Mac};
use base64::Engine as _;
use http::{HeaderMap, HeaderName};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::layer::{Verifier, VerifyFuture};
use crate::ConfigError;
use crate::clock::WallClock;
use crate::rejection::{Rejection, RejectionKind};
use crate::replay::{PendingReplay, PendingReplays, ReplayStore};
use crate::request::{GuardRequest, Principal, PrincipalKind};
use guard_secrets::{SecretStore, SecretValue, SecretsError};

type HmacSha256 = Hmac<Sha256>;

/// Longest signature header considered (longer → 401 `guard.verify.bad_signature`).
pub(crate) const MAX_SIGNATURE_HEADER: usize = 2048;
/// Most `v1=` signatures considered in one Stripe-style header (more → bad signature).
pub(crate) const MAX_SIGNATURES: usize = 8;
/// Default timestamp tolerance, both directions.
pub(crate) const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// How a signature is encoded in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SignatureEncoding {
    /// Lower- or upper-case hex.
    #[default]
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// Where the signature and timestamp are and what exactly was signed. All use HMAC-SHA256.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HmacScheme {
    /// GitHub: `X-Hub-Signature-256: sha256=<hex>` over the body. No timestamp, so replay
    /// protection (if on) remembers identical bodies for the tolerance window.
    GitHub,
    /// Stripe-style: `<header>: t=<unix>,v1=<hex>[,v1=<hex>...]` over `"<t>.<body>"`. Several `v1`
    /// values are accepted so the sender can sign with old and new keys during a key roll.
    Stripe {
        /// The header (`Stripe-Signature` for Stripe, `X-Guard-Signature` for the orders example).
        header: HeaderName,
    },
    /// Slack: `X-Slack-Signature: v0=<hex>` over `"v0:<ts>:<body>"` with
    /// `X-Slack-Request-Timestamp: <ts>`.
    Slack,
    /// Any other sender: `<header>: <prefix><signature>` over `"<ts>.<body>"` when a timestamp
    /// header is given, else over the body.
    Generic {
        /// The signature header.
        header: HeaderName,
        /// Text before the signature (`sha256=`), may be empty.
        prefix: String,
        /// How the signature is encoded.
        encoding: SignatureEncoding,
        /// The header holding the Unix timestamp, if the sender signs one.
        timestamp_header: Option<HeaderName>,
    },
}

impl HmacScheme {
    /// GitHub's `X-Hub-Signature-256`.
    pub fn github() -> Self {
        HmacScheme::GitHub
    }

    /// Stripe's own `Stripe-Signature` header.
    pub fn stripe() -> Self {
        HmacScheme::Stripe {
            header: HeaderName::from_static("stripe-signature"),
        }
    }

    /// The Stripe format under another header name (e.g. `X-Guard-Signature`).
    pub fn stripe_style(header: &str) -> Result<Self, ConfigError> {
        Ok(HmacScheme::Stripe {
            header: header_name(header)?,
        })
    }

    /// Slack's `v0` signatures.
    pub fn slack() -> Self {
        HmacScheme::Slack
    }

    /// A stable short name for principals and logs: `github`, `stripe`, `slack`, `generic`.
    pub fn name(&self) -> &'static str {
        match self {
            HmacScheme::GitHub => "github",
            HmacScheme::Stripe { .. } => "stripe",
            HmacScheme::Slack => "slack",
            HmacScheme::Generic { .. } => "generic",
        }
    }
}

pub(crate) fn header_name(s: &str) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(s.as_bytes())
        .map_err(|_| ConfigError::HeaderName(s.chars().take(64).collect()))
}

/// What the request claims: the signatures, the timestamp, and the bytes signed before the body.
struct Claimed {
    timestamp: Option<u64>,
    signatures: Vec<Vec<u8>>,
    /// Signed bytes that come before the raw body (`"<t>."`, `"v0:<ts>:"`, or nothing).
    prefix: Vec<u8>,
}

enum Extract {
    Missing,
    Malformed(&'static str),
}

fn single_header<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<&'h str, Extract> {
    let mut values = headers.get_all(name).iter();
    let first = values.next().ok_or(Extract::Missing)?;
    if values.next().is_some() {
        return Err(Extract::Malformed("signature header repeated"));
    }
    if first.len() > MAX_SIGNATURE_HEADER {
        return Err(Extract::Malformed("signature header too long"));
    }
    first
        .to_str()
        .map(str::trim)
        .map_err(|_| Extract::Malformed("signature header not ASCII"))
}

fn parse_timestamp(s: &str) -> Result<u64, Extract> {
    if s.is_empty() || s.len() > 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Extract::Malformed("timestamp not a Unix time in seconds"));
    }
    s.parse()
        .map_err(|_| Extract::Malformed("timestamp not a Unix time in seconds"))
}

fn decode_sig(s: &str, enc: SignatureEncoding) -> Result<Vec<u8>, Extract> {
    let bytes = match enc {
        SignatureEncoding::Hex => {
            hex::decode(s).map_err(|_| Extract::Malformed("signature not hex"))?
        }
        SignatureEncoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|_| Extract::Malformed("signature not base64"))?,
    };
    if bytes.len() != 32 {
        return Err(Extract::Malformed("signature has the wrong length"));
    }
    Ok(bytes)
}

fn extract(scheme: &HmacScheme, headers: &HeaderMap) -> Result<Claimed, Extract> {
    match scheme {
        HmacScheme::GitHub => {
            let v = single_header(headers, &HeaderName::from_static("x-hub-signature-256"))?;
            let hex = v
                .strip_prefix("sha256=")
                .ok_or(Extract::Malformed("not a sha256= signature"))?;
            Ok(Claimed {
                timestamp: None,
                signatures: vec![decode_sig(hex, SignatureEncoding::Hex)?],
                prefix: Vec::new(),
            })
        }
        HmacScheme::Stripe { header } => extract_stripe(single_header(headers, header)?),
        HmacScheme::Slack => {
            let v = single_header(headers, &HeaderName::from_static("x-slack-signature"))?;
            let hex = v
                .strip_prefix("v0=")
                .ok_or(Extract::Malformed("not a v0= signature"))?;
            let sig = decode_sig(hex, SignatureEncoding::Hex)?;
            let ts = required_timestamp(
                headers,
                &HeaderName::from_static("x-slack-request-timestamp"),
            )?;
            Ok(Claimed {
                timestamp: Some(ts),
                signatures: vec![sig],
                prefix: format!("v0:{ts}:").into_bytes(),
            })
        }
        HmacScheme::Generic {
            header,
            prefix,
            encoding,
            timestamp_header,
        } => {
            let v = single_header(headers, header)?;
            let raw = v
                .strip_prefix(prefix.as_str())
                .ok_or(Extract::Malformed("signature prefix mismatch"))?;
            let sig = decode_sig(raw, *encoding)?;
            let timestamp = match timestamp_header {
                None => None,
                Some(h) => Some(required_timestamp(headers, h)?),
            };
            Ok(Claimed {
                timestamp,
                signatures: vec![sig],
                prefix: timestamp.map_or_else(Vec::new, |ts| format!("{ts}.").into_bytes()),
            })
        }
    }
}

/// `t=<unix>,v1=<hex>[,v1=<hex>...]`: one timestamp, up to [`MAX_SIGNATURES`] `v1` signatures;
/// other schemes (`v0` test-mode signatures) are ignored.
fn extract_stripe(value: &str) -> Result<Claimed, Extract> {
    let mut t = None;
    let mut sigs = Vec::new();
    for item in value.split(',') {
        let (k, val) = item
            .split_once('=')
            .ok_or(Extract::Malformed("signature item without `=`"))?;
        match k.trim() {
            "t" => {
                let earlier = t.replace(parse_timestamp(val.trim())?);
                if earlier.is_some() {
                    return Err(Extract::Malformed("timestamp repeated"));
                }
            }
            "v1" => {
                if sigs.len() == MAX_SIGNATURES {
                    return Err(Extract::Malformed("too many signatures"));
                }
                sigs.push(decode_sig(val.trim(), SignatureEncoding::Hex)?);
            }
            _ => {}
        }
    }
    let t = t.ok_or(Extract::Malformed("no timestamp"))?;
    if sigs.is_empty() {
        return Err(Extract::Malformed("no v1 signature"));
    }
    Ok(Claimed {
        timestamp: Some(t),
        signatures: sigs,
        prefix: format!("{t}.").into_bytes(),
    })
}

/// The timestamp header of a scheme that signs one: absent is malformed (the signature is there).
fn required_timestamp(headers: &HeaderMap, name: &HeaderName) -> Result<u64, Extract> {
    match single_header(headers, name) {
        Err(Extract::Missing) => Err(Extract::Malformed("no timestamp")),
        other => parse_timestamp(other?),
    }
}

/// The headers that sign `body` with `key` under `scheme` at `unix_seconds`: exactly what
/// [`extract`] reads back (the sending half of each scheme, for outbound calls to a Guard peer).
#[cfg_attr(not(feature = "outbound"), allow(dead_code))]
pub(crate) fn signature_headers(
    scheme: &HmacScheme,
    key: &[u8],
    body: &[u8],
    unix_seconds: u64,
) -> Vec<(HeaderName, http::HeaderValue)> {
    let mac = |prefix: &[u8]| {
        let mut m =
            <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
        m.update(prefix);
        m.update(body);
        m.finalize().into_bytes()
    };
    let value =
        |s: String| http::HeaderValue::try_from(s).expect("hex, digits and ASCII punctuation");
    let t = unix_seconds;
    match scheme {
        HmacScheme::GitHub => vec![(
            HeaderName::from_static("x-hub-signature-256"),
            value(format!("sha256={}", hex::encode(mac(b"")))),
        )],
        HmacScheme::Stripe { header } => vec![(
            header.clone(),
            value(format!(
                "t={t},v1={}",
                hex::encode(mac(format!("{t}.").as_bytes()))
            )),
        )],
        HmacScheme::Slack => vec![
            (
                HeaderName::from_static("x-slack-signature"),
                value(format!(
                    "v0={}",
                    hex::encode(mac(format!("v0:{t}:").as_bytes()))
                )),
            ),
            (
                HeaderName::from_static("x-slack-request-timestamp"),
                value(t.to_string()),
            ),
        ],
        HmacScheme::Generic {
            header,
            prefix,
            encoding,
            timestamp_header,
        } => generic_signature_headers(
            (header, prefix, encoding),
            timestamp_header.as_ref(),
            mac,
            t,
        ),
    }
}

/// The generic scheme's headers: `header: <prefix><signature>` (hex or base64) and, when the
/// scheme signs a timestamp, `timestamp_header: <t>`. `mac` signs `<signed prefix><body>`.
fn generic_signature_headers(
    (header, prefix, encoding): (&HeaderName, &str, &SignatureEncoding),
    timestamp_header: Option<&HeaderName>,
    mac: impl Fn(&[u8]) -> ::hmac::digest::Output<HmacSha256>,
    t: u64,
) -> Vec<(HeaderName, http::HeaderValue)> {
    let signed_prefix = match timestamp_header {
        Some(_) => format!("{t}."),
        None => String::new(),
    };
    let sig = mac(signed_prefix.as_bytes());
    let sig = match encoding {
        SignatureEncoding::Hex => hex::encode(sig),
        SignatureEncoding::Base64 => base64::engine::general_purpose::STANDARD.encode(sig),
    };
    let mut headers = Vec::with_capacity(2);
    // A prefix that is not a valid header value cannot be sent: the request goes unsigned
    // in that part and the peer refuses it, as it would any bad signature.
    if let Ok(v) = http::HeaderValue::try_from(format!("{prefix}{sig}")) {
        headers.push((header.clone(), v));
    }
    if let Some(h) = timestamp_header {
        let t = http::HeaderValue::try_from(t.to_string()).expect("digits");
        headers.push((h.clone(), t));
    }
    headers
}

/// Builds an [`HmacVerifier`]. See [`HmacVerifier::builder`].
pub struct HmacVerifierBuilder {
    scheme: HmacScheme,
    store: SecretStore,
    secret: String,
    tolerance: Duration,
    replay: Option<Arc<dyn ReplayStore>>,
    clock: WallClock,
}

impl std::fmt::Debug for HmacVerifierBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacVerifierBuilder")
            .field("scheme", &self.scheme.name())
            .field("secret", &self.secret)
            .finish_non_exhaustive()
    }
}

impl HmacVerifierBuilder {
    /// Timestamp tolerance in both directions (default 300 s; 1 s to 1 day).
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Accept each signed message once, remembered in `store` (default: no replay protection).
    pub fn replay_store(mut self, store: Arc<dyn ReplayStore>) -> Self {
        self.replay = Some(store);
        self
    }

    /// The wall clock for the timestamp window (default: the system clock).
    pub fn clock(mut self, clock: WallClock) -> Self {
        self.clock = clock;
        self
    }

    /// Checks the configuration.
    pub fn build(self) -> Result<HmacVerifier, ConfigError> {
        if self.secret.trim().is_empty() {
            return Err(ConfigError::EmptySecretName);
        }
        let secs = self.tolerance.as_secs();
        if !(1..=86_400).contains(&secs) {
            return Err(ConfigError::OutOfRange {
                what: "HMAC tolerance",
                min: 1,
                max: 86_400,
            });
        }
        Ok(HmacVerifier {
            inner: Arc::new(self),
        })
    }
}

/// Verifies HMAC-SHA256 webhook signatures over the exact raw body bytes.
///
/// - Keys are read by name from the [`SecretStore`]: the current **and** previous versions are
///   accepted, so a key roll does not reject good traffic. When no key matches, the verifier asks
///   the store for one [`force_refresh`](SecretStore::force_refresh) (the store rate-limits it) and
///   tries once more, so a key rotated a moment ago is picked up.
/// - Signatures are compared in constant time; the signature must be exactly 32 bytes.
/// - Timestamps (Stripe, Slack, generic with a timestamp header) must be within the tolerance in
///   both directions: older or from the future → 401 `guard.verify.stale`.
/// - With a [`ReplayStore`], each signed message (secret name + timestamp + body, hashed) is
///   accepted once: it is remembered until its timestamp can no longer pass the window
///   (`t + tolerance + 1 s`; without a timestamp, for the tolerance), and a second delivery → 401
///   `guard.verify.replayed`. Inside a [`VerifyLayer`](super::VerifyLayer) the signature is only
///   checked as "not seen" here and recorded once the request is admitted, so a request refused
///   later (a 429) can be retried.
/// - No signature header → 401 `guard.verify.missing_credentials`; a malformed, truncated,
///   non-hex, `sha1=` or wrong signature → 401 `guard.verify.bad_signature`; the key cannot be
///   read or is empty → 503 `guard.secrets.unavailable`; the replay store is down → 503
///   `guard.verify.unavailable`.
///
/// The principal is `PrincipalKind::Hmac` with the secret name as subject and claim `scheme`.
///
/// ```
/// use guard_secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
/// use guard_core::verify::{HmacScheme, HmacVerifier, Verifier};
///
/// let store = SecretStore::new(|name: &str, v: SecretVersion| match (name, v) {
///     ("gh-hook", SecretVersion::Current) => Ok(SecretValue::from("It's a Secret to Everybody")),
///     _ => Err(SecretsError::not_found(name)),
/// });
/// let v = HmacVerifier::builder(HmacScheme::github(), store, "gh-hook").build().unwrap();
/// let req = http::Request::builder()
///     .header("x-hub-signature-256",
///         "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
///     .body(bytes::Bytes::from_static(b"Hello, World!"))
///     .unwrap();
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// assert_eq!(rt.block_on(v.verify(&req)).unwrap().subject, "gh-hook");
/// ```
#[derive(Clone)]
pub struct HmacVerifier {
    inner: Arc<HmacVerifierBuilder>,
}

impl std::fmt::Debug for HmacVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

enum Match {
    Yes,
    No,
}

impl HmacVerifier {
    /// Longest signature header considered (longer → 401 `guard.verify.bad_signature`).
    pub const MAX_SIGNATURE_HEADER: usize = MAX_SIGNATURE_HEADER;

    /// A verifier for `scheme` with the key named `secret` in `store`.
    pub fn builder(
        scheme: HmacScheme,
        store: SecretStore,
        secret: impl Into<String>,
    ) -> HmacVerifierBuilder {
        HmacVerifierBuilder {
            scheme,
            store,
            secret: secret.into(),
            tolerance: DEFAULT_TOLERANCE,
            replay: None,
            clock: WallClock::system(),
        }
    }

    fn secrets_unavailable(e: &SecretsError) -> Rejection {
        let why = if e.is_transient() {
            "HMAC key temporarily unavailable"
        } else {
            "HMAC key cannot be read"
        };
        Rejection::new(RejectionKind::SecretsUnavailable).with_reason(why)
    }

    async fn matches(&self, claimed: &Claimed, body: &[u8]) -> Result<Match, Rejection> {
        let cfg = &self.inner;
        let keys = cfg
            .store
            .versions(&cfg.secret)
            .await
            .map_err(|e| Self::secrets_unavailable(&e))?;
        if keys.current.is_empty() {
            return Err(
                Rejection::new(RejectionKind::SecretsUnavailable).with_reason("HMAC key is empty")
            );
        }
        let candidates = std::iter::once(&keys.current).chain(keys.previous.iter());
        for key in candidates {
            if one_key_matches(key, claimed, body) {
                return Ok(Match::Yes);
            }
        }
        Ok(Match::No)
    }

    async fn check(&self, req: &GuardRequest) -> Result<Principal, Rejection> {
        let cfg = &self.inner;
        let bad = |why: &'static str| Rejection::new(RejectionKind::BadSignature).with_reason(why);
        let claimed = match extract(&cfg.scheme, req.headers()) {
            Ok(c) => c,
            Err(Extract::Missing) => {
                return Err(Rejection::new(RejectionKind::MissingCredentials)
                    .with_reason("no signature header"));
            }
            Err(Extract::Malformed(why)) => return Err(bad(why)),
        };
        if let Some(t) = claimed.timestamp {
            let now = cfg.clock.unix_seconds();
            if now.abs_diff(t) > cfg.tolerance.as_secs() {
                return Err(Rejection::new(RejectionKind::StaleSignature)
                    .with_reason("signature timestamp outside tolerance"));
            }
        }
        let body = req.body().as_ref();
        if let Match::No = self.matches(&claimed, body).await? {
            // Perhaps the key was rotated a moment ago: refresh once (rate-limited by the store).
            let refreshed = matches!(cfg.store.force_refresh(&cfg.secret).await, Ok(true));
            if !refreshed {
                return Err(bad("signature mismatch"));
            }
            if let Match::No = self.matches(&claimed, body).await? {
                return Err(bad("signature mismatch after key refresh"));
            }
        }
        if let Some(replay) = &cfg.replay {
            self.use_up(replay, &claimed, req).await?;
        }
        let mut p = Principal::new(PrincipalKind::Hmac, cfg.secret.clone());
        p.claims
            .insert("scheme".into(), serde_json::Value::from(cfg.scheme.name()));
        Ok(p)
    }
}

impl HmacVerifier {
    /// The signature is used up: recorded at once when the request came without a
    /// [`PendingReplays`] collector (a direct call), else checked as "not seen" and left in the
    /// collector, to be recorded once the request is admitted.
    async fn use_up(
        &self,
        replay: &Arc<dyn ReplayStore>,
        claimed: &Claimed,
        req: &GuardRequest,
    ) -> Result<(), Rejection> {
        let cfg = &self.inner;
        let mut h = Sha256::new();
        h.update(b"guard.hmac.replay\0");
        h.update(cfg.secret.as_bytes());
        h.update([0u8]);
        h.update(&claimed.prefix);
        h.update(req.body().as_ref());
        let key = h.finalize();
        let pending = PendingReplay::new(
            replay.clone(),
            &key,
            self.record_until(claimed.timestamp),
            cfg.clock.clone(),
        );
        let Some(collector) = req.extensions().get::<PendingReplays>() else {
            return pending.commit().await;
        };
        match replay.seen(&key).await {
            Ok(false) => {
                collector.push(pending);
                Ok(())
            }
            Ok(true) => Err(Rejection::new(RejectionKind::Replayed)
                .with_reason("signed message already accepted")),
            Err(_) => Err(Rejection::new(RejectionKind::VerifyUnavailable)
                .with_reason("replay store unavailable")),
        }
    }

    /// Until when a signature must be remembered: while its own timestamp `t` can still pass the
    /// window, i.e. while the clock reads at most `t + tolerance` in whole seconds — until
    /// `t + tolerance + 1`. Without a timestamp the body is remembered for the tolerance.
    fn record_until(&self, timestamp: Option<u64>) -> SystemTime {
        let cfg = &self.inner;
        match timestamp {
            Some(t) => {
                let last = t.saturating_add(cfg.tolerance.as_secs()).saturating_add(1);
                UNIX_EPOCH
                    .checked_add(Duration::from_secs(last))
                    .unwrap_or_else(|| cfg.clock.now() + cfg.tolerance * 2)
            }
            None => cfg.clock.now() + cfg.tolerance,
        }
    }
}

fn one_key_matches(key: &SecretValue, claimed: &Claimed, body: &[u8]) -> bool {
    let Ok(mut mac) = HmacSha256::new_from_slice(key.expose_bytes()) else {
        return false;
    };
    mac.update(&claimed.prefix);
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    // Compare against every candidate without stopping early on a match.
    let mut ok = subtle::Choice::from(0u8);
    for sig in &claimed.signatures {
        ok |= tag[..].ct_eq(sig.as_slice());
    }
    bool::from(ok)
}

impl Verifier for HmacVerifier {
    fn verify<'a>(&'a self, req: &'a GuardRequest) -> VerifyFuture<'a> {
        Box::pin(self.check(req))
    }

    /// No signature header: "missing credentials" at once (so an address allow-list in front of
    /// it still decides without a future). Anything else needs the key: `None`.
    fn verify_now(&self, req: &GuardRequest) -> Option<Result<Principal, Rejection>> {
        let present = match &self.inner.scheme {
            HmacScheme::GitHub => req.headers().contains_key("x-hub-signature-256"),
            HmacScheme::Slack => req.headers().contains_key("x-slack-signature"),
            HmacScheme::Stripe { header } | HmacScheme::Generic { header, .. } => {
                req.headers().contains_key(header)
            }
        };
        if present {
            return None;
        }
        Some(Err(
            Rejection::new(RejectionKind::MissingCredentials).with_reason("no signature header")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn stripe_header_parses_several_v1_and_ignores_v0() {
        let sig = "a".repeat(64);
        let h = headers(&[(
            "stripe-signature",
            &format!("t=12,v1={sig},v0={sig},v1={sig}"),
        )]);
        let c = extract(&HmacScheme::stripe(), &h).ok().unwrap();
        assert_eq!(c.timestamp, Some(12));
        assert_eq!(c.signatures.len(), 2);
        assert_eq!(c.prefix, b"12.");
    }

    #[test]
    fn malformed_headers_are_errors_not_panics() {
        let s = HmacScheme::stripe();
        for bad in [
            "",
            "t=",
            "t=1",
            "v1=00",
            "t=1,t=2,v1=".to_string().as_str(),
            "t=-5,v1=00",
            "t=1,v1=zz",
            "garbage",
            "t=99999999999999999999,v1=00",
        ] {
            let h = headers(&[("stripe-signature", bad)]);
            assert!(
                matches!(extract(&s, &h), Err(Extract::Malformed(_))),
                "{bad}"
            );
        }
        let many = format!(
            "t=1{}",
            format!(",v1={}", "0".repeat(64)).repeat(MAX_SIGNATURES + 1)
        );
        let h = headers(&[("stripe-signature", &many)]);
        assert!(matches!(extract(&s, &h), Err(Extract::Malformed(_))));
    }

    #[test]
    fn repeated_signature_header_is_refused() {
        let v = format!("sha256={}", "0".repeat(64));
        let h = headers(&[("x-hub-signature-256", &v), ("x-hub-signature-256", &v)]);
        assert!(matches!(
            extract(&HmacScheme::github(), &h),
            Err(Extract::Malformed(_))
        ));
    }

    #[test]
    fn generic_base64_with_timestamp() {
        let scheme = HmacScheme::Generic {
            header: HeaderName::from_static("x-sig"),
            prefix: String::new(),
            encoding: SignatureEncoding::Base64,
            timestamp_header: Some(HeaderName::from_static("x-ts")),
        };
        let sig = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let h = headers(&[("x-sig", &sig), ("x-ts", "100")]);
        let c = extract(&scheme, &h).ok().unwrap();
        assert_eq!(c.signatures[0], vec![7u8; 32]);
        assert_eq!(c.prefix, b"100.");
        let h = headers(&[("x-sig", &sig)]);
        assert!(matches!(extract(&scheme, &h), Err(Extract::Malformed(_))));
    }

    fn malformed(r: Result<u64, Extract>) -> bool {
        matches!(r, Err(Extract::Malformed(_)))
    }

    #[test]
    fn a_timestamp_is_one_to_twelve_digits_and_nothing_else() {
        assert!(matches!(
            parse_timestamp("999999999999"),
            Ok(999_999_999_999)
        ));
        assert!(matches!(parse_timestamp("7"), Ok(7)));
        for bad in ["1000000000000", "+5", "-5", " 5", "5s", ""] {
            assert!(malformed(parse_timestamp(bad)), "{bad:?}");
        }
    }

    #[test]
    fn a_repeated_stripe_timestamp_is_refused_even_with_a_good_signature() {
        let sig = "a".repeat(64);
        let h = headers(&[("stripe-signature", &format!("t=1,v1={sig},t=2"))]);
        assert!(matches!(
            extract(&HmacScheme::stripe(), &h),
            Err(Extract::Malformed("timestamp repeated"))
        ));
    }

    #[test]
    fn scheme_names_are_stable() {
        assert_eq!(HmacScheme::github().name(), "github");
        assert_eq!(HmacScheme::stripe().name(), "stripe");
        assert_eq!(HmacScheme::slack().name(), "slack");
        let generic = HmacScheme::Generic {
            header: HeaderName::from_static("x-sig"),
            prefix: String::new(),
            encoding: SignatureEncoding::Hex,
            timestamp_header: None,
        };
        assert_eq!(generic.name(), "generic");
    }

    /// What [`signature_headers`] sends is what [`extract`] reads back, and it verifies with the
    /// key (and only with the key).
    #[test]
    fn signed_headers_read_back_and_verify_for_every_scheme() {
        let generic = |encoding, timestamp_header: Option<&'static str>| HmacScheme::Generic {
            header: HeaderName::from_static("x-sig"),
            prefix: "sha256=".into(),
            encoding,
            timestamp_header: timestamp_header.map(HeaderName::from_static),
        };
        let key = SecretValue::from("k1");
        let body = b"{\"n\":1}";
        for scheme in [
            HmacScheme::github(),
            HmacScheme::stripe(),
            HmacScheme::slack(),
            generic(SignatureEncoding::Hex, None),
            generic(SignatureEncoding::Base64, Some("x-ts")),
        ] {
            let mut h = HeaderMap::new();
            for (name, value) in signature_headers(&scheme, b"k1", body, 1_700_000_000) {
                h.append(name, value);
            }
            let claimed = extract(&scheme, &h).ok().unwrap();
            let signs_time = !matches!(
                scheme,
                HmacScheme::GitHub
                    | HmacScheme::Generic {
                        timestamp_header: None,
                        ..
                    }
            );
            assert_eq!(
                claimed.timestamp,
                signs_time.then_some(1_700_000_000),
                "{scheme:?}"
            );
            assert!(one_key_matches(&key, &claimed, body), "{scheme:?}");
            assert!(!one_key_matches(&SecretValue::from("k2"), &claimed, body));
            assert!(!one_key_matches(&key, &claimed, b"{\"n\":2}"));
        }
    }

    #[test]
    fn debug_names_the_scheme_and_secret_but_holds_no_key() {
        let store = SecretStore::new(|_: &str, _: guard_secrets::SecretVersion| {
            Ok(SecretValue::from("hunter2"))
        });
        let v = HmacVerifier::builder(HmacScheme::slack(), store, "slack-key")
            .build()
            .unwrap();
        let shown = format!("{v:?}");
        assert!(
            shown.contains("slack") && shown.contains("slack-key"),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"));
    }
}
