//! The `[authz]` section of `guard.toml`: who may do what once verified.
//!
//! `[[authz.rules]]` are tried in order; the first whose `methods` + `paths` (requests) or
//! `sources` (messages) match the request decides it: allowed when the principal holds every
//! listed role and scope, meets every claim condition and, when `principals` are listed, is one
//! of them; refused (403 `guard.authz.forbidden`) otherwise. A request no rule decides is refused.
//!
//! ```
//! let policy = guard_core::Policy::from_toml_str(r#"
//!     [[verify.jwt]]
//!     issuer = "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0"
//!     audiences = ["api://orders"]
//!
//!     [[authz.rules]]
//!     name = "write-orders"
//!     methods = ["POST"]
//!     paths = ["/orders"]
//!     scopes = ["orders:write"]
//!
//!     [[authz.rules]]
//!     name = "admin"
//!     paths = ["/admin/**"]
//!     roles = ["Orders.Admin"]
//! "#).unwrap();
//! # let _ = policy;
//!
//! // Checked when loading: an earlier rule that already decides every request of a later one.
//! let err = guard_core::Policy::from_toml_str(r#"
//!     [[authz.rules]]
//!     name = "everything"
//!     any_verified = true
//!     [[authz.rules]]
//!     name = "write-orders"
//!     methods = ["POST"]
//!     paths = ["/orders"]
//!     scopes = ["orders:write"]
//! "#).unwrap_err();
//! assert_eq!(err.problems()[0].path, "authz.rules[1]");
//! ```

use serde::Deserialize;

use super::{ClaimRule, PolicyProblem};

/// One `[[authz.rules]]` entry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub(crate) struct AuthzRulePolicy {
    /// Named in the security event of a refusal (1 to 64 of `A-Z a-z 0-9 _ . : -`, unique).
    pub(crate) name: String,
    /// Methods this rule decides (default: any). Requests only.
    pub(crate) methods: Vec<String>,
    /// Path patterns (`/orders`, `/orders/*`, `/admin/**`; default `/**`). Requests only.
    pub(crate) paths: Vec<String>,
    /// Message sources `kind:pattern` (`sqs:arn:aws:sqs:us-east-1:123456789012:orders`): makes
    /// this a rule for messages.
    pub(crate) sources: Vec<String>,
    /// Roles the principal must all hold (`roles`, `groups`, `cognito:groups` claims).
    pub(crate) roles: Vec<String>,
    /// Scopes the principal must all hold (`scope`, `scp` claims).
    pub(crate) scopes: Vec<String>,
    /// Claim conditions that must all hold.
    pub(crate) claims: Vec<ClaimRule>,
    /// The principal must be one of these `kind:subject` patterns (`hmac:orders-webhook-hmac`,
    /// `network:203.0.113.0/24`, `gcp-push:*`).
    pub(crate) principals: Vec<String>,
    /// Any verified principal may (required when the rule lists no requirement).
    pub(crate) any_verified: bool,
}

/// The `[authz]` section.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub(crate) struct AuthzPolicy {
    /// The rules, in order: the first that matches a request decides it.
    pub(crate) rules: Vec<AuthzRulePolicy>,
}

impl AuthzPolicy {
    /// Adds every problem of this section (with key paths under `path`) to `problems`: malformed
    /// rules, bad role or scope syntax, duplicate names, and rules an earlier rule makes
    /// unreachable (it decides every request they match) or partly shadows (overlapping: it
    /// decides some of them).
    pub(crate) fn check(&self, path: &str, problems: &mut Vec<PolicyProblem>) {
        if self.rules.is_empty() {
            problems.push(PolicyProblem::new(
                format!("{path}.rules"),
                "no rule: every request would be refused (remove [authz] or add rules)",
            ));
        }
        #[cfg(feature = "authz")]
        lint(&self.rules, path, problems);
        let _ = path;
    }
}

