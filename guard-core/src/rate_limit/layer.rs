//! [`RateLimitLayer`], [`RateLimit`] and their [`ResponseFuture`]; [`RateLimitLayer::from_policy`].

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::num::{NonZeroU32, NonZeroUsize};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::key::{self, RateKey};
use super::{Backend, Decision, MemoryBackend, MemoryOptions, Rate, ceil_secs};
use crate::Policy;
use crate::future::BoxResponseFuture;
use crate::policy::{
    BackendChoice, MessageRateLimit, PolicyError, PolicyProblem, RateLimitKey, RateLimitPolicy,
};
use crate::rejection::{Rejection, RejectionKind};
use crate::request::{GuardRequest, GuardResponse};

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// Applies a GCRA limit per key. Cheap to clone; clones share the buckets.
///
/// ```
/// use std::num::NonZeroU32;
/// use guard_core::rate_limit::{MemoryBackend, Rate, RateLimitLayer, key};
/// let rate = Rate::per_minute(NonZeroU32::new(60).unwrap());
/// let layer = RateLimitLayer::new(MemoryBackend::new(rate), key::Global).with_label("global");
/// assert_eq!(layer.label(), "global");
/// ```
#[derive(Clone)]
pub struct RateLimitLayer {
    shared: Arc<Shared>,
}

#[derive(Clone)]
struct Shared {
    backend: Backend,
    key: Arc<dyn RateKey>,
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
    /// use guard_core::rate_limit::{MemoryBackend, Rate, RateLimitLayer, key::BucketKey};
    /// let rate = Rate::per_second(NonZeroU32::new(10).unwrap());
    /// let by_tenant = |req: &guard_core::GuardRequest| {
    ///     req.headers().get("x-tenant").and_then(|v| v.to_str().ok()).map(BucketKey::named)
    /// };
    /// let _layer = RateLimitLayer::new(MemoryBackend::new(rate), by_tenant);
    /// ```
    pub fn new(backend: impl Into<Backend>, key: impl RateKey) -> Self {
        RateLimitLayer {
            shared: Arc::new(Shared {
                backend: backend.into(),
                key: Arc::new(key),
                headers_on_allow: true,
                label: Cow::Borrowed("rate_limit"),
            }),
        }
    }

    /// A limiter with its own in-memory buckets (default options), counting by `key`.
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use guard_core::rate_limit::{Rate, RateLimitLayer, key};
    /// let _layer = RateLimitLayer::memory(Rate::per_second(NonZeroU32::new(5).unwrap()), key::Peer);
    /// ```
    pub fn memory(rate: Rate, key: impl RateKey) -> Self {
        Self::new(MemoryBackend::new(rate), key)
    }

    /// Whether admitted responses carry `RateLimit-Limit/Remaining/Reset` (default `true`).
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use guard_core::rate_limit::{Rate, RateLimitLayer, key};
    /// let layer = RateLimitLayer::memory(Rate::per_second(NonZeroU32::new(5).unwrap()), key::Peer)
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
    /// use guard_core::rate_limit::{Rate, RateLimitLayer, key};
    /// let layer = RateLimitLayer::memory(Rate::per_second(NonZeroU32::new(5).unwrap()), key::Peer)
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
    /// use guard_core::rate_limit::{Rate, RateLimitLayer, key};
    /// let layer = RateLimitLayer::memory(Rate::per_second(NonZeroU32::new(5).unwrap()), key::Peer);
    /// assert_eq!(layer.label(), "rate_limit");
    /// ```
    pub fn label(&self) -> &str {
        &self.shared.label
    }

    /// The backend (e.g. to read a Redis backend's allowed-on-error count).
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use guard_core::rate_limit::{Backend, Rate, RateLimitLayer, key};
    /// let layer = RateLimitLayer::memory(Rate::per_second(NonZeroU32::new(5).unwrap()), key::Peer);
    /// assert!(matches!(layer.backend(), Backend::Memory(_)));
    /// ```
    pub fn backend(&self) -> &Backend {
        &self.shared.backend
    }

