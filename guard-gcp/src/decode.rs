//! Turning what Cloud Run delivers into Guard's neutral request.
//!
//! The core server already made a [`GuardRequest`] with `Trigger::Http` and the `Peer` (through
//! the trusted proxies in front). This module adds the [`Invocation`] (`K_SERVICE`, `K_REVISION`,
//! `GOOGLE_CLOUD_PROJECT`, the trace from `traceparent` or `X-Cloud-Trace-Context`) and unwraps the
//! two envelopes:
//!
//! - **Pub/Sub push** ([`pubsub`]): `{"message": {"data", "attributes", "messageId",
//!   "publishTime", "orderingKey"}, "subscription", "deliveryAttempt"}` becomes one request whose
//!   body is the decoded `data` (bounded), `Trigger::Message { kind: "pubsub", source_id:
//!   subscription, message_id }` and a [`PubSubMessage`] extension with the attributes.
//! - **CloudEvents** ([`cloud_event`]): binary mode (`ce-*` headers, the body is the data) and
//!   structured mode (`application/cloudevents+json`, `data` or `data_base64`) become one request
//!   with `Trigger::Message { kind: "eventarc", source_id: source, message_id: id }` and a
//!   [`CloudEvent`] extension. An Eventarc Pub/Sub event
//!   (`google.cloud.pubsub.topic.v1.messagePublished`) carries the Pub/Sub message as its data:
//!   the body is that message's decoded `data`.
//!
//! The request keeps its headers (the push token in `Authorization` is verified by the stack);
//! `Content-Type` becomes the data's type. An envelope that does not decode becomes a stand-in
//! request marked with an [`AdapterRefusal`], which the stack's audit layer answers (400
//! `guard.adapter.malformed_event`, 413 for data over the limit) with exactly one security event.
//!
//! ```
//! use guard_core::request::{MessageTrigger, Trigger};
//! use guard_gcp::decode::{pubsub, PubSubMessage};
//!
//! let envelope = br#"{"message": {"data": "eyJhIjoxfQ==", "attributes": {"k": "v"},
//!     "messageId": "1"}, "subscription": "projects/p/subscriptions/s"}"#;
//! let mut req = guard_core::GuardRequest::new(bytes::Bytes::from_static(envelope));
//! *req.method_mut() = http::Method::POST;
//! let req = pubsub(req, 1024);
//! assert_eq!(req.body().as_ref(), br#"{"a":1}"#);
//! assert_eq!(req.headers()["content-type"], "application/json");
//! let Some(Trigger::Message(m)) = req.extensions().get::<Trigger>() else { panic!() };
//! assert_eq!((m.kind.as_str(), m.source_id.as_str()), ("pubsub", "projects/p/subscriptions/s"));
//! assert_eq!(req.extensions().get::<PubSubMessage>().unwrap().attributes["k"], "v");
//! ```

use std::collections::BTreeMap;

use bytes::Bytes;
use guard_core::GuardRequest;
use guard_core::request::body::BodyCodec;
use guard_core::request::{AdapterRefusal, Cloud, Invocation, MessageTrigger, Peer, Trigger};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::Value;

/// The trigger kind of a Pub/Sub push message (`[verify.sources] pubsub`).
pub const PUBSUB_KIND: &str = "pubsub";
/// The trigger kind of a CloudEvent (`[verify.sources] eventarc`).
pub const EVENTARC_KIND: &str = "eventarc";
/// The CloudEvents type Eventarc uses for a Pub/Sub message.
pub const PUBSUB_PUBLISHED_TYPE: &str = "google.cloud.pubsub.topic.v1.messagePublished";

/// The Pub/Sub message around a push request's body (its attributes and ids).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PubSubMessage {
    /// `message.attributes`.
    pub attributes: BTreeMap<String, String>,
    /// `message.messageId`.
    pub message_id: String,
    /// `message.publishTime` (RFC 3339), when sent.
    pub publish_time: Option<String>,
    /// `message.orderingKey`, when sent.
    pub ordering_key: Option<String>,
}

