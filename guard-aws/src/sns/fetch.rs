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

/// Fetches certificates over HTTPS (rustls, web PKI roots): no redirects, 5 s timeout, at most
/// 16 KiB, status 200 only.
#[cfg(feature = "https-fetch")]
#[derive(Debug, Clone)]
pub struct HttpsCertFetcher {
    client: reqwest::Client,
}

#[cfg(feature = "https-fetch")]
impl HttpsCertFetcher {
    /// A fetcher with its own HTTPS client.
    ///
    /// ```
    /// let f = guard_aws::sns::HttpsCertFetcher::new().unwrap();
    /// # let _ = f;
    /// ```
    pub fn new() -> Result<Self, CertFetchError> {
        let client = reqwest::Client::builder()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(5))
            .connect_timeout(std::time::Duration::from_secs(2))
            .build()
            .map_err(|e| CertFetchError(format!("https client: {e}")))?;
        Ok(Self { client })
    }
}

#[cfg(feature = "https-fetch")]
impl CertFetcher for HttpsCertFetcher {
    fn fetch<'a>(&'a self, url: &'a CertUrl) -> CertFuture<'a> {
        Box::pin(async move {
            let mut resp = self
                .client
                .get(url.as_str())
                .send()
                .await
                .map_err(|e| CertFetchError(format!("request failed: {e}")))?;
            if resp.status() != reqwest::StatusCode::OK {
                return Err(CertFetchError(format!("status {}", resp.status().as_u16())));
            }
            if resp
                .content_length()
                .is_some_and(|n| n > MAX_CERT_BYTES as u64)
            {
                return Err(CertFetchError("certificate too large".into()));
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| CertFetchError(format!("read failed: {e}")))?
            {
                if body.len() + chunk.len() > MAX_CERT_BYTES {
                    return Err(CertFetchError("certificate too large".into()));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Bytes::from(body))
        })
    }
}
