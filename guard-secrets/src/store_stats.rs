//! What a [`SecretStore`](crate::SecretStore) reports: [`SecretVersions`] and [`SecretStoreStats`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::SecretValue;

/// The current and (when known) previous version of a secret.
#[derive(Debug, Clone)]
pub struct SecretVersions {
    /// The version in use.
    pub current: Arc<SecretValue>,
    /// The version before it, accepted during rotation.
    pub previous: Option<Arc<SecretValue>>,
}

impl SecretVersions {
    /// The current value, then the previous one if any: the order a verifier should try them in.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use guard_secrets::{SecretValue, SecretVersions};
    /// let v = SecretVersions { current: Arc::new(SecretValue::from("a")), previous: None };
    /// assert_eq!(v.iter().count(), 1);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = &Arc<SecretValue>> {
        std::iter::once(&self.current).chain(self.previous.iter())
    }
}

/// Counters of what the store did since it was built (all monotonic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecretStoreStats {
    /// Answers from a fresh cached value.
    pub hits: u64,
    /// Requests that found nothing fresh and had to wait for a fetch (or a recent failure).
    pub misses: u64,
    /// Calls made to the source (including background and forced refreshes).
    pub fetches: u64,
    /// Source calls that failed (any kind).
    pub fetch_errors: u64,
    /// Answers served from an expired value because the source failed transiently.
    pub stale_served: u64,
    /// Background refreshes started before expiry.
    pub refreshed_ahead: u64,
    /// [`SecretStore::force_refresh`](crate::SecretStore::force_refresh) calls that fetched.
    pub forced_refreshes: u64,
    /// [`SecretStore::force_refresh`](crate::SecretStore::force_refresh) calls refused by the rate limit.
    pub forced_refreshes_limited: u64,
    /// Names evicted to stay within the size bound.
    pub evictions: u64,
}

/// The live counters behind [`SecretStoreStats`].
#[derive(Default)]
pub(super) struct Counters {
    pub(super) hits: AtomicU64,
    pub(super) misses: AtomicU64,
    pub(super) fetches: AtomicU64,
    pub(super) fetch_errors: AtomicU64,
    pub(super) stale_served: AtomicU64,
    pub(super) refreshed_ahead: AtomicU64,
    pub(super) forced_refreshes: AtomicU64,
    pub(super) forced_refreshes_limited: AtomicU64,
    pub(super) evictions: AtomicU64,
}

pub(super) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}
