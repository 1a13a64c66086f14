//! [`KeyVaultSource`]: a [`SecretSource`] on Azure Key Vault with the app's managed identity.
//!
//! | [`SecretVersion`] | requests |
//! |---|---|
//! | `Current` | `GET {vault}/secrets/{name}?api-version=7.4` |
//! | `Previous` | `GET {vault}/secrets/{name}/versions?api-version=7.4` (following `nextLink`), then `GET {vault}/secrets/{name}/{version}?api-version=7.4` for the newest enabled version before the current one |
//! | `Pending` | none: Key Vault has no pending stage (`NotFound`) |
//!
//! Each carries `Authorization: Bearer <token>`, the token coming from the managed-identity
//! endpoint: `GET $IDENTITY_ENDPOINT?resource=https://vault.azure.net&api-version=2019-08-01` with
//! `X-IDENTITY-HEADER: $IDENTITY_HEADER`. The token is cached until 5 minutes before its
//! `expires_on` and fetched by one caller at a time; a 401 from the vault drops it.
//!
//! | outcome | [`SecretsError`] |
//! |---|---|
//! | 404 | `NotFound` |
//! | 401, 403, token endpoint 4xx | `AccessDenied` |
//! | 429, 5xx, timeouts, connection failures | `Transient` |
//! | anything else, unreadable answers | `Permanent` |
//!
//! Requests go through Guard's one outbound client (guard-http) with
//! [`HttpClient::allowing_local_http`]: `https`, or plain HTTP to a loopback or link-local address (the
//! identity endpoint is `http://localhost:<port>/...` on App Service; tests point the vault at a
//! local server). No token or secret value appears in an error, a log or `Debug`.
//!
//! ```no_run
//! use guard_azure::keyvault::KeyVaultSource;
//! use guard_secrets::SecretStore;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // GUARD_AZURE_KEYVAULT_URL=https://shop-prod.vault.azure.net, IDENTITY_ENDPOINT, IDENTITY_HEADER
//! let store = SecretStore::new(KeyVaultSource::from_env()?);
//! let key = store.get("orders-api-key").await?;
//! # let _ = key; Ok(()) }
//! ```

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use guard_http::{HttpClient, HttpError};
use guard_secrets::{SecretSource, SecretValue, SecretVersion, SecretsError};
use http::{HeaderMap, HeaderValue, StatusCode, Uri};
use serde::Deserialize;
use tokio::sync::Mutex;

/// The Key Vault REST API version.
pub const API_VERSION: &str = "7.4";
/// The managed-identity endpoint's API version (App Service / Functions).
pub const IDENTITY_API_VERSION: &str = "2019-08-01";
/// The resource a Key Vault token is for.
pub const VAULT_RESOURCE: &str = "https://vault.azure.net";
/// How long before `expires_on` a cached token is replaced.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);
/// Most `nextLink` pages read when looking for the previous version.
const MAX_VERSION_PAGES: usize = 16;

