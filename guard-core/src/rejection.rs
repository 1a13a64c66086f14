//! [`Rejection`]: how every layer says no.
//!
//! A refusal is a response, not an error: layers return `Ok(rejection.into_response())`, so the inner
//! service's error type never changes. The body is RFC 9457 `application/problem+json` with
//! `{type, title, status, code}` and never carries the rejected value, secrets or internals. The full
//! story goes to the security event through the rendered response, which carries the `Rejection`
//! itself as an extension (no headers or details).
//!
//! ```
//! use guard_core::{Rejection, RejectionKind};
//!
//! let r = Rejection::new(RejectionKind::TooLarge);
//! assert_eq!(r.code(), "guard.ingress.too_large");
//! let resp = r.into_response();
//! assert_eq!(resp.status(), 413);
//! assert_eq!(resp.headers()["content-type"], "application/problem+json");
//! ```

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use serde::Serialize;

use crate::request::GuardResponse;

/// Declares [`RejectionKind`] and, for the tests, the list of every kind (so a new kind cannot be
/// left out of the uniqueness check).
macro_rules! rejection_kinds {
    ($($(#[$doc:meta])* $kind:ident,)*) => {
        /// Every reason Guard can refuse a request. Each has a stable [`code`](Self::code) and status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum RejectionKind {
            $($(#[$doc])* $kind,)*
        }

        #[cfg(test)]
        impl RejectionKind {
            /// Every kind, in declaration order.
            const ALL: &[RejectionKind] = &[$(RejectionKind::$kind),*];
        }
    };
}

rejection_kinds! {
    /// Body larger than the limit (413).
    TooLarge,
    /// Request header section larger than the limit, or too many header fields (431): refused by
    /// the HTTP server before any layer runs, or by an adapter through
    /// [`HeaderLimits`](crate::request::HeaderLimits).
    HeadersTooLarge,
    /// The client did not send its headers or body within the time allowed (408; refused by the
    /// HTTP server).
    RequestTimeout,
    /// JSON nested deeper than the limit (400).
    TooDeep,
    /// Body is not well-formed JSON, has duplicate keys or out-of-range numbers (400; found by the
    /// validate layer's strict parse).
    MalformedJson,
    /// Content type not on the allow-list (415).
    UnsupportedMediaType,
    /// Method not on the allow-list (405).
    MethodNotAllowed,
    /// Body does not match the JSON Schema (400).
    SchemaViolation,
    /// Typed validation failed (400, or 422 when configured; see [`Rejection::with_status`]).
    InvalidInput,
    /// No credentials where credentials are required (401).
    MissingCredentials,
    /// A signature did not verify (401).
    BadSignature,
    /// A signed timestamp outside the tolerance window (401).
    StaleSignature,
    /// A signature that was already used (401).
    Replayed,
    /// A bearer token that did not verify (401).
    BadToken,
    /// Authenticated, but not allowed (403).
    Forbidden,
    /// The caller's address is not on the allow-list (403).
    ForbiddenAddress,
    /// The message source is not on the allow-list (403).
    ForbiddenSource,
    /// Verified, but no authorization rule allows this principal this request (403, layer
    /// `authz`; the security event names the rule that decided, never the claims).
    AuthzForbidden,
    /// Too many requests (429).
    RateLimited,
    /// The shared rate-limit backend is down and the policy fails closed (503).
    RateBackendUnavailable,
    /// A required secret cannot be had (503).
    SecretsUnavailable,
    /// A verification dependency (JWKS, certificates) cannot be reached and nothing is cached (503).
    VerifyUnavailable,
    /// Something inside Guard failed; details only in the security event (500).
    Internal,
    /// The adapter could not turn the platform's event (or one record of it) into a request:
    /// a malformed envelope, invalid base64, an invalid method, a record of the wrong source
    /// (400, layer `adapter`; see [`AdapterRefusal`](crate::request::AdapterRefusal)).
    MalformedEvent,
}

impl RejectionKind {
    /// The stable machine-readable code, e.g. `guard.ingress.too_large`.
    ///
    /// ```
    /// assert_eq!(guard_core::RejectionKind::RateLimited.code(), "guard.rate.limited");
    /// ```
    pub const fn code(self) -> &'static str {
        use RejectionKind::*;
        match self {
            TooLarge => "guard.ingress.too_large",
            HeadersTooLarge => "guard.ingress.headers_too_large",
            RequestTimeout => "guard.ingress.timeout",
            TooDeep => "guard.ingress.too_deep",
            MalformedJson => "guard.validate.malformed_json",
            UnsupportedMediaType => "guard.ingress.unsupported_media_type",
            MethodNotAllowed => "guard.ingress.method_not_allowed",
            SchemaViolation => "guard.validate.schema",
            InvalidInput => "guard.validate.invalid",
            MissingCredentials => "guard.verify.missing_credentials",
            BadSignature => "guard.verify.bad_signature",
            StaleSignature => "guard.verify.stale",
            Replayed => "guard.verify.replayed",
            BadToken => "guard.verify.bad_token",
            Forbidden => "guard.verify.forbidden",
            ForbiddenAddress => "guard.verify.forbidden_address",
            ForbiddenSource => "guard.verify.forbidden_source",
            AuthzForbidden => "guard.authz.forbidden",
            RateLimited => "guard.rate.limited",
            RateBackendUnavailable => "guard.rate.backend_unavailable",
            SecretsUnavailable => "guard.secrets.unavailable",
            VerifyUnavailable => "guard.verify.unavailable",
            Internal => "guard.internal",
            MalformedEvent => "guard.adapter.malformed_event",
        }
    }

    /// The default HTTP status.
    ///
    /// ```
    /// assert_eq!(guard_core::RejectionKind::BadToken.status(), 401);
    /// ```
    pub const fn status(self) -> StatusCode {
        use RejectionKind::*;
        match self {
            TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            TooDeep | MalformedJson | SchemaViolation | InvalidInput | MalformedEvent => {
                StatusCode::BAD_REQUEST
            }
            HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            MissingCredentials | BadSignature | StaleSignature | Replayed | BadToken => {
                StatusCode::UNAUTHORIZED
            }
            Forbidden | ForbiddenAddress | ForbiddenSource | AuthzForbidden => {
                StatusCode::FORBIDDEN
            }
            RateLimited => StatusCode::TOO_MANY_REQUESTS,
            RateBackendUnavailable | SecretsUnavailable | VerifyUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short human title that reveals nothing about the request.
    ///
    /// ```
    /// assert_eq!(guard_core::RejectionKind::TooLarge.title(), "Request body too large");
    /// ```
    pub const fn title(self) -> &'static str {
        use RejectionKind::*;
        match self {
            TooLarge => "Request body too large",
            HeadersTooLarge => "Request header fields too large",
            RequestTimeout => "Request timeout",
            TooDeep => "Request body nested too deeply",
            MalformedJson => "Request body is not acceptable JSON",
            UnsupportedMediaType => "Unsupported media type",
            MethodNotAllowed => "Method not allowed",
            SchemaViolation => "Request body does not match the schema",
            InvalidInput => "Request body is invalid",
            MissingCredentials => "Authentication required",
            BadSignature => "Signature verification failed",
            StaleSignature => "Signature timestamp outside the allowed window",
            Replayed => "Request already seen",
            BadToken => "Token verification failed",
            Forbidden => "Forbidden",
            ForbiddenAddress => "Forbidden",
            ForbiddenSource => "Forbidden",
            AuthzForbidden => "Forbidden",
            RateLimited => "Too many requests",
            RateBackendUnavailable => "Service unavailable",
            SecretsUnavailable => "Service unavailable",
            VerifyUnavailable => "Service unavailable",
            Internal => "Internal error",
            MalformedEvent => "Malformed event",
        }
    }

    /// The layer family that uses this kind (`ingress`, `validate`, `verify`, `rate_limit`,
    /// `secrets`, or `adapter` for an event the adapter could not decode).
    ///
    /// ```
    /// assert_eq!(guard_core::RejectionKind::TooDeep.layer(), "ingress");
    /// ```
    pub const fn layer(self) -> &'static str {
        use RejectionKind::*;
        match self {
            TooLarge | HeadersTooLarge | RequestTimeout | TooDeep | UnsupportedMediaType
            | MethodNotAllowed => "ingress",
            MalformedJson | SchemaViolation | InvalidInput => "validate",
            MissingCredentials | BadSignature | StaleSignature | Replayed | BadToken
            | Forbidden | ForbiddenAddress | ForbiddenSource | VerifyUnavailable => "verify",
            AuthzForbidden => "authz",
            RateLimited | RateBackendUnavailable => "rate_limit",
            SecretsUnavailable => "secrets",
            Internal => "guard",
            MalformedEvent => "adapter",
        }
    }

    /// Whether a retry could succeed (429 / 5xx): messages rejected for this reason are redelivered.
    ///
    /// ```
    /// assert!(guard_core::RejectionKind::RateLimited.is_transient());
    /// assert!(!guard_core::RejectionKind::BadSignature.is_transient());
    /// ```
    pub const fn is_transient(self) -> bool {
        matches!(
            self,
            RejectionKind::RateLimited
                | RejectionKind::RateBackendUnavailable
                | RejectionKind::SecretsUnavailable
                | RejectionKind::VerifyUnavailable
                | RejectionKind::Internal
        )
    }
}

/// One validation failure, without the value that failed: a JSON pointer and the schema keyword.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ValidationDetail {
    /// JSON pointer into the request body (`/items/0/qty`).
    pub pointer: String,
    /// The schema keyword or validator rule that failed (`maximum`, `email`).
    pub keyword: String,
}

/// A refusal. Build it, then render it with [`into_response`](Self::into_response).
#[derive(Clone)]
#[non_exhaustive]
pub struct Rejection {
    kind: RejectionKind,
    status: StatusCode,
    details: Vec<ValidationDetail>,
    headers: Vec<(HeaderName, HeaderValue)>,
    reason: Option<Cow<'static, str>>,
}

impl fmt::Debug for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejection")
            .field("code", &self.kind.code())
            .field("status", &self.status.as_u16())
            .field("details", &self.details.len())
            .finish()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.kind.code(), self.status.as_u16())
    }
}

