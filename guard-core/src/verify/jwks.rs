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
use crate::ConfigError;
use crate::Unavailable;
use crate::clock::WallClock;

/// Largest JWKS document accepted, in bytes.
pub(crate) const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Most keys kept from one JWKS document (the rest are ignored).
pub(crate) const MAX_JWKS_KEYS: usize = 64;

/// The boxed future returned by [`JwksFetcher::fetch`]: the raw JWKS document.
pub(crate) type JwksFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<u8>, Unavailable>> + Send + 'a>>;

/// Fetches the JWKS document from the one configured place. Implementations must never follow a
/// URL taken from a token (`jku`, `x5u`) — the cache never gives them one.
///
/// Closures `Fn() -> Result<Vec<u8>, Unavailable>` are fetchers (handy for tests and for keys
/// shipped with the function).
pub trait JwksFetcher: Send + Sync + 'static {
    /// Fetches the document.
    fn fetch(&self) -> JwksFuture<'_>;
}

impl<F> JwksFetcher for F
where
    F: Fn() -> Result<Vec<u8>, Unavailable> + Send + Sync + 'static,
{
    fn fetch(&self) -> JwksFuture<'_> {
        let r = self();
        Box::pin(async move { r })
    }
}

/// Fetches a JWKS with the outbound [`HttpClient`](guard_http::HttpClient): `https://`
/// (plain `http://` only to a loopback or link-local address, for local identity providers and
/// tests), no redirects, the client's timeouts (5 s by default), body capped at
/// [`JwksCache::MAX_DOCUMENT_BYTES`], status 200 only.
#[cfg(feature = "jwks-http")]
#[derive(Debug, Clone)]
pub(crate) struct HttpJwksFetcher {
    client: guard_http::HttpClient,
    uri: http::Uri,
}

#[cfg(feature = "jwks-http")]
impl HttpJwksFetcher {
    /// A fetcher for `url` with a client of default limits (body capped at [`JwksCache::MAX_DOCUMENT_BYTES`]).
    pub(crate) fn new(url: &str) -> Result<Self, ConfigError> {
        let client = guard_http::HttpClient::builder()
            .max_response_bytes(MAX_JWKS_BYTES)
            .build()
            .map_err(|e| ConfigError::HttpClient(e.to_string()))?;
        Self::with_client(url, client)
    }

    /// A fetcher for `url` over `client` (its timeouts; bodies over [`JwksCache::MAX_DOCUMENT_BYTES`] are
    /// refused whatever its cap).
    pub(crate) fn with_client(
        url: &str,
        client: guard_http::HttpClient,
    ) -> Result<Self, ConfigError> {
        let bad = || ConfigError::Url(url.chars().take(128).collect());
        let uri: http::Uri = url.parse().map_err(|_| bad())?;
        let allowed = match (uri.scheme_str(), uri.host()) {
            (Some("https"), Some(_)) => true,
            (Some("http"), Some(host)) => guard_http::is_local(host),
            _ => false,
        };
        if !allowed {
            return Err(bad());
        }
        Ok(Self {
            client: client.allowing_local_http(),
            uri,
        })
    }
}

