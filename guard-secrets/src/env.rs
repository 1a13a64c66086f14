//! [`EnvSource`]: secrets from environment variables (`GUARD_SECRET_<NAME>`).

use crate::{FetchFuture, SecretSource, SecretValue, SecretVersion, SecretsError};

/// Reads the secret `name` from the environment variable `GUARD_SECRET_<NAME>`: the name upper-cased
/// and every character outside `[A-Z0-9]` turned into `_` (`orders-api-key` →
/// `GUARD_SECRET_ORDERS_API_KEY`). The value is taken as raw bytes (no UTF-8 requirement).
///
/// The environment has one version of each secret: [`SecretVersion::Previous`] and
/// [`SecretVersion::Pending`] are always "not found" (the store still remembers the value it saw
/// before a change, see [`SecretStore::versions`](crate::SecretStore::versions)).
///
/// Intended for local runs and tests; in the cloud, prefer the platform's secret service (values in
/// the environment are visible to anything that can read the process' environment).
///
/// ```
/// use guard_secrets::EnvSource;
/// assert_eq!(
///     EnvSource::new().var_name("orders-api-key"),
///     "GUARD_SECRET_ORDERS_API_KEY"
/// );
/// assert_eq!(
///     EnvSource::with_prefix("APP_").var_name("db.pass#x"),
///     "APP_DB_PASS_X"
/// );
/// ```
#[derive(Debug, Clone)]
pub struct EnvSource {
    prefix: String,
}

impl Default for EnvSource {
    fn default() -> Self {
        Self::new()
    }
}

impl EnvSource {
    /// Reads `GUARD_SECRET_<NAME>`.
    pub fn new() -> Self {
        Self::with_prefix("GUARD_SECRET_")
    }

    /// Reads `<prefix><NAME>` instead.
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The variable that holds the secret `name`.
    pub fn var_name(&self, name: &str) -> String {
        let mut var = self.prefix.clone();
        var.extend(name.chars().map(|c| {
            let c = c.to_ascii_uppercase();
            if c.is_ascii_uppercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        }));
        var
    }
}

impl SecretSource for EnvSource {
    fn fetch<'a>(&'a self, name: &'a str, version: SecretVersion) -> FetchFuture<'a> {
        let result = match version {
            SecretVersion::Current => match std::env::var_os(self.var_name(name)) {
                Some(v) => Ok(SecretValue::new(v.into_encoded_bytes())),
                None => Err(SecretsError::not_found(name)),
            },
            _ => Err(SecretsError::not_found(name)),
        };
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetch(src: &EnvSource, name: &str, v: SecretVersion) -> Result<SecretValue, SecretsError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(src.fetch(name, v))
    }

    #[test]
    fn maps_names_to_variables() {
        let src = EnvSource::new();
        assert_eq!(
            src.var_name("orders-api-key"),
            "GUARD_SECRET_ORDERS_API_KEY"
        );
        assert_eq!(src.var_name("a.b/c9é"), "GUARD_SECRET_A_B_C9_");
    }

    #[test]
    fn reads_the_variable_and_reports_missing_ones() {
        // PATH is set in every test environment; the empty prefix maps `path` to it.
        let src = EnvSource::with_prefix("");
        let expected = std::env::var_os("PATH").unwrap().into_encoded_bytes();
        let v = fetch(&src, "path", SecretVersion::Current).unwrap();
        assert!(v.expose_bytes() == expected.as_slice());
        assert_eq!(
            fetch(&src, "path", SecretVersion::Previous).unwrap_err(),
            SecretsError::not_found("path")
        );
        let missing = EnvSource::with_prefix("GUARD_TEST_SURELY_UNSET_");
        assert_eq!(
            fetch(&missing, "x", SecretVersion::Current).unwrap_err(),
            SecretsError::not_found("x")
        );
    }
}
