//! Event Grid's webhook handshakes, answered for the configured subscriptions and origins only.
//!
//! - **Event Grid schema**: a `POST` with `aeg-event-type: SubscriptionValidation` whose body is
//!   `[{"eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "data": {"validationCode":
//!   ...}}]` is answered **200** `{"validationResponse": <code>}` (Event Grid refuses a 202) when
//!   `aeg-subscription-name` is a configured subscription (compared case-insensitively: Event
//!   Grid sends the name in upper case); otherwise **403** `guard.verify.forbidden_source`.
//! - **CloudEvents schema**: an `OPTIONS` with `WebHook-Request-Origin` is answered 200 with
//!   `WebHook-Allowed-Origin: <origin>`, `WebHook-Allowed-Rate: *` and `Allow: POST` when the
//!   origin is configured; otherwise 403.
//!
//! Nothing is configured by default, so every handshake is refused (fail closed). Each answer is
//! one security event: it goes through the stack's audit layer (see
//! [`AzureService::event_grid`](crate::AzureService::event_grid)).
//!
//! ## Deliveries
//!
//! A `POST` with `aeg-event-type: Notification` is a delivery of events, in the Event Grid schema
//! (a JSON array of `{id, topic, subject, eventType, eventTime, data, dataVersion}`) or the
//! CloudEvents schema (one `{id, source, type, specversion, data | data_base64}` object, or an
//! array of them when batching is on). It is accepted only for a configured subscription
//! (`aeg-subscription-name`; others → 403 `guard.verify.forbidden_source`, one event). Then
//! [`split_delivery`] makes each event a message for the stack: `Trigger::Message { kind:
//! "eventgrid", source_id: topic (CloudEvents: source), message_id: id, attempt:
//! aeg-delivery-count }`, its `data` as the body (`datacontenttype`, else sniffed), and an
//! [`Event`] extension with its type and subject. Each runs through the stack on its own (one
//! security event per event; `[verify.sources] eventgrid = [...]` admits its topic), and
//! [`delivery_answer`] answers the delivery:
//!
//! | events | answer | Event Grid |
//! |---|---|---|
//! | all accepted | 200 | done |
//! | any failed for now (429, 5xx, an inner error) | that event's answer (429 / 5xx) | retries the whole delivery |
//! | all failures permanent (4xx) | the first refused event's answer (400 / 401 / 403 / 413 ...) | no retry: dead-letters the delivery (drops it when no dead-letter destination is set) |
//!
//! A delivery is never acknowledged unless the handler accepted every event of it. A partly
//! refused batch is redelivered (or dead-lettered) whole, so events the handler accepted may
//! come again: handlers of Event Grid events must be idempotent, as for any at-least-once
//! delivery. Event Grid sends one event per delivery unless output batching is on; a delivery
//! larger than the server's body limit ([`server_config`](crate::server_config)) is refused
//! with 413 before it is split (Event Grid dead-letters it), so keep the subscription's preferred
//! batch size under that limit.
//!
//! Webhook deliveries are not signed: topic, source and subscription are what the request says.
//! So [`AzureService`](crate::AzureService) takes deliveries only on an HTTP function whose
//! `function.json` has `authLevel` `function` or `admin` (the host checks the function key before
//! the handler sees the request; give the key to the subscription's endpoint URL, `?code=...`).
//! A delivery to an `anonymous` function is refused whole (403), or anyone could post "events"
//! past the request checks (address, signature) of an open function.

use bytes::Bytes;
use guard_core::GuardRequest;
use guard_core::message::{MessageResult, MessageVerdict};
use guard_core::request::body::BodyCodec;
use guard_core::request::{AdapterRefusal, Invocation, MessageTrigger, Trigger};
use guard_core::{GuardResponse, RejectionKind};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{Map, Value, json};

