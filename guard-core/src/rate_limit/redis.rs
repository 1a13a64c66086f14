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
//! - **Connections.** One [`RedisConnection`] per instance, shared by every limiter and the
//!   replay store (clones share it): one multiplexed connection to a single Redis (Redis serves
//!   pipelined commands from one socket faster than from a pool), or, with
//!   [`RedisConnectionBuilder::cluster`], one multiplexed connection per cluster node. It is
//!   opened on first use. A lost connection is re-opened in the background, one attempt at a
//!   time with exponential backoff (10 ms doubling to 1 s, with jitter), and checks in the
//!   meantime fail within their budget; a cluster follows `MOVED` / `ASK` and refreshes its slot
//!   map after a redirect or a lost node, so a promoted replica is found without a restart.
//! - **Per-check budget.** Each check (connection, redirects and retries included) ends within
//!   the connection's `timeout` (`[rate_limit] timeout_ms`), so a stuck or re-electing Redis
//!   never holds a request longer than that.
//! - **TLS** (`rediss://`): rustls on ring; the server's certificate and host name are always
//!   checked, against the platform's roots or only the CA given with
//!   [`RedisConnectionBuilder::tls_ca_pem`] (`tls_ca_file`). A failed handshake is a failed
//!   check — never a fallback to plaintext. (The redis client takes rustls' process-wide default
//!   provider; when the process has none, ring's is installed as the default.) The only way around
//!   verification is the loudly named
//!   [`dangerous_skip_tls_verification_for_tests`](RedisConnectionBuilder::dangerous_skip_tls_verification_for_tests).
//! - **Credentials.** `AUTH [user] password`, the password read from the [`SecretStore`] when
//!   the connection is made, and read again (force-refreshed) after Redis refuses it, to follow a
//!   rotation ([`RedisConnectionBuilder::password_secret`]); never in the policy.
//! - **Cluster keys.** Every command touches one key (one script call per bucket, one
//!   `SET NX PX` per signature), so buckets spread over every slot and need no hash tags.
//! - **Failures.** When Redis cannot answer within the budget, [`FailureMode::Open`] (default)
//!   admits the request, counts it ([`RedisBackend::allowed_on_error`]), logs a warning on target
//!   `guard::rate_limit` and marks the response with [`AdmittedOnBackendError`];
//!   [`FailureMode::Closed`] answers 503 `guard.rate.backend_unavailable`.
//!
//! ```no_run
//! use std::num::NonZeroU32;
//! use std::time::Duration;
//! use guard_core::rate_limit::{FailureMode, Rate, RateLimitLayer, RedisBackend, RedisConnection,
//!     key};
//!
//! let conn = RedisConnection::open("redis://cache.internal:6379", Duration::from_millis(50),
//!     Duration::from_secs(1))?;
//! let rate = Rate::per_second(NonZeroU32::new(5).unwrap()).with_burst(NonZeroU32::new(10).unwrap());
//! let backend = RedisBackend::new(conn, rate)
//!     .with_key_prefix("guard:rl:orders:peer:")
//!     .with_failure_mode(FailureMode::Closed);
//! let layer = RateLimitLayer::new(backend, key::RateKey::peer());
//! # let _ = layer;
//! # Ok::<(), guard_core::rate_limit::RedisBackendError>(())
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;

