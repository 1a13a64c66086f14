//! A production custom handler in one call: [`serve`] loads the policy, builds the stack (Key
//! Vault for `[secrets] provider = "azure"`), warms the secret cache, reads the app's
//! `function.json` files and serves both invocation mode and proxy mode on
//! `127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT`.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use guard_core::policy::{PolicyError, PolicyProblem, SecretsProvider};
use guard_core::request::HeaderLimits;
use guard_core::server::Server;
use guard_core::{GuardBuilder, GuardDeps, GuardRequest, GuardResponse, Policy};
use tower_service::Service;

use crate::decode::DecodeOptions;
use crate::eventgrid::EventGrid;
use crate::functions::Functions;
use crate::service::AzureService;

/// The port variable the Functions host sets for its custom handler.
pub const PORT_VAR: &str = "FUNCTIONS_CUSTOMHANDLER_PORT";
/// Event Grid subscriptions whose validation handshake is answered and whose deliveries are
/// taken (comma-separated).
pub const EVENTGRID_SUBSCRIPTIONS_VAR: &str = "GUARD_AZURE_EVENTGRID_SUBSCRIPTIONS";
/// CloudEvents webhook origins whose `OPTIONS` handshake is granted (comma-separated).
pub const WEBHOOK_ORIGINS_VAR: &str = "GUARD_AZURE_WEBHOOK_ORIGINS";

/// How long the shutdown hook may take to write the last security events.
const FLUSH_BUDGET: Duration = Duration::from_secs(2);

/// Why [`serve`] stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The policy (or an environment override) has problems; every one is listed.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// `FUNCTIONS_CUSTOMHANDLER_PORT` is not a port number.
    #[error("{PORT_VAR} is not a port number")]
    Port,
    /// The port could not be listened on, or the server stopped with an error.
    #[error("serving on {PORT_VAR}: {0}")]
    Io(#[from] std::io::Error),
}

/// The stack the policy describes, with the secret store its `[secrets]` section names:
/// `provider = "azure"` is a [`KeyVaultSource`](crate::keyvault::KeyVaultSource) from the
/// environment (`GUARD_AZURE_KEYVAULT_URL`, `IDENTITY_ENDPOINT`, `IDENTITY_HEADER`); `env` and
/// `file` are built by guard-core. Every policy problem is reported.
///
/// ```
/// let policy = guard_core::Policy::from_toml_str("[function]\nallow_unverified = true").unwrap();
/// assert!(guard_azure::builder_from_policy(&policy).is_ok());
/// ```
pub fn builder_from_policy(policy: &Policy) -> Result<GuardBuilder, PolicyError> {
    let deps = match policy.secrets_provider() {
        Some(SecretsProvider::Azure) => key_vault()?,
        _ => GuardDeps::default(),
    };
    GuardBuilder::from_policy_with(policy, deps)
}

#[cfg(feature = "key-vault")]
fn key_vault() -> Result<GuardDeps, PolicyError> {
    crate::keyvault::KeyVaultSource::from_env()
        .map(GuardDeps::with_secret_source)
        .map_err(|e| PolicyError::new(vec![PolicyProblem::new("secrets.provider", e.to_string())]))
}

#[cfg(not(feature = "key-vault"))]
fn key_vault() -> Result<GuardDeps, PolicyError> {
    Err(PolicyError::new(vec![PolicyProblem::new(
        "secrets.provider",
        "`azure` needs guard-azure's `key-vault` feature",
    )]))
}

/// Room made for a trusted Easy Auth principal in the request head (proxy mode) and in the
/// host's envelope (invocation mode), so that an oversized one reaches its verifier and is
/// refused there with 401 `guard.verify.bad_token` instead of a transport-level 431 / 413.
const EASY_AUTH_ROOM: usize = 2 * 1024 * 1024;

