//! The `[verify]` section of `guard.toml`: who may call the function.
//!
//! HTTP requests and direct invocations must pass the *request checks* (`cidr`, `hmac`, `jwt`,
//! `azure_easy_auth`, `aws_authorizer`), combined by `mode` (`any`: one is enough, the default;
//! `all`: every one). In `any` mode a request that presents a signature or token is still refused
//! if that credential is invalid, even from an allowed address. Platform messages must come from a
//! source listed in `[verify.sources]` **under the message's trigger kind**, the kind the adapter
//! reports in `Trigger::Message` (`sqs`, `sns`, `eventbridge`, `s3`, `dynamodb`, `kinesis` on AWS;
//! `pubsub` on Google Cloud; `azure-queue`, `eventgrid` on Azure): an SQS ARN never admits a
//! Kinesis record, and a kind with no entries admits nothing. When `[verify.gcp_push]` is set,
//! messages of its kinds must also carry Google's push token. A `[verify]` section with no check
//! at all refuses everything, so loading reports it.
//!
//! The orders example (examples/orders):
//!
//! ```
//! let policy = guard_core::Policy::from_toml_str(r#"
//!     [verify]
//!     mode = "any"
//!
//!     [verify.sources]
//!     sqs = ["arn:aws:sqs:us-east-1:123456789012:orders"]
//!     pubsub = ["projects/shop-prod/subscriptions/orders-push"]
//!     azure-queue = ["orders"]
//!
//!     [verify.cidr]
//!     allow = ["203.0.113.0/24", "198.51.100.0/24"]
//!
//!     [verify.hmac]
//!     preset = "stripe"
//!     header = "X-Guard-Signature"
//!     secret = "orders-webhook-hmac"
//!     tolerance_secs = 300
//!     replay = true
//! "#).unwrap();
//! assert!(policy.warnings().is_empty());
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use super::PolicyProblem;

/// How the request checks combine.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum VerifyMode {
    /// One passing check is enough (e.g. allow-listed address **or** valid signature).
    #[default]
    Any,
    /// Every configured check must pass.
    All,
}

/// `[verify.cidr]`: the caller's address must be in one of these networks.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub(crate) struct CidrPolicy {
    /// Networks, IPv4 or IPv6 (`203.0.113.0/24`, `2001:db8::/32`).
    pub(crate) allow: Vec<String>,
    /// 0 (default): use the address the platform observed. N ≥ 1: you run N proxies that append
    /// to `X-Forwarded-For`; the client is the N-th entry from the right (at most 32).
    pub(crate) trusted_proxy_hops: u32,
}

/// The HMAC signature formats.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum HmacPreset {
    /// `X-Hub-Signature-256: sha256=<hex>` over the body.
    GitHub,
    /// `t=<unix>,v1=<hex>` over `"<t>.<body>"` (`Stripe-Signature`, or `header`).
    #[default]
    Stripe,
    /// `X-Slack-Signature: v0=<hex>` + `X-Slack-Request-Timestamp`.
    Slack,
    /// `header: <prefix><signature>`, optional `timestamp_header`.
    Generic,
}

/// How a generic signature is encoded.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum HmacEncoding {
    /// Hex.
    #[default]
    Hex,
    /// Standard base64.
    Base64,
}

/// `[verify.hmac]`: a webhook signature (HMAC-SHA256) with a key from the secret store.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub(crate) struct HmacPolicy {
    /// The format (default `stripe`).
    pub(crate) preset: HmacPreset,
    /// Name of the secret holding the key (current and previous versions are accepted).
    pub(crate) secret: String,
    /// The signature header (`stripe` and `generic` only; `stripe` defaults to `Stripe-Signature`).
    pub(crate) header: Option<String>,
    /// Text before the signature (`generic` only).
    pub(crate) prefix: Option<String>,
    /// Signature encoding (`generic` only).
    pub(crate) encoding: Option<HmacEncoding>,
    /// Header holding the Unix timestamp (`generic` only).
    pub(crate) timestamp_header: Option<String>,
    /// Timestamp tolerance in both directions, seconds (default 300, 1..=86400).
    pub(crate) tolerance_secs: u64,
    /// Accept each signed message only once (default true).
    pub(crate) replay: bool,
}

impl Default for HmacPolicy {
    fn default() -> Self {
        Self {
            preset: HmacPreset::Stripe,
            secret: String::new(),
            header: None,
            prefix: None,
            encoding: None,
            timestamp_header: None,
            tolerance_secs: 300,
            replay: true,
        }
    }
}

