//! [`SecretSource`]: where secrets come from.

use crate::{FetchFuture, SecretValue, SecretsError};

/// Which version of a secret to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SecretVersion {
    /// The version in use now (`AWSCURRENT`, latest).
    Current,
    /// The version before it, kept during rotation (`AWSPREVIOUS`).
    Previous,
    /// A version being rotated in (`AWSPENDING`).
    Pending,
}

/// A provider of secret values (environment, files, AWS Secrets Manager, Key Vault, Secret Manager).
///
/// Closures `Fn(&str, SecretVersion) -> Result<SecretValue, SecretsError>` are sources too.
///
/// `fetch` returns `futures_util::future::BoxFuture<'a, Result<SecretValue, SecretsError>>`
/// (guard-core's `Verifier` and `ReplayStore` return the same type): `Box::pin(async move { ... })`.
///
/// ```
/// use guard_secrets::{SecretSource, SecretValue, SecretVersion, SecretsError};
///
/// let src = |name: &str, _v: SecretVersion| -> Result<SecretValue, SecretsError> {
///     if name == "k" { Ok(SecretValue::from("v")) } else { Err(SecretsError::not_found(name)) }
/// };
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// assert!(rt.block_on(src.fetch("k", SecretVersion::Current)).is_ok());
/// ```
pub trait SecretSource: Send + Sync + 'static {
    /// Fetches one version of the secret `name`.
    fn fetch<'a>(&'a self, name: &'a str, version: SecretVersion) -> FetchFuture<'a>;
}

impl<F> SecretSource for F
where
    F: Fn(&str, SecretVersion) -> Result<SecretValue, SecretsError> + Send + Sync + 'static,
{
    fn fetch<'a>(&'a self, name: &'a str, version: SecretVersion) -> FetchFuture<'a> {
        let r = self(name, version);
        Box::pin(async move { r })
    }
}

impl SecretSource for Box<dyn SecretSource> {
    fn fetch<'a>(&'a self, name: &'a str, version: SecretVersion) -> FetchFuture<'a> {
        (**self).fetch(name, version)
    }
}

impl SecretSource for std::sync::Arc<dyn SecretSource> {
    fn fetch<'a>(&'a self, name: &'a str, version: SecretVersion) -> FetchFuture<'a> {
        (**self).fetch(name, version)
    }
}
