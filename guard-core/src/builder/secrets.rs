//! `[secrets]` → the [`SecretStore`] (for the built-in providers) and the [`SecretsLayer`].

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use crate::policy::{SecretsPolicy, SecretsProvider};
use guard_secrets::{EnvSource, FileSource, SecretSource, SecretStore, SecretStoreBuilder};
use crate::secrets::SecretsLayer;

/// A store builder over `source` with the section's cache settings.
pub(super) fn store_builder(
    section: &SecretsPolicy,
    source: impl SecretSource,
) -> SecretStoreBuilder {
    let mut b = SecretStore::builder(source)
        .ttl(Duration::from_secs(section.ttl_secs))
        .refresh_ahead(Duration::from_secs(section.refresh_ahead_secs))
        .max_staleness(Duration::from_secs(section.max_staleness_secs))
        .retry_after_error(Duration::from_secs(section.retry_after_error_secs))
        .fetch_timeout(Duration::from_millis(section.fetch_timeout_ms))
        .force_refresh_interval(Duration::from_secs(section.force_refresh_interval_secs))
        .previous_grace(Duration::from_secs(section.previous_grace_secs));
    if let Some(n) = NonZeroUsize::new(section.max_entries) {
        b = b.max_entries(n);
    }
    b
}

/// The layer that hands the section's required and optional secrets from `store` to the handler.
pub(super) fn secrets_layer(section: &SecretsPolicy, store: SecretStore) -> SecretsLayer {
    let layer = section
        .required
        .iter()
        .fold(SecretsLayer::new(store), |l, n| l.require(n));
    section.optional.iter().fold(layer, |l, n| l.optional(n))
}

/// The built-in source for `provider = "env"` or `"file"`; `None` for the cloud providers (their
/// adapter crates build those).
pub(super) fn local_source(section: &SecretsPolicy) -> Option<Arc<dyn SecretSource>> {
    match (section.provider, &section.directory) {
        (SecretsProvider::Env, _) => Some(Arc::new(EnvSource::new())),
        (SecretsProvider::File, Some(dir)) => Some(Arc::new(
            FileSource::new(dir).trim_trailing_newline(section.trim_trailing_newline),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Policy;

    fn section(toml: &str) -> SecretsPolicy {
        Policy::from_toml_str(toml).unwrap().secrets.unwrap()
    }

    #[test]
    fn the_store_starts_empty() {
        let p = section("[secrets]\nrequired = [\"k\"]\nttl_secs = 60");
        let store = store_builder(&p, EnvSource::new()).build().unwrap();
        assert!(store.is_empty());
    }

    #[test]
    fn the_layer_is_made_over_the_store() {
        let p = section("[secrets]\nrequired = [\"k\"]");
        let _layer = secrets_layer(&p, SecretStore::new(EnvSource::new()));
    }

    #[test]
    fn cloud_providers_have_no_local_source() {
        assert!(local_source(&section("[secrets]\nprovider = \"aws\"")).is_none());
    }
}