/// One claim condition: exactly one of `equals`, `contains`, `exists`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub(crate) struct ClaimRule {
    /// The claim name.
    pub(crate) claim: String,
    /// The claim must equal this value.
    pub(crate) equals: Option<serde_json::Value>,
    /// The claim (array or space-separated string) must contain this.
    pub(crate) contains: Option<String>,
    /// The claim must be present (`true`).
    pub(crate) exists: Option<bool>,
}

/// `[verify.jwt]`: an OIDC / JWT bearer token from one trusted issuer. Several issuers are
/// several `[[verify.jwt]]` tables, each with its own audiences; a token is checked against the
/// table of the issuer its `iss` names, and a token naming none is refused (401) without a fetch.
///
/// With `issuer` alone the keys are found by OpenID Connect discovery: only
/// `{issuer}/.well-known/openid-configuration` is fetched, its `issuer` must equal this one
/// exactly, and its `jwks_uri` (https only) is used. A configuration that breaks either rule is
/// logged as an error (target `guard::verify`) by `Guard::prefetch` at start, and its tokens are
/// answered 503 `guard.verify.unavailable` while no key is had; a token of another issuer, expired,
/// for another audience or unsigned (`alg: none`) is 401 `guard.verify.bad_token`. Issuers of
/// common providers (copy them from the provider's own discovery document; the trailing `/`
/// matters):
///
/// | provider | `issuer` |
/// |---|---|
/// | Microsoft Entra ID (v2 tokens) | `https://login.microsoftonline.com/{tenant-id}/v2.0` |
/// | Amazon Cognito user pool | `https://cognito-idp.{region}.amazonaws.com/{user-pool-id}` |
/// | Google | `https://accounts.google.com` |
/// | Okta (custom authorization server) | `https://{org}.okta.com/oauth2/{server-id}` (`default` for the default one) |
/// | Auth0 | `https://{tenant}.{region}.auth0.com/` (or your custom domain, with its `/`) |
///
/// ```
/// let policy = guard_core::Policy::from_toml_str(r#"
///     [[verify.jwt]]
///     issuer = "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0"
///     audiences = ["api://orders"]
///
///     [[verify.jwt]]
///     issuer = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123"
///     audiences = ["1example23456789"]
/// "#).unwrap();
/// # let _ = policy;
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub(crate) struct JwtPolicy {
    /// The OpenID Provider's issuer: tokens must carry exactly this `iss`, and, without
    /// `jwks_url`, the keys are found by discovery. https (plain http only to a loopback host).
    pub(crate) issuer: String,
    /// Where the signing keys are (never taken from the token). Optional with `issuer`.
    pub(crate) jwks_url: String,
    /// Accepted issuers sharing `jwks_url` (without `issuer`).
    pub(crate) issuers: Vec<String>,
    /// Accepted audiences (at least one).
    pub(crate) audiences: Vec<String>,
    /// Accepted algorithms (default `["RS256"]`; no `none`, no HS*).
    pub(crate) algorithms: Vec<String>,
    /// Clock-skew allowance for `exp` / `nbf`, seconds (default 60, at most 300).
    pub(crate) leeway_secs: u64,
    /// Conditions on the claims (403 when one fails).
    pub(crate) claims: Vec<ClaimRule>,
    /// Least time between two JWKS fetches, seconds (default 10, at least 1).
    pub(crate) jwks_cooldown_secs: u64,
    /// How long fetched keys are used before a refresh, seconds (default 3600).
    pub(crate) jwks_ttl_secs: u64,
}

impl Default for JwtPolicy {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            jwks_url: String::new(),
            issuers: Vec::new(),
            audiences: Vec::new(),
            algorithms: vec!["RS256".into()],
            leeway_secs: 60,
            claims: Vec::new(),
            jwks_cooldown_secs: 10,
            jwks_ttl_secs: 3600,
        }
    }
}

