//! [`Policy`]: one declarative `guard.toml` describing a function's perimeter.
//!
//! Loading never panics and reports **every** problem it finds, each with its key path: syntax,
//! unknown keys, wrong types, and semantic mistakes (zero limits, bad CIDRs, a schema that does not
//! compile...).
//!
//! ```
//! use guard_core::Policy;
//!
//! let policy = Policy::from_toml_str(r#"
//!     [function]
//!     name = "shop-orders-prod-intake"
//!     [ingress]
//!     max_body_bytes = 65536
//!     methods = ["POST"]
//! "#).unwrap();
//! assert_eq!(policy.max_body_bytes(), 65536);
//!
//! let err = Policy::from_toml_str("[ingress]\nmax_body_bytez = 1\n[nope]\n").unwrap_err();
//! assert_eq!(err.problems().len(), 2);
//! ```
#![doc = include_str!("reference.md")]

pub(crate) mod authz;
mod env;
mod rate_limit;
mod secrets;
mod verify;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

pub use secrets::SecretsProvider;

/// The sections, for the builder to translate (it needs every layer: with fewer features
/// some are not read).
#[allow(unused_imports)]
pub(crate) use self::{
    authz::AuthzPolicy,
    rate_limit::{BackendChoice, FailureMode, MessageRateLimit, RateLimitKey, RateLimitPolicy},
    secrets::SecretsPolicy,
    verify::{
        ClaimRule, HmacEncoding, HmacPolicy, HmacPreset, JwtPolicy, VerifyMode, VerifyPolicy,
    },
};

/// One problem in a policy, with the dotted key path it concerns (`ingress.max_body_bytes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyProblem {
    /// Dotted key path; empty for the whole file.
    pub path: String,
    /// What is wrong (never a secret value).
    pub message: String,
}

impl PolicyProblem {
    /// A problem at `path`.
    ///
    /// ```
    /// let p = guard_core::policy::PolicyProblem::new("ingress.max_depth", "must be at least 1");
    /// assert_eq!(p.to_string(), "ingress.max_depth: must be at least 1");
    /// ```
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found while loading or checking a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    problems: Vec<PolicyProblem>,
}

impl PolicyError {
    /// Wraps a non-empty list of problems.
    ///
    /// ```
    /// use guard_core::policy::{PolicyError, PolicyProblem};
    /// let e = PolicyError::new(vec![PolicyProblem::new("a", "b")]);
    /// assert_eq!(e.problems().len(), 1);
    /// ```
    pub fn new(problems: Vec<PolicyProblem>) -> Self {
        Self { problems }
    }

    /// The problems, in file order where known.
    ///
    /// ```
    /// let e = guard_core::Policy::from_toml_str("x = 1").unwrap_err();
    /// assert_eq!(e.problems()[0].path, "x");
    /// ```
    pub fn problems(&self) -> &[PolicyProblem] {
        &self.problems
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} problem(s) in policy", self.problems.len())?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// What to do when the function name breaks the naming convention.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum NamingEnforcement {
    /// Do not check.
    Off,
    /// Report a warning (in [`Policy::warnings`] and the log).
    #[default]
    Warn,
    /// Refuse to load the policy.
    Error,
}

/// The `[function]` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub(crate) struct FunctionPolicy {
    /// The function's name, e.g. `shop-orders-prod-intake`.
    pub(crate) name: Option<String>,
    /// Whether the name must follow `{team}-{service}-{env}-{function}`.
    pub(crate) naming: NamingEnforcement,
    /// The allowed `{env}` segments.
    pub(crate) environments: Vec<String>,
    /// Zero trust: without a `[verify]` section the stack refuses to build unless this is true.
    pub(crate) allow_unverified: bool,
    /// How many proxies append to `X-Forwarded-For` before a request reaches the function,
    /// counting the platform's own front end; the [`Peer`](crate::request::Peer) is then the
    /// `trusted_proxies`-th entry from the right (see
    /// [`TrustedProxies`](crate::request::TrustedProxies)). At most 32.
    ///
    /// `0` (the default) keeps the peer the platform itself reports, which is each adapter's
    /// default: API Gateway and Function URLs `sourceIp` (this setting does not apply to them);
    /// ALB the entry the ALB appended (as `1`); the Cloud Run front end and the Azure front end the
    /// entry they appended (as `1`); [`guard_core::server`](crate#features) on its own the
    /// socket's address. Set it to 2 when one proxy of yours (a CDN, an API gateway) sits in front
    /// of that front end.
    pub(crate) trusted_proxies: u32,
}

