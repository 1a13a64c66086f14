//! [`AuditLayer`]: the outermost layer; one [`SecurityEvent`] per request.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use pin_project_lite::pin_project;
use tower_layer::Layer;

use super::record::Record;
use super::sink::{JsonLinesSink, SecuritySink, TracingSink};
use crate::future::CheckFuture;
use crate::request::{
    AdapterRefusal, GuardRequest, GuardResponse, Invocation, Peer, TraceContext, Trigger,
    VerifiedSlot,
};
use crate::{Rejection, RejectionKind};

/// Longest user-controlled string kept in an event unless [`AuditLayer::max_field_len`] says
/// otherwise (`[audit] max_field_len` has the same default).
pub(crate) const DEFAULT_MAX_FIELD_LEN: usize = 256;

/// Records one security event per request, allowed or denied, with the latency. Cheap to clone.
///
/// A request carrying an [`AdapterRefusal`] (a stand-in for an event the adapter could not
/// decode) is answered here with its rejection and recorded like any refusal; the inner service
/// is not called.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use bytes::Bytes;
/// use guard_core::audit::{AuditLayer, SecurityEvent};
/// use tower::{Layer, Service, ServiceExt, service_fn};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let seen = Arc::new(Mutex::new(Vec::<SecurityEvent>::new()));
/// let s = seen.clone();
/// let layer = AuditLayer::new(move |e: SecurityEvent| s.lock().unwrap().push(e));
/// let mut svc = layer.layer(service_fn(|_req: http::Request<Bytes>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(Bytes::new()))
/// }));
/// svc.ready().await.unwrap().call(http::Request::new(Bytes::new())).await.unwrap();
/// assert_eq!(seen.lock().unwrap()[0].code, "guard.allow");
/// # });
/// ```
#[derive(Clone)]
pub struct AuditLayer {
    sink: Arc<dyn SecuritySink>,
    /// Set when `sink` is a [`JsonLinesSink`]: the request path then hands it the raw
    /// [`Record`], and the event is built (strings copied, sanitized) on the writer thread.
    lines: Option<JsonLinesSink>,
    max_field_len: usize,
    /// The function's name for events whose request names none (`[function] name`).
    function: Option<Arc<str>>,
    /// Which allowed decisions are recorded (denials always are).
    sample: Arc<AllowSampler>,
}

/// Keeps a fixed share of allowed decisions, deterministically: of every run of
/// `1_000_000 / per_million` decisions one is kept, spread evenly (no random number needed, and the
/// share is exact over any window).
#[derive(Debug)]
struct AllowSampler {
    per_million: u64,
    seen: AtomicU64,
}

impl AllowSampler {
    fn new(rate: f64) -> Self {
        let rate = if rate.is_finite() {
            rate.clamp(0.0, 1.0)
        } else {
            1.0
        };
        Self {
            per_million: (rate * 1_000_000.0).round() as u64,
            seen: AtomicU64::new(0),
        }
    }

    /// Whether this allowed decision is recorded: decision `n` is when `⌊(n+1)·r⌋ > ⌊n·r⌋`.
    fn keep(&self) -> bool {
        match self.per_million {
            1_000_000 => true,
            0 => false,
            r => {
                let n = u128::from(self.seen.fetch_add(1, Ordering::Relaxed));
                let r = u128::from(r);
                (n + 1) * r / 1_000_000 > n * r / 1_000_000
            }
        }
    }
}

impl std::fmt::Debug for AuditLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLayer")
            .field("max_field_len", &self.max_field_len)
            .field("function", &self.function)
            .field("allow_sample_per_million", &self.sample.per_million)
            .finish_non_exhaustive()
    }
}

impl AuditLayer {
    /// Events go out as `tracing` events on target `guard::security` (synchronously, through
    /// whatever subscriber the application installed), one field per event field.
    ///
    /// ```
    /// let layer = guard_core::audit::AuditLayer::tracing();
    /// # let _ = layer;
    /// ```
    pub fn tracing() -> Self {
        Self::new(TracingSink)
    }

