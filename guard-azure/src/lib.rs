//! # guard-azure
//!
//! The Azure Functions adapter for Guard. Rust runs on Azure Functions as a *custom handler*: an
//! HTTP server the Functions host talks to on `127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT`. This
//! crate serves that port with guard-core's [`Server`](guard_core::server::Server) (body and
//! header limits, timeouts, graceful SIGTERM) and puts a Guard stack in front of the handler:
//!
//! | host request | decoded by | answered as |
//! |---|---|---|
//! | invocation mode: `POST /{function}` with `{"Data": {...}, "Metadata": {...}}` | [`decode`]: HTTP binding → the client's request; queue / Service Bus / Event Hub / Event Grid binding → one `Trigger::Message` | [`encode`]: `{"Outputs": {"res": {statusCode, headers, body}}, "Logs": [], "ReturnValue": null}`; a refused message is a non-2xx reply (the host retries it, then poisons it) |
//! | proxy mode (`enableProxyingHttpRequest`): the client's request on its path (`/api/orders`) | as it came; peer from `X-Forwarded-For` through the trusted proxies (the Azure front end: 1) | plainly |
//! | an Event Grid delivery to an HTTP function (`aeg-event-type: Notification`), either mode | [`eventgrid::split_delivery`]: one `Trigger::Message` (kind `eventgrid`) per event | [`eventgrid::delivery_answer`]: 200 only when every event was accepted |
//!
//! Message sources come from the deployed `<function>/function.json` (`queueName`, ...), never
//! from the payload: `[verify.sources] azure-queue = ["orders"]` admits only the `orders` queue.
//! Easy Auth (`X-MS-CLIENT-PRINCIPAL`) is verified by guard-core's
//! [`EasyAuthVerifier`](guard_core::verify::EasyAuthVerifier) when the policy has
//! `[verify.azure_easy_auth]` — a malformed or oversized principal is its 401, in both modes (see
//! [`server_config`] for the room made for it); otherwise the `X-MS-CLIENT-PRINCIPAL*` and
//! `X-MS-TOKEN-*` headers are removed before the stack runs. Secrets come from Key Vault with the managed identity
//! ([`keyvault::KeyVaultSource`], `[secrets] provider = "azure"`).
//!
//! ```no_run
//! use guard_core::{GuardRequest, GuardResponse};
//!
//! async fn orders(_req: GuardRequest) -> Result<GuardResponse, std::convert::Infallible> {
//!     Ok(GuardResponse::new("accepted".into()))
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), guard_azure::ServeError> {
//!     let policy = "[verify.cidr]\nallow = [\"203.0.113.0/24\"]";
//!     guard_azure::serve(policy, None, tower::service_fn(orders)).await
//! }
//! ```
//!
//! ## Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `key-vault` | yes | [`keyvault::KeyVaultSource`] over Guard's outbound client ([`guard_http`]) |

pub mod decode;
pub mod encode;
pub mod eventgrid;
pub mod functions;
#[cfg(feature = "key-vault")]
pub mod keyvault;
mod serve;
mod service;

pub use serve::{
    EVENTGRID_SUBSCRIPTIONS_VAR, PORT_VAR, ServeError, WEBHOOK_ORIGINS_VAR, builder_from_policy,
    serve, server_config,
};
pub use service::AzureService;