/// The core server, with the limits for this policy: the host's envelope carries the body as a JSON string
/// (up to 6 bytes per byte when escaped) next to the headers, so the envelope may be larger than
/// `[ingress] max_body_bytes`, which the stack checks on the decoded body. Request heads may be
/// as large as invocation mode allows headers ([`HeaderLimits::DEFAULT_MAX_BYTES`], 64 KiB), so
/// both modes give the same verdicts.
///
/// With `[verify.azure_easy_auth]` both limits grow by 2 MiB for `X-MS-CLIENT-PRINCIPAL`
/// alone: every other header is still held to [`HeaderLimits`] (431), while a principal up to
/// that size (garbage, or a 1 MB one) is the verifier's 401. A principal far larger is refused
/// by the transport before anything is parsed, with its one security event: 413 in invocation
/// mode (the envelope is over the body limit, a hard bound), 431 in proxy mode (the head does
/// not fit the server's read buffer; hyper checks the buffer between reads, so a head somewhat
/// over the limit may still be read whole — its principal then gets the verifier's 401). The
/// server cannot tell a principal from any other header before it has read the head, which is
/// why the room is there only when the policy trusts Easy Auth.
///
/// ```
/// let policy = guard_core::Policy::from_toml_str("[ingress]\nmax_body_bytes = 1024").unwrap();
/// let (body, _, head) = guard_azure::server_config(&policy).limits();
/// assert_eq!((body, head), (6 * 1024 + 128 * 1024, 64 * 1024));
/// let easy_auth = guard_core::Policy::from_toml_str("[verify.azure_easy_auth]").unwrap();
/// let (_, _, head) = guard_azure::server_config(&easy_auth).limits();
/// assert_eq!(head, 64 * 1024 + 2 * 1024 * 1024);
/// ```
pub fn server_config(policy: &Policy) -> Server {
    let room = if DecodeOptions::from_policy(policy).keep_easy_auth {
        EASY_AUTH_ROOM
    } else {
        0
    };
    let body = policy.max_body_bytes();
    Server::new()
        .max_body_bytes(
            body.saturating_mul(6)
                .saturating_add(128 * 1024)
                .saturating_add(room as u64),
        )
        .max_header_bytes(HeaderLimits::DEFAULT_MAX_BYTES + room)
        .max_headers(HeaderLimits::DEFAULT_MAX_FIELDS)
        .trusted_proxies(policy.trusted_proxies(1))
}

/// Runs `handler` behind the perimeter `policy` describes, as this function app's custom
/// handler.
///
/// - The policy is `policy` (TOML built into the binary, with `schema` as its `[validate]`
///   schema when given), or the file named by `GUARD_POLICY`; then the environment overrides
///   `GUARD_SECRETS_PROVIDER` and `GUARD_RATE_BACKEND`.
/// - Secrets named in `[secrets]` are fetched before the first request when `prefetch = true`;
///   a failure is reported on stderr and requests that need them get 503 until they can be read.
/// - The functions are the working directory's `<name>/function.json` (the host starts the
///   handler in the app's root); `POST /<name>` is an invocation, anything else proxy mode.
/// - Event Grid handshakes are answered, and deliveries split into their events, for the
///   subscriptions in `GUARD_AZURE_EVENTGRID_SUBSCRIPTIONS` and the webhook origins in
///   `GUARD_AZURE_WEBHOOK_ORIGINS` (comma-separated; unset: every handshake and delivery is
///   refused).
/// - Listens on `127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT` (8080 when unset, for local runs);
///   SIGTERM drains in-flight requests and writes the last security events.
///
/// ```no_run
/// use guard_core::{GuardRequest, GuardResponse};
///
/// async fn orders(_req: GuardRequest) -> Result<GuardResponse, std::convert::Infallible> {
///     Ok(GuardResponse::new("accepted".into()))
/// }
///
/// #[tokio::main]
/// async fn main() -> Result<(), guard_azure::ServeError> {
///     guard_azure::serve("[verify.cidr]\nallow = [\"203.0.113.0/24\"]", None, tower::service_fn(orders)).await
/// }
/// ```
pub async fn serve<H>(policy: &str, schema: Option<&str>, handler: H) -> Result<(), ServeError>
where
    H: Service<GuardRequest, Response = GuardResponse> + Clone + Send + 'static,
    H::Future: Send + 'static,
    H::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    let policy = Policy::from_env_or(policy, schema)?;
    let guard = builder_from_policy(&policy)?.build();
    let port = match std::env::var(PORT_VAR) {
        Ok(p) => p.trim().parse::<u16>().map_err(|_| ServeError::Port)?,
        Err(_) => 8080,
    };
    // Listening first: the host gives the handler 60 s to listen, and connections made while
    // the secrets are fetched wait in the backlog.
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    if let Err(errors) = guard.prefetch().await {
        eprintln!(
            "guard: {} secret(s) could not be prefetched; requests that need them get 503 until they can be read",
            errors.len()
        );
    }
    let functions = Functions::load(&std::env::current_dir()?);
    let var = |k: &str| std::env::var(k).ok();
    let event_grid = EventGrid::from_lists(
        var(EVENTGRID_SUBSCRIPTIONS_VAR).as_deref(),
        var(WEBHOOK_ORIGINS_VAR).as_deref(),
    );
    let service = AzureService::new(
        guard.wrap(handler),
        functions,
        DecodeOptions::from_policy(&policy),
    )
    .event_grid(event_grid, guard.audit_layer().clone());
    guard
        .server(server_config(&policy), FLUSH_BUDGET)
        .serve(listener, service)
        .await?;
    Ok(())
}