/// The event type of Event Grid's subscription validation.
pub const VALIDATION_EVENT: &str = "Microsoft.EventGrid.SubscriptionValidationEvent";
/// The `Trigger::Message` kind of an Event Grid event (`[verify.sources] eventgrid = [...]`).
pub const EVENTGRID_KIND: &str = "eventgrid";
/// Most events one delivery may carry (Event Grid's largest output batch); more → 400.
pub const MAX_EVENTS_PER_DELIVERY: usize = 5000;

/// Which subscriptions and webhook origins may complete a handshake.
///
/// ```
/// let eg = guard_azure::eventgrid::EventGrid::new()
///     .subscription("orders-events")
///     .origin("eventgrid.azure.net");
/// assert!(eg.allows_subscription("ORDERS-EVENTS"));
/// assert!(!eg.allows_origin("evil.example"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct EventGrid {
    subscriptions: Vec<String>,
    origins: Vec<String>,
}

/// What a request is, as far as the handshakes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// Not a handshake: an ordinary request.
    None,
    /// Granted: the answer to send.
    Granted(Granted),
    /// Refused with this rejection.
    Refused(RejectionKind, &'static str),
    /// A delivery of events for a configured subscription: split it with [`split_delivery`].
    Delivery,
}

/// A granted handshake's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Granted {
    /// `{"validationResponse": code}`.
    Validation(String),
    /// The CloudEvents abuse-protection answer for this origin.
    Origin(String),
}

impl EventGrid {
    /// Nothing allowed.
    pub fn new() -> Self {
        Self::default()
    }

    /// From comma-separated lists (`GUARD_AZURE_EVENTGRID_SUBSCRIPTIONS`,
    /// `GUARD_AZURE_WEBHOOK_ORIGINS`).
    ///
    /// ```
    /// let eg = guard_azure::eventgrid::EventGrid::from_lists(Some("a, b"), None);
    /// assert!(eg.allows_subscription("b"));
    /// ```
    pub fn from_lists(subscriptions: Option<&str>, origins: Option<&str>) -> Self {
        let split = |s: Option<&str>| -> Vec<String> {
            s.unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        split(subscriptions)
            .into_iter()
            .fold(Self::new(), Self::subscription)
            .origins(split(origins))
    }

    fn origins(self, origins: Vec<String>) -> Self {
        origins.into_iter().fold(self, Self::origin)
    }

    /// Allows the subscription `name`.
    pub fn subscription(mut self, name: impl Into<String>) -> Self {
        self.subscriptions.push(name.into());
        self
    }

    /// Allows the webhook origin `origin` (`eventgrid.azure.net`).
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origins.push(origin.into());
        self
    }

    /// Whether `name` is a configured subscription (case-insensitive).
    pub fn allows_subscription(&self, name: &str) -> bool {
        self.subscriptions
            .iter()
            .any(|s| s.eq_ignore_ascii_case(name))
    }

    /// Whether `origin` is a configured webhook origin (case-insensitive).
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }

    /// Classifies `req` (the client's request, after decoding).
    ///
    /// ```
    /// use guard_azure::eventgrid::{EventGrid, Granted, Handshake};
    /// let eg = EventGrid::new().subscription("orders-events");
    /// let req = http::Request::post("/api/orders-events")
    ///     .header("aeg-event-type", "SubscriptionValidation")
    ///     .header("aeg-subscription-name", "ORDERS-EVENTS")
    ///     .body(bytes::Bytes::from(r#"[{"eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","data":{"validationCode":"512d38b6"}}]"#))
    ///     .unwrap();
    /// assert_eq!(eg.classify(&req), Handshake::Granted(Granted::Validation("512d38b6".into())));
    /// ```
    pub fn classify(&self, req: &GuardRequest) -> Handshake {
        let headers = req.headers();
        if req.method() == Method::OPTIONS
            && let Some(origin) = header(headers, "webhook-request-origin")
        {
            return if self.allows_origin(origin) {
                Handshake::Granted(Granted::Origin(origin.to_owned()))
            } else {
                Handshake::Refused(
                    RejectionKind::ForbiddenSource,
                    "webhook origin not configured",
                )
            };
        }
        let event_type = header(headers, "aeg-event-type").unwrap_or_default();
        let delivery = event_type.eq_ignore_ascii_case("Notification");
        if !(delivery || event_type.eq_ignore_ascii_case("SubscriptionValidation"))
            || req.method() != Method::POST
        {
            return Handshake::None;
        }
        let subscription = header(headers, "aeg-subscription-name").unwrap_or_default();
        if !self.allows_subscription(subscription) {
            return Handshake::Refused(
                RejectionKind::ForbiddenSource,
                "event grid subscription not configured",
            );
        }
        if delivery {
            return Handshake::Delivery;
        }
        let events: Option<Vec<Value>> = serde_json::from_slice(req.body()).ok();
        let code = events.as_deref().and_then(|events| {
            let [event] = events else { return None };
            (event.get("eventType")?.as_str()? == VALIDATION_EVENT)
                .then(|| event.get("data")?.get("validationCode")?.as_str())
                .flatten()
        });
        match code {
            Some(code) if !code.is_empty() && code.len() <= 256 => {
                Handshake::Granted(Granted::Validation(code.to_owned()))
            }
            _ => Handshake::Refused(
                RejectionKind::MalformedEvent,
                "not a subscription validation event",
            ),
        }
    }
}

