//! HTTP API (payload 2.0) and Function URL events decoded straight from the payload text: one
//! typed, borrowing pass (strings stay slices of the payload unless they hold escapes) into the
//! same [`V2Parts`] the `serde_json::Value` decoder reads, instead of a tree of owned values.
//!
//! The fast path takes only what it can decide exactly as [`detect`](super::detect) and the
//! `Value` decoder would: a payload whose top level has none of the keys of another envelope
//! (`Records`, `detail-type`, `source`, `detail`), whose `requestContext` has no `elb`,
//! `connectionId` or `eventType`, whose `requestContext.http` is an object and `version` is
//! `"2.0"`, with no duplicate header names and no field of an unexpected type. Anything else
//! (including every other envelope) returns `None` and goes through the `Value` decoder, so the
//! result never depends on which path ran.

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::http_events::V2Parts;
use super::util::BodyField;
use crate::event::EventShape;

/// An object, and only an object: a derived `Deserialize` would also take a JSON array as the
/// struct's fields in order, where the `Value` decoder sees no object.
struct Obj<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Obj)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// The top level of the payload, as far as the fast path reads it.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    version: Option<Text<'a>>,
    #[serde(rename = "rawPath", borrow, default)]
    raw_path: Option<Text<'a>>,
    #[serde(rename = "rawQueryString", borrow, default)]
    raw_query: Option<Text<'a>>,
    #[serde(borrow, default)]
    headers: Option<Pairs<'a>>,
    #[serde(borrow, default)]
    cookies: Option<Vec<MaybeStr<'a>>>,
    #[serde(rename = "requestContext", borrow, default)]
    request_context: Option<Obj<RequestContext<'a>>>,
    #[serde(borrow, default)]
    body: Option<Text<'a>>,
    #[serde(rename = "isBase64Encoded", default)]
    is_base64: Option<Base64Flag>,
    #[serde(rename = "Records", default)]
    records: Present,
    #[serde(rename = "detail-type", default)]
    detail_type: Present,
    #[serde(default)]
    source: Present,
    #[serde(default)]
    detail: Present,
}

#[derive(Deserialize)]
struct RequestContext<'a> {
    #[serde(rename = "domainName", borrow, default)]
    domain_name: Option<Text<'a>>,
    #[serde(borrow, default)]
    http: Option<Obj<HttpContext<'a>>>,
    #[serde(default)]
    authorizer: Option<Value>,
    #[serde(default)]
    elb: Present,
    #[serde(rename = "connectionId", default)]
    connection_id: Present,
    #[serde(rename = "eventType", default)]
    event_type: Present,
}

#[derive(Deserialize)]
struct HttpContext<'a> {
    #[serde(borrow, default)]
    method: Option<Text<'a>>,
    #[serde(borrow, default)]
    path: Option<Text<'a>>,
    #[serde(rename = "sourceIp", borrow, default)]
    source_ip: Option<Text<'a>>,
}

/// Whether a key was there at all (whatever its value, `null` included).
#[derive(Default)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Present(true))
    }
}

/// A string, borrowed from the payload when it holds no escape (serde's own `Cow<str>` always
/// copies, and inside an `Option` even `#[serde(borrow)]` cannot help it).
struct Text<'a>(Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A string, or any other value (which the `Value` decoder skips).
enum MaybeStr<'a> {
    Str(Cow<'a, str>),
    Other,
}

