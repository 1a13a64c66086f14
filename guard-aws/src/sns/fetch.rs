//! Fetching SNS signing certificates: the [`CertFetcher`] trait (closures work), and
//! [`HttpsCertFetcher`] for production. The verifier caches what they return, so a certificate is
//! fetched once per URL.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

use super::CertUrl;

/// The future a [`CertFetcher`] returns: the PEM bytes of the certificate.
pub type CertFuture<'a> = Pin<Box<dyn Future<Output = Result<Bytes, CertFetchError>> + Send + 'a>>;

/// A certificate could not be fetched (the message carries no request values).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot fetch the SNS signing certificate: {0}")]
pub struct CertFetchError(pub String);

/// Fetches the PEM certificate at a URL that already passed [`CertUrl::parse`].
///
/// ```
/// use guard_aws::sns::{CertFetchError, CertFetcher, CertUrl};
///
/// let local = |_url: CertUrl| async { Err::<bytes::Bytes, _>(CertFetchError("offline".into())) };
/// fn takes(_: impl CertFetcher) {}
/// takes(local);
/// ```
pub trait CertFetcher: Send + Sync + 'static {
    /// Fetches `url`.
    fn fetch<'a>(&'a self, url: &'a CertUrl) -> CertFuture<'a>;
}

impl<F, Fut> CertFetcher for F
where
    F: Fn(CertUrl) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, CertFetchError>> + Send + 'static,
{
    fn fetch<'a>(&'a self, url: &'a CertUrl) -> CertFuture<'a> {
        Box::pin(self(url.clone()))
    }
}

/// The largest certificate accepted (real SNS certificates are about 2 KiB).
#[cfg(feature = "https-fetch")]
const MAX_CERT_BYTES: usize = 16 * 1024;

/// How long connecting may take.
#[cfg(feature = "https-fetch")]
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long one fetch may take, connection included.
#[cfg(feature = "https-fetch")]
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Fetches certificates over HTTPS (hyper over HTTP/1.1, rustls on *ring*, the platform's root
/// certificates; the same stack as [`crate::secrets::https_client`]): no redirects, 5 s timeout
/// (2 s to connect), at most 16 KiB, status 200 only.
#[cfg(feature = "https-fetch")]
#[derive(Debug, Clone)]
pub struct HttpsCertFetcher {
    client: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        http_body_util::Empty<Bytes>,
    >,
}

#[cfg(feature = "https-fetch")]
impl HttpsCertFetcher {
    /// A fetcher with its own HTTPS client; fails when the platform has no root certificate.
    ///
    /// ```
    /// let f = guard_aws::sns::HttpsCertFetcher::new().unwrap();
    /// # let _ = f;
    /// ```
    pub fn new() -> Result<Self, CertFetchError> {
        let client = crate::http::client(crate::http::Schemes::HttpsOnly, Some(CONNECT_TIMEOUT))
            .map_err(|e| CertFetchError(format!("https client: {e}")))?;
        Ok(Self { client })
    }

    /// A fetcher trusting `roots` only (tests against a local server).
    #[cfg(test)]
    fn with_roots(roots: rustls::RootCertStore) -> Self {
        let client = crate::http::client_with_roots(
            crate::http::Schemes::HttpsOnly,
            Some(CONNECT_TIMEOUT),
            roots,
        )
        .unwrap();
        Self { client }
    }

    async fn get(&self, uri: http::Uri) -> Result<Bytes, CertFetchError> {
        use http_body_util::BodyExt;

        let resp = self
            .client
            .get(uri)
            .await
            .map_err(|e| CertFetchError(format!("request failed: {e}")))?;
        if resp.status() != http::StatusCode::OK {
            return Err(CertFetchError(format!("status {}", resp.status().as_u16())));
        }
        let body = http_body_util::Limited::new(resp.into_body(), MAX_CERT_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    CertFetchError("certificate too large".into())
                } else {
                    CertFetchError(format!("read failed: {e}"))
                }
            })?;
        Ok(body.to_bytes())
    }
}

#[cfg(feature = "https-fetch")]
impl CertFetcher for HttpsCertFetcher {
    fn fetch<'a>(&'a self, url: &'a CertUrl) -> CertFuture<'a> {
        Box::pin(async move {
            let uri = url
                .as_str()
                .parse()
                .map_err(|_| CertFetchError("not a valid URL".into()))?;
            tokio::time::timeout(FETCH_TIMEOUT, self.get(uri))
                .await
                .map_err(|_| CertFetchError("timed out".into()))?
        })
    }
}

#[cfg(all(test, feature = "https-fetch"))]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// An HTTPS server on loopback (certificate for `localhost`) answering every request with
    /// `response`; returns its port and a root store that trusts it.
    async fn server(response: Vec<u8>) -> (u16, rustls::RootCertStore) {
        let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let der = issued.cert.der().clone();
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(issued.signing_key.serialize_der().into());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                let mut head = vec![0u8; 4096];
                let _ = tls.read(&mut head).await;
                let _ = tls.write_all(&response).await;
                let _ = tls.shutdown().await;
            }
        });
        (port, roots)
    }

    fn answer(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
        let mut r = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    }

    fn uri(port: u16) -> http::Uri {
        format!("https://localhost:{port}/SimpleNotificationService-test.pem")
            .parse()
            .unwrap()
    }

    #[tokio::test]
    async fn fetches_a_certificate_over_https() {
        let pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let (port, roots) = server(answer("200 OK", "", pem)).await;
        let got = HttpsCertFetcher::with_roots(roots).get(uri(port)).await;
        assert_eq!(got.unwrap(), Bytes::from_static(pem));
    }

    #[tokio::test]
    async fn refuses_other_statuses_and_does_not_follow_redirects() {
        let redirect = answer(
            "302 Found",
            "location: https://attacker.example/x.pem\r\n",
            b"",
        );
        let (port, roots) = server(redirect).await;
        let err = HttpsCertFetcher::with_roots(roots)
            .get(uri(port))
            .await
            .unwrap_err();
        assert_eq!(err, CertFetchError("status 302".into()));
    }

    #[tokio::test]
    async fn refuses_a_certificate_over_16_kib() {
        let (port, roots) = server(answer("200 OK", "", &[b'A'; MAX_CERT_BYTES + 1])).await;
        let err = HttpsCertFetcher::with_roots(roots)
            .get(uri(port))
            .await
            .unwrap_err();
        assert_eq!(err, CertFetchError("certificate too large".into()));
    }

    #[tokio::test]
    async fn refuses_a_server_its_roots_do_not_trust() {
        let (port, _trusted) = server(answer("200 OK", "", b"pem")).await;
        // The production fetcher: the platform's roots do not include the test certificate.
        let err = HttpsCertFetcher::new()
            .unwrap()
            .get(uri(port))
            .await
            .unwrap_err();
        assert!(err.0.starts_with("request failed"), "{err}");
    }

    #[tokio::test]
    async fn refuses_plain_http() {
        let err = HttpsCertFetcher::new()
            .unwrap()
            .get("http://127.0.0.1:9/cert.pem".parse().unwrap())
            .await
            .unwrap_err();
        assert!(err.0.starts_with("request failed"), "{err}");
    }
}
