//! [`ReplayStore`]: remembers signatures already accepted so each is accepted once.
//!
//! The in-memory store lives in [`crate::verify`]; a Redis store shared by every instance comes
//! with the `redis` feature.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// The store could not answer (backend down). The verifier fails closed on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("replay store unavailable: {reason}")]
pub struct ReplayError {
    /// What went wrong (no request values).
    pub reason: String,
}

/// A boxed future returned by [`ReplayStore::first_use`].
pub type ReplayFuture<'a> = Pin<Box<dyn Future<Output = Result<bool, ReplayError>> + Send + 'a>>;

/// Remembers keys (signature digests) for a while.
pub trait ReplayStore: Send + Sync + 'static {
    /// Records `key` for `ttl`. Resolves to `true` the first time a key is seen inside its TTL and
    /// `false` on every later call (a replay).
    fn first_use<'a>(&'a self, key: &'a [u8], ttl: Duration) -> ReplayFuture<'a>;
}