use super::key::BucketKey;
use super::{Decision, FailureMode, Rate};
use guard_secrets::SecretStore;

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
    #[error("not a valid Redis URL (expected redis[s]://host:port[/db])")]
    InvalidUrl,
    /// The connection settings do not fit together (e.g. a TLS CA with a `redis://` URL).
    #[error("invalid Redis connection settings: {0}")]
    Config(&'static str),
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

impl RedisBackendError {
    /// Whether Redis refused the credentials (`WRONGPASS`, `NOAUTH`, a failed `AUTH`).
    fn is_refused_credentials(&self) -> bool {
        match self {
            RedisBackendError::Connection(reason) => *reason == "authentication failed",
            RedisBackendError::Server(code) => code == "WRONGPASS" || code == "NOAUTH",
            _ => false,
        }
    }
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

/// A lazily opened, self-healing connection to one Redis or one Redis Cluster. Cheap to clone:
/// clones share the connection.
///
/// - **One server** (`redis://` / `rediss://`): one multiplexed connection (a
///   `ConnectionManager`). A lost connection is re-opened in the background, one attempt at a
///   time, with exponential backoff (10 ms doubling to 1 s, with jitter); checks meanwhile fail
///   within their budget and the failure mode applies.
/// - **Cluster** ([`RedisConnectionBuilder::cluster`]): the URL names one seed node; the others
///   are discovered with `CLUSTER SLOTS`. One multiplexed connection per node; `MOVED` / `ASK`
///   redirects are followed and the slot map is refreshed after a redirect or a lost node, so a
///   replica promoted by a failover is found without a restart. Every key Guard writes is a
///   single key per command (one GCRA script call, one `SET NX PX`), so keys may live on any slot.
/// - **TLS** (`rediss://`): rustls on ring, the certificate and host name always verified —
///   against the platform's roots, or only the CA given by [`RedisConnectionBuilder::tls_ca_pem`].
///   A TLS failure is a connection failure: there is no fallback to plaintext.
#[derive(Clone)]
pub struct RedisConnection {
    inner: Arc<ConnInner>,
}

struct ConnInner {
    setup: Arc<Setup>,
    state: std::sync::Mutex<ConnState>,
    timeout: Duration,
    addr: String,
}

/// Everything needed to (re)build the client. Never printed: it may hold credentials.
struct Setup {
    info: redis::ConnectionInfo,
    cluster: bool,
    tls_ca_pem: Option<Vec<u8>>,
    username: Option<String>,
    password: Option<(SecretStore, String)>,
    timeout: Duration,
    connect_timeout: Duration,
}

type ConnectFuture = Shared<BoxFuture<'static, Result<Conn, RedisBackendError>>>;

#[derive(Default)]
struct ConnState {
    connecting: Option<ConnectFuture>,
    failures: u32,
    retry_at: Option<tokio::time::Instant>,
    /// Redis refused the credentials: the next client re-reads the password.
    refresh_password: bool,
}

/// The connection a command runs on.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl Conn {
    /// Sends `pipeline` in one round trip to the primary that owns `key`: in a cluster the route
    /// is given explicitly, because redis-rs sends a keyless command such as `WAIT` to every
    /// primary (taking the smallest answer) and would otherwise ask nodes that never saw the
    /// write. One reply per command, error replies included as values.
    pub(crate) async fn pipeline_on_primary_of(
        &mut self,
        key: &str,
        pipeline: redis::Pipeline,
    ) -> redis::RedisResult<Vec<redis::Value>> {
        use redis::aio::ConnectionLike;
        use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
        let count = pipeline.len();
        match self {
            Conn::Single(c) => c.req_packed_commands(&pipeline, 0, count).await,
            Conn::Cluster(c) => {
                let route =
                    SingleNodeRoutingInfo::SpecificNode(Route::with_key(key, SlotAddr::Master));
                c.route_pipeline(pipeline, 0, count, route).await
            }
        }
    }
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The address only; never the password.
        f.debug_struct("RedisConnection")
            .field("addr", &self.inner.addr)
            .field("cluster", &self.inner.setup.cluster)
            .field("timeout", &self.inner.timeout)
            .finish()
    }
}

/// Configures a [`RedisConnection`]: TLS trust, credentials, cluster mode, time budgets.
///
/// ```
/// use std::time::Duration;
/// use guard_core::rate_limit::RedisConnection;
/// use guard_secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
/// let secrets = SecretStore::new(|name: &str, _: SecretVersion| -> Result<SecretValue, SecretsError> {
///     Err(SecretsError::not_found(name))
/// });
/// let conn = RedisConnection::builder("rediss://cache.internal:6380")
///     .timeout(Duration::from_millis(100))
///     .connect_timeout(Duration::from_secs(1))
///     .cluster(true)
///     .username("guard")
///     .password_secret(secrets, "redis-password")
///     .build()
///     .unwrap();
/// assert!(format!("{conn:?}").contains("cluster: true"));
/// ```
#[must_use]
pub struct RedisConnectionBuilder {
    url: String,
    timeout: Duration,
    connect_timeout: Duration,
    cluster: bool,
    tls_ca_pem: Option<Vec<u8>>,
    skip_tls_verification: bool,
    username: Option<String>,
    password: Option<(SecretStore, String)>,
}

