//! Where the function's secrets come from: `GUARD_SECRETS_PROVIDER=env` → environment variables
//! (`GUARD_SECRET_<NAME>`), otherwise AWS Secrets Manager.

use guard_core::secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};

/// `orders-api-key` → `GUARD_SECRET_ORDERS_API_KEY`: upper case, anything outside `[A-Z0-9]`
/// becomes `_`.
pub(crate) fn env_name(name: &str) -> String {
    let mut out = String::from("GUARD_SECRET_");
    out.extend(name.chars().map(|c| {
        let c = c.to_ascii_uppercase();
        if c.is_ascii_uppercase() || c.is_ascii_digit() {
            c
        } else {
            '_'
        }
    }));
    out
}

/// The environment source (only the current version exists there).
fn env_source(name: &str, version: SecretVersion) -> Result<SecretValue, SecretsError> {
    if version != SecretVersion::Current {
        return Err(SecretsError::not_found(name));
    }
    match std::env::var(env_name(name)) {
        Ok(v) if !v.is_empty() => Ok(SecretValue::from(v.as_str())),
        _ => Err(SecretsError::not_found(name)),
    }
}

/// The store the provider setting asks for.
pub(crate) async fn store_from_env() -> Result<SecretStore, String> {
    match std::env::var("GUARD_SECRETS_PROVIDER").as_deref() {
        Ok("env") => Ok(SecretStore::new(env_source)),
        Ok(other) if other != "aws" => Err(format!(
            "GUARD_SECRETS_PROVIDER={other}: expected `env` or `aws`"
        )),
        _ => Err(
            "the Secrets Manager source is not in this build yet (set GUARD_SECRETS_PROVIDER=env)"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_follow_the_documented_rule() {
        assert_eq!(env_name("orders-api-key"), "GUARD_SECRET_ORDERS_API_KEY");
        assert_eq!(env_name("a.b/c9"), "GUARD_SECRET_A_B_C9");
    }
}
