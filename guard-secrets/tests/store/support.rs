//! A scriptable, counting secret source and a log capture for the store tests (guard-core's
//! `SecretsLayer` tests include this file too).

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use guard_secrets::{
    SecretSource, SecretStore, SecretStoreBuilder, SecretValue, SecretVersion, SecretsError,
    WallClock,
};

/// The current and the rotated-in value of the tests' secrets.
pub(crate) const V1: &str = "s3cr3t-v1-7f3a91";
pub(crate) const V2: &str = "s3cr3t-v2-c04e55";

pub(crate) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A store over `src` on `clock`: TTL 100 s, no refresh ahead, stale for up to 600 s, 5 s between
/// retries after an error.
pub(crate) fn builder(src: &FakeSource, clock: &WallClock) -> SecretStoreBuilder {
    SecretStore::builder(src.clone())
        .clock(clock.clone())
        .ttl(secs(100))
        .refresh_ahead(Duration::ZERO)
        .max_staleness(secs(600))
        .retry_after_error(secs(5))
}

/// Settings the store refuses, three of them: refresh ahead not shorter than the TTL, a zero fetch
/// timeout, a zero forced-refresh interval.
pub(crate) fn three_bad_settings() -> SecretStoreBuilder {
    SecretStore::builder(FakeSource::new())
        .ttl(secs(10))
        .refresh_ahead(secs(10))
        .fetch_timeout(Duration::ZERO)
        .force_refresh_interval(Duration::ZERO)
}

/// Whether `v` holds `expected`.
pub(crate) fn is(v: &SecretValue, expected: &str) -> bool {
    v.expose_bytes() == expected.as_bytes()
}

/// A source whose answers the test sets, counting every fetch.
#[derive(Clone, Default)]
pub(crate) struct FakeSource {
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    fetches: AtomicUsize,
    values: Mutex<HashMap<(String, SecretVersion), String>>,
    failure: Mutex<Option<SecretsError>>,
    delay: Mutex<Duration>,
}

impl FakeSource {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Sets `version` of `name`.
    pub(crate) fn set(&self, name: &str, version: SecretVersion, value: &str) {
        self.state
            .values
            .lock()
            .unwrap()
            .insert((name.to_string(), version), value.to_string());
    }

    /// Sets the current version of `name`.
    pub(crate) fn set_current(&self, name: &str, value: &str) {
        self.set(name, SecretVersion::Current, value);
    }

    /// Removes every version of `name` (the next fetch says "not found").
    pub(crate) fn remove(&self, name: &str) {
        self.state
            .values
            .lock()
            .unwrap()
            .retain(|(n, _), _| n != name);
    }

    /// Every fetch fails with `err` until [`heal`](Self::heal).
    pub(crate) fn fail_with(&self, err: SecretsError) {
        *self.state.failure.lock().unwrap() = Some(err);
    }

    pub(crate) fn heal(&self) {
        *self.state.failure.lock().unwrap() = None;
    }

    /// Each fetch takes this long (real time).
    pub(crate) fn delay(&self, d: Duration) {
        *self.state.delay.lock().unwrap() = d;
    }

    pub(crate) fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }
}

impl SecretSource for FakeSource {
    fn fetch<'a>(
        &'a self,
        name: &'a str,
        version: SecretVersion,
    ) -> BoxFuture<'a, Result<SecretValue, SecretsError>> {
        Box::pin(async move {
            self.state.fetches.fetch_add(1, Ordering::SeqCst);
            let delay = *self.state.delay.lock().unwrap();
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if let Some(e) = self.state.failure.lock().unwrap().clone() {
                return Err(e);
            }
            match self
                .state
                .values
                .lock()
                .unwrap()
                .get(&(name.to_string(), version))
            {
                Some(v) => Ok(SecretValue::from(v.as_str())),
                None => Err(SecretsError::not_found(name)),
            }
        })
    }
}

/// Log lines written while a capture is installed.
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs a subscriber (for this thread) that records every event at TRACE and above.
pub(crate) fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}
