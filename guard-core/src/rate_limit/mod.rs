//! Rate limiting: [`RateLimitLayer`], GCRA buckets in memory or shared through Redis.
//!
//! A limit is a [`Rate`] — `per_second` or `per_minute` plus a `burst`, all `NonZeroU32` — counted
//! per [`RateKey`](key::RateKey): [`global`](key::RateKey::global), [`peer`](key::RateKey::peer)
//! (IPv4 by address, IPv6 by /64, from the platform-observed `Peer` extension only),
//! [`principal`](key::RateKey::principal) (after verification) or
//! [`custom`](key::RateKey::custom). The canonical stack places the layer twice (`[rate_limit]` in
//! the policy, see [`Guard`](crate::Guard)): before verification by peer, so unauthenticated floods
//! are cut before any signature or token work, and after it by principal.
//!
//! ## Answers
//!
//! The layer answers at once; it never holds requests back through `poll_ready`.
//!
//! - **Refused**: 429 `guard.rate.limited` with `Retry-After` (seconds until one request will be
//!   admitted, rounded up, at least 1) and `RateLimit-Limit` (the burst), `RateLimit-Remaining` (0)
//!   and `RateLimit-Reset` (seconds, rounded up, until the whole burst is back). For message
//!   triggers, the adapters turn any non-2xx into "retry this record", so a 429 means redelivery.
//! - **Admitted**: by default the handler's response also carries the three `RateLimit-*` headers
//!   (clients can pace themselves). When two limiters are stacked, the one with the fewest remaining
//!   requests wins. Turn this off with [`RateLimitLayer::headers_on_allow`].
//!
//! ## Backends
//!
//! | backend | shared by | clock | on failure |
//! |---|---|---|---|
//! | [`MemoryBackend`] (default) | one function instance | injectable ([`WallClock::fake_at_unix`](crate::clock::WallClock::fake_at_unix) in tests) | cannot fail |
//! | `RedisBackend` (feature `redis`) | every instance using the same Redis and key prefix | the Redis server's | [`FailureMode::Open`] (default: admit, count, log) or [`FailureMode::Closed`] (503 `guard.rate.backend_unavailable`) |
//!
//! In serverless every instance has its own memory: with the memory backend the effective limit
//! is the configured one times the number of warm instances. The Redis backend runs one atomic Lua
//! GCRA script per check (one round trip) and so enforces one limit for all of them.
//!
//! ```
//! use std::num::NonZeroU32;
//! use bytes::Bytes;
//! use guard_core::rate_limit::{RateLimitLayer, Rate, key};
//! use guard_core::request::Peer;
//! use tower::{Layer, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let rate = Rate::per_second(NonZeroU32::new(5).unwrap()).with_burst(NonZeroU32::new(2).unwrap());
//! let mut svc = RateLimitLayer::memory(rate, key::RateKey::peer()).layer(tower::service_fn(|_req| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(Bytes::from_static(b"ok")))
//! }));
//! let request = || {
//!     let mut req = http::Request::new(Bytes::new());
//!     req.extensions_mut().insert(Peer::new("203.0.113.7".parse().unwrap()));
//!     req
//! };
//! assert_eq!(svc.ready().await.unwrap().call(request()).await.unwrap().status(), 200);
//! assert_eq!(svc.ready().await.unwrap().call(request()).await.unwrap().status(), 200);
//! let refused = svc.ready().await.unwrap().call(request()).await.unwrap();
//! assert_eq!(refused.status(), 429);
//! assert_eq!(refused.headers()["retry-after"], "1");
//! assert_eq!(refused.headers()["ratelimit-limit"], "2");
//! # }
//! ```

pub mod key;
mod layer;
mod memory;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
mod replay_redis;

use std::num::NonZeroU32;
use std::time::Duration;

/// What to do when the shared (Redis) backend cannot answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum FailureMode {
    /// Admit the request, count it and log a warning (availability first; the default).
    #[default]
    Open,
    /// Refuse with 503 `guard.rate.backend_unavailable`.
    Closed,
}

/// For the builder (it needs every layer: with fewer features it is not read).
#[allow(unused_imports)]
pub(crate) use layer::Backend;
pub use layer::RateLimitLayer;
pub use memory::MemoryBackend;
/// For the builder (it needs every layer: with fewer features it is not read).
#[allow(unused_imports)]
pub(crate) use memory::MemoryOptions;
#[cfg(feature = "redis")]
pub use redis::{
    AdmittedOnBackendError, RedisBackend, RedisBackendError, RedisConnection,
    RedisConnectionBuilder,
};
#[cfg(feature = "redis")]
pub use replay_redis::RedisReplayStore;

