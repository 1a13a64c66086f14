//! HTTP envelopes: API Gateway REST (v1) and WebSocket, HTTP API (v2) and Function URLs, ALB.

use guard_core::GuardRequest;
use guard_core::request::{Peer, Trigger};
use http::{HeaderMap, HeaderValue, Method};
use serde_json::Value;

use super::util::{
    BodyField, base64_flag, body, body_from, encode_path, headers_v1, parse_ip, path,
    query_from_params, sanitize_raw_query, str_at, uri,
};
use super::{DecodeError, DecodeOptions, Refused, Unit, authorizer};
use crate::event::EventShape;

/// One HTTP envelope; a malformed one is refused with the address the platform reported.
pub(super) fn decode(payload: &Value, shape: EventShape, options: &DecodeOptions) -> Unit {
    let decoded = match shape {
        EventShape::ApiGatewayV2 | EventShape::FunctionUrl => {
            return http_v2(V2Parts::from_value(payload), shape, options);
        }
        EventShape::Alb { .. } => alb(payload, shape, options),
        _ => rest_v1(payload, shape, options),
    };
    decoded.map_err(|e| Refused::http(e, platform_peer(payload, shape)))
}

/// The address API Gateway or the Function URL observed (`sourceIp`); ALB has none of its own.
fn platform_peer(payload: &Value, shape: EventShape) -> Option<std::net::IpAddr> {
    let ctx = payload.get("requestContext")?;
    let ip = match shape {
        EventShape::ApiGatewayV2 | EventShape::FunctionUrl => path(ctx, &["http", "sourceIp"]),
        EventShape::Alb { .. } => None,
        _ => path(ctx, &["identity", "sourceIp"]),
    };
    ip.and_then(Value::as_str).and_then(parse_ip)
}

fn method(s: Option<&str>, shape: EventShape) -> Result<Method, DecodeError> {
    let s = s.ok_or(DecodeError::new(shape, "missing HTTP method"))?;
    Method::from_bytes(s.to_ascii_uppercase().as_bytes())
        .map_err(|_| DecodeError::new(shape, "invalid HTTP method"))
}

fn build(
    method: Method,
    uri: http::Uri,
    headers: HeaderMap,
    body: bytes::Bytes,
    peer: Option<std::net::IpAddr>,
) -> GuardRequest {
    let mut req = http::Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    req.extensions_mut().insert(Trigger::Http);
    if let Some(ip) = peer {
        req.extensions_mut().insert(Peer::new(ip));
    }
    req
}

/// API Gateway REST API (payload 1.0) and WebSocket routes.
fn rest_v1(
    payload: &Value,
    shape: EventShape,
    options: &DecodeOptions,
) -> Result<GuardRequest, DecodeError> {
    let ctx = payload.get("requestContext").unwrap_or(&Value::Null);
    let method = match shape {
        // WebSocket events carry no HTTP method on every route; a message is a POST to its route.
        EventShape::WebSocket => method(
            str_at(payload, "httpMethod")
                .or_else(|| str_at(ctx, "httpMethod"))
                .or(Some("POST")),
            shape,
        )?,
        _ => method(str_at(payload, "httpMethod"), shape)?,
    };
    let raw_path = match str_at(payload, "path") {
        Some(p) => p.to_owned(),
        None => format!("/{}", str_at(ctx, "routeKey").unwrap_or_default()),
    };
    let uri = uri(&encode_path(&raw_path), &query_from_params(payload, false));
    let mut req = build(
        method,
        uri,
        headers_v1(payload, shape, options.header_limits)?,
        body(payload, shape, options.max_body_bytes)?,
        platform_peer(payload, shape),
    );
    if let Some(identity) = authorizer::rest_api(ctx) {
        req.extensions_mut().insert(identity);
    }
    Ok(req)
}