/// `[verify.gcp_push]`: messages of `kinds` must carry Google's OIDC push token.
///
/// ```toml
/// [verify.gcp_push]
/// audience = "https://orders.example.com/pubsub"        # the push subscription's audience
/// service_account = "orders-push@shop-prod.iam.gserviceaccount.com"
/// kinds = ["pubsub", "eventarc"]                        # default ["pubsub"]
/// audiences = { eventarc = "https://orders.example.com/events" }   # per kind, else `audience`
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub(crate) struct GcpPushPolicy {
    /// The token audience configured on the push subscription.
    pub(crate) audience: String,
    /// The service account the subscription pushes as (`email` claim).
    pub(crate) service_account: String,
    /// Google's JWKS (overridable for tests).
    pub(crate) jwks_url: String,
    /// Message kinds that carry the token (default `["pubsub"]`).
    pub(crate) kinds: Vec<String>,
    /// Per-kind audiences: a kind listed here expects this `aud` instead of `audience` (an
    /// Eventarc trigger usually pushes to another URL than the Pub/Sub subscription).
    pub(crate) audiences: BTreeMap<String, String>,
}

impl Default for GcpPushPolicy {
    fn default() -> Self {
        Self {
            audience: String::new(),
            service_account: String::new(),
            jwks_url: "https://www.googleapis.com/oauth2/v3/certs".into(),
            kinds: vec!["pubsub".into()],
            audiences: BTreeMap::new(),
        }
    }
}

/// `[verify.sns]`: SNS messages must carry a valid SNS signature (checked by guard-aws's SNS
/// verifier, which the AWS adapter adds for messages of kind `sns`; a stack built without it is
/// refused). The topic must also be listed under `[verify.sources] sns`.
///
/// ```toml
/// [verify.sns]
/// topics = ["arn:aws:sns:us-east-1:123456789012:orders"]   # `*` = one segment
/// max_age_secs = 3600                                       # oldest Timestamp accepted
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub(crate) struct SnsPolicy {
    /// Topic ARN patterns whose signed messages are accepted.
    pub(crate) topics: Vec<String>,
    /// How old (by its `Timestamp`) a message may be, in seconds (default 3600, at most 7 days).
    pub(crate) max_age_secs: u64,
}

impl Default for SnsPolicy {
    fn default() -> Self {
        Self {
            topics: Vec::new(),
            max_age_secs: 3600,
        }
    }
}

/// `[verify.azure_easy_auth]`: trust `X-MS-CLIENT-PRINCIPAL`. Only when Easy Auth is on for the app.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub(crate) struct EasyAuthPolicy {
    /// Accepted identity providers (`aad`, ...); empty = any.
    pub(crate) auth_types: Vec<String>,
    /// Conditions on the claims.
    pub(crate) claims: Vec<ClaimRule>,
}

/// `[verify.aws_authorizer]`: accept what an API Gateway authorizer verified.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub(crate) struct AwsAuthorizerPolicy {
    /// Conditions on the authorizer's claims.
    pub(crate) claims: Vec<ClaimRule>,
}

/// The `[verify]` section.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub(crate) struct VerifyPolicy {
    /// How the request checks combine (default `any`).
    pub(crate) mode: VerifyMode,
    /// Event sources messages may come from, by trigger kind: `kind = [ARN / topic / subscription
    /// patterns]` (`*` = one segment). A message is admitted only by an entry of its own kind.
    pub(crate) sources: BTreeMap<String, Vec<String>>,
    /// Address allow-list.
    pub(crate) cidr: Option<CidrPolicy>,
    /// Webhook signature.
    pub(crate) hmac: Option<HmacPolicy>,
    /// Bearer tokens: one `[verify.jwt]` table or several `[[verify.jwt]]` (one per issuer).
    #[serde(deserialize_with = "one_or_many")]
    pub(crate) jwt: Vec<JwtPolicy>,
    /// Google push token on messages.
    pub(crate) gcp_push: Option<GcpPushPolicy>,
    /// SNS signatures on messages of kind `sns` (verified by guard-aws).
    pub(crate) sns: Option<SnsPolicy>,
    /// Azure Easy Auth principal.
    pub(crate) azure_easy_auth: Option<EasyAuthPolicy>,
    /// AWS API Gateway authorizer.
    pub(crate) aws_authorizer: Option<AwsAuthorizerPolicy>,
}

fn url_ok(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty() && !host.contains('@') && !r.chars().any(char::is_whitespace)
    })
}

fn push(problems: &mut Vec<PolicyProblem>, path: impl Into<String>, message: &str) {
    problems.push(PolicyProblem::new(path, message));
}

fn header_ok(h: &str) -> bool {
    http::HeaderName::from_bytes(h.as_bytes()).is_ok()
}