    /// The layers the `[rate_limit]` section asks for, to be placed as the canonical stack does:
    /// `pre_auth` between ingress and verification (by peer by default), `post_auth` between
    /// verification and validation (by principal by default). No section: no layers.
    ///
    /// With a Redis backend both placements share one connection and use the key prefixes
    /// `<key_prefix>:pre:` and `<key_prefix>:post:` (`key_prefix` defaults to
    /// `guard:rl:<function name>`). Nothing connects before the first request.
    pub fn from_policy(policy: &Policy) -> Result<RateLimitLayers, PolicyError> {
        match &policy.rate_limit {
            None => Ok(RateLimitLayers::default()),
            Some(section) => Self::from_section(section, policy.function.name.as_deref()),
        }
    }

    /// Like [`from_policy`](Self::from_policy), with the secret store that holds
    /// `[rate_limit] password_secret` (a policy naming one is refused without a store).
    #[cfg(feature = "secrets")]
    pub fn from_policy_with_secrets(
        policy: &Policy,
        #[cfg_attr(not(feature = "redis"), allow(unused_variables))] secrets: Option<
            &crate::secrets::SecretStore,
        >,
    ) -> Result<RateLimitLayers, PolicyError> {
        match &policy.rate_limit {
            None => Ok(RateLimitLayers::default()),
            Some(section) => Self::build_section(
                section,
                policy.function.name.as_deref(),
                #[cfg(feature = "redis")]
                secrets,
            ),
        }
    }

    /// Like [`from_policy`](Self::from_policy), from the section alone; `function` names the
    /// default Redis key prefix.
    ///
    /// ```
    /// use guard_core::policy::RateLimitPolicy;
    /// use guard_core::rate_limit::RateLimitLayer;
    /// let err = RateLimitLayer::from_section(&RateLimitPolicy::default(), None).unwrap_err();
    /// assert_eq!(err.problems()[0].path, "rate_limit.per_second");
    /// ```
    pub fn from_section(
        section: &RateLimitPolicy,
        function: Option<&str>,
    ) -> Result<RateLimitLayers, PolicyError> {
        Self::build_section(
            section,
            function,
            #[cfg(feature = "redis")]
            None,
        )
    }

    fn build_section(
        section: &RateLimitPolicy,
        function: Option<&str>,
        #[cfg(feature = "redis")] secrets: Option<&crate::secrets::SecretStore>,
    ) -> Result<RateLimitLayers, PolicyError> {
        let mut problems = Vec::new();
        section.check("rate_limit", &mut problems);
        let count = section
            .per_second
            .or(section.per_minute)
            .and_then(NonZeroU32::new);
        let (Some(count), true) = (count, problems.is_empty()) else {
            if problems.is_empty() {
                problems.push(PolicyProblem::new(
                    "rate_limit.per_second",
                    "must be at least 1",
                ));
            }
            return Err(PolicyError::new(problems));
        };
        let mut rate = if section.per_second.is_some() {
            Rate::per_second(count)
        } else {
            Rate::per_minute(count)
        };
        if let Some(burst) = section.burst.and_then(NonZeroU32::new) {
            rate = rate.with_burst(burst);
        }
        let backends = Backends::new(
            section,
            function,
            #[cfg(feature = "redis")]
            secrets,
        )?;
        let build = |choice: RateLimitKey, placement: &'static str| {
            let key: Arc<dyn RateKey> = match choice {
                RateLimitKey::Off => return None,
                RateLimitKey::Global => messages(section.messages, key::Global),
                RateLimitKey::Peer => messages(section.messages, key::Peer),
                RateLimitKey::Principal => messages(section.messages, key::Principal),
            };
            Some(RateLimitLayer {
                shared: Arc::new(Shared {
                    backend: backends.build(rate, placement),
                    key,
                    headers_on_allow: true,
                    label: Cow::Borrowed(placement),
                }),
            })
        };
        Ok(RateLimitLayers {
            pre_auth: build(section.pre_auth, "pre_auth"),
            post_auth: build(section.post_auth, "post_auth"),
            #[cfg(feature = "redis")]
            replay: backends.replay_store(section),
        })
    }
}

