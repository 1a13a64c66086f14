//! [`SecretStore`]: the rotation-safe cache in front of a [`SecretSource`].

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::clock::{SystemWallClock, WallClock};

use super::{SecretSource, SecretValue, SecretVersion, SecretsError, field};

const TARGET: &str = "guard::secrets";
/// Derived `name#field` values kept per cached value.
const MAX_FIELDS: usize = 64;

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
    /// use guard_core::secrets::{SecretValue, SecretVersions};
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
    /// [`SecretStore::force_refresh`] calls that fetched.
    pub forced_refreshes: u64,
    /// [`SecretStore::force_refresh`] calls refused by the rate limit.
    pub forced_refreshes_limited: u64,
    /// Names evicted to stay within the size bound.
    pub evictions: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    fetches: AtomicU64,
    fetch_errors: AtomicU64,
    stale_served: AtomicU64,
    refreshed_ahead: AtomicU64,
    forced_refreshes: AtomicU64,
    forced_refreshes_limited: AtomicU64,
    evictions: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Settings of a [`SecretStore`] that do not hold up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid secret store settings: {}", .problems.join("; "))]
pub struct SecretStoreConfigError {
    /// Every problem found.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone)]
struct Config {
    ttl: Duration,
    refresh_ahead: Duration,
    max_staleness: Duration,
    retry_after_error: Duration,
    fetch_timeout: Option<Duration>,
    max_entries: NonZeroUsize,
    force_refresh_interval: Duration,
    previous_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(300),
            refresh_ahead: Duration::from_secs(30),
            max_staleness: Duration::from_secs(15 * 60),
            retry_after_error: Duration::from_secs(1),
            fetch_timeout: None,
            max_entries: NonZeroUsize::new(1024).expect("non-zero"),
            force_refresh_interval: Duration::from_secs(10),
            previous_grace: Duration::from_secs(3600),
        }
    }
}

/// Builds a [`SecretStore`]; see [`SecretStore`] for what each setting does.
///
/// ```
/// use std::time::Duration;
/// use guard_core::secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
///
/// let src = |_: &str, _: SecretVersion| -> Result<SecretValue, SecretsError> { Ok("v".into()) };
/// let err = SecretStore::builder(src)
///     .ttl(Duration::ZERO)
///     .fetch_timeout(Duration::ZERO)
///     .build()
///     .unwrap_err();
/// assert_eq!(err.problems.len(), 2);
/// ```
pub struct SecretStoreBuilder {
    source: Arc<dyn SecretSource>,
    clock: Arc<dyn WallClock>,
    config: Config,
}

