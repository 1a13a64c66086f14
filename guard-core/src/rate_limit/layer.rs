//! [`RateLimitLayer`], [`RateLimit`] and their [`ResponseFuture`].

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::key::RateKey;
use super::{Decision, MemoryBackend, Rate, ceil_secs};
use crate::future::{BoxResponseFuture, MaybeBoxFuture};
use crate::rejection::{Rejection, RejectionKind};
use crate::request::{GuardRequest, GuardResponse};

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// Where the buckets live: what [`RateLimitLayer::new`] takes, built from a [`MemoryBackend`]
/// or (feature `redis`) a `RedisBackend` (public but not exported: users pass either backend).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Backend {
    /// Buckets in this process.
    Memory(MemoryBackend),
    /// Buckets in Redis, shared by every instance.
    #[cfg(feature = "redis")]
    Redis(super::RedisBackend),
}

impl From<MemoryBackend> for Backend {
    fn from(m: MemoryBackend) -> Self {
        Backend::Memory(m)
    }
}

#[cfg(feature = "redis")]
impl From<super::RedisBackend> for Backend {
    fn from(r: super::RedisBackend) -> Self {
        Backend::Redis(r)
    }
}

/// Applies a GCRA limit per key. Cheap to clone; clones share the buckets.
///
/// ```
/// use std::num::NonZeroU32;
/// use guard_core::rate_limit::{MemoryBackend, Rate, RateLimitLayer, key::RateKey};
/// let rate = Rate::per_minute(NonZeroU32::new(60).unwrap());
/// let layer = RateLimitLayer::new(MemoryBackend::new(rate), RateKey::global()).with_label("global");
/// assert_eq!(layer.label(), "global");
/// ```
#[derive(Clone)]
pub struct RateLimitLayer {
    shared: Arc<Shared>,
}

#[derive(Clone)]
struct Shared {
    backend: Backend,
    key: RateKey,
    headers_on_allow: bool,
    label: Cow<'static, str>,
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("label", &self.shared.label)
            .field("backend", &self.shared.backend)
            .field("headers_on_allow", &self.shared.headers_on_allow)
            .finish()
    }
}

impl RateLimitLayer {
    /// A limiter on `backend`, counting by `key`.
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use guard_core::rate_limit::{MemoryBackend, Rate, RateLimitLayer, key::{BucketKey, RateKey}};
    /// let rate = Rate::per_second(NonZeroU32::new(10).unwrap());
    /// let by_tenant = RateKey::custom(|req| {
    ///     req.headers().get("x-tenant").and_then(|v| v.to_str().ok()).map(BucketKey::named)
    /// });
    /// let _layer = RateLimitLayer::new(MemoryBackend::new(rate), by_tenant);
    /// ```
    pub fn new(backend: impl Into<Backend>, key: RateKey) -> Self {
        RateLimitLayer {
            shared: Arc::new(Shared {
                backend: backend.into(),
                key,
                headers_on_allow: true,
                label: Cow::Borrowed("rate_limit"),
            }),
        }
    }

    /// A limiter with its own in-memory buckets (default options), counting by `key`.
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use guard_core::rate_limit::{Rate, RateLimitLayer, key::RateKey};
    /// let _layer = RateLimitLayer::memory(Rate::per_second(NonZeroU32::new(5).unwrap()), RateKey::peer());
    /// ```
    pub fn memory(rate: Rate, key: RateKey) -> Self {
        Self::new(MemoryBackend::new(rate), key)
    }

    /// Whether admitted responses carry `RateLimit-Limit/Remaining/Reset` (default `true`).
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use guard_core::rate_limit::{Rate, RateLimitLayer, key::RateKey};
    /// let layer = RateLimitLayer::memory(Rate::per_second(NonZeroU32::new(5).unwrap()), RateKey::peer())
    ///     .headers_on_allow(false);
    /// # let _ = layer;
    /// ```
    pub fn headers_on_allow(mut self, on: bool) -> Self {
        Arc::make_mut(&mut self.shared).headers_on_allow = on;
        self
    }

