//! # guard-gcp
//!
//! The Google Cloud adapter for Guard: Cloud Run and Cloud Functions (2nd gen, which is Cloud
//! Run) deliver plain HTTP on `$PORT`, served by guard-core's server. This crate adds what is
//! Google's:
//!
//! - [`decode`]: Pub/Sub push envelopes and CloudEvents (binary and structured mode, Eventarc's
//!   Pub/Sub events) as message requests; the invocation from `K_SERVICE`, `K_REVISION`,
//!   `GOOGLE_CLOUD_PROJECT` and the trace from `traceparent` / `X-Cloud-Trace-Context`;
//! - [`GcpLayer`]: routes `POST /pubsub` and `POST /events` through those decoders and answers
//!   push deliveries with an ack status only when the message was accepted ([`push_answer`]);
//! - the push identity: `[verify.gcp_push]` in the policy (guard-core's
//!   `JwtVerifier::google_push`; `GUARD_GCP_JWKS_URL` replaces its JWKS URL, see [`apply_env`]);
//! - [`secrets::SecretManagerSource`]: Secret Manager with the metadata server's token;
//! - [`serve`]: the whole service in one call.
//!
//! ```no_run
//! use guard_core::{GuardRequest, GuardResponse};
//!
//! async fn orders(_req: GuardRequest) -> Result<GuardResponse, std::convert::Infallible> {
//!     Ok(GuardResponse::new("accepted".into()))
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), guard_gcp::ServeError> {
//!     let policy = r#"
//!         [verify.sources]
//!         pubsub = ["projects/shop-prod/subscriptions/orders-push"]
//!         [verify.gcp_push]
//!         audience = "https://orders.example.com/pubsub"
//!         service_account = "orders-push@shop-prod.iam.gserviceaccount.com"
//!     "#;
//!     guard_gcp::serve(policy, None, tower::service_fn(orders)).await
//! }
//! ```
//!
//! ## Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `secret-manager` | yes | [`secrets::SecretManagerSource`] (`crc` for the payload's CRC32C) |

pub mod decode;
mod policy;
#[cfg(feature = "secret-manager")]
pub mod secrets;
mod serve;
mod service;

pub use policy::{apply_env, builder_from_policy, server_config};
pub use serve::{ServeError, serve};
pub use service::{GcpLayer, GcpService, push_answer};
