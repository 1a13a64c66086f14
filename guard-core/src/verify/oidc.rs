//! OpenID Connect: an issuer's signing keys found through
//! `{issuer}/.well-known/openid-configuration` (OIDC Discovery 1.0 §4), and tokens routed to the
//! verifier of the issuer they name.
//!
//! Discovery is a [`JwksFetcher`]: it runs inside the [`JwksCache`](super::JwksCache)'s one
//! refresh, so the cache's single-flight, cooldown and keep-on-failure rules hold for the
//! configuration too (100 concurrent cold requests: one configuration fetch, one JWKS fetch).

use std::sync::Mutex;

use super::jwks::{JwksCache, JwksFetcher, JwksFuture, MAX_JWKS_BYTES};
use super::jwt::{JwtVerifier, bearer, peek_issuer};
use super::layer::{Verifier, VerifyFuture};
use crate::ConfigError;
use crate::Unavailable;
use crate::rejection::{Rejection, RejectionKind};
use crate::request::{GuardRequest, Principal};
use guard_http::HttpClient;

/// Largest discovery document accepted, in bytes.
const MAX_CONFIGURATION_BYTES: usize = 64 * 1024;
/// The path appended to the issuer (its terminating `/` removed first).
const WELL_KNOWN: &str = "/.well-known/openid-configuration";

/// Whether `host` is a loopback name or address (`localhost`, `127.0.0.0/8`, `::1`).
fn is_loopback(host: &str) -> bool {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || literal
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Checks a configured issuer: `https://host[/path]` with no query, fragment or user info, or
/// plain `http://` to a loopback host (a local provider, tests). Returns whether it is local.
pub(crate) fn check_issuer(issuer: &str) -> Result<bool, String> {
    let uri: http::Uri = issuer.parse().map_err(|_| "not a URL".to_string())?;
    if issuer.contains(['?', '#']) || uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err("must have no query, fragment or user info".into());
    }
    match (uri.scheme_str(), uri.host()) {
        (Some("https"), Some(_)) => Ok(false),
        (Some("http"), Some(h)) if is_loopback(h) => Ok(true),
        _ => Err("must be an https URL (plain http only to a loopback host)".into()),
    }
}

/// A discovered `jwks_uri`: https with a host and no user info; plain http to a loopback host
/// only for a `local` (loopback http) issuer.
fn check_jwks_uri(jwks_uri: &str, local: bool) -> Result<http::Uri, String> {
    let refused = || "jwks_uri is not an https URL".to_string();
    let uri: http::Uri = jwks_uri.parse().map_err(|_| refused())?;
    let allowed = match (uri.scheme_str(), uri.host()) {
        (Some("https"), Some(_)) => true,
        (Some("http"), Some(h)) => local && is_loopback(h),
        _ => false,
    };
    if !allowed || uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(refused());
    }
    Ok(uri)
}

#[derive(Clone)]
struct Found {
    jwks_uri: http::Uri,
    /// The last JWKS fetch from it failed: discover again before the next one.
    stale: bool,
}

/// Fetches `{issuer}/.well-known/openid-configuration` (once, and again only after a JWKS fetch
/// failed), requires its `issuer` to equal the configured one exactly and its `jwks_uri` to be
/// https, then fetches the JWKS from there. Nothing else is ever fetched.
pub(crate) struct DiscoveryFetcher {
    client: HttpClient,
    issuer: String,
    configuration: http::Uri,
    /// Whether the issuer is a local (loopback `http://`) provider.
    local: bool,
    found: Mutex<Option<Found>>,
}

impl DiscoveryFetcher {
    pub(crate) fn new(issuer: &str, client: HttpClient) -> Result<Self, ConfigError> {
        let bad = || ConfigError::Url(issuer.chars().take(128).collect());
        let local = check_issuer(issuer).map_err(|_| bad())?;
        let configuration = format!("{}{WELL_KNOWN}", issuer.trim_end_matches('/'))
            .parse()
            .map_err(|_| bad())?;
        Ok(Self {
            client: if local {
                client.allowing_local_http()
            } else {
                client
            },
            issuer: issuer.to_string(),
            configuration,
            local,
            found: Mutex::new(None),
        })
    }

    async fn get(&self, uri: http::Uri, cap: usize) -> Result<bytes::Bytes, String> {
        self.client.get_json(uri, cap).await
    }

    /// The configuration's `jwks_uri`, after checking the document names this issuer.
    async fn discover(&self) -> Result<http::Uri, String> {
        #[derive(serde::Deserialize)]
        struct Configuration {
            issuer: Option<String>,
            jwks_uri: Option<String>,
        }
        let doc = self
            .get(self.configuration.clone(), MAX_CONFIGURATION_BYTES)
            .await?;
        let conf: Configuration =
            serde_json::from_slice(&doc).map_err(|_| "not an OpenID configuration".to_string())?;
        if conf.issuer.as_deref() != Some(self.issuer.as_str()) {
            return Err("the configuration names another issuer than the one configured".into());
        }
        let jwks_uri = conf.jwks_uri.ok_or("the configuration has no jwks_uri")?;
        check_jwks_uri(&jwks_uri, self.local)
    }

    fn refused(&self, error: &str) -> Unavailable {
        tracing::error!(
            target: "guard::verify",
            issuer = %self.issuer,
            error,
            "OIDC discovery failed: tokens of this issuer are refused (503 guard.verify.unavailable \
             until keys are had) and it is tried again after the JWKS cooldown"
        );
        Unavailable::new(format!("OIDC discovery: {error}"))
    }
}