impl fmt::Debug for SecretStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretStoreBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SecretStoreBuilder {
    /// How long a fetched value is fresh (default 300 s; must be > 0).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.config.ttl = ttl;
        self
    }

    /// Start a background refresh when a fresh value is this close to expiry (default 30 s;
    /// `ZERO` turns refresh-ahead off; must be < TTL).
    pub fn refresh_ahead(mut self, before_expiry: Duration) -> Self {
        self.config.refresh_ahead = before_expiry;
        self
    }

    /// How long past its TTL a value may still be served while the source fails transiently
    /// (default 15 min; `ZERO` = never serve stale).
    pub fn max_staleness(mut self, max: Duration) -> Self {
        self.config.max_staleness = max;
        self
    }

    /// After a failed fetch, answer from that failure (or the stale value) without asking the source
    /// again for this long (default 1 s). Keeps an outage from costing every request a timeout.
    pub fn retry_after_error(mut self, wait: Duration) -> Self {
        self.config.retry_after_error = wait;
        self
    }

    /// A fetch taking longer than this is a transient error (default: none, the source's own
    /// timeouts apply; must be > 0). Needs a Tokio runtime with timers enabled.
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.config.fetch_timeout = Some(timeout);
        self
    }

    /// Most names kept; the least recently used one not in use is evicted (default 1024).
    pub fn max_entries(mut self, max: NonZeroUsize) -> Self {
        self.config.max_entries = max;
        self
    }

    /// [`SecretStore::force_refresh`] fetches at most once per name per interval (default 10 s;
    /// must be > 0: verifiers call it after bad signatures, which attackers control).
    pub fn force_refresh_interval(mut self, interval: Duration) -> Self {
        self.config.force_refresh_interval = interval;
        self
    }

    /// How long a value replaced by a newer current value stays available as `previous` when the
    /// source has no previous version of its own (default 1 h).
    pub fn previous_grace(mut self, grace: Duration) -> Self {
        self.config.previous_grace = grace;
        self
    }

    /// The clock (default [`SystemWallClock`]).
    pub fn clock(mut self, clock: impl WallClock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Checks the settings (reporting every problem) and builds the store.
    pub fn build(self) -> Result<SecretStore, SecretStoreConfigError> {
        let c = &self.config;
        let mut problems = Vec::new();
        if c.ttl.is_zero() {
            problems.push("ttl must be greater than zero".to_string());
        }
        if !c.ttl.is_zero() && c.refresh_ahead >= c.ttl {
            problems.push("refresh_ahead must be shorter than ttl".to_string());
        }
        if c.fetch_timeout.is_some_and(|t| t.is_zero()) {
            problems.push("fetch_timeout must be greater than zero".to_string());
        }
        if c.force_refresh_interval.is_zero() {
            problems.push("force_refresh_interval must be greater than zero".to_string());
        }
        if !problems.is_empty() {
            return Err(SecretStoreConfigError { problems });
        }
        Ok(SecretStore {
            inner: Arc::new(Inner {
                source: self.source,
                clock: self.clock,
                config: self.config,
                names: RwLock::new(HashMap::new()),
                counters: Counters::default(),
            }),
        })
    }
}

/// The secret cache in front of a [`SecretSource`], shared by the whole stack. Cheap to clone
/// (clones share the cache).
///
/// One store is shared by the whole stack (cheap to clone): the HMAC verifier asks it for keys, the
/// [`SecretsLayer`](super::SecretsLayer) hands named secrets to the handler.
///
/// | behaviour | default | builder |
/// |---|---|---|
/// | a fetched value is fresh for | 300 s | [`ttl`](SecretStoreBuilder::ttl) |
/// | refresh in the background when a fresh value is this close to expiry | 30 s | [`refresh_ahead`](SecretStoreBuilder::refresh_ahead) |
/// | on a *transient* error, keep serving an expired value for up to (after the TTL) | 15 min | [`max_staleness`](SecretStoreBuilder::max_staleness) |
/// | after a failed fetch, do not ask the source again for | 1 s | [`retry_after_error`](SecretStoreBuilder::retry_after_error) |
/// | a fetch that takes longer is a transient error | none (the source's own timeouts) | [`fetch_timeout`](SecretStoreBuilder::fetch_timeout) |
/// | names kept (least recently used evicted) | 1024 | [`max_entries`](SecretStoreBuilder::max_entries) |
/// | [`force_refresh`](SecretStore::force_refresh) at most once per name per | 10 s | [`force_refresh_interval`](SecretStoreBuilder::force_refresh_interval) |
/// | a locally observed previous value stays available for | 1 h | [`previous_grace`](SecretStoreBuilder::previous_grace) |
///
/// - **Single-flight**: concurrent misses for one name wait for one fetch, and share its outcome
///   (success or failure).
/// - **Fail closed**: with nothing cached (or only a value older than TTL + max staleness), a failed
///   fetch is an error; the layer turns it into 503 `guard.secrets.unavailable`. A *permanent* error
///   (not found, access denied) drops the cached value at once: a revoked secret is not served.
/// - **Serve stale**: a transient error while a value is cached and not too old serves the old value;
///   [`SecretStoreStats::stale_served`] counts it and a warning is logged once per outage (target
///   `guard::secrets`), with an info line when the source answers again.
/// - **Rotation**: [`versions`](SecretStore::versions) returns the current value and the previous
///   one: the source's [`SecretVersion::Previous`] when it has one (`AWSPREVIOUS`), else the value
///   this store saw as current before the last change (for [`previous_grace`](SecretStoreBuilder::previous_grace)).
/// - **JSON fields**: `get("db#password")` fetches `db` once, and selects the scalar field
///   `password` of the JSON object (strings as their UTF-8 bytes, numbers and booleans as their JSON
///   text). The parse never copies other fields' values.
/// - Time comes from an injected [`WallClock`] (tests use [`FakeWallClock`](crate::clock::FakeWallClock)).
///   Refresh-ahead spawns on the current Tokio runtime (without one it is skipped and values are
///   refreshed when they expire); a [`fetch_timeout`](SecretStoreBuilder::fetch_timeout) needs
///   the runtime's timers (`enable_time`, on in `#[tokio::main]` and the Lambda runtime).
///
/// ```
/// use std::time::Duration;
/// use guard_core::secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let source = |name: &str, _: SecretVersion| -> Result<SecretValue, SecretsError> {
///     match name {
///         "db" => Ok(SecretValue::from(r#"{"user":"app","password":"s3cr3t"}"#)),
///         _ => Err(SecretsError::not_found(name)),
///     }
/// };
/// let store = SecretStore::builder(source).ttl(Duration::from_secs(60)).build().unwrap();
/// assert_eq!(store.get("db#user").await.unwrap().expose_str(), Some("app"));
/// assert!(store.get("missing").await.is_err());
/// assert_eq!(store.stats().fetches, 2);
/// # });
/// ```
#[derive(Clone)]
pub struct SecretStore {
    inner: Arc<Inner>,
}