/// The context attributes of a CloudEvent (binary or structured mode).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloudEvent {
    /// `id`.
    pub id: String,
    /// `source` (for Eventarc Pub/Sub: `//pubsub.googleapis.com/projects/P/topics/T`).
    pub source: String,
    /// `type`.
    pub ty: String,
    /// `specversion`.
    pub spec_version: String,
    /// `subject`, when sent.
    pub subject: Option<String>,
    /// `time`, when sent.
    pub time: Option<String>,
}

/// The facts about this service from Cloud Run's environment: `K_SERVICE` (function),
/// `K_REVISION` (function id), `GOOGLE_CLOUD_PROJECT` (account) and the region from
/// `GOOGLE_CLOUD_REGION` (or `FUNCTION_REGION`, as Cloud Functions sets it; Cloud Run itself
/// reports its region only through the metadata server, which is not asked).
///
/// ```
/// let inv = guard_gcp::decode::invocation_from_env();
/// assert_eq!(inv.cloud, guard_core::request::Cloud::Gcp);
/// ```
pub fn invocation_from_env() -> Invocation {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let mut inv = Invocation::new(Cloud::Gcp);
    inv.function = var("K_SERVICE");
    inv.function_id = var("K_REVISION");
    inv.account = var("GOOGLE_CLOUD_PROJECT");
    inv.region = var("GOOGLE_CLOUD_REGION").or_else(|| var("FUNCTION_REGION"));
    inv
}

/// Adds `invocation` with this request's trace (`traceparent`, else `X-Cloud-Trace-Context`)
/// and execution id (`Function-Execution-Id`, set by Cloud Functions).
pub fn with_invocation(mut req: GuardRequest, invocation: &Invocation) -> GuardRequest {
    let mut inv = invocation.clone();
    if let Some(id) = req
        .headers()
        .get("function-execution-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
    {
        inv.request_id = Some(id.to_owned());
    }
    inv.trace_from_headers(req.headers());
    req.extensions_mut().insert(inv);
    req
}

#[derive(Deserialize)]
struct PushEnvelope {
    message: PushMessage,
    subscription: String,
    #[serde(rename = "deliveryAttempt")]
    delivery_attempt: Option<u32>,
}

// Pub/Sub sends both spellings (`messageId` and `message_id`): both are read, neither required
// alone, so the duplicate is not an error.
#[derive(Deserialize)]
struct PushMessage {
    data: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(rename = "messageId")]
    message_id_camel: Option<String>,
    message_id: Option<String>,
    #[serde(rename = "publishTime")]
    publish_time_camel: Option<String>,
    publish_time: Option<String>,
    #[serde(rename = "orderingKey")]
    ordering_key: Option<String>,
}

/// A Pub/Sub push request (the server's `POST` with the push envelope as its body) as the
/// message it carries; `max_data` bounds the decoded `data`. An envelope that does not decode
/// becomes a refused stand-in (see the [module docs](self)).
pub fn pubsub(req: GuardRequest, max_data: usize) -> GuardRequest {
    let (parts, body) = req.into_parts();
    let refuse =
        |refusal: AdapterRefusal, trigger: Trigger| stand_in(refusal, trigger, &parts.extensions);
    let envelope: PushEnvelope = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(_) => {
            return refuse(
                AdapterRefusal::malformed("not a Pub/Sub push envelope"),
                Trigger::Http,
            );
        }
    };
    let PushEnvelope {
        message,
        subscription,
        delivery_attempt,
    } = envelope;
    let message_id = message
        .message_id_camel
        .or(message.message_id)
        .unwrap_or_default();
    let mut trigger = MessageTrigger::new(PUBSUB_KIND, subscription, message_id.clone());
    trigger.attempt = delivery_attempt;
    if message_id.is_empty() {
        return refuse(
            AdapterRefusal::malformed("push message without messageId"),
            Trigger::Message(trigger),
        );
    }
    let data = match message
        .data
        .as_deref()
        .map(|d| BodyCodec::decode_base64(d, max_data))
    {
        None => Bytes::new(),
        Some(Ok(data)) => data,
        Some(Err(e)) => {
            return refuse(
                AdapterRefusal::new(e.kind(), e.reason()),
                Trigger::Message(trigger),
            );
        }
    };
    let meta = PubSubMessage {
        attributes: message.attributes,
        message_id,
        publish_time: message.publish_time_camel.or(message.publish_time),
        ordering_key: message.ordering_key,
    };
    let mut req = GuardRequest::from_parts(parts, Bytes::new());
    let content_type = BodyCodec::sniff_media_type(&data);
    set_body(&mut req, data, content_type);
    req.extensions_mut().insert(Trigger::Message(trigger));
    req.extensions_mut().insert(meta);
    req
}