impl Default for FunctionPolicy {
    fn default() -> Self {
        Self {
            name: None,
            naming: NamingEnforcement::Warn,
            environments: ["dev", "test", "staging", "prod"]
                .map(String::from)
                .to_vec(),
            allow_unverified: false,
            trusted_proxies: 0,
        }
    }
}

impl FunctionPolicy {
    /// The proxies to trust on a platform whose front end appends `platform_default` entries to
    /// `X-Forwarded-For` (ALB, Cloud Run and Azure front ends: 1; a bare socket: 0);
    /// `None` = use the platform's own peer (the socket address, `sourceIp`).
    pub(crate) fn resolve_trusted_proxies(
        &self,
        platform_default: usize,
    ) -> Option<crate::request::TrustedProxies> {
        match self.trusted_proxies {
            0 => crate::request::TrustedProxies::new(platform_default),
            n => crate::request::TrustedProxies::new(n as usize),
        }
    }

    /// Checks `name` against `{team}-{service}-{env}-{function}`: at least four `-`-separated
    /// segments of lower-case ASCII letters and digits, the third one an allowed environment.
    pub(crate) fn check_name(&self, name: &str) -> Result<(), String> {
        let segments: Vec<&str> = name.split('-').collect();
        let well_formed = |s: &&str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        if segments.len() < 4 || !segments.iter().all(well_formed) {
            return Err(
                "does not follow `{team}-{service}-{env}-{function}` (lower-case letters and digits)"
                    .into(),
            );
        }
        if !self.environments.iter().any(|e| e == segments[2]) {
            return Err(format!(
                "environment segment `{}` is not one of {:?}",
                segments[2], self.environments
            ));
        }
        Ok(())
    }
}

/// The `[ingress]` section: limits checked before any parsing.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub(crate) struct IngressPolicy {
    /// Largest body accepted, in bytes (413 above).
    pub(crate) max_body_bytes: u64,
    /// Deepest JSON nesting accepted (400 above).
    pub(crate) max_depth: u32,
    /// Accepted media types (`type/subtype`, parameters ignored). Empty = any.
    pub(crate) content_types: Vec<String>,
    /// Accepted methods. Empty = any.
    pub(crate) methods: Vec<String>,
}

impl Default for IngressPolicy {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_depth: 32,
            content_types: vec!["application/json".into()],
            methods: Vec::new(),
        }
    }
}

/// The `[validate]` section.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub(crate) struct ValidatePolicy {
    /// Path of the JSON Schema, relative to the policy file.
    pub(crate) schema: Option<PathBuf>,
    /// Include `[{pointer, keyword}]` in 400 bodies.
    pub(crate) expose_details: bool,
    /// Status for typed (semantic) validation failures: 400 (default) or 422; applied by
    /// `Guard::typed_validation`.
    pub(crate) typed_status: Option<u16>,
    /// The schema document, read from [`schema`](Self::schema) when the policy is loaded from a file.
    #[serde(skip)]
    pub(crate) schema_document: Option<serde_json::Value>,
    /// The document compiled when the policy was checked (the builder's layer uses it as is).
    #[cfg(feature = "validate")]
    #[serde(skip)]
    pub(crate) compiled: Option<crate::validate::CompiledSchema>,
}

/// The `[audit]` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub(crate) struct AuditPolicy {
    /// Events buffered before new ones are dropped (and counted).
    pub(crate) buffer: usize,
    /// Longest user-controlled string written into an event, in bytes.
    pub(crate) max_field_len: usize,
    /// Share of *allowed* decisions recorded, 0.0 to 1.0 (default 1.0, all); denials are always
    /// recorded.
    pub(crate) allow_sample_rate: f64,
    /// How each event is written: `guard` (the event's own fields, default) or `ocsf` (OCSF 1.x
    /// API Activity, guard-core feature `ocsf`).
    pub(crate) format: AuditFormat,
}