/// Why a [`KeyVaultSource`] could not be configured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyVaultError {
    /// A required variable is unset or empty.
    #[error("{0} is not set")]
    Missing(&'static str),
    /// A URL that does not parse.
    #[error("{0} is not a valid URL")]
    BadUrl(&'static str),
    /// The outbound client could not be built.
    #[error(transparent)]
    Client(#[from] HttpError),
}

/// Reads secrets from Azure Key Vault (see the [module docs](self)).
#[derive(Clone)]
pub struct KeyVaultSource {
    inner: Arc<Inner>,
}

struct Inner {
    vault: String,
    identity_endpoint: String,
    identity_header: SecretValue,
    /// The caller's client, allowed plain HTTP to a loopback or link-local host (the managed
    /// identity endpoint, a local test server) once, here.
    client: HttpClient,
    token: Mutex<Option<Token>>,
}

struct Token {
    value: SecretValue,
    refresh_at: SystemTime,
}

impl std::fmt::Debug for KeyVaultSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVaultSource")
            .field("vault", &self.inner.vault)
            .field("identity_endpoint", &self.inner.identity_endpoint)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    /// Unix seconds, as a string (`"1586984735"`) or a number.
    expires_on: serde_json::Value,
}

#[derive(Deserialize)]
struct SecretBundle {
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VersionList {
    #[serde(default)]
    value: Vec<VersionItem>,
    next_link: Option<String>,
}

#[derive(Deserialize)]
struct VersionItem {
    id: String,
    #[serde(default)]
    attributes: Attributes,
}

#[derive(Deserialize, Default)]
struct Attributes {
    enabled: Option<bool>,
    created: Option<u64>,
}

impl KeyVaultSource {
    /// From `GUARD_AZURE_KEYVAULT_URL` (`https://<vault>.vault.azure.net`), `IDENTITY_ENDPOINT`
    /// and `IDENTITY_HEADER` (set by App Service when the app has a managed identity).
    ///
    /// # Errors
    /// A variable is missing or not a URL, or the outbound client cannot be built.
    pub fn from_env() -> Result<Self, KeyVaultError> {
        let var = |k: &'static str| {
            std::env::var(k)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .ok_or(KeyVaultError::Missing(k))
        };
        Self::new(
            &var("GUARD_AZURE_KEYVAULT_URL")?,
            &var("IDENTITY_ENDPOINT")?,
            &var("IDENTITY_HEADER")?,
            HttpClient::builder().build()?,
        )
    }

    /// A source for the vault at `vault` with this identity endpoint, header and client.
    ///
    /// # Errors
    /// `vault` or `identity_endpoint` is not a URL.
    pub fn new(
        vault: &str,
        identity_endpoint: &str,
        identity_header: &str,
        client: HttpClient,
    ) -> Result<Self, KeyVaultError> {
        let vault = vault.trim_end_matches('/').to_owned();
        vault
            .parse::<Uri>()
            .map_err(|_| KeyVaultError::BadUrl("GUARD_AZURE_KEYVAULT_URL"))?;
        identity_endpoint
            .parse::<Uri>()
            .map_err(|_| KeyVaultError::BadUrl("IDENTITY_ENDPOINT"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                vault,
                identity_endpoint: identity_endpoint.to_owned(),
                identity_header: SecretValue::new(identity_header.as_bytes().to_vec()),
                client: client.allowing_local_http(),
                token: Mutex::new(None),
            }),
        })
    }

    async fn read(&self, name: &str, version: SecretVersion) -> Result<SecretValue, SecretsError> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            // Key Vault names are alphanumerics and dashes; anything else never reaches a URL.
            return Err(SecretsError::not_found(name));
        }
        let vault = &self.inner.vault;
        let url = match version {
            SecretVersion::Current => format!("{vault}/secrets/{name}?api-version={API_VERSION}"),
            SecretVersion::Previous => {
                let id = self.previous_version(name).await?;
                format!("{vault}/secrets/{name}/{id}?api-version={API_VERSION}")
            }
            _ => return Err(SecretsError::not_found(name)),
        };
        let body = self.vault_get(name, &url).await?;
        let bundle: SecretBundle = serde_json::from_slice(&body)
            .map_err(|_| SecretsError::permanent(name, "secret bundle is not JSON with `value`"))?;
        Ok(SecretValue::new(bundle.value.into_bytes()))
    }

    /// The id of the newest enabled version created before the newest one.
    async fn previous_version(&self, name: &str) -> Result<String, SecretsError> {
        let vault = &self.inner.vault;
        let mut url = format!("{vault}/secrets/{name}/versions?api-version={API_VERSION}");
        let mut versions: Vec<(u64, String)> = Vec::new();
        for _ in 0..MAX_VERSION_PAGES {
            let body = self.vault_get(name, &url).await?;
            let list: VersionList = serde_json::from_slice(&body)
                .map_err(|_| SecretsError::permanent(name, "versions list is not JSON"))?;
            for item in list.value {
                if item.attributes.enabled == Some(false) {
                    continue;
                }
                let Some(id) = item.id.rsplit('/').next().filter(|s| !s.is_empty()) else {
                    continue;
                };
                versions.push((item.attributes.created.unwrap_or(0), id.to_owned()));
            }
            match list.next_link {
                // Only links back into the same vault are followed.
                Some(next) if next.starts_with(&format!("{vault}/")) => url = next,
                _ => break,
            }
        }
        versions.sort_by_key(|v| std::cmp::Reverse(v.0));
        versions
            .into_iter()
            .nth(1)
            .map(|(_, id)| id)
            .filter(|id| id.bytes().all(|b| b.is_ascii_alphanumeric()))
            .ok_or_else(|| SecretsError::not_found(name))
    }

    async fn vault_get(&self, name: &str, url: &str) -> Result<bytes::Bytes, SecretsError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| SecretsError::permanent(name, "vault URL"))?;
        let token = self.token(name).await?;
        let mut headers = HeaderMap::new();
        let mut auth =
            HeaderValue::from_bytes(&[b"Bearer ".as_slice(), token.expose_bytes()].concat())
                .map_err(|_| SecretsError::permanent(name, "token is not a header value"))?;
        auth.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, auth);
        let resp = self
            .inner
            .client
            .get(uri, headers)
            .await
            .map_err(|e| SecretsError::from_http(name, &e))?;
        match resp.status() {
            s if s.is_success() => Ok(resp.into_body()),
            StatusCode::UNAUTHORIZED => {
                // The token may have been revoked or expired early: fetch a new one next time.
                *self.inner.token.lock().await = None;
                Err(SecretsError::AccessDenied { name: name.into() })
            }
            s => Err(status_error(name, s)),
        }
    }

    /// The cached token, or a new one from the identity endpoint (one fetch at a time).
    async fn token(&self, name: &str) -> Result<SecretValue, SecretsError> {
        let mut cached = self.inner.token.lock().await;
        if let Some(t) = cached.as_ref()
            && SystemTime::now() < t.refresh_at
        {
            return Ok(t.value.clone());
        }
        let sep = if self.inner.identity_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!(
            "{}{sep}resource={VAULT_RESOURCE}&api-version={IDENTITY_API_VERSION}",
            self.inner.identity_endpoint
        );
        let uri: Uri = url
            .parse()
            .map_err(|_| SecretsError::permanent(name, "identity endpoint URL"))?;
        let mut headers = HeaderMap::new();
        let mut id = HeaderValue::from_bytes(self.inner.identity_header.expose_bytes())
            .map_err(|_| SecretsError::permanent(name, "IDENTITY_HEADER is not a header value"))?;
        id.set_sensitive(true);
        headers.insert("x-identity-header", id);
        let resp = self
            .inner
            .client
            .get(uri, headers)
            .await
            .map_err(|e| SecretsError::from_http(name, &e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(
                if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
                    SecretsError::AccessDenied { name: name.into() }
                } else {
                    status_error(name, status)
                },
            );
        }
        let parsed: TokenResponse = serde_json::from_slice(resp.body()).map_err(|_| {
            SecretsError::permanent(name, "identity endpoint answer is not a token")
        })?;
        let expires = match &parsed.expires_on {
            serde_json::Value::String(s) => s.trim().parse::<u64>().ok(),
            serde_json::Value::Number(n) => n.as_u64(),
            _ => None,
        }
        .ok_or_else(|| SecretsError::permanent(name, "token without a numeric expires_on"))?;
        let refresh_at = (UNIX_EPOCH + Duration::from_secs(expires))
            .checked_sub(TOKEN_MARGIN)
            .unwrap_or(UNIX_EPOCH);
        let value = SecretValue::new(parsed.access_token.into_bytes());
        *cached = Some(Token {
            value: value.clone(),
            refresh_at,
        });
        Ok(value)
    }
}

impl SecretSource for KeyVaultSource {
    fn fetch<'a>(
        &'a self,
        name: &'a str,
        version: SecretVersion,
    ) -> BoxFuture<'a, Result<SecretValue, SecretsError>> {
        Box::pin(self.read(name, version))
    }
}

fn status_error(name: &str, status: StatusCode) -> SecretsError {
    match status {
        StatusCode::NOT_FOUND => SecretsError::not_found(name),
        StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => {
            SecretsError::AccessDenied { name: name.into() }
        }
        s if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => {
            SecretsError::transient(name, format!("status {}", s.as_u16()))
        }
        s => SecretsError::permanent(name, format!("status {}", s.as_u16())),
    }
}