impl std::error::Error for Rejection {}

impl From<RejectionKind> for Rejection {
    fn from(kind: RejectionKind) -> Self {
        Rejection::new(kind)
    }
}

impl Rejection {
    /// A rejection of `kind` with its default status.
    ///
    /// ```
    /// let r = guard_core::Rejection::new(guard_core::RejectionKind::Forbidden);
    /// assert_eq!(r.status(), 403);
    /// ```
    pub fn new(kind: RejectionKind) -> Self {
        Self {
            kind,
            status: kind.status(),
            details: Vec::new(),
            headers: Vec::new(),
            reason: None,
        }
    }

    /// The kind.
    ///
    /// ```
    /// use guard_core::{Rejection, RejectionKind};
    /// assert_eq!(Rejection::new(RejectionKind::Replayed).kind(), RejectionKind::Replayed);
    /// ```
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The stable code.
    ///
    /// ```
    /// use guard_core::{Rejection, RejectionKind};
    /// assert_eq!(Rejection::new(RejectionKind::Replayed).code(), "guard.verify.replayed");
    /// ```
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// The HTTP status.
    ///
    /// ```
    /// use guard_core::{Rejection, RejectionKind};
    /// assert_eq!(Rejection::new(RejectionKind::InvalidInput).status(), 400);
    /// ```
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Overrides the status (e.g. 422 for typed validation when configured).
    ///
    /// ```
    /// use guard_core::{Rejection, RejectionKind};
    /// let r = Rejection::new(RejectionKind::InvalidInput).with_status(http::StatusCode::UNPROCESSABLE_ENTITY);
    /// assert_eq!(r.status(), 422);
    /// ```
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Attaches validation details (pointer + keyword, never values). Rendered only when the
    /// layer was told to expose them.
    ///
    /// ```
    /// use guard_core::{Rejection, RejectionKind, ValidationDetail};
    /// let d = ValidationDetail { pointer: "/qty".into(), keyword: "maximum".into() };
    /// let r = Rejection::new(RejectionKind::SchemaViolation).with_details(vec![d]);
    /// assert_eq!(r.details().len(), 1);
    /// ```
    pub fn with_details(mut self, details: Vec<ValidationDetail>) -> Self {
        self.details = details;
        self
    }

