//! `guard-http`: [`HttpClient`], the one outbound HTTP client every Guard crate uses — JWKS documents, SNS
//! signing certificates, the AWS SDK's requests to Secrets Manager, and the secret and identity
//! services of the other clouds.
//!
//! hyper 1 over HTTP/1.1 (the hyper-util client `lambda_runtime` already carries) with rustls on
//! *ring* and the platform's root certificates. Its limits live here and nowhere else:
//!
//! | rule | default |
//! |---|---|
//! | scheme | `https://` only; plain `http://` only through [`HttpClient::allowing_local_http`], to a loopback or link-local address |
//! | redirects | never followed: a 3xx comes back as the response, its `Location` is not fetched |
//! | response body | at most 1 MiB by default; a larger declared `Content-Length` is refused before reading |
//! | total time | 5 s by default from sending to the last body byte, connection included |
//! | connect time | 2 s by default per TCP connection attempt |
//!
//! ```
//! use guard_http::{HttpClient, HttpError};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let client = HttpClient::builder().build().unwrap();
//! // Plain HTTP to a public host is refused before anything is sent.
//! let uri = "http://example.com/keys".parse().unwrap();
//! let err = client.get(uri, Default::default()).await.unwrap_err();
//! assert!(matches!(err, HttpError::Refused(_)));
//! # }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::rt::TokioExecutor;

/// How long one TCP connection attempt may take by default.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one exchange (connect, send, headers, whole body) may take by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest response body read by default, in bytes.
const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Why a request got no usable response. Carries no URL, header or body content.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The request breaks the client's rules (scheme, host); nothing was sent.
    #[error("request refused: {0}")]
    Refused(&'static str),
    /// No connection could be made (DNS, TCP, TLS).
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The exchange did not complete within the total timeout.
    #[error("no complete response within {0:?}")]
    Timeout(Duration),
    /// The response body is larger than the cap.
    #[error("response body over {0} bytes")]
    TooLarge(usize),
    /// The connection failed during the exchange.
    #[error("exchange failed: {0}")]
    Io(String),
    /// The client could not be built (no root certificate, bad TLS configuration).
    #[error("cannot build the HTTP client: {0}")]
    Setup(String),
}

impl HttpError {
    /// Whether trying again later may help (connection, timeout, I/O).
    ///
    /// ```
    /// use guard_http::HttpError;
    /// assert!(HttpError::Timeout(std::time::Duration::from_secs(1)).is_transient());
    /// assert!(!HttpError::Refused("plain http").is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Connect(_) | Self::Timeout(_) | Self::Io(_))
    }
}

/// Resolves host names with the system resolver, except names pinned to an address.
#[derive(Clone)]
struct Resolver {
    pinned: Arc<HashMap<String, SocketAddr>>,
    system: GaiResolver,
}

type Addrs = std::vec::IntoIter<SocketAddr>;

impl tower_service::Service<Name> for Resolver {
    type Response = Addrs;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Addrs, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.system.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        if let Some(addr) = self.pinned.get(name.as_str()) {
            let addrs = vec![*addr].into_iter();
            return Box::pin(async move { Ok(addrs) });
        }
        let lookup = self.system.call(name);
        Box::pin(async move { Ok(lookup.await?.collect::<Vec<_>>().into_iter()) })
    }
}

/// Builds an [`HttpClient`].
#[derive(Clone)]
pub struct HttpClientBuilder {
    connect_timeout: Duration,
    timeout: Duration,
    max_response_bytes: usize,
    roots: Option<Vec<Vec<u8>>>,
    pinned: HashMap<String, SocketAddr>,
}

impl std::fmt::Debug for HttpClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClientBuilder")
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("own_roots", &self.roots.as_ref().map(Vec::len))
            .field("pinned", &self.pinned)
            .finish()
    }
}

impl HttpClientBuilder {
    /// How long one TCP connection attempt may take (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one exchange may take, connection and whole body included (default
    /// 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest response body read (default 1 MiB).
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Trusts these DER certificates, and no others, instead of the platform's roots (a private
    /// CA, a local test server).
    pub fn root_certificates_der(mut self, certs: impl IntoIterator<Item = Vec<u8>>) -> Self {
        self.roots = Some(certs.into_iter().collect());
        self
    }

    /// Connects to `addr` whenever a URL names `host`, without asking DNS (like curl's
    /// `--resolve`). The certificate is still checked against `host`. The port of `addr` is used
    /// when the URL gives none.
    pub fn resolve(mut self, host: impl Into<String>, addr: SocketAddr) -> Self {
        self.pinned.insert(host.into(), addr);
        self
    }

