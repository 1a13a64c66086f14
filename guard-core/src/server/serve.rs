//! [`Server`]: the accept loop, one hyper HTTP/1.1 connection per client, graceful shutdown.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tower::ServiceExt;
use tower_layer::Layer;
use tower_service::Service;

use super::body::{BodyRefusal, CountingIo, read_bounded};
use super::config::Settings;
use crate::audit::{AuditLayer, JsonLinesSink};
use crate::rejection::{Rejection, RejectionKind};
use crate::request::{GuardRequest, GuardResponse, Peer, Trigger};

type BoxError = Box<dyn StdError + Send + Sync>;
type ShutdownSignal = Pin<Box<dyn Future<Output = ()> + Send>>;
type ShutdownHook = Box<dyn FnOnce() + Send>;

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves a Guard stack over HTTP/1.1 on a [`TcpListener`] (see the [module docs](super)), within
/// these limits (each set by the method of the same name):
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
/// Keep-alive is on; the [`Peer`] is the socket address unless
/// [`trusted_proxies`](Self::trusted_proxies) are set.
///
/// ```
/// use std::time::Duration;
/// use guard_core::server::Server;
///
/// let policy = guard_core::Policy::from_toml_str("[ingress]\nmax_body_bytes = 65536").unwrap();
/// let server = Server::new()
///     .max_body_bytes(policy.max_body_bytes())
///     // Behind the Cloud Run or Azure front end: one hop unless the policy says more.
///     .trusted_proxies(policy.trusted_proxies(1))
///     .header_read_timeout(Duration::from_secs(5));
/// assert_eq!(server.limits().0, 65536);
/// ```
pub struct Server {
    pub(super) settings: Settings,
    audit: Option<AuditLayer>,
    shutdown: Option<ShutdownSignal>,
    on_shutdown: Option<ShutdownHook>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("settings", &self.settings)
            .field("audit", &self.audit)
            .finish_non_exhaustive()
    }
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

impl Server {
    /// A server with the default limits (the table above). Refusals it makes itself are
    /// recorded as JSON lines on stdout until [`audit`](Self::audit) says otherwise.
    pub fn new() -> Self {
        Self {
            settings: Settings::default(),
            audit: None,
            shutdown: None,
            on_shutdown: None,
        }
    }

    /// Records the server's own refusals (413, 431, 408, unreadable bodies) through `layer` —
    /// give it the stack's audit layer so that every refusal lands in the same sink, as exactly
    /// one event.
    pub fn audit(mut self, layer: AuditLayer) -> Self {
        self.audit = Some(layer);
        self
    }

    /// Starts the graceful shutdown when `signal` completes (in addition to SIGTERM, unless
    /// [`shutdown_on_sigterm`](Self::shutdown_on_sigterm) turned that off).
    pub fn with_shutdown(mut self, signal: impl Future<Output = ()> + Send + 'static) -> Self {
        self.shutdown = Some(Box::pin(signal));
        self
    }

    /// Runs `hook` once every connection has finished (or the drain timeout passed), before
    /// [`serve`](Self::serve) returns: flush the audit sink here.
    pub fn on_shutdown(mut self, hook: impl FnOnce() + Send + 'static) -> Self {
        self.on_shutdown = Some(Box::new(hook));
        self
    }

    /// Accepts connections until shutdown, then stops accepting (the listener is closed, so new
    /// connections are refused), lets in-flight requests finish within the drain timeout, runs
    /// the shutdown hook and returns.
    ///
    /// Each request becomes a [`GuardRequest`] with [`Trigger::Http`] and its [`Peer`], and is
    /// handed to a clone of `stack`. An error from the stack is answered with 500
    /// `guard.internal` (the stack's audit layer has recorded it).
    ///
    /// # Errors
    /// Only if the listener's local address cannot be read; accept errors are logged and retried.
    pub async fn serve<S>(self, listener: TcpListener, stack: S) -> std::io::Result<()>
    where
        S: Service<GuardRequest, Response = GuardResponse> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
    {
        let local = listener.local_addr()?;
        let Server {
            settings,
            audit,
            shutdown,
            on_shutdown,
        } = self;
        let audit = audit.unwrap_or_else(|| {
            AuditLayer::new(JsonLinesSink::stdout(JsonLinesSink::DEFAULT_BUFFER))
        });
        let http = http1_builder(&settings);
        let shared = Arc::new(ServerWide { settings, audit });
        let mut stop = std::pin::pin!(shutdown_signal(shared.settings.sigterm, shutdown));
        let graceful = GracefulShutdown::new();
        let mut connections = tokio::task::JoinSet::new();
        tracing::info!(target: "guard::server", %local, "listening");
        while let Some((stream, remote)) = accept_until(&listener, stop.as_mut()).await {
            let conn = Connection::new(shared.clone(), remote);
            connections.spawn(conn.serve(stream, &http, &graceful, stack.clone()));
            // Forget finished connections as we go.
            while connections.try_join_next().is_some() {}
        }
        // Closing the listener makes the kernel refuse new connections from here on.
        drop(listener);
        tracing::info!(target: "guard::server", %local, "shutting down");
        drain(graceful, connections, shared.settings.drain_timeout).await;
        if let Some(hook) = on_shutdown {
            hook();
        }
        Ok(())
    }
}

