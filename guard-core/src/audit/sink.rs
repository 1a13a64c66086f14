//! Where security events go: [`SecuritySink`] and its implementations.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::event::SecurityEvent;
use super::record::Record;

/// Receives one event per decision. Must not block: it runs on the request path.
/// Closures `Fn(SecurityEvent)` are sinks.
pub trait SecuritySink: Send + Sync + 'static {
    /// Takes the event.
    fn emit(&self, event: SecurityEvent);

    /// Blocks until every event taken so far is written, or `timeout` passes; `true` when all
    /// were. Sinks that write in [`emit`](Self::emit) have nothing pending (the default).
    fn flush(&self, timeout: Duration) -> bool {
        let _ = timeout;
        true
    }
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
    fn flush(&self, timeout: Duration) -> bool {
        (**self).flush(timeout)
    }
}

/// How long the writer sleeps when it has nothing to do; a fuller queue or a flush wakes it early.
const IDLE_WAIT: Duration = Duration::from_millis(5);

/// What waits in the queue: an event, or the raw record of one from [`AuditLayer`](super::AuditLayer)
/// (built into an event by the writer, off the request path).
enum Queued {
    Event(SecurityEvent),
    Record(Record),
}

impl Queued {
    fn into_event(self) -> SecurityEvent {
        match self {
            Queued::Event(e) => e,
            Queued::Record(r) => r.into_event(),
        }
    }

    /// Appends the event as one JSON line in `format`.
    fn write_line(self, format: LineFormat, line: &mut Vec<u8>) {
        let written = match format {
            LineFormat::Guard => serde_json::to_writer(&mut *line, &self.into_event()),
            #[cfg(feature = "ocsf")]
            LineFormat::Ocsf => {
                let method = match &self {
                    Queued::Record(r) => r.method.clone(),
                    Queued::Event(_) => None,
                };
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                let event = self.into_event();
                serde_json::to_writer(
                    &mut *line,
                    &super::ocsf::to_ocsf(&event, method.as_ref(), now),
                )
            }
        };
        if written.is_ok() {
            line.push(b'\n');
        }
    }
}

/// The shape of each line a [`JsonLinesSink`] writes.
#[derive(Debug, Clone, Copy)]
enum LineFormat {
    /// [`SecurityEvent`]'s own fields.
    Guard,
    /// OCSF API Activity (see [`ocsf`](super::ocsf)).
    #[cfg(feature = "ocsf")]
    Ocsf,
}

/// The queue between the request path and the writer thread, and its counters.
struct SinkQueue {
    queue: Mutex<VecDeque<Queued>>,
    capacity: usize,
    wake: Condvar,
    dropped: AtomicU64,
    /// Events accepted but not yet written (queued or being written).
    pending: AtomicU64,
    written: AtomicU64,
    /// Events the writer failed to write (the output returned an error).
    failed: AtomicU64,
    /// The output and its buffers, held by whoever drains: the writer thread, or a caller of
    /// [`JsonLinesSink::flush`] (which writes on its own thread rather than waiting for the
    /// writer to be scheduled).
    output: Mutex<Output>,
}

/// The writer side of the sink.
struct Output {
    writer: Box<dyn Write + Send>,
    /// Swapped with the queue under its lock (O(1)), so a request never waits behind a long copy.
    batch: VecDeque<Queued>,
    line: Vec<u8>,
    reported_drops: u64,
    format: LineFormat,
}

