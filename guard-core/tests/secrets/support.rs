//! A scriptable, counting secret source and a log capture for the layer tests.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use guard_secrets::{SecretSource, SecretValue, SecretVersion, SecretsError};

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

    /// Every fetch fails with `err`.
    pub(crate) fn fail_with(&self, err: SecretsError) {
        *self.state.failure.lock().unwrap() = Some(err);
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
