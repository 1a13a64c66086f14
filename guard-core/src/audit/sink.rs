//! Where security events go: [`SecuritySink`] and its implementations.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use super::event::SecurityEvent;

/// Receives one event per decision. Must not block: it runs on the request path.
/// Closures `Fn(SecurityEvent)` are sinks.
pub trait SecuritySink: Send + Sync + 'static {
    /// Takes the event.
    fn emit(&self, event: SecurityEvent);
}

impl<F> SecuritySink for F
where
    F: Fn(SecurityEvent) + Send + Sync + 'static,
{
    fn emit(&self, event: SecurityEvent) {
        self(event)
    }
}

impl<T: SecuritySink + ?Sized> SecuritySink for Arc<T> {
    fn emit(&self, event: SecurityEvent) {
        (**self).emit(event)
    }
}

#[derive(Debug, Default)]
struct Counters {
    dropped: AtomicU64,
    pending: AtomicU64,
    written: AtomicU64,
}

/// Writes each event as one JSON line from a background thread. The request path only moves the
/// event into a bounded queue; when the queue is full the event is dropped and counted (never a
/// stall). Cheap to clone; clones share the queue.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use guard_core::audit::JsonLinesSink;
///
/// let sink = JsonLinesSink::stdout(1024);
/// assert_eq!(sink.dropped(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct JsonLinesSink {
    tx: SyncSender<SecurityEvent>,
    counters: Arc<Counters>,
}

impl JsonLinesSink {
    /// Events go to standard output (what CloudWatch, Azure Monitor and Cloud Logging ingest).
    ///
    /// ```
    /// let sink = guard_core::audit::JsonLinesSink::stdout(4096);
    /// # let _ = sink;
    /// ```
    pub fn stdout(buffer: usize) -> Self {
        Self::new(std::io::stdout(), buffer)
    }

    /// Events go to `writer`, one JSON object per line, flushed after each line.
    ///
    /// ```
    /// let sink = guard_core::audit::JsonLinesSink::new(std::io::sink(), 16);
    /// # let _ = sink;
    /// ```
    pub fn new(writer: impl Write + Send + 'static, buffer: usize) -> Self {
        let (tx, rx) = sync_channel::<SecurityEvent>(buffer.max(1));
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let spawned = std::thread::Builder::new()
            .name("guard-audit".into())
            .spawn(move || {
                let mut writer = writer;
                let mut reported_drops = 0;
                let mut line = Vec::with_capacity(512);
                while let Ok(event) = rx.recv() {
                    line.clear();
                    if serde_json::to_writer(&mut line, &event).is_ok() {
                        line.push(b'\n');
                        let _ = writer.write_all(&line).and_then(|_| writer.flush());
                        c.written.fetch_add(1, Ordering::Relaxed);
                    }
                    c.pending.fetch_sub(1, Ordering::AcqRel);
                    let dropped = c.dropped.load(Ordering::Relaxed);
                    if dropped != reported_drops {
                        tracing::warn!(
                            target: "guard::audit",
                            dropped_total = dropped,
                            "security events dropped: the audit queue was full"
                        );
                        reported_drops = dropped;
                    }
                }
            });
        if spawned.is_err() {
            tracing::error!(target: "guard::audit", "cannot start the audit writer thread");
        }
        Self { tx, counters }
    }

    /// Events dropped because the queue was full (or the writer is gone).
    ///
    /// ```
    /// assert_eq!(guard_core::audit::JsonLinesSink::new(std::io::sink(), 1).dropped(), 0);
    /// ```
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Events written so far.
    ///
    /// ```
    /// assert_eq!(guard_core::audit::JsonLinesSink::new(std::io::sink(), 1).written(), 0);
    /// ```
    pub fn written(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }

    /// Waits (up to `timeout`) until every queued event is written; call it before a platform
    /// freezes the process (e.g. at the end of a Lambda invocation). Returns whether it drained.
    ///
    /// ```
    /// let sink = guard_core::audit::JsonLinesSink::new(std::io::sink(), 8);
    /// assert!(sink.flush(std::time::Duration::from_millis(100)));
    /// ```
    pub fn flush(&self, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            if self.counters.pending.load(Ordering::Acquire) == 0 {
                return true;
            }
            if start.elapsed() >= timeout {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

impl SecuritySink for JsonLinesSink {
    fn emit(&self, event: SecurityEvent) {
        self.counters.pending.fetch_add(1, Ordering::AcqRel);
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.pending.fetch_sub(1, Ordering::AcqRel);
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Emits each event as a `tracing` event on target `guard::security` (synchronously, through
/// whatever subscriber the application installed).
///
/// ```
/// let sink = guard_core::audit::TracingSink;
/// # let _ = sink;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingSink;

impl SecuritySink for TracingSink {
    fn emit(&self, e: SecurityEvent) {
        let outcome = match e.outcome {
            super::Outcome::Allow => "allow",
            super::Outcome::Deny => "deny",
        };
        tracing::info!(
            target: "guard::security",
            event = %e.event,
            outcome,
            code = %e.code,
            status = e.status,
            layer = %e.layer,
            reason = e.reason.as_deref(),
            cloud = %e.cloud,
            function = e.function.as_deref(),
            request_id = e.request_id.as_deref(),
            trace_id = e.trace_id.as_deref(),
            trigger = %e.trigger,
            source_id = e.source_id.as_deref(),
            peer = e.peer.as_deref(),
            principal = e.principal.as_deref(),
            latency_us = e.latency_us,
        );
    }
}