    /// The validation details.
    ///
    /// ```
    /// use guard_core::{Rejection, RejectionKind};
    /// assert!(Rejection::new(RejectionKind::SchemaViolation).details().is_empty());
    /// ```
    pub fn details(&self) -> &[ValidationDetail] {
        &self.details
    }

    /// Adds a response header (e.g. `Retry-After`).
    ///
    /// ```
    /// use guard_core::{Rejection, RejectionKind};
    /// let r = Rejection::new(RejectionKind::RateLimited)
    ///     .with_header(http::header::RETRY_AFTER, http::HeaderValue::from_static("2"));
    /// assert_eq!(r.into_response().headers()["retry-after"], "2");
    /// ```
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// An internal reason for the security event only (never sent to the client). Must not contain
    /// secrets or request values.
    ///
    /// ```
    /// use guard_core::{Rejection, RejectionKind};
    /// let r = Rejection::new(RejectionKind::BadToken).with_reason("token expired");
    /// assert_eq!(r.reason(), Some("token expired"));
    /// ```
    pub fn with_reason(mut self, reason: impl Into<Cow<'static, str>>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// The internal reason, if any.
    ///
    /// ```
    /// use guard_core::{Rejection, RejectionKind};
    /// assert_eq!(Rejection::new(RejectionKind::BadToken).reason(), None);
    /// ```
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// Renders the problem document without validation details.
    ///
    /// ```
    /// use guard_core::{Rejection, RejectionKind};
    /// let resp = Rejection::new(RejectionKind::MethodNotAllowed).into_response();
    /// let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
    /// assert_eq!(body["code"], "guard.ingress.method_not_allowed");
    /// assert_eq!(body["status"], 405);
    /// ```
    pub fn into_response(self) -> GuardResponse {
        self.render(false)
    }

    /// The stable code of a failed answer: the rejection code when Guard refused
    /// (`guard.verify.forbidden_source`), else `guard.handler.<status>` (the handler itself said
    /// no). What an adapter reports for a failed message or invocation.
    ///
    /// ```
    /// use guard_core::{GuardResponse, Rejection, RejectionKind};
    /// let refused = Rejection::new(RejectionKind::ForbiddenSource).into_response();
    /// assert_eq!(Rejection::failure_code(&refused), "guard.verify.forbidden_source");
    /// let mut conflict = GuardResponse::new(bytes::Bytes::new());
    /// *conflict.status_mut() = http::StatusCode::CONFLICT;
    /// assert_eq!(Rejection::failure_code(&conflict), "guard.handler.409");
    /// ```
    pub fn failure_code(response: &GuardResponse) -> Cow<'static, str> {
        match response.extensions().get::<Rejection>() {
            Some(d) => Cow::Borrowed(d.kind.code()),
            None => Cow::Owned(format!("guard.handler.{}", response.status().as_u16())),
        }
    }

