//! [`IngressLayer`]: cheap checks before any parsing work — method (405), body size (413,
//! `Content-Length` first, then the real length), content type (415) and JSON nesting depth (400,
//! checked by a byte scan, not a parse).
//!
//! ```
//! use bytes::Bytes;
//! use guard_core::ingress::IngressLayer;
//! use tower::{Layer, Service, ServiceExt, service_fn};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let handler = service_fn(|_req: http::Request<Bytes>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(Bytes::from_static(b"ok")))
//! });
//! let mut svc = IngressLayer::new().max_body_bytes(8).layer(handler);
//! let req = http::Request::post("/")
//!     .header("content-type", "application/json")
//!     .body(Bytes::from_static(b"{\"too\":\"long\"}"))
//!     .unwrap();
//! let resp = svc.ready().await.unwrap().call(req).await.unwrap();
//! assert_eq!(resp.status(), 413);
//! # });
//! ```

use std::sync::Arc;

use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Method};

use crate::request::{AdapterRefusal, GuardRequest, Trigger};
use crate::{Rejection, RejectionKind};

#[derive(Debug, Clone)]
struct Config {
    max_body_bytes: u64,
    max_depth: u32,
    /// Lower-case `type/subtype`; empty = any.
    content_types: Vec<String>,
    /// Empty = any.
    methods: Vec<Method>,
}

/// Applies the ingress limits. Cheap to clone.
#[derive(Debug, Clone)]
pub struct IngressLayer {
    config: Arc<Config>,
}

impl Default for IngressLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl IngressLayer {
    /// Safe defaults: 1 MiB body, depth 32, `application/json` only, any method.
    ///
    /// ```
    /// let layer = guard_core::ingress::IngressLayer::new();
    /// # let _ = layer;
    /// ```
    pub fn new() -> Self {
        Self {
            config: Arc::new(Config {
                max_body_bytes: 1024 * 1024,
                max_depth: 32,
                content_types: vec!["application/json".into()],
                methods: Vec::new(),
            }),
        }
    }

    /// Largest accepted body in bytes.
    ///
    /// ```
    /// let layer = guard_core::ingress::IngressLayer::new().max_body_bytes(64 * 1024);
    /// # let _ = layer;
    /// ```
    pub fn max_body_bytes(mut self, limit: u64) -> Self {
        Arc::make_mut(&mut self.config).max_body_bytes = limit.max(1);
        self
    }

    /// Deepest accepted JSON nesting (objects and arrays).
    ///
    /// ```
    /// let layer = guard_core::ingress::IngressLayer::new().max_depth(16);
    /// # let _ = layer;
    /// ```
    pub fn max_depth(mut self, depth: u32) -> Self {
        Arc::make_mut(&mut self.config).max_depth = depth.max(1);
        self
    }

    /// Accepted media types (`type/subtype`); an empty list accepts any.
    ///
    /// ```
    /// let layer = guard_core::ingress::IngressLayer::new().content_types(["application/json"]);
    /// # let _ = layer;
    /// ```
    pub fn content_types<I: IntoIterator<Item = T>, T: AsRef<str>>(mut self, types: I) -> Self {
        Arc::make_mut(&mut self.config).content_types = types
            .into_iter()
            .map(|t| t.as_ref().to_ascii_lowercase())
            .collect();
        self
    }

    /// Accepted methods; an empty list accepts any.
    ///
    /// ```
    /// let layer = guard_core::ingress::IngressLayer::new().methods([http::Method::POST]);
    /// # let _ = layer;
    /// ```
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        Arc::make_mut(&mut self.config).methods = methods.into_iter().collect();
        self
    }
}

crate::macros::check_service! {
    /// The service made by [`IngressLayer`].
    Ingress for IngressLayer, |layer, req| check(&layer.config, req)
}

