//! The one HTTP client stack of guard-aws: hyper 1 over HTTP/1.1 (the hyper and hyper-util client
//! `lambda_runtime` already uses to talk to the Runtime API) with rustls on *ring* and the
//! platform's root certificates. Secrets Manager ([`crate::secrets::https_client`]) and the SNS
//! certificate fetcher ([`crate::sns::HttpsCertFetcher`]) both use it, so a function carries one
//! HTTP/TLS stack, without HTTP/2 (issue 7: binary size).

use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// How the client may reach its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    not(all(feature = "secrets-manager", feature = "https-fetch")),
    allow(dead_code)
)]
pub(crate) enum Schemes {
    /// `https://` only (certificates from the open internet).
    HttpsOnly,
    /// `https://`, and `http://` for an endpoint the configuration names (a local emulator).
    HttpsOrHttp,
}

/// The platform's root certificates (`SSL_CERT_FILE` / `SSL_CERT_DIR` override them, as for
/// OpenSSL). Fails when none is usable.
fn native_roots() -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err("no root certificate found on this platform".into());
    }
    Ok(roots)
}

/// A pooled HTTP/1.1 client sending bodies of type `B`, trusting the platform's roots;
/// `connect_timeout` bounds the TCP connect.
pub(crate) fn client<B>(
    schemes: Schemes,
    connect_timeout: Option<Duration>,
) -> Result<Client<HttpsConnector<HttpConnector>, B>, String>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    client_with_roots(schemes, connect_timeout, native_roots()?)
}

/// [`client`] trusting `roots` only. TLS: *ring*, TLS 1.2 and 1.3.
pub(crate) fn client_with_roots<B>(
    schemes: Schemes,
    connect_timeout: Option<Duration>,
    roots: rustls::RootCertStore,
) -> Result<Client<HttpsConnector<HttpConnector>, B>, String>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(connect_timeout);
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
    let builder = match schemes {
        Schemes::HttpsOnly => builder.https_only(),
        Schemes::HttpsOrHttp => builder.https_or_http(),
    };
    let https = builder.enable_http1().wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_platform_roots_load() {
        // The production client refuses to start without roots; this machine has them.
        assert!(!native_roots().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_https_only_client_refuses_plain_http_before_connecting() {
        let c = client::<http_body_util::Empty<bytes::Bytes>>(Schemes::HttpsOnly, None).unwrap();
        // Port 9 (discard) on loopback: the refusal comes from the scheme check, not the network.
        let err = c
            .get("http://127.0.0.1:9/".parse().unwrap())
            .await
            .unwrap_err();
        assert!(err.is_connect(), "{err:?}");
        assert!(format!("{err:?}").contains("unsupported scheme"), "{err:?}");
    }
}
