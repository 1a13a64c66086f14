//! [`SecretManagerSource`]: secrets from Google Secret Manager, with the service account's token
//! from the metadata server.
//!
//! - `GET {base}/v1/projects/{project}/secrets/{name}/versions/latest:access` with
//!   `Authorization: Bearer <token>`; the answer's `payload.data` (base64) is checked against
//!   `payload.dataCrc32c` (CRC32C as a decimal string): a mismatch is a permanent error, the
//!   value is never used. A name of the form `projects/P/secrets/S` is used as it is.
//! - The token comes from `http://{GCE_METADATA_HOST}/computeMetadata/v1/instance/service-accounts/default/token`
//!   (header `Metadata-Flavor: Google`) and is reused until one minute before it expires.
//! - The project is `GOOGLE_CLOUD_PROJECT`, else the metadata server's `project/project-id`.
//!
//! | setting | environment | default |
//! |---|---|---|
//! | Secret Manager base URL | `GUARD_GCP_SECRETMANAGER_URL` | `https://secretmanager.googleapis.com` |
//! | metadata server | `GCE_METADATA_HOST` | `169.254.169.254` |
//!
//! The metadata server is plain HTTP on a link-local address; any other host must be loopback
//! (a local test server) or it is refused (the client's `allowing_local_http`).
//!
//! Secret Manager has no "previous" or "pending" alias: those versions are reported not found.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use guard_core::request::body::BodyCodec;
use guard_http::{HttpClient, HttpError};
use guard_secrets::{SecretSource, SecretValue, SecretVersion, SecretsError};
use http::{HeaderMap, HeaderValue, StatusCode, Uri};
use serde::Deserialize;
use tokio::sync::Mutex;
use zeroize::Zeroizing;

/// Secret Manager's public endpoint.
pub const SECRET_MANAGER_URL: &str = "https://secretmanager.googleapis.com";
/// The metadata server's address.
pub const METADATA_HOST: &str = "169.254.169.254";
/// Secret Manager payloads are at most 64 KiB.
const MAX_PAYLOAD: usize = 64 * 1024;
/// A token is renewed this long before the expiry the metadata server announced.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

const CASTAGNOLI: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// Reads secrets from Secret Manager (see the [module docs](self)).
///
/// ```no_run
/// # async fn f() -> Result<(), guard_http::HttpError> {
/// use guard_core::GuardDeps;
/// let source = guard_gcp::secrets::SecretManagerSource::from_env()?;
/// let deps = GuardDeps::with_secret_source(source);
/// # let _ = deps; Ok(()) }
/// ```
#[derive(Clone)]
pub struct SecretManagerSource {
    inner: Arc<Inner>,
}

struct Inner {
    /// The caller's client, allowed plain HTTP to a loopback or link-local host (the metadata
    /// server's address, a local test server) once, here.
    client: HttpClient,
    base: String,
    metadata_host: String,
    project: Option<String>,
    token: Mutex<Option<CachedToken>>,
    token_fetches: AtomicUsize,
}

struct CachedToken {
    value: Zeroizing<String>,
    renew_at: Instant,
}

impl std::fmt::Debug for SecretManagerSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretManagerSource")
            .field("base", &self.inner.base)
            .field("metadata_host", &self.inner.metadata_host)
            .field("project", &self.inner.project)
            .finish_non_exhaustive()
    }
}

