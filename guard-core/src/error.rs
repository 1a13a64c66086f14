//! [`ConfigError`]: why a layer, a verifier or the secret store could not be built; [`Unavailable`]:
//! why a pluggable dependency could not answer at request time.

/// A configuration that cannot work: a verifier's, authorization rules, a JSON Schema or the
/// secret store's settings. Never contains a secret or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// An event-source pattern that is empty, too long or uses `*` inside a segment.
    #[error("invalid source pattern `{pattern}`: {reason}")]
    InvalidSourcePattern {
        /// The pattern (first 64 characters).
        pattern: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A trigger kind for source entries that is not 1 to 64 of `a-z`, `0-9`, `_`, `-`.
    #[error(
        "invalid trigger kind `{0}` for source entries: use the lower-case kind (`sqs`, `pubsub`, `azure-queue`, ...)"
    )]
    InvalidSourceKind(String),
    /// The HMAC secret name is empty.
    #[error("the HMAC secret name is empty")]
    EmptySecretName,
    /// The HMAC key is empty.
    #[error("the HMAC key is empty")]
    EmptyKey,
    /// A tolerance / leeway / duration outside its allowed range.
    #[error("{what} must be between {min} and {max} seconds")]
    OutOfRange {
        /// Which setting.
        what: &'static str,
        /// Smallest allowed value, in seconds.
        min: u64,
        /// Largest allowed value, in seconds.
        max: u64,
    },
    /// A JWT algorithm that is unknown or not allowed (`none`, HMAC algorithms).
    #[error("algorithm `{0}` is not allowed (use RS*, PS*, ES256, ES384 or EdDSA)")]
    Algorithm(String),
    /// A JWT verifier without any algorithm.
    #[error("at least one algorithm is required")]
    NoAlgorithm,
    /// A claim predicate that cannot be evaluated.
    #[error("claim rule for `{0}` is invalid")]
    ClaimRule(String),
    /// A header name that is not a valid HTTP header name.
    #[error("`{0}` is not a valid header name")]
    HeaderName(String),
    /// A URL that cannot be used (not http/https, or not parseable).
    #[error("`{0}` is not a usable http(s) URL")]
    Url(String),
    /// The HTTP client for JWKS could not be built.
    #[error("cannot build the JWKS HTTP client: {0}")]
    HttpClient(String),
    /// Authorization rules that cannot work (a malformed rule, a duplicate name, no rule at
    /// all); the message names the rule and what is wrong.
    #[error("authorization rules: {0}")]
    Authz(String),
    /// A JSON Schema that does not compile; the message names the problem, never request data.
    #[error("schema does not compile: {0}")]
    Schema(String),
    /// Secret store settings that do not hold up: every problem found.
    #[error("invalid secret store settings: {}", .0.join("; "))]
    SecretStore(Vec<String>),
}

/// `guard_secrets::SecretStoreBuilder::build`'s error: [`ConfigError::SecretStore`] with the same
/// problems (and the same message).
///
/// ```
/// let e = guard_secrets::SettingsError::new(vec!["ttl must be greater than zero".into()]);
/// let c = guard_core::ConfigError::from(e.clone());
/// assert_eq!(c, guard_core::ConfigError::SecretStore(e.problems().to_vec()));
/// assert_eq!(c.to_string(), e.to_string());
/// ```
impl From<guard_secrets::SettingsError> for ConfigError {
    fn from(e: guard_secrets::SettingsError) -> Self {
        ConfigError::SecretStore(e.into_problems())
    }
}

/// A pluggable dependency could not answer: a [`ReplayStore`](crate::replay::ReplayStore) whose
/// backend is down, a [`JwksFetcher`](crate::verify::JwksFetcher) whose endpoint failed. The guard
/// fails closed on it (503 `guard.verify.unavailable`). Carries no request value and no key
/// material.
///
/// ```
/// let e = guard_core::Unavailable::new("status 502");
/// assert_eq!(e.to_string(), "dependency unavailable: status 502");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dependency unavailable: {reason}")]
pub struct Unavailable {
    /// What went wrong.
    pub reason: String,
}

impl Unavailable {
    /// An error with `reason`.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}