fn check(config: &Config, req: &GuardRequest) -> Result<(), Rejection> {
    // The audit layer answers these first; this catches a stack composed without one.
    if let Some(refusal) = req.extensions().get::<AdapterRefusal>() {
        return Err(refusal.rejection());
    }
    let is_http = !matches!(
        req.extensions().get::<Trigger>(),
        Some(Trigger::Message(_)) | Some(Trigger::Direct)
    );
    if is_http && !config.methods.is_empty() && !config.methods.contains(req.method()) {
        return Err(Rejection::new(RejectionKind::MethodNotAllowed).with_reason("method"));
    }
    if let Some(len) = declared_length(req.headers())
        && len > config.max_body_bytes
    {
        return Err(Rejection::new(RejectionKind::TooLarge).with_reason("content-length"));
    }
    let body = req.body();
    if body.len() as u64 > config.max_body_bytes {
        return Err(Rejection::new(RejectionKind::TooLarge).with_reason("body length"));
    }
    let media = media_type(req.headers());
    if is_http && !config.content_types.is_empty() && !body.is_empty() {
        match &media {
            MediaType::One(m)
                if config
                    .content_types
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case(m)) => {}
            MediaType::Missing => {
                return Err(Rejection::new(RejectionKind::UnsupportedMediaType)
                    .with_reason("missing content-type"));
            }
            MediaType::Ambiguous => {
                return Err(Rejection::new(RejectionKind::UnsupportedMediaType)
                    .with_reason("several content-type headers"));
            }
            MediaType::One(_) => {
                return Err(Rejection::new(RejectionKind::UnsupportedMediaType)
                    .with_reason("content-type not allowed"));
            }
        }
    }
    let json_like = match &media {
        MediaType::One(m) => {
            m.eq_ignore_ascii_case("application/json")
                || m.len() >= 5 && m.as_bytes()[m.len() - 5..].eq_ignore_ascii_case(b"+json")
        }
        _ => !is_http,
    };
    if json_like && exceeds_depth(body, config.max_depth) {
        return Err(Rejection::new(RejectionKind::TooDeep).with_reason("nesting depth"));
    }
    Ok(())
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    // Any declared length larger than the limit is refused; several headers are checked each.
    headers
        .get_all(CONTENT_LENGTH)
        .iter()
        .filter_map(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .max()
}

/// The `Content-Type` essence (`type/subtype`, parameters dropped), as sent: compared without
/// regard to ASCII case, so no lower-case copy is made per request.
enum MediaType<'a> {
    Missing,
    Ambiguous,
    One(&'a str),
}

fn media_type(headers: &HeaderMap) -> MediaType<'_> {
    let mut values = headers.get_all(CONTENT_TYPE).iter();
    let Some(first) = values.next() else {
        return MediaType::Missing;
    };
    if values.next().is_some() {
        return MediaType::Ambiguous;
    }
    match first.to_str() {
        Ok(s) => {
            let essence = s.split(';').next().unwrap_or("").trim();
            if essence.is_empty() {
                MediaType::Missing
            } else {
                MediaType::One(essence)
            }
        }
        Err(_) => MediaType::Ambiguous,
    }
}

