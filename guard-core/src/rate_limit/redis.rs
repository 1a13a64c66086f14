//! The shared backend: GCRA in one atomic Lua script on Redis (feature `redis`).
//!
//! - **One round trip per check.** The script reads the bucket's theoretical arrival time (TAT),
//!   decides, and writes the new TAT in one `EVALSHA`; Redis runs scripts one at a time, so
//!   concurrent checks from every instance are serialised exactly. (The first call after Redis lost
//!   its script cache — a restart — takes one more round trip: `NOSCRIPT`, then `EVAL`.)
//! - **Redis's clock.** Time comes from `TIME` inside the script, so instances with skewed clocks
//!   still share one timeline.
//! - **Keys always expire.** Every write sets `PX` to the time the bucket needs to be full again
//!   (at most `burst × interval`), so a crash, a config change or an abandoned key can never leave a
//!   permanent block, and idle buckets cost nothing.
//! - **Connections.** One multiplexed connection per [`RedisConnection`] (clones share it, and
//!   every limiter and the replay store of an instance can use the same one): Redis serves
//!   pipelined commands from one socket faster than from a pool. It is opened on first use and
//!   re-opened automatically after an error; each check has a total time budget.
//! - **Failures.** When Redis cannot answer within the budget, [`FailureMode::Open`] (default)
//!   admits the request, counts it ([`RedisBackend::allowed_on_error`]), logs a warning on target
//!   `guard::rate_limit` and marks the response with [`AdmittedOnBackendError`];
//!   [`FailureMode::Closed`] answers 503 `guard.rate.backend_unavailable`.
//!
//! ```no_run
//! use std::num::NonZeroU32;
//! use std::time::Duration;
//! use guard_core::rate_limit::{FailureMode, Rate, RateLimitLayer, RedisBackend, RedisConnection,
//!     RedisOptions, key};
//!
//! let conn = RedisConnection::open("redis://cache.internal:6379", Duration::from_millis(50),
//!     Duration::from_secs(1))?;
//! let rate = Rate::per_second(NonZeroU32::new(5).unwrap()).with_burst(NonZeroU32::new(10).unwrap());
//! let options = RedisOptions::default()
//!     .with_key_prefix("guard:rl:orders:peer:")
//!     .with_failure_mode(FailureMode::Closed);
//! let layer = RateLimitLayer::new(RedisBackend::new(conn, rate, options), key::Peer);
//! # let _ = layer;
//! # Ok::<(), guard_core::rate_limit::RedisBackendError>(())
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::key::BucketKey;
use super::{Decision, FailureMode, Rate};

/// GCRA, all times in microseconds of the Redis server's clock.
/// KEYS[1] = bucket; ARGV[1] = emission interval T; ARGV[2] = tolerance tau = T·(burst − 1).
/// Returns {1, remaining, reset} when admitted, {0, retry_after, reset} when refused.
const GCRA_LUA: &str = r"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local t = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if (not tat) or tat < now then
  tat = now
end
local allow_at = tat - tau
if now < allow_at then
  return {0, allow_at - now, tat - now}
end
local new_tat = tat + t
local ttl_ms = math.ceil((new_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', string.format('%d', ttl_ms))
local remaining = math.floor((now + tau + t - new_tat) / t)
if remaining < 0 then
  remaining = 0
end
return {1, remaining, new_tat - now}
";

static GCRA: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(GCRA_LUA));

/// Why Redis could not answer. Never carries the URL, keys or values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedisBackendError {
    /// The URL cannot be used (the URL itself is not repeated: it may hold a password).
    #[error("not a valid Redis URL (expected redis://host:port[/db])")]
    InvalidUrl,
    /// No answer within the time budget.
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    /// The connection could not be made or was lost.
    #[error("Redis connection failed ({0})")]
    Connection(&'static str),
    /// Redis answered with an error (its code, e.g. `OOM`, `READONLY`, `NOSCRIPT`).
    #[error("Redis refused the command ({0})")]
    Server(String),
    /// The reply did not have the expected shape.
    #[error("unexpected reply from Redis")]
    Reply,
}

impl From<redis::RedisError> for RedisBackendError {
    fn from(e: redis::RedisError) -> Self {
        if e.is_timeout() {
            RedisBackendError::Connection("timed out")
        } else if e.is_connection_refusal() {
            RedisBackendError::Connection("refused")
        } else if e.is_connection_dropped() {
            RedisBackendError::Connection("dropped")
        } else if e.is_io_error() {
            RedisBackendError::Connection("i/o error")
        } else if let Some(code) = e.code() {
            RedisBackendError::Server(code.chars().take(32).collect())
        } else {
            match e.kind() {
                redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType => {
                    RedisBackendError::Reply
                }
                redis::ErrorKind::AuthenticationFailed => {
                    RedisBackendError::Connection("authentication failed")
                }
                _ => RedisBackendError::Connection("client error"),
            }
        }
    }
}

/// A lazily opened, self-healing, multiplexed connection to one Redis. Cheap to clone.
#[derive(Clone)]
pub struct RedisConnection {
    inner: Arc<ConnInner>,
}

struct ConnInner {
    client: redis::Client,
    manager: OnceLock<ConnectionManager>,
    timeout: Duration,
    connect_timeout: Duration,
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The address only; never the password.
        let addr = self.inner.client.get_connection_info().addr().to_string();
        f.debug_struct("RedisConnection")
            .field("addr", &addr)
            .field("timeout", &self.inner.timeout)
            .finish()
    }
}

