//! [`JwtVerifier`]: OIDC / JWT bearer tokens verified against a [`JwksCache`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::jwks::{JwksCache, Lookup};
use super::layer::{Verifier, VerifyFuture};
use crate::ConfigError;
use crate::clock::WallClock;
use crate::rejection::{Rejection, RejectionKind};
use crate::request::{GuardRequest, Principal, PrincipalKind};

/// Longest bearer token considered (longer → 401 `guard.verify.bad_token`).
pub(crate) const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Default clock-skew allowance for `exp` and `nbf`.
pub(crate) const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// Google's OIDC signing keys (Pub/Sub push, Cloud Tasks, Eventarc tokens).
/// The issuers Google uses in push tokens.
pub(crate) const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];

/// A closure over all verified claims (see [`ClaimPredicate::Custom`]).
pub(crate) type ClaimFn = Arc<dyn Fn(&Map<String, Value>) -> bool + Send + Sync>;

/// A condition on the verified claims. A token that verifies but fails a predicate is
/// authenticated and not allowed: 403 `guard.verify.forbidden`.
#[derive(Clone)]
#[non_exhaustive]
pub enum ClaimPredicate {
    /// The claim equals the value exactly (`email_verified == true`).
    Equals {
        /// Claim name.
        claim: String,
        /// Expected JSON value.
        value: Value,
    },
    /// The claim contains the value: an array with that element, or a space-separated string
    /// (`scope`) with that word.
    Contains {
        /// Claim name.
        claim: String,
        /// The element or word.
        value: String,
    },
    /// The claim is present.
    Exists(String),
    /// Anything else, as a closure over all claims.
    Custom(ClaimFn),
}

impl std::fmt::Debug for ClaimPredicate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClaimPredicate::Equals { claim, .. } => write!(f, "Equals({claim})"),
            ClaimPredicate::Contains { claim, .. } => write!(f, "Contains({claim})"),
            ClaimPredicate::Exists(c) => write!(f, "Exists({c})"),
            ClaimPredicate::Custom(_) => f.write_str("Custom"),
        }
    }
}

impl ClaimPredicate {
    /// `claim == value`.
    pub fn equals(claim: impl Into<String>, value: impl Into<Value>) -> Self {
        ClaimPredicate::Equals {
            claim: claim.into(),
            value: value.into(),
        }
    }

    /// `claim` contains `value` (array element or space-separated word).
    pub fn contains(claim: impl Into<String>, value: impl Into<String>) -> Self {
        ClaimPredicate::Contains {
            claim: claim.into(),
            value: value.into(),
        }
    }

    /// Whether the claims satisfy the predicate.
    ///
    /// ```
    /// use guard_core::verify::ClaimPredicate;
    /// let claims = serde_json::json!({"scope": "orders:read orders:write"});
    /// let claims = claims.as_object().unwrap();
    /// assert!(ClaimPredicate::contains("scope", "orders:write").holds(claims));
    /// assert!(!ClaimPredicate::contains("scope", "orders").holds(claims));
    /// ```
    pub fn holds(&self, claims: &Map<String, Value>) -> bool {
        match self {
            ClaimPredicate::Equals { claim, value } => claims.get(claim) == Some(value),
            ClaimPredicate::Contains { claim, value } => match claims.get(claim) {
                Some(Value::String(s)) => s.split(' ').any(|w| w == value),
                Some(Value::Array(a)) => a.iter().any(|e| e.as_str() == Some(value)),
                _ => false,
            },
            ClaimPredicate::Exists(claim) => claims.contains_key(claim),
            ClaimPredicate::Custom(f) => f(claims),
        }
    }
}

/// Parses an algorithm name for a JWT verifier: RS256/384/512, PS256/384/512, ES256, ES384, EdDSA.
/// `none` and the HMAC algorithms are refused (an asymmetric JWKS never holds HMAC keys, and
/// allowing them is how "RS256 public key used as HS256 secret" attacks start).
pub(crate) fn parse_algorithm(name: &str) -> Result<Algorithm, ConfigError> {
    let alg = match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        other => return Err(ConfigError::Algorithm(other.chars().take(32).collect())),
    };
    Ok(alg)
}

