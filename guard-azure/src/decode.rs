//! Invocation mode in: the host's `{"Data": {...}, "Metadata": {...}}` POST to `/{function}` →
//! one [`GuardRequest`] for the stack.
//!
//! | binding | request | `Trigger` | `Peer` |
//! |---|---|---|---|
//! | `httpTrigger` (`Data.req`: `{Url, Method, Query, Headers: {name: [values]}, Params, Identities, Body}`) | the client's method, path and query, headers, body | `Http` | `X-Forwarded-For` through [`TrustedProxies`] (the Azure front end: 1 hop) |
//! | `queueTrigger` (`Data.msg`: the message text) | `POST`, the message as body, sniffed `Content-Type` | `Message { kind: "azure-queue", source_id: queueName, message_id: Metadata.Id, attempt: DequeueCount }` | — |
//! | `serviceBusTrigger`, `eventHubTrigger` | the same | `azure-servicebus` / `eventhub` | — |
//! | `eventGridTrigger` (`Data.<b>`: the event) | `POST`, the event's `data` (as for a delivery, [`crate::eventgrid::split_delivery`]) | `Message { kind: "eventgrid", source_id: topic (or CloudEvents `source`), message_id: id }` | — |
//!
//! An envelope that does not decode becomes an [`AdapterRefusal`] stand-in (400
//! `guard.adapter.malformed_event`, or 431 for headers over the limits) that the stack's audit
//! layer refuses with one security event ([`decode_or_refuse`]).

use bytes::Bytes;
use guard_core::GuardRequest;
use guard_core::RejectionKind;
use guard_core::request::body::BodyCodec;
use guard_core::request::{
    AdapterRefusal, Cloud, HeaderLimits, Invocation, MessageTrigger, Trigger, TrustedProxies,
};
use guard_core::verify::EasyAuthVerifier;
use http::{HeaderMap, HeaderValue, Method};
use serde_json::{Map, Value};

const EASY_AUTH_HEADER: &str = EasyAuthVerifier::HEADER;

use crate::eventgrid::EVENTGRID_KIND;
use crate::functions::FunctionTrigger;

/// Header names of the Azure App Service Authentication ("Easy Auth") identity. When the policy
/// does not trust Easy Auth they are removed before the stack runs, so nothing (a handler, a log)
/// can take a forged one for the platform's word.
pub const EASY_AUTH_PREFIXES: [&str; 2] = ["x-ms-client-principal", "x-ms-token-"];

/// How invocations are decoded.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct DecodeOptions {
    /// Proxies in front of the function whose `X-Forwarded-For` entries are trusted (`None`: no
    /// peer from the header).
    pub proxies: Option<TrustedProxies>,
    /// Bounds on the headers of an HTTP binding.
    pub header_limits: HeaderLimits,
    /// Whether `X-MS-CLIENT-PRINCIPAL*` / `X-MS-TOKEN-*` are kept (`[verify.azure_easy_auth]`).
    pub keep_easy_auth: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            proxies: TrustedProxies::new(1),
            header_limits: HeaderLimits::default(),
            keep_easy_auth: false,
        }
    }
}

impl DecodeOptions {
    /// Decoding as the policy says: `[function] trusted_proxies` hops (default 1, the Azure front
    /// end) and Easy Auth headers kept only with `[verify.azure_easy_auth]`.
    ///
    /// ```
    /// let p = guard_core::Policy::from_toml_str("[verify.azure_easy_auth]").unwrap();
    /// let o = guard_azure::decode::DecodeOptions::from_policy(&p);
    /// assert!(o.keep_easy_auth);
    /// assert_eq!(o.proxies.unwrap().hops(), 1);
    /// ```
    pub fn from_policy(policy: &guard_core::Policy) -> Self {
        Self {
            proxies: policy.trusted_proxies(1),
            header_limits: HeaderLimits::default(),
            keep_easy_auth: policy.trusts_azure_easy_auth(),
        }
    }
}