impl Granted {
    /// The HTTP answer.
    pub fn into_response(self) -> GuardResponse {
        let mut resp = GuardResponse::new(Bytes::new());
        *resp.status_mut() = StatusCode::OK;
        let headers = resp.headers_mut();
        match self {
            Granted::Validation(code) => {
                *resp.body_mut() = Bytes::from(json!({"validationResponse": code}).to_string());
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
            }
            Granted::Origin(origin) => {
                if let Ok(v) = HeaderValue::from_str(&origin) {
                    headers.insert("webhook-allowed-origin", v);
                }
                headers.insert("webhook-allowed-rate", HeaderValue::from_static("*"));
                headers.insert(http::header::ALLOW, HeaderValue::from_static("POST"));
            }
        }
        resp
    }
}

/// What the stack's handler can know of an Event Grid event besides its `data` (the body): a
/// request extension of each event [`split_delivery`] makes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// `id`.
    pub id: String,
    /// `topic` (Event Grid schema) or `source` (CloudEvents).
    pub source: String,
    /// `eventType` or `type`.
    pub event_type: String,
    /// `subject`, when given.
    pub subject: Option<String>,
}

/// The events of a delivery (see the [module docs](self)), each a `POST` to the delivery's path
/// with its `data` as the body and the delivery's [`Invocation`]. An event that is not an Event
/// Grid or CloudEvents event (no `id`, no `topic` / `source`, both `data` and `data_base64`, bad
/// base64) becomes a stand-in that the stack refuses with 400 `guard.adapter.malformed_event`:
/// it fails alone. A body that is no event at all, or more than
/// [`MAX_EVENTS_PER_DELIVERY`] events, refuses the delivery.
///
/// ```
/// use guard_azure::eventgrid::split_delivery;
/// use guard_core::request::Trigger;
/// let req = http::Request::post("/api/orders-events")
///     .header("aeg-delivery-count", "1")
///     .body(bytes::Bytes::from(r#"[{"id":"e-1","topic":"/subscriptions/s/resourceGroups/g/providers/Microsoft.EventGrid/topics/orders",
///         "subject":"orders/1","eventType":"Shop.OrderPlaced","eventTime":"2026-12-01T20:00:00Z","data":{"a":1},"dataVersion":"1"}]"#))
///     .unwrap();
/// let events = split_delivery(&req).unwrap();
/// let Some(Trigger::Message(m)) = events[0].extensions().get::<Trigger>() else { panic!() };
/// assert_eq!((m.kind.as_str(), m.message_id.as_str(), m.attempt), ("eventgrid", "e-1", Some(1)));
/// assert_eq!(events[0].body().as_ref(), br#"{"a":1}"#);
/// ```
pub fn split_delivery(req: &GuardRequest) -> Result<Vec<GuardRequest>, AdapterRefusal> {
    let body: Value = serde_json::from_slice(req.body())
        .map_err(|_| AdapterRefusal::malformed("event grid delivery is not JSON"))?;
    let events = match body {
        Value::Array(events) => events,
        event @ Value::Object(_) => vec![event],
        _ => return Err(AdapterRefusal::malformed("not an event grid delivery")),
    };
    if events.is_empty() {
        return Err(AdapterRefusal::malformed(
            "event grid delivery without events",
        ));
    }
    if events.len() > MAX_EVENTS_PER_DELIVERY {
        return Err(AdapterRefusal::malformed(
            "more events than one event grid delivery carries",
        ));
    }
    let attempt = header(req.headers(), "aeg-delivery-count").and_then(|n| n.trim().parse().ok());
    let invocation = req.extensions().get::<Invocation>();
    Ok(events
        .iter()
        .map(|event| {
            let mut one = event_request(event, attempt, req.body().len());
            *one.uri_mut() = req.uri().clone();
            if let Some(inv) = invocation {
                one.extensions_mut().insert(inv.clone());
            }
            one
        })
        .collect())
}