/// The next connection, or `None` once `stop` has completed (checked first). A failed `accept`
/// (e.g. out of file descriptors) is logged and retried after [`ACCEPT_BACKOFF`].
async fn accept_until<F>(
    listener: &TcpListener,
    mut stop: Pin<&mut F>,
) -> Option<(TcpStream, SocketAddr)>
where
    F: Future<Output = ()>,
{
    loop {
        tokio::select! {
            biased;
            () = &mut stop => return None,
            accepted = listener.accept() => match accepted {
                Ok(a) => return Some(a),
                Err(e) => {
                    tracing::warn!(target: "guard::server", error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
}

/// hyper's HTTP/1.1 connection settings from `config`.
fn http1_builder(config: &Settings) -> http1::Builder {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_headers(config.max_headers)
        .max_buf_size(config.max_header_bytes)
        .keep_alive(config.keep_alive);
    http
}

/// Lets in-flight requests finish within `timeout`, then drops the connections still open.
async fn drain(
    graceful: GracefulShutdown,
    mut connections: tokio::task::JoinSet<()>,
    timeout: Duration,
) {
    let drained = tokio::time::timeout(timeout, async {
        graceful.shutdown().await;
        // The tasks may still be recording a connection's last refusal.
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(target: "guard::server", drain = ?timeout, "drain timeout: dropping connections");
        // Each request cut off here is recorded as cancelled by the stack's audit layer.
        connections.shutdown().await;
    }
}

/// Waits for SIGTERM (when enabled) or the caller's signal, whichever comes first.
async fn shutdown_signal(sigterm: bool, caller: Option<ShutdownSignal>) {
    let caller = async {
        match caller {
            Some(signal) => signal.await,
            None => std::future::pending().await,
        }
    };
    let term = async {
        if sigterm {
            terminate().await
        } else {
            std::future::pending().await
        }
    };
    tokio::select! {
        () = caller => {}
        () = term => tracing::info!(target: "guard::server", "SIGTERM received"),
    }
}

#[cfg(unix)]
async fn terminate() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(e) => {
            tracing::error!(target: "guard::server", error = %e, "cannot listen for SIGTERM");
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(not(unix))]
async fn terminate() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// What every connection shares.
struct ServerWide {
    settings: Settings,
    audit: AuditLayer,
}

/// One client connection (the stack is cloned per request, so it need not be `Sync`).
#[derive(Clone)]
struct Connection {
    shared: Arc<ServerWide>,
    remote: SocketAddr,
    /// Bytes read from the socket so far.
    read: Arc<AtomicU64>,
    /// `read` when the last request was answered: more than that means a request was under way.
    read_when_answered: Arc<AtomicU64>,
}

impl Connection {
    fn new(shared: Arc<ServerWide>, remote: SocketAddr) -> Self {
        Self {
            shared,
            remote,
            read: Arc::new(AtomicU64::new(0)),
            read_when_answered: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Serves this connection's requests with clones of `stack` until it closes (or the graceful
    /// shutdown closes it); a refusal hyper made on it is recorded by
    /// [`connection_failed`](Self::connection_failed). The connection is watched by `graceful`
    /// from this call on, before the returned future first runs.
    fn serve<S>(
        self,
        stream: TcpStream,
        http: &http1::Builder,
        graceful: &GracefulShutdown,
        stack: S,
    ) -> impl Future<Output = ()> + Send + use<S>
    where
        S: Service<GuardRequest, Response = GuardResponse> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
    {
        let io = TokioIo::new(CountingIo::new(stream, self.read.clone()));
        let svc_conn = self.clone();
        let service =
            hyper::service::service_fn(move |req| svc_conn.clone().handle(stack.clone(), req));
        let serving = graceful.watch(http.serve_connection(io, service));
        async move {
            if let Err(e) = serving.await {
                self.connection_failed(&e).await;
            }
        }
    }

    async fn handle<S>(
        self,
        stack: S,
        req: http::Request<Incoming>,
    ) -> Result<http::Response<Full<Bytes>>, Infallible>
    where
        S: Service<GuardRequest, Response = GuardResponse> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
    {
        let config = &self.shared.settings;
        let deadline = Instant::now() + config.body_read_timeout;
        let (mut parts, body) = req.into_parts();
        let peer = match config.trusted_proxies {
            Some(proxies) => proxies.peer(&parts.headers),
            None => Some(self.socket_peer()),
        };
        parts.extensions.insert(Trigger::Http);
        if let Some(peer) = peer {
            parts.extensions.insert(peer);
        }
        let response = match read_bounded(body, config.max_body_bytes, deadline).await {
            Ok(bytes) => {
                let req = GuardRequest::from_parts(parts, bytes);
                match stack.oneshot(req).await {
                    Ok(resp) => resp,
                    Err(e) => {
                        let e: BoxError = e.into();
                        tracing::error!(target: "guard::server", error = %e, "stack failed");
                        Rejection::new(RejectionKind::Internal).into_response()
                    }
                }
            }
            Err(refusal) => {
                let (kind, reason) = match refusal {
                    BodyRefusal::DeclaredTooLarge => (
                        RejectionKind::TooLarge,
                        "declared content-length over the limit",
                    ),
                    BodyRefusal::TooLarge => (RejectionKind::TooLarge, "body over the limit"),
                    BodyRefusal::Timeout => {
                        (RejectionKind::RequestTimeout, "body not received in time")
                    }
                    BodyRefusal::Broken => (RejectionKind::InvalidInput, "body could not be read"),
                };
                let req = GuardRequest::from_parts(parts, Bytes::new());
                let mut resp = self
                    .refuse(req, Rejection::new(kind).with_reason(reason))
                    .await;
                // The rest of the body stays unread: the connection cannot carry another request.
                resp.headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                resp
            }
        };
        self.read_when_answered
            .store(self.read.load(Ordering::Relaxed), Ordering::Relaxed);
        Ok(response.map(Full::new))
    }

    /// A refusal that hyper itself made (or a client that stalled mid-head): one event through
    /// the audit layer, for a request that has no headers, only the socket's peer.
    async fn connection_failed(&self, e: &hyper::Error) {
        let started_a_request =
            self.read.load(Ordering::Relaxed) > self.read_when_answered.load(Ordering::Relaxed);
        let (kind, reason) = if e.is_parse_too_large() {
            // hyper has answered 431 (414 for an over-long request line) and closed.
            (RejectionKind::HeadersTooLarge, "request head too large")
        } else if e.is_timeout() && started_a_request {
            // hyper has closed the connection without an answer.
            (
                RejectionKind::RequestTimeout,
                "request head not received in time",
            )
        } else if e.is_parse() {
            // hyper has answered 400 and closed.
            (RejectionKind::InvalidInput, "malformed request head")
        } else {
            // An idle keep-alive connection timing out, a client going away: no request refused.
            tracing::debug!(target: "guard::server", error = %e, "connection ended");
            return;
        };
        let mut req = GuardRequest::new(Bytes::new());
        req.extensions_mut().insert(Trigger::Http);
        req.extensions_mut().insert(self.socket_peer());
        self.refuse(req, Rejection::new(kind).with_reason(reason))
            .await;
    }

    fn socket_peer(&self) -> Peer {
        Peer::new(self.remote.ip().to_canonical())
    }

    /// Answers `req` with `rejection` through the audit layer, so it is recorded exactly once.
    async fn refuse(&self, req: GuardRequest, rejection: Rejection) -> GuardResponse {
        let refuse = tower::service_fn(move |_: GuardRequest| {
            let resp = rejection.clone().into_response();
            async move { Ok::<_, Infallible>(resp) }
        });
        match self.shared.audit.layer(refuse).oneshot(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        }
    }
}