struct Inner {
    source: Arc<dyn SecretSource>,
    clock: Arc<dyn WallClock>,
    config: Config,
    names: RwLock<HashMap<Box<str>, Arc<NameEntry>>>,
    counters: Counters,
}

/// Everything cached for one secret name: one slot per version.
struct NameEntry {
    slots: [Slot; 3],
    last_access_nanos: AtomicU64,
}

#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    /// Held while fetching: the single flight.
    fetch_lock: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct SlotState {
    cached: Option<Cached>,
    last_error: Option<(SecretsError, SystemTime)>,
    /// Completed fetch attempts (lets waiters see that a fetch happened while they waited).
    attempts: u64,
    refreshing: bool,
    in_outage: bool,
    last_forced: Option<SystemTime>,
    /// The value this slot held before the last change (current slot only).
    observed_previous: Option<(Arc<SecretValue>, SystemTime)>,
}

struct Cached {
    /// `None`: the source says this version does not exist (never for the current version).
    value: Option<Arc<SecretValue>>,
    fetched_at: SystemTime,
    fields: HashMap<Box<str>, Arc<SecretValue>>,
}

/// The outcome of a fetch: a new value, or (transient failure) the cached value still usable.
enum Fetched {
    Fresh(Option<Arc<SecretValue>>),
    Stale(Option<Arc<SecretValue>>, SecretsError),
}

/// What [`SecretStore::peek`] found: the answer, or a fetch to make (with the slot's attempt
/// count at the time, to notice a fetch that finished while waiting for the single flight).
enum Peek {
    Answer(Result<Option<Arc<SecretValue>>, SecretsError>),
    Fetch {
        entry: Arc<NameEntry>,
        attempts: u64,
    },
}

enum Answer {
    Fresh(Option<Arc<SecretValue>>),
    Stale(Option<Arc<SecretValue>>),
    Fail(SecretsError),
    Fetch,
}

fn slot_index(v: SecretVersion) -> usize {
    match v {
        SecretVersion::Current => 0,
        SecretVersion::Previous => 1,
        SecretVersion::Pending => 2,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn age(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or(Duration::ZERO)
}

/// Splits `name#field` into the secret's name and the optional JSON field.
fn split_name(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once('#') {
        Some((name, field)) => (name, Some(field)),
        None => (spec, None),
    }
}

impl fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self.inner.names.read().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("SecretStore")
            .field("config", &self.inner.config)
            .field("names", &names)
            .finish_non_exhaustive()
    }
}

impl SecretStore {
    /// A store over `source` with default settings.
    pub fn new(source: impl SecretSource) -> Self {
        Self::builder(source)
            .build()
            .expect("the default settings are valid")
    }