/// `[audit] format`: the shape of each security event line.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub(crate) enum AuditFormat {
    /// Guard's own field set (`guard.decision`).
    #[default]
    Guard,
    /// OCSF 1.x API Activity (class 6003) with the Security Control profile.
    Ocsf,
}

impl AuditPolicy {
    /// Adds the problems of `[audit]` to `problems`.
    fn check(&self, problems: &mut Vec<PolicyProblem>) {
        if self.buffer == 0 {
            problems.push(PolicyProblem::new("audit.buffer", "must be at least 1"));
        }
        if self.max_field_len < 16 {
            problems.push(PolicyProblem::new(
                "audit.max_field_len",
                "must be at least 16",
            ));
        }
        if !(0.0..=1.0).contains(&self.allow_sample_rate) {
            problems.push(PolicyProblem::new(
                "audit.allow_sample_rate",
                "must be between 0.0 and 1.0",
            ));
        }
        if self.format == AuditFormat::Ocsf && !cfg!(feature = "ocsf") {
            problems.push(PolicyProblem::new(
                "audit.format",
                "\"ocsf\" needs guard-core's `ocsf` feature",
            ));
        }
    }
}

impl Default for AuditPolicy {
    fn default() -> Self {
        Self {
            buffer: 4096,
            max_field_len: 256,
            allow_sample_rate: 1.0,
            format: AuditFormat::Guard,
        }
    }
}

/// A whole `guard.toml`.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Policy {
    /// `[function]`.
    pub(crate) function: FunctionPolicy,
    /// `[ingress]`.
    pub(crate) ingress: IngressPolicy,
    /// `[verify]`; absent = nothing is verified (every request passes this stage).
    pub(crate) verify: Option<VerifyPolicy>,
    /// `[authz]`; absent = every verified principal reaches the handler.
    pub(crate) authz: Option<AuthzPolicy>,
    /// `[rate_limit]`; absent = no limit.
    pub(crate) rate_limit: Option<RateLimitPolicy>,
    /// `[validate]`; absent = no schema.
    pub(crate) validate: Option<ValidatePolicy>,
    /// `[secrets]`; absent = no secrets layer.
    pub(crate) secrets: Option<SecretsPolicy>,
    /// `[audit]`.
    pub(crate) audit: AuditPolicy,
    warnings: Vec<PolicyProblem>,
}

const SECTIONS: &[&str] = &[
    "function",
    "ingress",
    "verify",
    "authz",
    "rate_limit",
    "validate",
    "secrets",
    "audit",
];

impl Policy {
    /// Parses and checks a policy. Relative paths (the schema) are not resolved: use
    /// [`load`](Self::load) for files.
    ///
    /// ```
    /// let p = guard_core::Policy::from_toml_str("").unwrap();
    /// assert!(p.warnings().is_empty());
    /// ```
    pub fn from_toml_str(text: &str) -> Result<Self, PolicyError> {
        Self::parse(text, SchemaFrom::None)
    }

