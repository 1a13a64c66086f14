//! [`MemoryReplayStore`]: a bounded in-process [`ReplayStore`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::Unavailable;
use crate::clock::WallClock;
use crate::replay::{ReplayFuture, ReplayStore};

/// Default number of keys remembered.
pub(crate) const DEFAULT_REPLAY_CAPACITY: usize = 100_000;

/// Longest key accepted (the HMAC verifier uses 32-byte digests).
const MAX_KEY_LEN: usize = 64;

/// Remembers keys in memory, each until its TTL passes, and at most `capacity` at once.
///
/// Only signatures that already verified are recorded, so the store fills only as fast as genuine
/// traffic arrives. When it is full of live keys it does **not** forget one early (that would let
/// a replay through): it answers with an error, which the HMAC verifier turns into 503
/// `guard.verify.unavailable` (fail closed; senders retry). One instance protects one process: for
/// several instances use a shared store (Redis, with the `redis` feature).
///
/// ```
/// use std::time::Duration;
/// use guard_core::replay::ReplayStore;
/// use guard_core::verify::MemoryReplayStore;
///
/// let store = MemoryReplayStore::new(1000);
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// assert!(rt.block_on(store.first_use(b"sig", Duration::from_secs(60))).unwrap());
/// assert!(!rt.block_on(store.first_use(b"sig", Duration::from_secs(60))).unwrap());
/// ```
#[derive(Clone)]
pub struct MemoryReplayStore {
    inner: Arc<Mutex<State>>,
    clock: WallClock,
    capacity: usize,
}

impl std::fmt::Debug for MemoryReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryReplayStore")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}

#[derive(Default)]
struct State {
    expiry: HashMap<Box<[u8]>, SystemTime>,
    /// Insertion order, for purging expired keys from the front.
    order: VecDeque<(SystemTime, Box<[u8]>)>,
}

impl State {
    fn purge(&mut self, now: SystemTime) {
        while let Some((at, _)) = self.order.front() {
            if *at > now {
                break;
            }
            if let Some((at, key)) = self.order.pop_front()
                && self.expiry.get(&key) == Some(&at)
            {
                self.expiry.remove(&key);
            }
        }
    }
}

impl MemoryReplayStore {
    /// A store remembering at most `capacity` keys (at least 1), on the system clock.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::default(),
            clock: WallClock::system(),
            capacity: capacity.max(1),
        }
    }

    /// The same store on another clock (tests use [`WallClock::fake_at_unix`]).
    pub fn with_clock(mut self, clock: WallClock) -> Self {
        self.clock = clock;
        self
    }

    /// Keys currently remembered (including expired ones not yet purged).
    pub fn len(&self) -> usize {
        self.inner.lock().map(|s| s.expiry.len()).unwrap_or(0)
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check_key(key: &[u8]) -> Result<(), Unavailable> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(Unavailable {
                reason: "replay key must be 1 to 64 bytes".into(),
            });
        }
        Ok(())
    }

    fn contains(&self, key: &[u8]) -> Result<bool, Unavailable> {
        Self::check_key(key)?;
        let now = self.clock.now();
        let s = self.inner.lock().map_err(|_| Unavailable {
            reason: "replay store lock poisoned".into(),
        })?;
        Ok(s.expiry.get(key).is_some_and(|at| *at > now))
    }

    fn record(&self, key: &[u8], ttl: Duration) -> Result<bool, Unavailable> {
        Self::check_key(key)?;
        let now = self.clock.now();
        let mut s = self.inner.lock().map_err(|_| Unavailable {
            reason: "replay store lock poisoned".into(),
        })?;
        if let Some(at) = s.expiry.get(key)
            && *at > now
        {
            return Ok(false);
        }
        // Expired entries leave the queue at every record, not only when the store is full: a
        // key recorded again after it expired adds an entry each time, and would otherwise grow
        // the queue without bound while the map stays small.
        s.purge(now);
        if s.expiry.len() >= self.capacity {
            // Expired entries that were re-inserted later sit behind live ones: a full sweep.
            s.expiry.retain(|_, at| *at > now);
            let State { expiry, order } = &mut *s;
            order.retain(|(at, k)| expiry.get(k) == Some(at));
        }
        if s.expiry.len() >= self.capacity {
            return Err(Unavailable {
                reason: "replay store full".into(),
            });
        }
        let at = now + ttl;
        let key: Box<[u8]> = key.into();
        s.expiry.insert(key.clone(), at);
        s.order.push_back((at, key));
        Ok(true)
    }
}