    /// A builder over `source`.
    pub fn builder(source: impl SecretSource) -> SecretStoreBuilder {
        SecretStoreBuilder {
            source: Arc::new(source),
            clock: Arc::new(SystemWallClock),
            config: Config::default(),
        }
    }

    /// The current value of `name` (or of field `f` of the JSON secret `name` for `name#f`).
    ///
    /// Fails when nothing usable is cached and the source cannot give it.
    pub async fn get(&self, name: &str) -> Result<Arc<SecretValue>, SecretsError> {
        let (base, field) = split_name(name);
        match self.lookup(base, field, SecretVersion::Current).await? {
            Some(v) => Ok(v),
            None => Err(SecretsError::not_found(base)),
        }
    }

    /// The current and previous values of `name` (accepts `name#field` too).
    ///
    /// Fails only when the current value cannot be had; a previous value that cannot be had is `None`.
    pub async fn versions(&self, name: &str) -> Result<SecretVersions, SecretsError> {
        let current = self.get(name).await?;
        let (base, field) = split_name(name);
        let previous = match self.lookup(base, field, SecretVersion::Previous).await {
            Ok(Some(v)) => Some(v),
            Ok(None) | Err(_) => self.observed_previous(base, field),
        };
        Ok(SecretVersions { current, previous })
    }

    /// Re-fetches the current value of `name` now, to follow a rotation without waiting for the TTL
    /// (verifiers call it after a signature failure).
    ///
    /// Rate-limited per name: returns `Ok(false)` without fetching when the last forced refresh of
    /// this name was less than the interval ago; `Ok(true)` after a successful fetch. On a failed
    /// fetch the cached value stays (and is served as usual).
    pub async fn force_refresh(&self, name: &str) -> Result<bool, SecretsError> {
        let (base, _) = split_name(name);
        let entry = self.entry(base);
        let slot = &entry.slots[slot_index(SecretVersion::Current)];
        let now = self.inner.clock.now();
        {
            let mut st = lock(&slot.state);
            if let Some(at) = st.last_forced
                && age(now, at) < self.inner.config.force_refresh_interval
            {
                bump(&self.inner.counters.forced_refreshes_limited);
                return Ok(false);
            }
            st.last_forced = Some(now);
        }
        bump(&self.inner.counters.forced_refreshes);
        let _flight = slot.fetch_lock.lock().await;
        match self
            .fetch_into(&entry, base, SecretVersion::Current)
            .await?
        {
            Fetched::Fresh(_) => Ok(true),
            Fetched::Stale(_, e) => Err(e),
        }
    }

    /// Fetches `names` (concurrently) so the first requests find them cached. Returns every error.
    pub async fn prefetch<I>(&self, names: I) -> Result<(), Vec<SecretsError>>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let names: Vec<String> = names.into_iter().map(|n| n.as_ref().to_string()).collect();
        let results = futures_util::future::join_all(names.iter().map(|n| self.get(n))).await;
        let errors: Vec<SecretsError> = results.into_iter().filter_map(Result::err).collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// What the store did so far.
    pub fn stats(&self) -> SecretStoreStats {
        let c = &self.inner.counters;
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SecretStoreStats {
            hits: r(&c.hits),
            misses: r(&c.misses),
            fetches: r(&c.fetches),
            fetch_errors: r(&c.fetch_errors),
            stale_served: r(&c.stale_served),
            refreshed_ahead: r(&c.refreshed_ahead),
            forced_refreshes: r(&c.forced_refreshes),
            forced_refreshes_limited: r(&c.forced_refreshes_limited),
            evictions: r(&c.evictions),
        }
    }

    /// How many names are cached now.
    pub fn len(&self) -> usize {
        self.inner.names.read().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn now_nanos(&self) -> u64 {
        self.inner
            .clock
            .now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos().min(u64::MAX as u128) as u64)
            .unwrap_or(0)
    }