impl fmt::Debug for RedisConnectionBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConnectionBuilder")
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("cluster", &self.cluster)
            .field("tls_ca_pem", &self.tls_ca_pem.is_some())
            .field("skip_tls_verification", &self.skip_tls_verification)
            .field("password_secret", &self.password.as_ref().map(|(_, n)| n))
            .finish_non_exhaustive()
    }
}

impl RedisConnectionBuilder {
    /// The most one command may take, connection included (default 100 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The most one connection attempt may take (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Whether the URL is a seed node of a Redis Cluster (default `false`).
    pub fn cluster(mut self, cluster: bool) -> Self {
        self.cluster = cluster;
        self
    }

    /// Trusts only this CA (PEM, one or more certificates) instead of the platform's roots.
    /// Needs a `rediss://` URL.
    pub fn tls_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_ca_pem = Some(pem.into());
        self
    }

    /// The ACL user (`AUTH <user> <password>`); without it, `AUTH <password>` (the `default`
    /// user).
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// Reads the password from `store` under `name` when the connection is made (a failed read
    /// fails the check: the failure mode applies, and the next attempt reads again). When Redis
    /// refuses it (`WRONGPASS`, `NOAUTH`: a rotation), the client is rebuilt after the usual
    /// backoff with the secret force-refreshed, so a rotated password is picked up without a
    /// restart.
    pub fn password_secret(mut self, store: SecretStore, name: impl Into<String>) -> Self {
        self.password = Some((store, name.into()));
        self
    }

    /// **Test setups only**: accepts any server certificate and any host name over `rediss://`,
    /// which lets anyone on the path read and forge every rate-limit and replay decision. Logged
    /// as a warning when built. Prefer [`tls_ca_pem`](Self::tls_ca_pem) with the test CA.
    pub fn dangerous_skip_tls_verification_for_tests(mut self) -> Self {
        self.skip_tls_verification = true;
        self
    }

    /// Checks the URL and the TLS settings; connects on first use. Zero durations are raised to
    /// 1 ms. Checks must run on a Tokio runtime with timers enabled.
    pub fn build(self) -> Result<RedisConnection, RedisBackendError> {
        let floor = Duration::from_millis(1);
        let (info, addr) = self.connection_info()?;
        let timeout = self.timeout.max(floor);
        Ok(RedisConnection {
            inner: Arc::new(ConnInner {
                setup: Arc::new(Setup {
                    info,
                    cluster: self.cluster,
                    tls_ca_pem: self.tls_ca_pem,
                    username: self.username,
                    password: self.password,
                    timeout,
                    connect_timeout: self.connect_timeout.max(floor),
                }),
                state: std::sync::Mutex::new(ConnState::default()),
                timeout,
                addr,
            }),
        })
    }
}