/// The facts of this invocation: `Cloud::Azure`, the function, the invocation id
/// (`X-Azure-Functions-InvocationId`), the app (`WEBSITE_SITE_NAME`), region (`REGION_NAME`),
/// subscription (`WEBSITE_OWNER_NAME` up to `+`), and the trace from `traceparent`.
pub fn invocation(
    function: Option<&str>,
    host_headers: &HeaderMap,
    trace: &HeaderMap,
) -> Invocation {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut inv = Invocation::new(Cloud::Azure);
    inv.function = function.map(str::to_owned);
    inv.function_id = match (env("WEBSITE_SITE_NAME"), function) {
        (Some(app), Some(f)) => Some(format!("{app}/{f}")),
        (app, _) => app,
    };
    inv.region = env("REGION_NAME");
    inv.account = env("WEBSITE_OWNER_NAME").and_then(|o| o.split('+').next().map(str::to_owned));
    inv.request_id = host_headers
        .get("x-azure-functions-invocationid")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if !inv.trace_from_headers(trace) {
        inv.trace_from_headers(host_headers);
    }
    inv
}

/// Removes the Easy Auth headers (see [`EASY_AUTH_PREFIXES`]).
pub fn strip_easy_auth(headers: &mut HeaderMap) {
    let names: Vec<_> = headers
        .keys()
        .filter(|n| EASY_AUTH_PREFIXES.iter().any(|p| n.as_str().starts_with(p)))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}

/// Checks proxied headers against `options.header_limits`. A trusted Easy Auth principal does not
/// count: it is bounded by its verifier (larger than `MAX_EASY_AUTH_BYTES` → 401
/// `guard.verify.bad_token`) and by the server's request-head buffer, which [`server_config`]
/// widens for it when the policy trusts Easy Auth.
///
/// [`server_config`]: crate::server_config
pub(crate) fn check_proxied_headers(
    headers: &HeaderMap,
    options: &DecodeOptions,
) -> Result<(), AdapterRefusal> {
    let limits = options.header_limits;
    if !options.keep_easy_auth {
        return limits.check(headers);
    }
    let principal = headers.get_all(EASY_AUTH_HEADER);
    let (fields, bytes) = principal.iter().fold((0usize, 0usize), |(f, b), v| {
        (f + 1, b.saturating_add(EASY_AUTH_HEADER.len() + v.len()))
    });
    HeaderLimits::new(
        limits.max_fields.saturating_add(fields),
        limits.max_bytes.saturating_add(bytes),
    )
    .check(headers)
}

/// Decodes the envelope `body` of an invocation of `function`, or the stand-in request that
/// refuses it. `host_headers` are the headers of the host's POST (invocation id, trace).
pub fn decode_or_refuse(
    function: &str,
    trigger: &FunctionTrigger,
    host_headers: &HeaderMap,
    body: &[u8],
    options: &DecodeOptions,
) -> GuardRequest {
    let envelope: Option<Map<String, Value>> = serde_json::from_slice(body).ok();
    let decoded = match (&envelope, trigger) {
        (None, _) => Err((
            AdapterRefusal::malformed("invocation is not a JSON object"),
            None,
        )),
        (Some(env), FunctionTrigger::Http { binding, .. }) => http_binding(env, binding, options),
        (
            Some(env),
            FunctionTrigger::Message {
                binding,
                kind,
                source,
            },
        ) => message_binding(env, binding, kind, source),
    };
    let (mut req, trace_headers) = match decoded {
        Ok(req) => {
            let headers = req.headers().clone();
            (req, headers)
        }
        Err((refusal, trigger)) => {
            let mut req = refusal.into_request();
            req.extensions_mut()
                .insert(trigger.unwrap_or(Trigger::Direct));
            (req, HeaderMap::new())
        }
    };
    req.extensions_mut()
        .insert(invocation(Some(function), host_headers, &trace_headers));
    if !options.keep_easy_auth {
        strip_easy_auth(req.headers_mut());
    }
    req
}

type Decoded = Result<GuardRequest, (AdapterRefusal, Option<Trigger>)>;