/// Whether the JSON text nests objects/arrays deeper than `max`. A byte scan that skips strings
/// (with escapes); it does not validate the JSON, the validate layer does.
pub(crate) fn exceeds_depth(body: &[u8], max: u32) -> bool {
    let mut depth: u32 = 0;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_scan_counts_nesting_outside_strings_only() {
        assert!(!exceeds_depth(br#"{"a":[1,{"b":2}]}"#, 3));
        assert!(exceeds_depth(br#"{"a":[1,{"b":2}]}"#, 2));
        assert!(!exceeds_depth(br#"{"a":"[[[[[[[[[[\"{{{{"}"#, 1));
        assert!(exceeds_depth(&[b'['; 10_000], 16));
    }

    fn req(content_type: &str, body: &'static [u8]) -> GuardRequest {
        http::Request::post("/")
            .header("content-type", content_type)
            .body(bytes::Bytes::from_static(body))
            .unwrap()
    }

    #[test]
    fn media_types_match_without_regard_to_ascii_case() {
        let layer =
            IngressLayer::new().content_types(["application/json", "Application/Vnd.Api+JSON"]);
        for ct in [
            "application/json",
            "Application/JSON",
            "APPLICATION/JSON; charset=utf-8",
            "application/vnd.api+json",
        ] {
            assert!(check(&layer.config, &req(ct, b"{}")).is_ok(), "{ct}");
        }
        let refused = check(&layer.config, &req("text/json", b"{}")).unwrap_err();
        assert_eq!(refused.kind(), RejectionKind::UnsupportedMediaType);
    }

    #[test]
    fn json_media_types_in_any_case_get_the_depth_check() {
        let layer = IngressLayer::new()
            .content_types(Vec::<String>::new())
            .max_depth(2);
        for ct in ["Application/Json", "application/problem+JSON", "x/+json"] {
            let deep = check(&layer.config, &req(ct, b"[[[1]]]")).unwrap_err();
            assert_eq!(deep.kind(), RejectionKind::TooDeep, "{ct}");
        }
        // Not JSON: no depth scan.
        assert!(check(&layer.config, &req("text/plain", b"[[[1]]]")).is_ok());
        assert!(check(&layer.config, &req("json", b"[[[1]]]")).is_ok());
    }

    fn refusal(layer: &IngressLayer, r: &GuardRequest) -> Option<(RejectionKind, String)> {
        check(&layer.config, r)
            .err()
            .map(|e| (e.kind(), e.reason().unwrap_or_default().to_owned()))
    }

    fn with_trigger(mut r: GuardRequest, t: Trigger) -> GuardRequest {
        r.extensions_mut().insert(t);
        r
    }

    fn message() -> Trigger {
        Trigger::Message(crate::request::MessageTrigger::new("sqs", "q", "m-1"))
    }

    #[test]
    fn methods_are_checked_for_http_requests_only_and_only_when_configured() {
        let get = || http::Request::get("/").body(bytes::Bytes::new()).unwrap();
        assert_eq!(
            refusal(&IngressLayer::new(), &get()),
            None,
            "no methods: any"
        );
        let post_only = IngressLayer::new().methods([Method::POST]);
        assert_eq!(
            refusal(&post_only, &get()),
            Some((RejectionKind::MethodNotAllowed, "method".into()))
        );
        assert_eq!(refusal(&post_only, &req("application/json", b"{}")), None);
        assert_eq!(refusal(&post_only, &with_trigger(get(), message())), None);
        assert_eq!(
            refusal(&post_only, &with_trigger(get(), Trigger::Direct)),
            None
        );
        assert!(refusal(&post_only, &with_trigger(get(), Trigger::Http)).is_some());
    }

    #[test]
    fn the_declared_length_is_checked_before_the_body_and_the_largest_counts() {
        let layer = IngressLayer::new().max_body_bytes(10);
        let declared = |lengths: &[&str]| {
            let mut r = req("application/json", b"{}");
            for l in lengths {
                r.headers_mut().append(CONTENT_LENGTH, l.parse().unwrap());
            }
            refusal(&layer, &r)
        };
        let too_large = Some((RejectionKind::TooLarge, "content-length".to_owned()));
        assert_eq!(declared(&["11"]), too_large);
        assert_eq!(declared(&["2", "11"]), too_large);
        assert_eq!(declared(&["11", "2"]), too_large);
        assert_eq!(declared(&["10"]), None);
        assert_eq!(declared(&["x", "2"]), None);
        let body = refusal(&layer, &req("application/json", b"{\"n\":123456}"));
        assert_eq!(body, Some((RejectionKind::TooLarge, "body length".into())));
        assert_eq!(
            refusal(&layer, &req("application/json", b"{\"n\":1234}")),
            None
        );
    }

    #[test]
    fn the_content_type_is_required_only_for_an_http_body() {
        let layer = IngressLayer::new();
        let bare = |body: &'static [u8]| {
            http::Request::post("/")
                .body(bytes::Bytes::from_static(body))
                .unwrap()
        };
        assert_eq!(refusal(&layer, &bare(b"")), None, "no body, no type needed");
        assert_eq!(
            refusal(&layer, &bare(b"{}")),
            Some((
                RejectionKind::UnsupportedMediaType,
                "missing content-type".into()
            ))
        );
        assert_eq!(refusal(&layer, &with_trigger(bare(b"{}"), message())), None);
        let mut two = req("application/json", b"{}");
        two.headers_mut()
            .append(CONTENT_TYPE, "application/json".parse().unwrap());
        assert_eq!(
            refusal(&layer, &two),
            Some((
                RejectionKind::UnsupportedMediaType,
                "several content-type headers".into()
            ))
        );
        assert_eq!(
            refusal(&layer, &req("text/plain", b"{}")),
            Some((
                RejectionKind::UnsupportedMediaType,
                "content-type not allowed".into()
            ))
        );
        let any = IngressLayer::new().content_types(Vec::<String>::new());
        assert_eq!(refusal(&any, &req("text/plain", b"{}")), None);
    }

    #[test]
    fn a_message_without_a_content_type_gets_the_depth_check_and_http_does_not() {
        let layer = IngressLayer::new()
            .content_types(Vec::<String>::new())
            .max_depth(2);
        let deep = || {
            http::Request::post("/")
                .body(bytes::Bytes::from_static(b"[[[1]]]"))
                .unwrap()
        };
        assert_eq!(refusal(&layer, &deep()), None);
        let too_deep = Some((RejectionKind::TooDeep, "nesting depth".to_owned()));
        assert_eq!(refusal(&layer, &with_trigger(deep(), message())), too_deep);
        assert_eq!(
            refusal(&layer, &with_trigger(deep(), Trigger::Direct)),
            too_deep
        );
        assert_eq!(refusal(&layer, &req("application/json", b"[[1]]")), None);
    }

    #[test]
    fn closing_brackets_bring_the_depth_down() {
        assert!(!exceeds_depth(br#"[{},{},{},[],[[]]]"#, 3));
        assert!(!exceeds_depth(br#"[{"a":"\\"},{"b":"]"},{}]"#, 2));
        assert!(exceeds_depth(br#"[{"a":"\\"},[[]]]"#, 2));
    }
}

#[cfg(test)]
mod exceeds_depth_counts_nesting_example {
    #[test]
    fn exceeds_depth_counts_nesting() {
        use crate::ingress::exceeds_depth;
        assert!(!exceeds_depth(br#"{"a":[1]}"#, 2));
        assert!(exceeds_depth(br#"[[["deep"]]]"#, 2));
    }
}