/// Builds a [`JwtVerifier`]. See [`JwtVerifier::builder`].
pub struct JwtVerifierBuilder {
    jwks: JwksCache,
    issuers: Vec<String>,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: Duration,
    predicates: Vec<ClaimPredicate>,
    /// Claims that say *who* the token is for (a push service account): a miss is 401.
    identity: Vec<ClaimPredicate>,
    clock: WallClock,
    kind: PrincipalKind,
}

impl std::fmt::Debug for JwtVerifierBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("algorithms", &self.algorithms)
            .field("leeway", &self.leeway)
            .field("predicates", &self.predicates)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl JwtVerifierBuilder {
    /// Accepted `iss` values. When set, `iss` is required and must be one of them.
    pub fn issuers<I: IntoIterator<Item = S>, S: Into<String>>(mut self, issuers: I) -> Self {
        self.issuers = issuers.into_iter().map(Into::into).collect();
        self
    }

    /// Accepted `aud` values. When set, `aud` is required and must contain one of them.
    pub fn audiences<I: IntoIterator<Item = S>, S: Into<String>>(mut self, audiences: I) -> Self {
        self.audiences = audiences.into_iter().map(Into::into).collect();
        self
    }

    /// Accepted algorithms (default RS256). Each key is further pinned to its own family.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Clock-skew allowance for `exp` / `nbf` (default 60 s, at most 300 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Adds a claim predicate (all must hold): an authorization rule, so a token that fails it
    /// is 403 `guard.verify.forbidden` (a known caller without the right).
    pub fn require(mut self, predicate: ClaimPredicate) -> Self {
        self.predicates.push(predicate);
        self
    }

    /// Adds an identity predicate (all must hold): the claim says *which* caller the token is
    /// for (the push service account's `email`), so a token that fails it is not the expected
    /// caller's at all and is 401 `guard.verify.bad_token`, like a wrong audience.
    pub fn identify(mut self, predicate: ClaimPredicate) -> Self {
        self.identity.push(predicate);
        self
    }

    /// The clock for `exp` / `nbf` (default: the system clock).
    pub fn clock(mut self, clock: WallClock) -> Self {
        self.clock = clock;
        self
    }

    /// The principal kind to report (default [`PrincipalKind::Jwt`]; platform presets use
    /// `Platform("gcp-push")`).
    pub fn principal_kind(mut self, kind: PrincipalKind) -> Self {
        self.kind = kind;
        self
    }

    /// Checks the configuration.
    pub fn build(self) -> Result<JwtVerifier, ConfigError> {
        if self.algorithms.is_empty() {
            return Err(ConfigError::NoAlgorithm);
        }
        for a in &self.algorithms {
            if matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                return Err(ConfigError::Algorithm(format!("{a:?}")));
            }
        }
        if self.leeway > Duration::from_secs(300) {
            return Err(ConfigError::OutOfRange {
                what: "JWT leeway",
                min: 0,
                max: 300,
            });
        }
        for p in &self.predicates {
            if let ClaimPredicate::Equals { claim, .. }
            | ClaimPredicate::Contains { claim, .. }
            | ClaimPredicate::Exists(claim) = p
                && claim.is_empty()
            {
                return Err(ConfigError::ClaimRule(String::new()));
            }
        }
        Ok(JwtVerifier {
            inner: Arc::new(self),
        })
    }
}

/// Verifies `Authorization: Bearer <JWT>` against keys from a [`JwksCache`].
///
/// - Exactly three base64url segments, at most [`JwtVerifier::MAX_TOKEN_LEN`] bytes; a token with a `crit`
///   header is refused (no extension is understood).
/// - `alg` must be one of the configured algorithms **and** fit the key's family (and the key's own
///   `alg`, if the JWKS names one): `none`, HS*, and an RS key used as an HMAC secret never pass.
/// - `exp` is required and must be a number; `exp` + leeway must not have passed; `nbf`, when
///   present, must be a number and not be later than now + leeway; `iss` / `aud` are required and
///   checked when configured; `sub` must be a string.
/// - No bearer token → 401 `guard.verify.missing_credentials`; any failure above → 401
///   `guard.verify.bad_token`, as is an identity predicate failing ([`JwtVerifierBuilder::identify`]:
///   the push service account); claim predicates failing → 403 `guard.verify.forbidden`; no keys
///   could ever be fetched → 503 `guard.verify.unavailable`.
///
/// ```
/// use guard_core::verify::{JwksCache, JwtVerifier, Verifier};
///
/// let jwks = JwksCache::new(|| Ok(br#"{"keys":[]}"#.to_vec()));
/// let v = JwtVerifier::builder(jwks).issuers(["https://issuer.example"]).audiences(["orders"])
///     .build().unwrap();
/// let req = http::Request::new(bytes::Bytes::new());
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// assert_eq!(rt.block_on(v.verify(&req)).unwrap_err().code(), "guard.verify.missing_credentials");
/// ```
#[derive(Clone, Debug)]
pub struct JwtVerifier {
    inner: Arc<JwtVerifierBuilder>,
}