/// Every rule on its own, then the order of the rules (an earlier rule that decides part or all
/// of what a later one matches).
#[cfg(feature = "authz")]
fn lint(rules: &[AuthzRulePolicy], path: &str, problems: &mut Vec<PolicyProblem>) {
    for (i, r) in rules.iter().enumerate() {
        let at = format!("{path}.rules[{i}]");
        if rules[..i].iter().any(|e| e.name == r.name) {
            problems.push(PolicyProblem::new(
                format!("{at}.name"),
                "another rule has this name",
            ));
        }
        lint_rule(r, &at, problems);
    }
    for (j, later) in rules.iter().enumerate() {
        for earlier in &rules[..j] {
            let (full, some) = overlap(earlier, later);
            if full {
                problems.push(PolicyProblem::new(
                    format!("{path}.rules[{j}]"),
                    format!(
                        "unreachable: rule `{}` before it decides every request this rule matches (the first matching rule decides)",
                        earlier.name
                    ),
                ));
                break;
            } else if some {
                problems.push(PolicyProblem::new(
                    format!("{path}.rules[{j}]"),
                    format!(
                        "overlaps rule `{}` before it, which decides part of what this rule matches: narrow or reorder them",
                        earlier.name
                    ),
                ));
            }
        }
    }
}

/// The problems of one rule, at `at`.
#[cfg(feature = "authz")]
fn lint_rule(r: &AuthzRulePolicy, at: &str, problems: &mut Vec<PolicyProblem>) {
    use crate::authz::{grant_ok, parse_path};
    for (k, list) in [("roles", &r.roles), ("scopes", &r.scopes)] {
        for (n, g) in list.iter().enumerate() {
            if !grant_ok(g) {
                problems.push(PolicyProblem::new(
                    format!("{at}.{k}[{n}]"),
                    "not a role or scope name: 1 to 256 visible ASCII characters without spaces, `\"` or `\\` (RFC 6749 scope-token)",
                ));
            }
        }
    }
    super::verify::check_claims(&r.claims, &format!("{at}.claims"), problems);
    if !r.sources.is_empty() && (!r.methods.is_empty() || !r.paths.is_empty()) {
        problems.push(PolicyProblem::new(
            at,
            "a rule is for messages (`sources`) or for requests (`methods`, `paths`), not both",
        ));
    }
    for (n, p) in r.paths.iter().enumerate() {
        if let Err(e) = parse_path(p) {
            problems.push(PolicyProblem::new(format!("{at}.paths[{n}]"), e));
        }
    }
    // Everything else (names, methods, sources, principals, requirements) as the layer
    // checks it.
    if let Err(e) = to_rule(r).compile() {
        problems.push(PolicyProblem::new(at, e));
    }
}

/// Whether `earlier` decides every request `later` matches, and whether it decides some of them
/// (the first matching rule decides).
#[cfg(feature = "authz")]
fn overlap(earlier: &AuthzRulePolicy, later: &AuthzRulePolicy) -> (bool, bool) {
    use crate::authz::{covers, glob, parse_path};
    let paths = |r: &AuthzRulePolicy| -> Option<Vec<_>> {
        if r.paths.is_empty() {
            Some(vec![parse_path("/**").ok()?])
        } else {
            r.paths.iter().map(|p| parse_path(p).ok()).collect()
        }
    };
    let methods_cover = |a: &[String], b: &[String]| {
        a.is_empty() || (!b.is_empty() && b.iter().all(|m| a.contains(m)))
    };
    let methods_meet = |a: &[String], b: &[String]| {
        a.is_empty() || b.is_empty() || b.iter().any(|m| a.contains(m))
    };
    if later.sources.is_empty() && earlier.sources.is_empty() {
        let (Some(pe), Some(pl)) = (paths(earlier), paths(later)) else {
            return (false, false);
        };
        let covered = |l: &Vec<_>| pe.iter().any(|e| covers(e, l));
        (
            methods_cover(&earlier.methods, &later.methods) && pl.iter().all(covered),
            methods_meet(&earlier.methods, &later.methods) && pl.iter().any(covered),
        )
    } else if !later.sources.is_empty() && !earlier.sources.is_empty() {
        let covered = |l: &String| {
            earlier
                .sources
                .iter()
                .any(|e| e == l || (e.split(':').next() == l.split(':').next() && glob(e, l)))
        };
        (
            later.sources.iter().all(covered),
            later.sources.iter().any(covered),
        )
    } else {
        (false, false)
    }
}

