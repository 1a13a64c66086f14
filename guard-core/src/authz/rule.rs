//! [`AuthzRule`]: which requests a rule decides, and what it requires of the principal.

use std::net::IpAddr;

use http::Method;
use serde_json::Value;

use crate::request::{Principal, Trigger};

/// One segment of a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Lit(String),
    /// `*`: exactly one segment.
    One,
    /// `**` (last only): zero or more segments.
    Rest,
}

/// Parses `/a/*/b/**`: starts with `/`; `*` and `**` only as whole segments, `**` only last; no
/// empty, `.` or `..` segment.
pub(crate) fn parse_path(pattern: &str) -> Result<Vec<Seg>, &'static str> {
    let rest = pattern
        .strip_prefix('/')
        .ok_or("a path pattern starts with `/`")?;
    if pattern.len() > 1024 {
        return Err("a path pattern is at most 1024 characters");
    }
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let parts: Vec<&str> = rest.split('/').collect();
    let last = parts.len() - 1;
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| match *p {
            "" | "." | ".." => Err("a path pattern has no empty, `.` or `..` segment"),
            "**" if i == last => Ok(Seg::Rest),
            "**" => Err("`**` is only allowed as the last segment"),
            "*" => Ok(Seg::One),
            p if p.contains('*') => Err("`*` stands for a whole segment (`/orders/*`)"),
            p => Ok(Seg::Lit(p.to_string())),
        })
        .collect()
}

/// Whether every path `b` matches, `a` matches too.
pub(crate) fn covers(a: &[Seg], b: &[Seg]) -> bool {
    match (a.first(), b.first()) {
        (Some(Seg::Rest), _) => true,
        (_, Some(Seg::Rest)) => false,
        (None, None) => true,
        (None, _) | (_, None) => false,
        (Some(Seg::One), Some(_)) => covers(&a[1..], &b[1..]),
        (Some(Seg::Lit(x)), Some(Seg::Lit(y))) if x == y => covers(&a[1..], &b[1..]),
        _ => false,
    }
}

fn path_matches(pattern: &[Seg], segments: &[&str]) -> bool {
    match (pattern.first(), segments.first()) {
        (Some(Seg::Rest), _) => true,
        (None, None) => true,
        (None, _) | (_, None) => false,
        (Some(Seg::One), Some(_)) => path_matches(&pattern[1..], &segments[1..]),
        (Some(Seg::Lit(x)), Some(y)) if x == y => path_matches(&pattern[1..], &segments[1..]),
        _ => false,
    }
}

/// The segments of a request path, or `None` for a path no rule may match: an empty, `.` or
/// `..` segment, or an encoded `/`, `\` or `.` (a handler or proxy could read it otherwise).
fn segments(path: &str) -> Option<Vec<&str>> {
    let rest = path.strip_prefix('/')?;
    let lower = rest.to_ascii_lowercase();
    if ["%2f", "%5c", "%2e", "\\"]
        .iter()
        .any(|e| lower.contains(e))
    {
        return None;
    }
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let segs: Vec<&str> = rest.split('/').collect();
    // A trailing slash names the same resource to most routers: `/orders/` is `/orders`.
    let segs = match segs.split_last() {
        Some((&"", init)) => init.to_vec(),
        _ => segs,
    };
    if segs.iter().any(|s| matches!(*s, "" | "." | "..")) {
        return None;
    }
    Some(segs)
}

/// `*` matches a run of characters without `:` or `/` (one segment of an ARN, topic or
/// subscription).
pub(crate) fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, tail)) => {
            let Some(rest) = s.strip_prefix(head) else {
                return false;
            };
            let segment_end = rest.find([':', '/']).unwrap_or(rest.len());
            (0..=segment_end)
                .filter(|&i| rest.is_char_boundary(i))
                .any(|i| glob(tail, &rest[i..]))
        }
    }
}

#[derive(Debug, Clone)]
enum Target {
    /// HTTP requests and direct invocations: by method (empty = any) and path.
    Requests {
        methods: Vec<Method>,
        paths: Vec<(String, Vec<Seg>)>,
    },
    /// Messages: by `(kind, source pattern)`.
    Messages { sources: Vec<(String, String)> },
}

#[derive(Debug, Clone)]
enum ClaimCheck {
    Equals(Value),
    Contains(String),
    Exists,
}

/// A principal pattern `kind:subject`: `*` in the subject matches any run of characters;
/// `network:` also takes a CIDR.
#[derive(Debug, Clone)]
struct PrincipalPattern {
    kind: String,
    subject: String,
    network: Option<ipnet::IpNet>,
}

