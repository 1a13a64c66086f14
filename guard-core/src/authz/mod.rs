//! Authorization: [`AuthzLayer`] decides *who may do what* once a request is verified, the same
//! way on every cloud.
//!
//! Rules are checked in order; the **first rule that decides the request** (its method and path
//! pattern, or, for a message, its trigger kind and source) allows it when the verified
//! [`Principal`] meets every requirement of that rule, and refuses it otherwise. A request no rule
//! decides is refused: with rules, the default is deny. A refusal is 403 `guard.authz.forbidden`;
//! its security event names the rule that decided (or says none did), never a claim's value.
//!
//! Requirements read the principal's roles and scopes
//! ([`Principal::has_role`](crate::request::Principal::has_role): roles from `roles`,
//! `groups`, `cognito:groups`; scopes from `scope`, `scp`), its claims, and its `kind:subject`,
//! so one rule covers a JWT from any issuer, an API Gateway authorizer, Azure Easy Auth, a GCP
//! push identity, an HMAC key name (`hmac:<secret name>`) or an address (`network:<CIDR>`).
//!
//! Path patterns match whole segments: `*` is one segment, a final `**` any number (`/orders/**`
//! also matches `/orders`). A path with an empty, `.` or `..` segment, or an encoded `/`, `\` or
//! `.`, matches no rule.
//!
//! In the policy (`[[authz.rules]]`, checked when it loads: role and scope syntax, rules an
//! earlier rule makes unreachable or partly shadows):
//!
//! ```toml
//! [[authz.rules]]
//! name = "write-orders"
//! methods = ["POST"]
//! paths = ["/orders"]
//! scopes = ["orders:write"]
//!
//! [[authz.rules]]
//! name = "read-orders"
//! methods = ["GET"]
//! paths = ["/orders", "/orders/*"]
//! scopes = ["orders:read"]
//!
//! [[authz.rules]]
//! name = "queue"
//! sources = ["sqs:arn:aws:sqs:us-east-1:123456789012:orders"]
//! principals = ["source:*"]
//! ```
//!
//! ```
//! use bytes::Bytes;
//! use guard_core::authz::{AuthzLayer, AuthzRule};
//! use guard_core::request::{Principal, PrincipalKind};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! let layer = AuthzLayer::new([
//!     AuthzRule::requests("write-orders").methods(["POST"]).paths(["/orders"]).scopes(["orders:write"]),
//! ]).unwrap();
//! let svc = layer.layer(service_fn(|_req: http::Request<Bytes>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(Bytes::from_static(b"created")))
//! }));
//! let call = |scope: &str| {
//!     let mut p = Principal::new(PrincipalKind::Jwt, "client-1");
//!     p.claims.insert("scope".into(), scope.into());
//!     let mut req = http::Request::post("/orders").body(Bytes::new()).unwrap();
//!     req.extensions_mut().insert(p);
//!     svc.clone().oneshot(req)
//! };
//! let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! assert_eq!(rt.block_on(call("orders:write")).unwrap().status(), 200);
//! assert_eq!(rt.block_on(call("orders:read")).unwrap().status(), 403);
//! ```

mod rule;

use std::sync::Arc;

pub use rule::AuthzRule;
pub(crate) use rule::{covers, glob, grant_ok, parse_path};

use crate::ConfigError;
use crate::rejection::{Rejection, RejectionKind};
use crate::request::{GuardRequest, Principal, Trigger};

/// Applies authorization rules (see the [module docs](self)). Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuthzLayer {
    rules: Arc<[AuthzRule]>,
}

impl AuthzLayer {
    /// A layer applying `rules` in order. Fails on a malformed rule, a duplicate name, or no
    /// rule at all (everything would be refused).
    pub fn new(rules: impl IntoIterator<Item = AuthzRule>) -> Result<Self, ConfigError> {
        let rules = rules
            .into_iter()
            .map(|r| r.compile().map_err(ConfigError::Authz))
            .collect::<Result<Vec<_>, _>>()?;
        if rules.is_empty() {
            return Err(ConfigError::Authz(
                "no rule: every request would be refused".into(),
            ));
        }
        for (i, r) in rules.iter().enumerate() {
            if rules[..i].iter().any(|e| e.name == r.name) {
                return Err(ConfigError::Authz(format!(
                    "rule `{}` is named twice",
                    r.name
                )));
            }
        }
        Ok(Self {
            rules: rules.into(),
        })
    }

    /// The decision for `req`: `Ok` when a rule allows it.
    fn decide(&self, req: &GuardRequest) -> Result<(), Rejection> {
        let refuse = |why: String| Rejection::new(RejectionKind::AuthzForbidden).with_reason(why);
        let principal = req
            .extensions()
            .get::<Principal>()
            .ok_or_else(|| refuse("no verified principal".into()))?;
        let trigger = req
            .extensions()
            .get::<Trigger>()
            .cloned()
            .unwrap_or_default();
        let segments = rule::request_segments(req.uri().path());
        let rule = self
            .rules
            .iter()
            .find(|r| r.decides(req.method(), segments.as_deref(), &trigger))
            .ok_or_else(|| refuse("no rule decides this request".into()))?;
        if rule.allows(principal) {
            Ok(())
        } else {
            Err(refuse(format!(
                "rule `{}`: the principal does not meet its requirements",
                rule.name
            )))
        }
    }
}

crate::macros::check_service! {
    /// The service made by [`AuthzLayer`].
    Authz for AuthzLayer, |layer, req| layer.decide(req)
}