#[cfg(feature = "jwks-http")]
impl JwksCache {
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
    /// use guard_http::HttpClient;
    /// use guard_core::verify::JwksCache;
    /// let client = HttpClient::builder().root_certificates_der([]).build().unwrap();
    /// assert!(JwksCache::discover("https://login.microsoftonline.com/tenant/v2.0", client.clone()).is_ok());
    /// assert!(JwksCache::discover("http://idp.example", client).is_err());
    /// ```
    pub fn discover(
        issuer: &str,
        client: guard_http::HttpClient,
    ) -> Result<JwksCache, ConfigError> {
        Ok(JwksCache::new(DiscoveryFetcher::new(issuer, client)?))
    }
}

impl JwksFetcher for DiscoveryFetcher {
    fn fetch(&self) -> JwksFuture<'_> {
        Box::pin(async move {
            let known = self.found.lock().ok().and_then(|f| f.clone());
            let jwks_uri = match known {
                Some(Found {
                    jwks_uri,
                    stale: false,
                }) => jwks_uri,
                known => match self.discover().await {
                    Ok(uri) => {
                        if let Ok(mut f) = self.found.lock() {
                            *f = Some(Found {
                                jwks_uri: uri.clone(),
                                stale: false,
                            });
                        }
                        uri
                    }
                    // Keep-on-failure: the address found before stays in use.
                    Err(e) => match known {
                        Some(f) => {
                            let _ = self.refused(&e);
                            f.jwks_uri
                        }
                        None => return Err(self.refused(&e)),
                    },
                },
            };
            match self.get(jwks_uri, MAX_JWKS_BYTES).await {
                Ok(doc) => Ok(doc.to_vec()),
                Err(e) => {
                    if let Ok(mut f) = self.found.lock()
                        && let Some(f) = f.as_mut()
                    {
                        f.stale = true;
                    }
                    Err(Unavailable::new(e))
                }
            }
        })
    }
}

/// Several trusted issuers, each with its own verifier (keys, audiences, algorithms): a token goes
/// to the verifier of the issuer its `iss` names, read before anything else is done with it. A
/// token naming no trusted issuer is refused (401 `guard.verify.bad_token`) without a key lookup,
/// so it never causes a fetch.
pub(crate) struct IssuerRouter {
    routes: Vec<(Vec<String>, JwtVerifier)>,
}

impl IssuerRouter {
    pub(crate) fn new(routes: Vec<(Vec<String>, JwtVerifier)>) -> Self {
        Self { routes }
    }

    async fn check(&self, req: &GuardRequest) -> Result<Principal, Rejection> {
        let token = bearer(req.headers())?;
        let iss = peek_issuer(token);
        let route = self.routes.iter().find(|(issuers, _)| {
            iss.as_deref()
                .is_some_and(|i| issuers.iter().any(|x| x == i))
        });
        match route {
            Some((_, verifier)) => verifier.verify(req).await,
            None => Err(Rejection::new(RejectionKind::BadToken)
                .with_reason("issuer missing or not trusted")),
        }
    }
}

impl Verifier for IssuerRouter {
    fn verify<'a>(&'a self, req: &'a GuardRequest) -> VerifyFuture<'a> {
        Box::pin(self.check(req))
    }

    fn verify_now(&self, req: &GuardRequest) -> Option<Result<Principal, Rejection>> {
        bearer(req.headers()).err().map(Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_must_be_https_or_loopback_http_without_query_or_user_info() {
        assert_eq!(
            check_issuer("https://login.microsoftonline.com/t/v2.0"),
            Ok(false)
        );
        assert_eq!(check_issuer("https://tenant.auth0.com/"), Ok(false));
        assert_eq!(check_issuer("http://127.0.0.1:8080"), Ok(true));
        assert_eq!(check_issuer("http://localhost:8080/realm"), Ok(true));
        for bad in [
            "http://idp.example",
            "http://169.254.169.254",
            "https://idp.example/?a=b",
            "https://user@idp.example",
            "ftp://idp.example",
            "idp.example",
            "",
        ] {
            assert!(check_issuer(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_discovered_jwks_uri_must_be_https_unless_the_issuer_is_local() {
        assert!(check_jwks_uri("https://idp.example/keys", false).is_ok());
        for bad in [
            "http://idp.example/keys",
            "http://127.0.0.1:8080/keys",
            "file:///etc/keys",
            "https://user@idp.example/keys",
            "/keys",
        ] {
            assert!(check_jwks_uri(bad, false).is_err(), "{bad}");
        }
        assert!(check_jwks_uri("http://127.0.0.1:8080/keys", true).is_ok());
        assert!(check_jwks_uri("http://169.254.169.254/keys", true).is_err());
        assert!(check_jwks_uri("http://idp.example/keys", true).is_err());
    }

    #[test]
    fn the_configuration_url_drops_the_issuers_terminating_slash() {
        let client = HttpClient::builder()
            .root_certificates_der([])
            .build()
            .unwrap();
        let f = DiscoveryFetcher::new("https://tenant.auth0.com/", client.clone()).unwrap();
        assert_eq!(
            f.configuration.to_string(),
            "https://tenant.auth0.com/.well-known/openid-configuration"
        );
        let f = DiscoveryFetcher::new("https://login.microsoftonline.com/t/v2.0", client).unwrap();
        assert_eq!(
            f.configuration.to_string(),
            "https://login.microsoftonline.com/t/v2.0/.well-known/openid-configuration"
        );
    }
}
