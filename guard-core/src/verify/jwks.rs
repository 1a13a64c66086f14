//! [`JwksCache`]: signing keys from one configured JWKS endpoint, cached, refreshed single-flight
//! with a cooldown, kept when the endpoint fails.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};

#[cfg(feature = "jwks-http")]
use super::VerifyError;
use crate::clock::{SystemWallClock, WallClock};

/// Largest JWKS document accepted, in bytes.
pub(crate) const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Most keys kept from one JWKS document (the rest are ignored).
pub(crate) const MAX_JWKS_KEYS: usize = 64;

/// The JWKS endpoint could not be read. Carries no key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("JWKS unavailable: {reason}")]
pub struct JwksError {
    /// What went wrong.
    pub reason: String,
}

impl JwksError {
    /// An error with `reason`.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// The boxed future returned by [`JwksFetcher::fetch`]: the raw JWKS document.
pub(crate) type JwksFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<u8>, JwksError>> + Send + 'a>>;

/// Fetches the JWKS document from the one configured place. Implementations must never follow a
/// URL taken from a token (`jku`, `x5u`) — the cache never gives them one.
///
/// Closures `Fn() -> Result<Vec<u8>, JwksError>` are fetchers (handy for tests and for keys
/// shipped with the function).
pub trait JwksFetcher: Send + Sync + 'static {
    /// Fetches the document.
    fn fetch(&self) -> JwksFuture<'_>;
}

impl<F> JwksFetcher for F
where
    F: Fn() -> Result<Vec<u8>, JwksError> + Send + Sync + 'static,
{
    fn fetch(&self) -> JwksFuture<'_> {
        let r = self();
        Box::pin(async move { r })
    }
}

/// Fetches a JWKS with the outbound [`HttpClient`](crate::http_client::HttpClient): `https://`
/// (plain `http://` only to a loopback or link-local address, for local identity providers and
/// tests), no redirects, the client's timeouts (5 s by default), body capped at
/// [`JwksCache::MAX_DOCUMENT_BYTES`], status 200 only.
#[cfg(feature = "jwks-http")]
#[derive(Debug, Clone)]
pub(crate) struct HttpJwksFetcher {
    client: crate::http_client::HttpClient,
    uri: http::Uri,
}

#[cfg(feature = "jwks-http")]
impl HttpJwksFetcher {
    /// A fetcher for `url` with a client of default limits (body capped at [`JwksCache::MAX_DOCUMENT_BYTES`]).
    pub(crate) fn new(url: &str) -> Result<Self, VerifyError> {
        let client = crate::http_client::HttpClient::builder()
            .max_response_bytes(MAX_JWKS_BYTES)
            .build()
            .map_err(|e| VerifyError::HttpClient(e.to_string()))?;
        Self::with_client(url, client)
    }

    /// A fetcher for `url` over `client` (its timeouts; bodies over [`JwksCache::MAX_DOCUMENT_BYTES`] are
    /// refused whatever its cap).
    pub(crate) fn with_client(
        url: &str,
        client: crate::http_client::HttpClient,
    ) -> Result<Self, VerifyError> {
        let bad = || VerifyError::Url(url.chars().take(128).collect());
        let uri: http::Uri = url.parse().map_err(|_| bad())?;
        let local = crate::http_client::Schemes::HttpsOrLocalHttp;
        let allowed = match (uri.scheme_str(), uri.host()) {
            (Some("https"), Some(_)) => true,
            (Some("http"), Some(host)) => local.allows_plain_http_to(host),
            _ => false,
        };
        if !allowed {
            return Err(bad());
        }
        Ok(Self { client, uri })
    }
}

#[cfg(feature = "jwks-http")]
impl JwksFetcher for HttpJwksFetcher {
    fn fetch(&self) -> JwksFuture<'_> {
        use crate::http_client::{HttpError, Schemes};
        Box::pin(async move {
            let mut headers = http::HeaderMap::new();
            headers.insert(
                http::header::ACCEPT,
                http::HeaderValue::from_static("application/json"),
            );
            let resp = self
                .client
                .get(self.uri.clone(), headers, Schemes::HttpsOrLocalHttp)
                .await
                .map_err(|e| match e {
                    HttpError::TooLarge(_) => JwksError::new("document too large"),
                    e => JwksError::new(format!("request failed: {e}")),
                })?;
            if !resp.status().is_success() {
                return Err(JwksError::new(format!("status {}", resp.status().as_u16())));
            }
            if resp.body().len() > MAX_JWKS_BYTES {
                return Err(JwksError::new("document too large"));
            }
            Ok(resp.into_body().to_vec())
        })
    }
}

