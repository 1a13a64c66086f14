//! Small helpers shared by the decoders: headers, URIs, bodies, addresses.

use std::net::IpAddr;

use bytes::Bytes;
use guard_core::request::body::BodyCodec;
use guard_core::request::{HeaderBuilder, HeaderLimits};
use http::header::HeaderMap;
use serde_json::{Map, Value};

use super::DecodeError;
use crate::event::EventShape;

/// `obj[key]` as a string, if it is one.
pub(super) fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Follows a path of object keys.
pub(super) fn path<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().try_fold(v, |v, k| v.get(*k))
}

/// Headers from `multiValueHeaders` when present (it holds every value), else `headers`, within
/// the limits. Names are case-insensitive: `Content-Type` and `content-type` become one header.
pub(super) fn headers_v1(
    payload: &Value,
    shape: EventShape,
    limits: HeaderLimits,
) -> Result<HeaderMap, DecodeError> {
    let mut headers = limits.builder();
    if let Some(multi) = payload.get("multiValueHeaders").and_then(Value::as_object) {
        for (name, values) in multi {
            match values {
                Value::Array(values) => {
                    for v in values.iter().filter_map(Value::as_str) {
                        headers
                            .append(name, v)
                            .map_err(|e| DecodeError::headers(shape, e))?;
                    }
                }
                Value::String(v) => headers
                    .append(name, v)
                    .map_err(|e| DecodeError::headers(shape, e))?,
                _ => {}
            }
        }
    }
    if headers.is_empty() {
        single_headers(
            payload.get("headers").and_then(Value::as_object),
            &mut headers,
            shape,
        )?;
    }
    Ok(headers.finish())
}

/// Single-value headers (`headers` of v1 / v2 / ALB).
pub(super) fn single_headers(
    map: Option<&Map<String, Value>>,
    headers: &mut HeaderBuilder,
    shape: EventShape,
) -> Result<(), DecodeError> {
    for (name, value) in map.into_iter().flatten() {
        if let Some(v) = value.as_str() {
            headers
                .append(name, v)
                .map_err(|e| DecodeError::headers(shape, e))?;
        }
    }
    Ok(())
}

/// The body, base64-decoded (within `max_body` bytes) when `isBase64Encoded` is true.
pub(super) fn body(
    payload: &Value,
    shape: EventShape,
    max_body: usize,
) -> Result<Bytes, DecodeError> {
    body_from(
        BodyField::from_value(payload.get("body")),
        base64_flag(payload),
        shape,
        max_body,
    )
}

/// An event's `body` field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum BodyField<'a> {
    /// Absent or `null`: an empty body.
    #[default]
    Absent,
    /// A string.
    Text(&'a str),
    /// Anything else: a malformed event.
    NotText,
}

impl<'a> BodyField<'a> {
    pub(super) fn from_value(v: Option<&'a Value>) -> Self {
        match v {
            None | Some(Value::Null) => Self::Absent,
            Some(Value::String(s)) => Self::Text(s),
            Some(_) => Self::NotText,
        }
    }
}

/// `isBase64Encoded`: `true`, or a string equal to `true` ignoring case.
pub(super) fn base64_flag(payload: &Value) -> bool {
    match payload.get("isBase64Encoded") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// The body from its field, base64-decoded (within `max_body` bytes) when `base64`.
pub(super) fn body_from(
    field: BodyField<'_>,
    base64: bool,
    shape: EventShape,
    max_body: usize,
) -> Result<Bytes, DecodeError> {
    let text = match field {
        BodyField::Absent => return Ok(Bytes::new()),
        BodyField::Text(s) => s,
        BodyField::NotText => return Err(DecodeError::new(shape, "body is not a string")),
    };
    if base64 {
        base64_body(text, max_body, shape)
    } else {
        Ok(Bytes::copy_from_slice(text.as_bytes()))
    }
}

/// A base64 body of at most `max_body` decoded bytes.
pub(super) fn base64_body(
    text: &str,
    max_body: usize,
    shape: EventShape,
) -> Result<Bytes, DecodeError> {
    BodyCodec::decode_base64(text, max_body)
        .map_err(|e| DecodeError::with_kind(shape, e.kind(), e.reason()))
}

/// Percent-encodes what may not appear in a URI path (keeps `/` and existing `%XX`).
pub(super) fn encode_path(raw: &str) -> String {
    let raw = if raw.is_empty() { "/" } else { raw };
    let mut out = String::with_capacity(raw.len() + 1);
    if !raw.starts_with('/') {
        out.push('/');
    }
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b) {
            out.push(b as char);
        } else {
            push_pct(&mut out, b);
        }
    }
    out
}

/// Percent-encodes one query component (key or value) that API Gateway handed over decoded.
pub(super) fn encode_component(raw: &str, out: &mut String) {
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            push_pct(out, b);
        }
    }
}

/// Keeps a raw query string (`rawQueryString`, ALB parameters) but encodes bytes a URI cannot hold.
pub(super) fn sanitize_raw_query(raw: &str, out: &mut String) {
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b) {
            out.push(b as char);
        } else {
            push_pct(out, b);
        }
    }
}

fn push_pct(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 0xf)] as char);
}

/// A query string from decoded parameters: `multiValueQueryStringParameters` when present, else
/// `queryStringParameters`. `already_encoded` for ALB, which passes parameters as received.
pub(super) fn query_from_params(payload: &Value, already_encoded: bool) -> String {
    let mut out = String::new();
    let mut push = |k: &str, v: &str| {
        if !out.is_empty() {
            out.push('&');
        }
        if already_encoded {
            sanitize_raw_query(k, &mut out);
            out.push('=');
            sanitize_raw_query(v, &mut out);
        } else {
            encode_component(k, &mut out);
            out.push('=');
            encode_component(v, &mut out);
        }
    };
    if let Some(multi) = payload
        .get("multiValueQueryStringParameters")
        .and_then(Value::as_object)
    {
        for (k, values) in multi {
            for v in values
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                push(k, v);
            }
        }
    } else if let Some(single) = payload
        .get("queryStringParameters")
        .and_then(Value::as_object)
    {
        for (k, v) in single {
            if let Some(v) = v.as_str() {
                push(k, v);
            }
        }
    }
    out
}

/// Builds the request URI from an encoded path and query; falls back to the path alone, then `/`.
pub(super) fn uri(path: &str, query: &str) -> http::Uri {
    let full = if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    };
    full.parse()
        .or_else(|_| path.parse())
        .unwrap_or_else(|_| http::Uri::from_static("/"))
}

/// A platform-reported address; anything that does not parse gives no peer (fail closed).
pub(super) fn parse_ip(s: &str) -> Option<IpAddr> {
    s.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_queries_are_encoded_into_valid_uris() {
        assert_eq!(encode_path("/a b/ü"), "/a%20b/%C3%BC");
        assert_eq!(encode_path(""), "/");
        let mut q = String::new();
        encode_component("a&b=c", &mut q);
        assert_eq!(q, "a%26b%3Dc");
        assert_eq!(uri("/x", "a=1").to_string(), "/x?a=1");
    }
}
