//! API Gateway authorizers: what an authorizer vouched for, read from `requestContext` (REST v1
//! `identity` / `authorizer`, HTTP v2 `authorizer.{jwt,iam,lambda}`) and handed to guard-core as a
//! [`PlatformIdentity`] — never built from anything the client sent. Its provider names the
//! authorizer (`aws-iam`, `aws-cognito`, `aws-jwt`, `aws-lambda-authorizer`), which
//! `[verify.aws_authorizer]` accepts; its claims are what the policy's predicates see.

use guard_core::verify::PlatformIdentity;
use serde_json::{Map, Value};

/// The REST API (v1) authorizer's identity, if it vouched for a principal.
pub(super) fn rest_api(ctx: &Value) -> Option<PlatformIdentity> {
    rest_api_authorizer(ctx).map(AwsAuthorizer::into_identity)
}

/// The HTTP API (v2) / Function URL authorizer's identity, if it vouched for a principal.
pub(super) fn http_api(authorizer: Option<&Value>) -> Option<PlatformIdentity> {
    http_api_authorizer(authorizer).map(AwsAuthorizer::into_identity)
}

/// What an AWS API Gateway authorizer vouched for.
#[derive(Debug, Clone, PartialEq)]
enum AwsAuthorizer {
    /// IAM (SigV4) authorization: `identity.userArn` / `authorizer.iam.userArn`, with `caller` /
    /// `userId` and the caller's account if reported.
    Iam {
        user_arn: String,
        caller: Option<String>,
        account_id: Option<String>,
    },
    /// A Cognito user-pool authorizer (REST v1 `authorizer.claims`): the verified token claims.
    Cognito { claims: Map<String, Value> },
    /// An HTTP API JWT authorizer (`authorizer.jwt.claims` / `scopes`).
    Jwt {
        claims: Map<String, Value>,
        scopes: Vec<String>,
    },
    /// A Lambda authorizer (`authorizer.principalId` and its context values).
    Lambda {
        principal_id: Option<String>,
        context: Map<String, Value>,
    },
}

impl AwsAuthorizer {
    fn provider(&self) -> &'static str {
        match self {
            AwsAuthorizer::Iam { .. } => "aws-iam",
            AwsAuthorizer::Cognito { .. } => "aws-cognito",
            AwsAuthorizer::Jwt { .. } => "aws-jwt",
            AwsAuthorizer::Lambda { .. } => "aws-lambda-authorizer",
        }
    }

    /// The claims predicates are evaluated against (IAM: `user_arn`, `caller`, `account_id`;
    /// JWT: the claims plus `scope` joined from `scopes` when the claims have none).
    fn claims(&self) -> Map<String, Value> {
        match self {
            AwsAuthorizer::Iam {
                user_arn,
                caller,
                account_id,
            } => {
                let mut m = Map::new();
                m.insert("user_arn".into(), user_arn.clone().into());
                if let Some(c) = caller {
                    m.insert("caller".into(), c.clone().into());
                }
                if let Some(a) = account_id {
                    m.insert("account_id".into(), a.clone().into());
                }
                m
            }
            AwsAuthorizer::Cognito { claims } => claims.clone(),
            AwsAuthorizer::Jwt { claims, scopes } => {
                let mut m = claims.clone();
                if !scopes.is_empty() && !m.contains_key("scope") {
                    m.insert("scope".into(), scopes.join(" ").into());
                }
                m
            }
            AwsAuthorizer::Lambda { context, .. } => context.clone(),
        }
    }

    fn subject(&self, claims: &Map<String, Value>) -> Option<String> {
        let claim = |k: &str| claims.get(k).and_then(Value::as_str).map(String::from);
        match self {
            AwsAuthorizer::Iam { user_arn, .. } => Some(user_arn.clone()),
            AwsAuthorizer::Cognito { .. } => claim("sub").or_else(|| claim("cognito:username")),
            AwsAuthorizer::Jwt { .. } => claim("sub"),
            AwsAuthorizer::Lambda { principal_id, .. } => principal_id.clone(),
        }
    }

    /// The identity: provider, subject, issuer (the `iss` claim) and claims. An authorizer result
    /// without a principal has an empty subject, which the verifier refuses with 401.
    fn into_identity(self) -> PlatformIdentity {
        let claims = self.claims();
        let subject = self.subject(&claims).unwrap_or_default();
        let mut identity = PlatformIdentity::new(self.provider(), subject);
        identity.issuer = claims.get("iss").and_then(Value::as_str).map(String::from);
        identity.claims = claims;
        identity
    }
}

fn object(v: Option<&Value>) -> Map<String, Value> {
    v.and_then(Value::as_object).cloned().unwrap_or_default()
}