/// One usable verification key, with the algorithms it may be used with (pinned by its family and,
/// when the JWK says so, its `alg`).
pub(crate) struct Key {
    pub(crate) kid: Option<String>,
    pub(crate) key: DecodingKey,
    pub(crate) algs: Vec<Algorithm>,
}

const RSA_ALGS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

fn key_alg(a: &KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// Turns one JWK into a key, or `None` when it cannot be used for signature verification here:
/// symmetric (`oct`) keys are never taken from a JWKS (that is the HS/RS confusion door), a key
/// is used only if its `use` is absent or `sig` **and** its `key_ops`, when present, contains
/// `verify` (RFC 7517 §4.2, §4.3), and the family (and `alg`, when given) fixes which
/// algorithms the key accepts.
fn usable(jwk: &Jwk) -> Option<Key> {
    if !matches!(
        jwk.common.public_key_use,
        None | Some(PublicKeyUse::Signature)
    ) {
        return None;
    }
    if let Some(ops) = &jwk.common.key_operations
        && !ops.contains(&KeyOperations::Verify)
    {
        return None;
    }
    let declared = match &jwk.common.key_algorithm {
        Some(a) => Some(key_alg(a)?),
        None => None,
    };
    let family: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA_ALGS.to_vec(),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
            _ => return None,
        },
        AlgorithmParameters::OctetKey(_) => return None,
    };
    let algs = match declared {
        Some(a) if family.contains(&a) => vec![a],
        Some(_) => return None,
        None => family,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id.clone(),
        key,
        algs,
    })
}

/// Parses a JWKS document leniently per key (one odd key does not hide the others) and strictly
/// overall (must be `{"keys": [...]}` within the size limit).
pub(crate) fn parse_jwks(doc: &[u8]) -> Result<Vec<Key>, JwksError> {
    if doc.len() > MAX_JWKS_BYTES {
        return Err(JwksError::new("document too large"));
    }
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set =
        serde_json::from_slice(doc).map_err(|_| JwksError::new("not a JWKS document"))?;
    Ok(set
        .keys
        .into_iter()
        .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
        .filter_map(|jwk| usable(&jwk))
        .take(MAX_JWKS_KEYS)
        .collect())
}

/// Why no key was found for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Keys are known but none fits the token's `kid` / `alg`.
    Unknown,
    /// No keys could ever be fetched.
    Unavailable,
}

/// The keys of one successful fetch.
type Keys = Arc<[Arc<Key>]>;

#[derive(Default)]
struct State {
    keys: Arc<[Arc<Key>]>,
    fetched_at: Option<SystemTime>,
    last_attempt: Option<SystemTime>,
    attempts: u64,
}

struct Inner {
    fetcher: Box<dyn JwksFetcher>,
    clock: Arc<dyn WallClock>,
    ttl: Duration,
    cooldown: Duration,
    state: Mutex<State>,
    refresh: tokio::sync::Mutex<()>,
}

/// Signing keys from one JWKS endpoint.
///
/// - Keys are fetched on first use and refreshed when older than the TTL (default 1 h) or when a
///   token names an unknown `kid` — but at most once per cooldown (default 10 s), and
///   single-flight: concurrent requests wait for the one refresh in progress instead of starting
///   their own. A flood of tokens with made-up `kid`s therefore costs at most one fetch per cooldown.
/// - When a refresh fails, the keys already cached stay in use. With nothing cached, verification
///   answers 503 `guard.verify.unavailable`.
/// - Keys come **only** from the fetcher: never from a token's `jku`, `x5u` or `jwk` header.
///
/// ```
/// use guard_core::verify::JwksCache;
/// let cache = JwksCache::builder(|| Ok(br#"{"keys":[]}"#.to_vec())).build();
/// assert_eq!(cache.fetches(), 0);
/// ```
#[derive(Clone)]
pub struct JwksCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("ttl", &self.inner.ttl)
            .field("cooldown", &self.inner.cooldown)
            .finish_non_exhaustive()
    }
}

/// Builds a [`JwksCache`].
pub struct JwksCacheBuilder {
    fetcher: Box<dyn JwksFetcher>,
    clock: Arc<dyn WallClock>,
    ttl: Duration,
    cooldown: Duration,
}

impl std::fmt::Debug for JwksCacheBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCacheBuilder").finish_non_exhaustive()
    }
}

