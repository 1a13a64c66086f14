//! [`Guard`]: the layers assembled in their canonical order.
//!
//! ```text
//! Audit ─▶ Ingress ─▶ RateLimit(pre-auth) ─▶ Verify ─▶ RateLimit(principal) ─▶ Authz ─▶ Validate ─▶ Secrets ─▶ handler
//! ```
//!
//! Signatures a verifier accepted are recorded by the replay store (insert-if-absent, a
//! `ReplayCommitLayer`) only once every layer admitted the request, just before the handler, so
//! a request refused with 429 (or a transient 503) can be retried with the same signature. The
//! builder always uses this order. A stage that is not configured is skipped; audit and
//! ingress are always on (with safe defaults). To use another order, compose the public layers
//! yourself with `tower::ServiceBuilder`.
//!
//! This module is the only one that reads a [`Policy`](crate::Policy): one file per stage turns
//! its section into that stage's layer, through the layer's own typed API.

#[cfg(feature = "audit")]
mod audit;
#[cfg(feature = "authz")]
mod authz;
#[cfg(all(
    feature = "audit",
    feature = "authz",
    feature = "ingress",
    feature = "validate",
    feature = "verify",
    feature = "secrets",
    feature = "rate-limit"
))]
mod guard;
#[cfg(feature = "ingress")]
mod ingress;
#[cfg(feature = "rate-limit")]
mod rate_limit;
#[cfg(feature = "secrets")]
mod secrets;
#[cfg(feature = "validate")]
mod validate;
#[cfg(feature = "verify")]
mod verify;

#[cfg(all(
    feature = "audit",
    feature = "authz",
    feature = "ingress",
    feature = "validate",
    feature = "verify",
    feature = "secrets",
    feature = "rate-limit"
))]
pub use guard::{Guard, GuardBuilder, GuardDeps, GuardService};
#[cfg(feature = "verify")]
pub use verify::VerifyDeps;
