//! Building a Guard stack from a policy on AWS: `[secrets] provider = "aws"` is Secrets Manager,
//! `[verify.sns]` adds the SNS signature verifier for messages of kind `sns`, and
//! `[function] trusted_proxies` sets the proxies trusted in front of an ALB.

use guard_core::policy::{PolicyError, PolicyProblem, SecretsProvider};
use guard_core::{GuardBuilder, GuardDeps, Policy};

use crate::decode::DecodeOptions;

/// The ALB's own `X-Forwarded-For` entry: one trusted hop.
const ALB_DEFAULT_HOPS: usize = 1;

impl DecodeOptions {
    /// Decoding as the policy says: ALB events take their peer through `[function]
    /// trusted_proxies` hops (`0`/absent = 1, the ALB itself; 2 with CloudFront in front of the
    /// ALB). API Gateway and Function URL events always use the platform's `sourceIp`.
    ///
    /// ```
    /// let policy = guard_core::Policy::from_toml_str("[function]\ntrusted_proxies = 2").unwrap();
    /// let options = guard_aws::decode::DecodeOptions::from_policy(&policy);
    /// assert_eq!(options.alb_proxies.hops(), 2);
    /// let layer = guard_aws::GuardLayer::new().decode_options(options);
    /// # let _ = layer;
    /// ```
    pub fn from_policy(policy: &Policy) -> Self {
        match policy.trusted_proxies(ALB_DEFAULT_HOPS) {
            Some(p) => Self::default().with_alb_proxies(p),
            None => Self::default(),
        }
    }
}

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
    let mut deps = match policy.secrets_provider() {
        Some(SecretsProvider::Aws) => aws_secrets().await?,
        _ => GuardDeps::default(),
    };
    if let Some((topics, max_age)) = policy.sns_topics() {
        deps = deps.message_verifier("sns", sns_verifier(topics, max_age)?);
    }
    GuardBuilder::from_policy_with(policy, deps)
}

/// `[verify.sns]`: the SNS signature verifier with the platform's HTTPS certificate fetcher.
#[cfg(feature = "https-fetch")]
fn sns_verifier(
    topics: &[String],
    max_age: std::time::Duration,
) -> Result<crate::sns::SnsVerifier, PolicyError> {
    let problem = |e: String| PolicyError::new(vec![PolicyProblem::new("verify.sns", e)]);
    let fetcher = crate::sns::HttpsCertFetcher::new().map_err(|e| problem(e.to_string()))?;
    topics
        .iter()
        .fold(crate::sns::SnsVerifier::builder(), |b, t| b.allow_topic(t))
        .max_age(max_age)
        .build(fetcher)
        .map_err(|e| problem(e.to_string()))
}

#[cfg(not(feature = "https-fetch"))]
fn sns_verifier(
    _: &[String],
    _: std::time::Duration,
) -> Result<crate::sns::SnsVerifier, PolicyError> {
    Err(PolicyError::new(vec![PolicyProblem::new(
        "verify.sns",
        "fetching SNS signing certificates needs guard-aws's `https-fetch` feature",
    )]))
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

    #[test]
    fn alb_hops_follow_the_policy_and_default_to_the_alb_itself() {
        let default = DecodeOptions::from_policy(&Policy::default());
        assert_eq!(default.alb_proxies.hops(), 1);
        let two = Policy::from_toml_str("[function]\ntrusted_proxies = 2").unwrap();
        assert_eq!(DecodeOptions::from_policy(&two).alb_proxies.hops(), 2);
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
