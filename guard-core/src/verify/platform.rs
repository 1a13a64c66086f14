//! Platform principals: identities the cloud already verified, handed over by the adapter in a
//! typed extension ([`PlatformIdentity`]: AWS API Gateway authorizers, the Azure Functions host) or
//! in a header only the
//! platform can set (Azure App Service Authentication / "Easy Auth"). GCP push identity is a JWT
//! preset: [`JwtVerifier::google_push`](super::JwtVerifier::google_push).

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::jwt::ClaimPredicate;
use crate::rejection::{Rejection, RejectionKind};
use crate::request::{Cloud, GuardRequest, Invocation, Principal, PrincipalKind};

/// An identity a platform mechanism verified, inserted by the adapter: an AWS API Gateway
/// authorizer's result (guard-aws; provider `aws-iam`, `aws-cognito`, `aws-jwt` or
/// `aws-lambda-authorizer`), the Azure Functions host's `Identities` in custom-handler mode, ...
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PlatformIdentity {
    /// Who verified it (`azure-functions-host`, ...).
    pub provider: String,
    /// The identity (empty: the platform vouched for nobody, which no verifier accepts).
    pub subject: String,
    /// The identity provider, if known.
    pub issuer: Option<String>,
    /// Verified claims.
    pub claims: Map<String, Value>,
}

impl PlatformIdentity {
    /// An identity from `provider` for `subject`.
    pub fn new(provider: impl Into<String>, subject: impl Into<String>) -> Self {
        Self {
            provider: provider.into(),
            subject: subject.into(),
            issuer: None,
            claims: Map::new(),
        }
    }
}

fn forbidden_unless(
    predicates: &[ClaimPredicate],
    claims: &Map<String, Value>,
) -> Result<(), Rejection> {
    if predicates.iter().all(|p| p.holds(claims)) {
        Ok(())
    } else {
        Err(Rejection::new(RejectionKind::Forbidden).with_reason("claim predicate failed"))
    }
}

fn missing(why: &'static str) -> Rejection {
    Rejection::new(RejectionKind::MissingCredentials).with_reason(why)
}

/// Accepts a [`PlatformIdentity`] from one of its providers. No (matching) identity → 401
/// `guard.verify.missing_credentials`; predicates failing → 403 `guard.verify.forbidden`; an
/// identity with an empty subject (the platform vouched for nobody) → 401. The
/// principal kind is `Platform(<provider>)`, its issuer and claims the identity's.
///
/// ```
/// use guard_core::request::PrincipalKind;
/// use guard_core::verify::{ClaimPredicate, PlatformIdentity, PlatformIdentityVerifier, Verifier};
///
/// let v = PlatformIdentityVerifier::new("aws-iam")
///     .or_provider("aws-cognito")
///     .require(ClaimPredicate::equals("account_id", "123456789012"));
/// let mut id = PlatformIdentity::new("aws-iam", "arn:aws:iam::123456789012:user/ci");
/// id.claims.insert("account_id".into(), "123456789012".into());
/// let mut req = http::Request::new(bytes::Bytes::new());
/// req.extensions_mut().insert(id);
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let p = rt.block_on(v.verify(&req)).unwrap();
/// assert_eq!(p.kind, PrincipalKind::Platform("aws-iam".into()));
/// assert_eq!(p.subject, "arn:aws:iam::123456789012:user/ci");
/// ```
#[derive(Debug, Clone)]
pub struct PlatformIdentityVerifier {
    providers: Vec<String>,
    predicates: Vec<ClaimPredicate>,
}

impl PlatformIdentityVerifier {
    /// Accepts identities from `provider`.
    pub fn new(provider: impl Into<String>) -> Self {
        Self {
            providers: vec![provider.into()],
            predicates: Vec::new(),
        }
    }

    /// Accepts identities from `provider` too.
    pub fn or_provider(mut self, provider: impl Into<String>) -> Self {
        self.providers.push(provider.into());
        self
    }

    /// Adds a predicate over the identity's claims.
    pub fn require(mut self, predicate: ClaimPredicate) -> Self {
        self.predicates.push(predicate);
        self
    }

    fn check(&self, req: &GuardRequest) -> Result<Principal, Rejection> {
        let id = req
            .extensions()
            .get::<PlatformIdentity>()
            .filter(|i| self.providers.contains(&i.provider))
            .ok_or_else(|| missing("no platform identity"))?;
        forbidden_unless(&self.predicates, &id.claims)?;
        if id.subject.is_empty() {
            return Err(missing("platform identity without a principal"));
        }
        let mut p = Principal::new(
            PrincipalKind::Platform(id.provider.clone().into()),
            id.subject.clone(),
        );
        p.issuer = id.issuer.clone();
        p.claims = id.claims.clone().into_iter().collect();
        Ok(p)
    }
}

crate::macros::verifier_from_check!(PlatformIdentityVerifier);