    /// Events go to `sink`; user-controlled strings are capped at 256 bytes.
    ///
    /// ```
    /// let sink = guard_core::audit::JsonLinesSink::new(std::io::sink(), 16);
    /// let layer = guard_core::audit::AuditLayer::new(sink);
    /// # let _ = layer;
    /// ```
    pub fn new(sink: impl SecuritySink) -> Self {
        let lines = (&sink as &dyn std::any::Any)
            .downcast_ref::<JsonLinesSink>()
            .cloned();
        Self {
            sink: Arc::new(sink),
            lines,
            max_field_len: DEFAULT_MAX_FIELD_LEN,
            function: None,
            sample: Arc::new(AllowSampler::new(1.0)),
        }
    }

    /// Longest user-controlled string kept in an event (at least 16 bytes).
    ///
    /// ```
    /// let layer = guard_core::audit::AuditLayer::tracing().max_field_len(64);
    /// # let _ = layer;
    /// ```
    pub fn max_field_len(mut self, len: usize) -> Self {
        self.max_field_len = len.max(16);
        self
    }

    /// The function's logical name (`[function] name`), recorded in every event. It takes the
    /// place of the name the platform reports (the deployed name, e.g. `aws-orders`), so one
    /// function carries one name in the SIEM whichever cloud it runs on.
    ///
    /// ```
    /// let layer = guard_core::audit::AuditLayer::tracing()
    ///     .function_name("shop-orders-prod-intake");
    /// assert_eq!(layer.function(), Some("shop-orders-prod-intake"));
    /// ```
    pub fn function_name(mut self, name: impl AsRef<str>) -> Self {
        self.function = Some(Arc::from(name.as_ref()));
        self
    }

    /// Records only this share (0.0 to 1.0, default 1.0) of *allowed* decisions, evenly spread;
    /// denials are always recorded. A value outside the range is clamped, NaN means 1.0.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use bytes::Bytes;
    /// use guard_core::audit::{AuditLayer, SecurityEvent};
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let seen = Arc::new(Mutex::new(0));
    /// let s = seen.clone();
    /// let layer = AuditLayer::new(move |_: SecurityEvent| *s.lock().unwrap() += 1).sample_allowed(0.25);
    /// let svc = layer.layer(service_fn(|_req: http::Request<Bytes>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(Bytes::new()))
    /// }));
    /// for _ in 0..8 {
    ///     svc.clone().oneshot(http::Request::new(Bytes::new())).await.unwrap();
    /// }
    /// assert_eq!(*seen.lock().unwrap(), 2);
    /// # });
    /// ```
    pub fn sample_allowed(mut self, rate: f64) -> Self {
        self.sample = Arc::new(AllowSampler::new(rate));
        self
    }

    /// The name set with [`function_name`](Self::function_name).
    pub fn function(&self) -> Option<&str> {
        self.function.as_deref()
    }

