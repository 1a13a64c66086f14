//! [`AdapterRefusal`]: an event, or one record of it, that the adapter refused while decoding.

use bytes::Bytes;

use super::GuardRequest;
use crate::{Rejection, RejectionKind};

/// Marks a stand-in request for an event (or one record) the adapter could not turn into a
/// request: a malformed envelope, invalid base64, an invalid method, a record from another
/// source, too many headers.
///
/// The adapter sends the stand-in through the stack like any request, with what it could read
/// (`Trigger` with the record's message id, `Invocation`, `Peer`) and an empty body. The
/// `AuditLayer` answers it with [`rejection`](Self::rejection) without calling the inner service
/// and records the decision, so the adapter's own refusals take the same path as every other:
/// exactly one security event, a problem+json answer, the handler not called, and for a record,
/// a failure that names only that record. (`IngressLayer` refuses a marked request too, for a
/// stack composed without an audit layer; a stack with neither would hand it on.)
///
/// ```
/// use guard_core::request::AdapterRefusal;
///
/// let req = AdapterRefusal::malformed("body is not valid base64").into_request();
/// let refusal = req.extensions().get::<AdapterRefusal>().unwrap();
/// let resp = refusal.rejection().into_response();
/// assert_eq!(resp.status(), 400);
/// assert!(req.body().is_empty());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdapterRefusal {
    kind: RejectionKind,
    reason: &'static str,
}

impl AdapterRefusal {
    /// A refusal of `kind`; `reason` goes to the security event only (never request values).
    ///
    /// ```
    /// use guard_core::{RejectionKind, request::AdapterRefusal};
    /// let r = AdapterRefusal::new(RejectionKind::HeadersTooLarge, "too many header fields");
    /// assert_eq!(r.rejection().status(), 431);
    /// ```
    pub const fn new(kind: RejectionKind, reason: &'static str) -> Self {
        Self { kind, reason }
    }

    /// A malformed event: [`RejectionKind::MalformedEvent`] (400,
    /// `guard.adapter.malformed_event`).
    ///
    /// ```
    /// let r = guard_core::request::AdapterRefusal::malformed("record without messageId");
    /// assert_eq!(r.rejection().code(), "guard.adapter.malformed_event");
    /// ```
    pub const fn malformed(reason: &'static str) -> Self {
        Self::new(RejectionKind::MalformedEvent, reason)
    }

    /// The kind of refusal.
    ///
    /// ```
    /// use guard_core::{RejectionKind, request::AdapterRefusal};
    /// assert_eq!(AdapterRefusal::malformed("x").kind(), RejectionKind::MalformedEvent);
    /// ```
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// What was wrong, for the security event.
    ///
    /// ```
    /// assert_eq!(guard_core::request::AdapterRefusal::malformed("no id").reason(), "no id");
    /// ```
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// The rejection that answers the stand-in request.
    ///
    /// ```
    /// let r = guard_core::request::AdapterRefusal::malformed("no id").rejection();
    /// assert_eq!(r.reason(), Some("no id"));
    /// ```
    pub fn rejection(&self) -> Rejection {
        Rejection::new(self.kind).with_reason(self.reason)
    }

    /// A stand-in request carrying this refusal: `POST /`, no headers, an empty body. The
    /// adapter adds the `Trigger`, `Invocation` and `Peer` it could read.
    ///
    /// ```
    /// let req = guard_core::request::AdapterRefusal::malformed("x").into_request();
    /// assert_eq!(req.method(), http::Method::POST);
    /// ```
    pub fn into_request(self) -> GuardRequest {
        let mut req = GuardRequest::new(Bytes::new());
        *req.method_mut() = http::Method::POST;
        req.extensions_mut().insert(self);
        req
    }
}