impl RedisConnection {
    /// Parses `url` (`redis://[:password@]host:port[/db]`); connects on first use. `timeout` bounds
    /// every command including any (re)connection; `connect_timeout` bounds one connection attempt.
    /// Zero durations are raised to 1 ms. Checks must run on a Tokio runtime with timers enabled
    /// (`enable_all()`, as `lambda_runtime` and `#[tokio::main]` do).
    ///
    /// ```
    /// use std::time::Duration;
    /// use guard_core::rate_limit::RedisConnection;
    /// assert!(RedisConnection::open("redis://127.0.0.1:6379/0", Duration::from_millis(50), Duration::from_secs(1)).is_ok());
    /// assert!(RedisConnection::open("http://nope", Duration::from_millis(50), Duration::from_secs(1)).is_err());
    /// ```
    pub fn open(
        url: &str,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Self, RedisBackendError> {
        let client = redis::Client::open(url).map_err(|_| RedisBackendError::InvalidUrl)?;
        let floor = Duration::from_millis(1);
        Ok(RedisConnection {
            inner: Arc::new(ConnInner {
                client,
                manager: OnceLock::new(),
                timeout: timeout.max(floor),
                connect_timeout: connect_timeout.max(floor),
            }),
        })
    }

    /// The time budget of one command.
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = guard_core::rate_limit::RedisConnection::open("redis://127.0.0.1", Duration::from_millis(50), Duration::from_secs(1)).unwrap();
    /// assert_eq!(c.timeout(), Duration::from_millis(50));
    /// ```
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The connection manager, created (not yet connected) on first use. Must run inside Tokio.
    fn manager(&self) -> Result<ConnectionManager, RedisBackendError> {
        if let Some(m) = self.inner.manager.get() {
            return Ok(m.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.inner.connect_timeout))
            .set_response_timeout(Some(self.inner.timeout))
            // Fail fast: a failed reconnection fails the waiting commands (the failure mode
            // decides), and the next command starts a new attempt.
            .set_number_of_retries(0);
        let m = ConnectionManager::new_lazy_with_config(self.inner.client.clone(), config)?;
        let _ = self.inner.manager.set(m);
        self.inner
            .manager
            .get()
            .cloned()
            .ok_or(RedisBackendError::Connection("client error"))
    }

    /// Runs `f` on the connection within the time budget.
    pub(crate) async fn run<T, F, Fut>(&self, f: F) -> Result<T, RedisBackendError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let manager = self.manager()?;
        match tokio::time::timeout(self.inner.timeout, f(manager)).await {
            Ok(result) => result.map_err(RedisBackendError::from),
            Err(_) => Err(RedisBackendError::Timeout(self.inner.timeout)),
        }
    }
}

/// Options of a [`RedisBackend`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Prepended to every bucket key. Give each limit its own (default `guard:rl:`).
    pub key_prefix: String,
    /// What to do when Redis cannot answer (default [`FailureMode::Open`]).
    pub failure_mode: FailureMode,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            key_prefix: "guard:rl:".into(),
            failure_mode: FailureMode::Open,
        }
    }
}

impl RedisOptions {
    /// The same options with another key prefix.
    ///
    /// ```
    /// let o = guard_core::rate_limit::RedisOptions::default().with_key_prefix("app:rl:");
    /// assert_eq!(o.key_prefix, "app:rl:");
    /// ```
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// The same options with another failure mode.
    ///
    /// ```
    /// use guard_core::rate_limit::{FailureMode, RedisOptions};
    /// let o = RedisOptions::default().with_failure_mode(FailureMode::Closed);
    /// assert_eq!(o.failure_mode, FailureMode::Closed);
    /// ```
    pub fn with_failure_mode(mut self, mode: FailureMode) -> Self {
        self.failure_mode = mode;
        self
    }
}

