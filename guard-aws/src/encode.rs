//! Encoding Guard's responses back into what each Lambda trigger expects.
//!
//! - HTTP envelopes: [`http_response`] renders API Gateway REST v1 / WebSocket
//!   (`multiValueHeaders`), HTTP API v2 and Function URL (`headers` + `cookies`), and ALB (single or
//!   multi-value headers, as the request was) responses; bodies that are not text are base64.
//! - Batches: [`batch_failures`] renders `{"batchItemFailures":[{"itemIdentifier": id}]}`, the
//!   identifier being the SQS `messageId`, the Kinesis `sequenceNumber` or the DynamoDB
//!   `SequenceNumber` (the decoder puts it in `MessageTrigger::message_id`).
//! - Direct invocations: [`direct_result`] returns the handler's JSON on success and a structured
//!   [`Diagnostic`] (`errorType` = the rejection code) on refusal.
//!
//! ```
//! use guard_aws::encode::{batch_failures, http_response};
//! use guard_aws::event::EventShape;
//! use guard_core::{Rejection, RejectionKind};
//!
//! let resp = Rejection::new(RejectionKind::Forbidden).into_response();
//! let v = http_response(EventShape::ApiGatewayV2, resp);
//! assert_eq!(v["statusCode"], 403);
//! assert_eq!(v["headers"]["content-type"], "application/problem+json");
//!
//! let b = batch_failures(["m-2", "m-4"]);
//! assert_eq!(b, serde_json::json!({"batchItemFailures": [{"itemIdentifier": "m-2"}, {"itemIdentifier": "m-4"}]}));
//! ```

use guard_core::request::body;
use guard_core::{GuardResponse, Rejection};
use http::HeaderMap;
use lambda_runtime::Diagnostic;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Map, Value, json};

use crate::event::EventShape;

/// Renders `response` in the format of the HTTP envelope `shape`.
///
/// Non-HTTP shapes get the API Gateway v1 format (a caller should not ask for it).
pub fn http_response(shape: EventShape, response: GuardResponse) -> Value {
    let (parts, body) = response.into_parts();
    let (body, is_base64) = encode_body(&parts.headers, &body);
    let status = parts.status.as_u16();
    match shape {
        EventShape::ApiGatewayV2 | EventShape::FunctionUrl => {
            let mut headers = Map::new();
            let mut cookies = Vec::new();
            for name in parts.headers.keys() {
                if name == http::header::SET_COOKIE {
                    cookies.extend(
                        header_values(&parts.headers, name)
                            .into_iter()
                            .map(Value::String),
                    );
                } else {
                    headers.insert(
                        name.as_str().to_owned(),
                        Value::String(joined(&parts.headers, name, ",")),
                    );
                }
            }
            let mut out = json!({
                "statusCode": status,
                "headers": headers,
                "body": body,
                "isBase64Encoded": is_base64,
            });
            if !cookies.is_empty() {
                out["cookies"] = Value::Array(cookies);
            }
            out
        }
        EventShape::Alb { multi_value } => {
            let description = format!(
                "{} {}",
                status,
                parts.status.canonical_reason().unwrap_or("Unknown")
            );
            let mut out = json!({
                "statusCode": status,
                "statusDescription": description,
                "body": body,
                "isBase64Encoded": is_base64,
            });
            if multi_value {
                out["multiValueHeaders"] = multi_headers(&parts.headers);
            } else {
                let mut headers = Map::new();
                for name in parts.headers.keys() {
                    headers.insert(
                        name.as_str().to_owned(),
                        Value::String(joined(&parts.headers, name, ", ")),
                    );
                }
                out["headers"] = Value::Object(headers);
            }
            out
        }
        _ => json!({
            "statusCode": status,
            "headers": {},
            "multiValueHeaders": multi_headers(&parts.headers),
            "body": body,
            "isBase64Encoded": is_base64,
        }),
    }
}

/// An invocation's answer as the runtime serializes it: what
/// [`GuardService`](crate::GuardService) returns for a [`RawEvent`](crate::event::RawEvent).
/// HTTP API and Function URL responses are serialized straight from the response, with no
/// `serde_json::Value` in between; every other answer is the value the functions of this module
/// give. Either way the JSON is the same as theirs.
///
/// ```
/// use guard_aws::encode::Reply;
/// use guard_aws::event::EventShape;
/// use guard_core::{Rejection, RejectionKind};
///
/// let reply = Reply::http(EventShape::ApiGatewayV2, Rejection::new(RejectionKind::Forbidden).into_response());
/// let v = reply.into_value();
/// assert_eq!(v["statusCode"], 403);
/// assert_eq!(v["headers"]["content-type"], "application/problem+json");
/// ```
#[derive(Debug)]
pub struct Reply(ReplyKind);

