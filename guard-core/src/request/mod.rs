//! The neutral request model: `http::Request<Bytes>` in, `http::Response<Bytes>` out, and the typed
//! extensions adapters attach to say what the platform observed.
//!
//! Adapters set [`Trigger`], [`Peer`] and [`Invocation`]; the verification layer sets [`Principal`]
//! (whose [`Subject`] is a name, or the address for network principals). Adapters whose platform
//! reports the caller only in `X-Forwarded-For` resolve the [`Peer`] through [`TrustedProxies`].
//!
//! ```
//! use bytes::Bytes;
//! use guard_core::request::{Peer, Trigger};
//!
//! let mut req = http::Request::new(Bytes::from_static(b"{}"));
//! req.extensions_mut().insert(Trigger::Http);
//! req.extensions_mut().insert(Peer::new("203.0.113.7".parse().unwrap()));
//! assert_eq!(req.extensions().get::<Peer>().unwrap().ip().to_string(), "203.0.113.7");
//! ```

pub mod body;
mod grants;
mod headers;
mod refusal;
mod trace;

pub use headers::{HeaderBuilder, HeaderLimits};
pub use refusal::AdapterRefusal;
pub(crate) use trace::TraceContext;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

mod peer;
#[cfg(feature = "verify")]
pub(crate) use peer::ForwardedError;
pub use peer::TrustedProxies;

pub(crate) use crate::{GuardRequest, GuardResponse};

/// What kind of event reached the function.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Trigger {
    /// An HTTP request (API Gateway, Function URL, ALB, Azure HTTP trigger, Cloud Run...).
    #[default]
    Http,
    /// One message from a queue, topic, stream or event bus.
    Message(MessageTrigger),
    /// A direct invocation with an arbitrary payload (no envelope the platform vouches for).
    Direct,
}

impl Trigger {
    /// A short stable name for logs: `http`, `direct`, or the message kind (`sqs`, `sns`, ...).
    ///
    /// ```
    /// assert_eq!(guard_core::request::Trigger::Http.name(), "http");
    /// ```
    pub fn name(&self) -> &str {
        match self {
            Trigger::Http => "http",
            Trigger::Message(m) => &m.kind,
            Trigger::Direct => "direct",
        }
    }

    /// The platform-reported source of a message (ARN, topic, subscription), if any.
    ///
    /// ```
    /// assert_eq!(guard_core::request::Trigger::Http.source_id(), None);
    /// ```
    pub fn source_id(&self) -> Option<&str> {
        match self {
            Trigger::Message(m) => Some(&m.source_id),
            _ => None,
        }
    }
}

/// One message delivered by a platform (SQS record, Pub/Sub push, Event Grid event...).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MessageTrigger {
    /// `sqs`, `sns`, `eventbridge`, `s3`, `dynamodb`, `kinesis`, `pubsub`, `eventgrid`, `azure-queue`, ...
    pub kind: String,
    /// The ARN / topic / subscription the platform says the message came from.
    pub source_id: String,
    /// The platform's message identifier (used for partial batch failures).
    pub message_id: String,
    /// Delivery attempt, when the platform reports it (1 = first delivery).
    pub attempt: Option<u32>,
}

impl MessageTrigger {
    /// A message trigger of `kind` from `source_id` with `message_id`.
    ///
    /// ```
    /// let m = guard_core::request::MessageTrigger::new("sqs", "arn:aws:sqs:us-east-1:1:q", "m-1");
    /// assert_eq!(m.kind, "sqs");
    /// ```
    pub fn new(
        kind: impl Into<String>,
        source_id: impl Into<String>,
        message_id: impl Into<String>,
    ) -> Self {
        Self {
            kind: kind.into(),
            source_id: source_id.into(),
            message_id: message_id.into(),
            attempt: None,
        }
    }
}

/// The client address the *platform* observed. Never the left-most `X-Forwarded-For` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer(IpAddr);

impl Peer {
    /// Wraps an address observed by the platform.
    ///
    /// ```
    /// let p = guard_core::request::Peer::new("::1".parse().unwrap());
    /// assert!(p.ip().is_loopback());
    /// ```
    pub fn new(ip: IpAddr) -> Self {
        Peer(ip)
    }

    /// The address.
    ///
    /// ```
    /// let p = guard_core::request::Peer::new("10.0.0.1".parse().unwrap());
    /// assert_eq!(p.ip().to_string(), "10.0.0.1");
    /// ```
    pub fn ip(&self) -> IpAddr {
        self.0
    }
}

/// Which cloud runs the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Cloud {
    /// AWS Lambda.
    Aws,
    /// Azure Functions.
    Azure,
    /// Google Cloud Functions gen2 / Cloud Run.
    Gcp,
    /// Running locally or in tests.
    #[default]
    Local,
}

