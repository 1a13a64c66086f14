//! The orders handler: runs only for requests the perimeter let through.

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