impl JwtVerifier {
    /// Longest bearer token considered, in bytes (longer → 401 `guard.verify.bad_token`).
    pub const MAX_TOKEN_LEN: usize = MAX_TOKEN_LEN;

    /// A verifier using keys from `jwks`.
    pub fn builder(jwks: JwksCache) -> JwtVerifierBuilder {
        JwtVerifierBuilder {
            jwks,
            issuers: Vec::new(),
            audiences: Vec::new(),
            algorithms: vec![Algorithm::RS256],
            leeway: DEFAULT_LEEWAY,
            predicates: Vec::new(),
            identity: Vec::new(),
            clock: WallClock::system(),
            kind: PrincipalKind::Jwt,
        }
    }

    /// GCP push identity (Pub/Sub push, Cloud Tasks, Eventarc): an RS256 token from Google
    /// (`iss` `https://accounts.google.com` or `accounts.google.com`) for `audience`, whose
    /// `email` is `service_account` and `email_verified` is true. `jwks` should fetch
    /// `https://www.googleapis.com/oauth2/v3/certs` (or a test server). The principal kind is `Platform("gcp-push")`.
    pub fn google_push(
        jwks: JwksCache,
        audience: impl Into<String>,
        service_account: impl Into<String>,
    ) -> JwtVerifierBuilder {
        Self::builder(jwks)
            .issuers(GOOGLE_ISSUERS)
            .audiences([audience.into()])
            .algorithms([Algorithm::RS256])
            .identify(ClaimPredicate::equals("email", service_account.into()))
            .identify(ClaimPredicate::equals("email_verified", true))
            .principal_kind(PrincipalKind::Platform("gcp-push".into()))
    }

