//! [`OutboundLayer`] (feature `outbound`): the handler's *own* outgoing HTTP calls, over any
//! `tower` service of `http::Request<Bytes>` (guard-core's `http_client::HttpClient` through a
//! `service_fn`, hyper, an `axum` test router...).
//!
//! - `traceparent` (and `tracestate`) name the current span — inside a handler, the invocation's
//!   server span or a span the handler opened — so the next function's span joins the same trace.
//! - With [`sign_with`](OutboundLayer::sign_with), the request is signed the way a Guard peer's
//!   `[verify.hmac]` checks it (the same scheme and header, the *current* key of the named secret
//!   from the [`SecretStore`], the current time), so it passes that perimeter. The body is signed
//!   as sent: set it before the layer sees the request.
//!
//! ```
//! use bytes::Bytes;
//! use guard_core::outbound::OutboundLayer;
//! use guard_secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
//! use guard_core::verify::HmacScheme;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store = SecretStore::new(|_: &str, _: SecretVersion| -> Result<SecretValue, SecretsError> {
//!     Ok(SecretValue::from("shared-key"))
//! });
//! let scheme = HmacScheme::stripe_style("X-Guard-Signature").unwrap();
//! // A stand-in for the HTTP client: answers with the signature header it was sent.
//! let client = service_fn(|req: http::Request<Bytes>| async move {
//!     let sig = req.headers()["x-guard-signature"].to_str().unwrap().to_owned();
//!     Ok::<_, std::convert::Infallible>(http::Response::new(Bytes::from(sig)))
//! });
//! let call = OutboundLayer::new().sign_with(store, "orders-webhook-hmac", scheme).layer(client);
//! let req = http::Request::post("http://127.0.0.1:9/orders").body(Bytes::from_static(b"{}")).unwrap();
//! let resp = call.oneshot(req).await.unwrap();
//! assert!(resp.body().starts_with(b"t="));
//! # });
//! ```

use std::sync::Arc;

use opentelemetry::trace::TraceContextExt as _;
use tower_layer::Layer;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::clock::WallClock;
use crate::verify::HmacScheme;
use guard_secrets::SecretStore;

/// The error of an outbound call: the signing key could not be read, or the inner service's error.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Adds `traceparent` to each request and, when configured, a Guard HMAC signature. Cheap to
/// clone.
#[derive(Clone, Default)]
pub struct OutboundLayer {
    signer: Option<Arc<Signer>>,
}

struct Signer {
    store: SecretStore,
    secret: String,
    scheme: HmacScheme,
    clock: WallClock,
}

impl std::fmt::Debug for OutboundLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("OutboundLayer");
        if let Some(s) = &self.signer {
            d.field("scheme", &s.scheme.name())
                .field("secret", &s.secret);
        }
        d.finish()
    }
}

impl OutboundLayer {
    /// Trace propagation only.
    ///
    /// ```
    /// let layer = guard_core::outbound::OutboundLayer::new();
    /// # let _ = layer;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Also signs each request with `scheme` and the current version of the key named `secret`
    /// in `store` (the same name, scheme and header the receiving perimeter's `[verify.hmac]`
    /// uses). A request whose key cannot be read is not sent: the call fails with the store's
    /// error.
    pub fn sign_with(
        mut self,
        store: SecretStore,
        secret: impl Into<String>,
        scheme: HmacScheme,
    ) -> Self {
        self.signer = Some(Arc::new(Signer {
            store,
            secret: secret.into(),
            scheme,
            clock: WallClock::system(),
        }));
        self
    }
}

impl<S> Layer<S> for OutboundLayer {
    type Service = service::Outbound<S>;

    fn layer(&self, inner: S) -> Self::Service {
        service::Outbound::new(inner, self.clone())
    }
}

/// The service: reachable as `<OutboundLayer as Layer<S>>::Service`, not named.
mod service {
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use futures_util::future::BoxFuture;
    use tower_service::Service;

    use super::{BoxError, OutboundLayer, inject_trace_context};

    /// The service produced by [`OutboundLayer`].
    #[derive(Clone, Debug)]
    pub struct Outbound<S> {
        inner: S,
        layer: OutboundLayer,
    }

    impl<S> Outbound<S> {
        pub(super) fn new(inner: S, layer: OutboundLayer) -> Self {
            Self { inner, layer }
        }
    }

    impl<S> Service<http::Request<Bytes>> for Outbound<S>
    where
        S: Service<http::Request<Bytes>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
    {
        type Response = S::Response;
        type Error = BoxError;
        type Future = BoxFuture<'static, Result<S::Response, BoxError>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            self.inner.poll_ready(cx).map_err(Into::into)
        }

        fn call(&mut self, mut req: http::Request<Bytes>) -> Self::Future {
            // The span current *now*, at the call site (the future may be polled elsewhere).
            inject_trace_context(req.headers_mut());
            let clone = self.inner.clone();
            let mut inner = std::mem::replace(&mut self.inner, clone);
            let signer = self.layer.signer.clone();
            Box::pin(async move {
                if let Some(signer) = signer {
                    let key = signer.store.get(&signer.secret).await?;
                    let headers = crate::verify::hmac_signature_headers(
                        &signer.scheme,
                        key.expose_bytes(),
                        req.body(),
                        signer.clock.unix_seconds(),
                    );
                    for (name, value) in headers {
                        req.headers_mut().insert(name, value);
                    }
                }
                inner.call(req).await.map_err(Into::into)
            })
        }
    }
}

/// Writes `traceparent` (and `tracestate`) for the current span, when it belongs to a trace.
fn inject_trace_context(headers: &mut http::HeaderMap) {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return;
    }
    let parent = format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    );
    if let Ok(v) = http::HeaderValue::try_from(parent) {
        headers.insert("traceparent", v);
    }
    let state = sc.trace_state().header();
    if let Ok(v) = http::HeaderValue::try_from(state)
        && !v.is_empty()
    {
        headers.insert("tracestate", v);
    }
}