impl Cloud {
    /// The stable lower-case name used in security events.
    ///
    /// ```
    /// assert_eq!(guard_core::request::Cloud::Aws.as_str(), "aws");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Aws => "aws",
            Cloud::Azure => "azure",
            Cloud::Gcp => "gcp",
            Cloud::Local => "local",
        }
    }
}

/// Facts about this invocation from the platform.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Invocation {
    /// The cloud running the function.
    pub cloud: Cloud,
    /// Region (e.g. `us-east-1`), if known.
    pub region: Option<String>,
    /// Account / subscription / project.
    pub account: Option<String>,
    /// The function name.
    pub function: Option<String>,
    /// The function's full identifier (ARN, resource id).
    pub function_id: Option<String>,
    /// The platform's request id.
    pub request_id: Option<String>,
    /// When the platform will stop waiting for the function.
    pub deadline: Option<SystemTime>,
    /// Trace id (W3C trace id, X-Ray root, or Cloud Trace id; see
    /// [`trace_from_headers`](Self::trace_from_headers)).
    pub trace_id: Option<String>,
    /// The caller's span within that trace (16 lower-case hex), when the platform said.
    pub parent_span_id: Option<String>,
}

impl Invocation {
    /// An invocation on `cloud` with everything else unknown.
    ///
    /// ```
    /// use guard_core::request::{Cloud, Invocation};
    /// let mut inv = Invocation::new(Cloud::Aws);
    /// inv.request_id = Some("abc".into());
    /// assert_eq!(inv.cloud, Cloud::Aws);
    /// ```
    pub fn new(cloud: Cloud) -> Self {
        Self {
            cloud,
            ..Self::default()
        }
    }
}

/// How a principal was authenticated.
///
/// The names of [`Platform`](Self::Platform) and [`Custom`](Self::Custom) kinds are
/// `Cow<'static, str>`: a name known at compile time (`"aws-iam"`) costs nothing to build or
/// clone; `String`s are accepted too (`PrincipalKind::Custom(name.into())`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PrincipalKind {
    /// An OIDC / JWT bearer token.
    Jwt,
    /// A webhook HMAC signature (the subject is the key name).
    Hmac,
    /// The caller's network address was on an allow-list (the subject is the address).
    Network,
    /// A platform-verified identity (API Gateway IAM / Cognito / authorizer, Azure Easy Auth, GCP push).
    Platform(Cow<'static, str>),
    /// A message source on the allow-list.
    Source,
    /// A custom verifier, or an adapter's own check (guard-aws: `sns`, an SNS message signature).
    Custom(Cow<'static, str>),
}

impl PrincipalKind {
    /// Stable name for logs.
    ///
    /// ```
    /// use guard_core::request::PrincipalKind;
    /// assert_eq!(PrincipalKind::Jwt.as_str(), "jwt");
    /// assert_eq!(PrincipalKind::Custom("internal".into()).as_str(), "internal");
    /// ```
    pub fn as_str(&self) -> &str {
        match self {
            PrincipalKind::Jwt => "jwt",
            PrincipalKind::Hmac => "hmac",
            PrincipalKind::Network => "network",
            PrincipalKind::Platform(p) => p,
            PrincipalKind::Source => "source",
            PrincipalKind::Custom(c) => c,
        }
    }
}

/// Who a [`Principal`] is: a name (token `sub`, key name, ARN, e-mail...) or, for
/// [`PrincipalKind::Network`], the caller's address.
///
/// Cheap to build and to clone: an address is stored as an [`IpAddr`] (no text is made unless it
/// is displayed), a name is a shared `Arc<str>`. It displays as text, and compares with strings.
///
/// ```
/// use guard_core::request::Subject;
///
/// let addr = Subject::from("203.0.113.7".parse::<std::net::IpAddr>().unwrap());
/// assert_eq!(addr, "203.0.113.7");
/// assert_eq!(addr.to_string(), "203.0.113.7");
/// assert_eq!(addr.ip(), Some("203.0.113.7".parse().unwrap()));
///
/// let name = Subject::from("orders-webhook-hmac");
/// assert_eq!(name.as_name(), Some("orders-webhook-hmac"));
/// assert_eq!(name.ip(), None);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Subject(SubjectRepr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum SubjectRepr {
    Addr(IpAddr),
    Name(Arc<str>),
}

impl Subject {
    /// The address, for a subject that is one (network principals).
    ///
    /// ```
    /// let s = guard_core::request::Subject::from("10.0.0.1".parse::<std::net::IpAddr>().unwrap());
    /// assert!(s.ip().unwrap().is_ipv4());
    /// ```
    pub fn ip(&self) -> Option<IpAddr> {
        match &self.0 {
            SubjectRepr::Addr(ip) => Some(*ip),
            SubjectRepr::Name(_) => None,
        }
    }