#[derive(Deserialize)]
struct StructuredEvent {
    id: String,
    source: String,
    #[serde(rename = "type")]
    ty: String,
    specversion: String,
    subject: Option<String>,
    time: Option<String>,
    datacontenttype: Option<String>,
    data: Option<Value>,
    data_base64: Option<String>,
}

/// A CloudEvent in binary or structured mode as the message it carries; `max_data` bounds
/// base64 data. Anything else becomes a refused stand-in (see the [module docs](self)).
pub fn cloud_event(req: GuardRequest, max_data: usize) -> GuardRequest {
    let structured = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/cloudevents+json")
        });
    let (parts, body) = req.into_parts();
    let decoded = if structured {
        structured_event(&body, max_data)
    } else {
        binary_event(&parts.headers, body)
    };
    let (event, data, content_type) = match decoded {
        Ok(d) => d,
        Err((refusal, trigger)) => return stand_in(refusal, trigger, &parts.extensions),
    };
    let trigger = MessageTrigger::new(EVENTARC_KIND, event.source.clone(), event.id.clone());
    let (data, content_type) = if event.ty == PUBSUB_PUBLISHED_TYPE {
        match published_message(&data, max_data) {
            Ok(inner) => {
                let ct = BodyCodec::sniff_media_type(&inner);
                (inner, ct)
            }
            Err(refusal) => {
                return stand_in(refusal, Trigger::Message(trigger), &parts.extensions);
            }
        }
    } else {
        (data, content_type)
    };
    let mut req = GuardRequest::from_parts(parts, Bytes::new());
    for name in [
        "ce-id",
        "ce-source",
        "ce-type",
        "ce-specversion",
        "ce-time",
        "ce-subject",
    ] {
        req.headers_mut().remove(name);
    }
    set_body(&mut req, data, content_type);
    req.extensions_mut().insert(Trigger::Message(trigger));
    req.extensions_mut().insert(event);
    req
}

type Refused = (AdapterRefusal, Trigger);

fn binary_event(
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(CloudEvent, Bytes, HeaderValue), Refused> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (Some(id), Some(source), Some(ty), Some(spec_version)) = (
        get("ce-id"),
        get("ce-source"),
        get("ce-type"),
        get("ce-specversion"),
    ) else {
        return Err((
            AdapterRefusal::malformed(
                "CloudEvent without ce-id, ce-source, ce-type or ce-specversion",
            ),
            Trigger::Http,
        ));
    };
    let content_type = headers
        .get(CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| BodyCodec::sniff_media_type(&body));
    let event = CloudEvent {
        id,
        source,
        ty,
        spec_version,
        subject: get("ce-subject"),
        time: get("ce-time"),
    };
    Ok((event, body, content_type))
}