/// One event (Event Grid or CloudEvents schema) as a message request; `max_data` bounds
/// base64 data. Used for deliveries and for the `eventGridTrigger` binding alike.
pub(crate) fn event_request(event: &Value, attempt: Option<u32>, max_data: usize) -> GuardRequest {
    let text =
        |o: &Map<String, Value>, k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned);
    let refuse = |reason, source: Option<String>, id: Option<String>| {
        let mut req = AdapterRefusal::malformed(reason).into_request();
        let mut trigger = MessageTrigger::new(
            EVENTGRID_KIND,
            source.unwrap_or_default(),
            id.unwrap_or_default(),
        );
        trigger.attempt = attempt;
        req.extensions_mut().insert(Trigger::Message(trigger));
        req
    };
    let Some(obj) = event.as_object() else {
        return refuse("event grid event is not an object", None, None);
    };
    let cloud_event = obj.contains_key("specversion");
    let (source, event_type) = if cloud_event {
        (text(obj, "source"), text(obj, "type"))
    } else {
        (text(obj, "topic"), text(obj, "eventType"))
    };
    let id = text(obj, "id");
    let (Some(source_id), Some(message_id), Some(event_type)) = (
        source.clone().filter(|s| !s.is_empty()),
        id.clone().filter(|s| !s.is_empty()),
        event_type,
    ) else {
        return refuse("event without id, topic / source or type", source, id);
    };
    let declared = cloud_event
        .then(|| text(obj, "datacontenttype"))
        .flatten()
        .and_then(|ct| HeaderValue::from_str(&ct).ok());
    let data = match (
        obj.get("data"),
        obj.get("data_base64").filter(|_| cloud_event),
    ) {
        (Some(_), Some(_)) => {
            return refuse("event with both data and data_base64", source, id);
        }
        (None, Some(b64)) => match b64.as_str().map(|b| BodyCodec::decode_base64(b, max_data)) {
            Some(Ok(bytes)) => bytes,
            _ => return refuse("event data_base64 is not valid base64", source, id),
        },
        // A CloudEvents string is the data itself when its declared type is not JSON.
        (Some(Value::String(text)), None)
            if declared
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| !ct.contains("json")) =>
        {
            Bytes::from(text.clone())
        }
        (None | Some(Value::Null), None) => Bytes::new(),
        (Some(value), None) => Bytes::from(value.to_string()),
    };
    let content_type = declared.unwrap_or_else(|| BodyCodec::sniff_media_type(&data));
    let mut req = http::Request::new(data);
    *req.method_mut() = Method::POST;
    req.headers_mut()
        .insert(http::header::CONTENT_TYPE, content_type);
    let mut trigger = MessageTrigger::new(EVENTGRID_KIND, source_id.clone(), message_id.clone());
    trigger.attempt = attempt;
    req.extensions_mut().insert(Trigger::Message(trigger));
    req.extensions_mut().insert(Event {
        id: message_id,
        source: source_id,
        event_type,
        subject: text(obj, "subject"),
    });
    req
}