impl SecretManagerSource {
    /// The source as Cloud Run's environment describes it: `GUARD_GCP_SECRETMANAGER_URL`,
    /// `GCE_METADATA_HOST`, `GOOGLE_CLOUD_PROJECT`.
    ///
    /// # Errors
    /// When the HTTPS client cannot be built (no root certificates).
    pub fn from_env() -> Result<Self, HttpError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Ok(Self::new(
            HttpClient::builder().build()?,
            var("GUARD_GCP_SECRETMANAGER_URL").unwrap_or_else(|| SECRET_MANAGER_URL.into()),
            var("GCE_METADATA_HOST").unwrap_or_else(|| METADATA_HOST.into()),
            var("GOOGLE_CLOUD_PROJECT"),
        ))
    }

    /// A source on `client` reading `base` (`https://secretmanager.googleapis.com`) with tokens
    /// from the metadata server at `metadata_host` (`host[:port]`), in `project` (else the
    /// metadata server's).
    pub fn new(
        client: HttpClient,
        base: impl Into<String>,
        metadata_host: impl Into<String>,
        project: Option<String>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                client: client.allowing_local_http(),
                base: base.into().trim_end_matches('/').to_owned(),
                metadata_host: metadata_host.into(),
                project,
                token: Mutex::new(None),
                token_fetches: AtomicUsize::new(0),
            }),
        }
    }

    /// How many tokens were fetched from the metadata server so far.
    pub fn token_fetches(&self) -> usize {
        self.inner.token_fetches.load(Ordering::Relaxed)
    }

    async fn access(&self, name: &str) -> Result<SecretValue, SecretsError> {
        let inner = &self.inner;
        let resource = if name.starts_with("projects/") {
            format!("{name}/versions/latest")
        } else {
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(SecretsError::permanent(
                    name,
                    "not a Secret Manager secret id",
                ));
            }
            let project = match &inner.project {
                Some(p) => p.clone(),
                None => self.metadata_project(name).await?,
            };
            format!("projects/{project}/secrets/{name}/versions/latest")
        };
        let uri: Uri = format!("{}/v1/{resource}:access", inner.base)
            .parse()
            .map_err(|_| SecretsError::permanent(name, "Secret Manager URL is not valid"))?;
        let token = self.token(name).await?;
        let mut headers = HeaderMap::new();
        let mut bearer = HeaderValue::from_str(&format!("Bearer {}", token.as_str()))
            .map_err(|_| SecretsError::permanent(name, "metadata token is not a header value"))?;
        bearer.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, bearer);
        let resp = inner
            .client
            .get(uri, headers)
            .await
            .map_err(|e| SecretsError::from_http(name, &e))?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Err(SecretsError::not_found(name)),
            StatusCode::UNAUTHORIZED => {
                // The token was revoked or expired early: fetch a fresh one next time.
                *inner.token.lock().await = None;
                return Err(SecretsError::transient(
                    name,
                    "Secret Manager refused the token",
                ));
            }
            StatusCode::FORBIDDEN => {
                return Err(SecretsError::AccessDenied { name: name.into() });
            }
            s if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => {
                return Err(SecretsError::transient(
                    name,
                    format!("Secret Manager answered {s}"),
                ));
            }
            s => {
                return Err(SecretsError::permanent(
                    name,
                    format!("Secret Manager answered {s}"),
                ));
            }
        }
        parse_access(name, resp.body())
    }

    async fn token(&self, name: &str) -> Result<Zeroizing<String>, SecretsError> {
        let inner = &self.inner;
        let mut cached = inner.token.lock().await;
        if let Some(t) = cached.as_ref()
            && Instant::now() < t.renew_at
        {
            return Ok(t.value.clone());
        }
        inner.token_fetches.fetch_add(1, Ordering::Relaxed);
        let body = self
            .metadata_get(name, "instance/service-accounts/default/token")
            .await?;
        #[derive(Deserialize)]
        struct Token {
            access_token: String,
            expires_in: u64,
        }
        let token: Token = serde_json::from_slice(&body)
            .map_err(|_| SecretsError::permanent(name, "metadata token answer is not valid"))?;
        let lifetime = Duration::from_secs(token.expires_in).saturating_sub(TOKEN_MARGIN);
        let value = Zeroizing::new(token.access_token);
        *cached = Some(CachedToken {
            value: value.clone(),
            renew_at: Instant::now() + lifetime,
        });
        Ok(value)
    }

    async fn metadata_project(&self, name: &str) -> Result<String, SecretsError> {
        let body = self.metadata_get(name, "project/project-id").await?;
        String::from_utf8(body.to_vec())
            .ok()
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty() && !p.contains('/'))
            .ok_or_else(|| SecretsError::permanent(name, "metadata project id is not valid"))
    }

    async fn metadata_get(&self, name: &str, path: &str) -> Result<bytes::Bytes, SecretsError> {
        let uri: Uri = format!(
            "http://{}/computeMetadata/v1/{path}",
            self.inner.metadata_host
        )
        .parse()
        .map_err(|_| SecretsError::permanent(name, "GCE_METADATA_HOST is not a host"))?;
        let mut headers = HeaderMap::new();
        headers.insert("metadata-flavor", HeaderValue::from_static("Google"));
        let resp = self
            .inner
            .client
            .get(uri, headers)
            .await
            .map_err(|e| SecretsError::from_http(name, &e))?;
        if resp.status() != StatusCode::OK {
            let s = resp.status();
            return Err(
                if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS {
                    SecretsError::transient(name, format!("metadata server answered {s}"))
                } else {
                    SecretsError::permanent(name, format!("metadata server answered {s}"))
                },
            );
        }
        Ok(resp.into_body())
    }
}

