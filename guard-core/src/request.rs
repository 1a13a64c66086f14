//! The neutral request model: `http::Request<Bytes>` in, `http::Response<Bytes>` out, and the typed
//! extensions adapters attach to say what the platform observed.
//!
//! Adapters set [`Trigger`], [`Peer`] and [`Invocation`]; the verification layer sets [`Principal`].
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

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::SystemTime;

/// The request Guard sees: an HTTP request with the raw body bytes.
pub type GuardRequest = http::Request<bytes::Bytes>;
/// The response Guard returns: the handler's, or a rendered [`crate::Rejection`].
pub type GuardResponse = http::Response<bytes::Bytes>;

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
    /// Trace id (W3C trace id, X-Ray root, or Cloud Trace id).
    pub trace_id: Option<String>,
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
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PrincipalKind {
    /// An OIDC / JWT bearer token.
    Jwt,
    /// A webhook HMAC signature (the subject is the key name).
    Hmac,
    /// The caller's network address was on an allow-list.
    Network,
    /// A platform-verified identity (API Gateway IAM / Cognito / authorizer, Azure Easy Auth, GCP push).
    Platform(String),
    /// A message source on the allow-list.
    Source,
    /// An SNS message signature.
    SnsSignature,
    /// A custom verifier.
    Custom(String),
}

impl PrincipalKind {
    /// Stable name for logs.
    ///
    /// ```
    /// assert_eq!(guard_core::request::PrincipalKind::Jwt.as_str(), "jwt");
    /// ```
    pub fn as_str(&self) -> &str {
        match self {
            PrincipalKind::Jwt => "jwt",
            PrincipalKind::Hmac => "hmac",
            PrincipalKind::Network => "network",
            PrincipalKind::Platform(p) => p,
            PrincipalKind::Source => "source",
            PrincipalKind::SnsSignature => "sns",
            PrincipalKind::Custom(c) => c,
        }
    }
}

/// A verified identity, inserted by the verification layer.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Principal {
    /// How it was verified.
    pub kind: PrincipalKind,
    /// Who (token `sub`, key name, ARN, address...).
    pub subject: String,
    /// Who vouched for it (token `iss`, platform), if anyone.
    pub issuer: Option<String>,
    /// Verified claims (never secrets).
    pub claims: BTreeMap<String, serde_json::Value>,
}

impl Principal {
    /// A principal of `kind` for `subject` without issuer or claims.
    ///
    /// ```
    /// use guard_core::request::{Principal, PrincipalKind};
    /// let p = Principal::new(PrincipalKind::Hmac, "orders-webhook-hmac");
    /// assert_eq!(p.subject, "orders-webhook-hmac");
    /// ```
    pub fn new(kind: PrincipalKind, subject: impl Into<String>) -> Self {
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