fn structured_event(
    body: &[u8],
    max_data: usize,
) -> Result<(CloudEvent, Bytes, HeaderValue), Refused> {
    let ev: StructuredEvent = serde_json::from_slice(body).map_err(|_| {
        (
            AdapterRefusal::malformed("not a structured CloudEvent"),
            Trigger::Http,
        )
    })?;
    let event = CloudEvent {
        id: ev.id,
        source: ev.source,
        ty: ev.ty,
        spec_version: ev.specversion,
        subject: ev.subject,
        time: ev.time,
    };
    let trigger = || {
        Trigger::Message(MessageTrigger::new(
            EVENTARC_KIND,
            event.source.clone(),
            event.id.clone(),
        ))
    };
    let declared = ev
        .datacontenttype
        .as_deref()
        .and_then(|ct| HeaderValue::from_str(ct).ok());
    let data = match (ev.data, ev.data_base64) {
        (Some(_), Some(_)) => {
            return Err((
                AdapterRefusal::malformed("CloudEvent with both data and data_base64"),
                trigger(),
            ));
        }
        (None, Some(b64)) => BodyCodec::decode_base64(&b64, max_data)
            .map_err(|e| (AdapterRefusal::new(e.kind(), e.reason()), trigger()))?,
        // A JSON string is the data itself when the declared type is not JSON.
        (Some(Value::String(text)), None)
            if declared
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| !ct.contains("json")) =>
        {
            Bytes::from(text)
        }
        (Some(value), None) => Bytes::from(value.to_string()),
        (None, None) => Bytes::new(),
    };
    let content_type = declared.unwrap_or_else(|| BodyCodec::sniff_media_type(&data));
    Ok((event, data, content_type))
}

#[derive(Deserialize)]
struct MessagePublishedData {
    message: PublishedMessage,
}

#[derive(Deserialize)]
struct PublishedMessage {
    data: Option<String>,
}

fn published_message(data: &[u8], max_data: usize) -> Result<Bytes, AdapterRefusal> {
    let published: MessagePublishedData = serde_json::from_slice(data)
        .map_err(|_| AdapterRefusal::malformed("messagePublished event without a message"))?;
    match published.message.data {
        None => Ok(Bytes::new()),
        Some(b64) => BodyCodec::decode_base64(&b64, max_data)
            .map_err(|e| AdapterRefusal::new(e.kind(), e.reason())),
    }
}

fn set_body(req: &mut GuardRequest, data: Bytes, content_type: HeaderValue) {
    req.headers_mut().insert(CONTENT_TYPE, content_type);
    req.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(data.len()));
    *req.body_mut() = data;
}