    /// Renders the problem document, with validation details when `expose_details` is true.
    ///
    /// ```
    /// use guard_core::{Rejection, RejectionKind, ValidationDetail};
    /// let d = ValidationDetail { pointer: "/qty".into(), keyword: "maximum".into() };
    /// let resp = Rejection::new(RejectionKind::SchemaViolation).with_details(vec![d]).render(true);
    /// let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
    /// assert_eq!(body["errors"][0]["keyword"], "maximum");
    /// ```
    pub fn render(self, expose_details: bool) -> GuardResponse {
        #[derive(Serialize)]
        struct Problem<'a> {
            #[serde(rename = "type")]
            type_: String,
            title: &'static str,
            status: u16,
            code: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            errors: Option<&'a [ValidationDetail]>,
        }
        let code = self.kind.code();
        let problem = Problem {
            type_: format!("urn:guard:problem:{code}"),
            title: self.kind.title(),
            status: self.status.as_u16(),
            code,
            errors: (expose_details && !self.details.is_empty()).then_some(&self.details[..]),
        };
        // Serializing a struct of strings and integers cannot fail; fall back to a fixed body anyway.
        let body = serde_json::to_vec(&problem)
            .unwrap_or_else(|_| br#"{"type":"urn:guard:problem:guard.internal","title":"Internal error","status":500,"code":"guard.internal"}"#.to_vec());
        let mut resp = http::Response::new(Bytes::from(body));
        *resp.status_mut() = self.status;
        let headers = resp.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        // What refused, for the audit layer and the adapters; never sent to the client.
        resp.extensions_mut().insert(Rejection {
            details: Vec::new(),
            headers: Vec::new(),
            ..self
        });
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_body_has_exactly_the_documented_fields() {
        let resp = Rejection::new(RejectionKind::BadSignature)
            .with_reason("hmac mismatch")
            .into_response();
        let body: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(resp.body()).unwrap();
        let mut keys: Vec<_> = body.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["code", "status", "title", "type"]);
        assert!(!String::from_utf8_lossy(resp.body()).contains("hmac mismatch"));
        assert_eq!(
            resp.extensions().get::<Rejection>().unwrap().kind(),
            RejectionKind::BadSignature
        );
    }

    #[test]
    fn details_are_hidden_unless_exposed() {
        let d = ValidationDetail {
            pointer: "/a".into(),
            keyword: "type".into(),
        };
        let r = Rejection::new(RejectionKind::SchemaViolation).with_details(vec![d]);
        let hidden = r.clone().render(false);
        assert!(!String::from_utf8_lossy(hidden.body()).contains("errors"));
        let shown = r.render(true);
        assert!(String::from_utf8_lossy(shown.body()).contains("\"pointer\":\"/a\""));
    }

    #[test]
    fn every_code_is_unique_and_namespaced() {
        let all = RejectionKind::ALL;
        let codes: std::collections::HashSet<_> = all.iter().map(|k| k.code()).collect();
        assert_eq!(codes.len(), all.len());
        assert!(codes.iter().all(|c| c.starts_with("guard.")));
    }
}