fn http_binding(env: &Map<String, Value>, binding: &str, options: &DecodeOptions) -> Decoded {
    let refuse = |reason| Err((AdapterRefusal::malformed(reason), Some(Trigger::Http)));
    let Some(http) = env
        .get("Data")
        .and_then(|d| d.get(binding))
        .and_then(Value::as_object)
    else {
        return refuse("no HTTP request in Data");
    };
    let Some(method) = http
        .get("Method")
        .and_then(Value::as_str)
        .and_then(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
    else {
        return refuse("missing or invalid HTTP method");
    };
    let Some(uri) = http
        .get("Url")
        .and_then(Value::as_str)
        .and_then(|u| u.parse::<http::Uri>().ok())
        .and_then(|u| u.path_and_query().cloned())
        .and_then(|pq| http::Uri::try_from(pq.as_str()).ok())
    else {
        return refuse("missing or invalid Url");
    };
    let mut headers = options.header_limits.builder();
    // A trusted Easy Auth principal is bounded by its verifier (larger than
    // `MAX_EASY_AUTH_BYTES` → 401), not by the limits on the other headers: set aside here, at most
    // two values (a second one is refused by the verifier as repeated).
    let mut principal = Vec::new();
    if let Some(map) = http.get("Headers").and_then(Value::as_object) {
        for (name, values) in map {
            if options.keep_easy_auth && name.eq_ignore_ascii_case(EASY_AUTH_HEADER) {
                let list = match values {
                    Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
                    Value::String(v) => vec![v.as_str()],
                    _ => Vec::new(),
                };
                principal.extend(list.into_iter().take(2));
                continue;
            }
            let result = match values {
                Value::Array(list) => list
                    .iter()
                    .filter_map(Value::as_str)
                    .try_for_each(|v| headers.append(name, v)),
                Value::String(v) => headers.append(name, v),
                _ => Ok(()),
            };
            if let Err(e) = result {
                let refusal = AdapterRefusal::new(RejectionKind::HeadersTooLarge, e.reason());
                return Err((refusal, Some(Trigger::Http)));
            }
        }
    }
    let mut headers = headers.finish();
    for value in principal.into_iter().take(2) {
        // Not a valid header value: dropped, as the builder drops it (absent → 401).
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.append(EASY_AUTH_HEADER, v);
        }
    }
    let body = match http.get("Body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(s)) => Bytes::from(s.clone().into_bytes()),
        // A host that hands the body over already parsed: its JSON text.
        Some(other) => Bytes::from(other.to_string().into_bytes()),
    };
    let peer = options.proxies.and_then(|p| p.peer(&headers));
    let mut req = http::Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    req.extensions_mut().insert(Trigger::Http);
    if let Some(peer) = peer {
        req.extensions_mut().insert(peer);
    }
    Ok(req)
}

