//! [`Record`]: what the audit layer copies from a request, turned into a [`SecurityEvent`] where
//! the sink wants it (on the JSON-lines writer thread, or on the spot for other sinks).

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use super::event::{ALLOW_CODE, DECISION_EVENT, Outcome, SecurityEvent, sanitize};
use crate::Rejection;
use crate::request::{Cloud, PrincipalKind, Subject};

/// The raw material of one [`SecurityEvent`]: copied from the request without formatting or
/// sanitizing, so that a [`JsonLinesSink`](super::JsonLinesSink) can build the event on its writer thread
/// ([`Record::into_event`]); other sinks get the event built on the spot.
pub(super) struct Record {
    pub(super) max: usize,
    pub(super) cloud: Cloud,
    pub(super) function: Option<Arc<str>>,
    pub(super) request_id: Option<String>,
    pub(super) trace_id: Option<String>,
    pub(super) trigger: Cow<'static, str>,
    pub(super) source_id: Option<String>,
    pub(super) peer: Option<IpAddr>,
    /// The HTTP method of an HTTP trigger (for OCSF's `http_request`).
    #[cfg_attr(not(feature = "ocsf"), allow(dead_code))]
    pub(super) method: Option<http::Method>,
    pub(super) status: u16,
    pub(super) denial: Option<Rejection>,
    pub(super) principal: Option<(PrincipalKind, Subject)>,
    pub(super) latency_us: u64,
}

impl Record {
    /// The event, with every user-controlled string capped and stripped of control characters.
    pub(super) fn into_event(self) -> SecurityEvent {
        let max = self.max;
        let cap = |s: &str| sanitize(s, max);
        let (outcome, code, layer, reason) = match &self.denial {
            Some(d) => (
                Outcome::Deny,
                d.kind().code().to_string(),
                d.kind().layer().to_string(),
                d.reason().map(cap),
            ),
            None => (
                Outcome::Allow,
                ALLOW_CODE.to_string(),
                "handler".to_string(),
                None,
            ),
        };
        SecurityEvent {
            event: DECISION_EVENT.to_string(),
            outcome,
            code,
            status: self.status,
            layer,
            reason,
            cloud: self.cloud.as_str().to_string(),
            function: self.function.as_deref().map(cap),
            request_id: self.request_id.as_deref().map(cap),
            trace_id: self.trace_id.as_deref().map(cap),
            trigger: cap(&self.trigger),
            source_id: self.source_id.as_deref().map(cap),
            peer: self.peer.map(|ip| ip.to_string()),
            principal: self
                .principal
                .map(|(kind, subject)| cap(&format!("{}:{subject}", kind.as_str()))),
            latency_us: self.latency_us,
        }
    }
}