    /// Reads `path`, parses and checks it, and reads the schema file it names (relative to it).
    ///
    /// ```no_run
    /// let policy = guard_core::Policy::load("examples/orders/guard.toml")?;
    /// # Ok::<(), guard_core::policy::PolicyError>(())
    /// ```
    pub fn load(path: impl AsRef<Path>) -> Result<Self, PolicyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            PolicyError::new(vec![PolicyProblem::new(
                "",
                format!("cannot read {}: {e}", path.display()),
            )])
        })?;
        Self::parse(
            &text,
            SchemaFrom::Dir(path.parent().unwrap_or(Path::new("."))),
        )
    }

    /// Warnings that did not stop loading (e.g. a function name off the convention).
    ///
    /// ```
    /// let p = guard_core::Policy::from_toml_str("[function]\nname = \"Bad_Name\"").unwrap();
    /// assert_eq!(p.warnings()[0].path, "function.name");
    /// ```
    pub fn warnings(&self) -> &[PolicyProblem] {
        &self.warnings
    }

    /// `[function] name`, when the policy gives one.
    ///
    /// ```
    /// let p = guard_core::Policy::from_toml_str("[function]\nname = \"shop-orders-prod-intake\"").unwrap();
    /// assert_eq!(p.function_name(), Some("shop-orders-prod-intake"));
    /// ```
    pub fn function_name(&self) -> Option<&str> {
        self.function.name.as_deref()
    }

    /// The proxies to trust in front of the function (`[function] trusted_proxies`) on a platform
    /// whose front end appends `platform_default` entries to `X-Forwarded-For` (ALB, Cloud Run
    /// and Azure front ends: 1; a bare socket: 0). `trusted_proxies = 0` (the default) keeps the
    /// platform's count; `None` = use the platform's own peer (the socket address, `sourceIp`).
    ///
    /// ```
    /// use guard_core::Policy;
    /// let p = Policy::from_toml_str("[function]\ntrusted_proxies = 2").unwrap();
    /// assert_eq!(p.trusted_proxies(1).unwrap().hops(), 2);
    /// assert_eq!(Policy::default().trusted_proxies(1).unwrap().hops(), 1);
    /// assert!(Policy::default().trusted_proxies(0).is_none());
    /// ```
    pub fn trusted_proxies(
        &self,
        platform_default: usize,
    ) -> Option<crate::request::TrustedProxies> {
        self.function.resolve_trusted_proxies(platform_default)
    }

    /// `[ingress] max_body_bytes`: the largest body the stack accepts (default 1 MiB).
    ///
    /// ```
    /// let p = guard_core::Policy::from_toml_str("[ingress]\nmax_body_bytes = 4096").unwrap();
    /// assert_eq!(p.max_body_bytes(), 4096);
    /// assert_eq!(guard_core::Policy::default().max_body_bytes(), 1024 * 1024);
    /// ```
    pub fn max_body_bytes(&self) -> u64 {
        self.ingress.max_body_bytes
    }

    /// `[secrets] provider`; `None` without a `[secrets]` section. Adapters build the secret
    /// source of their cloud's provider and hand it to the builder.
    ///
    /// ```
    /// use guard_core::{Policy, policy::SecretsProvider};
    /// let p = Policy::from_toml_str("[secrets]\nprovider = \"aws\"").unwrap();
    /// assert_eq!(p.secrets_provider(), Some(SecretsProvider::Aws));
    /// assert_eq!(Policy::default().secrets_provider(), None);
    /// ```
    pub fn secrets_provider(&self) -> Option<SecretsProvider> {
        self.secrets.as_ref().map(|s| s.provider)
    }

    /// `[verify.sns]`: the topic ARNs allowed to publish and the oldest message accepted, for
    /// the adapter that verifies SNS signatures; `None` without the section.
    ///
    /// ```
    /// let p = guard_core::Policy::from_toml_str(r#"
    ///     [verify.sources]
    ///     sns = ["arn:aws:sns:eu-west-1:123456789012:orders"]
    ///     [verify.sns]
    ///     topics = ["arn:aws:sns:eu-west-1:123456789012:orders"]
    /// "#).unwrap();
    /// let (topics, max_age) = p.sns_topics().unwrap();
    /// assert_eq!(topics.len(), 1);
    /// assert_eq!(max_age, std::time::Duration::from_secs(3600));
    /// ```
    pub fn sns_topics(&self) -> Option<(&[String], std::time::Duration)> {
        let sns = self.verify.as_ref()?.sns.as_ref()?;
        Some((
            &sns.topics,
            std::time::Duration::from_secs(sns.max_age_secs),
        ))
    }

    /// Whether `[verify.azure_easy_auth]` is set: the Azure adapter then keeps the Easy Auth
    /// headers for its verifier (and strips them otherwise).
    ///
    /// ```
    /// let p = guard_core::Policy::from_toml_str("[verify.azure_easy_auth]").unwrap();
    /// assert!(p.trusts_azure_easy_auth());
    /// assert!(!guard_core::Policy::default().trusts_azure_easy_auth());
    /// ```
    pub fn trusts_azure_easy_auth(&self) -> bool {
        self.verify
            .as_ref()
            .is_some_and(|v| v.azure_easy_auth.is_some())
    }

    /// Replaces `[verify.gcp_push] jwks_url` (a local JWKS server in tests, an override from the
    /// environment); returns whether the policy has that section (without it nothing changes).
    ///
    /// ```
    /// let mut p = guard_core::Policy::from_toml_str(r#"
    ///     [verify.sources]
    ///     pubsub = ["projects/shop-prod/subscriptions/orders-push"]
    ///     [verify.gcp_push]
    ///     audience = "https://orders.example.com/pubsub"
    ///     service_account = "orders-push@shop-prod.iam.gserviceaccount.com"
    /// "#).unwrap();
    /// assert!(p.set_gcp_push_jwks_url("http://127.0.0.1:9/jwks"));
    /// assert!(!guard_core::Policy::default().set_gcp_push_jwks_url("http://127.0.0.1:9/jwks"));
    /// ```
    pub fn set_gcp_push_jwks_url(&mut self, url: impl Into<String>) -> bool {
        match self.verify.as_mut().and_then(|v| v.gcp_push.as_mut()) {
            Some(push) => {
                push.jwks_url = url.into();
                true
            }
            None => false,
        }
    }

    fn parse(text: &str, schema_from: SchemaFrom<'_>) -> Result<Self, PolicyError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            PolicyError::new(vec![PolicyProblem::new(
                "",
                format!("not valid TOML: {}", e.message()),
            )])
        })?;
        let mut problems = Vec::new();
        let mut policy = Policy::default();
        for (key, value) in table {
            match key.as_str() {
                "function" => section(&key, value, &mut problems, |v| policy.function = v),
                "ingress" => section(&key, value, &mut problems, |v| policy.ingress = v),
                "verify" => section(&key, value, &mut problems, |v| policy.verify = Some(v)),
                "authz" => section(&key, value, &mut problems, |v| policy.authz = Some(v)),
                "rate_limit" => {
                    section(&key, value, &mut problems, |v| policy.rate_limit = Some(v))
                }
                "validate" => section(&key, value, &mut problems, |v| policy.validate = Some(v)),
                "secrets" => section(&key, value, &mut problems, |v| policy.secrets = Some(v)),
                "audit" => section(&key, value, &mut problems, |v| policy.audit = v),
                _ => problems.push(PolicyProblem::new(
                    key.clone(),
                    format!("unknown section, expected one of {SECTIONS:?}"),
                )),
            }
        }
        policy.read_schema(schema_from, &mut problems);
        policy.check(&mut problems);
        if problems.is_empty() {
            for w in &policy.warnings {
                tracing::warn!(target: "guard::policy", path = %w.path, "{}", w.message);
            }
            Ok(policy)
        } else {
            Err(PolicyError::new(problems))
        }
    }

    /// Reads the `[validate]` schema document from where `schema_from` says.
    fn read_schema(&mut self, schema_from: SchemaFrom<'_>, problems: &mut Vec<PolicyProblem>) {
        match (schema_from, self.validate.as_mut()) {
            (SchemaFrom::Dir(base), Some(validate)) => {
                if let Some(schema) = &validate.schema {
                    let file = base.join(schema);
                    match std::fs::read(&file)
                        .map_err(|e| e.to_string())
                        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
                    {
                        Ok(doc) => validate.schema_document = Some(doc),
                        Err(e) => problems.push(PolicyProblem::new(
                            "validate.schema",
                            format!("cannot read schema {}: {e}", file.display()),
                        )),
                    }
                }
            }
            (SchemaFrom::Text(text), Some(validate)) => match serde_json::from_str(text) {
                Ok(doc) => validate.schema_document = Some(doc),
                Err(e) => problems.push(PolicyProblem::new(
                    "validate.schema",
                    format!("the embedded schema is not JSON: {e}"),
                )),
            },
            (SchemaFrom::Text(_), None) => problems.push(PolicyProblem::new(
                "validate",
                "a schema was given but the policy has no [validate] section",
            )),
            (SchemaFrom::Dir(_) | SchemaFrom::None, _) => {}
        }
    }

    /// Runs every semantic check, adding problems (errors) and keeping warnings.
    fn check(&mut self, problems: &mut Vec<PolicyProblem>) {
        self.check_function(problems);
        self.ingress.check(problems);
        self.check_validate(problems);
        self.audit.check(problems);
        if let Some(v) = &self.verify {
            v.check("verify", problems);
        }
        if let Some(a) = &self.authz {
            a.check("authz", problems);
            if self.verify.is_none() {
                problems.push(PolicyProblem::new(
                    "authz",
                    "rules need a verified principal: add a [verify] section",
                ));
            }
        }
        if let Some(r) = &self.rate_limit {
            r.check("rate_limit", problems);
        }
        if let Some(s) = &self.secrets {
            s.check("secrets", problems);
        }
    }

    /// `[function]`: the name against the convention (a warning or a problem, as configured) and
    /// the number of trusted proxies.
    fn check_function(&mut self, problems: &mut Vec<PolicyProblem>) {
        if let Some(name) = &self.function.name {
            match (self.function.check_name(name), self.function.naming) {
                (Ok(()), _) | (Err(_), NamingEnforcement::Off) => {}
                (Err(m), NamingEnforcement::Warn) => {
                    self.warnings.push(PolicyProblem::new("function.name", m))
                }
                (Err(m), NamingEnforcement::Error) => {
                    problems.push(PolicyProblem::new("function.name", m))
                }
            }
        }
        if self.function.trusted_proxies as usize > crate::request::TrustedProxies::MAX_HOPS {
            problems.push(PolicyProblem::new(
                "function.trusted_proxies",
                "must be at most 32",
            ));
        }
    }

    /// `[validate]`: the typed status, and the schema, compiled here once for the builder.
    fn check_validate(&mut self, problems: &mut Vec<PolicyProblem>) {
        if let Some(v) = &self.validate
            && v.typed_status.is_some_and(|s| s != 400 && s != 422)
        {
            problems.push(PolicyProblem::new(
                "validate.typed_status",
                "must be 400 or 422",
            ));
        }
        #[cfg(feature = "validate")]
        if let Some(v) = self.validate.as_mut()
            && let Some(doc) = &v.schema_document
        {
            match crate::validate::CompiledSchema::new(doc) {
                Ok(compiled) => v.compiled = Some(compiled),
                Err(e) => problems.push(PolicyProblem::new("validate.schema", e.to_string())),
            }
        }
    }
}