    /// Blocks until every event recorded so far is written, or `timeout` passes; `true` when all
    /// were written. For platforms that freeze or throttle the instance once the response is sent
    /// (Lambda, Cloud Run): call it before answering. [`JsonLinesSink`] writes the queued lines
    /// on the calling thread.
    /// With OTLP export installed (feature `otlp`), the spans ended so far are exported too.
    ///
    /// ```
    /// let layer = guard_core::audit::AuditLayer::new(guard_core::audit::JsonLinesSink::new(std::io::sink(), 8));
    /// assert!(layer.flush(std::time::Duration::from_millis(100)));
    /// ```
    pub fn flush(&self, timeout: Duration) -> bool {
        #[cfg(feature = "otlp")]
        let start = Instant::now();
        let events = match &self.lines {
            Some(lines) => lines.flush(timeout),
            None => self.sink.flush(timeout),
        };
        // With OTLP export installed, the spans ended so far go out in what is left of the budget.
        #[cfg(feature = "otlp")]
        let events = crate::otel::otlp::flush(timeout.saturating_sub(start.elapsed())) && events;
        events
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Audit {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service produced by [`AuditLayer`].
#[derive(Clone, Debug)]
pub struct Audit<S> {
    inner: S,
    layer: AuditLayer,
}

crate::macros::inner_service_accessors!(Audit);

thread_local! {
    /// One emptied principal slot per thread, kept for the next request so that the slot costs
    /// no allocation in the steady state. Only a slot nothing else holds any more is kept (see
    /// `VerifiedSlot::reset`), so a principal cannot reach another request's event through it.
    static SPARE_SLOT: std::cell::Cell<Option<VerifiedSlot>> = const { std::cell::Cell::new(None) };
}

/// What the event needs from the request, captured before the request moves inward.
struct Pending {
    sink: Arc<dyn SecuritySink>,
    lines: Option<JsonLinesSink>,
    sample: Arc<AllowSampler>,
    /// The invocation's server span (feature `otel`), closed with the decision.
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    span: InvocationSpan,
    start: Instant,
    /// Filled by the verification layer inside, once (and only if) it accepted the request.
    verified: VerifiedSlot,
    record: Record,
}

impl Pending {
    /// Copies what the event needs from `req`, and puts an empty principal slot on it (replacing
    /// any slot it carried: a principal never reaches the event of another request).
    fn capture(layer: &AuditLayer, req: &mut GuardRequest) -> Self {
        let verified = SPARE_SLOT.take().unwrap_or_default();
        req.extensions_mut().insert(verified.clone());
        let inv = req.extensions().get::<Invocation>();
        let trigger = req.extensions().get::<Trigger>();
        Pending {
            sink: layer.sink.clone(),
            lines: layer.lines.clone(),
            sample: layer.sample.clone(),
            span: open_span(layer, req),
            start: Instant::now(),
            verified,
            record: Record {
                max: layer.max_field_len,
                cloud: inv.map(|i| i.cloud).unwrap_or_default(),
                function: layer
                    .function
                    .clone()
                    .or_else(|| inv.and_then(|i| i.function.as_deref()).map(Arc::from)),
                request_id: inv.and_then(|i| i.request_id.clone()),
                trace_id: inv
                    .and_then(|i| i.trace_id.clone())
                    .or_else(|| TraceContext::from_headers(req.headers()).map(|t| t.into_ids().0)),
                trigger: match trigger {
                    None | Some(Trigger::Http) => Cow::Borrowed("http"),
                    Some(Trigger::Direct) => Cow::Borrowed("direct"),
                    Some(t) => Cow::Owned(t.name().to_owned()),
                },
                source_id: trigger.and_then(|t| t.source_id()).map(str::to_owned),
                peer: req.extensions().get::<Peer>().map(|p| p.ip()),
                method: matches!(trigger, None | Some(Trigger::Http)).then(|| req.method().clone()),
                status: 0,
                denial: None,
                principal: None,
                latency_us: 0,
            },
        }
    }

    /// Hands the event to the sink. `verified`: whether the request reached an answer (the
    /// principal is recorded then, not for errors and cancellations).
    fn finish(self, status: u16, denial: Option<&Rejection>, verified: bool) {
        #[cfg(feature = "otel")]
        crate::otel::record_decision(&self.span, status, denial);
        let mut record = self.record;
        let mut slot = self.verified;
        record.status = status;
        record.denial = denial.cloned();
        record.principal = if verified { slot.take() } else { None };
        if let Some(empty) = slot.reset() {
            SPARE_SLOT.set(Some(empty));
        }
        record.latency_us = self.start.elapsed().as_micros().min(u64::MAX as u128) as u64;
        if denial.is_none() && !self.sample.keep() {
            return;
        }
        match &self.lines {
            Some(lines) => lines.emit_record(record),
            None => self.sink.emit(record.into_event()),
        }
    }
}

/// The invocation's server span: a `tracing::Span` with feature `otel`, nothing without.
#[cfg(feature = "otel")]
type InvocationSpan = tracing::Span;
#[cfg(not(feature = "otel"))]
type InvocationSpan = ();

#[cfg(feature = "otel")]
fn open_span(layer: &AuditLayer, req: &GuardRequest) -> InvocationSpan {
    crate::otel::invocation_span(req, layer.function.as_deref())
}

#[cfg(not(feature = "otel"))]
fn open_span(_: &AuditLayer, _: &GuardRequest) -> InvocationSpan {}

/// Emits the event exactly once: when the response (or error) arrives, or — if the future is
/// dropped first (timeout, cancellation) — on drop, as an internal denial.
struct Emit(Option<Pending>);

impl Drop for Emit {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let denial = Rejection::new(RejectionKind::Internal)
                .with_reason("request cancelled before a response");
            p.finish(499, Some(&denial), false);
        }
    }
}

pin_project! {
    /// The response future of [`Audit`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: CheckFuture<F>,
        emit: Emit,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<GuardResponse, E>>,
{
    type Output = Result<GuardResponse, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The handler runs inside the invocation's span (its own spans become children).
        #[cfg(feature = "otel")]
        let _entered = this.emit.0.as_ref().map(|p| p.span.enter());
        let out = std::task::ready!(this.inner.poll(cx));
        #[cfg(feature = "otel")]
        drop(_entered);
        if let Some(p) = this.emit.0.take() {
            match &out {
                Ok(resp) => p.finish(
                    resp.status().as_u16(),
                    resp.extensions().get::<Rejection>(),
                    true,
                ),
                Err(_) => p.finish(
                    500,
                    Some(
                        &Rejection::new(RejectionKind::Internal).with_reason("inner service error"),
                    ),
                    false,
                ),
            }
        }
        Poll::Ready(out)
    }
}

crate::macros::forwarding_service! {
    impl for Audit<S> {
        type Future = ResponseFuture<S::Future>;

        fn call(&mut self, mut req: GuardRequest) -> Self::Future {
            let pending = Pending::capture(&self.layer, &mut req);
            #[cfg(feature = "otel")]
            let span = pending.span.clone();
            #[cfg(feature = "otel")]
            let _entered = span.enter();
            // A stand-in for an event the adapter refused: answered and recorded here, never passed on.
            let inner = match req.extensions().get::<AdapterRefusal>() {
                Some(refusal) => CheckFuture::rejected(refusal.rejection().into_response()),
                None => CheckFuture::inner(self.inner.call(req)),
            };
            ResponseFuture {
                inner,
                emit: Emit(Some(pending)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use bytes::Bytes;
    use tower::ServiceExt;

    use super::*;
    use crate::audit::SecurityEvent;
    use crate::request::Principal;
    use crate::request::PrincipalKind;

    #[tokio::test]
    async fn a_slot_filled_for_another_request_never_reaches_the_event() {
        let seen = Arc::new(Mutex::new(Vec::<SecurityEvent>::new()));
        let s = seen.clone();
        let layer = AuditLayer::new(move |e: SecurityEvent| s.lock().unwrap().push(e));
        let handler = tower::service_fn(|_req: GuardRequest| async {
            Ok::<_, std::convert::Infallible>(GuardResponse::new(Bytes::new()))
        });
        // A request that carries the (filled) slot of an earlier request, as if its extensions
        // had been copied: the audit layer replaces it with a fresh one, so nothing is recorded.
        let stale = VerifiedSlot::default();
        stale.fill(&Principal::new(PrincipalKind::Jwt, "someone-else"));
        let mut req = GuardRequest::new(Bytes::new());
        req.extensions_mut().insert(stale);
        layer.layer(handler).oneshot(req).await.unwrap();
        assert_eq!(seen.lock().unwrap()[0].principal, None);
    }
}