/// A GCRA limit: a sustained rate and a burst.
///
/// ```
/// use std::num::NonZeroU32;
/// use std::time::Duration;
/// use guard_core::rate_limit::Rate;
/// let r = Rate::per_second(NonZeroU32::new(5).unwrap()).with_burst(NonZeroU32::new(10).unwrap());
/// assert_eq!(r.emission_interval(), Duration::from_millis(200));
/// assert_eq!(r.burst().get(), 10);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    count: NonZeroU32,
    per: Duration,
    burst: NonZeroU32,
}

impl Rate {
    /// `count` requests per second; the burst is `count` until changed.
    ///
    /// ```
    /// let r = guard_core::rate_limit::Rate::per_second(std::num::NonZeroU32::new(4).unwrap());
    /// assert_eq!(r.burst().get(), 4);
    /// ```
    pub const fn per_second(count: NonZeroU32) -> Self {
        Rate {
            count,
            per: Duration::from_secs(1),
            burst: count,
        }
    }

    /// `count` requests per minute; the burst is `count` until changed.
    ///
    /// ```
    /// let r = guard_core::rate_limit::Rate::per_minute(std::num::NonZeroU32::new(60).unwrap());
    /// assert_eq!(r.emission_interval(), std::time::Duration::from_secs(1));
    /// ```
    pub const fn per_minute(count: NonZeroU32) -> Self {
        Rate {
            count,
            per: Duration::from_secs(60),
            burst: count,
        }
    }

    /// The same rate with another burst (requests admitted at once from a full bucket).
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// let r = guard_core::rate_limit::Rate::per_second(NonZeroU32::new(5).unwrap())
    ///     .with_burst(NonZeroU32::new(1).unwrap());
    /// assert_eq!(r.burst().get(), 1);
    /// ```
    pub const fn with_burst(mut self, burst: NonZeroU32) -> Self {
        self.burst = burst;
        self
    }

    /// The burst.
    ///
    /// ```
    /// let r = guard_core::rate_limit::Rate::per_second(std::num::NonZeroU32::new(2).unwrap());
    /// assert_eq!(r.burst().get(), 2);
    /// ```
    pub const fn burst(&self) -> NonZeroU32 {
        self.burst
    }

    /// Requests per [`period`](Self::period).
    ///
    /// ```
    /// let r = guard_core::rate_limit::Rate::per_second(std::num::NonZeroU32::new(2).unwrap());
    /// assert_eq!(r.count().get(), 2);
    /// ```
    pub const fn count(&self) -> NonZeroU32 {
        self.count
    }

    /// One second or one minute.
    ///
    /// ```
    /// let r = guard_core::rate_limit::Rate::per_minute(std::num::NonZeroU32::new(2).unwrap());
    /// assert_eq!(r.period().as_secs(), 60);
    /// ```
    pub const fn period(&self) -> Duration {
        self.per
    }

    /// The time one token takes to come back (`period / count`, at least 1 ns).
    ///
    /// ```
    /// let r = guard_core::rate_limit::Rate::per_second(std::num::NonZeroU32::new(3).unwrap());
    /// assert_eq!(r.emission_interval().as_nanos(), 333_333_333);
    /// ```
    pub fn emission_interval(&self) -> Duration {
        self.quota().replenish_interval()
    }

    pub(crate) fn quota(&self) -> governor::Quota {
        let q = if self.per == Duration::from_secs(60) {
            governor::Quota::per_minute(self.count)
        } else {
            governor::Quota::per_second(self.count)
        };
        q.allow_burst(self.burst)
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// Whether the request was admitted (and a token taken).
    pub allowed: bool,
    /// The burst: the most requests admitted at once.
    pub limit: u32,
    /// Requests that would be admitted right now after this one.
    pub remaining: u32,
    /// When refused: the wait until one request will be admitted. Zero when admitted.
    pub retry_after: Duration,
    /// The wait until the whole burst is available again (an upper bound).
    pub reset: Duration,
}

/// Whole seconds, rounded up.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceil_secs_rounds_up() {
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn per_minute_quota_matches_the_rate() {
        let r = Rate::per_minute(NonZeroU32::new(30).unwrap()).with_burst(NonZeroU32::MIN);
        assert_eq!(r.emission_interval(), Duration::from_secs(2));
        assert_eq!(r.quota().burst_size(), NonZeroU32::MIN);
    }
}
