//! Building a Guard stack from a policy on Google Cloud: `[secrets] provider = "gcp"` is Secret
//! Manager, `[verify.gcp_push]` is the push identity (its JWKS URL replaced by
//! `GUARD_GCP_JWKS_URL` when set), `[function] trusted_proxies` the hops in front (default 1:
//! Google's front end).

use guard_core::policy::{PolicyError, PolicyProblem, SecretsProvider};
use guard_core::server::Server;
use guard_core::{GuardBuilder, GuardDeps, Policy};

/// Google's front end appends the caller's address to `X-Forwarded-For`: one trusted hop.
const FRONT_END_HOPS: usize = 1;
/// Room for a push envelope around data of the policy's size (base64 is 4/3 of it, plus JSON).
const ENVELOPE_OVERHEAD: u64 = 64 * 1024;

/// Applies Google Cloud's environment overrides to `policy`: `GUARD_GCP_JWKS_URL` replaces
/// `[verify.gcp_push] jwks_url` (a local JWKS server in tests).
///
/// ```
/// let mut policy = guard_core::Policy::default();
/// guard_gcp::apply_env(&mut policy); // no [verify.gcp_push]: nothing to change
/// ```
pub fn apply_env(policy: &mut Policy) {
    if let Ok(url) = std::env::var("GUARD_GCP_JWKS_URL")
        && !url.trim().is_empty()
    {
        policy.set_gcp_push_jwks_url(url);
    }
}

/// The core server, configured for this policy on Cloud Run: bodies up to a push envelope around
/// `[ingress] max_body_bytes` of data (the ingress layer still bounds the decoded body), the peer
/// through `[function] trusted_proxies` (default 1, Google's front end).
///
/// ```
/// let policy = guard_core::Policy::from_toml_str("[ingress]\nmax_body_bytes = 65536").unwrap();
/// let server = guard_gcp::server_config(&policy);
/// assert!(server.limits().0 > 65536);
/// ```
pub fn server_config(policy: &Policy) -> Server {
    let data = policy.max_body_bytes();
    Server::new()
        .max_body_bytes(data.saturating_mul(4) / 3 + ENVELOPE_OVERHEAD)
        .trusted_proxies(policy.trusted_proxies(FRONT_END_HOPS))
}

/// The stack the policy describes, with Secret Manager when `[secrets] provider = "gcp"`
/// (`env` and `file` are built by guard-core). Every policy problem is reported.
///
/// ```no_run
/// # fn f() -> Result<(), guard_core::policy::PolicyError> {
/// let policy = guard_core::Policy::load("guard.toml")?;
/// let guard = guard_gcp::builder_from_policy(&policy)?.build();
/// # let _ = guard; Ok(()) }
/// ```
pub fn builder_from_policy(policy: &Policy) -> Result<GuardBuilder, PolicyError> {
    let deps = match policy.secrets_provider() {
        Some(SecretsProvider::Gcp) => gcp_secrets()?,
        _ => GuardDeps::default(),
    };
    GuardBuilder::from_policy_with(policy, deps)
}

#[cfg(feature = "secret-manager")]
fn gcp_secrets() -> Result<GuardDeps, PolicyError> {
    let source = crate::secrets::SecretManagerSource::from_env().map_err(|e| {
        PolicyError::new(vec![PolicyProblem::new("secrets.provider", e.to_string())])
    })?;
    Ok(GuardDeps::with_secret_source(source))
}

#[cfg(not(feature = "secret-manager"))]
fn gcp_secrets() -> Result<GuardDeps, PolicyError> {
    Err(PolicyError::new(vec![PolicyProblem::new(
        "secrets.provider",
        "`gcp` needs guard-gcp's `secret-manager` feature",
    )]))
}