    /// The name, for a subject that is one (every kind but network principals).
    ///
    /// ```
    /// assert_eq!(guard_core::request::Subject::from("user-1").as_name(), Some("user-1"));
    /// ```
    pub fn as_name(&self) -> Option<&str> {
        match &self.0 {
            SubjectRepr::Addr(_) => None,
            SubjectRepr::Name(n) => Some(n),
        }
    }

    /// The subject as text: borrowed for a name, formatted for an address.
    ///
    /// ```
    /// use guard_core::request::Subject;
    /// assert_eq!(Subject::from("user-1").to_text(), "user-1");
    /// assert_eq!(Subject::from("::1".parse::<std::net::IpAddr>().unwrap()).to_text(), "::1");
    /// ```
    pub fn to_text(&self) -> Cow<'_, str> {
        match &self.0 {
            SubjectRepr::Addr(ip) => Cow::Owned(ip.to_string()),
            SubjectRepr::Name(n) => Cow::Borrowed(n),
        }
    }

    /// Calls `f` with the subject as text, formatting an address on the stack (no allocation).
    pub(crate) fn with_text<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        match &self.0 {
            SubjectRepr::Name(n) => f(n),
            SubjectRepr::Addr(ip) => {
                use std::io::Write;
                // The longest address text (an IPv6 address with an embedded IPv4 one) is 45 bytes.
                let mut buf = [0u8; 64];
                let mut cursor = std::io::Cursor::new(&mut buf[..]);
                let _ = write!(cursor, "{ip}");
                let end = usize::try_from(cursor.position()).unwrap_or(0);
                f(std::str::from_utf8(&buf[..end]).unwrap_or_default())
            }
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            SubjectRepr::Addr(ip) => fmt::Display::fmt(ip, f),
            SubjectRepr::Name(n) => f.write_str(n),
        }
    }
}

/// Shown as the quoted subject text, like a `String`.
impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_text(|t| fmt::Debug::fmt(t, f))
    }
}

impl From<IpAddr> for Subject {
    fn from(ip: IpAddr) -> Self {
        Subject(SubjectRepr::Addr(ip))
    }
}

impl From<&str> for Subject {
    fn from(name: &str) -> Self {
        Subject(SubjectRepr::Name(Arc::from(name)))
    }
}

impl From<&String> for Subject {
    fn from(name: &String) -> Self {
        Subject::from(name.as_str())
    }
}

impl From<String> for Subject {
    fn from(name: String) -> Self {
        Subject(SubjectRepr::Name(Arc::from(name)))
    }
}

impl From<Arc<str>> for Subject {
    fn from(name: Arc<str>) -> Self {
        Subject(SubjectRepr::Name(name))
    }
}

impl PartialEq<str> for Subject {
    fn eq(&self, other: &str) -> bool {
        self.with_text(|t| t == other)
    }
}

impl PartialEq<&str> for Subject {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl PartialEq<String> for Subject {
    fn eq(&self, other: &String) -> bool {
        *self == **other
    }
}

impl PartialEq<Subject> for str {
    fn eq(&self, other: &Subject) -> bool {
        *other == *self
    }
}

impl PartialEq<Subject> for &str {
    fn eq(&self, other: &Subject) -> bool {
        *other == **self
    }
}

/// A verified identity, inserted into the request extensions by the verification layer (never
/// by anything else in Guard): handlers read it with `req.extensions().get::<Principal>()`.
///
/// ```
/// use guard_core::request::{Principal, PrincipalKind};
///
/// let p = Principal::new(PrincipalKind::Network, "203.0.113.7".parse::<std::net::IpAddr>().unwrap());
/// assert_eq!(format!("{}:{}", p.kind.as_str(), p.subject), "network:203.0.113.7");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Principal {
    /// How it was verified.
    pub kind: PrincipalKind,
    /// Who (token `sub`, key name, ARN, address...).
    pub subject: Subject,
    /// Who vouched for it (token `iss`, platform), if anyone.
    pub issuer: Option<String>,
    /// Verified claims (never secrets).
    pub claims: BTreeMap<String, serde_json::Value>,
}

impl Principal {
    /// A principal of `kind` for `subject` (a name, or an [`IpAddr`]) without issuer or claims.
    ///
    /// ```
    /// use guard_core::request::{Principal, PrincipalKind};
    /// let p = Principal::new(PrincipalKind::Hmac, "orders-webhook-hmac");
    /// assert_eq!(p.subject, "orders-webhook-hmac");
    /// ```
    pub fn new(kind: PrincipalKind, subject: impl Into<Subject>) -> Self {
        Self {
            kind,
            subject: subject.into(),
            issuer: None,
            claims: BTreeMap::new(),
        }
    }

