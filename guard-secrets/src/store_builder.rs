//! [`SecretStoreBuilder`]: a [`SecretStore`]'s settings, checked when it is built.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use crate::SecretSource;
use crate::store::{Config, SecretStore};
use crate::{SettingsError, WallClock};

/// Builds a [`SecretStore`]; see [`SecretStore`] for what each setting does.
///
/// ```
/// use std::time::Duration;
/// use guard_secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
///
/// let src = |_: &str, _: SecretVersion| -> Result<SecretValue, SecretsError> { Ok("v".into()) };
/// let err = SecretStore::builder(src)
///     .ttl(Duration::ZERO)
///     .fetch_timeout(Duration::ZERO)
///     .build()
///     .unwrap_err();
/// assert_eq!(err.problems().len(), 2);
/// ```
pub struct SecretStoreBuilder {
    source: Arc<dyn SecretSource>,
    clock: WallClock,
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
    /// A builder over `source` with the default settings and the system clock.
    pub(super) fn new(source: Arc<dyn SecretSource>) -> Self {
        Self {
            source,
            clock: WallClock::system(),
            config: Config::default(),
        }
    }

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

    /// The clock (default [`WallClock::system`]).
    pub fn clock(mut self, clock: WallClock) -> Self {
        self.clock = clock;
        self
    }

    /// Checks the settings (reporting every problem) and builds the store.
    pub fn build(self) -> Result<SecretStore, SettingsError> {
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
            return Err(SettingsError::new(problems));
        }
        Ok(SecretStore::from_parts(
            self.source,
            self.clock,
            self.config,
        ))
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
        SecretStoreBuilder::new(Arc::new(source))
    }
}
