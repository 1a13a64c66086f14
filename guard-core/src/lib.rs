//! # Guard core
//!
//! One security perimeter around serverless function handlers, as a `tower` layer stack that works
//! the same on AWS Lambda, Azure Functions and Google Cloud. Adapters (`guard-aws`, `guard-azure`,
//! `guard-gcp`) turn each trigger's event into a neutral `http::Request<Bytes>` with typed
//! extensions ([`request`]); the layers here decide; a refusal is a [`Rejection`] rendered as
//! `application/problem+json`.
//!
//! The cached, rotation-aware secret store (`SecretStore`, `SecretSource`, `SecretValue`,
//! `SecretsError`, the env and file sources) is the `guard-secrets` crate; the HMAC verifier, the
//! Redis password, outbound signing and [`secrets::SecretsLayer`] read it. [`clock::WallClock`] is
//! guard-secrets' clock, re-exported.
//!
//! ## Layer order
//!
//! [`Guard`] always assembles the layers in this order (outermost first):
//!
//! | layer | says no with |
//! |---|---|
//! | `AuditLayer` — one security event per decision | — |
//! | `IngressLayer` — body size, JSON depth, content type, method | 400 / 405 / 413 / 415 |
//! | `RateLimitLayer` (pre-auth, by peer) | 429 / 503 |
//! | `VerifyLayer` — CIDR, event source, HMAC, JWT, platform principals | 401 / 403 |
//! | `RateLimitLayer` (by principal) | 429 / 503 |
//! | `AuthzLayer` — roles, scopes, claims or principals per method and path / message source | 403 |
//! | `ValidateLayer` — JSON Schema and typed validation | 400 / 422 |
//! | `SecretsLayer` — named secrets for the handler | 503 |
//!
//! ## Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `ingress` | yes | [`ingress`] |
//! | `validate` | yes | [`validate`] (`jsonschema`, `validator`) |
//! | `audit` | yes | [`audit`] |
//! | `verify` | yes | [`verify`] |
//! | `authz` | yes | [`authz`]: authorization rules over the verified principal |
//! | `jwks-http` | yes | fetching a JWKS ([`verify::JwksCache::from_url`]) with the outbound client |
//! | `http-client` | with `jwks-http` | [`guard_http::HttpClient`], the one outbound HTTP client (hyper, rustls on *ring*), for JWKS and OIDC discovery and [`GuardDeps::http_client`] |
//! | `rate-limit` | yes | [`rate_limit`] (`governor`) |
//! | `redis` | no | the Redis rate-limit backend and replay store |
//! | `secrets` | yes | [`secrets`]: `SecretsLayer`, over the secret store of the `guard-secrets` crate (its `store` feature, Tokio) |
//! | `otel` | no | [`otel`]: one OpenTelemetry server span per invocation (`tracing-opentelemetry`), parent from `traceparent` / `X-Amzn-Trace-Id` / `X-Cloud-Trace-Context` |
//! | `otlp` | no | `otel::otlp`: OTLP/gRPC export configured from the standard `OTEL_*` variables, flushed with the audit log |
//! | `outbound` | no | `outbound`: the handler's own HTTP calls carry `traceparent` and, optionally, a Guard HMAC signature |
//! | `ocsf` | no | security events as OCSF 1.x API Activity (`[audit] format = "ocsf"`) |
//! | `server` | no | [`server`]: serves a stack over HTTP/1.1 (hyper) with streaming body limits, timeouts and graceful SIGTERM |

pub mod clock;
mod error;
mod future;
mod macros;
pub mod message;
pub mod policy;
mod rejection;
pub mod replay;
pub mod request;
#[cfg(feature = "secrets")]
pub mod secrets;

#[cfg(feature = "audit")]
pub mod audit;
#[cfg(feature = "authz")]
pub mod authz;
#[cfg(feature = "ingress")]
pub mod ingress;
#[cfg(feature = "otel")]
pub mod otel;
#[cfg(feature = "outbound")]
pub mod outbound;
#[cfg(feature = "rate-limit")]
pub mod rate_limit;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "validate")]
pub mod validate;
#[cfg(feature = "verify")]
pub mod verify;

mod builder;

#[cfg(all(
    feature = "audit",
    feature = "authz",
    feature = "ingress",
    feature = "validate",
    feature = "verify",
    feature = "secrets",
    feature = "rate-limit"
))]
pub use builder::{Guard, GuardBuilder, GuardDeps, GuardService};
pub use error::{ConfigError, Unavailable};
pub use policy::Policy;
pub use rejection::{Rejection, RejectionKind, ValidationDetail};

/// The request Guard sees: an HTTP request with the raw body bytes.
pub type GuardRequest = http::Request<bytes::Bytes>;
/// The response Guard returns: the handler's, or a rendered [`Rejection`].
pub type GuardResponse = http::Response<bytes::Bytes>;