impl JwksCacheBuilder {
    /// How long fetched keys are used before a refresh is attempted (default 1 h).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The least time between two fetches (default 10 s).
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// The clock for TTL and cooldown (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn WallClock>) -> Self {
        self.clock = clock;
        self
    }

    /// The cache.
    pub fn build(self) -> JwksCache {
        JwksCache {
            inner: Arc::new(Inner {
                fetcher: self.fetcher,
                clock: self.clock,
                ttl: self.ttl,
                cooldown: self.cooldown,
                state: Mutex::default(),
                refresh: tokio::sync::Mutex::new(()),
            }),
        }
    }
}

impl JwksCache {
    /// Largest JWKS document accepted, in bytes.
    pub const MAX_DOCUMENT_BYTES: usize = MAX_JWKS_BYTES;

    /// A cache over `fetcher`.
    pub fn builder(fetcher: impl JwksFetcher) -> JwksCacheBuilder {
        JwksCacheBuilder {
            fetcher: Box::new(fetcher),
            clock: Arc::new(SystemWallClock),
            ttl: Duration::from_secs(3600),
            cooldown: Duration::from_secs(10),
        }
    }

    /// A cache of the JWKS at `url`, fetched with the outbound
    /// [`HttpClient`](crate::http_client::HttpClient): `https://` (plain `http://` only to a
    /// loopback or link-local address, for local identity providers and tests), no redirects,
    /// the client's timeouts (5 s by default), body capped at [`JwksCache::MAX_DOCUMENT_BYTES`],
    /// status 200 only.
    ///
    /// ```
    /// use guard_core::verify::JwksCache;
    /// assert!(JwksCache::from_url("file:///etc/keys").is_err());
    /// assert!(JwksCache::from_url("http://idp.example/keys").is_err());
    /// assert!(JwksCache::from_url("https://idp.example/keys").is_ok());
    /// ```
    #[cfg(feature = "jwks-http")]
    pub fn from_url(url: &str) -> Result<JwksCacheBuilder, VerifyError> {
        Ok(Self::builder(HttpJwksFetcher::new(url)?))
    }

    /// Like [`from_url`](Self::from_url), over `client` (its roots and timeouts; documents over
    /// [`JwksCache::MAX_DOCUMENT_BYTES`] are refused whatever its cap).
    ///
    /// ```
    /// use guard_core::http_client::HttpClient;
    /// use guard_core::verify::JwksCache;
    /// let client = HttpClient::builder().root_certificates_der([]).build().unwrap();
    /// assert!(JwksCache::from_url_with_client("https://idp.example/keys", client).is_ok());
    /// ```
    #[cfg(feature = "jwks-http")]
    pub fn from_url_with_client(
        url: &str,
        client: crate::http_client::HttpClient,
    ) -> Result<JwksCacheBuilder, VerifyError> {
        Ok(Self::builder(HttpJwksFetcher::with_client(url, client)?))
    }

    /// A cache of the keys of the OpenID Provider `issuer`, found by OIDC discovery over
    /// `client`: `{issuer}/.well-known/openid-configuration` (the issuer's terminating `/`
    /// removed) is fetched — and nothing else but the `jwks_uri` it names — its `issuer` must
    /// equal `issuer` exactly and its `jwks_uri` must be https, else no key is had (tokens get
    /// 503 `guard.verify.unavailable`) and an error is logged on the `guard::verify` target. The
    /// configuration is fetched within the cache's refresh (single-flight, cooldown, keys kept on
    /// failure) and again only after a JWKS fetch failed. `issuer` must be https (plain http only
    /// to a loopback host, for a local provider).
    ///
    /// ```
    /// use guard_core::http_client::HttpClient;
    /// use guard_core::verify::JwksCache;
    /// let client = HttpClient::builder().root_certificates_der([]).build().unwrap();
    /// assert!(JwksCache::discover("https://login.microsoftonline.com/tenant/v2.0", client.clone()).is_ok());
    /// assert!(JwksCache::discover("http://idp.example", client).is_err());
    /// ```
    #[cfg(feature = "jwks-http")]
    pub fn discover(
        issuer: &str,
        client: crate::http_client::HttpClient,
    ) -> Result<JwksCacheBuilder, VerifyError> {
        Ok(Self::builder(super::oidc::DiscoveryFetcher::new(
            issuer, client,
        )?))
    }

    /// How many fetches were attempted so far.
    pub fn fetches(&self) -> u64 {
        self.inner.state.lock().map(|s| s.attempts).unwrap_or(0)
    }