/// What the policy's backend choice builds per placement.
enum Backends {
    Memory(MemoryOptions),
    #[cfg(feature = "redis")]
    Redis {
        conn: super::RedisConnection,
        prefix: String,
        failure_mode: super::FailureMode,
    },
}

impl Backends {
    fn new(
        section: &RateLimitPolicy,
        function: Option<&str>,
        #[cfg(feature = "redis")] secrets: Option<&crate::secrets::SecretStore>,
    ) -> Result<Self, PolicyError> {
        match section.backend_choice() {
            BackendChoice::Memory => {
                let max = usize::try_from(section.max_keys).unwrap_or(usize::MAX);
                let mut opts = MemoryOptions::default();
                if let Some(max) = NonZeroUsize::new(max) {
                    opts = opts.with_max_keys(max);
                }
                Ok(Backends::Memory(opts))
            }
            #[cfg(feature = "redis")]
            BackendChoice::Redis(url) => {
                let problem = |path: &str, msg: String| {
                    PolicyError::new(vec![PolicyProblem::new(format!("rate_limit.{path}"), msg)])
                };
                let mut builder = super::RedisConnection::builder(url)
                    .timeout(std::time::Duration::from_millis(section.timeout_ms))
                    .connect_timeout(std::time::Duration::from_millis(section.connect_timeout_ms))
                    .cluster(section.cluster);
                if let Some(user) = &section.username {
                    builder = builder.username(user);
                }
                if let Some(name) = &section.password_secret {
                    let store = secrets.ok_or_else(|| {
                        problem(
                            "password_secret",
                            "the password comes from the secret store: configure [secrets] or pass a store".into(),
                        )
                    })?;
                    builder = builder.password_secret(store.clone(), name);
                }
                if let Some(file) = &section.tls_ca_file {
                    let pem = std::fs::read(file).map_err(|e| {
                        problem(
                            "tls_ca_file",
                            format!("cannot read the CA file: {}", e.kind()),
                        )
                    })?;
                    builder = builder.tls_ca_pem(pem);
                }
                if section.tls_insecure_skip_verify_for_tests {
                    builder = builder.dangerous_skip_tls_verification_for_tests();
                }
                let conn = builder
                    .build()
                    .map_err(|e| problem("backend", e.to_string()))?;
                let prefix = section
                    .key_prefix
                    .clone()
                    .unwrap_or_else(|| format!("guard:rl:{}", function.unwrap_or("default")));
                Ok(Backends::Redis {
                    conn,
                    prefix,
                    failure_mode: section.failure_mode,
                })
            }
            #[cfg(not(feature = "redis"))]
            BackendChoice::Redis(_) => {
                let _ = function;
                Err(PolicyError::new(vec![PolicyProblem::new(
                    "rate_limit.backend",
                    "a Redis backend needs guard-core's `redis` feature",
                )]))
            }
        }
    }

    /// The Redis replay store on the limiters' connection: keys `<prefix>:replay:`, with the
    /// replica acknowledgements the section asks for.
    #[cfg(feature = "redis")]
    fn replay_store(&self, section: &RateLimitPolicy) -> Option<super::RedisReplayStore> {
        match self {
            Backends::Memory(_) => None,
            Backends::Redis { conn, prefix, .. } => Some(
                super::RedisReplayStore::new(conn.clone(), format!("{prefix}:replay:"))
                    .require_replicas(
                        section.replay_min_replicas,
                        std::time::Duration::from_millis(section.replay_replica_timeout_ms),
                    ),
            ),
        }
    }

    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    fn build(&self, rate: Rate, placement: &str) -> Backend {
        match self {
            Backends::Memory(opts) => MemoryBackend::with_options(rate, *opts).into(),
            #[cfg(feature = "redis")]
            Backends::Redis {
                conn,
                prefix,
                failure_mode,
            } => {
                let short = if placement == "pre_auth" {
                    "pre"
                } else {
                    "post"
                };
                let options = super::RedisOptions::default()
                    .with_key_prefix(format!("{prefix}:{short}:"))
                    .with_failure_mode(*failure_mode);
                super::RedisBackend::new(conn.clone(), rate, options).into()
            }
        }
    }
}