impl SecretSource for SecretManagerSource {
    fn fetch<'a>(
        &'a self,
        name: &'a str,
        version: SecretVersion,
    ) -> BoxFuture<'a, Result<SecretValue, SecretsError>> {
        Box::pin(async move {
            match version {
                SecretVersion::Current => self.access(name).await,
                _ => Err(SecretsError::not_found(name)),
            }
        })
    }
}

#[derive(Deserialize)]
struct AccessResponse {
    payload: Payload,
}

#[derive(Deserialize)]
struct Payload {
    data: String,
    #[serde(rename = "dataCrc32c")]
    data_crc32c: Option<String>,
}

/// The value of an `:access` answer, after its CRC32C check.
fn parse_access(name: &str, body: &[u8]) -> Result<SecretValue, SecretsError> {
    let parsed: AccessResponse = serde_json::from_slice(body)
        .map_err(|_| SecretsError::permanent(name, "Secret Manager answer is not valid"))?;
    let text = Zeroizing::new(parsed.payload.data);
    let data = BodyCodec::decode_base64(&text, MAX_PAYLOAD)
        .map_err(|_| SecretsError::permanent(name, "Secret Manager payload is not valid base64"))?;
    let Some(expected) = parsed.payload.data_crc32c else {
        return Err(SecretsError::permanent(
            name,
            "Secret Manager payload has no dataCrc32c",
        ));
    };
    let expected: u64 = expected
        .parse()
        .map_err(|_| SecretsError::permanent(name, "dataCrc32c is not a number"))?;
    let value = SecretValue::new(data.to_vec());
    if u64::from(CASTAGNOLI.checksum(value.expose_bytes())) != expected {
        return Err(SecretsError::permanent(
            name,
            "payload does not match its dataCrc32c",
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_is_castagnoli() {
        // RFC 3720 B.4: 32 bytes of zeros -> 0x8A9136AA.
        assert_eq!(CASTAGNOLI.checksum(&[0u8; 32]), 0x8A91_36AA);
    }

    #[test]
    fn a_payload_is_accepted_only_with_its_crc() {
        let crc = CASTAGNOLI.checksum(b"hi");
        let ok = format!(r#"{{"name":"n","payload":{{"data":"aGk=","dataCrc32c":"{crc}"}}}}"#);
        assert_eq!(
            parse_access("k", ok.as_bytes()).unwrap().expose_bytes(),
            b"hi"
        );
        let bad = format!(
            r#"{{"name":"n","payload":{{"data":"aGk=","dataCrc32c":"{}"}}}}"#,
            crc ^ 1
        );
        let err = parse_access("k", bad.as_bytes()).unwrap_err();
        assert!(!err.is_transient());
        assert!(!err.to_string().contains("hi"));
        let missing = br#"{"name":"n","payload":{"data":"aGk="}}"#;
        assert!(parse_access("k", missing).is_err());
    }
}