/// The Easy Auth principal header.
pub(crate) const EASY_AUTH_HEADER: &str = "x-ms-client-principal";
/// Largest `X-MS-CLIENT-PRINCIPAL` accepted, in bytes (larger → 401 `guard.verify.bad_token`).
pub(crate) const MAX_EASY_AUTH_BYTES: usize = 16 * 1024;
/// Most claims read from one Easy Auth principal (more → 401 `guard.verify.bad_token`).
pub(crate) const MAX_EASY_AUTH_CLAIMS: usize = 256;

#[derive(Deserialize)]
struct EasyAuthPrincipal {
    auth_typ: String,
    name_typ: String,
    role_typ: String,
    claims: Vec<EasyAuthClaim>,
}

#[derive(Deserialize)]
struct EasyAuthClaim {
    typ: String,
    val: String,
}

/// Azure App Service Authentication ("Easy Auth"): the platform authenticates the caller and passes
/// `X-MS-CLIENT-PRINCIPAL` (base64 JSON `{auth_typ, name_typ, role_typ, claims: [{typ, val}]}`).
///
/// **Only configure it when Easy Auth is on for the function app** — then the platform strips any
/// client-sent copy of the header; without it, anyone can send one. As a second guard the header is
/// only believed when the adapter reports [`Cloud::Azure`] in [`Invocation`] (so one shared policy
/// cannot be fooled on AWS or GCP).
///
/// Absent → 401 `guard.verify.missing_credentials`; present outside Azure, larger than
/// 16 KiB, not base64, not that JSON shape, more than 256
/// claims or no name claim → 401 `guard.verify.bad_token`; an `auth_typ` not allowed or predicates
/// failing → 403 `guard.verify.forbidden`. The subject is the claim whose `typ` is `name_typ`;
/// claims are `typ → val` (repeated types become arrays) plus `roles` from `role_typ` claims.
///
/// ```
/// use base64::Engine as _;
/// use guard_core::request::{Cloud, Invocation};
/// use guard_core::verify::{EasyAuthVerifier, Verifier};
///
/// let json = r#"{"auth_typ":"aad","name_typ":"name","role_typ":"roles",
///                "claims":[{"typ":"name","val":"ada@example.com"},{"typ":"roles","val":"writer"}]}"#;
/// let mut req = http::Request::builder()
///     .header("x-ms-client-principal", base64::engine::general_purpose::STANDARD.encode(json))
///     .body(bytes::Bytes::new()).unwrap();
/// req.extensions_mut().insert(Invocation::new(Cloud::Azure));
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let p = rt.block_on(EasyAuthVerifier::new().verify(&req)).unwrap();
/// assert_eq!(p.subject, "ada@example.com");
/// assert_eq!(p.claims["roles"], serde_json::json!(["writer"]));
/// ```
#[derive(Debug, Clone, Default)]
pub struct EasyAuthVerifier {
    auth_types: Vec<String>,
    predicates: Vec<ClaimPredicate>,
}

impl EasyAuthVerifier {
    /// The header App Service Authentication puts the principal in (`X-MS-CLIENT-PRINCIPAL`).
    pub const HEADER: &str = EASY_AUTH_HEADER;

    /// Accepts any identity provider Easy Auth is configured with.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts only these `auth_typ` values (`aad`, `google`, ...).
    pub fn auth_types<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.auth_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a predicate over the claims.
    pub fn require(mut self, predicate: ClaimPredicate) -> Self {
        self.predicates.push(predicate);
        self
    }

    fn check(&self, req: &GuardRequest) -> Result<Principal, Rejection> {
        let bad = |why: &'static str| Rejection::new(RejectionKind::BadToken).with_reason(why);
        let mut values = req.headers().get_all(EASY_AUTH_HEADER).iter();
        let raw = values
            .next()
            .ok_or_else(|| missing("no Easy Auth principal"))?;
        if values.next().is_some() {
            return Err(bad("Easy Auth principal repeated"));
        }
        let on_azure = req
            .extensions()
            .get::<Invocation>()
            .is_some_and(|i| i.cloud == Cloud::Azure);
        if !on_azure {
            return Err(bad("Easy Auth principal outside Azure"));
        }
        if raw.len() > MAX_EASY_AUTH_BYTES {
            return Err(bad("Easy Auth principal too large"));
        }
        let raw = raw.as_bytes().trim_ascii();
        let json = base64::engine::general_purpose::STANDARD
            .decode(raw)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(raw))
            .map_err(|_| bad("Easy Auth principal not base64"))?;
        let principal: EasyAuthPrincipal = serde_json::from_slice(&json)
            .map_err(|_| bad("Easy Auth principal not the expected JSON"))?;
        if principal.claims.len() > MAX_EASY_AUTH_CLAIMS {
            return Err(bad("Easy Auth principal has too many claims"));
        }
        let (auth_typ, claims, subject) = principal.into_parts();
        let subject = subject.ok_or_else(|| bad("Easy Auth principal without a name claim"))?;
        if !self.auth_types.is_empty() && !self.auth_types.contains(&auth_typ) {
            return Err(Rejection::new(RejectionKind::Forbidden)
                .with_reason("identity provider not allowed"));
        }
        forbidden_unless(&self.predicates, &claims)?;
        let mut p = Principal::new(PrincipalKind::Platform("azure-easy-auth".into()), subject)
            .with_issuer(auth_typ);
        p.claims = claims.into_iter().collect();
        Ok(p)
    }
}