/// GCRA buckets in Redis, shared by every instance using the same Redis and key prefix.
/// Cheap to clone; clones share the connection and the allowed-on-error count.
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<RedisInner>,
}

struct RedisInner {
    conn: RedisConnection,
    rate: Rate,
    options: RedisOptions,
    t_us: u64,
    tau_us: u64,
    allowed_on_error: AtomicU64,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("conn", &self.inner.conn)
            .field("rate", &self.inner.rate)
            .field("options", &self.inner.options)
            .finish()
    }
}

/// Response extension on a request admitted only because the backend failed open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmittedOnBackendError;

/// What the layer does with a check.
pub(crate) enum Verdict {
    Decided(Decision),
    AdmittedOnError,
    Unavailable,
}

impl RedisBackend {
    /// A limit of `rate` on `conn`. The interval is kept in whole microseconds (at least 1).
    ///
    /// ```
    /// use std::{num::NonZeroU32, time::Duration};
    /// use guard_core::rate_limit::{Rate, RedisBackend, RedisConnection, RedisOptions};
    /// let conn = RedisConnection::open("redis://127.0.0.1:6379", Duration::from_millis(50), Duration::from_secs(1)).unwrap();
    /// let b = RedisBackend::new(conn, Rate::per_second(NonZeroU32::new(5).unwrap()), RedisOptions::default());
    /// assert_eq!(b.allowed_on_error(), 0);
    /// ```
    pub fn new(conn: RedisConnection, rate: Rate, options: RedisOptions) -> Self {
        let t_us = u64::try_from(rate.emission_interval().as_micros())
            .unwrap_or(u64::MAX / 2)
            .max(1);
        let tau_us = t_us.saturating_mul(u64::from(rate.burst().get() - 1));
        RedisBackend {
            inner: Arc::new(RedisInner {
                conn,
                rate,
                options,
                t_us,
                tau_us,
                allowed_on_error: AtomicU64::new(0),
            }),
        }
    }

    /// Takes one token from `key`'s bucket if there is one (one script call).
    pub async fn check(&self, key: &BucketKey) -> Result<Decision, RedisBackendError> {
        let inner = &self.inner;
        let mut k = String::with_capacity(inner.options.key_prefix.len() + 48);
        k.push_str(&inner.options.key_prefix);
        key.write_redis_suffix(&mut k);
        let (t_us, tau_us) = (inner.t_us, inner.tau_us);
        let (allowed, a, b): (i64, i64, i64) = inner
            .conn
            .run(
                |mut m| async move { GCRA.key(k).arg(t_us).arg(tau_us).invoke_async(&mut m).await },
            )
            .await?;
        let us = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
        let limit = inner.rate.burst().get();
        Ok(match allowed {
            1 => Decision {
                allowed: true,
                limit,
                remaining: u32::try_from(a).unwrap_or(0).min(limit),
                retry_after: Duration::ZERO,
                reset: us(b),
            },
            0 => Decision {
                allowed: false,
                limit,
                remaining: 0,
                retry_after: us(a),
                reset: us(b),
            },
            _ => return Err(RedisBackendError::Reply),
        })
    }

    /// Checks and applies the failure mode (counting and logging admissions on error).
    pub(crate) async fn decide(&self, key: &BucketKey, label: &str) -> Verdict {
        match self.check(key).await {
            Ok(d) => Verdict::Decided(d),
            Err(error) => match self.inner.options.failure_mode {
                FailureMode::Open => {
                    let n = self.inner.allowed_on_error.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::warn!(
                        target: "guard::rate_limit",
                        placement = label,
                        %error,
                        allowed_on_error = n,
                        "rate-limit backend unavailable: request admitted (fail-open)"
                    );
                    Verdict::AdmittedOnError
                }
                FailureMode::Closed => {
                    tracing::warn!(
                        target: "guard::rate_limit",
                        placement = label,
                        %error,
                        "rate-limit backend unavailable: request refused (fail-closed)"
                    );
                    Verdict::Unavailable
                }
            },
        }
    }