    /// The client. Fails when no root certificate is usable or a timeout is zero.
    pub fn build(self) -> Result<HttpClient, HttpError> {
        if self.timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(HttpError::Setup(
                "timeouts must be greater than zero".into(),
            ));
        }
        let roots = match self.roots {
            Some(ders) => {
                let mut roots = rustls::RootCertStore::empty();
                for der in ders {
                    roots
                        .add(der.into())
                        .map_err(|e| HttpError::Setup(format!("root certificate: {e}")))?;
                }
                roots
            }
            None => native_roots()?,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| HttpError::Setup(format!("tls: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let resolver = Resolver {
            pinned: Arc::new(self.pinned),
            system: GaiResolver::new(),
        };
        let mut tcp = HttpConnector::new_with_resolver(resolver);
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(self.connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        Ok(HttpClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout: self.timeout,
            max_response_bytes: self.max_response_bytes,
            local_http: false,
        })
    }
}

/// The platform's root certificates (`SSL_CERT_FILE` / `SSL_CERT_DIR` override them, as for
/// OpenSSL). Fails when none is usable.
fn native_roots() -> Result<rustls::RootCertStore, HttpError> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(HttpError::Setup(
            "no root certificate found on this platform".into(),
        ));
    }
    Ok(roots)
}

/// The outbound HTTP client (see the [module docs](self)). Cheap to clone: clones share one
/// connection pool.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector<Resolver>>, Full<Bytes>>,
    timeout: Duration,
    max_response_bytes: usize,
    local_http: bool,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("local_http", &self.local_http)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A builder with the defaults of the [module docs](self).
    pub fn builder() -> HttpClientBuilder {
        HttpClientBuilder {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            roots: None,
            pinned: HashMap::new(),
        }
    }

    /// The total time one exchange may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The largest response body read.
    pub fn max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }

    /// A handle on the same connection pool that also sends plain `http://` to a loopback address
    /// (`127.0.0.0/8`, `::1`, `localhost`) or a link-local one (`169.254.0.0/16`, `fe80::/10`):
    /// the Azure identity endpoint, the GCP metadata server (use its address, `169.254.169.254`),
    /// local emulators. Any other host name stays refused for plain HTTP, since its address is not
    /// known before resolution. `self` is unchanged (HTTPS only, unless it was made this way).
    ///
    /// ```
    /// use guard_http::{HttpClient, HttpError};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let local = HttpClient::builder().build().unwrap().allowing_local_http();
    /// let err = local.get("http://example.com/".parse().unwrap(), Default::default()).await;
    /// assert_eq!(err.unwrap_err(), HttpError::Refused("plain http only to a loopback or link-local address"));
    /// # }
    /// ```
    pub fn allowing_local_http(&self) -> Self {
        Self {
            local_http: true,
            ..self.clone()
        }
    }

    /// A handle on the same pool that sends `https://` only, whatever `self` allows: for a
    /// caller that must never speak plain HTTP, even over a client it was given.
    ///
    /// ```
    /// use guard_http::{HttpClient, HttpError};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let strict = HttpClient::builder().build().unwrap().allowing_local_http().https_only();
    /// let err = strict.get("http://127.0.0.1:9/".parse().unwrap(), Default::default()).await;
    /// assert_eq!(err.unwrap_err(), HttpError::Refused("plain http is not allowed"));
    /// # }
    /// ```
    pub fn https_only(&self) -> Self {
        Self {
            local_http: false,
            ..self.clone()
        }
    }

    /// `GET uri` with `headers`: the status, headers and whole (capped) body.
    pub async fn get(&self, uri: Uri, headers: HeaderMap) -> Result<Response<Bytes>, HttpError> {
        let mut req = Request::new(Bytes::new());
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        self.send(req).await
    }

    /// GETs a JSON document (JWKS, OpenID configuration): `Accept: application/json`, only a 200
    /// answer, at most `cap` bytes. The error is a short reason for the caller's own error type
    /// (no URL, no body).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let client = guard_http::HttpClient::builder().build().unwrap();
    /// let refused = client.get_json("http://example.com/jwks".parse().unwrap(), 4096).await;
    /// assert_eq!(refused.unwrap_err(), "request failed: request refused: plain http is not allowed");
    /// # }
    /// ```
    pub async fn get_json(&self, uri: Uri, cap: usize) -> Result<Bytes, String> {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/json"),
        );
        let resp = self.get(uri, headers).await.map_err(|e| match e {
            HttpError::TooLarge(_) => "document too large".to_string(),
            e => format!("request failed: {e}"),
        })?;
        if resp.status() != http::StatusCode::OK {
            return Err(format!("status {}", resp.status().as_u16()));
        }
        if resp.body().len() > cap {
            return Err("document too large".into());
        }
        Ok(resp.into_body())
    }

    /// Sends `req` and reads the whole response within the limits. Redirects are returned, not
    /// followed.
    pub async fn send(&self, req: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        check_scheme(req.uri(), self.local_http)?;
        let exchange = async {
            let resp = self
                .client
                .request(req.map(Full::new))
                .await
                .map_err(client_error)?;
            let (parts, body) = resp.into_parts();
            let declared = parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            let cap = self.max_response_bytes;
            if declared.is_some_and(|n| n > cap as u64) {
                return Err(HttpError::TooLarge(cap));
            }
            let body = Limited::new(body, cap).collect().await.map_err(|e| {
                if e.is::<LengthLimitError>() {
                    HttpError::TooLarge(cap)
                } else {
                    HttpError::Io(e.to_string())
                }
            })?;
            Ok(Response::from_parts(parts, body.to_bytes()))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout(self.timeout))?
    }
}