    /// The same principal with an issuer.
    ///
    /// ```
    /// use guard_core::request::{Principal, PrincipalKind};
    /// let p = Principal::new(PrincipalKind::Jwt, "u1").with_issuer("https://issuer");
    /// assert_eq!(p.issuer.as_deref(), Some("https://issuer"));
    /// ```
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }
}

/// Where the verification layer tells the audit layer who was verified, without a copy of the
/// principal on the response.
///
/// The audit layer inserts an empty slot into each request it sees (a new one, or one it emptied
/// after nothing else held it any more; it replaces any slot the request already carried), so a
/// principal can never reach the event of another request; the
/// verification layer fills it only after its verifier accepted the request. The type is private
/// to the crate: neither a handler nor an inner layer can name it, so none can fill it.
#[derive(Clone, Default)]
#[cfg_attr(not(all(feature = "audit", feature = "verify")), allow(dead_code))]
pub(crate) struct VerifiedSlot(Arc<OnceLock<(PrincipalKind, Subject)>>);

#[cfg_attr(not(all(feature = "audit", feature = "verify")), allow(dead_code))]
impl VerifiedSlot {
    /// Records `p` (the first verified principal wins: the outermost verification layer's).
    pub(crate) fn fill(&self, p: &Principal) {
        let _ = self.0.set((p.kind.clone(), p.subject.clone()));
    }

    /// The recorded kind and subject, if verification succeeded.
    pub(crate) fn take(&mut self) -> Option<(PrincipalKind, Subject)> {
        match Arc::get_mut(&mut self.0) {
            Some(cell) => cell.take(),
            None => self.0.get().cloned(),
        }
    }

    /// Empties the slot for another request, when nothing else holds it any more (the request it
    /// was put on, and every copy of that request's extensions, are gone). `None` otherwise: a
    /// slot still reachable from an old request is never handed to a new one.
    pub(crate) fn reset(mut self) -> Option<Self> {
        let cell = Arc::get_mut(&mut self.0)?;
        cell.take();
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn subjects_compare_with_their_text() {
        let v4 = Subject::from(ip("203.0.113.7"));
        assert_eq!(v4, "203.0.113.7");
        assert_eq!("203.0.113.7", v4);
        assert_ne!(v4, "203.0.113.70");
        let v6 = Subject::from(ip("2001:db8::ffff:1.2.3.4"));
        assert_eq!(v6.to_string(), "2001:db8::ffff:102:304");
        assert_eq!(v6, "2001:db8::ffff:102:304");
        let longest = Subject::from(ip("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"));
        assert_eq!(longest, longest.to_string());
        let name = Subject::from(String::from("user-1"));
        assert_eq!(name, "user-1");
        assert_eq!(name, String::from("user-1"));
        assert_eq!(name.to_text(), "user-1");
    }

    #[test]
    fn an_address_and_a_name_are_different_subjects() {
        // A name that happens to read like an address is not the network principal's subject.
        assert_ne!(Subject::from(ip("10.0.0.1")), Subject::from("10.0.0.1"));
        assert_eq!(Subject::from("10.0.0.1").ip(), None);
    }

    #[test]
    fn debug_shows_the_subject_as_a_string() {
        let p = Principal::new(PrincipalKind::Network, ip("10.0.0.1"));
        assert!(format!("{p:?}").contains(r#"subject: "10.0.0.1""#));
    }

    #[test]
    fn the_audit_slot_keeps_the_first_principal_and_hands_it_over_once() {
        let mut slot = VerifiedSlot::default();
        assert_eq!(slot.take(), None);
        let shared = slot.clone();
        shared.fill(&Principal::new(PrincipalKind::Network, ip("10.0.0.1")));
        shared.fill(&Principal::new(PrincipalKind::Jwt, "later"));
        // Still shared (the request is alive): a copy.
        assert_eq!(
            slot.take().map(|(k, s)| (k, s.to_string())),
            Some((PrincipalKind::Network, "10.0.0.1".to_string()))
        );
        drop(shared);
        // The last holder takes it out.
        assert!(slot.take().is_some());
        assert_eq!(slot.take(), None);
    }

    #[test]
    fn only_a_slot_nothing_else_holds_is_reset_for_reuse() {
        let slot = VerifiedSlot::default();
        let on_request = slot.clone();
        on_request.fill(&Principal::new(PrincipalKind::Jwt, "user-1"));
        // The request (or a copy of its extensions) still holds it: not reusable.
        assert!(slot.clone().reset().is_none());
        drop(on_request);
        let mut reused = slot.reset().expect("nothing else holds it");
        assert_eq!(reused.take(), None, "a reused slot starts empty");
    }
}