impl PrincipalPattern {
    fn matches(&self, p: &Principal) -> bool {
        if p.kind.as_str() != self.kind {
            return false;
        }
        let subject = p.subject.to_string();
        if let Some(net) = &self.network {
            return subject.parse::<IpAddr>().is_ok_and(|ip| net.contains(&ip));
        }
        any_run_glob(&self.subject, &subject)
    }
}

/// `*` matches any run of characters (principal subjects: e-mails, ARNs, names).
fn any_run_glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, tail)) => s.strip_prefix(head).is_some_and(|rest| {
            (0..=rest.len())
                .filter(|&i| rest.is_char_boundary(i))
                .any(|i| any_run_glob(tail, &rest[i..]))
        }),
    }
}

/// One authorization rule: the requests it decides (method + path pattern, or message source)
/// and what the principal must hold for them. Every requirement given must hold: each listed
/// role, each listed scope, each claim condition, and — when principals are listed — one of them.
///
/// ```
/// use guard_core::authz::AuthzRule;
/// let rule = AuthzRule::requests("write-orders")
///     .methods(["POST"])
///     .paths(["/orders"])
///     .scopes(["orders:write"]);
/// # let _ = rule;
/// ```
#[derive(Debug, Clone)]
pub struct AuthzRule {
    pub(crate) name: String,
    target: Target,
    raw_methods: Vec<String>,
    roles: Vec<String>,
    scopes: Vec<String>,
    claims: Vec<(String, ClaimCheck)>,
    principals: Vec<String>,
    parsed_principals: Vec<PrincipalPattern>,
    any_verified: bool,
}

impl AuthzRule {
    fn new(name: impl Into<String>, target: Target) -> Self {
        Self {
            name: name.into(),
            target,
            raw_methods: Vec::new(),
            roles: Vec::new(),
            scopes: Vec::new(),
            claims: Vec::new(),
            principals: Vec::new(),
            parsed_principals: Vec::new(),
            any_verified: false,
        }
    }

    /// A rule for HTTP requests (and direct invocations): every method and path until narrowed.
    pub fn requests(name: impl Into<String>) -> Self {
        Self::new(
            name,
            Target::Requests {
                methods: Vec::new(),
                paths: Vec::new(),
            },
        )
    }

    /// A rule for messages from `sources`, each `kind:pattern` (`sqs:arn:aws:sqs:*:123456789012:orders`;
    /// `*` = one `:`/`/` segment).
    pub fn messages<I: IntoIterator<Item = S>, S: Into<String>>(
        name: impl Into<String>,
        sources: I,
    ) -> Self {
        let sources = sources
            .into_iter()
            .map(|s| {
                let s: String = s.into();
                match s.split_once(':') {
                    Some((k, p)) => (k.to_string(), p.to_string()),
                    None => (s, String::new()),
                }
            })
            .collect();
        Self::new(name, Target::Messages { sources })
    }

    /// Only these methods (`POST`, ...). Default: any.
    pub fn methods<I: IntoIterator<Item = S>, S: Into<String>>(mut self, methods: I) -> Self {
        self.raw_methods = methods.into_iter().map(Into::into).collect();
        self
    }

    /// Only these path patterns (`/orders`, `/orders/*`, `/admin/**`). Default: `/**`.
    pub fn paths<I: IntoIterator<Item = S>, S: Into<String>>(mut self, paths: I) -> Self {
        if let Target::Requests { paths: p, .. } = &mut self.target {
            *p = paths.into_iter().map(|s| (s.into(), Vec::new())).collect();
        }
        self
    }

    /// The principal must hold every one of these roles (see
    /// [`Principal::has_role`](crate::request::Principal::has_role)).
    pub fn roles<I: IntoIterator<Item = S>, S: Into<String>>(mut self, roles: I) -> Self {
        self.roles.extend(roles.into_iter().map(Into::into));
        self
    }

    /// The principal must hold every one of these scopes.
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// The claim must equal `value`.
    pub fn claim_equals(mut self, claim: impl Into<String>, value: impl Into<Value>) -> Self {
        self.claims
            .push((claim.into(), ClaimCheck::Equals(value.into())));
        self
    }

    /// The claim (an array, or a space-separated string) must contain `value`.
    pub fn claim_contains(mut self, claim: impl Into<String>, value: impl Into<String>) -> Self {
        self.claims
            .push((claim.into(), ClaimCheck::Contains(value.into())));
        self
    }

