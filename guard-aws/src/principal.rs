//! Requiring the identity API Gateway established ([`PlatformPrincipal`]).
//!
//! API Gateway authenticates callers before Lambda runs (IAM, Cognito user pools, JWT authorizers,
//! Lambda authorizers) and reports who in `requestContext`; the decoder keeps that as a
//! [`PlatformPrincipal`]. [`PlatformPrincipalVerifier`] turns it into the request's verified
//! [`Principal`] when its kind is one the policy accepts, and refuses otherwise.
//!
//! ```
//! use guard_aws::event::PlatformPrincipal;
//! use guard_aws::principal::require_platform_principal;
//! use guard_core::request::{Principal, PrincipalKind};
//!
//! let verifier = require_platform_principal(["aws-iam"]);
//! let mut req = http::Request::new(bytes::Bytes::new());
//! assert_eq!(verifier.check(&req).unwrap_err().status(), 401);
//! let p = Principal::new(PrincipalKind::Platform("aws-iam".into()), "arn:aws:iam::1:user/ana");
//! req.extensions_mut().insert(PlatformPrincipal(p));
//! assert_eq!(verifier.check(&req).unwrap().subject, "arn:aws:iam::1:user/ana");
//! ```

use guard_core::request::{GuardRequest, Principal, PrincipalKind};
use guard_core::{Rejection, RejectionKind};

use crate::event::PlatformPrincipal;

/// Accepts requests whose [`PlatformPrincipal`] is of one of the configured kinds
/// (`aws-iam`, `aws-cognito`, `aws-jwt`, `aws-lambda-authorizer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformPrincipalVerifier {
    kinds: Vec<String>,
}

/// A verifier accepting the platform principal kinds in `kinds`.
///
/// ```
/// let v = guard_aws::principal::require_platform_principal(["aws-cognito", "aws-jwt"]);
/// # let _ = v;
/// ```
pub fn require_platform_principal<I, S>(kinds: I) -> PlatformPrincipalVerifier
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    PlatformPrincipalVerifier {
        kinds: kinds.into_iter().map(Into::into).collect(),
    }
}

impl PlatformPrincipalVerifier {
    /// The verified principal, or 401 when API Gateway authenticated nobody, 403 when it
    /// authenticated someone by a mechanism the policy does not accept.
    #[allow(clippy::result_large_err)] // a refusal is rendered at once; it is not propagated far
    pub fn check(&self, req: &GuardRequest) -> Result<Principal, Rejection> {
        let Some(PlatformPrincipal(p)) = req.extensions().get::<PlatformPrincipal>() else {
            return Err(Rejection::new(RejectionKind::MissingCredentials)
                .with_reason("no API Gateway principal"));
        };
        let accepted = match &p.kind {
            PrincipalKind::Platform(kind) => self.kinds.iter().any(|k| k == kind),
            _ => false,
        };
        if !accepted || p.subject.is_empty() {
            return Err(Rejection::new(RejectionKind::Forbidden)
                .with_reason("API Gateway principal of a kind the policy does not accept"));
        }
        Ok(p.clone())
    }
}