impl Default for MemoryReplayStore {
    fn default() -> Self {
        Self::new(DEFAULT_REPLAY_CAPACITY)
    }
}

impl ReplayStore for MemoryReplayStore {
    fn first_use<'a>(&'a self, key: &'a [u8], ttl: Duration) -> ReplayFuture<'a> {
        let r = self.record(key, ttl);
        Box::pin(async move { r })
    }

    fn seen<'a>(&'a self, key: &'a [u8]) -> ReplayFuture<'a> {
        let r = self.contains(key);
        Box::pin(async move { r })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::WallClock;

    fn store(cap: usize) -> (MemoryReplayStore, WallClock) {
        let clock = WallClock::fake_at_unix(1_000);
        (MemoryReplayStore::new(cap).with_clock(clock.clone()), clock)
    }

    const TTL: Duration = Duration::from_secs(10);

    #[test]
    fn a_key_is_accepted_once_until_it_expires() {
        let (s, clock) = store(10);
        assert_eq!(s.record(b"k", TTL), Ok(true));
        assert_eq!(s.record(b"k", TTL), Ok(false));
        clock.advance(Duration::from_secs(11));
        assert_eq!(s.record(b"k", TTL), Ok(true));
    }

    #[test]
    fn a_key_lives_until_just_before_its_ttl_ends() {
        let (s, clock) = store(10);
        assert_eq!(s.contains(b"k"), Ok(false));
        assert_eq!(s.record(b"k", TTL), Ok(true));
        assert_eq!(s.contains(b"k"), Ok(true), "seen does not record, but sees");
        clock.advance(TTL - Duration::from_millis(1));
        assert_eq!(s.contains(b"k"), Ok(true));
        assert_eq!(
            s.record(b"k", TTL),
            Ok(false),
            "still live 1 ms before expiry"
        );
        clock.advance(Duration::from_millis(1));
        assert_eq!(s.contains(b"k"), Ok(false), "gone at expiry");
        assert_eq!(s.record(b"k", TTL), Ok(true));
    }

    #[test]
    fn a_full_store_refuses_instead_of_forgetting_live_keys() {
        let (s, clock) = store(2);
        assert_eq!(s.record(b"a", TTL), Ok(true));
        assert_eq!(s.record(b"b", TTL), Ok(true));
        assert!(s.record(b"c", TTL).is_err());
        assert_eq!(
            s.record(b"a", TTL),
            Ok(false),
            "a live key is never forgotten"
        );
        clock.advance(Duration::from_secs(11));
        assert_eq!(s.record(b"c", TTL), Ok(true), "expired keys make room");
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn purges_expired_keys_behind_live_ones() {
        let (s, clock) = store(2);
        assert_eq!(s.record(b"long", Duration::from_secs(100)), Ok(true));
        assert_eq!(s.record(b"short", Duration::from_secs(1)), Ok(true));
        clock.advance(Duration::from_secs(2));
        assert_eq!(s.record(b"new", TTL), Ok(true));
    }

    #[test]
    fn odd_keys_are_errors() {
        let (s, _) = store(2);
        assert!(s.record(b"", TTL).is_err());
        assert!(s.record(&[0u8; 65], TTL).is_err());
    }

    #[test]
    fn keys_of_one_to_sixty_four_bytes_are_taken() {
        let (s, _) = store(2);
        assert_eq!(s.record(b"k", TTL), Ok(true));
        assert_eq!(s.record(&[7u8; 64], TTL), Ok(true));
        assert_eq!(s.contains(&[7u8; 64]), Ok(true));
        assert!(s.contains(&[7u8; 65]).is_err());
    }

    #[test]
    fn a_key_expiring_exactly_now_makes_room_in_a_full_store() {
        let (s, clock) = store(2);
        assert_eq!(s.record(b"long", Duration::from_secs(100)), Ok(true));
        assert_eq!(s.record(b"short", Duration::from_secs(1)), Ok(true));
        clock.advance(Duration::from_secs(1));
        assert_eq!(s.record(b"new", TTL), Ok(true));
        assert_eq!(s.record(b"long", TTL), Ok(false));
    }

    /// A key recorded again after it expired has two entries in the expiry queue; purging the
    /// old one must not forget the new record.
    #[test]
    fn purging_an_old_entry_keeps_the_key_recorded_again() {
        let (s, clock) = store(3);
        assert_eq!(s.record(b"k", Duration::from_secs(1)), Ok(true));
        clock.advance(Duration::from_secs(1));
        assert_eq!(s.record(b"k", Duration::from_secs(100)), Ok(true));
        assert_eq!(s.record(b"x", Duration::from_secs(100)), Ok(true));
        assert_eq!(s.record(b"y", Duration::from_secs(100)), Ok(true));
        assert!(s.record(b"z", TTL).is_err(), "full of live keys");
        assert_eq!(s.record(b"k", TTL), Ok(false), "k is still remembered");
        assert_eq!(s.len(), 3);
        assert!(!s.is_empty());
    }

    /// A key recorded again while its expired entry still waits in the queue (behind a live
    /// one): when the purge reaches that old entry it must leave the new record alone, or the
    /// signature could be replayed inside its new window.
    #[test]
    fn purging_an_old_entry_behind_a_live_one_keeps_the_new_record() {
        let (s, clock) = store(10);
        assert_eq!(s.record(b"a", Duration::from_secs(100)), Ok(true));
        assert_eq!(s.record(b"k", Duration::from_secs(1)), Ok(true));
        clock.advance(Duration::from_secs(2));
        // `k` expired; its entry stays queued behind `a`, which is still live.
        assert_eq!(s.record(b"k", Duration::from_secs(200)), Ok(true));
        clock.advance(Duration::from_secs(98));
        // `a` expires now: this purge pops `a` and then `k`'s old entry.
        assert_eq!(s.record(b"x", TTL), Ok(true));
        assert_eq!(s.contains(b"a"), Ok(false));
        assert_eq!(s.contains(b"k"), Ok(true), "k's new record is kept");
        assert_eq!(s.record(b"k", TTL), Ok(false), "k cannot be replayed");
        assert_eq!(s.len(), 2, "k and x; a was forgotten");
    }

    /// The same key recorded again and again (each time after it expired) keeps the queue of
    /// expiry times as short as the live keys, not one entry per recording.
    #[test]
    fn re_recording_an_expired_key_does_not_grow_the_queue() {
        let (s, clock) = store(100);
        for _ in 0..50 {
            assert_eq!(s.record(b"k", Duration::from_secs(1)), Ok(true));
            clock.advance(Duration::from_secs(1));
        }
        let queued = s.inner.lock().unwrap().order.len();
        assert!(queued <= 1, "{queued} entries queued for one key");
    }

    /// The full sweep drops from the queue exactly the entries whose key it dropped from the map:
    /// a live key keeps its queue entry, so the front-of-queue purge still forgets it once it
    /// expires (instead of leaving it to the next full sweep).
    #[test]
    fn a_full_sweep_keeps_the_queue_in_step_with_the_live_keys() {
        let (s, clock) = store(2);
        assert_eq!(s.record(b"long", Duration::from_secs(100)), Ok(true));
        assert_eq!(s.record(b"short", Duration::from_secs(1)), Ok(true));
        clock.advance(Duration::from_secs(2));
        // Full: the sweep drops `short` (expired, behind the live `long`) from map and queue.
        assert_eq!(s.record(b"new", Duration::from_secs(200)), Ok(true));
        let queued: Vec<Vec<u8>> = s
            .inner
            .lock()
            .unwrap()
            .order
            .iter()
            .map(|(_, k)| k.to_vec())
            .collect();
        assert_eq!(queued, vec![b"long".to_vec(), b"new".to_vec()]);
        // `long` expires; the next record forgets it from the front without a full sweep.
        clock.advance(Duration::from_secs(100));
        assert_eq!(s.record(b"k", TTL), Ok(true));
        assert_eq!(s.contains(b"long"), Ok(false));
        assert_eq!(s.len(), 2, "new and k");
    }

    #[test]
    fn debug_shows_capacity_and_length() {
        let (s, _) = store(2);
        assert_eq!(s.record(b"k", TTL), Ok(true));
        assert_eq!(
            format!("{s:?}"),
            "MemoryReplayStore { capacity: 2, len: 1 }"
        );
        assert!(store(2).0.is_empty());
    }
}