impl IngressPolicy {
    /// Adds the problems of `[ingress]` to `problems`.
    fn check(&self, problems: &mut Vec<PolicyProblem>) {
        if self.max_body_bytes == 0 {
            problems.push(PolicyProblem::new(
                "ingress.max_body_bytes",
                "must be at least 1",
            ));
        }
        if self.max_depth == 0 {
            problems.push(PolicyProblem::new(
                "ingress.max_depth",
                "must be at least 1",
            ));
        }
        for (i, ct) in self.content_types.iter().enumerate() {
            let ok = ct.split_once('/').is_some_and(|(t, s)| {
                !t.is_empty() && !s.is_empty() && !ct.contains(';') && !ct.contains(' ')
            });
            if !ok {
                problems.push(PolicyProblem::new(
                    format!("ingress.content_types[{i}]"),
                    "must be a bare media type like `application/json`",
                ));
            }
        }
        for (i, m) in self.methods.iter().enumerate() {
            if http::Method::from_bytes(m.as_bytes()).is_err() || m.is_empty() {
                problems.push(PolicyProblem::new(
                    format!("ingress.methods[{i}]"),
                    "not an HTTP method",
                ));
            }
        }
    }
}

/// Where `[validate] schema` is read from.
#[derive(Clone, Copy)]
enum SchemaFrom<'a> {
    /// Not read (`from_toml_str`).
    None,
    /// The file, relative to this directory (`load`).
    Dir(&'a Path),
    /// This text (`from_toml_str_with_schema`).
    Text(&'a str),
}

/// Deserializes one section, recording the error with its full key path instead of stopping.
fn section<T: DeserializeOwned>(
    key: &str,
    value: toml::Value,
    problems: &mut Vec<PolicyProblem>,
    set: impl FnOnce(T),
) {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => set(v),
        Err(e) => {
            let inner = e.path().to_string();
            let path = if inner == "." || inner.is_empty() {
                key.to_string()
            } else {
                format!("{key}.{inner}")
            };
            problems.push(PolicyProblem::new(
                path,
                e.into_inner().message().to_string(),
            ));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The key paths of every problem in `toml` (which must not load).
    pub(crate) fn problem_paths(toml: &str) -> Vec<String> {
        Policy::from_toml_str(toml)
            .unwrap_err()
            .problems()
            .iter()
            .map(|p| p.path.clone())
            .collect()
    }

    #[test]
    fn reports_every_mistake_with_its_key_path() {
        let err = Policy::from_toml_str(
            r#"
            [ingress]
            max_body_bytes = "big"
            [audit]
            bufer = 3
            [function]
            name = "shop-orders-prod-intake"
            naming = "error"
            [ingres]
            "#,
        )
        .unwrap_err();
        let paths: Vec<_> = err.problems().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths.len(), 3, "{err}");
        assert!(paths.contains(&"ingress.max_body_bytes"), "{err}");
        assert!(
            paths.contains(&"audit.bufer") || paths.contains(&"audit"),
            "{err}"
        );
        assert!(paths.contains(&"ingres"), "{err}");
    }

    /// Every key a section accepts is in the reference (`reference.md`, in the module docs).
    #[test]
    fn the_reference_lists_every_key() {
        let reference = include_str!("reference.md");
        let sections = [
            "[function]",
            "[ingress]",
            "[verify]",
            "[verify.cidr]",
            "[verify.hmac]",
            "[verify.jwt]",
            "[verify.gcp_push]",
            "[verify.sns]",
            "[verify.azure_easy_auth]",
            "[verify.aws_authorizer]",
            "[[authz.rules]]",
            "[rate_limit]",
            "[validate]",
            "[secrets]",
            "[audit]",
        ];
        for section in sections {
            let err = Policy::from_toml_str(&format!("{section}\nnot_a_key = 1")).unwrap_err();
            let message = &err.problems()[0].message;
            // serde: "expected `a`", "expected `a` or `b`", "expected one of `a`, `b`, ...".
            let expected = message
                .split_once("expected ")
                .unwrap_or_else(|| panic!("{section}: {message}"))
                .1;
            let expected = expected.trim_start_matches("one of ").replace(" or ", ", ");
            for key in expected.split(", ") {
                let row = format!("| {key} |");
                assert!(
                    reference.contains(&row),
                    "{section} {key} is not in reference.md"
                );
            }
        }
    }

    #[test]
    fn syntax_errors_do_not_panic() {
        let err = Policy::from_toml_str("[ingress\nmax = ").unwrap_err();
        assert_eq!(err.problems().len(), 1);
        assert!(err.to_string().contains("not valid TOML"));
    }

    #[test]
    fn naming_convention_warns_or_errors_as_configured() {
        let warn = Policy::from_toml_str("[function]\nname = \"orders\"").unwrap();
        assert_eq!(warn.warnings().len(), 1);
        let err =
            Policy::from_toml_str("[function]\nname = \"orders\"\nnaming = \"error\"").unwrap_err();
        assert_eq!(err.problems()[0].path, "function.name");
        let off = Policy::from_toml_str("[function]\nname = \"orders\"\nnaming = \"off\"").unwrap();
        assert!(off.warnings().is_empty());
        assert!(
            FunctionPolicy::default()
                .check_name("shop-orders-qa-intake")
                .is_err()
        );
        assert!(
            FunctionPolicy::default()
                .check_name("shop-orders-prod-intake")
                .is_ok()
        );
        assert!(FunctionPolicy::default().check_name("ShopOrders").is_err());
    }

    #[test]
    fn trusted_proxies_are_bounded_and_default_to_the_platform() {
        let err = Policy::from_toml_str("[function]\ntrusted_proxies = 33").unwrap_err();
        assert_eq!(err.problems()[0].path, "function.trusted_proxies");
        let max = Policy::from_toml_str("[function]\ntrusted_proxies = 32").unwrap();
        assert_eq!(max.function.resolve_trusted_proxies(0).unwrap().hops(), 32);
        let none = Policy::default();
        assert_eq!(none.function.trusted_proxies, 0);
        assert!(none.function.resolve_trusted_proxies(0).is_none());
        assert_eq!(none.function.resolve_trusted_proxies(1).unwrap().hops(), 1);
    }
}