    /// A name for this placement in logs and security-event reasons (`pre_auth`, `post_auth`...).
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use guard_core::rate_limit::{Rate, RateLimitLayer, key::RateKey};
    /// let layer = RateLimitLayer::memory(Rate::per_second(NonZeroU32::new(5).unwrap()), RateKey::peer())
    ///     .with_label("pre_auth");
    /// assert_eq!(layer.label(), "pre_auth");
    /// ```
    pub fn with_label(mut self, label: impl Into<Cow<'static, str>>) -> Self {
        Arc::make_mut(&mut self.shared).label = label.into();
        self
    }

    /// The label.
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use guard_core::rate_limit::{Rate, RateLimitLayer, key::RateKey};
    /// let layer = RateLimitLayer::memory(Rate::per_second(NonZeroU32::new(5).unwrap()), RateKey::peer());
    /// assert_eq!(layer.label(), "rate_limit");
    /// ```
    pub fn label(&self) -> &str {
        &self.shared.label
    }

    /// A limiter the builder assembled, `label` its placement.
    pub(crate) fn from_parts(backend: Backend, key: RateKey, label: &'static str) -> Self {
        RateLimitLayer {
            shared: Arc::new(Shared {
                backend,
                key,
                headers_on_allow: true,
                label: Cow::Borrowed(label),
            }),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service built by [`RateLimitLayer`].
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("label", &self.shared.label)
            .finish()
    }
}

crate::macros::inner_service_accessors!(RateLimit);

impl<S> Service<GuardRequest> for RateLimit<S>
where
    S: Service<GuardRequest, Response = GuardResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = GuardResponse;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    crate::macros::poll_ready_from_inner!();

    fn call(&mut self, req: GuardRequest) -> Self::Future {
        let Some(key) = self.shared.key.key(&req) else {
            return ResponseFuture::inner(self.inner.call(req), None);
        };
        match &self.shared.backend {
            Backend::Memory(mem) => {
                let d = mem.check(&key);
                if d.allowed {
                    let headers = self.shared.headers_on_allow.then_some(d);
                    ResponseFuture::inner(self.inner.call(req), headers)
                } else {
                    ResponseFuture::rejected(refusal(&d, &self.shared.label))
                }
            }
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => {
                use super::redis::Verdict;
                // Take the service that was driven to readiness; leave a clone in its place.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let redis = redis.clone();
                let shared = self.shared.clone();
                ResponseFuture::boxed(Box::pin(async move {
                    match redis.decide(&key, &shared.label).await {
                        Verdict::Decided(d) if d.allowed => {
                            let mut resp = inner.call(req).await?;
                            if shared.headers_on_allow {
                                add_allow_headers(&mut resp, &d);
                            }
                            Ok(resp)
                        }
                        Verdict::Decided(d) => Ok(refusal(&d, &shared.label)),
                        Verdict::AdmittedOnError => {
                            let mut resp = inner.call(req).await?;
                            resp.extensions_mut().insert(super::AdmittedOnBackendError);
                            Ok(resp)
                        }
                        Verdict::Unavailable => {
                            Ok(Rejection::new(RejectionKind::RateBackendUnavailable)
                                .with_header(
                                    http::header::RETRY_AFTER,
                                    HeaderValue::from_static("1"),
                                )
                                .with_reason(format!(
                                    "rate-limit backend unavailable, failing closed ({})",
                                    shared.label
                                ))
                                .into_response())
                        }
                    }
                }))
            }
        }
    }
}

/// The 429 for a refused decision.
fn refusal(d: &Decision, label: &str) -> GuardResponse {
    Rejection::new(RejectionKind::RateLimited)
        .with_header(
            http::header::RETRY_AFTER,
            number(ceil_secs(d.retry_after).max(1)),
        )
        .with_header(RATELIMIT_LIMIT, number(d.limit.into()))
        .with_header(RATELIMIT_REMAINING, number(0))
        .with_header(RATELIMIT_RESET, number(ceil_secs(d.reset)))
        .with_reason(format!("rate limit exceeded ({label})"))
        .into_response()
}

