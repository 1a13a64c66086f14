//! `Grants`: the roles and scopes of a [`Principal`], read the same way whatever verified it
//! (public as [`Principal::has_role`] and [`Principal::has_scope`]).

use serde_json::Value;

use super::Principal;

/// Claims holding roles: app roles (Entra ID, Easy Auth), groups (Entra ID, Okta), Cognito groups.
const ROLE_CLAIMS: [&str; 3] = ["roles", "groups", "cognito:groups"];
/// Claims holding scopes: OAuth 2.0 `scope` (RFC 8693 / RFC 9068), Entra ID / Okta `scp`.
const SCOPE_CLAIMS: [&str; 2] = ["scope", "scp"];

/// The roles and scopes a [`Principal`] holds, from its verified claims:
///
/// - roles: `roles`, `groups`, `cognito:groups` — JSON arrays, or strings of names separated by
///   spaces or commas (API Gateway hands Cognito groups over as `"[admin writers]"`);
/// - scopes: `scope` and `scp` — space-separated strings or arrays.
///
/// A JWT's claims, an API Gateway authorizer's claims (and its `scopes`), Azure Easy Auth roles,
/// a GCP push token: every kind reads the same. Principals without claims (an HMAC key name, a
/// network address, a message source) hold none.
///
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Grants<'a> {
    roles: Vec<&'a str>,
    scopes: Vec<&'a str>,
}

impl<'a> Grants<'a> {
    /// Every role, in claim order.
    #[cfg(test)]
    pub(crate) fn roles(&self) -> &[&'a str] {
        &self.roles
    }

    /// Every scope, in claim order.
    #[cfg(test)]
    pub(crate) fn scopes(&self) -> &[&'a str] {
        &self.scopes
    }

    /// Whether `role` is held (exact, case-sensitive).
    pub(crate) fn has_role(&self, role: &str) -> bool {
        self.roles.contains(&role)
    }

    /// Whether `scope` is held (exact, case-sensitive).
    pub(crate) fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(&scope)
    }
}

/// The names in one claim value: array elements, or a string split on spaces and commas (with
/// the brackets API Gateway puts around a stringified list removed).
fn names<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) => {
            let s = s.trim();
            let s = s
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .unwrap_or(s);
            out.extend(s.split([' ', ',']).filter(|w| !w.is_empty()));
        }
        Value::Array(items) => out.extend(
            items
                .iter()
                .filter_map(Value::as_str)
                .filter(|w| !w.is_empty()),
        ),
        _ => {}
    }
}

impl Principal {
    /// Whether this principal holds `role` (exact, case-sensitive), from its verified claims:
    /// `roles`, `groups`, `cognito:groups` — JSON arrays, or strings of names separated by
    /// spaces or commas (API Gateway hands Cognito groups over as `"[admin writers]"`). What
    /// authorization rules check, and what a handler reads whatever the cloud: a JWT's claims,
    /// an API Gateway authorizer's, Azure Easy Auth roles, a GCP push token read the same.
    /// Principals without claims (an HMAC key name, a network address, a message source) hold
    /// none.
    ///
    /// ```
    /// use guard_core::request::{Principal, PrincipalKind};
    /// let mut p = Principal::new(PrincipalKind::Jwt, "u1");
    /// p.claims.insert("roles".into(), serde_json::json!(["Orders.Admin"]));
    /// p.claims.insert("scp".into(), "orders:read orders:write".into());
    /// assert!(p.has_role("Orders.Admin"));
    /// assert!(!p.has_role("orders:write"));
    /// ```
    pub fn has_role(&self, role: &str) -> bool {
        self.grants().has_role(role)
    }

    /// Whether this principal holds `scope` (exact, case-sensitive), from its `scope` and `scp`
    /// claims (space-separated strings or arrays); see [`has_role`](Self::has_role).
    ///
    /// ```
    /// use guard_core::request::{Principal, PrincipalKind};
    /// let mut p = Principal::new(PrincipalKind::Jwt, "u1");
    /// p.claims.insert("scp".into(), "orders:read orders:write".into());
    /// assert!(p.has_scope("orders:write"));
    /// assert!(!p.has_scope("orders"));
    /// ```
    pub fn has_scope(&self, scope: &str) -> bool {
        self.grants().has_scope(scope)
    }

    /// The roles and scopes this principal holds: what authorization rules check.
    pub(crate) fn grants(&self) -> Grants<'_> {
        let mut g = Grants::default();
        for c in ROLE_CLAIMS {
            if let Some(v) = self.claims.get(c) {
                names(v, &mut g.roles);
            }
        }
        for c in SCOPE_CLAIMS {
            if let Some(v) = self.claims.get(c) {
                names(v, &mut g.scopes);
            }
        }
        g
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::PrincipalKind;
    use serde_json::json;

    fn principal(claims: Value) -> Principal {
        let mut p = Principal::new(PrincipalKind::Jwt, "u");
        p.claims = claims.as_object().unwrap().clone().into_iter().collect();
        p
    }

    #[test]
    fn scopes_come_from_scope_and_scp_as_strings_or_arrays() {
        let p = principal(json!({"scope": "a b", "scp": ["c", "", 7]}));
        assert_eq!(p.grants().scopes(), ["a", "b", "c"]);
    }

    #[test]
    fn roles_come_from_roles_groups_and_stringified_cognito_groups() {
        let p = principal(
            json!({"roles": ["r1"], "groups": "g1,g2", "cognito:groups": "[admin writers]"}),
        );
        assert_eq!(p.grants().roles(), ["r1", "g1", "g2", "admin", "writers"]);
        assert!(!p.grants().has_role("[admin"));
    }

    #[test]
    fn principals_without_claims_hold_nothing() {
        let p = Principal::new(PrincipalKind::Hmac, "orders-webhook-hmac");
        assert_eq!(p.grants(), Grants::default());
    }
}
