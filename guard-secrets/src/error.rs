//! [`SecretsError`] and [`SettingsError`].

/// Why a secret could not be had. Never contains a secret value.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretsError {
    /// The secret (or version) does not exist. Permanent.
    #[error("secret `{name}` not found")]
    NotFound {
        /// The secret's name.
        name: String,
    },
    /// The caller may not read it. Permanent.
    #[error("access to secret `{name}` denied")]
    AccessDenied {
        /// The secret's name.
        name: String,
    },
    /// Throttling, timeouts, network: retrying may help.
    #[error("secret `{name}` temporarily unavailable: {reason}")]
    Transient {
        /// The secret's name.
        name: String,
        /// What went wrong (no values).
        reason: String,
    },
    /// Anything else the provider reported. Permanent.
    #[error("secret `{name}` could not be read: {reason}")]
    Permanent {
        /// The secret's name.
        name: String,
        /// What went wrong (no values).
        reason: String,
    },
}

impl SecretsError {
    /// A not-found error.
    pub fn not_found(name: &str) -> Self {
        SecretsError::NotFound { name: name.into() }
    }

    /// A transient error.
    pub fn transient(name: &str, reason: impl Into<String>) -> Self {
        SecretsError::Transient {
            name: name.into(),
            reason: reason.into(),
        }
    }

    /// A permanent error with its reason (never a value).
    pub fn permanent(name: &str, reason: impl Into<String>) -> Self {
        SecretsError::Permanent {
            name: name.into(),
            reason: reason.into(),
        }
    }

    /// A secret service's HTTP exchange failed: transient when the outbound client says retrying
    /// may help (timeouts, connection errors), permanent otherwise (a refused URL, an answer over
    /// the size cap).
    ///
    /// ```
    /// use guard_http::HttpError;
    /// use guard_secrets::SecretsError;
    /// assert!(SecretsError::from_http("k", &HttpError::Timeout(std::time::Duration::from_secs(1))).is_transient());
    /// ```
    #[cfg(feature = "http")]
    pub fn from_http(name: &str, error: &guard_http::HttpError) -> Self {
        if error.is_transient() {
            Self::transient(name, error.to_string())
        } else {
            Self::permanent(name, error.to_string())
        }
    }

    /// Whether retrying could succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, SecretsError::Transient { .. })
    }
}

/// Secret store settings that do not hold up: every problem found, in the order checked
/// ([`SecretStoreBuilder::build`](crate::SecretStoreBuilder::build)). guard-core reports it as
/// `ConfigError::SecretStore(problems)`, with the same message.
///
/// ```
/// let e = guard_secrets::SettingsError::new(vec!["ttl must be greater than zero".into()]);
/// assert_eq!(e.to_string(), "invalid secret store settings: ttl must be greater than zero");
/// assert_eq!(e.problems().len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid secret store settings: {}", .problems.join("; "))]
pub struct SettingsError {
    problems: Vec<String>,
}

impl SettingsError {
    /// The error for these problems.
    pub fn new(problems: Vec<String>) -> Self {
        Self { problems }
    }

    /// What is wrong, one problem per entry.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// The problems, owned.
    pub fn into_problems(self) -> Vec<String> {
        self.problems
    }
}