impl RedisConnectionBuilder {
    /// The client's connection settings from the URL and the TLS options (a CA parsed now, so a
    /// bad file is a configuration error), and the `host:port` for logs.
    fn connection_info(&self) -> Result<(redis::ConnectionInfo, String), RedisBackendError> {
        use redis::IntoConnectionInfo;
        let info = self
            .url
            .as_str()
            .into_connection_info()
            .map_err(|_| RedisBackendError::InvalidUrl)?;
        let (tls, host, port) = match info.addr() {
            redis::ConnectionAddr::TcpTls { host, port, .. } => (true, host.clone(), *port),
            redis::ConnectionAddr::Tcp(host, port) => (false, host.clone(), *port),
            _ => return Err(RedisBackendError::InvalidUrl),
        };
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        if !tls && (self.tls_ca_pem.is_some() || self.skip_tls_verification) {
            return Err(RedisBackendError::Config(
                "TLS settings need a rediss:// URL",
            ));
        }
        let info = if self.skip_tls_verification {
            tracing::warn!(
                target: "guard::rate_limit",
                addr = %addr,
                "Redis TLS certificate verification is OFF (tls_insecure_skip_verify_for_tests): test setups only"
            );
            info.set_addr(redis::ConnectionAddr::TcpTls {
                host,
                port,
                insecure: true,
                tls_params: None,
            })
        } else {
            info
        };
        if tls {
            // The redis client builds its rustls config from the process default provider.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        if let Some(pem) = &self.tls_ca_pem {
            redis::Client::build_with_tls(
                info.clone(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            )
            .map_err(|_| RedisBackendError::Config("the TLS CA is not valid PEM certificates"))?;
        }
        Ok((info, addr))
    }
}

impl Setup {
    /// Builds the client; `refresh_password`: Redis refused the password, so the secret is
    /// re-fetched first (a rotation).
    async fn connect(self: Arc<Self>, refresh_password: bool) -> Result<Conn, RedisBackendError> {
        let mut settings = self.info.redis_settings().clone();
        if let Some(user) = &self.username {
            settings = settings.set_username(user);
        }
        if let Some((store, name)) = &self.password {
            if refresh_password {
                let _ = store.force_refresh(name).await;
            }
            let secret = store
                .get(name)
                .await
                .map_err(|_| RedisBackendError::Connection("password secret unavailable"))?;
            let password = secret.expose_str().ok_or(RedisBackendError::Connection(
                "password secret is not UTF-8",
            ))?;
            settings = settings.set_password(password);
        }
        let info = self.info.clone().set_redis_settings(settings);
        let certs = self.tls_ca_pem.as_ref().map(|pem| redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.clone()),
        });
        if self.cluster {
            let mut builder = redis::cluster::ClusterClientBuilder::new([info])
                .connection_timeout(self.connect_timeout)
                .response_timeout(self.timeout)
                // Short, bounded retries: the check's budget decides, the failure mode applies.
                .retries(3)
                .min_retry_wait(10)
                .max_retry_wait(200);
            if let Some(certs) = certs {
                builder = builder.certs(certs);
            }
            let client = builder.build()?;
            Ok(Conn::Cluster(client.get_async_connection().await?))
        } else {
            let client = match certs {
                Some(certs) => redis::Client::build_with_tls(info, certs)?,
                None => redis::Client::open(info)?,
            };
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.connect_timeout))
                .set_response_timeout(Some(self.timeout))
                // Reconnection in the background, one attempt at a time, 10 ms doubling to 1 s.
                .set_number_of_retries(6)
                .set_min_delay(Duration::from_millis(10))
                .set_max_delay(Duration::from_secs(1))
                .set_exponent_base(2.0);
            Ok(Conn::Single(ConnectionManager::new_lazy_with_config(
                client, config,
            )?))
        }
    }
}