    /// The claim must be present.
    pub fn claim_exists(mut self, claim: impl Into<String>) -> Self {
        self.claims.push((claim.into(), ClaimCheck::Exists));
        self
    }

    /// The principal must be one of these, `kind:subject` (`hmac:orders-webhook-hmac`,
    /// `network:203.0.113.0/24`, `gcp-push:*`, `aws-iam:arn:aws:iam::123456789012:role/*`).
    pub fn principals<I: IntoIterator<Item = S>, S: Into<String>>(mut self, principals: I) -> Self {
        self.principals
            .extend(principals.into_iter().map(Into::into));
        self
    }

    /// Any verified principal may (a rule without requirements must say so).
    pub fn any_verified(mut self) -> Self {
        self.any_verified = true;
        self
    }

    /// Checks and compiles the rule; the message names what is wrong.
    pub(crate) fn compile(mut self) -> Result<Self, String> {
        let name = self.name.clone();
        let at = |m: &str| format!("rule `{name}`: {m}");
        if !name_ok(&self.name) {
            return Err(at("a rule name is 1 to 64 of `A-Z a-z 0-9 _ . : -`"));
        }
        self.compile_target().map_err(at)?;
        for r in self.roles.iter().chain(&self.scopes) {
            if !grant_ok(r) {
                return Err(at(
                    "a role or scope is 1 to 256 visible characters without spaces, `\"` or `\\`",
                ));
            }
        }
        for (claim, _) in &self.claims {
            if claim.trim().is_empty() {
                return Err(at("a claim name is not empty"));
            }
        }
        self.compile_principals().map_err(at)?;
        let requires = !(self.roles.is_empty()
            && self.scopes.is_empty()
            && self.claims.is_empty()
            && self.principals.is_empty());
        match (requires, self.any_verified) {
            (false, false) => Err(at(
                "requires nothing: list roles, scopes, claims or principals, or say `any_verified = true`",
            )),
            (true, true) => Err(at(
                "`any_verified` contradicts the requirements listed with it",
            )),
            _ => Ok(self),
        }
    }

    /// The methods and paths of a request rule, or the sources of a message rule.
    fn compile_target(&mut self) -> Result<(), &'static str> {
        match &mut self.target {
            Target::Requests { methods, paths } => {
                for m in &self.raw_methods {
                    let method = Method::from_bytes(m.as_bytes())
                        .ok()
                        .filter(|_| m.bytes().all(|b| b.is_ascii_uppercase()))
                        .ok_or("a method is an upper-case HTTP method name")?;
                    methods.push(method);
                }
                if paths.is_empty() {
                    paths.push(("/**".into(), vec![Seg::Rest]));
                }
                for (raw, segs) in paths.iter_mut() {
                    *segs = parse_path(raw)?;
                }
            }
            Target::Messages { sources } => {
                if !self.raw_methods.is_empty() {
                    return Err("a message rule has no methods");
                }
                if sources.is_empty() {
                    return Err("a message rule lists its sources");
                }
                for (kind, pattern) in sources.iter() {
                    if !kind_ok(kind) || pattern.is_empty() {
                        return Err("a source is `kind:pattern` (`sqs:arn:aws:sqs:...`)");
                    }
                }
            }
        }
        Ok(())
    }

    /// The `kind:subject` principals (a `network` subject parsed as an address or a CIDR).
    fn compile_principals(&mut self) -> Result<(), &'static str> {
        for p in &self.principals {
            let (kind, subject) = p
                .split_once(':')
                .filter(|(k, s)| kind_ok(k) && !s.is_empty())
                .ok_or("a principal is `kind:subject` (`hmac:orders-webhook-hmac`)")?;
            let network = if kind == "network" && subject != "*" {
                Some(
                    subject
                        .parse::<ipnet::IpNet>()
                        .or_else(|_| subject.parse::<IpAddr>().map(ipnet::IpNet::from))
                        .map_err(|_| "a network principal is an address or a CIDR")?,
                )
            } else {
                None
            };
            self.parsed_principals.push(PrincipalPattern {
                kind: kind.to_string(),
                subject: subject.to_string(),
                network,
            });
        }
        Ok(())
    }

    /// Whether this rule decides `req` (its method and path, or its message source).
    pub(crate) fn decides(
        &self,
        method: &Method,
        path: Option<&[&str]>,
        trigger: &Trigger,
    ) -> bool {
        match (&self.target, trigger) {
            (Target::Messages { sources }, Trigger::Message(m)) => sources
                .iter()
                .any(|(kind, pattern)| *kind == m.kind && glob(pattern, &m.source_id)),
            (Target::Requests { methods, paths }, Trigger::Http | Trigger::Direct) => {
                (methods.is_empty() || methods.contains(method))
                    && path.is_some_and(|segs| paths.iter().any(|(_, p)| path_matches(p, segs)))
            }
            _ => false,
        }
    }

    /// Whether `p` satisfies every requirement.
    pub(crate) fn allows(&self, p: &Principal) -> bool {
        let grants = p.grants();
        self.roles.iter().all(|r| grants.has_role(r))
            && self.scopes.iter().all(|s| grants.has_scope(s))
            && self
                .claims
                .iter()
                .all(|(claim, check)| match (check, p.claims.get(claim)) {
                    (ClaimCheck::Exists, v) => v.is_some(),
                    (ClaimCheck::Equals(want), Some(v)) => v == want,
                    (ClaimCheck::Contains(want), Some(Value::String(s))) => {
                        s.split(' ').any(|w| w == want)
                    }
                    (ClaimCheck::Contains(want), Some(Value::Array(a))) => {
                        a.iter().any(|e| e.as_str() == Some(want))
                    }
                    _ => false,
                })
            && (self.parsed_principals.is_empty()
                || self.parsed_principals.iter().any(|pp| pp.matches(p)))
    }
}

