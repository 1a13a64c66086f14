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
pub const MAX_CERT_BYTES: usize = 16 * 1024;

/// Fetches certificates with Guard's outbound client
/// ([`guard_http::HttpClient`]: hyper over HTTP/1.1, rustls on *ring*, the
/// platform's root certificates): `https://` only, no redirects, the client's timeouts (2 s to
/// connect, 5 s in all by default), at most [`MAX_CERT_BYTES`], status 200 only.
#[cfg(feature = "https-fetch")]
#[derive(Debug, Clone)]
pub struct HttpsCertFetcher {
    client: guard_http::HttpClient,
}

#[cfg(feature = "https-fetch")]
impl HttpsCertFetcher {
    /// A fetcher with its own client of default limits; fails when the platform has no root
    /// certificate.
    ///
    /// ```
    /// let f = guard_aws::sns::HttpsCertFetcher::new().unwrap();
    /// # let _ = f;
    /// ```
    pub fn new() -> Result<Self, CertFetchError> {
        let client = guard_http::HttpClient::builder()
            .max_response_bytes(MAX_CERT_BYTES)
            .build()
            .map_err(|e| CertFetchError(e.to_string()))?;
        Ok(Self::with_client(client))
    }

    /// A fetcher over `client` (its timeouts, roots and pinned addresses; certificates over
    /// [`MAX_CERT_BYTES`] are refused whatever its cap, and plain HTTP is refused even when
    /// `client` was made with `allowing_local_http`).
    ///
    /// ```
    /// use guard_http::HttpClient;
    /// let client = HttpClient::builder().build().unwrap();
    /// let f = guard_aws::sns::HttpsCertFetcher::with_client(client);
    /// # let _ = f;
    /// ```
    pub fn with_client(client: guard_http::HttpClient) -> Self {
        Self {
            client: client.https_only(),
        }
    }

    /// `GET uri` over HTTPS: the certificate bytes.
    pub(crate) async fn get(&self, uri: http::Uri) -> Result<Bytes, CertFetchError> {
        use guard_http::HttpError;

        let resp = self
            .client
            .get(uri, http::HeaderMap::new())
            .await
            .map_err(|e| match e {
                HttpError::TooLarge(_) => CertFetchError("certificate too large".into()),
                e => CertFetchError(e.to_string()),
            })?;
        if resp.status() != http::StatusCode::OK {
            return Err(CertFetchError(format!("status {}", resp.status().as_u16())));
        }
        if resp.body().len() > MAX_CERT_BYTES {
            return Err(CertFetchError("certificate too large".into()));
        }
        Ok(resp.into_body())
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
            self.get(uri).await
        })
    }
}

#[cfg(all(test, feature = "https-fetch"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_plain_http_by_the_https_only_rule() {
        // Port 9 (discard) on loopback: the refusal is the scheme rule's, nothing is sent.
        let err = HttpsCertFetcher::new()
            .unwrap()
            .get("http://127.0.0.1:9/cert.pem".parse().unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.0, "request refused: plain http is not allowed");
    }

    #[tokio::test]
    async fn refuses_plain_http_over_a_client_that_allows_it() {
        let lenient = guard_http::HttpClient::builder()
            .build()
            .unwrap()
            .allowing_local_http();
        let err = HttpsCertFetcher::with_client(lenient)
            .get("http://127.0.0.1:9/cert.pem".parse().unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.0, "request refused: plain http is not allowed");
    }
}