impl std::fmt::Debug for SinkQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkQueue")
            .field("capacity", &self.capacity)
            .field("dropped", &self.dropped)
            .field("pending", &self.pending)
            .field("written", &self.written)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl SinkQueue {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Queued>> {
        // A writer that panicked mid-write leaves the queue usable: keep going.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes everything queued so far through `out` (whose lock the caller holds).
    fn drain(&self, out: &mut Output) {
        if out.batch.capacity() == 0 {
            // The queue gets this deque back: give it the queue's room, so pushes never regrow it.
            out.batch.reserve(self.capacity.min(1 << 16));
        }
        std::mem::swap(&mut *self.lock(), &mut out.batch);
        if out.batch.is_empty() {
            return;
        }
        let n = out.batch.len() as u64;
        let Output {
            writer,
            batch,
            line,
            reported_drops,
            format,
        } = out;
        line.clear();
        for queued in batch.drain(..) {
            queued.write_line(*format, line);
        }
        match writer.write_all(line).and_then(|_| writer.flush()) {
            Ok(()) => self.written.fetch_add(n, Ordering::Relaxed),
            Err(e) => {
                let failed = self.failed.fetch_add(n, Ordering::Relaxed) + n;
                tracing::warn!(
                    target: "guard::audit",
                    failed_total = failed,
                    error = %e.kind(),
                    "security events could not be written"
                );
                failed
            }
        };
        self.pending.fetch_sub(n, Ordering::AcqRel);
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped != *reported_drops {
            tracing::warn!(
                target: "guard::audit",
                dropped_total = dropped,
                "security events dropped: the audit queue was full"
            );
            *reported_drops = dropped;
        }
    }
}

/// Writes each event as one JSON line from a background thread.
///
/// The request path only pushes the event into a bounded queue (no formatting, no I/O, and no
/// wake-up system call: the writer drains the queue every few milliseconds, sooner when the queue
/// is half full). [`flush`](Self::flush) writes what is queued on the caller's thread. When the queue is full the event is dropped and
/// counted — the request is never stalled. Cheap to clone; clones share the queue.
///
/// ```
/// use guard_core::audit::JsonLinesSink;
///
/// let sink = JsonLinesSink::stdout(1024);
/// assert_eq!(sink.dropped(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct JsonLinesSink {
    shared: Arc<SinkQueue>,
}

impl JsonLinesSink {
    /// Events buffered by default before new ones are dropped (`[audit] buffer` has the same
    /// default).
    pub(crate) const DEFAULT_BUFFER: usize = 4096;

    /// Events go to standard output (what CloudWatch, Azure Monitor and Cloud Logging ingest).
    ///
    /// ```
    /// let sink = guard_core::audit::JsonLinesSink::stdout(4096);
    /// # let _ = sink;
    /// ```
    pub fn stdout(buffer: usize) -> Self {
        Self::new(std::io::stdout(), buffer)
    }

    /// Events go to `writer`, one JSON object per line, flushed after each batch.
    ///
    /// ```
    /// let sink = guard_core::audit::JsonLinesSink::new(std::io::sink(), 16);
    /// # let _ = sink;
    /// ```
    pub fn new(writer: impl Write + Send + 'static, buffer: usize) -> Self {
        Self::with_format(writer, buffer, LineFormat::Guard)
    }

    /// Like [`new`](Self::new), each event written as an OCSF 1.5.0 API Activity (class 6003)
    /// with the Security Control profile (feature `ocsf`; the mapping is documented in the
    /// `audit::ocsf` module).
    ///
    /// ```
    /// let sink = guard_core::audit::JsonLinesSink::ocsf(std::io::stdout(), 4096);
    /// # let _ = sink;
    /// ```
    #[cfg(feature = "ocsf")]
    pub fn ocsf(writer: impl Write + Send + 'static, buffer: usize) -> Self {
        Self::with_format(writer, buffer, LineFormat::Ocsf)
    }

    fn with_format(writer: impl Write + Send + 'static, buffer: usize, format: LineFormat) -> Self {
        let capacity = buffer.max(1);
        let shared = Arc::new(SinkQueue {
            queue: Mutex::new(VecDeque::with_capacity(capacity.min(1 << 16))),
            capacity,
            wake: Condvar::new(),
            dropped: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            written: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            output: Mutex::new(Output {
                writer: Box::new(writer),
                batch: VecDeque::new(),
                line: Vec::with_capacity(512),
                reported_drops: 0,
                format,
            }),
        });
        // The writer holds only a weak reference, so it stops once every sink clone is gone.
        let weak = Arc::downgrade(&shared);
        let spawned = std::thread::Builder::new()
            .name("guard-audit".into())
            .spawn(move || write_loop(weak));
        if spawned.is_err() {
            tracing::error!(target: "guard::audit", "cannot start the audit writer thread");
        }
        Self { shared }
    }