impl RedisConnection {
    /// Parses `url` (`redis://[[user]:password@]host:port[/db]` or `rediss://…`); connects on
    /// first use. `timeout` bounds every command including any (re)connection;
    /// `connect_timeout` bounds one connection attempt. Zero durations are raised to 1 ms.
    /// Checks must run on a Tokio runtime with timers enabled (`enable_all()`, as
    /// `lambda_runtime` and `#[tokio::main]` do). See [`builder`](Self::builder) for TLS trust,
    /// credentials from the secret store and Redis Cluster.
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
        Self::builder(url)
            .timeout(timeout)
            .connect_timeout(connect_timeout)
            .build()
    }

    /// A builder for `url` (`redis://` or `rediss://`).
    ///
    /// ```
    /// use guard_core::rate_limit::{RedisBackendError, RedisConnection};
    /// let err = RedisConnection::builder("redis://127.0.0.1:6379").tls_ca_pem("x").build();
    /// assert!(matches!(err, Err(RedisBackendError::Config(_))));
    /// ```
    pub fn builder(url: impl Into<String>) -> RedisConnectionBuilder {
        RedisConnectionBuilder {
            url: url.into(),
            timeout: Duration::from_millis(100),
            connect_timeout: Duration::from_secs(1),
            cluster: false,
            tls_ca_pem: None,
            skip_tls_verification: false,
            username: None,
            password: None,
        }
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

    /// The connection, or the attempt in flight to make it (shared by every caller, and carried
    /// on in the background when a caller's budget runs out). After a failed attempt the next one
    /// waits 10 ms doubling to 1 s; checks in between fail at once.
    fn connection(&self) -> ConnectFuture {
        let mut state = self
            .inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = tokio::time::Instant::now();
        if let Some(fut) = state.connecting.clone() {
            match fut.peek() {
                None => return fut,
                Some(Ok(_)) => {
                    state.failures = 0;
                    return fut;
                }
                Some(Err(_)) => {
                    if state.retry_at.is_none() {
                        let wait = 10u64.saturating_mul(1 << state.failures.min(7)).min(1000);
                        state.failures = state.failures.saturating_add(1);
                        state.retry_at = Some(now + Duration::from_millis(wait));
                    }
                    if state.retry_at.is_some_and(|at| now < at) {
                        return fut;
                    }
                }
            }
        }
        let setup = self.inner.setup.clone();
        let task = tokio::spawn(setup.connect(std::mem::take(&mut state.refresh_password)));
        let fut = async move {
            task.await
                .unwrap_or(Err(RedisBackendError::Connection("client error")))
        }
        .boxed()
        .shared();
        state.connecting = Some(fut.clone());
        state.retry_at = None;
        fut
    }

    /// Runs `f` on the connection within the time budget.
    pub(crate) async fn run<T, F, Fut>(&self, f: F) -> Result<T, RedisBackendError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let connecting = self.connection();
        let work = async move {
            let conn = connecting.await?;
            f(conn).await.map_err(RedisBackendError::from)
        };
        let result = match tokio::time::timeout(self.inner.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(RedisBackendError::Timeout(self.inner.timeout)),
        };
        if let Err(e) = &result
            && e.is_refused_credentials()
            && self.inner.setup.password.is_some()
        {
            self.rebuild_with_fresh_password(e.clone());
        }
        result
    }

    /// Drops the client whose password Redis refused (after a rotation, reconnections keep
    /// failing with it): the next attempt, after the usual backoff, re-fetches the secret.
    fn rebuild_with_fresh_password(&self, error: RedisBackendError) {
        let mut state = self
            .inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.refresh_password = true;
        let failed_already = state
            .connecting
            .as_ref()
            .is_some_and(|f| matches!(f.peek(), Some(Err(_))));
        if !failed_already {
            // The client built with the old password goes; the backoff runs from here.
            state.retry_at = None;
            state.connecting = Some(futures_util::future::ready(Err(error)).boxed().shared());
        }
    }
}

