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

/// Items that need every layer (the [`Guard`] and the stages it assembles).
macro_rules! with_every_layer {
    ($($item:item)*) => {
        $(
            #[cfg(all(
                feature = "audit",
                feature = "authz",
                feature = "ingress",
                feature = "validate",
                feature = "verify",
                feature = "secrets",
                feature = "rate-limit"
            ))]
            $item
        )*
    };
}

with_every_layer! {
    mod audit;
    mod authz;
    mod guard;
    mod ingress;
    mod rate_limit;
    mod secrets;
    mod validate;
    mod verify;
    pub use guard::{Guard, GuardBuilder, GuardDeps, GuardService};
    use verify::VerifyDeps;
}
