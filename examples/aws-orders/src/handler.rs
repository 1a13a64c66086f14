//! The orders handler: runs only for requests the perimeter let through.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use guard_core::secrets::SecretStore;
use guard_core::validate::JsonBody;
use guard_core::{GuardRequest, GuardResponse, Rejection, RejectionKind};
use sha2::{Digest, Sha256};

/// The secret whose fingerprint the handler returns.
pub(crate) const API_KEY: &str = "orders-api-key";

/// `201 {"accepted": order_id, "items": n, "key_id": <first 8 hex of SHA-256(orders-api-key)>}`.
pub(crate) async fn orders(
    store: Arc<SecretStore>,
    req: GuardRequest,
) -> Result<GuardResponse, Infallible> {
    // The validation layer parsed and checked the body; without it there is nothing to accept.
    let Some(JsonBody(order)) = req.extensions().get::<JsonBody>() else {
        return Ok(Rejection::new(RejectionKind::Internal)
            .with_reason("handler reached without a validated body")
            .into_response());
    };
    let key = match store.get(API_KEY).await {
        Ok(key) => key,
        Err(e) => {
            let kind = RejectionKind::SecretsUnavailable;
            let reason = if e.is_transient() {
                "orders-api-key unavailable"
            } else {
                "orders-api-key missing"
            };
            return Ok(Rejection::new(kind).with_reason(reason).into_response());
        }
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