/// Options of a [`RedisBackend`] (set through its `with_*` methods).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RedisOptions {
    /// Prepended to every bucket key. Give each limit its own (default `guard:rl:`).
    key_prefix: String,
    /// What to do when Redis cannot answer (default [`FailureMode::Open`]).
    failure_mode: FailureMode,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            key_prefix: "guard:rl:".into(),
            failure_mode: FailureMode::Open,
        }
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
    /// A limit of `rate` on `conn`, keys prefixed `guard:rl:`, failing open. The interval is kept
    /// in whole microseconds (at least 1).
    ///
    /// ```
    /// use std::{num::NonZeroU32, time::Duration};
    /// use guard_core::rate_limit::{Rate, RedisBackend, RedisConnection};
    /// let conn = RedisConnection::open("redis://127.0.0.1:6379", Duration::from_millis(50), Duration::from_secs(1)).unwrap();
    /// let b = RedisBackend::new(conn, Rate::per_second(NonZeroU32::new(5).unwrap()));
    /// assert_eq!(b.allowed_on_error(), 0);
    /// ```
    pub fn new(conn: RedisConnection, rate: Rate) -> Self {
        Self::with_options(conn, rate, RedisOptions::default())
    }

    /// The same limit with every bucket key prefixed by `prefix` (give each limit its own; default
    /// `guard:rl:`). Set it before the backend is used: the allowed-on-error count starts again.
    ///
    /// ```
    /// use std::{num::NonZeroU32, time::Duration};
    /// use guard_core::rate_limit::{Rate, RedisBackend, RedisConnection};
    /// let conn = RedisConnection::open("redis://127.0.0.1:6379", Duration::from_millis(50), Duration::from_secs(1)).unwrap();
    /// let b = RedisBackend::new(conn, Rate::per_second(NonZeroU32::new(5).unwrap())).with_key_prefix("app:rl:");
    /// assert!(format!("{b:?}").contains("app:rl:"));
    /// ```
    pub fn with_key_prefix(self, prefix: impl Into<String>) -> Self {
        let mut options = self.inner.options.clone();
        options.key_prefix = prefix.into();
        Self::with_options(self.inner.conn.clone(), self.inner.rate, options)
    }

    /// The same limit with another answer for when Redis cannot answer (default
    /// [`FailureMode::Open`]). Set it before the backend is used: the allowed-on-error count
    /// starts again.
    ///
    /// ```
    /// use std::{num::NonZeroU32, time::Duration};
    /// use guard_core::rate_limit::{FailureMode, Rate, RedisBackend, RedisConnection};
    /// let conn = RedisConnection::open("redis://127.0.0.1:6379", Duration::from_millis(50), Duration::from_secs(1)).unwrap();
    /// let b = RedisBackend::new(conn, Rate::per_second(NonZeroU32::new(5).unwrap()))
    ///     .with_failure_mode(FailureMode::Closed);
    /// assert_eq!(b.failure_mode(), FailureMode::Closed);
    /// ```
    pub fn with_failure_mode(self, mode: FailureMode) -> Self {
        let mut options = self.inner.options.clone();
        options.failure_mode = mode;
        Self::with_options(self.inner.conn.clone(), self.inner.rate, options)
    }

    fn with_options(conn: RedisConnection, rate: Rate, options: RedisOptions) -> Self {
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
    /// use guard_core::rate_limit::{Rate, RedisBackend, RedisConnection};
    /// let conn = RedisConnection::open("redis://127.0.0.1:6379", Duration::from_millis(50), Duration::from_secs(1)).unwrap();
    /// let b = RedisBackend::new(conn, Rate::per_second(NonZeroU32::new(5).unwrap()));
    /// assert_eq!(b.allowed_on_error(), 0);
    /// ```
    pub fn allowed_on_error(&self) -> u64 {
        self.inner.allowed_on_error.load(Ordering::Relaxed)
    }

    /// The failure mode.
    ///
    /// ```
    /// use std::{num::NonZeroU32, time::Duration};
    /// use guard_core::rate_limit::{FailureMode, Rate, RedisBackend, RedisConnection};
    /// let conn = RedisConnection::open("redis://127.0.0.1:6379", Duration::from_millis(50), Duration::from_secs(1)).unwrap();
    /// let b = RedisBackend::new(conn, Rate::per_second(NonZeroU32::new(5).unwrap()));
    /// assert_eq!(b.failure_mode(), FailureMode::Open);
    /// ```
    pub fn failure_mode(&self) -> FailureMode {
        self.inner.options.failure_mode
    }

    /// The configured rate.
    ///
    /// ```
    /// use std::{num::NonZeroU32, time::Duration};
    /// use guard_core::rate_limit::{Rate, RedisBackend, RedisConnection};
    /// let conn = RedisConnection::open("redis://127.0.0.1:6379", Duration::from_millis(50), Duration::from_secs(1)).unwrap();
    /// let r = Rate::per_second(NonZeroU32::new(5).unwrap());
    /// assert_eq!(RedisBackend::new(conn, r).rate(), r);
    /// ```
    pub fn rate(&self) -> Rate {
        self.inner.rate
    }

    /// The connection (to share it, e.g. with a [`RedisReplayStore`](super::RedisReplayStore)).
    ///
    /// ```
    /// use std::{num::NonZeroU32, time::Duration};
    /// use guard_core::rate_limit::{Rate, RedisBackend, RedisConnection};
    /// let conn = RedisConnection::open("redis://127.0.0.1:6379", Duration::from_millis(50), Duration::from_secs(1)).unwrap();
    /// let b = RedisBackend::new(conn, Rate::per_second(NonZeroU32::new(5).unwrap()));
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
        let b = RedisBackend::new(conn, rate);
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
