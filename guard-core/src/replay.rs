//! [`ReplayStore`]: remembers signatures already accepted so each is accepted once.
//!
//! The in-memory store lives in [`crate::verify`]; a Redis store shared by every instance comes
//! with the `redis` feature.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::Unavailable;
use crate::clock::WallClock;
use crate::rejection::{Rejection, RejectionKind};
use futures_util::future::BoxFuture;

/// The future returned by [`ReplayStore::first_use`] (for the stores of `verify` and `redis`).
#[cfg_attr(not(any(feature = "verify", feature = "redis")), allow(dead_code))]
pub(crate) type ReplayFuture<'a> = BoxFuture<'a, Result<bool, Unavailable>>;

/// Remembers keys (signature digests) for a while. Its methods return
/// `futures_util::future::BoxFuture` (`Box::pin(async move { .. })`).
pub trait ReplayStore: Send + Sync + 'static {
    /// Records `key` for `ttl` if it is absent (atomically: of two concurrent calls with one key,
    /// exactly one resolves to `true`). Resolves to `true` the first time a key is seen inside its
    /// TTL and `false` on every later call (a replay).
    fn first_use<'a>(
        &'a self,
        key: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, Unavailable>>;

    /// Whether `key` is currently recorded, without recording it. The verifier asks this first so
    /// a replay is refused at once; the request is recorded with [`first_use`](Self::first_use)
    /// only once it is admitted (past the per-principal rate limit), which stays the authority.
    /// The default answers "not seen", leaving the decision to `first_use`.
    fn seen<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<bool, Unavailable>> {
        let _ = key;
        Box::pin(async { Ok(false) })
    }
}

/// A verified signature that is not recorded yet: it is recorded (insert-if-absent) only once its
/// request is admitted, so a refusal that invites a retry (a 429) does not use it up.
///
/// The HMAC verifier leaves one in the request's [`PendingReplays`] when a `VerifyLayer` put that
/// collector on the request; [`commit`](Self::commit) records it.
#[derive(Clone)]
pub(crate) struct PendingReplay {
    store: Arc<dyn ReplayStore>,
    key: Box<[u8]>,
    expires: SystemTime,
    clock: WallClock,
}

impl std::fmt::Debug for PendingReplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingReplay")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl PendingReplay {
    /// `key` to be recorded in `store` until `expires` (on `clock`).
    pub(crate) fn new(
        store: Arc<dyn ReplayStore>,
        key: &[u8],
        expires: SystemTime,
        clock: WallClock,
    ) -> Self {
        Self {
            store,
            key: key.into(),
            expires,
            clock,
        }
    }

    /// Records the key if absent. A key already recorded is 401 `guard.verify.replayed` (another
    /// copy of the request won); a store that cannot answer is 503 `guard.verify.unavailable`.
    pub(crate) async fn commit(&self) -> Result<(), Rejection> {
        // The time left is measured now, not when the signature was checked: the record must last
        // until the signature can no longer pass the window, however long admission took.
        let ttl = self
            .expires
            .duration_since(self.clock.now())
            .unwrap_or_default()
            .max(Duration::from_millis(1));
        match self.store.first_use(&self.key, ttl).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Rejection::new(RejectionKind::Replayed)
                .with_reason("signed message already accepted")),
            Err(_) => Err(Rejection::new(RejectionKind::VerifyUnavailable)
                .with_reason("replay store unavailable")),
        }
    }
}

/// The signatures verified for one request and waiting to be recorded (see [`PendingReplay`]).
///
/// `VerifyLayer` puts an empty collector on each request it verifies on the asynchronous path;
/// verifiers add to it; the signatures are recorded once the request is admitted: by the verify
/// layer itself before the inner service, or, inside a `Guard`, by `ReplayCommitLayer` just
/// before the handler.
#[derive(Clone, Default)]
pub(crate) struct PendingReplays(Arc<Mutex<Vec<PendingReplay>>>);

impl std::fmt::Debug for PendingReplays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PendingReplays").field(&self.len()).finish()
    }
}

impl PendingReplays {
    /// Adds a signature to record.
    pub(crate) fn push(&self, pending: PendingReplay) {
        if let Ok(mut v) = self.0.lock() {
            v.push(pending);
        }
    }

    /// How many signatures wait.
    pub(crate) fn len(&self) -> usize {
        self.0.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// Whether none waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records every waiting signature (each insert-if-absent), emptying the collector; the first
    /// failure is the answer.
    pub(crate) async fn commit(&self) -> Result<(), Rejection> {
        let pending = match self.0.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(_) => {
                return Err(Rejection::new(RejectionKind::VerifyUnavailable)
                    .with_reason("replay collector poisoned"));
            }
        };
        for p in &pending {
            p.commit().await?;
        }
        Ok(())
    }
}

#[cfg(all(test, feature = "verify"))]
mod pending_replay_records_once_example {
    #[test]
    fn pending_replay_records_once() {
        use crate::clock::WallClock;
        use crate::replay::PendingReplay;
        use crate::verify::MemoryReplayStore;
        use std::sync::Arc;
        use std::time::{Duration, SystemTime};

        let store = Arc::new(MemoryReplayStore::new(10));
        let expires = SystemTime::now() + Duration::from_secs(60);
        let p = PendingReplay::new(store, b"digest", expires, WallClock::system());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert!(rt.block_on(p.commit()).is_ok());
        assert_eq!(
            rt.block_on(p.commit()).unwrap_err().code(),
            "guard.verify.replayed"
        );
    }
}

#[cfg(all(test, feature = "verify"))]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::clock::WallClock;
    use crate::verify::MemoryReplayStore;

    #[tokio::test]
    async fn collected_signatures_are_recorded_once_each_on_commit() {
        let clock = WallClock::fake_at_unix(1_000);
        let store = Arc::new(MemoryReplayStore::new(10).with_clock(clock.clone()));
        let expires = clock.now() + Duration::from_secs(60);
        let pending = |key: &[u8]| PendingReplay::new(store.clone(), key, expires, clock.clone());
        let collector = PendingReplays::default();
        assert!(collector.is_empty());
        collector.push(pending(b"a"));
        collector.push(pending(b"b"));
        assert_eq!(collector.len(), 2);
        assert!(!collector.is_empty());
        assert_eq!(format!("{collector:?}"), "PendingReplays(2)");
        assert!(store.is_empty(), "nothing is recorded before the commit");
        collector.commit().await.unwrap();
        assert_eq!(store.len(), 2);
        assert!(collector.is_empty(), "a commit empties the collector");
        let again = PendingReplays::default();
        again.push(pending(b"b"));
        let refused = again.commit().await.unwrap_err();
        assert_eq!(refused.kind(), RejectionKind::Replayed);
        assert!(format!("{:?}", pending(b"c")).contains("expires"));
    }

    #[tokio::test]
    async fn the_record_lasts_from_the_commit_until_the_expiry_time() {
        let clock = WallClock::fake_at_unix(1_000);
        let store = Arc::new(MemoryReplayStore::new(10).with_clock(clock.clone()));
        let expires = clock.now() + Duration::from_secs(60);
        let p = PendingReplay::new(store.clone(), b"k", expires, clock.clone());
        clock.advance(Duration::from_secs(20));
        p.commit().await.unwrap();
        clock.advance(Duration::from_millis(39_999));
        assert_eq!(store.seen(b"k").await, Ok(true));
        clock.advance(Duration::from_millis(1));
        assert_eq!(store.seen(b"k").await, Ok(false));
    }
}
