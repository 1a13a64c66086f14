//! [`SecretsError`].

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

    /// Whether retrying could succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, SecretsError::Transient { .. })
    }
}