impl EasyAuthPrincipal {
    /// Its identity provider (`auth_typ`), its claims by type (a repeated type becomes an array,
    /// `roles` collects the role claims) and its first name claim, the subject.
    fn into_parts(self) -> (String, Map<String, Value>, Option<String>) {
        let mut claims = Map::new();
        let mut roles = Vec::new();
        let mut subject = None;
        for c in self.claims {
            if c.typ == self.name_typ && subject.is_none() {
                subject = Some(c.val.clone());
            }
            if c.typ == self.role_typ {
                roles.push(Value::String(c.val.clone()));
            }
            match claims.get_mut(&c.typ) {
                None => {
                    claims.insert(c.typ, Value::String(c.val));
                }
                Some(Value::Array(a)) => a.push(Value::String(c.val)),
                Some(other) => {
                    let first = other.take();
                    *other = Value::Array(vec![first, Value::String(c.val)]);
                }
            }
        }
        claims.insert("roles".into(), Value::Array(roles));
        (self.auth_typ, claims, subject)
    }
}

crate::macros::verifier_from_check!(EasyAuthVerifier);

#[cfg(test)]
mod tests {
    use super::*;

    fn easy(header: &[u8], cloud: Cloud) -> Result<Principal, Rejection> {
        let mut req = http::Request::builder()
            .header(EASY_AUTH_HEADER, header)
            .body(bytes::Bytes::new())
            .unwrap();
        req.extensions_mut().insert(Invocation::new(cloud));
        EasyAuthVerifier::new().check(&req)
    }

    fn b64(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .encode(s)
            .into_bytes()
    }

    const GOOD: &str = r#"{"auth_typ":"aad","name_typ":"n","role_typ":"r","claims":[{"typ":"n","val":"u"},{"typ":"r","val":"a"},{"typ":"r","val":"b"}]}"#;

    #[test]
    fn easy_auth_decodes_roles_and_repeated_claims() {
        let p = easy(&b64(GOOD), Cloud::Azure).unwrap();
        assert_eq!(p.subject, "u");
        assert_eq!(p.issuer.as_deref(), Some("aad"));
        assert_eq!(p.claims["r"], serde_json::json!(["a", "b"]));
        assert_eq!(p.claims["roles"], serde_json::json!(["a", "b"]));
    }

    #[test]
    fn easy_auth_outside_azure_is_not_believed() {
        let e = easy(&b64(GOOD), Cloud::Aws).unwrap_err();
        assert_eq!(e.kind(), RejectionKind::BadToken);
    }

    #[test]
    fn easy_auth_malformed_or_oversized_is_401() {
        for bad in [
            b"%%%".to_vec(),
            b64("not json"),
            b64(r#"{"auth_typ":"aad"}"#),
            b64(
                r#"{"auth_typ":"aad","name_typ":"n","role_typ":"r","claims":[{"typ":"x","val":"u"}]}"#,
            ),
            vec![b'A'; MAX_EASY_AUTH_BYTES + 4],
        ] {
            assert_eq!(
                easy(&bad, Cloud::Azure).unwrap_err().kind(),
                RejectionKind::BadToken
            );
        }
        let many = format!(
            r#"{{"auth_typ":"aad","name_typ":"n","role_typ":"r","claims":[{}]}}"#,
            vec![r#"{"typ":"n","val":"u"}"#; MAX_EASY_AUTH_CLAIMS + 1].join(",")
        );
        assert_eq!(
            easy(&b64(&many), Cloud::Azure).unwrap_err().kind(),
            RejectionKind::BadToken
        );
    }

    #[test]
    fn platform_identity_predicates_forbid() {
        let v = PlatformIdentityVerifier::new("aws-jwt")
            .require(ClaimPredicate::contains("scope", "orders:write"));
        let mut id = PlatformIdentity::new("aws-jwt", "u1");
        id.claims = serde_json::json!({"sub": "u1", "scope": "orders:read"})
            .as_object()
            .unwrap()
            .clone();
        let mut req = http::Request::new(bytes::Bytes::new());
        req.extensions_mut().insert(id);
        assert_eq!(v.check(&req).unwrap_err().kind(), RejectionKind::Forbidden);
        let missing = http::Request::new(bytes::Bytes::new());
        assert_eq!(
            v.check(&missing).unwrap_err().kind(),
            RejectionKind::MissingCredentials
        );
    }
}