#[cfg(feature = "jwks-http")]
impl JwksFetcher for HttpJwksFetcher {
    fn fetch(&self) -> JwksFuture<'_> {
        Box::pin(async move {
            self.client
                .get_json(self.uri.clone(), MAX_JWKS_BYTES)
                .await
                .map(|body| body.to_vec())
                .map_err(Unavailable::new)
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
pub(crate) fn parse_jwks(doc: &[u8]) -> Result<Vec<Key>, Unavailable> {
    if doc.len() > MAX_JWKS_BYTES {
        return Err(Unavailable::new("document too large"));
    }
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set =
        serde_json::from_slice(doc).map_err(|_| Unavailable::new("not a JWKS document"))?;
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

/// What every clone of one cache shares: the fetcher, the keys, the single flight.
struct Shared {
    fetcher: Box<dyn JwksFetcher>,
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
/// use std::time::Duration;
/// let cache = JwksCache::new(|| Ok(br#"{"keys":[]}"#.to_vec()))
///     .ttl(Duration::from_secs(600))
///     .cooldown(Duration::from_secs(30));
/// assert_eq!(cache.fetches(), 0);
/// ```
#[derive(Clone)]
pub struct JwksCache {
    shared: Arc<Shared>,
    clock: WallClock,
    ttl: Duration,
    cooldown: Duration,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("ttl", &self.ttl)
            .field("cooldown", &self.cooldown)
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    /// Largest JWKS document accepted, in bytes.
    pub const MAX_DOCUMENT_BYTES: usize = MAX_JWKS_BYTES;

    /// A cache over `fetcher`: TTL 1 h, cooldown 10 s, the system clock until changed.
    ///
    /// The setters below are for before the cache is shared: a clone keeps the settings it was
    /// made with (and shares the keys and the refresh in flight with every other clone).
    pub fn new(fetcher: impl JwksFetcher) -> Self {
        JwksCache {
            shared: Arc::new(Shared {
                fetcher: Box::new(fetcher),
                state: Mutex::default(),
                refresh: tokio::sync::Mutex::new(()),
            }),
            clock: WallClock::system(),
            ttl: Duration::from_secs(3600),
            cooldown: Duration::from_secs(10),
        }
    }

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
    pub fn clock(mut self, clock: WallClock) -> Self {
        self.clock = clock;
        self
    }

    /// A cache of the JWKS at `url`, fetched with the outbound
    /// [`HttpClient`](guard_http::HttpClient): `https://` (plain `http://` only to a
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
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        Ok(Self::new(HttpJwksFetcher::new(url)?))
    }

    /// Like [`from_url`](Self::from_url), over `client` (its roots and timeouts; documents over
    /// [`JwksCache::MAX_DOCUMENT_BYTES`] are refused whatever its cap).
    ///
    /// ```
    /// use guard_http::HttpClient;
    /// use guard_core::verify::JwksCache;
    /// let client = HttpClient::builder().root_certificates_der([]).build().unwrap();
    /// assert!(JwksCache::from_url_with_client("https://idp.example/keys", client).is_ok());
    /// ```
    #[cfg(feature = "jwks-http")]
    pub fn from_url_with_client(
        url: &str,
        client: guard_http::HttpClient,
    ) -> Result<Self, ConfigError> {
        Ok(Self::new(HttpJwksFetcher::with_client(url, client)?))
    }

    /// How many fetches were attempted so far.
    pub fn fetches(&self) -> u64 {
        self.shared.state.lock().map(|s| s.attempts).unwrap_or(0)
    }

    /// Fetches now (bypassing TTL and cooldown), e.g. to warm the cache at start. Keeps the
    /// cached keys on failure.
    pub async fn refresh(&self) -> Result<(), Unavailable> {
        let _flight = self.shared.refresh.lock().await;
        self.fetch_now().await
    }

    async fn fetch_now(&self) -> Result<(), Unavailable> {
        let result = self
            .shared
            .fetcher
            .fetch()
            .await
            .and_then(|doc| parse_jwks(&doc));
        let now = self.clock.now();
        let mut s = self
            .shared
            .state
            .lock()
            .map_err(|_| Unavailable::new("lock poisoned"))?;
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
        let now = self.clock.now();
        let Ok(s) = self.shared.state.lock() else {
            return (None, false, false, 0);
        };
        let older_than = |t: Option<SystemTime>, d: Duration| {
            t.is_none_or(|t| now.duration_since(t).map(|age| age >= d).unwrap_or(false))
        };
        let fresh = !older_than(s.fetched_at, self.ttl);
        let may_fetch = older_than(s.last_attempt, self.cooldown);
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
        let _flight = self.shared.refresh.lock().await;
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

    const EC: &str = r#""kty":"EC","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0""#;
    const RSA: &str =
        r#""kty":"RSA","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri","e":"AQAB""#;
    const ED: &str =
        r#""kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo""#;

    /// The usable keys of a JWKS made of `members` (each the inside of one JWK object).
    fn keys(members: &[&str]) -> Vec<Key> {
        let list: Vec<String> = members.iter().map(|m| format!("{{{m}}}")).collect();
        parse_jwks(format!(r#"{{"keys":[{}]}}"#, list.join(",")).as_bytes()).unwrap()
    }

    fn algs(member: &str) -> Option<Vec<Algorithm>> {
        let mut k = keys(&[member]);
        assert!(k.len() <= 1);
        k.pop().map(|k| k.algs)
    }

    #[test]
    fn each_jwk_alg_names_exactly_its_algorithm() {
        use KeyAlgorithm as K;
        for (jwk, alg) in [
            (K::RS256, Algorithm::RS256),
            (K::RS384, Algorithm::RS384),
            (K::RS512, Algorithm::RS512),
            (K::PS256, Algorithm::PS256),
            (K::PS384, Algorithm::PS384),
            (K::PS512, Algorithm::PS512),
            (K::ES256, Algorithm::ES256),
            (K::ES384, Algorithm::ES384),
            (K::EdDSA, Algorithm::EdDSA),
        ] {
            assert_eq!(key_alg(&jwk), Some(alg), "{jwk:?}");
        }
        for other in [K::HS256, K::RSA_OAEP, K::RSA1_5] {
            assert_eq!(key_alg(&other), None, "{other:?}");
        }
    }

    #[test]
    fn the_key_family_and_declared_alg_fix_the_algorithms() {
        assert_eq!(algs(RSA), Some(RSA_ALGS.to_vec()));
        assert_eq!(
            algs(&format!(r#"{RSA},"alg":"PS384""#)),
            Some(vec![Algorithm::PS384])
        );
        assert_eq!(
            algs(&format!(r#"{EC},"crv":"P-256""#)),
            Some(vec![Algorithm::ES256])
        );
        assert_eq!(
            algs(&format!(r#"{EC},"crv":"P-384""#)),
            Some(vec![Algorithm::ES384])
        );
        assert_eq!(
            algs(&format!(r#"{EC},"crv":"P-384","alg":"ES384""#)),
            Some(vec![Algorithm::ES384])
        );
        assert_eq!(algs(&format!(r#"{EC},"crv":"P-521""#)), None);
        assert_eq!(algs(ED), Some(vec![Algorithm::EdDSA]));
        assert_eq!(
            algs(&format!(r#"{ED},"alg":"EdDSA""#)),
            Some(vec![Algorithm::EdDSA])
        );
        assert_eq!(algs(&format!(r#"{RSA},"alg":"ES256""#)), None);
        assert_eq!(algs(r#""kty":"oct","k":"c2VjcmV0","alg":"HS256""#), None);
    }

    #[test]
    fn use_and_key_ops_must_allow_verification() {
        let rsa = Some(RSA_ALGS.to_vec());
        assert_eq!(algs(&format!(r#"{RSA},"use":"sig""#)), rsa);
        assert_eq!(algs(&format!(r#"{RSA},"use":"enc""#)), None);
        assert_eq!(algs(&format!(r#"{RSA},"key_ops":["verify"]"#)), rsa);
        assert_eq!(algs(&format!(r#"{RSA},"key_ops":["sign","verify"]"#)), rsa);
        assert_eq!(algs(&format!(r#"{RSA},"key_ops":["sign"]"#)), None);
        assert_eq!(algs(&format!(r#"{RSA},"key_ops":[]"#)), None);
        assert_eq!(
            algs(&format!(r#"{RSA},"use":"sig","key_ops":["encrypt"]"#)),
            None
        );
    }

    #[test]
    fn a_document_of_exactly_the_size_limit_is_read_and_keys_are_capped() {
        let mut doc = br#"{"keys":[]}"#.to_vec();
        doc.resize(MAX_JWKS_BYTES, b' ');
        assert!(parse_jwks(&doc).unwrap().is_empty());
        let many: Vec<String> = (0..MAX_JWKS_KEYS + 1)
            .map(|i| format!(r#"{RSA},"kid":"k{i}""#))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let kept = keys(&many);
        assert_eq!(kept.len(), MAX_JWKS_KEYS);
        assert_eq!(kept[0].kid.as_deref(), Some("k0"));
    }

    fn arcs(members: &[&str]) -> Vec<Arc<Key>> {
        keys(members).into_iter().map(Arc::new).collect()
    }

    fn picked(keys: &[Arc<Key>], kid: Option<&str>, alg: Algorithm) -> Result<String, Lookup> {
        JwksCache::pick(Some(keys), kid, alg).map(|k| k.kid.clone().unwrap_or_default())
    }

    #[test]
    fn a_kid_picks_its_own_key_and_only_for_an_algorithm_it_allows() {
        let ks = arcs(&[
            &format!(r#"{RSA},"kid":"a""#),
            &format!(r#"{RSA},"kid":"b""#),
            &format!(r#"{EC},"crv":"P-256","kid":"e""#),
        ]);
        assert_eq!(picked(&ks, Some("a"), Algorithm::RS256), Ok("a".into()));
        assert_eq!(picked(&ks, Some("b"), Algorithm::PS512), Ok("b".into()));
        assert_eq!(picked(&ks, Some("e"), Algorithm::ES256), Ok("e".into()));
        assert_eq!(
            picked(&ks, Some("e"), Algorithm::RS256),
            Err(Lookup::Unknown)
        );
        assert_eq!(
            picked(&ks, Some("a"), Algorithm::ES256),
            Err(Lookup::Unknown)
        );
        assert_eq!(
            picked(&ks, Some("c"), Algorithm::RS256),
            Err(Lookup::Unknown)
        );
        assert_eq!(
            JwksCache::pick(None, Some("a"), Algorithm::RS256).err(),
            Some(Lookup::Unavailable)
        );
    }

    #[test]
    fn without_a_kid_only_the_one_key_that_fits_is_used() {
        let ks = arcs(&[
            &format!(r#"{RSA},"kid":"a""#),
            &format!(r#"{RSA},"kid":"b""#),
            &format!(r#"{EC},"crv":"P-256","kid":"e""#),
        ]);
        assert_eq!(picked(&ks, None, Algorithm::ES256), Ok("e".into()));
        assert_eq!(picked(&ks, None, Algorithm::RS256), Err(Lookup::Unknown));
        assert_eq!(picked(&ks, None, Algorithm::ES384), Err(Lookup::Unknown));
        assert_eq!(picked(&[], None, Algorithm::RS256), Err(Lookup::Unknown));
    }

    /// A cache over a document that can be swapped or made to fail, with a fake clock.
    struct Fixture {
        cache: JwksCache,
        clock: crate::clock::WallClock,
        doc: Arc<Mutex<Option<String>>>,
    }

    fn fixture(kids: &[&str]) -> Fixture {
        let clock = crate::clock::WallClock::fake_at_unix(1_000_000);
        let doc = Arc::new(Mutex::new(None));
        let served = doc.clone();
        let cache = JwksCache::new(move || {
            served
                .lock()
                .unwrap()
                .clone()
                .map(String::into_bytes)
                .ok_or_else(|| Unavailable::new("down"))
        })
        .ttl(Duration::from_secs(100))
        .cooldown(Duration::from_secs(10))
        .clock(clock.clone());
        let f = Fixture { cache, clock, doc };
        f.serve(kids);
        f
    }

    impl Fixture {
        fn serve(&self, kids: &[&str]) {
            let keys: Vec<String> = kids
                .iter()
                .map(|k| format!(r#"{{{RSA},"kid":"{k}"}}"#))
                .collect();
            *self.doc.lock().unwrap() = Some(format!(r#"{{"keys":[{}]}}"#, keys.join(",")));
        }

        fn fail(&self) {
            *self.doc.lock().unwrap() = None;
        }

        fn advance(&self, secs: u64) {
            self.clock.advance(Duration::from_secs(secs));
        }

        async fn find(&self, kid: &str) -> Result<String, Lookup> {
            let k = self.cache.find(Some(kid), Algorithm::RS256).await?;
            Ok(k.kid.clone().unwrap_or_default())
        }
    }

    #[tokio::test]
    async fn known_keys_are_refetched_once_the_ttl_has_passed_not_before() {
        let f = fixture(&["a"]);
        assert_eq!(f.find("a").await, Ok("a".into()));
        assert_eq!(f.cache.fetches(), 1);
        f.advance(99);
        assert_eq!(f.find("a").await, Ok("a".into()));
        assert_eq!(f.cache.fetches(), 1, "fresh keys are used as they are");
        f.advance(1);
        f.serve(&["b"]);
        assert_eq!(
            f.find("a").await,
            Err(Lookup::Unknown),
            "the TTL is up: refetched"
        );
        assert_eq!(f.cache.fetches(), 2);
    }

    #[tokio::test]
    async fn an_unknown_kid_refetches_once_the_cooldown_has_passed_not_before() {
        let f = fixture(&["a"]);
        assert_eq!(f.find("a").await, Ok("a".into()));
        f.serve(&["a", "b"]);
        f.advance(9);
        assert_eq!(f.find("b").await, Err(Lookup::Unknown));
        assert_eq!(f.cache.fetches(), 1, "inside the cooldown: no fetch");
        f.advance(1);
        assert_eq!(
            f.find("b").await,
            Ok("b".into()),
            "a key rotated in is found"
        );
        assert_eq!(f.cache.fetches(), 2);
        assert_eq!(f.find("a").await, Ok("a".into()));
        assert_eq!(f.cache.fetches(), 2);
    }

    #[tokio::test]
    async fn a_failed_fetch_keeps_the_cached_keys() {
        let f = fixture(&["a"]);
        f.cache.refresh().await.unwrap();
        f.fail();
        f.advance(100);
        assert_eq!(f.find("a").await, Ok("a".into()));
        assert_eq!(f.cache.fetches(), 2, "the refresh was attempted");
        assert!(f.cache.refresh().await.is_err());
        assert_eq!(f.cache.fetches(), 3);
        assert_eq!(f.find("a").await, Ok("a".into()));
    }

    #[tokio::test]
    async fn nothing_fetched_is_unavailable_and_an_empty_set_is_unknown() {
        let f = fixture(&[]);
        f.fail();
        assert_eq!(f.find("a").await, Err(Lookup::Unavailable));
        assert_eq!(f.cache.fetches(), 1);
        f.serve(&[]);
        f.advance(10);
        assert_eq!(f.find("a").await, Err(Lookup::Unknown));
        assert_eq!(f.cache.fetches(), 2);
    }

    #[cfg(feature = "jwks-http")]
    #[test]
    fn a_fetcher_takes_https_or_plain_http_to_a_local_address_only() {
        let client = guard_http::HttpClient::builder()
            .root_certificates_der([])
            .build()
            .unwrap();
        let fetcher = |url: &str| HttpJwksFetcher::with_client(url, client.clone());
        for ok in [
            "https://idp.example/keys",
            "https://10.0.0.1:8443/keys",
            "http://127.0.0.1:8080/keys",
            "http://[::1]/keys",
            "http://localhost/keys",
        ] {
            assert!(fetcher(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://idp.example/keys",
            "http://10.0.0.1/keys",
            "file:///etc/keys",
            "/keys",
            "ftp://127.0.0.1/keys",
            "not a url",
        ] {
            assert!(fetcher(bad).is_err(), "{bad}");
        }
    }

    /// Serves one HTTP/1.1 response (`status`, a JWKS padded to `len` bytes) on a loopback port
    /// and fetches it.
    #[cfg(feature = "jwks-http")]
    async fn fetch_once(status: &str, len: usize) -> Result<Vec<u8>, Unavailable> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n"
        );
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 4096];
            let _ = sock.read(&mut request).await;
            let mut body = br#"{"keys":[]}"#.to_vec();
            body.resize(len, b' ');
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(&body).await;
        });
        let client = guard_http::HttpClient::builder()
            .root_certificates_der([])
            .build()
            .unwrap();
        let fetcher = HttpJwksFetcher::with_client(&format!("http://{addr}/keys"), client).unwrap();
        let got = fetcher.fetch().await;
        server.abort();
        got
    }

    #[cfg(feature = "jwks-http")]
    #[tokio::test]
    async fn a_document_of_exactly_the_cap_is_fetched_and_not_one_byte_more() {
        assert_eq!(
            fetch_once("200 OK", MAX_JWKS_BYTES).await.map(|d| d.len()),
            Ok(MAX_JWKS_BYTES)
        );
        assert!(fetch_once("200 OK", MAX_JWKS_BYTES + 1).await.is_err());
        assert_eq!(
            fetch_once("404 Not Found", 11).await,
            Err(Unavailable::new("status 404"))
        );
    }

    #[test]
    fn debug_shows_the_timings_and_no_keys() {
        let cache = JwksCache::new(|| Ok(br#"{"keys":[]}"#.to_vec()))
            .ttl(Duration::from_secs(60))
            .cooldown(Duration::from_secs(5));
        assert_eq!(
            format!("{cache:?}"),
            "JwksCache { ttl: 60s, cooldown: 5s, .. }"
        );
    }

    /// A fetcher that yields before it answers, so concurrent lookups meet its flight.
    struct Yielding(Arc<std::sync::atomic::AtomicUsize>);

    impl JwksFetcher for Yielding {
        fn fetch(&self) -> JwksFuture<'_> {
            Box::pin(async move {
                tokio::task::yield_now().await;
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(format!(r#"{{"keys":[{{{RSA},"kid":"a"}}]}}"#).into_bytes())
            })
        }
    }

    /// Even without a cooldown, lookups that waited for a refresh in flight use its outcome
    /// instead of fetching again.
    #[tokio::test]
    async fn waiters_share_the_refresh_in_flight_even_without_a_cooldown() {
        let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let cache = JwksCache::new(Yielding(fetches.clone())).cooldown(Duration::ZERO);
        let lookups = (0..5).map(|_| cache.find(Some("unknown"), Algorithm::RS256));
        for r in futures_util::future::join_all(lookups).await {
            assert_eq!(r.err(), Some(Lookup::Unknown));
        }
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
