//! Building a Guard stack from a policy on AWS: `[secrets] provider = "aws"` is Secrets Manager.

use guard_core::policy::{PolicyError, SecretsProvider};
use guard_core::{GuardBuilder, GuardDeps, Policy};

/// The stack the policy describes, with the secret store its `[secrets]` section names:
/// `provider = "aws"` builds a [`SecretsManagerSource`](crate::secrets::SecretsManagerSource) from
/// the SDK's standard configuration (region, credentials, `AWS_ENDPOINT_URL`), with the section's
/// cache settings; `env` and `file` are built by guard-core. Every policy problem is reported.
///
/// ```no_run
/// # async fn f() -> Result<(), guard_core::policy::PolicyError> {
/// let policy = guard_core::Policy::load("guard.toml")?;
/// let guard = guard_aws::builder_from_policy(&policy).await?.build();
/// guard.prefetch().await.ok();
/// # Ok(()) }
/// ```
pub async fn builder_from_policy(policy: &Policy) -> Result<GuardBuilder, PolicyError> {
    let deps = match &policy.secrets {
        Some(section) if section.provider == SecretsProvider::Aws => aws_secrets().await?,
        _ => GuardDeps::default(),
    };
    GuardBuilder::from_policy_with(policy, deps)
}

#[cfg(feature = "secrets-manager")]
async fn aws_secrets() -> Result<GuardDeps, PolicyError> {
    Ok(GuardDeps::with_secret_source(
        crate::secrets::SecretsManagerSource::from_env().await,
    ))
}

#[cfg(not(feature = "secrets-manager"))]
async fn aws_secrets() -> Result<GuardDeps, PolicyError> {
    Err(PolicyError::new(vec![
        guard_core::policy::PolicyProblem::new(
            "secrets.provider",
            "`aws` needs guard-aws's `secrets-manager` feature",
        ),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_providers_are_built_by_guard_core() {
        let policy = Policy::from_toml_str(
            "[function]\nallow_unverified = true\n[secrets]\nprovider = \"env\"\nrequired = [\"k\"]",
        )
        .unwrap();
        assert!(builder_from_policy(&policy).await.is_ok());
    }

    #[tokio::test]
    async fn policy_problems_are_still_reported() {
        let policy =
            Policy::from_toml_str("[secrets]\nprovider = \"aws\"\nrequired = [\"k\"]").unwrap();
        // No [verify] and no opt-out: the zero-trust rule refuses the stack.
        let err = builder_from_policy(&policy).await.unwrap_err();
        assert!(err.problems().iter().any(|p| p.path == "verify"), "{err}");
    }
}
