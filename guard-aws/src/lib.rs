//! # guard-aws
//!
//! The AWS Lambda adapter for Guard. It decodes every common Lambda event into Guard's neutral
//! `http::Request<Bytes>` ([`decode`]), runs each request through a Guard stack, and encodes the
//! answer into what the trigger expects ([`encode`]): API Gateway / ALB / Function URL responses,
//! partial batch failures for SQS, Kinesis and DynamoDB Streams, structured errors for direct
//! invocations. It also verifies SNS message signatures ([`sns`]). API Gateway authorizer results are
//! handed to guard-core as a `guard_core::verify::PlatformIdentity` extension (provider `aws-iam`,
//! `aws-cognito`, `aws-jwt` or `aws-lambda-authorizer`), which `[verify.aws_authorizer]` accepts.
//!
//! ```no_run
//! use guard_core::{GuardRequest, GuardResponse};
//! use tower::service_fn;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), guard_aws::RunError> {
//!     let handler = service_fn(|_req: GuardRequest| async {
//!         Ok::<_, std::convert::Infallible>(GuardResponse::new("ok".into()))
//!     });
//!     // In a real function: guard_aws::run(guard.layer(handler)), with the Guard stack around it.
//!     guard_aws::run(handler).await
//! }
//! ```
//!
//! ## Triggers
//!
//! | event | `Trigger` | `Peer` | answer |
//! |---|---|---|---|
//! | API Gateway REST (v1), WebSocket | `Http` | `requestContext.identity.sourceIp` | v1 response (`multiValueHeaders`) |
//! | HTTP API (v2), Function URL | `Http` | `requestContext.http.sourceIp` | v2 response (`cookies`) |
//! | ALB | `Http` | `X-Forwarded-For`, right-most untrusted hop | ALB response, same header mode |
//! | SQS (and SNS inside SQS) | `Message { kind: "sqs" }` per record | — | `batchItemFailures` (`messageId`) |
//! | Kinesis / DynamoDB Streams | `Message { kind: "kinesis" / "dynamodb" }` per record | — | `batchItemFailures` (sequence number) |
//! | SNS, S3 | `Message { kind: "sns" / "s3" }` per record | — | `null` or an invocation error |
//! | EventBridge (incl. scheduled) | `Message { kind: "eventbridge" }` | — | handler JSON or structured error |
//! | anything else | `Direct` | — | handler JSON or structured error |
//!
//! Events and records that do not decode, and HTTP events over the header limits, are refused
//! through the stack with one security event each (see [`decode::decode_or_refuse`] and
//! [`GuardLayer`]); a bad record fails only itself.
//!
//! ## Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `secrets-manager` | yes | [`secrets::SecretsManagerSource`] (`aws-config`, `aws-sdk-secretsmanager`) |
//! | `https-fetch` | yes | [`sns::HttpsCertFetcher`], the production HTTPS certificate fetcher for SNS |
//! | `https-client` | with either | Guard's outbound client ([`guard_http`]), which both use: hyper over HTTP/1.1 (the hyper `lambda_runtime` uses), rustls on *ring*, the platform's root certificates |

#[cfg(feature = "secrets-manager")]
pub mod secrets;

#[cfg(feature = "secrets-manager")]
mod http;

pub mod decode;
pub mod encode;
pub mod event;
mod policy;
mod run;
mod serve;
pub mod sns;

pub use policy::builder_from_policy;
pub use run::{GuardLayer, GuardService, RunError, run, run_service, run_with};
pub use serve::{ServeError, serve};

/// The README's quick start, compiled.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeQuickStart;
