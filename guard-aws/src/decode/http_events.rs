//! HTTP envelopes: API Gateway REST (v1) and WebSocket, HTTP API (v2) and Function URLs, ALB.

use std::collections::BTreeMap;

use guard_core::request::{GuardRequest, Peer, Principal, PrincipalKind, Trigger};
use http::{HeaderMap, HeaderValue, Method};
use serde_json::Value;

use super::util::{
    body, encode_path, headers_v1, parse_ip, path, peer_from_xff, query_from_params,
    sanitize_raw_query, single_headers, str_at, uri,
};
use super::{DecodeError, DecodeOptions};
use crate::event::{EventShape, PlatformPrincipal};

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
pub(super) fn rest_v1(payload: &Value, shape: EventShape) -> Result<GuardRequest, DecodeError> {
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
    let peer = path(ctx, &["identity", "sourceIp"])
        .and_then(Value::as_str)
        .and_then(parse_ip);
    let mut req = build(
        method,
        uri,
        headers_v1(payload),
        body(payload, shape)?,
        peer,
    );
    if let Some(p) = principal_v1(ctx) {
        req.extensions_mut().insert(PlatformPrincipal(p));
    }
    Ok(req)
}

/// API Gateway HTTP API (payload 2.0) and Lambda Function URLs.
pub(super) fn http_v2(payload: &Value, shape: EventShape) -> Result<GuardRequest, DecodeError> {
    let ctx = payload.get("requestContext").unwrap_or(&Value::Null);
    let http_ctx = ctx.get("http").unwrap_or(&Value::Null);
    let method = method(str_at(http_ctx, "method"), shape)?;
    let raw_path = str_at(payload, "rawPath")
        .or_else(|| str_at(http_ctx, "path"))
        .unwrap_or("/");
    let mut query = String::new();
    sanitize_raw_query(
        str_at(payload, "rawQueryString").unwrap_or_default(),
        &mut query,
    );
    let mut headers = HeaderMap::new();
    single_headers(
        payload.get("headers").and_then(Value::as_object),
        &mut headers,
    );
    // Payload 2.0 moves cookies out of the headers into an array.
    let cookies: Vec<&str> = payload
        .get("cookies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !cookies.is_empty()
        && let Ok(v) = HeaderValue::from_str(&cookies.join("; "))
    {
        headers.insert(http::header::COOKIE, v);
    }
    let peer = str_at(http_ctx, "sourceIp").and_then(parse_ip);
    let mut req = build(
        method,
        uri(&encode_path(raw_path), &query),
        headers,
        body(payload, shape)?,
        peer,
    );
    if let Some(p) = principal_v2(ctx) {
        req.extensions_mut().insert(PlatformPrincipal(p));
    }
    Ok(req)
}

/// Application Load Balancer target requests: the only address is in `X-Forwarded-For`.
pub(super) fn alb(
    payload: &Value,
    shape: EventShape,
    options: &DecodeOptions,
) -> Result<GuardRequest, DecodeError> {
    let method = method(str_at(payload, "httpMethod"), shape)?;
    let raw_path = str_at(payload, "path").unwrap_or("/");
    let headers = headers_v1(payload);
    let peer = peer_from_xff(&headers, options.alb_trusted_hops);
    Ok(build(
        method,
        uri(&encode_path(raw_path), &query_from_params(payload, true)),
        headers,
        body(payload, shape)?,
        peer,
    ))
}

fn claims_of(v: Option<&Value>) -> BTreeMap<String, Value> {
    v.and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

fn platform(kind: &str, subject: &str, claims: BTreeMap<String, Value>) -> Principal {
    let mut p = Principal::new(PrincipalKind::Platform(kind.to_owned()), subject);
    p.claims = claims;
    p
}

fn non_empty(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// REST API: a Cognito user pool authorizer (`authorizer.claims`), a Lambda authorizer
/// (`authorizer.principalId` + context), or IAM (`identity.userArn`), in that order.
fn principal_v1(ctx: &Value) -> Option<Principal> {
    let authorizer = ctx.get("authorizer");
    if let Some(claims) = authorizer
        .and_then(|a| a.get("claims"))
        .filter(|c| c.is_object())
    {
        let claims = claims_of(Some(claims));
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let issuer = claims.get("iss").and_then(Value::as_str).map(str::to_owned);
        let mut p = platform("aws-cognito", &subject, claims);
        p.issuer = issuer;
        return Some(p);
    }
    if let Some(principal_id) = non_empty(authorizer.and_then(|a| a.get("principalId"))) {
        let mut claims = claims_of(authorizer);
        claims.remove("principalId");
        return Some(platform("aws-lambda-authorizer", principal_id, claims));
    }
    iam_principal(ctx.get("identity"), "userArn")
}

/// HTTP API: `authorizer.jwt` (claims + scopes), `authorizer.iam`, or `authorizer.lambda`.
fn principal_v2(ctx: &Value) -> Option<Principal> {
    let authorizer = ctx.get("authorizer")?;
    if let Some(jwt) = authorizer.get("jwt").filter(|j| j.is_object()) {
        let mut claims = claims_of(jwt.get("claims"));
        if let Some(scopes) = jwt.get("scopes").filter(|s| s.is_array()) {
            claims.insert("scopes".to_owned(), scopes.clone());
        }
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let issuer = claims.get("iss").and_then(Value::as_str).map(str::to_owned);
        let mut p = platform("aws-jwt", &subject, claims);
        p.issuer = issuer;
        return Some(p);
    }
    if let Some(p) = iam_principal(authorizer.get("iam"), "userArn") {
        return Some(p);
    }
    if let Some(lambda) = authorizer.get("lambda").filter(|l| l.is_object()) {
        let claims = claims_of(Some(lambda));
        let subject = claims
            .get("principalId")
            .and_then(Value::as_str)
            .unwrap_or("lambda-authorizer")
            .to_owned();
        return Some(platform("aws-lambda-authorizer", &subject, claims));
    }
    None
}

/// IAM: the caller's ARN plus the account and ids API Gateway reports (never the access key).
fn iam_principal(identity: Option<&Value>, arn_key: &str) -> Option<Principal> {
    let identity = identity?;
    let arn = non_empty(identity.get(arn_key))?;
    let mut claims = BTreeMap::new();
    for key in [
        "accountId",
        "caller",
        "callerId",
        "user",
        "userId",
        "principalOrgId",
    ] {
        if let Some(v) = non_empty(identity.get(key)) {
            claims.insert(key.to_owned(), Value::String(v.to_owned()));
        }
    }
    let mut p = platform("aws-iam", arn, claims);
    p.issuer = Some("aws:iam".to_owned());
    Some(p)
}