    /// The entry for `name`, created (and the least recently used one evicted) when needed.
    fn entry(&self, name: &str) -> Arc<NameEntry> {
        let now = self.now_nanos();
        if let Some(e) = self
            .inner
            .names
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            e.last_access_nanos.store(now, Ordering::Relaxed);
            return e.clone();
        }
        let mut names = self.inner.names.write().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = names.get(name) {
            e.last_access_nanos.store(now, Ordering::Relaxed);
            return e.clone();
        }
        while names.len() >= self.inner.config.max_entries.get() {
            // Evict the least recently used name that no request is using right now.
            let victim = names
                .iter()
                .filter(|(_, e)| Arc::strong_count(e) == 1)
                .min_by_key(|(_, e)| e.last_access_nanos.load(Ordering::Relaxed))
                .map(|(k, _)| k.clone());
            match victim {
                Some(k) => {
                    names.remove(&k);
                    bump(&self.inner.counters.evictions);
                }
                None => break,
            }
        }
        let e = Arc::new(NameEntry {
            slots: Default::default(),
            last_access_nanos: AtomicU64::new(now),
        });
        names.insert(name.into(), e.clone());
        e
    }

    /// The answer [`get`](Self::get) would give, when the cache can give it at once: `None` when
    /// `get` would have to ask the source (nothing cached, or an expired value and no recent
    /// failure), so the caller awaits `get` instead.
    ///
    /// Everything else `get` does happens here too, synchronously: a fresh value is a hit (and
    /// starts the background refresh when it is near expiry, on the current Tokio runtime); an
    /// expired value is served stale while the source fails transiently; a recent failure with
    /// nothing usable is returned as the error (fail closed). It never waits and never fetches.
    ///
    /// ```
    /// use guard_core::secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let src = |_: &str, _: SecretVersion| -> Result<SecretValue, SecretsError> { Ok("v".into()) };
    /// let store = SecretStore::new(src);
    /// assert!(store.get_now("api-key").is_none()); // nothing cached: `get` must fetch
    /// store.get("api-key").await.unwrap();
    /// assert_eq!(store.get_now("api-key").unwrap().unwrap().expose_str(), Some("v"));
    /// # });
    /// ```
    pub fn get_now(&self, name: &str) -> Option<Result<Arc<SecretValue>, SecretsError>> {
        let (base, field) = split_name(name);
        match self.peek(base, field, SecretVersion::Current) {
            Peek::Answer(Ok(Some(v))) => Some(Ok(v)),
            Peek::Answer(Ok(None)) => Some(Err(SecretsError::not_found(base))),
            Peek::Answer(Err(e)) => Some(Err(e)),
            Peek::Fetch { .. } => None,
        }
    }

    /// The first half of every read: what the cache answers at once (fresh hit, stale, cached
    /// failure), or that a fetch is needed (counted as a miss).
    fn peek(&self, name: &str, field: Option<&str>, version: SecretVersion) -> Peek {
        let entry = self.entry(name);
        let slot = &entry.slots[slot_index(version)];
        let now = self.inner.clock.now();
        let mut st = lock(&slot.state);
        let answer = match self.decide(&st, now, false) {
            Answer::Fresh(v) => {
                bump(&self.inner.counters.hits);
                self.maybe_refresh_ahead(&entry, &mut st, name, version, now);
                select(&mut st, name, field, v)
            }
            Answer::Stale(v) => {
                bump(&self.inner.counters.stale_served);
                select(&mut st, name, field, v)
            }
            Answer::Fail(e) => {
                bump(&self.inner.counters.misses);
                Err(e)
            }
            Answer::Fetch => {
                bump(&self.inner.counters.misses);
                let attempts = st.attempts;
                drop(st);
                return Peek::Fetch { entry, attempts };
            }
        };
        Peek::Answer(answer)
    }

    /// The cache lookup shared by every read: fresh hit, stale, cached failure, or one fetch.
    async fn lookup(
        &self,
        name: &str,
        field: Option<&str>,
        version: SecretVersion,
    ) -> Result<Option<Arc<SecretValue>>, SecretsError> {
        let (entry, attempts) = match self.peek(name, field, version) {
            Peek::Answer(answer) => return answer,
            Peek::Fetch { entry, attempts } => (entry, attempts),
        };
        let slot = &entry.slots[slot_index(version)];
        let _flight = slot.fetch_lock.lock().await;
        {
            let mut st = lock(&slot.state);
            if st.attempts != attempts {
                // Someone fetched while we waited: share their outcome.
                let now = self.inner.clock.now();
                match self.decide(&st, now, true) {
                    Answer::Fresh(v) => return select(&mut st, name, field, v),
                    Answer::Stale(v) => {
                        bump(&self.inner.counters.stale_served);
                        return select(&mut st, name, field, v);
                    }
                    Answer::Fail(e) => return Err(e),
                    Answer::Fetch => {}
                }
            }
        }
        let v = match self.fetch_into(&entry, name, version).await? {
            Fetched::Fresh(v) => v,
            Fetched::Stale(v, _) => {
                bump(&self.inner.counters.stale_served);
                v
            }
        };
        let mut st = lock(&slot.state);
        select(&mut st, name, field, v)
    }

    /// What a slot can answer without fetching. `just_attempted`: a fetch finished while the caller
    /// waited, so its failure is the answer whatever `retry_after_error` says.
    fn decide(&self, st: &SlotState, now: SystemTime, just_attempted: bool) -> Answer {
        let c = &self.inner.config;
        let recent_error = st
            .last_error
            .as_ref()
            .filter(|(_, at)| just_attempted || age(now, *at) < c.retry_after_error);
        if let Some(cached) = &st.cached {
            let a = age(now, cached.fetched_at);
            if a < c.ttl {
                return Answer::Fresh(cached.value.clone());
            }
            if let Some((e, _)) = recent_error
                && e.is_transient()
                && a < c.ttl.saturating_add(c.max_staleness)
            {
                return Answer::Stale(cached.value.clone());
            }
        }
        match recent_error {
            Some((e, _)) => Answer::Fail(e.clone()),
            None => Answer::Fetch,
        }
    }

    /// Starts a background refresh when a fresh value is near expiry (one at a time per slot).
    fn maybe_refresh_ahead(
        &self,
        entry: &Arc<NameEntry>,
        st: &mut SlotState,
        name: &str,
        version: SecretVersion,
        now: SystemTime,
    ) {
        let c = &self.inner.config;
        if c.refresh_ahead.is_zero() || st.refreshing {
            return;
        }
        let Some(cached) = &st.cached else { return };
        if age(now, cached.fetched_at) < c.ttl - c.refresh_ahead {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        st.refreshing = true;
        bump(&self.inner.counters.refreshed_ahead);
        let store = self.clone();
        let entry = entry.clone();
        let name = name.to_string();
        rt.spawn(async move {
            let slot = &entry.slots[slot_index(version)];
            let attempts = lock(&slot.state).attempts;
            let _flight = slot.fetch_lock.lock().await;
            if lock(&slot.state).attempts == attempts {
                let _ = store.fetch_into(&entry, &name, version).await;
            }
            lock(&slot.state).refreshing = false;
        });
    }

    /// Fetches from the source (caller holds the slot's fetch lock) and records the outcome.
    async fn fetch_into(
        &self,
        entry: &Arc<NameEntry>,
        name: &str,
        version: SecretVersion,
    ) -> Result<Fetched, SecretsError> {
        let c = &self.inner.config;
        bump(&self.inner.counters.fetches);
        let fetch = self.inner.source.fetch(name, version);
        let result = match c.fetch_timeout {
            Some(limit) => match tokio::time::timeout(limit, fetch).await {
                Ok(r) => r,
                Err(_) => Err(SecretsError::transient(name, "fetch timed out")),
            },
            None => fetch.await,
        };
        let now = self.inner.clock.now();
        let slot = &entry.slots[slot_index(version)];
        let mut changed = false;
        let outcome = {
            let mut st = lock(&slot.state);
            st.attempts += 1;
            match result {
                Ok(value) => {
                    let value = Arc::new(value);
                    if version == SecretVersion::Current
                        && let Some(old) = st.cached.as_ref().and_then(|c| c.value.clone())
                        && *old != *value
                    {
                        st.observed_previous = Some((old, now));
                        changed = true;
                    }
                    st.cached = Some(Cached {
                        value: Some(value.clone()),
                        fetched_at: now,
                        fields: HashMap::new(),
                    });
                    st.last_error = None;
                    if st.in_outage {
                        st.in_outage = false;
                        tracing::info!(target: TARGET, secret = name, version = ?version, "secret source recovered");
                    }
                    Ok(Fetched::Fresh(Some(value)))
                }
                Err(SecretsError::NotFound { .. }) if version != SecretVersion::Current => {
                    // "No previous version" is an answer, cached like a value.
                    st.cached = Some(Cached {
                        value: None,
                        fetched_at: now,
                        fields: HashMap::new(),
                    });
                    st.last_error = None;
                    st.in_outage = false;
                    Ok(Fetched::Fresh(None))
                }
                Err(e) if e.is_transient() => {
                    bump(&self.inner.counters.fetch_errors);
                    st.last_error = Some((e.clone(), now));
                    let usable = st.cached.as_ref().filter(|cached| {
                        age(now, cached.fetched_at) < c.ttl.saturating_add(c.max_staleness)
                    });
                    let stale = usable.map(|cached| cached.value.clone());
                    if !st.in_outage {
                        st.in_outage = true;
                        if stale.is_some() {
                            tracing::warn!(target: TARGET, secret = name, version = ?version, error = %e,
                                "secret source unavailable: serving the cached value (stale) until it recovers");
                        } else {
                            tracing::warn!(target: TARGET, secret = name, version = ?version, error = %e,
                                "secret source unavailable and nothing usable cached: failing closed");
                        }
                    }
                    match stale {
                        Some(v) => Ok(Fetched::Stale(v, e)),
                        None => Err(e),
                    }
                }
                Err(e) => {
                    bump(&self.inner.counters.fetch_errors);
                    // Not found / access denied: a revoked secret is not served from the cache.
                    st.cached = None;
                    st.last_error = Some((e.clone(), now));
                    st.in_outage = false;
                    tracing::warn!(target: TARGET, secret = name, version = ?version, error = %e,
                        "secret cannot be read: failing closed");
                    Err(e)
                }
            }
        };
        if changed {
            // The source rotated: what it calls "previous" has changed too.
            let mut prev = lock(&entry.slots[slot_index(SecretVersion::Previous)].state);
            prev.cached = None;
            prev.last_error = None;
        }
        outcome
    }

    /// The value the current slot held before its last change, within the grace period.
    fn observed_previous(&self, name: &str, field: Option<&str>) -> Option<Arc<SecretValue>> {
        let entry = self.entry(name);
        let st = lock(&entry.slots[slot_index(SecretVersion::Current)].state);
        let (value, at) = st.observed_previous.as_ref()?;
        if age(self.inner.clock.now(), *at) >= self.inner.config.previous_grace {
            return None;
        }
        match field {
            None => Some(value.clone()),
            Some(f) => field::select(value, name, f).ok().map(Arc::new),
        }
    }
}

/// Applies `name#field` selection to a cached answer, caching the derived value.
fn select(
    st: &mut SlotState,
    name: &str,
    field: Option<&str>,
    value: Option<Arc<SecretValue>>,
) -> Result<Option<Arc<SecretValue>>, SecretsError> {
    let (Some(field), Some(value)) = (field, value.as_ref()) else {
        return Ok(value);
    };
    if let Some(cached) = st.cached.as_ref()
        && let Some(v) = cached.fields.get(field)
        && cached.value.as_ref().is_some_and(|c| Arc::ptr_eq(c, value))
    {
        return Ok(Some(v.clone()));
    }
    let derived = Arc::new(field::select(value, name, field)?);
    if let Some(cached) = st.cached.as_mut()
        && cached.value.as_ref().is_some_and(|c| Arc::ptr_eq(c, value))
        && cached.fields.len() < MAX_FIELDS
    {
        cached.fields.insert(field.into(), derived.clone());
    }
    Ok(Some(derived))
}
