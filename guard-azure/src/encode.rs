//! Invocation mode out: the stack's answer → the reply the host expects.
//!
//! - HTTP trigger: the host's own reply is **200** `{"Outputs": {"res": {"statusCode",
//!   "headers", "body"}}, "Logs": [], "ReturnValue": null}` (or the HTTP answer in `ReturnValue`
//!   when the output binding is `$return`); the client gets `statusCode`.
//! - Message triggers: any non-2xx reply fails the invocation, so the host retries the message
//!   (a queue: 5 dequeues by default) and then moves it to `<queue>-poison`. A refused message is
//!   answered with the refusal's own status ([`MessageVerdict`]: 4xx permanent, 429/5xx
//!   transient) and its problem+json, never with an acknowledgement.

use bytes::Bytes;
use guard_core::GuardResponse;
use guard_core::message::MessageVerdict;
use guard_core::request::body::BodyCodec;
use http::{HeaderValue, StatusCode};
use serde_json::{Map, Value, json};

/// The HTTP answer as the host's `{statusCode, headers, body}` object. Repeated headers are
/// joined with `, ` (the host's object holds one value per name); a body that is not text is
/// sent as base64.
pub fn http_output(resp: &GuardResponse) -> Value {
    let mut headers = Map::new();
    for name in resp.headers().keys() {
        let joined = resp
            .headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        headers.insert(name.as_str().to_owned(), Value::String(joined));
    }
    let content_type = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let (body, _base64) = BodyCodec::encode(content_type, resp.body());
    json!({
        "statusCode": resp.status().as_u16(),
        "headers": headers,
        "body": body,
    })
}

/// The host reply for an HTTP trigger whose output binding is `output`.
///
/// ```
/// let resp = http::Response::builder().status(201).body(bytes::Bytes::from("{}")).unwrap();
/// let reply = guard_azure::encode::http_reply(&resp, "res");
/// assert_eq!(reply.status(), 200);
/// let v: serde_json::Value = serde_json::from_slice(reply.body()).unwrap();
/// assert_eq!(v["Outputs"]["res"]["statusCode"], 201);
/// ```
pub fn http_reply(resp: &GuardResponse, output: &str) -> GuardResponse {
    let out = http_output(resp);
    let envelope = if output == "$return" {
        json!({"Outputs": {}, "Logs": [], "ReturnValue": out})
    } else {
        json!({"Outputs": {output: out}, "Logs": [], "ReturnValue": null})
    };
    json_reply(StatusCode::OK, &envelope)
}

/// The host reply for a message: 200 with empty outputs when the handler accepted it; otherwise
/// the answer itself (non-2xx: the host fails the invocation and retries or poisons the message).
///
/// ```
/// use guard_core::{Rejection, RejectionKind};
/// let refused = Rejection::new(RejectionKind::SchemaViolation).into_response();
/// assert_eq!(guard_azure::encode::message_reply(refused).status(), 400);
/// let ok = http::Response::new(bytes::Bytes::new());
/// assert_eq!(guard_azure::encode::message_reply(ok).status(), 200);
/// ```
pub fn message_reply(resp: GuardResponse) -> GuardResponse {
    match MessageVerdict::of(&resp) {
        MessageVerdict::Ack => json_reply(
            StatusCode::OK,
            &json!({"Outputs": {}, "Logs": [], "ReturnValue": null}),
        ),
        verdict => {
            tracing::debug!(target: "guard::azure", status = resp.status().as_u16(), verdict = verdict.as_str(), "message not acknowledged");
            if resp.status().is_success() {
                // A verdict other than Ack always comes with a non-2xx status; never ack by accident.
                return json_reply(StatusCode::INTERNAL_SERVER_ERROR, &json!({}));
            }
            resp
        }
    }
}

fn json_reply(status: StatusCode, body: &Value) -> GuardResponse {
    let mut resp = GuardResponse::new(Bytes::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use guard_core::{Rejection, RejectionKind};

    #[test]
    fn rate_limited_message_is_a_transient_failure_not_an_ack() {
        let limited = Rejection::new(RejectionKind::RateLimited).into_response();
        assert_eq!(MessageVerdict::of(&limited), MessageVerdict::RetryTransient);
        assert_eq!(message_reply(limited).status(), 429);
    }

    #[test]
    fn http_output_carries_status_headers_and_body() {
        let resp = Rejection::new(RejectionKind::Forbidden).into_response();
        let v = http_output(&resp);
        assert_eq!(v["statusCode"], 403);
        assert_eq!(v["headers"]["content-type"], "application/problem+json");
        assert!(v["body"].as_str().unwrap().contains("guard."));
        let reply = http_reply(&resp, "$return");
        let v: Value = serde_json::from_slice(reply.body()).unwrap();
        assert_eq!(v["ReturnValue"]["statusCode"], 403);
    }
}