fn message_binding(env: &Map<String, Value>, binding: &str, kind: &str, source: &str) -> Decoded {
    let meta = env.get("Metadata").unwrap_or(&Value::Null);
    let Some(data) = env.get("Data").and_then(|d| d.get(binding)) else {
        let trigger = Trigger::Message(MessageTrigger::new(kind, source, ""));
        return Err((
            AdapterRefusal::malformed("no message in Data"),
            Some(trigger),
        ));
    };
    if kind == EVENTGRID_KIND {
        // Event Grid names its topic in the event itself (the host validated the subscription);
        // the event's `data` is the body, as for a delivery to an HTTP function.
        let parsed;
        let event = match data {
            Value::String(text) => {
                parsed = serde_json::from_str(text).unwrap_or(Value::Null);
                &parsed
            }
            other => other,
        };
        let max_data = event.to_string().len();
        return Ok(crate::eventgrid::event_request(event, None, max_data));
    }
    let body = match data {
        Value::String(s) => Bytes::from(s.clone().into_bytes()),
        other => Bytes::from(other.to_string().into_bytes()),
    };
    let id = meta
        .get("Id")
        .or_else(|| meta.get("MessageId"))
        .or_else(|| data.get("id"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut trigger = MessageTrigger::new(kind, source, id);
    trigger.attempt = meta
        .get("DequeueCount")
        .or_else(|| meta.get("DeliveryCount"))
        .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
        .and_then(|n| u32::try_from(n).ok());
    let mut req = http::Request::new(body);
    *req.method_mut() = Method::POST;
    let content_type = BodyCodec::sniff_media_type(req.body());
    req.headers_mut()
        .insert(http::header::CONTENT_TYPE, content_type);
    req.extensions_mut().insert(Trigger::Message(trigger));
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http_fn() -> FunctionTrigger {
        FunctionTrigger::Http {
            binding: "req".into(),
            output: "res".into(),
        }
    }

    #[test]
    fn http_binding_keeps_path_query_headers_and_takes_the_rightmost_forwarded_hop() {
        let env = r#"{"Data":{"req":{"Url":"https://app.azurewebsites.net/api/orders?x=1","Method":"POST",
            "Query":{"x":"1"},"Headers":{"Content-Type":["application/json"],"X-Forwarded-For":["10.9.9.9, 203.0.113.7:50123"]},
            "Params":{},"Identities":[],"Body":"{\"a\":1}"}},"Metadata":{}}"#;
        let req = decode_or_refuse(
            "orders",
            &http_fn(),
            &HeaderMap::new(),
            env.as_bytes(),
            &DecodeOptions::default(),
        );
        assert_eq!(req.uri(), "/api/orders?x=1");
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.body().as_ref(), br#"{"a":1}"#);
        assert_eq!(req.headers()["content-type"], "application/json");
        let peer = req.extensions().get::<guard_core::request::Peer>().unwrap();
        assert_eq!(peer.ip().to_string(), "203.0.113.7");
        assert_eq!(
            req.extensions().get::<Invocation>().unwrap().cloud,
            Cloud::Azure
        );
    }

    #[test]
    fn forged_easy_auth_headers_are_removed_unless_trusted() {
        let env = r#"{"Data":{"req":{"Url":"http://x/api/o","Method":"GET","Headers":{"X-MS-CLIENT-PRINCIPAL":["e30="],"X-MS-TOKEN-AAD-ID-TOKEN":["t"]}}}}"#;
        let off = decode_or_refuse(
            "o",
            &http_fn(),
            &HeaderMap::new(),
            env.as_bytes(),
            &DecodeOptions::default(),
        );
        assert!(off.headers().is_empty());
        let on = DecodeOptions {
            keep_easy_auth: true,
            ..DecodeOptions::default()
        };
        let kept = decode_or_refuse("o", &http_fn(), &HeaderMap::new(), env.as_bytes(), &on);
        assert_eq!(kept.headers().len(), 2);
    }

    #[test]
    fn malformed_envelopes_become_refusals() {
        for env in [
            "[]",
            "{}",
            r#"{"Data":{"req":{"Method":"POST"}}}"#,
            r#"{"Data":{"req":{"Url":"/x","Method":"B A D"}}}"#,
        ] {
            let req = decode_or_refuse(
                "o",
                &http_fn(),
                &HeaderMap::new(),
                env.as_bytes(),
                &DecodeOptions::default(),
            );
            let refusal = req
                .extensions()
                .get::<AdapterRefusal>()
                .unwrap_or_else(|| panic!("{env}"));
            assert_eq!(refusal.kind(), RejectionKind::MalformedEvent);
        }
    }

    #[test]
    fn too_many_headers_is_431() {
        let headers: Map<String, Value> = (0..200)
            .map(|i| (format!("x-{i}"), Value::from(vec!["v"])))
            .collect();
        let env = serde_json::json!({"Data": {"req": {"Url": "/x", "Method": "POST", "Headers": headers}}});
        let req = decode_or_refuse(
            "o",
            &http_fn(),
            &HeaderMap::new(),
            env.to_string().as_bytes(),
            &DecodeOptions::default(),
        );
        assert_eq!(
            req.extensions().get::<AdapterRefusal>().unwrap().kind(),
            RejectionKind::HeadersTooLarge
        );
    }

    #[test]
    fn a_trusted_principal_is_outside_the_header_limits_and_every_other_header_is_not() {
        let trusted = DecodeOptions {
            keep_easy_auth: true,
            ..DecodeOptions::default()
        };
        let big = "A".repeat(1024 * 1024);
        let env = |name: &str| {
            serde_json::json!({"Data": {"req": {"Url": "/api/orders", "Method": "POST",
                "Headers": {name: [big.as_str()], "Content-Type": ["application/json"]}}}})
            .to_string()
        };
        let decode = |env: String, options: &DecodeOptions| {
            decode_or_refuse("o", &http_fn(), &HeaderMap::new(), env.as_bytes(), options)
        };
        let req = decode(env("X-MS-CLIENT-PRINCIPAL"), &trusted);
        assert!(req.extensions().get::<AdapterRefusal>().is_none());
        assert_eq!(req.headers()[EASY_AUTH_HEADER].len(), big.len());
        for (name, options) in [
            ("X-Padding", &trusted),
            ("X-MS-CLIENT-PRINCIPAL", &DecodeOptions::default()),
        ] {
            let req = decode(env(name), options);
            assert_eq!(
                req.extensions().get::<AdapterRefusal>().map(|r| r.kind()),
                Some(RejectionKind::HeadersTooLarge),
                "{name}"
            );
        }
        // Proxy mode: the same rule over the headers the server parsed.
        let mut headers = HeaderMap::new();
        headers.insert(EASY_AUTH_HEADER, HeaderValue::from_str(&big).unwrap());
        assert!(check_proxied_headers(&headers, &trusted).is_ok());
        assert!(check_proxied_headers(&headers, &DecodeOptions::default()).is_err());
        headers.insert("x-padding", HeaderValue::from_str(&big).unwrap());
        assert!(check_proxied_headers(&headers, &trusted).is_err());
    }

    #[test]
    fn queue_message_source_comes_from_function_json() {
        let q = FunctionTrigger::Message {
            binding: "msg".into(),
            kind: "azure-queue".into(),
            source: "orders".into(),
        };
        let env = r#"{"Data":{"msg":"{\"order_id\":1}"},"Metadata":{"Id":"m-1","DequeueCount":2,"sys":{"MethodName":"orders-queue"}}}"#;
        let mut host = HeaderMap::new();
        host.insert("x-azure-functions-invocationid", "inv-1".parse().unwrap());
        let req = decode_or_refuse(
            "orders-queue",
            &q,
            &host,
            env.as_bytes(),
            &DecodeOptions::default(),
        );
        let Some(Trigger::Message(m)) = req.extensions().get::<Trigger>() else {
            panic!("not a message")
        };
        assert_eq!(
            (m.kind.as_str(), m.source_id.as_str(), m.message_id.as_str()),
            ("azure-queue", "orders", "m-1")
        );
        assert_eq!(m.attempt, Some(2));
        assert_eq!(req.headers()["content-type"], "application/json");
        assert_eq!(req.body().as_ref(), br#"{"order_id":1}"#);
        let inv = req.extensions().get::<Invocation>().unwrap();
        assert_eq!(inv.request_id.as_deref(), Some("inv-1"));
        assert_eq!(inv.function.as_deref(), Some("orders-queue"));
    }

    #[test]
    fn event_grid_trigger_takes_the_events_topic_and_id() {
        let eg = FunctionTrigger::Message {
            binding: "event".into(),
            kind: "eventgrid".into(),
            source: String::new(),
        };
        let env = r#"{"Data":{"event":{"id":"e-1","topic":"/subscriptions/s/resourceGroups/g/providers/Microsoft.EventGrid/topics/orders","eventType":"Shop.Order","data":{}}},"Metadata":{}}"#;
        let req = decode_or_refuse(
            "orders-events",
            &eg,
            &HeaderMap::new(),
            env.as_bytes(),
            &DecodeOptions::default(),
        );
        let Some(Trigger::Message(m)) = req.extensions().get::<Trigger>() else {
            panic!("not a message")
        };
        assert_eq!(m.kind, "eventgrid");
        assert!(m.source_id.ends_with("/topics/orders"));
        assert_eq!(m.message_id, "e-1");
        assert_eq!(req.body().as_ref(), b"{}", "the event's data is the body");
    }

    #[test]
    fn trace_context_comes_from_the_clients_traceparent() {
        let env = r#"{"Data":{"req":{"Url":"http://x/api/o","Method":"POST","Headers":{"traceparent":["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]}}}}"#;
        let req = decode_or_refuse(
            "o",
            &http_fn(),
            &HeaderMap::new(),
            env.as_bytes(),
            &DecodeOptions::default(),
        );
        let inv = req.extensions().get::<Invocation>().unwrap();
        assert_eq!(
            inv.trace_id.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(inv.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
    }
}