fn non_empty(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// REST API: a Cognito user pool authorizer (`authorizer.claims`), a Lambda authorizer
/// (`authorizer.principalId` + context), or IAM (`identity.userArn`), in that order.
fn rest_api_authorizer(ctx: &Value) -> Option<AwsAuthorizer> {
    let authorizer = ctx.get("authorizer");
    if let Some(claims) = authorizer
        .and_then(|a| a.get("claims"))
        .filter(|c| c.is_object())
    {
        return Some(AwsAuthorizer::Cognito {
            claims: object(Some(claims)),
        });
    }
    if let Some(principal_id) = non_empty(authorizer.and_then(|a| a.get("principalId"))) {
        let mut context = object(authorizer);
        context.remove("principalId");
        return Some(AwsAuthorizer::Lambda {
            principal_id: Some(principal_id),
            context,
        });
    }
    iam(ctx.get("identity"))
}

/// HTTP API: `authorizer.jwt` (claims + scopes), `authorizer.iam`, or `authorizer.lambda`.
fn http_api_authorizer(authorizer: Option<&Value>) -> Option<AwsAuthorizer> {
    let authorizer = authorizer?;
    if let Some(jwt) = authorizer.get("jwt").filter(|j| j.is_object()) {
        let scopes = jwt
            .get("scopes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        return Some(AwsAuthorizer::Jwt {
            claims: object(jwt.get("claims")),
            scopes,
        });
    }
    if let Some(iam) = iam(authorizer.get("iam")) {
        return Some(iam);
    }
    let lambda = authorizer.get("lambda").filter(|l| l.is_object())?;
    let context = object(Some(lambda));
    Some(AwsAuthorizer::Lambda {
        principal_id: non_empty(context.get("principalId")),
        context,
    })
}

/// IAM: the caller's ARN, caller id and account (never the access key).
fn iam(identity: Option<&Value>) -> Option<AwsAuthorizer> {
    let identity = identity?;
    Some(AwsAuthorizer::Iam {
        user_arn: non_empty(identity.get("userArn"))?,
        caller: non_empty(identity.get("caller")).or_else(|| non_empty(identity.get("callerId"))),
        account_id: non_empty(identity.get("accountId")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use guard_core::RejectionKind;
    use guard_core::request::PrincipalKind;
    use guard_core::verify::{ClaimPredicate, PlatformIdentityVerifier, Verifier};
    use serde_json::json;

    fn verify(
        identity: Option<PlatformIdentity>,
        v: &PlatformIdentityVerifier,
    ) -> Result<guard_core::request::Principal, guard_core::Rejection> {
        let mut req = http::Request::new(bytes::Bytes::new());
        if let Some(id) = identity {
            req.extensions_mut().insert(id);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(v.verify(&req))
    }

    #[test]
    fn a_cognito_authorizer_context_becomes_a_platform_principal() {
        let ctx = json!({"authorizer": {"claims": {
            "sub": "c-1", "iss": "https://cognito-idp.us-east-1.amazonaws.com/pool"}}});
        let id = rest_api(&ctx).unwrap();
        let v = PlatformIdentityVerifier::new("aws-cognito");
        let p = verify(Some(id), &v).unwrap();
        assert_eq!(p.kind, PrincipalKind::Platform("aws-cognito".into()));
        assert_eq!(p.subject, "c-1");
        assert_eq!(
            p.issuer.as_deref(),
            Some("https://cognito-idp.us-east-1.amazonaws.com/pool")
        );
        let none = verify(rest_api(&json!({})), &v).unwrap_err();
        assert_eq!(none.kind(), RejectionKind::MissingCredentials);
    }

    #[test]
    fn iam_and_jwt_authorizers_expose_their_claims_to_predicates() {
        let iam = http_api(Some(&json!({"iam": {
            "userArn": "arn:aws:iam::1:user/u", "callerId": "c", "accountId": "1"}})))
        .unwrap();
        assert_eq!(iam.provider, "aws-iam");
        assert_eq!(iam.subject, "arn:aws:iam::1:user/u");
        let v = PlatformIdentityVerifier::new("aws-iam")
            .require(ClaimPredicate::equals("account_id", "1"))
            .require(ClaimPredicate::equals("caller", "c"));
        assert!(verify(Some(iam.clone()), &v).is_ok());
        let other = PlatformIdentityVerifier::new("aws-iam")
            .require(ClaimPredicate::equals("account_id", "2"));
        assert_eq!(
            verify(Some(iam), &other).unwrap_err().kind(),
            RejectionKind::Forbidden
        );

        let jwt = http_api(Some(&json!({"jwt": {
            "claims": {"sub": "u1"}, "scopes": ["orders:write", "orders:read"]}})))
        .unwrap();
        assert_eq!(jwt.provider, "aws-jwt");
        assert_eq!(jwt.claims["scope"], "orders:write orders:read");
        let read_only = http_api(Some(&json!({"jwt": {
            "claims": {"sub": "u1", "iss": "https://idp"}, "scopes": ["orders:read"]}})));
        let writers = PlatformIdentityVerifier::new("aws-jwt")
            .require(ClaimPredicate::contains("scope", "orders:write"));
        assert_eq!(
            verify(read_only, &writers).unwrap_err().kind(),
            RejectionKind::Forbidden
        );
        // A Lambda authorizer that names no principal vouches for nobody.
        let nobody = http_api(Some(&json!({"lambda": {"tier": "gold"}})));
        let any_lambda = PlatformIdentityVerifier::new("aws-lambda-authorizer");
        assert_eq!(
            verify(nobody, &any_lambda).unwrap_err().kind(),
            RejectionKind::MissingCredentials
        );
    }
}