/// The layers built from a policy, for the builder to place (see [`RateLimitLayer::from_policy`]).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RateLimitLayers {
    /// Between ingress and verification.
    pub pre_auth: Option<RateLimitLayer>,
    /// Between verification and validation.
    pub post_auth: Option<RateLimitLayer>,
    /// With a Redis backend: the replay store on the same connection (keys
    /// `<key_prefix>:replay:`, `replay_min_replicas` applied), which the [`Guard`](crate::Guard)
    /// gives `[verify.hmac] replay` unless the caller passed a store of its own.
    #[cfg(feature = "redis")]
    pub replay: Option<super::RedisReplayStore>,
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

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

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
/// `inner` with the policy's rule for messages around it.
fn messages<K: RateKey>(rule: MessageRateLimit, inner: K) -> Arc<dyn RateKey> {
    match rule {
        MessageRateLimit::Exempt => Arc::new(key::Messages::exempt(inner)),
        MessageRateLimit::Source => Arc::new(key::Messages::by_source(inner)),
    }
}

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

pin_project! {
    /// The response future of [`RateLimit`]: a refusal at once, the inner future (adding the
    /// `RateLimit-*` headers), or — for the Redis backend — a boxed check-then-call.
    pub struct ResponseFuture<F, E> {
        #[pin]
        state: State<F, E>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, E> {
        Rejected { response: Option<GuardResponse> },
        Inner { #[pin] future: F, decision: Option<Decision> },
        Boxed { future: BoxResponseFuture<E> },
    }
}

impl<F, E> ResponseFuture<F, E> {
    fn rejected(response: GuardResponse) -> Self {
        ResponseFuture {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }

    fn inner(future: F, decision: Option<Decision>) -> Self {
        ResponseFuture {
            state: State::Inner { future, decision },
        }
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn boxed(future: BoxResponseFuture<E>) -> Self {
        ResponseFuture {
            state: State::Boxed { future },
        }
    }
}

impl<F, E> Future for ResponseFuture<F, E>
where
    F: Future<Output = Result<GuardResponse, E>>,
{
    type Output = Result<GuardResponse, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Rejected { response } => match response.take() {
                Some(r) => Poll::Ready(Ok(r)),
                None => Poll::Ready(Ok(crate::future::polled_after_completion())),
            },
            StateProj::Inner { future, decision } => match future.poll(cx) {
                Poll::Ready(Ok(mut resp)) => {
                    if let Some(d) = decision.take() {
                        add_allow_headers(&mut resp, &d);
                    }
                    Poll::Ready(Ok(resp))
                }
                other => other,
            },
            StateProj::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}

impl<F, E> fmt::Debug for ResponseFuture<F, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("rate_limit::ResponseFuture")
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

#[cfg(test)]
mod rate_limit_layers_from_policy_example {
    #[test]
    fn rate_limit_layers_from_policy() {
        use crate::Policy;
        use crate::rate_limit::RateLimitLayer;
        let policy = Policy::from_toml_str("[rate_limit]\nper_second = 5\nburst = 10").unwrap();
        let layers = RateLimitLayer::from_policy(&policy).unwrap();
        assert_eq!(layers.pre_auth.unwrap().label(), "pre_auth");
        assert_eq!(layers.post_auth.unwrap().label(), "post_auth");
        assert!(
            RateLimitLayer::from_policy(&Policy::default())
                .unwrap()
                .pre_auth
                .is_none()
        );
    }
}

#[cfg(test)]
mod rate_limit_layers_with_secrets_example {
    #[test]
    fn rate_limit_layers_with_secrets() {
        use crate::Policy;
        use crate::rate_limit::RateLimitLayer;
        let policy = Policy::from_toml_str("[rate_limit]\nper_second = 5").unwrap();
        assert!(
            RateLimitLayer::from_policy_with_secrets(&policy, None)
                .unwrap()
                .pre_auth
                .is_some()
        );
    }
}