fn stand_in(
    refusal: AdapterRefusal,
    trigger: Trigger,
    extensions: &http::Extensions,
) -> GuardRequest {
    let mut req = refusal.into_request();
    req.extensions_mut().insert(trigger);
    if let Some(peer) = extensions.get::<Peer>() {
        req.extensions_mut().insert(*peer);
    }
    if let Some(inv) = extensions.get::<Invocation>() {
        req.extensions_mut().insert(inv.clone());
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_execution_id_becomes_the_invocation_id() {
        let mut req = GuardRequest::new(Bytes::new());
        req.headers_mut()
            .insert("function-execution-id", HeaderValue::from_static("exec-7"));
        let req = with_invocation(req, &Invocation::new(Cloud::Gcp));
        let inv = req.extensions().get::<Invocation>().unwrap();
        assert_eq!(inv.request_id.as_deref(), Some("exec-7"));
        let req = with_invocation(
            GuardRequest::new(Bytes::new()),
            &Invocation::new(Cloud::Gcp),
        );
        assert_eq!(
            req.extensions().get::<Invocation>().unwrap().request_id,
            None
        );
    }

    fn post(body: &'static [u8], headers: &[(&'static str, &'static str)]) -> GuardRequest {
        let mut req = GuardRequest::new(Bytes::from_static(body));
        *req.method_mut() = http::Method::POST;
        for (k, v) in headers {
            req.headers_mut().insert(*k, HeaderValue::from_static(v));
        }
        req
    }

    fn refusal(req: &GuardRequest) -> Option<AdapterRefusal> {
        req.extensions().get::<AdapterRefusal>().copied()
    }

    #[test]
    fn both_spellings_of_the_message_id_are_accepted_together() {
        let req = pubsub(
            post(
                br#"{"message":{"data":"aGk=","messageId":"7","message_id":"7","publishTime":"t","publish_time":"t"},"subscription":"s","deliveryAttempt":3}"#,
                &[],
            ),
            16,
        );
        assert_eq!(refusal(&req), None);
        let Some(Trigger::Message(m)) = req.extensions().get::<Trigger>() else {
            panic!("no message trigger")
        };
        assert_eq!((m.message_id.as_str(), m.attempt), ("7", Some(3)));
        assert_eq!(req.body().as_ref(), b"hi");
    }

    #[test]
    fn a_push_without_an_envelope_is_refused_as_malformed() {
        for body in [
            &b"{}"[..],
            b"[1]",
            b"not json",
            br#"{"message":{},"subscription":"s"}"#,
        ] {
            let req = pubsub(post(body, &[]), 16);
            let r = refusal(&req).expect("refused");
            assert_eq!(r.rejection().code(), "guard.adapter.malformed_event");
            assert!(req.body().is_empty());
        }
    }

    #[test]
    fn push_data_over_the_limit_is_refused_before_decoding() {
        let req = pubsub(
            post(
                br#"{"message":{"data":"QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB","messageId":"1"},"subscription":"s"}"#,
                &[],
            ),
            4,
        );
        assert_eq!(refusal(&req).unwrap().rejection().status(), 413);
    }

    #[test]
    fn binary_and_structured_cloud_events_give_the_same_body_and_source() {
        let binary = cloud_event(
            post(
                br#"{"a":1}"#,
                &[
                    ("ce-id", "e1"),
                    ("ce-source", "//src"),
                    ("ce-type", "t"),
                    ("ce-specversion", "1.0"),
                    ("content-type", "application/json"),
                ],
            ),
            64,
        );
        let structured = cloud_event(
            post(
                br#"{"id":"e1","source":"//src","type":"t","specversion":"1.0","datacontenttype":"application/json","data":{"a":1}}"#,
                &[("content-type", "application/cloudevents+json; charset=utf-8")],
            ),
            64,
        );
        for req in [&binary, &structured] {
            assert_eq!(refusal(req), None);
            assert_eq!(req.body().as_ref(), br#"{"a":1}"#);
            assert_eq!(req.headers()["content-type"], "application/json");
            assert_eq!(
                req.extensions().get::<CloudEvent>().unwrap().source,
                "//src"
            );
            assert_eq!(
                req.extensions().get::<Trigger>().unwrap().source_id(),
                Some("//src")
            );
        }
    }

    #[test]
    fn a_cloud_event_without_its_attributes_is_refused_as_malformed() {
        let req = cloud_event(post(br#"{"a":1}"#, &[("ce-id", "e1")]), 64);
        assert_eq!(
            refusal(&req).unwrap().kind(),
            guard_core::RejectionKind::MalformedEvent
        );
        let req = cloud_event(
            post(
                br#"{"id":"e1"}"#,
                &[("content-type", "application/cloudevents+json")],
            ),
            64,
        );
        assert!(refusal(&req).is_some());
    }

    #[test]
    fn an_eventarc_pubsub_event_carries_the_message_data_as_its_body() {
        let req = cloud_event(
            post(
                br#"{"message":{"data":"eyJhIjoxfQ==","messageId":"1"},"subscription":"s"}"#,
                &[
                    ("ce-id", "1"),
                    ("ce-source", "//pubsub.googleapis.com/projects/p/topics/t"),
                    ("ce-type", "google.cloud.pubsub.topic.v1.messagePublished"),
                    ("ce-specversion", "1.0"),
                    ("content-type", "application/json"),
                ],
            ),
            64,
        );
        assert_eq!(req.body().as_ref(), br#"{"a":1}"#);
    }
}
