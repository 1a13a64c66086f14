//! [`SecretStore`]: the rotation-safe cache in front of a [`SecretSource`].

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::WallClock;
use crate::slot::{Fetched, NameEntry, SlotState, age, lock, slot_index};
use crate::store_stats::{Counters, SecretStoreStats, SecretVersions, bump};
use crate::{SecretSource, SecretValue, SecretVersion, SecretsError, field};
/// Derived `name#field` values kept per cached value.
const MAX_FIELDS: usize = 64;

/// The settings a [`SecretStoreBuilder`](crate::SecretStoreBuilder) collects.
#[derive(Debug, Clone)]
pub(super) struct Config {
    pub(super) ttl: Duration,
    pub(super) refresh_ahead: Duration,
    pub(super) max_staleness: Duration,
    pub(super) retry_after_error: Duration,
    pub(super) fetch_timeout: Option<Duration>,
    pub(super) max_entries: NonZeroUsize,
    pub(super) force_refresh_interval: Duration,
    pub(super) previous_grace: Duration,
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

/// The secret cache in front of a [`SecretSource`], shared by the whole stack. Cheap to clone
/// (clones share the cache).
///
/// One store is shared by the whole stack (cheap to clone): the HMAC verifier asks it for keys, the
/// `SecretsLayer` (`guard_core::secrets`) hands named secrets to the handler.
///
/// | behaviour | default | builder |
/// |---|---|---|
/// | a fetched value is fresh for | 300 s | [`ttl`](crate::SecretStoreBuilder::ttl) |
/// | refresh in the background when a fresh value is this close to expiry | 30 s | [`refresh_ahead`](crate::SecretStoreBuilder::refresh_ahead) |
/// | on a *transient* error, keep serving an expired value for up to (after the TTL) | 15 min | [`max_staleness`](crate::SecretStoreBuilder::max_staleness) |
/// | after a failed fetch, do not ask the source again for | 1 s | [`retry_after_error`](crate::SecretStoreBuilder::retry_after_error) |
/// | a fetch that takes longer is a transient error | none (the source's own timeouts) | [`fetch_timeout`](crate::SecretStoreBuilder::fetch_timeout) |
/// | names kept (least recently used evicted) | 1024 | [`max_entries`](crate::SecretStoreBuilder::max_entries) |
/// | [`force_refresh`](SecretStore::force_refresh) at most once per name per | 10 s | [`force_refresh_interval`](crate::SecretStoreBuilder::force_refresh_interval) |
/// | a locally observed previous value stays available for | 1 h | [`previous_grace`](crate::SecretStoreBuilder::previous_grace) |
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
///   this store saw as current before the last change (for [`previous_grace`](crate::SecretStoreBuilder::previous_grace)).
/// - **JSON fields**: `get("db#password")` fetches `db` once, and selects the scalar field
///   `password` of the JSON object (strings as their UTF-8 bytes, numbers and booleans as their JSON
///   text). The parse never copies other fields' values.
/// - Time comes from an injected [`WallClock`] (tests use [`WallClock::fake_at_unix`]).
///   Refresh-ahead spawns on the current Tokio runtime (without one it is skipped and values are
///   refreshed when they expire); a [`fetch_timeout`](crate::SecretStoreBuilder::fetch_timeout) needs
///   the runtime's timers (`enable_time`, on in `#[tokio::main]` and the Lambda runtime).
///
/// ```
/// use std::time::Duration;
/// use guard_secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
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
    clock: WallClock,
    config: Config,
    names: RwLock<HashMap<Box<str>, Arc<NameEntry>>>,
    counters: Counters,
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
    /// The store a [`SecretStoreBuilder`](crate::SecretStoreBuilder) checked the settings of.
    pub(super) fn from_parts(
        source: Arc<dyn SecretSource>,
        clock: WallClock,
        config: Config,
    ) -> Self {
        SecretStore {
            inner: Arc::new(Inner {
                source,
                clock,
                config,
                names: RwLock::new(HashMap::new()),
                counters: Counters::default(),
            }),
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
    /// use guard_secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
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
        let (outcome, rotated) = {
            let mut st = lock(&entry.slots[slot_index(version)].state);
            st.attempts += 1;
            match result {
                Ok(value) => st.record_value(Arc::new(value), name, version, now),
                Err(SecretsError::NotFound { .. }) if version != SecretVersion::Current => {
                    (st.record_absent(now), false)
                }
                Err(e) if e.is_transient() => {
                    bump(&self.inner.counters.fetch_errors);
                    let usable_for = c.ttl.saturating_add(c.max_staleness);
                    (st.record_outage(e, name, version, now, usable_for), false)
                }
                Err(e) => {
                    bump(&self.inner.counters.fetch_errors);
                    (st.record_refusal(e, name, version, now), false)
                }
            }
        };
        if rotated {
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
