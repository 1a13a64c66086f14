//! A production Lambda in one call: [`serve`] loads the policy, builds the stack with Secrets
//! Manager, warms the secret cache, and runs on `lambda_runtime`, writing each invocation's
//! security events before its answer leaves (Lambda freezes the process once it has answered).

use std::time::Duration;

use guard_core::policy::PolicyError;
use guard_core::{GuardRequest, GuardResponse, Policy};
use tower::{Layer, ServiceExt};
use tower_service::Service;

use crate::event::RawEvent;
use crate::run::{BoxError, GuardLayer, RunError, run_raw};

/// The longest an invocation waits for its security events to be written.
const FLUSH_BUDGET: Duration = Duration::from_millis(200);

/// Why [`serve`] stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The policy (or an environment override) has problems; every one is listed.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The Lambda runtime could not start or stopped.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// Runs `handler` behind the perimeter `policy` describes, as this Lambda function.
///
/// - The policy is `policy` (TOML built into the binary, with `schema` as its `[validate]`
///   schema when given), or the file named by `GUARD_POLICY`; then the environment overrides
///   `GUARD_SECRETS_PROVIDER` and `GUARD_RATE_BACKEND` (see `guard_core::policy::env`).
/// - `[secrets] provider = "aws"` reads AWS Secrets Manager with the SDK's standard
///   configuration (region, credentials, `AWS_ENDPOINT_URL`); `env` and `file` are local.
/// - Secrets named in `[secrets]` are fetched before the first invocation when
///   `prefetch = true`; a failure is reported on stderr and the stack fails closed (503) per
///   request while the secret stays unavailable.
/// - `[function] trusted_proxies` sets the hops trusted in front of an ALB.
/// - Each invocation's security events are written (up to 200 ms) before it answers.
///
/// ```no_run
/// use guard_core::{GuardRequest, GuardResponse};
///
/// async fn orders(_req: GuardRequest) -> Result<GuardResponse, std::convert::Infallible> {
///     Ok(GuardResponse::new("accepted".into()))
/// }
///
/// #[tokio::main]
/// async fn main() -> Result<(), guard_aws::ServeError> {
///     guard_aws::serve("[verify.cidr]\nallow = [\"203.0.113.0/24\"]", None, tower::service_fn(orders)).await
/// }
/// ```
pub async fn serve<H>(policy: &str, schema: Option<&str>, handler: H) -> Result<(), ServeError>
where
    H: Service<GuardRequest, Response = GuardResponse> + Clone + Send + 'static,
    H::Future: Send + 'static,
    H::Error: Into<BoxError> + Send + 'static,
{
    let policy = Policy::from_env_or(policy, schema)?;
    let guard = crate::builder_from_policy(&policy).await?.build();
    if let Err(errors) = guard.prefetch().await {
        eprintln!(
            "guard: {} secret(s) could not be prefetched; requests that need them get 503 until they can be read",
            errors.len()
        );
    }
    let flush = guard.clone();
    let lambda = GuardLayer::new()
        .decode_options(crate::decode::DecodeOptions::from_policy(&policy))
        .layer(guard.layer(handler));
    // The runtime hands over the payload text (`RawEvent`): HTTP API events are decoded from it
    // in one typed pass.
    let lambda = ServiceExt::<lambda_runtime::LambdaEvent<RawEvent>>::then(lambda, move |result| {
        // On this thread, not through `spawn_blocking`: the flush formats the invocation's
        // lines and writes them to stdout (microseconds), and Lambda runs one invocation at
        // a time, so nothing else waits for this worker; a hand-off to a blocking thread
        // would cost more than the write.
        flush.flush_audit(FLUSH_BUDGET);
        std::future::ready(result)
    });
    run_raw(lambda).await?;
    Ok(())
}