#[derive(Debug)]
enum ReplyKind {
    /// API Gateway HTTP API / Function URL response, written as [`http_response`] renders it.
    V2 {
        status: u16,
        headers: HeaderMap,
        body: String,
        is_base64: bool,
    },
    Value(Value),
}

impl Reply {
    /// `response` in the format of the HTTP envelope `shape` (see [`http_response`]).
    pub fn http(shape: EventShape, response: GuardResponse) -> Self {
        match shape {
            EventShape::ApiGatewayV2 | EventShape::FunctionUrl => {
                let (parts, body) = response.into_parts();
                let (body, is_base64) = encode_body(&parts.headers, &body);
                Reply(ReplyKind::V2 {
                    status: parts.status.as_u16(),
                    headers: parts.headers,
                    body,
                    is_base64,
                })
            }
            _ => Reply(ReplyKind::Value(http_response(shape, response))),
        }
    }

    pub(crate) fn value(value: Value) -> Self {
        Reply(ReplyKind::Value(value))
    }

    /// The answer as a JSON value (what it serializes to).
    pub fn into_value(self) -> Value {
        match self.0 {
            ReplyKind::Value(v) => v,
            v2 => serde_json::to_value(Reply(v2)).unwrap_or(Value::Null),
        }
    }
}

impl Serialize for Reply {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (status, headers, body, is_base64) = match &self.0 {
            ReplyKind::Value(v) => return v.serialize(s),
            ReplyKind::V2 {
                status,
                headers,
                body,
                is_base64,
            } => (status, headers, body, is_base64),
        };
        let has_cookies = headers
            .get_all(http::header::SET_COOKIE)
            .iter()
            .any(|v| v.to_str().is_ok());
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("body", body)?;
        if has_cookies {
            m.serialize_entry("cookies", &Cookies(headers))?;
        }
        m.serialize_entry("headers", &V2Headers(headers))?;
        m.serialize_entry("isBase64Encoded", is_base64)?;
        m.serialize_entry("statusCode", status)?;
        m.end()
    }
}

/// The text values of `Set-Cookie` (payload 2.0 `cookies`).
struct Cookies<'a>(&'a HeaderMap);

impl Serialize for Cookies<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for v in self.0.get_all(http::header::SET_COOKIE) {
            if let Ok(v) = v.to_str() {
                seq.serialize_element(v)?;
            }
        }
        seq.end()
    }
}

/// Every header but `Set-Cookie`, values joined by `,` (payload 2.0 `headers`).
struct V2Headers<'a>(&'a HeaderMap);

impl Serialize for V2Headers<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for name in self.0.keys() {
            if name == http::header::SET_COOKIE {
                continue;
            }
            let mut values = self.0.get_all(name).iter().filter_map(|v| v.to_str().ok());
            let first = values.next().unwrap_or_default();
            match values.next() {
                None => m.serialize_entry(name.as_str(), first)?,
                Some(second) => {
                    let mut joined = format!("{first},{second}");
                    for v in values {
                        joined.push(',');
                        joined.push_str(v);
                    }
                    m.serialize_entry(name.as_str(), &joined)?;
                }
            }
        }
        m.end()
    }
}

/// `{"batchItemFailures": [{"itemIdentifier": id}, ...]}` (an empty list means the whole batch
/// succeeded).
pub fn batch_failures<I, S>(ids: I) -> Value
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let items: Vec<Value> = ids
        .into_iter()
        .map(|id| json!({ "itemIdentifier": id.into() }))
        .collect();
    json!({ "batchItemFailures": items })
}

/// The result of a direct invocation: a 2xx body as JSON (a non-JSON body as a string, an empty
/// one as `null`); anything else a structured error whose `errorType` is the rejection code
/// (`guard.verify.forbidden`, or `guard.handler.<status>` when the handler itself said no) and
/// whose `errorMessage` is the problem document.
pub fn direct_result(response: GuardResponse) -> Result<Value, Diagnostic> {
    if response.status().is_success() {
        return Ok(body_value(response.body()));
    }
    Err(diagnostic(&response))
}

/// A structured error describing a non-2xx response (no request values: the problem document
/// never carries them).
pub(crate) fn diagnostic(response: &GuardResponse) -> Diagnostic {
    Diagnostic {
        error_type: Rejection::failure_code(response).into_owned(),
        error_message: String::from_utf8_lossy(response.body()).into_owned(),
    }
}