impl<'a> MaybeStr<'a> {
    fn as_str(&self) -> Option<&str> {
        match self {
            MaybeStr::Str(s) => Some(s),
            MaybeStr::Other => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for MaybeStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MaybeStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(MaybeStr::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MaybeStr::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(MaybeStr::Str(Cow::Owned(v)))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(MaybeStr::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(MaybeStr::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(MaybeStr::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(MaybeStr::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(MaybeStr::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(MaybeStr::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(MaybeStr::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// The entries of a JSON object, in document order.
struct Pairs<'a>(Vec<(Text<'a>, MaybeStr<'a>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Pairs<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Pairs<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(a.size_hint().unwrap_or(16).min(64));
                while let Some((k, v)) = a.next_entry::<Text<'de>, MaybeStr<'de>>()? {
                    out.push((k, v));
                }
                Ok(Pairs(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// `isBase64Encoded`: a boolean, or a string (`"true"` in any case means true); any other type
/// leaves the fast path.
struct Base64Flag(bool);

impl<'de> Deserialize<'de> for Base64Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Base64Flag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a boolean or a string")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Base64Flag(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Base64Flag(v.eq_ignore_ascii_case("true")))
            }
        }
        d.deserialize_any(V)
    }
}

/// Whether `serde_json::Map` iterates its keys sorted (its default) rather than in insertion
/// order (its `preserve_order` feature, which any crate in the build may turn on): the fast
/// path hands headers over in the order the `Value` decoder would see them.
fn map_is_sorted() -> bool {
    static SORTED: OnceLock<bool> = OnceLock::new();
    *SORTED.get_or_init(|| {
        let mut m = serde_json::Map::new();
        m.insert("b".into(), Value::Null);
        m.insert("a".into(), Value::Null);
        m.keys().next().map(String::as_str) == Some("a")
    })
}

/// A parsed payload 2.0 event that the fast path can decode, with its shape.
pub(super) struct FastV2<'a> {
    envelope: Envelope<'a>,
    shape: EventShape,
}

/// Parses `text` as an HTTP API / Function URL event; `None` when it is not one or when the
/// `Value` decoder must decide (see the module docs).
pub(super) fn parse(text: &str) -> Option<FastV2<'_>> {
    let Obj(envelope) = serde_json::from_str::<Obj<Envelope<'_>>>(text).ok()?;
    if envelope.records.0
        || envelope.detail_type.0
        || envelope.source.0
        || envelope.detail.0
        || envelope.version.as_deref() != Some("2.0")
    {
        return None;
    }
    let ctx = &envelope.request_context.as_ref()?.0;
    if ctx.elb.0 || ctx.connection_id.0 || ctx.event_type.0 || ctx.http.is_none() {
        return None;
    }
    if let Some(headers) = &envelope.headers {
        let names = &headers.0;
        let duplicate = names
            .iter()
            .enumerate()
            .any(|(i, (k, _))| names[..i].iter().any(|(other, _)| **other == **k));
        if duplicate {
            return None;
        }
    }
    let domain = ctx.domain_name.as_deref().unwrap_or_default();
    let shape = if domain.contains(".lambda-url.") {
        EventShape::FunctionUrl
    } else {
        EventShape::ApiGatewayV2
    };
    Some(FastV2 { envelope, shape })
}

impl<'a> FastV2<'a> {
    /// The envelope.
    pub(super) fn shape(&self) -> EventShape {
        self.shape
    }

    /// What the shared payload 2.0 decoder reads.
    pub(super) fn parts(&self) -> V2Parts<'_> {
        let e = &self.envelope;
        let ctx = e.request_context.as_ref().map(|c| &c.0);
        let http = ctx.and_then(|c| c.http.as_ref()).map(|h| &h.0);
        let mut headers: Vec<(&str, &str)> = e
            .headers
            .iter()
            .flat_map(|h| h.0.iter())
            .filter_map(|(k, v)| Some((&**k, v.as_str()?)))
            .collect();
        if map_is_sorted() {
            headers.sort_unstable_by(|a, b| a.0.cmp(b.0));
        }
        V2Parts {
            method: http.and_then(|h| h.method.as_deref()),
            raw_path: e.raw_path.as_deref(),
            http_path: http.and_then(|h| h.path.as_deref()),
            raw_query: e.raw_query.as_deref(),
            headers,
            cookies: e
                .cookies
                .iter()
                .flatten()
                .filter_map(MaybeStr::as_str)
                .collect(),
            body: match &e.body {
                None => BodyField::Absent,
                Some(s) => BodyField::Text(s),
            },
            is_base64: e.is_base64.as_ref().is_some_and(|f| f.0),
            source_ip: http.and_then(|h| h.source_ip.as_deref()),
            authorizer: ctx.and_then(|c| c.authorizer.as_ref()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2: &str = r#"{"version": "2.0", "rawPath": "/o", "headers": {"b": "1", "a": "2"},
        "requestContext": {"domainName": "x.lambda-url.eu-west-1.on.aws",
        "http": {"method": "POST", "sourceIp": "203.0.113.7"}}, "body": "{\"a\":1}"}"#;

    #[test]
    fn takes_payload_2_0_events_with_their_fields_borrowed() {
        let fast = parse(V2).expect("a payload 2.0 event takes the fast path");
        assert_eq!(fast.shape(), EventShape::FunctionUrl);
        let parts = fast.parts();
        assert_eq!(parts.method, Some("POST"));
        assert_eq!(parts.source_ip, Some("203.0.113.7"));
        assert_eq!(parts.body, BodyField::Text("{\"a\":1}"));
        assert_eq!(parts.headers, [("a", "2"), ("b", "1")], "in a Map's order");
        let raw_path = fast.envelope.raw_path.as_ref().unwrap();
        assert!(
            matches!(raw_path.0, Cow::Borrowed(_)),
            "no copy without escapes"
        );
    }

    #[test]
    fn leaves_everything_it_cannot_decide_exactly_to_the_value_decoder() {
        for text in [
            r#"{"version": "1.0", "requestContext": {"http": {}}}"#,
            r#"{"version": "2.0", "requestContext": {"http": []}}"#,
            r#"{"version": "2.0", "requestContext": [], "x": 1}"#,
            r#"[{"version": "2.0"}]"#,
            r#"{"version": "2.0", "Records": null, "requestContext": {"http": {}}}"#,
            r#"{"version": "2.0", "source": 1, "requestContext": {"http": {}}}"#,
            r#"{"version": "2.0", "requestContext": {"elb": null, "http": {}}}"#,
            r#"{"version": "2.0", "requestContext": {"eventType": "M", "http": {}}}"#,
            r#"{"version": "2.0", "headers": {"a": "1", "a": "2"}, "requestContext": {"http": {}}}"#,
            r#"{"version": "2.0", "body": 1, "requestContext": {"http": {}}}"#,
            r#"{"version": "2.0", "isBase64Encoded": 1, "requestContext": {"http": {}}}"#,
            r#"{"version": "2.0", "version": "2.0", "requestContext": {"http": {}}}"#,
        ] {
            assert!(parse(text).is_none(), "{text}");
        }
    }
}