    async fn check(&self, req: &GuardRequest) -> Result<Principal, Rejection> {
        let cfg = &self.inner;
        let token = bearer(req.headers())?;
        let header = self.screen(token)?;
        let key = cfg
            .jwks
            .find(header.kid.as_deref(), header.alg)
            .await
            .map_err(|l| match l {
                Lookup::Unknown => bad_token("no key for kid and alg"),
                Lookup::Unavailable => Rejection::new(RejectionKind::VerifyUnavailable)
                    .with_reason("no JWKS keys available"),
            })?;
        // Signature and algorithm only: every claim is checked below with the injected clock.
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|_| bad_token("signature or encoding invalid"))?;
        self.check_claims(&data.claims)?;
        self.principal(data.claims)
    }

    /// What can be refused before any key is looked up: length, shape, header (`crit`,
    /// algorithm) and, when issuers are configured, the issuer.
    fn screen(&self, token: &str) -> Result<jsonwebtoken::Header, Rejection> {
        let cfg = &self.inner;
        if token.len() > MAX_TOKEN_LEN {
            return Err(bad_token("token too long"));
        }
        let well_formed = token.split('.').count() == 3
            && token.split('.').all(|s| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !well_formed {
            return Err(bad_token("not a three-segment compact JWS"));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| bad_token("unreadable header"))?;
        if header.crit.is_some() {
            return Err(bad_token("critical header extension"));
        }
        if !cfg.algorithms.contains(&header.alg) {
            return Err(bad_token("algorithm not allowed"));
        }
        // A token of another issuer never reaches the keys (nor makes the cache fetch).
        if !cfg.issuers.is_empty()
            && !peek_issuer(token).is_some_and(|iss| cfg.issuers.contains(&iss))
        {
            return Err(bad_token("issuer missing or not accepted"));
        }
        Ok(header)
    }

    /// The principal of verified, current claims: the expected caller (`identify`), allowed
    /// (`require`), with a string `sub`.
    fn principal(&self, claims: Map<String, Value>) -> Result<Principal, Rejection> {
        let cfg = &self.inner;
        if !cfg.identity.iter().all(|p| p.holds(&claims)) {
            return Err(bad_token("token is not for the expected caller"));
        }
        if !cfg.predicates.iter().all(|p| p.holds(&claims)) {
            return Err(
                Rejection::new(RejectionKind::Forbidden).with_reason("claim predicate failed")
            );
        }
        let sub = match claims.get("sub") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(bad_token("sub missing or not a string")),
        };
        let mut p = Principal::new(cfg.kind.clone(), sub);
        if let Some(Value::String(iss)) = claims.get("iss") {
            p = p.with_issuer(iss.clone());
        }
        p.claims = claims.into_iter().collect::<BTreeMap<_, _>>();
        Ok(p)
    }

    fn check_claims(&self, claims: &Map<String, Value>) -> Result<(), Rejection> {
        let cfg = &self.inner;
        let bad = bad_token;
        let now = cfg.clock.unix_seconds() as f64;
        let leeway = cfg.leeway.as_secs_f64();
        let number = |name: &str| -> Result<Option<f64>, Rejection> {
            match claims.get(name) {
                None => Ok(None),
                Some(Value::Number(n)) => n
                    .as_f64()
                    .filter(|f| f.is_finite())
                    .map(Some)
                    .ok_or_else(|| bad("time claim out of range")),
                Some(_) => Err(bad("time claim is not a number")),
            }
        };
        let exp = number("exp")?.ok_or_else(|| bad("exp missing"))?;
        if now > exp + leeway {
            return Err(bad("token expired"));
        }
        if let Some(nbf) = number("nbf")?
            && now + leeway < nbf
        {
            return Err(bad("token not yet valid"));
        }
        if !cfg.issuers.is_empty() {
            match claims.get("iss") {
                Some(Value::String(iss)) if cfg.issuers.iter().any(|i| i == iss) => {}
                _ => return Err(bad("issuer missing or not accepted")),
            }
        }
        if !cfg.audiences.is_empty() {
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => cfg.audiences.iter().any(|x| x == a),
                Some(Value::Array(list)) => list
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|a| cfg.audiences.iter().any(|x| x == a)),
                _ => false,
            };
            if !ok {
                return Err(bad("audience missing or not accepted"));
            }
        }
        Ok(())
    }
}

/// The `iss` claim of a compact JWS, read without verifying anything: only to choose which
/// issuer's keys (if any) to try. `None` when it is not there or not readable.
pub(crate) fn peek_issuer(token: &str) -> Option<String> {
    use base64::Engine as _;
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let payload = token.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: Option<Value>,
    }
    match serde_json::from_slice::<Iss>(&json).ok()?.iss? {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// The bearer token: missing header or another scheme → missing credentials; repeated or
/// unreadable header → bad token.
pub(crate) fn bearer(headers: &http::HeaderMap) -> Result<&str, Rejection> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let missing =
        || Rejection::new(RejectionKind::MissingCredentials).with_reason("no bearer token");
    let value = values.next().ok_or_else(missing)?;
    if values.next().is_some() {
        return Err(Rejection::new(RejectionKind::BadToken).with_reason("authorization repeated"));
    }
    let value = value.to_str().map_err(|_| {
        Rejection::new(RejectionKind::BadToken).with_reason("authorization not ASCII")
    })?;
    let value = value.trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(missing());
    }
    match token.trim() {
        "" => Err(Rejection::new(RejectionKind::BadToken).with_reason("empty bearer token")),
        t => Ok(t),
    }
}

impl Verifier for JwtVerifier {
    fn verify<'a>(&'a self, req: &'a GuardRequest) -> VerifyFuture<'a> {
        Box::pin(self.check(req))
    }

    /// No bearer token (or an unreadable `Authorization`): refused at once, so an address
    /// allow-list in front of it still decides without a future. A token needs the keys: `None`.
    fn verify_now(&self, req: &GuardRequest) -> Option<Result<Principal, Rejection>> {
        bearer(req.headers()).err().map(Err)
    }
}