fn body_value(body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

fn header_values(headers: &HeaderMap, name: &http::HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect()
}

/// Every text value of `name` joined by `sep` (one allocation for the usual single value).
fn joined(headers: &HeaderMap, name: &http::HeaderName, sep: &str) -> String {
    let mut values = headers.get_all(name).iter().filter_map(|v| v.to_str().ok());
    let mut out = values.next().map(str::to_owned).unwrap_or_default();
    for v in values {
        out.push_str(sep);
        out.push_str(v);
    }
    out
}

fn multi_headers(headers: &HeaderMap) -> Value {
    let mut out = Map::new();
    for name in headers.keys() {
        let values = header_values(headers, name)
            .into_iter()
            .map(Value::String)
            .collect();
        out.insert(name.as_str().to_owned(), Value::Array(values));
    }
    Value::Object(out)
}

/// Text bodies as-is; anything else (or text that is not UTF-8) as base64.
fn encode_body(headers: &HeaderMap, body: &[u8]) -> (String, bool) {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("application/octet-stream"));
    let (text, is_base64) = body::BodyCodec::encode(content_type, body);
    (text.into_owned(), is_base64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use guard_core::RejectionKind;

    fn resp(status: u16, headers: &[(&str, &str)], body: &'static [u8]) -> GuardResponse {
        let mut r = http::Response::new(Bytes::from_static(body));
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        for (k, v) in headers {
            r.headers_mut().append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        r
    }

    #[test]
    fn v1_response_keeps_every_header_value() {
        let r = resp(
            201,
            &[
                ("content-type", "application/json"),
                ("x-a", "1"),
                ("x-a", "2"),
            ],
            b"{\"ok\":true}",
        );
        let v = http_response(EventShape::ApiGatewayV1, r);
        assert_eq!(v["statusCode"], 201);
        assert_eq!(v["multiValueHeaders"]["x-a"], json!(["1", "2"]));
        assert_eq!(v["body"], "{\"ok\":true}");
        assert_eq!(v["isBase64Encoded"], false);
    }

    #[test]
    fn v2_response_moves_set_cookie_to_cookies() {
        let r = resp(
            200,
            &[
                ("set-cookie", "a=1"),
                ("set-cookie", "b=2"),
                ("x-a", "1"),
                ("x-a", "2"),
            ],
            b"",
        );
        let v = http_response(EventShape::FunctionUrl, r);
        assert_eq!(v["cookies"], json!(["a=1", "b=2"]));
        assert_eq!(v["headers"]["x-a"], "1,2");
        assert!(v["headers"].get("set-cookie").is_none());
    }

    #[test]
    fn binary_bodies_are_base64() {
        let r = resp(200, &[("content-type", "image/png")], b"\x89PNG\x00");
        let v = http_response(EventShape::ApiGatewayV2, r);
        assert_eq!(v["isBase64Encoded"], true);
        assert_eq!(v["body"], "iVBORwA=");
        let r = resp(200, &[("content-type", "text/plain")], b"\xff\xfe");
        assert_eq!(
            http_response(EventShape::ApiGatewayV2, r)["isBase64Encoded"],
            true
        );
    }

    #[test]
    fn alb_response_matches_the_request_header_mode() {
        let r = resp(404, &[("x-a", "1"), ("x-a", "2")], b"no");
        let multi = http_response(EventShape::Alb { multi_value: true }, r.clone());
        assert_eq!(multi["multiValueHeaders"]["x-a"], json!(["1", "2"]));
        assert!(multi.get("headers").is_none());
        assert_eq!(multi["statusDescription"], "404 Not Found");
        let single = http_response(EventShape::Alb { multi_value: false }, r);
        assert_eq!(single["headers"]["x-a"], "1, 2");
        assert!(single.get("multiValueHeaders").is_none());
    }

    #[test]
    fn rejected_direct_invocation_is_a_structured_error() {
        let r = guard_core::Rejection::new(RejectionKind::ForbiddenSource).into_response();
        let err = direct_result(r).unwrap_err();
        assert_eq!(err.error_type, "guard.verify.forbidden_source");
        let problem: Value = serde_json::from_str(&err.error_message).unwrap();
        assert_eq!(problem["status"], 403);
        let handler_no = direct_result(resp(409, &[], b"conflict")).unwrap_err();
        assert_eq!(handler_no.error_type, "guard.handler.409");
        assert_eq!(
            direct_result(resp(200, &[], b"{\"a\":1}")).unwrap(),
            json!({"a": 1})
        );
        assert_eq!(direct_result(resp(204, &[], b"")).unwrap(), Value::Null);
    }
}
