//! [`ServerConfig`]: the limits and timeouts of [`Server`](super::Server), with safe defaults.

use std::time::Duration;

use crate::request::TrustedProxies;

/// The smallest header buffer hyper accepts (it panics below it); smaller settings are raised.
const MIN_HEADER_BYTES: usize = 8 * 1024;

/// Limits, timeouts and peer resolution for [`Server`](super::Server).
///
/// | setting | default | when exceeded |
/// |---|---|---|
/// | [`max_body_bytes`](Self::max_body_bytes) | 1 MiB (the policy's `[ingress]` default) | 413 `guard.ingress.too_large`, connection closed |
/// | [`max_headers`](Self::max_headers) | 100 fields | 431 `guard.ingress.headers_too_large` |
/// | [`max_header_bytes`](Self::max_header_bytes) | 16 KiB (at least 8 KiB) for the request line and headers | 431 |
/// | [`header_read_timeout`](Self::header_read_timeout) | 10 s for the whole request head (also idle keep-alive) | connection closed, event with 408 |
/// | [`body_read_timeout`](Self::body_read_timeout) | 30 s for the whole body | 408 `guard.ingress.timeout`, connection closed |
/// | [`drain_timeout`](Self::drain_timeout) | 9 s (Cloud Run allows 10 s after SIGTERM) | remaining connections dropped |
///
/// Keep-alive is on; the [`Peer`](crate::request::Peer) is the socket address unless
/// [`trusted_proxies`](Self::trusted_proxies) are set.
///
/// ```
/// use std::time::Duration;
/// use guard_core::server::ServerConfig;
///
/// let policy = guard_core::Policy::from_toml_str("[ingress]\nmax_body_bytes = 65536").unwrap();
/// let config = ServerConfig::default()
///     .max_body_bytes(policy.max_body_bytes())
///     // Behind the Cloud Run or Azure front end: one hop unless the policy says more.
///     .trusted_proxies(policy.trusted_proxies(1))
///     .header_read_timeout(Duration::from_secs(5));
/// assert_eq!(config.limits().0, 65536);
/// ```
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub(super) max_body_bytes: u64,
    pub(super) max_headers: usize,
    pub(super) max_header_bytes: usize,
    pub(super) header_read_timeout: Duration,
    pub(super) body_read_timeout: Duration,
    pub(super) drain_timeout: Duration,
    pub(super) keep_alive: bool,
    pub(super) trusted_proxies: Option<TrustedProxies>,
    pub(super) sigterm: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_headers: 100,
            max_header_bytes: 16 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(9),
            keep_alive: true,
            trusted_proxies: None,
            sigterm: true,
        }
    }
}

impl ServerConfig {
    /// Largest request body, in bytes. A declared `Content-Length` above it is refused before
    /// any of the body is read; a chunked body is refused as soon as it passes the limit (at most
    /// one read frame, bounded by [`max_header_bytes`](Self::max_header_bytes), beyond it).
    pub fn max_body_bytes(mut self, bytes: u64) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Most header fields in one request (at least 1).
    pub fn max_headers(mut self, count: usize) -> Self {
        self.max_headers = count.max(1);
        self
    }

    /// Largest request head (request line and headers) in bytes; also the largest read buffer,
    /// and so the largest body frame. Values under 8 KiB are raised to 8 KiB.
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.max_header_bytes = bytes.max(MIN_HEADER_BYTES);
        self
    }

    /// Time allowed to receive a whole request head, counted from when the server starts waiting
    /// for it (so it also closes idle keep-alive connections).
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Time allowed to receive a whole request body, counted from the end of its head.
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.body_read_timeout = timeout;
        self
    }

    /// After shutdown starts, how long in-flight requests may take before their connections are
    /// dropped.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Whether connections are kept open between requests (default true).
    pub fn keep_alive(mut self, on: bool) -> Self {
        self.keep_alive = on;
        self
    }

    /// Resolve the [`Peer`](crate::request::Peer) from `X-Forwarded-For` through these proxies
    /// (`None`: the socket address). A missing or malformed chain leaves the request without a
    /// peer, which address checks refuse.
    pub fn trusted_proxies(mut self, proxies: Option<TrustedProxies>) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// Whether SIGTERM starts a graceful shutdown (default true). Turn it off when the process
    /// handles signals itself and passes a future to
    /// [`Server::with_shutdown`](super::Server::with_shutdown).
    pub fn shutdown_on_sigterm(mut self, on: bool) -> Self {
        self.sigterm = on;
        self
    }

    /// `(max_body_bytes, max_headers, max_header_bytes)`.
    ///
    /// ```
    /// let c = guard_core::server::ServerConfig::default().max_header_bytes(1);
    /// assert_eq!(c.limits(), (1024 * 1024, 100, 8192));
    /// ```
    pub fn limits(&self) -> (u64, usize, usize) {
        (self.max_body_bytes, self.max_headers, self.max_header_bytes)
    }
}