/// The scheme rule (see [`HttpClient::allowing_local_http`]), checked before anything is sent.
fn check_scheme(uri: &Uri, local_http: bool) -> Result<(), HttpError> {
    let host = uri
        .host()
        .ok_or(HttpError::Refused("the URL has no host"))?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if local_http && is_local(host) => Ok(()),
        Some("http") if local_http => Err(HttpError::Refused(
            "plain http only to a loopback or link-local address",
        )),
        Some("http") => Err(HttpError::Refused("plain http is not allowed")),
        _ => Err(HttpError::Refused("only https URLs are fetched")),
    }
}

/// `localhost`, or a loopback or link-local IP literal (`[::1]` included): the hosts plain
/// `http://` may reach through [`HttpClient::allowing_local_http`] (any other name is refused,
/// since its address is not known before resolution).
///
/// ```
/// assert!(guard_http::is_local("127.0.0.1") && guard_http::is_local("[::1]"));
/// assert!(!guard_http::is_local("example.com") && !guard_http::is_local("10.0.0.1"));
/// ```
pub fn is_local(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    match literal.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback() || ip.is_link_local(),
        Ok(IpAddr::V6(ip)) => ip.is_loopback() || ip.is_unicast_link_local(),
        Err(_) => false,
    }
}

/// Connection failures are [`HttpError::Connect`]; the rest failed during the exchange. The text
/// is the error chain (hyper's messages name no URL).
fn client_error(err: hyper_util::client::legacy::Error) -> HttpError {
    let mut text = err.to_string();
    let mut next = std::error::Error::source(&err);
    while let Some(e) = next {
        text.push_str(": ");
        text.push_str(&e.to_string());
        next = e.source();
    }
    if err.is_connect() {
        HttpError::Connect(text)
    } else {
        HttpError::Io(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> HttpClient {
        HttpClient::builder().build().unwrap()
    }

    async fn refusal(url: &str, local_http: bool) -> HttpError {
        let client = if local_http {
            client().allowing_local_http()
        } else {
            client()
        };
        client
            .get(url.parse().unwrap(), HeaderMap::new())
            .await
            .unwrap_err()
    }

    #[test]
    fn the_platform_roots_load() {
        // The production client refuses to start without roots; this machine has them.
        assert!(!native_roots().unwrap().is_empty());
    }

    #[tokio::test]
    async fn plain_http_is_refused_by_its_own_rule_before_connecting() {
        // Port 9 (discard) on loopback: the refusal comes from the scheme rule, not the network.
        for url in ["http://127.0.0.1:9/", "http://example.com/"] {
            assert_eq!(
                refusal(url, false).await,
                HttpError::Refused("plain http is not allowed")
            );
        }
        for url in [
            "http://example.com/",
            "http://10.0.0.1/",
            "http://metadata.google.internal/",
            "http://127.0.0.1.nip.io/",
        ] {
            assert_eq!(
                refusal(url, true).await,
                HttpError::Refused("plain http only to a loopback or link-local address"),
                "{url}"
            );
        }
        for url in ["ftp://127.0.0.1/", "ws://127.0.0.1/", "/relative"] {
            assert!(matches!(refusal(url, true).await, HttpError::Refused(_)));
        }
    }

    #[test]
    fn local_hosts_are_loopback_and_link_local_only() {
        for host in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.5.6.7",
            "[::1]",
            "169.254.169.254",
            "[fe80::1]",
        ] {
            assert!(is_local(host), "{host}");
        }
        for host in [
            "10.0.0.1",
            "192.168.1.1",
            "8.8.8.8",
            "[2001:db8::1]",
            "localhost.example.com",
            "metadata.google.internal",
        ] {
            assert!(!is_local(host), "{host}");
        }
    }

    #[test]
    fn zero_timeouts_are_refused_at_build() {
        let b = HttpClient::builder;
        assert!(b().timeout(Duration::ZERO).build().is_err());
        assert!(b().connect_timeout(Duration::ZERO).build().is_err());
    }
}