/// Adds `RateLimit-*` to an admitted response unless a stacked limiter already set fewer remaining.
fn add_allow_headers(resp: &mut GuardResponse, d: &Decision) {
    let headers = resp.headers_mut();
    let existing = headers
        .get(&RATELIMIT_REMAINING)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok());
    if existing.is_some_and(|r| r <= d.remaining) {
        return;
    }
    headers.insert(RATELIMIT_LIMIT, number(d.limit.into()));
    headers.insert(RATELIMIT_REMAINING, number(d.remaining.into()));
    headers.insert(RATELIMIT_RESET, number(ceil_secs(d.reset)));
}

/// The decimal numbers 0 to 999 written back to back ("0123456789101112..."), so that the small
/// counts of the `RateLimit-*` headers become header values without a heap allocation.
static SMALL_NUMBERS: [u8; 2890] = small_numbers();

const fn small_numbers() -> [u8; 2890] {
    let mut out = [0u8; 2890];
    let (mut n, mut i) = (0usize, 0usize);
    while n < 1000 {
        if n >= 100 {
            out[i] = b'0' + (n / 100) as u8;
            i += 1;
        }
        if n >= 10 {
            out[i] = b'0' + (n / 10 % 10) as u8;
            i += 1;
        }
        out[i] = b'0' + (n % 10) as u8;
        i += 1;
        n += 1;
    }
    out
}

/// `n` as a header value: borrowed from [`SMALL_NUMBERS`] below 1000 (no allocation), formatted
/// otherwise. The bytes are the same either way.
fn number(n: u64) -> HeaderValue {
    let (start, len) = match n {
        0..=9 => (n as usize, 1),
        10..=99 => (10 + 2 * (n as usize - 10), 2),
        100..=999 => (190 + 3 * (n as usize - 100), 3),
        _ => return HeaderValue::from(n),
    };
    match std::str::from_utf8(&SMALL_NUMBERS[start..start + len]) {
        Ok(s) => HeaderValue::from_static(s),
        Err(_) => HeaderValue::from(n),
    }
}

crate::macros::opaque_future! {
    /// The response future of [`RateLimit`]: a refusal at once, the inner future (adding the
    /// `RateLimit-*` headers), or — for the Redis backend — a boxed check-then-call.
    pub type ResponseFuture<F, E> = MaybeBoxFuture<WithAllowHeaders<F>, E>;
}

pin_project! {
    /// The inner service's future, adding the `RateLimit-*` headers of the decision that admitted
    /// the request (when there is one) to its response.
    pub(crate) struct WithAllowHeaders<F> {
        #[pin]
        future: F,
        decision: Option<Decision>,
    }
}

impl<F, E> Future for WithAllowHeaders<F>
where
    F: Future<Output = Result<GuardResponse, E>>,
{
    type Output = Result<GuardResponse, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.future.poll(cx) {
            Poll::Ready(Ok(mut resp)) => {
                if let Some(d) = this.decision.take() {
                    add_allow_headers(&mut resp, &d);
                }
                Poll::Ready(Ok(resp))
            }
            other => other,
        }
    }
}

impl<F, E> ResponseFuture<F, E> {
    fn rejected(response: GuardResponse) -> Self {
        Self::new(MaybeBoxFuture::rejected(response))
    }

    fn inner(future: F, decision: Option<Decision>) -> Self {
        Self::new(MaybeBoxFuture::inner(WithAllowHeaders { future, decision }))
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn boxed(future: BoxResponseFuture<E>) -> Self {
        Self::new(MaybeBoxFuture::boxed(future))
    }
}

#[cfg(test)]
mod tests {
    use super::number;

    #[test]
    fn header_numbers_spell_every_value_like_the_formatter() {
        for n in (0..=1200u64).chain([u64::from(u32::MAX), u64::MAX]) {
            assert_eq!(number(n), http::HeaderValue::from(n), "{n}");
        }
    }
}