    /// Fetches now (bypassing TTL and cooldown), e.g. to warm the cache at start. Keeps the
    /// cached keys on failure.
    pub async fn refresh(&self) -> Result<(), JwksError> {
        let _flight = self.inner.refresh.lock().await;
        self.fetch_now().await
    }

    async fn fetch_now(&self) -> Result<(), JwksError> {
        let result = self
            .inner
            .fetcher
            .fetch()
            .await
            .and_then(|doc| parse_jwks(&doc));
        let now = self.inner.clock.now();
        let mut s = self
            .inner
            .state
            .lock()
            .map_err(|_| JwksError::new("lock poisoned"))?;
        s.attempts += 1;
        s.last_attempt = Some(now);
        let keys = result?;
        s.keys = keys.into_iter().map(Arc::new).collect();
        s.fetched_at = Some(now);
        Ok(())
    }

    /// The keys (`None` until a fetch succeeded), whether they are fresh, whether a fetch is
    /// allowed now, and the attempts so far.
    fn snapshot(&self) -> (Option<Keys>, bool, bool, u64) {
        let now = self.inner.clock.now();
        let Ok(s) = self.inner.state.lock() else {
            return (None, false, false, 0);
        };
        let older_than = |t: Option<SystemTime>, d: Duration| {
            t.is_none_or(|t| now.duration_since(t).map(|age| age >= d).unwrap_or(false))
        };
        let fresh = !older_than(s.fetched_at, self.inner.ttl);
        let may_fetch = older_than(s.last_attempt, self.inner.cooldown);
        let keys = s.fetched_at.map(|_| s.keys.clone());
        (keys, fresh, may_fetch, s.attempts)
    }

    fn pick(
        keys: Option<&[Arc<Key>]>,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<Key>, Lookup> {
        // Never fetched: unavailable. Fetched with no usable key: the token's key is unknown.
        let keys = keys.ok_or(Lookup::Unavailable)?;
        let fits = |k: &&Arc<Key>| k.algs.contains(&alg);
        match kid {
            Some(kid) => keys
                .iter()
                .filter(fits)
                .find(|k| k.kid.as_deref() == Some(kid))
                .cloned()
                .ok_or(Lookup::Unknown),
            None => {
                // Without a `kid` only an unambiguous key is used.
                let mut it = keys.iter().filter(fits);
                match (it.next(), it.next()) {
                    (Some(k), None) => Ok(k.clone()),
                    _ => Err(Lookup::Unknown),
                }
            }
        }
    }

    /// The key for a token's `kid` and `alg`, refreshing when allowed.
    pub(crate) async fn find(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<Key>, Lookup> {
        let (keys, fresh, may_fetch, attempts) = self.snapshot();
        let found = Self::pick(keys.as_deref(), kid, alg);
        if (found.is_ok() && fresh) || !may_fetch {
            return found;
        }
        let _flight = self.inner.refresh.lock().await;
        let (keys, _, may_fetch, now_attempts) = self.snapshot();
        if now_attempts == attempts && may_fetch {
            // Nobody refreshed while we waited: we are the one flight. Failure keeps old keys.
            let _ = self.fetch_now().await;
            let (keys, ..) = self.snapshot();
            return Self::pick(keys.as_deref(), kid, alg);
        }
        Self::pick(keys.as_deref(), kid, alg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_and_encryption_keys_are_never_used() {
        let doc = br#"{"keys":[
            {"kty":"oct","k":"c2VjcmV0","kid":"h"},
            {"kty":"EC","crv":"P-256","use":"enc","kid":"e",
             "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"EC","crv":"P-256","kid":"s",
             "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"RSA","kid":"odd","n":"@@","e":"AQAB","alg":"RSA-OAEP"},
            "not even an object"
        ]}"#;
        let keys = parse_jwks(doc).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("s"));
        assert_eq!(keys[0].algs, vec![Algorithm::ES256]);
    }

    #[test]
    fn declared_alg_pins_the_key_and_must_fit_the_family() {
        let ec = r#""kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0""#;
        let doc = format!(r#"{{"keys":[{{{ec},"kid":"a","alg":"ES384"}}]}}"#);
        assert!(parse_jwks(doc.as_bytes()).unwrap().is_empty());
    }

    #[test]
    fn garbage_documents_are_errors() {
        assert!(parse_jwks(b"[]").is_err());
        assert!(parse_jwks(b"{").is_err());
        assert!(parse_jwks(&vec![b' '; MAX_JWKS_BYTES + 1]).is_err());
    }
}
