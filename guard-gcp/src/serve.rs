//! A production Cloud Run service in one call: [`serve`].

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use guard_core::policy::PolicyError;
use guard_core::{GuardRequest, GuardResponse, Policy};
use tower::Layer;
use tower_service::Service;

use crate::GcpLayer;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The longest the shutdown hook waits for the security events to be written.
const FLUSH_BUDGET: Duration = Duration::from_secs(1);

/// Why [`serve`] stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The policy (or an environment override) has problems; every one is listed.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// `PORT` is not a port number.
    #[error("PORT is not a port number")]
    Port,
    /// The port could not be bound, or the server failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Runs `handler` behind the perimeter `policy` describes, as this Cloud Run service.
///
/// - The policy is `policy` (TOML built into the binary, with `schema` as its `[validate]`
///   schema when given), or the file named by `GUARD_POLICY`; then the environment overrides
///   `GUARD_SECRETS_PROVIDER`, `GUARD_RATE_BACKEND` and `GUARD_GCP_JWKS_URL`.
/// - `[secrets] provider = "gcp"` reads Secret Manager (see [`crate::secrets`]); secrets are
///   fetched before the first request when `prefetch = true` (a failure is reported on stderr
///   and requests that need the secret get 503 while it stays unavailable).
/// - Listens on `0.0.0.0:$PORT` (default 8080): `POST /pubsub` is Pub/Sub push, `POST /events`
///   CloudEvents, everything else plain HTTP (see [`GcpLayer`]).
/// - On SIGTERM in-flight requests finish, then the security events are flushed and `serve`
///   returns `Ok`.
///
/// ```no_run
/// use guard_core::{GuardRequest, GuardResponse};
///
/// async fn orders(_req: GuardRequest) -> Result<GuardResponse, std::convert::Infallible> {
///     Ok(GuardResponse::new("accepted".into()))
/// }
///
/// #[tokio::main]
/// async fn main() -> Result<(), guard_gcp::ServeError> {
///     guard_gcp::serve("[verify.cidr]\nallow = [\"203.0.113.0/24\"]", None, tower::service_fn(orders)).await
/// }
/// ```
pub async fn serve<H>(policy: &str, schema: Option<&str>, handler: H) -> Result<(), ServeError>
where
    H: Service<GuardRequest, Response = GuardResponse> + Clone + Send + 'static,
    H::Future: Send + 'static,
    H::Error: Into<BoxError> + Send + 'static,
{
    let mut policy = Policy::from_env_or(policy, schema)?;
    crate::apply_env(&mut policy);
    let guard = crate::builder_from_policy(&policy)?.build();
    let port = match std::env::var("PORT") {
        Ok(p) => p.trim().parse::<u16>().map_err(|_| ServeError::Port)?,
        Err(_) => 8080,
    };
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))).await?;
    if let Err(errors) = guard.prefetch().await {
        eprintln!(
            "guard: {} secret(s) could not be prefetched; requests that need them get 503 until they can be read",
            errors.len()
        );
    }
    let stack = GcpLayer::from_policy(&policy).layer(guard.layer(handler));
    guard
        .server(crate::server_config(&policy), FLUSH_BUDGET)
        .serve(listener, stack)
        .await?;
    Ok(())
}