/// The typed rule a policy entry describes (what the builder gives the layer).
#[cfg(feature = "authz")]
pub(crate) fn to_rule(r: &AuthzRulePolicy) -> crate::authz::AuthzRule {
    use crate::authz::AuthzRule;
    let mut rule = if r.sources.is_empty() {
        AuthzRule::requests(r.name.clone())
            .methods(r.methods.iter().cloned())
            .paths(r.paths.iter().cloned())
    } else {
        AuthzRule::messages(r.name.clone(), r.sources.iter().cloned())
            .methods(r.methods.iter().cloned())
    };
    rule = rule
        .roles(r.roles.iter().cloned())
        .scopes(r.scopes.iter().cloned())
        .principals(r.principals.iter().cloned());
    for c in &r.claims {
        if let Some(v) = &c.equals {
            rule = rule.claim_equals(c.claim.clone(), v.clone());
        } else if let Some(v) = &c.contains {
            rule = rule.claim_contains(c.claim.clone(), v.clone());
        } else if c.exists == Some(true) {
            rule = rule.claim_exists(c.claim.clone());
        }
    }
    if r.any_verified {
        rule = rule.any_verified();
    }
    rule
}

#[cfg(all(test, feature = "authz"))]
mod tests {
    fn problems(rules: &str) -> Vec<(String, String)> {
        let text = format!("[verify.cidr]\nallow = [\"10.0.0.0/8\"]\n{rules}");
        match crate::Policy::from_toml_str(&text) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .problems()
                .iter()
                .map(|p| (p.path.clone(), p.message.clone()))
                .collect(),
        }
    }

    #[test]
    fn each_rule_table_is_one_rule_in_order() {
        let policy = crate::Policy::from_toml_str(
            r#"
            [verify.cidr]
            allow = ["10.0.0.0/8"]
            [[authz.rules]]
            name = "write-orders"
            methods = ["POST"]
            paths = ["/orders"]
            scopes = ["orders:write"]
            [[authz.rules]]
            name = "admin"
            paths = ["/admin/**"]
            roles = ["Orders.Admin"]
            "#,
        )
        .unwrap();
        let names: Vec<_> = policy
            .authz
            .unwrap()
            .rules
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["write-orders", "admin"]);
    }

    #[test]
    fn a_rule_shadowed_by_an_earlier_one_is_unreachable() {
        let p = problems(
            r#"
            [[authz.rules]]
            name = "orders"
            paths = ["/orders/**"]
            scopes = ["orders:all"]
            [[authz.rules]]
            name = "write"
            methods = ["POST"]
            paths = ["/orders", "/orders/*"]
            scopes = ["orders:write"]
        "#,
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, "authz.rules[1]");
        assert!(p[0].1.starts_with("unreachable: rule `orders`"), "{p:?}");
    }

    #[test]
    fn a_rule_partly_shadowed_overlaps_and_specific_before_general_is_fine() {
        let p = problems(
            r#"
            [[authz.rules]]
            name = "post-anything"
            methods = ["POST"]
            scopes = ["w"]
            [[authz.rules]]
            name = "orders"
            methods = ["GET", "POST"]
            paths = ["/orders"]
            scopes = ["r"]
        "#,
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].1.starts_with("overlaps rule `post-anything`"), "{p:?}");
        let ok = problems(
            r#"
            [[authz.rules]]
            name = "write"
            methods = ["POST"]
            paths = ["/orders"]
            scopes = ["orders:write"]
            [[authz.rules]]
            name = "rest"
            any_verified = true
        "#,
        );
        assert!(ok.is_empty(), "{ok:?}");
    }

    #[test]
    fn bad_roles_scopes_and_mixed_or_empty_rules_are_reported() {
        let p = problems(
            r#"
            [[authz.rules]]
            name = "a"
            roles = ["Orders Admin"]
            scopes = ["orders\"write"]
            [[authz.rules]]
            name = "b"
            methods = ["POST"]
            sources = ["sqs:arn:aws:sqs:us-east-1:1:orders"]
            any_verified = true
            [[authz.rules]]
            name = "c"
            paths = ["/x"]
            [[authz.rules]]
            name = "c"
            paths = ["orders"]
            any_verified = true
        "#,
        );
        let paths: Vec<&str> = p.iter().map(|(a, _)| a.as_str()).collect();
        for want in [
            "authz.rules[0].roles[0]",
            "authz.rules[0].scopes[0]",
            "authz.rules[1]",
            "authz.rules[2]",
            "authz.rules[3].name",
            "authz.rules[3].paths[0]",
        ] {
            assert!(paths.contains(&want), "{want} in {p:?}");
        }
        assert!(
            problems("[authz]\nrules = []")
                .iter()
                .any(|(a, _)| a == "authz.rules")
        );
    }
}
