//! [`SecretStore`]: the cache in front of a [`SecretSource`].
//!
//! PLACEHOLDER API (the secrets issue replaces the internals with the rotation-safe cache).

use std::sync::Arc;

use super::{SecretSource, SecretValue, SecretVersion, SecretsError};

/// The current and (when known) previous version of a secret.
#[derive(Debug, Clone)]
pub struct SecretVersions {
    /// The version in use.
    pub current: Arc<SecretValue>,
    /// The version before it, accepted during rotation.
    pub previous: Option<Arc<SecretValue>>,
}

/// The secret cache shared by the whole stack. Cheap to clone.
#[derive(Clone)]
pub struct SecretStore {
    source: Arc<dyn SecretSource>,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore").finish_non_exhaustive()
    }
}

impl SecretStore {
    /// A store over `source` with default settings.
    pub fn new(source: impl SecretSource) -> Self {
        Self {
            source: Arc::new(source),
        }
    }

    /// The current value of `name`.
    pub async fn get(&self, name: &str) -> Result<Arc<SecretValue>, SecretsError> {
        Ok(Arc::new(
            self.source.fetch(name, SecretVersion::Current).await?,
        ))
    }

    /// The current and previous values of `name`.
    pub async fn versions(&self, name: &str) -> Result<SecretVersions, SecretsError> {
        let current = self.get(name).await?;
        let previous = self
            .source
            .fetch(name, SecretVersion::Previous)
            .await
            .ok()
            .map(Arc::new);
        Ok(SecretVersions { current, previous })
    }

    /// Re-fetches `name` now (rate-limited). Returns whether a fetch happened.
    pub async fn force_refresh(&self, name: &str) -> Result<bool, SecretsError> {
        self.get(name).await.map(|_| true)
    }
}