    /// Events dropped because the queue was full.
    ///
    /// ```
    /// assert_eq!(guard_core::audit::JsonLinesSink::new(std::io::sink(), 1).dropped(), 0);
    /// ```
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Events written so far.
    ///
    /// ```
    /// assert_eq!(guard_core::audit::JsonLinesSink::new(std::io::sink(), 1).written(), 0);
    /// ```
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Events the output refused (a write or flush returned an error); they are not retried.
    ///
    /// ```
    /// assert_eq!(guard_core::audit::JsonLinesSink::new(std::io::sink(), 1).failed(), 0);
    /// ```
    pub fn failed(&self) -> u64 {
        self.shared.failed.load(Ordering::Relaxed)
    }

    /// Writes every queued event on the calling thread and returns once all are written, or
    /// after `timeout` (while the writer thread holds the output, or the output blocks); call it
    /// before a platform freezes the process (the end of a Lambda invocation). Returns whether it
    /// drained. No thread hand-off: the cost is formatting the lines and one write.
    ///
    /// ```
    /// let sink = guard_core::audit::JsonLinesSink::new(std::io::sink(), 8);
    /// assert!(sink.flush(std::time::Duration::from_millis(100)));
    /// ```
    pub fn flush(&self, timeout: Duration) -> bool {
        let shared = &*self.shared;
        let start = Instant::now();
        loop {
            if shared.pending.load(Ordering::Acquire) == 0 {
                return true;
            }
            match shared.output.try_lock() {
                Ok(mut out) => shared.drain(&mut out),
                Err(std::sync::TryLockError::Poisoned(p)) => shared.drain(&mut p.into_inner()),
                // The writer thread is writing a batch: it may hold some of ours.
                Err(std::sync::TryLockError::WouldBlock) => {
                    if start.elapsed() >= timeout {
                        return false;
                    }
                    std::thread::sleep(Duration::from_micros(20));
                    continue;
                }
            }
            if shared.pending.load(Ordering::Acquire) == 0 {
                return true;
            }
            if start.elapsed() >= timeout {
                return false;
            }
        }
    }
}

impl JsonLinesSink {
    /// Queues the raw record of a decision; the writer builds the event (see [`Record`]).
    pub(super) fn emit_record(&self, record: Record) {
        self.push(Queued::Record(record));
    }

    fn push(&self, event: Queued) {
        let shared = &*self.shared;
        let mut queue = shared.lock();
        if queue.len() >= shared.capacity {
            drop(queue);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        queue.push_back(event);
        let len = queue.len();
        shared.pending.fetch_add(1, Ordering::AcqRel);
        drop(queue);
        if len == shared.capacity.div_ceil(2) {
            shared.wake.notify_one();
        }
    }
}

impl SecuritySink for JsonLinesSink {
    fn emit(&self, event: SecurityEvent) {
        self.push(Queued::Event(event));
    }
    fn flush(&self, timeout: Duration) -> bool {
        JsonLinesSink::flush(self, timeout)
    }
}

fn write_loop(shared: std::sync::Weak<SinkQueue>) {
    loop {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        {
            let queue = shared.lock();
            let _ = shared
                .wake
                .wait_timeout_while(queue, IDLE_WAIT, |q| q.is_empty())
                .unwrap_or_else(|p| p.into_inner());
        }
        let mut out = shared.output.lock().unwrap_or_else(|p| p.into_inner());
        shared.drain(&mut out);
    }
}

/// Emits each event as a `tracing` event on target `guard::security` (synchronously, through
/// whatever subscriber the application installed): [`AuditLayer::tracing`](super::AuditLayer::tracing).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TracingSink;

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
