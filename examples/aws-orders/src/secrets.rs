//! Where the function's secrets come from: `GUARD_SECRETS_PROVIDER=env` → environment variables
//! (`GUARD_SECRET_<NAME>`, guard-core's `EnvSource`), otherwise AWS Secrets Manager through the
//! SDK's standard configuration (region, credentials, and `AWS_ENDPOINT_URL` for tests).

use guard_aws::secrets::SecretsManagerSource;
use guard_core::policy::SecretsPolicy;
use guard_core::secrets::{EnvSource, SecretStore};

/// The store the provider setting asks for, with the cache settings of the policy's `[secrets]`.
pub(crate) async fn store_from_env(section: Option<&SecretsPolicy>) -> Result<SecretStore, String> {
    let section = section.cloned().unwrap_or_default();
    let builder = match std::env::var("GUARD_SECRETS_PROVIDER").as_deref() {
        Ok("env") => section.store_builder(EnvSource::new()),
        Ok("aws") | Err(_) => section.store_builder(SecretsManagerSource::from_env().await),
        Ok(other) => {
            return Err(format!(
                "GUARD_SECRETS_PROVIDER={other}: expected `env` or `aws`"
            ));
        }
    };
    builder.build().map_err(|e| e.to_string())
}
