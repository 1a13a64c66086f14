//! The limits and timeouts of [`Server`], with safe defaults, and its methods that set them.

use std::time::Duration;

use super::Server;
use crate::request::TrustedProxies;

/// The smallest header buffer hyper accepts (it panics below it); smaller settings are raised.
const MIN_HEADER_BYTES: usize = 8 * 1024;

/// Limits, timeouts and peer resolution of a [`Server`] (the table on [`Server`]).
#[derive(Debug, Clone)]
pub(super) struct Settings {
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

impl Default for Settings {
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

/// Limits, timeouts and peer resolution.
impl Server {
    /// Largest request body, in bytes. A declared `Content-Length` above it is refused before
    /// any of the body is read; a chunked body is refused as soon as it passes the limit (at most
    /// one read frame, bounded by [`max_header_bytes`](Self::max_header_bytes), beyond it).
    pub fn max_body_bytes(mut self, bytes: u64) -> Self {
        self.settings.max_body_bytes = bytes;
        self
    }

    /// Most header fields in one request (at least 1).
    pub fn max_headers(mut self, count: usize) -> Self {
        self.settings.max_headers = count.max(1);
        self
    }

    /// Largest request head (request line and headers) in bytes; also the largest read buffer,
    /// and so the largest body frame. Values under 8 KiB are raised to 8 KiB.
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.settings.max_header_bytes = bytes.max(MIN_HEADER_BYTES);
        self
    }

    /// Time allowed to receive a whole request head, counted from when the server starts waiting
    /// for it (so it also closes idle keep-alive connections).
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.settings.header_read_timeout = timeout;
        self
    }

    /// Time allowed to receive a whole request body, counted from the end of its head.
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.settings.body_read_timeout = timeout;
        self
    }

    /// After shutdown starts, how long in-flight requests may take before their connections are
    /// dropped.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.settings.drain_timeout = timeout;
        self
    }

    /// Whether connections are kept open between requests (default true).
    pub fn keep_alive(mut self, on: bool) -> Self {
        self.settings.keep_alive = on;
        self
    }

    /// Resolve the [`Peer`](crate::request::Peer) from `X-Forwarded-For` through these proxies
    /// (`None`: the socket address). A missing or malformed chain leaves the request without a
    /// peer, which address checks refuse.
    pub fn trusted_proxies(mut self, proxies: Option<TrustedProxies>) -> Self {
        self.settings.trusted_proxies = proxies;
        self
    }

    /// Whether SIGTERM starts a graceful shutdown (default true). Turn it off when the process
    /// handles signals itself and passes a future to [`with_shutdown`](Self::with_shutdown).
    pub fn shutdown_on_sigterm(mut self, on: bool) -> Self {
        self.settings.sigterm = on;
        self
    }

    /// `(max_body_bytes, max_headers, max_header_bytes)`.
    ///
    /// ```
    /// let s = guard_core::server::Server::new().max_header_bytes(1);
    /// assert_eq!(s.limits(), (1024 * 1024, 100, 8192));
    /// ```
    pub fn limits(&self) -> (u64, usize, usize) {
        let s = &self.settings;
        (s.max_body_bytes, s.max_headers, s.max_header_bytes)
    }
}