pub(super) fn check_claims(rules: &[ClaimRule], path: &str, problems: &mut Vec<PolicyProblem>) {
    for (i, r) in rules.iter().enumerate() {
        let at = format!("{path}[{i}]");
        if r.claim.trim().is_empty() {
            problems.push(PolicyProblem::new(
                format!("{at}.claim"),
                "must not be empty",
            ));
        }
        let set = [r.equals.is_some(), r.contains.is_some(), r.exists.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if set != 1 {
            problems.push(PolicyProblem::new(
                at.clone(),
                "needs exactly one of `equals`, `contains`, `exists`",
            ));
        }
        if r.exists == Some(false) {
            problems.push(PolicyProblem::new(
                format!("{at}.exists"),
                "only `exists = true` is supported",
            ));
        }
    }
}

impl VerifyPolicy {
    /// Whether any request check is configured.
    pub(crate) fn has_request_checks(&self) -> bool {
        self.cidr.is_some()
            || self.hmac.is_some()
            || !self.jwt.is_empty()
            || self.azure_easy_auth.is_some()
            || self.aws_authorizer.is_some()
    }

    /// Adds every semantic problem of this section (with key paths under `path`) to `problems`.
    pub(crate) fn check(&self, path: &str, problems: &mut Vec<PolicyProblem>) {
        let no_sources = self.sources.values().all(Vec::is_empty);
        if !self.has_request_checks() && no_sources {
            push(
                problems,
                path.to_string(),
                "configures no check: add `sources`, `cidr`, `hmac`, `jwt`, `azure_easy_auth` or `aws_authorizer` (or remove the section)",
            );
        }
        if let Some(sns) = &self.sns {
            self.check_sns(sns, path, problems);
        }
        if let Some(g) = &self.gcp_push {
            self.check_gcp_push_sources(g, path, problems);
        }
        self.check_sources(path, problems);
        if let Some(c) = &self.cidr {
            check_cidr(c, path, problems);
        }
        if let Some(h) = &self.hmac {
            check_hmac(h, path, problems);
        }
        self.check_jwts(path, problems);
        if let Some(g) = &self.gcp_push {
            check_gcp_push(g, path, problems);
        }
        if let Some(e) = &self.azure_easy_auth {
            check_claims(
                &e.claims,
                &format!("{path}.azure_easy_auth.claims"),
                problems,
            );
        }
        if let Some(a) = &self.aws_authorizer {
            check_claims(
                &a.claims,
                &format!("{path}.aws_authorizer.claims"),
                problems,
            );
        }
    }

    /// Each `[[verify.jwt]]` table, and no issuer trusted by two of them.
    fn check_jwts(&self, path: &str, problems: &mut Vec<PolicyProblem>) {
        let several = self.jwt.len() > 1;
        let mut seen_issuers: Vec<&str> = Vec::new();
        for (n, j) in self.jwt.iter().enumerate() {
            let base = if several {
                format!("{path}.jwt[{n}]")
            } else {
                format!("{path}.jwt")
            };
            check_jwt(j, &base, problems);
            let accepted: Vec<&str> = if j.issuer.is_empty() {
                j.issuers.iter().map(String::as_str).collect()
            } else {
                vec![j.issuer.as_str()]
            };
            for iss in accepted {
                if seen_issuers.contains(&iss) {
                    push(
                        problems,
                        format!("{base}.issuer"),
                        "this issuer is already trusted by another [[verify.jwt]] table",
                    );
                }
                seen_issuers.push(iss);
            }
        }
    }

    fn check_sns(&self, sns: &SnsPolicy, path: &str, problems: &mut Vec<PolicyProblem>) {
        if sns.topics.is_empty() || sns.topics.iter().any(|t| t.trim().is_empty()) {
            push(
                problems,
                format!("{path}.sns.topics"),
                "list at least one topic ARN pattern",
            );
        }
        if !(1..=7 * 24 * 3600).contains(&sns.max_age_secs) {
            push(
                problems,
                format!("{path}.sns.max_age_secs"),
                "must be 1 to 604800 (7 days)",
            );
        }
        if self.sources.get("sns").is_none_or(Vec::is_empty) {
            push(
                problems,
                format!("{path}.sources.sns"),
                "`[verify.sns]` needs its topics listed in `sources.sns`",
            );
        }
    }

    fn check_gcp_push_sources(
        &self,
        g: &GcpPushPolicy,
        path: &str,
        problems: &mut Vec<PolicyProblem>,
    ) {
        for kind in &g.kinds {
            if self.sources.get(kind).is_none_or(Vec::is_empty) {
                push(
                    problems,
                    format!("{path}.sources.{kind}"),
                    "`gcp_push` needs the subscriptions of its kinds listed in `sources`",
                );
            }
        }
    }

    fn check_sources(&self, path: &str, problems: &mut Vec<PolicyProblem>) {
        for (kind, list) in &self.sources {
            let at = format!("{path}.sources.{kind}");
            let kind_ok = (1..=64).contains(&kind.len())
                && kind.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            if !kind_ok {
                push(
                    problems,
                    at.clone(),
                    "not a trigger kind: use the lower-case kind (`sqs`, `sns`, `eventbridge`, `kinesis`, `pubsub`, `azure-queue`, ...)",
                );
            }
            if list.is_empty() {
                push(problems, at.clone(), "must list at least one source");
            }
            #[cfg(feature = "verify")]
            for (i, s) in list.iter().enumerate() {
                if let Err(e) = crate::verify::SourcePattern::parse(s) {
                    push(problems, format!("{at}[{i}]"), &e.to_string());
                }
            }
            #[cfg(not(feature = "verify"))]
            for (i, s) in list.iter().enumerate() {
                if s.is_empty() {
                    push(problems, format!("{at}[{i}]"), "must not be empty");
                }
            }
        }
    }
}

fn check_cidr(c: &CidrPolicy, path: &str, problems: &mut Vec<PolicyProblem>) {
    if c.allow.is_empty() {
        push(
            problems,
            format!("{path}.cidr.allow"),
            "must list at least one network",
        );
    }
    for (i, net) in c.allow.iter().enumerate() {
        if net.parse::<ipnet::IpNet>().is_err() {
            push(
                problems,
                format!("{path}.cidr.allow[{i}]"),
                "not a CIDR network like `203.0.113.0/24` or `2001:db8::/32`",
            );
        }
    }
    if c.trusted_proxy_hops > 32 {
        push(
            problems,
            format!("{path}.cidr.trusted_proxy_hops"),
            "must be at most 32",
        );
    }
}

fn check_hmac(h: &HmacPolicy, path: &str, problems: &mut Vec<PolicyProblem>) {
    let at = |k: &str| format!("{path}.hmac.{k}");
    if h.secret.trim().is_empty() {
        push(
            problems,
            at("secret"),
            "must name the secret holding the HMAC key",
        );
    }
    if !(1..=86_400).contains(&h.tolerance_secs) {
        push(
            problems,
            at("tolerance_secs"),
            "must be between 1 and 86400",
        );
    }
    if let Some(hd) = &h.header
        && !header_ok(hd)
    {
        push(problems, at("header"), "not a valid header name");
    }
    if let Some(hd) = &h.timestamp_header
        && !header_ok(hd)
    {
        push(problems, at("timestamp_header"), "not a valid header name");
    }
    match h.preset {
        HmacPreset::GitHub | HmacPreset::Slack => {
            if h.header.is_some() {
                push(
                    problems,
                    at("header"),
                    "fixed by the preset; only `stripe` and `generic` take one",
                );
            }
        }
        HmacPreset::Stripe | HmacPreset::Generic => {}
    }
    if h.preset == HmacPreset::Generic {
        if h.header.is_none() {
            push(problems, at("header"), "required by the `generic` preset");
        }
    } else {
        for (k, set) in [
            ("prefix", h.prefix.is_some()),
            ("encoding", h.encoding.is_some()),
            ("timestamp_header", h.timestamp_header.is_some()),
        ] {
            if set {
                push(problems, at(k), "only the `generic` preset takes it");
            }
        }
    }
}

fn check_gcp_push(g: &GcpPushPolicy, path: &str, problems: &mut Vec<PolicyProblem>) {
    let at = |k: &str| format!("{path}.gcp_push.{k}");
    if g.audience.trim().is_empty() {
        push(problems, at("audience"), "must not be empty");
    }
    if g.service_account.trim().is_empty() {
        push(problems, at("service_account"), "must not be empty");
    }
    if !url_ok(&g.jwks_url) {
        push(problems, at("jwks_url"), "must be an http(s) URL");
    }
    if g.kinds.is_empty() {
        push(problems, at("kinds"), "must list at least one message kind");
    }
    for (kind, aud) in &g.audiences {
        if !g.kinds.contains(kind) {
            push(
                problems,
                at("audiences"),
                "names a kind not listed in `kinds`",
            );
        }
        if aud.trim().is_empty() {
            push(
                problems,
                format!("{path}.gcp_push.audiences.{kind}"),
                "must not be empty",
            );
        }
    }
}

/// Where a `[verify.jwt]` table's keys come from: `issuer` (OIDC discovery, `jwks_url`
/// optional) or `jwks_url` with `issuers`.
fn check_jwt_issuer(j: &JwtPolicy, base: &str, problems: &mut Vec<PolicyProblem>) {
    let at = |k: &str| format!("{base}.{k}");
    if j.issuer.is_empty() {
        if !url_ok(&j.jwks_url) {
            push(
                problems,
                at("jwks_url"),
                "must be an http(s) URL (or set `issuer` for OIDC discovery)",
            );
        }
        if j.issuers.is_empty() || j.issuers.iter().any(|i| i.is_empty()) {
            push(
                problems,
                at("issuers"),
                "must list at least one non-empty issuer (or set `issuer`)",
            );
        }
    } else {
        #[cfg(feature = "jwks-http")]
        if let Err(e) = crate::verify::check_issuer(&j.issuer) {
            push(problems, at("issuer"), &e);
        }
        if !j.issuers.is_empty() {
            push(
                problems,
                at("issuers"),
                "set either `issuer` or `issuers`, not both",
            );
        }
        if !j.jwks_url.is_empty() && !url_ok(&j.jwks_url) {
            push(problems, at("jwks_url"), "must be an http(s) URL");
        }
    }
}

/// The problems of one `[verify.jwt]` table, under `base`.
fn check_jwt(j: &JwtPolicy, base: &str, problems: &mut Vec<PolicyProblem>) {
    let at = |k: &str| format!("{base}.{k}");
    check_jwt_issuer(j, base, problems);
    if j.audiences.is_empty() || j.audiences.iter().any(|a| a.is_empty()) {
        push(
            problems,
            at("audiences"),
            "must list at least one non-empty audience",
        );
    }
    if j.algorithms.is_empty() {
        push(
            problems,
            at("algorithms"),
            "must list at least one algorithm",
        );
    }
    for (i, a) in j.algorithms.iter().enumerate() {
        let known = matches!(
            a.as_str(),
            "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" | "ES256" | "ES384" | "EdDSA"
        );
        if !known {
            push(
                problems,
                format!("{base}.algorithms[{i}]"),
                "unknown or not allowed (use RS*, PS*, ES256, ES384 or EdDSA; never none or HS*)",
            );
        }
    }
    if j.leeway_secs > 300 {
        push(problems, at("leeway_secs"), "must be at most 300");
    }
    if j.jwks_cooldown_secs == 0 {
        push(problems, at("jwks_cooldown_secs"), "must be at least 1");
    }
    if j.jwks_ttl_secs == 0 {
        push(problems, at("jwks_ttl_secs"), "must be at least 1");
    }
    check_claims(&j.claims, &at("claims"), problems);
}

/// `[verify.jwt]` (one table) or `[[verify.jwt]]` (several), with the key paths of each kept.
fn one_or_many<'de, D>(d: D) -> Result<Vec<JwtPolicy>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<JwtPolicy>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a [verify.jwt] table or [[verify.jwt]] tables")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            JwtPolicy::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                .map(|j| vec![j])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            Vec::<JwtPolicy>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use crate::Policy;

    #[test]
    fn the_orders_section_reads_every_check() {
        let policy = Policy::from_toml_str(
            r#"
            [verify.sources]
            azure-queue = ["orders"]
            [verify.hmac]
            preset = "stripe"
            secret = "orders-webhook-hmac"
            "#,
        )
        .unwrap();
        let verify = policy.verify.unwrap();
        assert_eq!(verify.hmac.unwrap().secret, "orders-webhook-hmac");
        assert_eq!(verify.sources["azure-queue"], ["orders"]);
    }

    #[test]
    fn several_jwt_tables_are_several_issuers() {
        let policy = Policy::from_toml_str(
            r#"
            [[verify.jwt]]
            issuer = "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0"
            audiences = ["api://orders"]
            [[verify.jwt]]
            issuer = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123"
            audiences = ["1example23456789"]
            "#,
        )
        .unwrap();
        assert_eq!(policy.verify.unwrap().jwt.len(), 2);
    }
}
