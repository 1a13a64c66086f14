//! The cache entry of one secret name: a slot per version, and how a fetch's outcome is recorded
//! in it.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::{SecretValue, SecretVersion, SecretsError};

/// The `tracing` target of the store's log lines.
pub(super) const TARGET: &str = "guard::secrets";

/// Everything cached for one secret name: one slot per version.
pub(super) struct NameEntry {
    pub(super) slots: [Slot; 3],
    pub(super) last_access_nanos: AtomicU64,
}

#[derive(Default)]
pub(super) struct Slot {
    pub(super) state: Mutex<SlotState>,
    /// Held while fetching: the single flight.
    pub(super) fetch_lock: tokio::sync::Mutex<()>,
}

#[derive(Default)]
pub(super) struct SlotState {
    pub(super) cached: Option<Cached>,
    pub(super) last_error: Option<(SecretsError, SystemTime)>,
    /// Completed fetch attempts (lets waiters see that a fetch happened while they waited).
    pub(super) attempts: u64,
    pub(super) refreshing: bool,
    pub(super) in_outage: bool,
    pub(super) last_forced: Option<SystemTime>,
    /// The value this slot held before the last change (current slot only).
    pub(super) observed_previous: Option<(Arc<SecretValue>, SystemTime)>,
}

pub(super) struct Cached {
    /// `None`: the source says this version does not exist (never for the current version).
    pub(super) value: Option<Arc<SecretValue>>,
    pub(super) fetched_at: SystemTime,
    pub(super) fields: HashMap<Box<str>, Arc<SecretValue>>,
}

/// The outcome of a fetch: a new value, or (transient failure) the cached value still usable.
pub(super) enum Fetched {
    Fresh(Option<Arc<SecretValue>>),
    Stale(Option<Arc<SecretValue>>, SecretsError),
}

pub(super) fn slot_index(v: SecretVersion) -> usize {
    match v {
        SecretVersion::Current => 0,
        SecretVersion::Previous => 1,
        SecretVersion::Pending => 2,
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn age(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or(Duration::ZERO)
}

impl SlotState {
    /// A value arrived: cache it. Returns whether it replaced a different current value (the
    /// source rotated), remembering the old one as the observed previous value.
    pub(super) fn record_value(
        &mut self,
        value: Arc<SecretValue>,
        name: &str,
        version: SecretVersion,
        now: SystemTime,
    ) -> (Result<Fetched, SecretsError>, bool) {
        let mut rotated = false;
        if version == SecretVersion::Current
            && let Some(old) = self.cached.as_ref().and_then(|c| c.value.clone())
            && *old != *value
        {
            self.observed_previous = Some((old, now));
            rotated = true;
        }
        self.cached = Some(Cached {
            value: Some(value.clone()),
            fetched_at: now,
            fields: HashMap::new(),
        });
        self.last_error = None;
        if self.in_outage {
            self.in_outage = false;
            tracing::info!(target: TARGET, secret = name, version = ?version, "secret source recovered");
        }
        (Ok(Fetched::Fresh(Some(value))), rotated)
    }

    /// The source says this (non-current) version does not exist: an answer, cached like a value.
    pub(super) fn record_absent(&mut self, now: SystemTime) -> Result<Fetched, SecretsError> {
        self.cached = Some(Cached {
            value: None,
            fetched_at: now,
            fields: HashMap::new(),
        });
        self.last_error = None;
        self.in_outage = false;
        Ok(Fetched::Fresh(None))
    }

    /// A transient failure: the cached value is served while younger than `usable_for`, else the
    /// error; a warning is logged once per outage.
    pub(super) fn record_outage(
        &mut self,
        e: SecretsError,
        name: &str,
        version: SecretVersion,
        now: SystemTime,
        usable_for: Duration,
    ) -> Result<Fetched, SecretsError> {
        self.last_error = Some((e.clone(), now));
        let usable = self
            .cached
            .as_ref()
            .filter(|cached| age(now, cached.fetched_at) < usable_for);
        let stale = usable.map(|cached| cached.value.clone());
        if !self.in_outage {
            self.in_outage = true;
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

    /// Not found / access denied: a revoked secret is not served from the cache.
    pub(super) fn record_refusal(
        &mut self,
        e: SecretsError,
        name: &str,
        version: SecretVersion,
        now: SystemTime,
    ) -> Result<Fetched, SecretsError> {
        self.cached = None;
        self.last_error = Some((e.clone(), now));
        self.in_outage = false;
        tracing::warn!(target: TARGET, secret = name, version = ?version, error = %e,
            "secret cannot be read: failing closed");
        Err(e)
    }
}
