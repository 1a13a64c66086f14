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

use bytes::Bytes;
use guard_core::request::GuardRequest;
use guard_core::{GuardResponse, RejectionKind};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{Value, json};

/// The event type of Event Grid's subscription validation.
pub const VALIDATION_EVENT: &str = "Microsoft.EventGrid.SubscriptionValidationEvent";

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
        if !header(headers, "aeg-event-type")
            .is_some_and(|t| t.eq_ignore_ascii_case("SubscriptionValidation"))
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

    #[test]
    fn ordinary_requests_are_not_handshakes() {
        let eg = EventGrid::new().subscription("s");
        let req = http::Request::post("/api/orders")
            .body(Bytes::new())
            .unwrap();
        assert_eq!(eg.classify(&req), Handshake::None);
    }
}