/// What the payload 2.0 decoder reads of an HTTP API / Function URL event, borrowed from the
/// payload: from a `serde_json::Value` ([`V2Parts::from_value`]) or straight from the payload
/// text (`super::fast`), so both paths share one decoder.
#[derive(Debug, Default)]
pub(super) struct V2Parts<'a> {
    /// `requestContext.http.method`.
    pub(super) method: Option<&'a str>,
    /// `rawPath`.
    pub(super) raw_path: Option<&'a str>,
    /// `requestContext.http.path`.
    pub(super) http_path: Option<&'a str>,
    /// `rawQueryString`.
    pub(super) raw_query: Option<&'a str>,
    /// The string-valued entries of `headers`, in the order a `serde_json::Map` iterates them.
    pub(super) headers: Vec<(&'a str, &'a str)>,
    /// The string entries of `cookies`.
    pub(super) cookies: Vec<&'a str>,
    /// `body`.
    pub(super) body: BodyField<'a>,
    /// `isBase64Encoded` (`true`, or a string equal to `true` ignoring case).
    pub(super) is_base64: bool,
    /// `requestContext.http.sourceIp`.
    pub(super) source_ip: Option<&'a str>,
    /// `requestContext.authorizer`.
    pub(super) authorizer: Option<&'a Value>,
}

impl<'a> V2Parts<'a> {
    pub(super) fn from_value(payload: &'a Value) -> Self {
        let ctx = payload.get("requestContext").unwrap_or(&Value::Null);
        let http_ctx = ctx.get("http").unwrap_or(&Value::Null);
        Self {
            method: str_at(http_ctx, "method"),
            raw_path: str_at(payload, "rawPath"),
            http_path: str_at(http_ctx, "path"),
            raw_query: str_at(payload, "rawQueryString"),
            headers: payload
                .get("headers")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                .collect(),
            cookies: payload
                .get("cookies")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect(),
            body: BodyField::from_value(payload.get("body")),
            is_base64: base64_flag(payload),
            source_ip: path(ctx, &["http", "sourceIp"]).and_then(Value::as_str),
            authorizer: ctx.get("authorizer"),
        }
    }
}

/// API Gateway HTTP API (payload 2.0) and Lambda Function URLs; a malformed one is refused with
/// the address the platform reported.
pub(super) fn http_v2(parts: V2Parts<'_>, shape: EventShape, options: &DecodeOptions) -> Unit {
    let peer = parts.source_ip.and_then(parse_ip);
    http_v2_request(parts, shape, options, peer).map_err(|e| Refused::http(e, peer))
}

fn http_v2_request(
    parts: V2Parts<'_>,
    shape: EventShape,
    options: &DecodeOptions,
    peer: Option<std::net::IpAddr>,
) -> Result<GuardRequest, DecodeError> {
    let method = method(parts.method, shape)?;
    let raw_path = parts.raw_path.or(parts.http_path).unwrap_or("/");
    let mut query = String::new();
    sanitize_raw_query(parts.raw_query.unwrap_or_default(), &mut query);
    let mut headers = options.header_limits.builder();
    for (name, value) in &parts.headers {
        headers
            .append(name, value)
            .map_err(|e| DecodeError::headers(shape, e))?;
    }
    // Payload 2.0 moves cookies out of the headers into an array.
    if !parts.cookies.is_empty()
        && let Ok(v) = HeaderValue::from_str(&parts.cookies.join("; "))
    {
        headers
            .insert(http::header::COOKIE, v)
            .map_err(|e| DecodeError::headers(shape, e))?;
    }
    let mut req = build(
        method,
        uri(&encode_path(raw_path), &query),
        headers.finish(),
        body_from(parts.body, parts.is_base64, shape, options.max_body_bytes)?,
        peer,
    );
    if let Some(identity) = authorizer::http_api(parts.authorizer) {
        req.extensions_mut().insert(identity);
    }
    Ok(req)
}

/// Application Load Balancer target requests: the only address is in `X-Forwarded-For`.
fn alb(
    payload: &Value,
    shape: EventShape,
    options: &DecodeOptions,
) -> Result<GuardRequest, DecodeError> {
    let method = method(str_at(payload, "httpMethod"), shape)?;
    let raw_path = str_at(payload, "path").unwrap_or("/");
    let headers = headers_v1(payload, shape, options.header_limits)?;
    let peer = options.alb_proxies.peer(&headers).map(|p| p.ip());
    Ok(build(
        method,
        uri(&encode_path(raw_path), &query_from_params(payload, true)),
        headers,
        body(payload, shape, options.max_body_bytes)?,
        peer,
    ))
}