/// The answer to a delivery from its events' results (see the [module docs](self)): 200 when
/// every event was accepted; else the first transient failure's answer (an inner error is
/// returned as the error), else the first permanent failure's. Never a 2xx when an event failed.
///
/// ```
/// use guard_core::message::BatchOrder;
/// use guard_core::{GuardRequest, GuardResponse, Rejection, RejectionKind};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let stack = tower::service_fn(|req: GuardRequest| async move {
///     Ok::<GuardResponse, std::convert::Infallible>(match req.body().as_ref() {
///         b"1" => GuardResponse::new(bytes::Bytes::new()),
///         _ => Rejection::new(RejectionKind::ForbiddenSource).into_response(),
///     })
/// });
/// let events = vec![GuardRequest::new("1".into()), GuardRequest::new("2".into())];
/// let results = BatchOrder::Ordered.run(stack, events).await;
/// let answer = guard_azure::eventgrid::delivery_answer(results).unwrap();
/// assert_eq!(answer.status(), 403);
/// # });
/// ```
pub fn delivery_answer<E>(results: Vec<MessageResult<E>>) -> Result<GuardResponse, E> {
    let mut transient = None;
    let mut permanent = None;
    for result in results {
        match (result.verdict, result.outcome) {
            (MessageVerdict::Ack, _) => {}
            (_, Some(Err(e))) => return Err(e),
            (MessageVerdict::RetryTransient, Some(Ok(resp))) => {
                transient.get_or_insert(resp);
            }
            (_, Some(Ok(resp))) => {
                permanent.get_or_insert(resp);
            }
            // Not run (an ordered batch stopped): a retry may run it.
            (_, None) => {
                transient.get_or_insert_with(|| {
                    guard_core::Rejection::new(RejectionKind::Internal).into_response()
                });
            }
        }
    }
    Ok(match transient.or(permanent) {
        Some(resp) if !resp.status().is_success() => resp,
        Some(_) => guard_core::Rejection::new(RejectionKind::Internal).into_response(),
        None => {
            let mut ok = GuardResponse::new(Bytes::new());
            *ok.status_mut() = StatusCode::OK;
            ok
        }
    })
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validation(subscription: &str, body: &str) -> GuardRequest {
        http::Request::post("/api/orders-events")
            .header("aeg-event-type", "SubscriptionValidation")
            .header("aeg-subscription-name", subscription)
            .body(Bytes::from(body.to_owned()))
            .unwrap()
    }

    const BODY: &str = r#"[{"id":"2d1781af","topic":"/subscriptions/x/resourceGroups/shop/providers/Microsoft.EventGrid/topics/orders","subject":"","data":{"validationCode":"512d38b6-c7b8-40c8-89fe-f46f9e9622b6","validationUrl":"https://rp-eastus2.eventgrid.azure.net/eventsubscriptions/orders-events/validate?id=512d38b6"},"eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","eventTime":"2026-12-01T20:00:00Z","metadataVersion":"1","dataVersion":"2"}]"#;

    #[test]
    fn validation_only_for_configured_subscriptions() {
        let eg = EventGrid::new().subscription("orders-events");
        let granted = eg.classify(&validation("ORDERS-EVENTS", BODY));
        let Handshake::Granted(g) = granted else {
            panic!("{granted:?}")
        };
        let resp = g.into_response();
        assert_eq!(resp.status(), 200);
        let v: Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(
            v,
            json!({"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"})
        );
        assert!(matches!(
            eg.classify(&validation("OTHER", BODY)),
            Handshake::Refused(RejectionKind::ForbiddenSource, _)
        ));
        assert!(matches!(
            EventGrid::new().classify(&validation("ORDERS-EVENTS", BODY)),
            Handshake::Refused(..)
        ));
        assert!(matches!(
            eg.classify(&validation("ORDERS-EVENTS", "[]")),
            Handshake::Refused(RejectionKind::MalformedEvent, _)
        ));
    }

    #[test]
    fn options_handshake_only_for_configured_origins() {
        let eg = EventGrid::new().origin("eventgrid.azure.net");
        let req = |origin: &str| {
            http::Request::options("/api/orders-events")
                .header("webhook-request-origin", origin)
                .body(Bytes::new())
                .unwrap()
        };
        let Handshake::Granted(g) = eg.classify(&req("eventgrid.azure.net")) else {
            panic!()
        };
        let resp = g.into_response();
        assert_eq!(
            resp.headers()["webhook-allowed-origin"],
            "eventgrid.azure.net"
        );
        assert_eq!(resp.headers()["webhook-allowed-rate"], "*");
        assert_eq!(resp.headers()["allow"], "POST");
        assert!(matches!(
            eg.classify(&req("evil.example")),
            Handshake::Refused(..)
        ));
    }

    const TOPIC: &str =
        "/subscriptions/x/resourceGroups/shop-prod/providers/Microsoft.EventGrid/topics/orders";

    fn delivery(subscription: &str, body: String) -> GuardRequest {
        http::Request::post("/api/orders-events")
            .header("aeg-event-type", "Notification")
            .header("aeg-subscription-name", subscription)
            .header("aeg-delivery-count", "2")
            .body(Bytes::from(body))
            .unwrap()
    }

    fn message(req: &GuardRequest) -> (String, String, Option<u32>) {
        let Some(Trigger::Message(m)) = req.extensions().get::<Trigger>() else {
            panic!("not a message")
        };
        (m.source_id.clone(), m.message_id.clone(), m.attempt)
    }

    #[test]
    fn deliveries_only_for_configured_subscriptions() {
        let eg = EventGrid::new().subscription("orders-events");
        let body =
            json!([{"id": "e-1", "topic": TOPIC, "eventType": "Shop.OrderPlaced", "data": {}}]);
        assert_eq!(
            eg.classify(&delivery("ORDERS-EVENTS", body.to_string())),
            Handshake::Delivery
        );
        assert_eq!(
            eg.classify(&delivery("someone-elses", body.to_string())),
            Handshake::Refused(
                RejectionKind::ForbiddenSource,
                "event grid subscription not configured"
            )
        );
        assert!(matches!(
            EventGrid::new().classify(&delivery("orders-events", body.to_string())),
            Handshake::Refused(RejectionKind::ForbiddenSource, _)
        ));
    }

    #[test]
    fn a_delivery_is_split_into_one_message_per_event_in_either_schema() {
        let body = json!([
            {"id": "e-1", "topic": TOPIC, "subject": "orders/1", "eventType": "Shop.OrderPlaced",
             "eventTime": "2026-12-01T20:00:00Z", "data": {"order_id": "ord_1"}, "dataVersion": "1", "metadataVersion": "1"},
            {"id": "e-2", "topic": TOPIC, "eventType": "Shop.OrderPlaced", "data": {"order_id": "ord_2"}},
        ]);
        let events = split_delivery(&delivery("s", body.to_string())).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(
            message(&events[0]),
            (TOPIC.to_owned(), "e-1".to_owned(), Some(2))
        );
        assert_eq!(events[0].body().as_ref(), br#"{"order_id":"ord_1"}"#);
        assert_eq!(events[0].headers()["content-type"], "application/json");
        assert_eq!(events[0].uri(), "/api/orders-events");
        let ev = events[0].extensions().get::<Event>().unwrap();
        assert_eq!(
            (ev.event_type.as_str(), ev.subject.as_deref()),
            ("Shop.OrderPlaced", Some("orders/1"))
        );
        assert_eq!(message(&events[1]).1, "e-2");

        // CloudEvents: one structured event, or base64 data with its declared type.
        let one = json!({"specversion": "1.0", "id": "c-1", "source": TOPIC, "type": "Shop.OrderPlaced",
                         "datacontenttype": "application/json", "data": {"order_id": "ord_3"}});
        let events = split_delivery(&delivery("s", one.to_string())).unwrap();
        assert_eq!(
            message(&events[0]),
            (TOPIC.to_owned(), "c-1".to_owned(), Some(2))
        );
        assert_eq!(events[0].body().as_ref(), br#"{"order_id":"ord_3"}"#);
        let b64 = json!([{"specversion": "1.0", "id": "c-2", "source": TOPIC, "type": "t",
                          "datacontenttype": "text/plain", "data_base64": "aGVsbG8="}]);
        let events = split_delivery(&delivery("s", b64.to_string())).unwrap();
        assert_eq!(events[0].body().as_ref(), b"hello");
        assert_eq!(events[0].headers()["content-type"], "text/plain");
    }

    #[test]
    fn a_malformed_event_fails_alone_and_a_malformed_delivery_is_refused_whole() {
        let body = json!([
            {"id": "e-1", "topic": TOPIC, "eventType": "t", "data": {}},
            {"topic": TOPIC, "eventType": "t", "data": {}},
            {"specversion": "1.0", "id": "c-1", "source": TOPIC, "type": "t", "data": 1, "data_base64": "AA=="},
            "not an event",
        ]);
        let events = split_delivery(&delivery("s", body.to_string())).unwrap();
        let refused: Vec<bool> = events
            .iter()
            .map(|e| e.extensions().get::<AdapterRefusal>().is_some())
            .collect();
        assert_eq!(refused, [false, true, true, true]);
        assert_eq!(
            message(&events[2]),
            (TOPIC.to_owned(), "c-1".to_owned(), Some(2))
        );
        for bad in ["", "{not json", "[]", "42"] {
            let e = split_delivery(&delivery("s", bad.to_owned())).unwrap_err();
            assert_eq!(e.kind(), RejectionKind::MalformedEvent, "{bad}");
        }
        let many =
            vec![json!({"id": "e", "topic": TOPIC, "eventType": "t"}); MAX_EVENTS_PER_DELIVERY + 1];
        assert!(split_delivery(&delivery("s", json!(many).to_string())).is_err());
    }

    #[tokio::test]
    async fn a_delivery_is_acked_only_when_every_event_was_accepted() {
        use guard_core::Rejection;
        use guard_core::message::BatchOrder;
        // Each event's body names the answer the stack gives it.
        let stack = tower::service_fn(|req: GuardRequest| async move {
            let kind = match req.body().as_ref() {
                b"\"forbidden\"" => Some(RejectionKind::ForbiddenSource),
                b"\"schema\"" => Some(RejectionKind::SchemaViolation),
                b"\"limited\"" => Some(RejectionKind::RateLimited),
                _ => None,
            };
            Ok::<_, std::convert::Infallible>(match kind {
                Some(k) => Rejection::new(k).into_response(),
                None => GuardResponse::new(Bytes::new()),
            })
        });
        let answer = |data: &[&str]| {
            let body: Vec<Value> = data
                .iter()
                .enumerate()
                .map(|(i, d)| json!({"id": format!("e-{i}"), "topic": TOPIC, "eventType": "t", "data": d}))
                .collect();
            let events = split_delivery(&delivery("s", json!(body).to_string())).unwrap();
            async move {
                let at_once = std::num::NonZeroUsize::new(4).unwrap();
                let results = BatchOrder::Concurrent(at_once).run(stack, events).await;
                delivery_answer(results).unwrap().status().as_u16()
            }
        };
        assert_eq!(answer(&["ok", "ok"]).await, 200);
        // Permanent refusals only: the first one (Event Grid dead-letters, no retry).
        assert_eq!(answer(&["ok", "forbidden", "schema"]).await, 403);
        assert_eq!(answer(&["schema", "forbidden"]).await, 400);
        // A failure a retry may cure wins: Event Grid redelivers.
        assert_eq!(answer(&["forbidden", "ok", "limited"]).await, 429);
    }

    #[test]
    fn ordinary_requests_are_not_handshakes() {
        let eg = EventGrid::new().subscription("s");
        let req = http::Request::post("/api/orders")
            .body(Bytes::new())
            .unwrap();
        assert_eq!(eg.classify(&req), Handshake::None);
    }
}