    /// How many requests were admitted because Redis could not answer (fail-open), since start.
    ///
    /// ```
    /// use std::{num::NonZeroU32, time::Duration};
    /// use guard_core::rate_limit::{Rate, RedisBackend, RedisConnection, RedisOptions};
    /// let conn = RedisConnection::open("redis://127.0.0.1:6379", Duration::from_millis(50), Duration::from_secs(1)).unwrap();
    /// let b = RedisBackend::new(conn, Rate::per_second(NonZeroU32::new(5).unwrap()), RedisOptions::default());
    /// assert_eq!(b.allowed_on_error(), 0);
    /// ```
    pub fn allowed_on_error(&self) -> u64 {
        self.inner.allowed_on_error.load(Ordering::Relaxed)
    }

    /// The failure mode.
    ///
    /// ```
    /// use std::{num::NonZeroU32, time::Duration};
    /// use guard_core::rate_limit::{FailureMode, Rate, RedisBackend, RedisConnection, RedisOptions};
    /// let conn = RedisConnection::open("redis://127.0.0.1:6379", Duration::from_millis(50), Duration::from_secs(1)).unwrap();
    /// let b = RedisBackend::new(conn, Rate::per_second(NonZeroU32::new(5).unwrap()), RedisOptions::default());
    /// assert_eq!(b.failure_mode(), FailureMode::Open);
    /// ```
    pub fn failure_mode(&self) -> FailureMode {
        self.inner.options.failure_mode
    }

    /// The configured rate.
    ///
    /// ```
    /// use std::{num::NonZeroU32, time::Duration};
    /// use guard_core::rate_limit::{Rate, RedisBackend, RedisConnection, RedisOptions};
    /// let conn = RedisConnection::open("redis://127.0.0.1:6379", Duration::from_millis(50), Duration::from_secs(1)).unwrap();
    /// let r = Rate::per_second(NonZeroU32::new(5).unwrap());
    /// assert_eq!(RedisBackend::new(conn, r, RedisOptions::default()).rate(), r);
    /// ```
    pub fn rate(&self) -> Rate {
        self.inner.rate
    }

    /// The connection (to share it, e.g. with a [`RedisReplayStore`](super::RedisReplayStore)).
    ///
    /// ```
    /// use std::{num::NonZeroU32, time::Duration};
    /// use guard_core::rate_limit::{Rate, RedisBackend, RedisConnection, RedisOptions};
    /// let conn = RedisConnection::open("redis://127.0.0.1:6379", Duration::from_millis(50), Duration::from_secs(1)).unwrap();
    /// let b = RedisBackend::new(conn, Rate::per_second(NonZeroU32::new(5).unwrap()), RedisOptions::default());
    /// assert_eq!(b.connection().timeout(), Duration::from_millis(50));
    /// ```
    pub fn connection(&self) -> &RedisConnection {
        &self.inner.conn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_never_echo_the_url() {
        let e = RedisConnection::open(
            "redis://:hunter2@[::1",
            Duration::from_millis(1),
            Duration::from_millis(1),
        )
        .unwrap_err();
        assert!(!e.to_string().contains("hunter2"));
        let ok = RedisConnection::open(
            "redis://:hunter2@127.0.0.1:1",
            Duration::from_millis(1),
            Duration::from_millis(1),
        )
        .unwrap();
        assert!(!format!("{ok:?}").contains("hunter2"), "{ok:?}");
    }

    #[test]
    fn microsecond_parameters_follow_the_rate() {
        let conn = RedisConnection::open(
            "redis://127.0.0.1:1",
            Duration::from_millis(1),
            Duration::from_millis(1),
        )
        .unwrap();
        let rate = Rate::per_second(std::num::NonZeroU32::new(5).unwrap())
            .with_burst(std::num::NonZeroU32::new(10).unwrap());
        let b = RedisBackend::new(conn, rate, RedisOptions::default());
        assert_eq!(b.inner.t_us, 200_000);
        assert_eq!(b.inner.tau_us, 1_800_000);
    }

    #[tokio::test]
    async fn unreachable_redis_is_a_connection_error_within_the_budget() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conn = RedisConnection::open(
            &format!("redis://127.0.0.1:{port}"),
            Duration::from_millis(500),
            Duration::from_millis(200),
        )
        .unwrap();
        let b = RedisBackend::new(
            conn,
            Rate::per_second(std::num::NonZeroU32::new(5).unwrap()),
            RedisOptions::default(),
        );
        let started = std::time::Instant::now();
        let err = b.check(&BucketKey::global()).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(600));
        assert!(
            matches!(
                err,
                RedisBackendError::Connection(_) | RedisBackendError::Timeout(_)
            ),
            "{err:?}"
        );
    }
}
