//! The orders handler: runs only for requests the perimeter let through. With the example's
//! `otel` feature, an accepted order is also passed on to the next orders function named by
//! `ORDERS_NEXT_HOP_URL` (see [`forwarding`]).

use bytes::Bytes;
use guard_core::secrets::SecretHandles;
use guard_core::validate::JsonBody;
use guard_core::{GuardRequest, GuardResponse, Rejection, RejectionKind};
use sha2::{Digest, Sha256};
use std::convert::Infallible;

/// The secret whose fingerprint the handler returns.
pub(crate) const API_KEY: &str = "orders-api-key";

/// `201 {"accepted": order_id, "items": n, "key_id": <first 8 hex of SHA-256(orders-api-key)>}`.
///
/// The secrets layer put the API key in the request (and answered 503 itself, without calling
/// this handler, when it could not be had).
pub(crate) async fn orders(req: GuardRequest) -> Result<GuardResponse, Infallible> {
    // The validation layer parsed and checked the body; without it there is nothing to accept.
    let Some(order) = req
        .extensions()
        .get::<JsonBody>()
        .and_then(|b| b.value().ok())
    else {
        return Ok(Rejection::new(RejectionKind::Internal)
            .with_reason("handler reached without a validated body")
            .into_response());
    };
    let Some(key) = req
        .extensions()
        .get::<SecretHandles>()
        .and_then(|s| s.get(API_KEY))
    else {
        return Ok(Rejection::new(RejectionKind::SecretsUnavailable)
            .with_reason("orders-api-key not provided by the secrets layer")
            .into_response());
    };
    let digest = Sha256::digest(key.expose_bytes());
    let key_id = hex::encode(&digest[..4]);
    let body = serde_json::json!({
        "accepted": order["order_id"],
        "items": order["items"].as_array().map_or(0, Vec::len),
        "key_id": key_id,
    });
    let mut resp = http::Response::new(Bytes::from(body.to_string()));
    *resp.status_mut() = http::StatusCode::CREATED;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// The function's handler: [`orders`]; with the `otel` feature, spans exported over OTLP when
/// the `OTEL_*` variables name an endpoint, and accepted orders passed on to
/// `ORDERS_NEXT_HOP_URL` ([`forwarding`]). Call it inside the Tokio runtime.
pub(crate) fn from_env() -> impl tower::Service<
    GuardRequest,
    Response = GuardResponse,
    Error = Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ 'static {
    #[cfg(feature = "otel")]
    {
        if let Err(e) = guard_core::otel::otlp::install_from_env() {
            eprintln!("orders: spans are not exported: {e}");
        }
        let next = next_hop_from_env();
        tower::service_fn(move |req| forwarding(req, next.clone()))
    }
    #[cfg(not(feature = "otel"))]
    tower::service_fn(orders)
}

/// The variable naming the next orders function (a URL), e.g. the Azure function after the AWS one.
#[cfg(feature = "otel")]
pub(crate) const NEXT_HOP_VAR: &str = "ORDERS_NEXT_HOP_URL";

/// The next hop from `ORDERS_NEXT_HOP_URL`, when set (an invalid URL is reported and ignored).
#[cfg(feature = "otel")]
pub(crate) fn next_hop_from_env() -> Option<http::Uri> {
    let url = std::env::var(NEXT_HOP_VAR).ok()?;
    match url.parse() {
        Ok(uri) => Some(uri),
        Err(_) => {
            eprintln!("orders: {NEXT_HOP_VAR} is not a URL; orders are not passed on");
            None
        }
    }
}

/// [`orders`], then — for an accepted order when `next` is set — the same order `POST`ed to
/// `next` through guard-core's outbound helper: the call carries this invocation's trace
/// (`traceparent`) and is signed like a partner's webhook (`X-Guard-Signature` with the current
/// `orders-webhook-hmac` key), so the next function's perimeter admits it from any address.
/// The answer gains `"forwarded": <the next function's status>` (0 when it could not be reached).
#[cfg(feature = "otel")]
pub(crate) async fn forwarding(
    req: GuardRequest,
    next: Option<http::Uri>,
) -> Result<GuardResponse, Infallible> {
    use guard_core::outbound::OutboundLayer;
    use guard_core::verify::HmacScheme;
    use guard_http::HttpClient;
    use std::sync::OnceLock;
    use tower::{Layer, ServiceExt};

    static CLIENT: OnceLock<Option<HttpClient>> = OnceLock::new();
    let store = req
        .extensions()
        .get::<SecretHandles>()
        .map(|h| h.store().clone());
    let body = req.body().clone();
    let resp = orders(req).await?;
    let (Some(next), Some(store), true) = (next, store, resp.status() == http::StatusCode::CREATED)
    else {
        return Ok(resp);
    };
    // HTTPS, or plain HTTP to a loopback next hop (the local chain of the three examples).
    let Some(client) = CLIENT.get_or_init(|| {
        HttpClient::builder()
            .build()
            .ok()
            .map(|c| c.allowing_local_http())
    }) else {
        return Ok(resp);
    };
    let client = client.clone();
    let send = tower::service_fn(move |r: http::Request<Bytes>| {
        let client = client.clone();
        async move { client.send(r).await }
    });
    let scheme = HmacScheme::stripe_style("X-Guard-Signature").expect("a valid header name");
    let call = OutboundLayer::new()
        .sign_with(store, "orders-webhook-hmac", scheme)
        .layer(send);
    let mut out = http::Request::post(next)
        .body(body)
        .expect("a URI and a method");
    out.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let forwarded = match call.oneshot(out).await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    };
    let (parts, body) = resp.into_parts();
    let mut value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    value["forwarded"] = forwarded.into();
    Ok(http::Response::from_parts(
        parts,
        Bytes::from(value.to_string()),
    ))
}