/// The path segments a rule is matched against (`None`: a path no rule may match).
pub(crate) fn request_segments(path: &str) -> Option<Vec<&str>> {
    segments(path)
}

fn name_ok(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

fn kind_ok(kind: &str) -> bool {
    (1..=64).contains(&kind.len())
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// RFC 6749 `scope-token` (`%x21 / %x23-5B / %x5D-7E`), at most 256 bytes; roles follow it too.
pub(crate) fn grant_ok(g: &str) -> bool {
    (1..=256).contains(&g.len())
        && g.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<Seg> {
        parse_path(s).unwrap()
    }

    #[test]
    fn path_patterns_match_whole_segments() {
        let m = |pat: &str, path: &str| path_matches(&p(pat), &segments(path).unwrap());
        assert!(m("/orders", "/orders"));
        assert!(m("/orders", "/orders/"));
        assert!(!m("/orders", "/orders/1"));
        assert!(m("/orders/*", "/orders/1"));
        assert!(!m("/orders/*", "/orders"));
        assert!(m("/orders/**", "/orders"));
        assert!(m("/orders/**", "/orders/1/items"));
        assert!(!m("/orders/**", "/ordersx"));
        assert!(m("/**", "/"));
    }

    #[test]
    fn odd_request_paths_match_no_rule() {
        for path in [
            "/orders/../admin",
            "/orders//1",
            "/a%2Fb",
            "/a/%2e%2e",
            "/./orders",
            "x",
        ] {
            assert!(segments(path).is_none(), "{path}");
        }
    }

    #[test]
    fn bad_path_patterns_are_refused() {
        for bad in ["orders", "/a/**/b", "/ord*", "/a//b", "/a/../b"] {
            assert!(parse_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cover_is_set_inclusion() {
        assert!(covers(&p("/**"), &p("/orders/*")));
        assert!(covers(&p("/orders/*"), &p("/orders/1")));
        assert!(!covers(&p("/orders/1"), &p("/orders/*")));
        assert!(!covers(&p("/orders/*"), &p("/orders/**")));
        assert!(covers(&p("/orders/**"), &p("/orders/**")));
        assert!(!covers(&p("/a"), &p("/b")));
    }

    #[test]
    fn source_globs_stay_within_a_segment() {
        assert!(glob(
            "arn:aws:sqs:*:1:orders",
            "arn:aws:sqs:us-east-1:1:orders"
        ));
        assert!(!glob("arn:aws:sqs:*", "arn:aws:sqs:us-east-1:1:orders"));
        assert!(glob(
            "projects/p/subscriptions/*",
            "projects/p/subscriptions/x"
        ));
    }

    #[test]
    fn role_and_scope_syntax_follows_rfc_6749() {
        assert!(grant_ok("orders:write"));
        assert!(grant_ok("Orders.Admin"));
        for bad in ["", "a b", "a\"b", "a\\b", "é", "a\n"] {
            assert!(!grant_ok(bad), "{bad:?}");
        }
    }
}