/// 401 `guard.verify.bad_token`, with why for the security event.
fn bad_token(why: &'static str) -> Rejection {
    Rejection::new(RejectionKind::BadToken).with_reason(why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use serde_json::json;

    #[test]
    fn none_and_hmac_algorithm_names_are_refused() {
        assert!(parse_algorithm("RS256").is_ok());
        assert!(parse_algorithm("HS256").is_err());
        assert!(parse_algorithm("none").is_err());
    }

    #[test]
    fn each_algorithm_name_parses_to_itself() {
        for (name, alg) in [
            ("RS256", Algorithm::RS256),
            ("RS384", Algorithm::RS384),
            ("RS512", Algorithm::RS512),
            ("PS256", Algorithm::PS256),
            ("PS384", Algorithm::PS384),
            ("PS512", Algorithm::PS512),
            ("ES256", Algorithm::ES256),
            ("ES384", Algorithm::ES384),
            ("EdDSA", Algorithm::EdDSA),
        ] {
            assert_eq!(parse_algorithm(name).ok(), Some(alg), "{name}");
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn claim_predicates_hold_only_for_their_value() {
        let c = claims(json!({
            "email": "svc@example.iam", "verified": true,
            "scope": "read write", "roles": ["admin", "ops"], "n": 3
        }));
        let holds = |p: ClaimPredicate| p.holds(&c);
        assert!(holds(ClaimPredicate::equals("email", "svc@example.iam")));
        assert!(!holds(ClaimPredicate::equals("email", "other@example.iam")));
        assert!(holds(ClaimPredicate::equals("verified", true)));
        assert!(!holds(ClaimPredicate::equals("verified", "true")));
        assert!(!holds(ClaimPredicate::equals("absent", Value::Null)));
        assert!(holds(ClaimPredicate::contains("scope", "write")));
        assert!(!holds(ClaimPredicate::contains("scope", "rea")));
        assert!(holds(ClaimPredicate::contains("roles", "ops")));
        assert!(!holds(ClaimPredicate::contains("roles", "root")));
        assert!(!holds(ClaimPredicate::contains("n", "3")));
        assert!(!holds(ClaimPredicate::contains("absent", "x")));
        assert!(holds(ClaimPredicate::Exists("n".into())));
        assert!(!holds(ClaimPredicate::Exists("absent".into())));
        assert!(holds(ClaimPredicate::Custom(Arc::new(|c| c.len() == 5))));
        assert!(!holds(ClaimPredicate::Custom(Arc::new(|c| c.is_empty()))));
    }

    fn verifier(issuers: &[&str], audiences: &[&str]) -> (JwtVerifier, JwksCache) {
        let jwks = JwksCache::new(|| Ok(br#"{"keys":[]}"#.to_vec()));
        let v = JwtVerifier::builder(jwks.clone())
            .issuers(issuers.iter().copied())
            .audiences(audiences.iter().copied())
            .clock(WallClock::fake_at_unix(T))
            .build()
            .unwrap();
        (v, jwks)
    }

    const T: u64 = 1_700_000_000;

    fn time_ok(v: &JwtVerifier, c: Value) -> bool {
        v.check_claims(&claims(c)).is_ok()
    }

    /// `exp` and `nbf` with the default 60 s leeway, to the second.
    #[test]
    fn token_lifetime_edges_with_the_leeway() {
        let (v, _) = verifier(&[], &[]);
        let t = T as f64;
        assert!(time_ok(&v, json!({"exp": t - 60.0})));
        assert!(!time_ok(&v, json!({"exp": t - 61.0})));
        assert!(time_ok(&v, json!({"exp": t + 1.0, "nbf": t + 60.0})));
        assert!(!time_ok(&v, json!({"exp": t + 1.0, "nbf": t + 61.0})));
        assert!(time_ok(&v, json!({"exp": t + 1.0, "nbf": t - 1000.0})));
        assert!(!time_ok(&v, json!({"exp": t + 1.0, "nbf": "0"})));
        assert!(!time_ok(&v, json!({"nbf": t})));
    }

    #[test]
    fn issuer_and_audience_claims_are_checked_only_when_configured() {
        let exp = T + 100;
        let (open, _) = verifier(&[], &[]);
        assert!(time_ok(&open, json!({"exp": exp})));
        assert!(time_ok(&open, json!({"exp": exp, "iss": "any", "aud": 7})));
        let (v, _) = verifier(&["https://a", "https://b"], &["orders", "billing"]);
        let ok = |c: Value| time_ok(&v, c);
        assert!(ok(
            json!({"exp": exp, "iss": "https://b", "aud": "billing"})
        ));
        assert!(ok(
            json!({"exp": exp, "iss": "https://a", "aud": ["x", "orders"]})
        ));
        assert!(!ok(
            json!({"exp": exp, "iss": "https://c", "aud": "orders"})
        ));
        assert!(!ok(
            json!({"exp": exp, "iss": ["https://a"], "aud": "orders"})
        ));
        assert!(!ok(json!({"exp": exp, "aud": "orders"})));
        assert!(!ok(json!({"exp": exp, "iss": "https://a", "aud": "other"})));
        assert!(!ok(
            json!({"exp": exp, "iss": "https://a", "aud": ["other", 1]})
        ));
        assert!(!ok(
            json!({"exp": exp, "iss": "https://a", "aud": {"orders": 1}})
        ));
        assert!(!ok(json!({"exp": exp, "iss": "https://a"})));
    }

    fn b64(v: Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    /// A token with a readable header and payload and a signature that is never checked here.
    fn unsigned(payload: Value) -> String {
        format!(
            "{}.{}.c2ln",
            b64(json!({"alg": "RS256", "kid": "k"})),
            b64(payload)
        )
    }

    async fn refused_because(v: &JwtVerifier, token: &str) -> String {
        let req = http::Request::builder()
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .body(bytes::Bytes::new())
            .unwrap();
        let r = v.check(&req).await.unwrap_err();
        assert_eq!(r.kind(), RejectionKind::BadToken, "{token}");
        r.reason().unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn only_three_non_empty_base64url_segments_are_read() {
        let (v, _) = verifier(&[], &[]);
        let shape = "not a three-segment compact JWS";
        for bad in [
            "a.b", "a.b.c.d", "a..c", "a+b.c.d", "a/b.c.d", "ab=.c.d", "a b.c.d",
        ] {
            assert_eq!(refused_because(&v, bad).await, shape, "{bad}");
        }
        // The right alphabet gets past the shape check (and fails on its content).
        assert_eq!(refused_because(&v, "aZ09-_.c.d").await, "unreadable header");
    }

    #[tokio::test]
    async fn the_issuer_precheck_runs_only_with_issuers_and_before_the_keys() {
        let (v, jwks) = verifier(&["https://a"], &[]);
        let other = unsigned(json!({"iss": "https://b"}));
        assert_eq!(
            refused_because(&v, &other).await,
            "issuer missing or not accepted"
        );
        let no_iss = unsigned(json!({"sub": "x"}));
        assert_eq!(
            refused_because(&v, &no_iss).await,
            "issuer missing or not accepted"
        );
        assert_eq!(
            jwks.fetches(),
            0,
            "a token of another issuer never reaches the keys"
        );
        let ours = unsigned(json!({"iss": "https://a"}));
        assert_eq!(refused_because(&v, &ours).await, "no key for kid and alg");
        let (open, _) = verifier(&[], &[]);
        assert_eq!(
            refused_because(&open, &other).await,
            "no key for kid and alg"
        );
    }

    #[test]
    fn peek_issuer_reads_only_a_string_iss() {
        assert_eq!(
            peek_issuer(&unsigned(json!({"iss": "https://a"}))).as_deref(),
            Some("https://a")
        );
        assert_eq!(peek_issuer(&unsigned(json!({"iss": 1}))), None);
        assert_eq!(peek_issuer(&unsigned(json!({}))), None);
        assert_eq!(peek_issuer("a"), None);
    }

    #[test]
    fn debug_lists_the_rules_by_claim_name() {
        let (v, _) = verifier(&["https://a"], &["orders"]);
        let shown = format!("{v:?}");
        assert!(
            shown.contains("https://a") && shown.contains("orders"),
            "{shown}"
        );
        let preds = format!(
            "{:?}",
            [
                ClaimPredicate::equals("email", "secret-value"),
                ClaimPredicate::contains("scope", "w"),
                ClaimPredicate::Exists("n".into()),
                ClaimPredicate::Custom(Arc::new(|_| true)),
            ]
        );
        assert_eq!(preds, "[Equals(email), Contains(scope), Exists(n), Custom]");
    }
}
