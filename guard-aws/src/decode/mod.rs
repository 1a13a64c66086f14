//! Decoding raw Lambda events into Guard's neutral request.
//!
//! [`decode`] takes the invocation exactly as the runtime delivers it (`LambdaEvent<serde_json::Value>`),
//! detects the envelope ([`EventShape`]) and produces one [`GuardRequest`] per unit of work: one for an
//! HTTP request, a direct invocation or an EventBridge event; one per record for SQS, SNS, S3,
//! DynamoDB Streams and Kinesis. Every request carries:
//!
//! - `Trigger` — `Http`, `Message { kind, source_id, message_id, attempt }` or `Direct`;
//! - `Peer` — only what the platform observed: `requestContext.identity.sourceIp` (REST v1,
//!   WebSocket), `requestContext.http.sourceIp` (HTTP API v2, Function URL), and for ALB the
//!   `X-Forwarded-For` entry counted from the right over the trusted hops; nothing for messages;
//! - `Invocation` — request id, function ARN, name, region, account, deadline, X-Ray trace id and
//!   parent span (from the context, through `Invocation::trace_from_xray`);
//! - [`EventShape`], and when API Gateway authenticated the caller its
//!   [`PlatformIdentity`](guard_core::verify::PlatformIdentity) (IAM, Cognito, JWT or Lambda
//!   authorizer), which `[verify.aws_authorizer]` turns into the verified `Principal`;
//!   SNS envelopes (direct or inside SQS) as [`SnsMessage`](crate::sns::SnsMessage), and
//!   [`RecordMeta`](crate::event::RecordMeta) for records.
//!
//! Bodies flagged `isBase64Encoded` (and Kinesis data) are decoded before any check sees them;
//! header names are case-insensitive.
//!
//! ```
//! use guard_aws::decode::{decode, DecodeOptions};
//! use guard_aws::event::EventShape;
//! use guard_core::request::{Peer, Trigger};
//! use lambda_runtime::{Context, LambdaEvent};
//!
//! let payload = serde_json::json!({
//!     "version": "2.0",
//!     "rawPath": "/orders",
//!     "rawQueryString": "",
//!     "headers": { "Content-Type": "application/json" },
//!     "requestContext": {
//!         "domainName": "abc.lambda-url.us-east-1.on.aws",
//!         "http": { "method": "POST", "path": "/orders", "sourceIp": "203.0.113.9" }
//!     },
//!     "body": "eyJhIjoxfQ==",
//!     "isBase64Encoded": true
//! });
//! let decoded = decode(LambdaEvent::new(payload, Context::default()), &DecodeOptions::default()).unwrap();
//! assert_eq!(decoded.shape, EventShape::FunctionUrl);
//! let req = &decoded.requests[0];
//! assert_eq!(req.body().as_ref(), br#"{"a":1}"#);
//! assert_eq!(req.headers()["content-type"], "application/json");
//! assert_eq!(req.extensions().get::<Trigger>(), Some(&Trigger::Http));
//! assert_eq!(req.extensions().get::<Peer>().unwrap().ip().to_string(), "203.0.113.9");
//! ```

mod authorizer;
mod fast;
mod http_events;
mod records;
mod util;

use std::time::{Duration, UNIX_EPOCH};

use std::net::IpAddr;

use guard_core::GuardRequest;
use guard_core::RejectionKind;
use guard_core::request::TrustedProxies;
use guard_core::request::{
    AdapterRefusal, Cloud, HeaderLimits, Invocation, MessageTrigger, Peer, Trigger,
};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::Value;

use crate::event::EventShape;

/// How to decode: how many proxies to trust in front of an ALB, and the bounds on what an envelope
/// may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecodeOptions {
    /// The proxies that appended to `X-Forwarded-For` on the way to an ALB target, counting the
    /// ALB itself: the peer is the `hops`-th entry from the right. Default 1 (the ALB appends the
    /// address it observed); with CloudFront in front of the ALB, 2.
    pub alb_proxies: TrustedProxies,
    /// Most header fields and bytes of an HTTP event (default [`HeaderLimits::default`]: 100
    /// fields, 64 KiB); more is refused with 431 `guard.ingress.headers_too_large`.
    pub header_limits: HeaderLimits,
    /// Most bytes a base64 body (`isBase64Encoded`, Kinesis `data`) may decode to (default
    /// 6 MiB, Lambda's own payload limit); more is refused with 413 before decoding. The
    /// policy's `[ingress] max_body_bytes` still applies to what passes.
    pub max_body_bytes: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            alb_proxies: TrustedProxies::new(1).unwrap_or_else(|| unreachable!("1 is in range")),
            header_limits: HeaderLimits::default(),
            max_body_bytes: 6 << 20,
        }
    }
}

impl DecodeOptions {
    /// Options with these trusted proxies for ALB events.
    ///
    /// ```
    /// use guard_core::request::TrustedProxies;
    /// let o = guard_aws::decode::DecodeOptions::default().with_alb_proxies(TrustedProxies::new(2).unwrap());
    /// assert_eq!(o.alb_proxies.hops(), 2);
    /// ```
    pub fn with_alb_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.alb_proxies = proxies;
        self
    }

    /// Options with these header limits.
    ///
    /// ```
    /// use guard_core::request::HeaderLimits;
    /// let o = guard_aws::decode::DecodeOptions::default().with_header_limits(HeaderLimits::new(50, 16 << 10));
    /// assert_eq!(o.header_limits.max_fields, 50);
    /// ```
    pub fn with_header_limits(mut self, limits: HeaderLimits) -> Self {
        self.header_limits = limits;
        self
    }

    /// Options with this bound on decoded base64 bodies.
    ///
    /// ```
    /// let o = guard_aws::decode::DecodeOptions::default().with_max_body_bytes(1 << 20);
    /// assert_eq!(o.max_body_bytes, 1 << 20);
    /// ```
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }
}

/// A decoded invocation: its envelope and the requests to run through the stack (one per record
/// for record-based sources, in delivery order).
#[derive(Debug)]
#[non_exhaustive]
pub struct Decoded {
    /// The envelope.
    pub shape: EventShape,
    /// The requests, in delivery order.
    pub requests: Vec<GuardRequest>,
}

/// An event (or one record of it) whose envelope was recognised but is malformed or over a
/// bound (never contains request values).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {} event: {reason}", shape.as_str())]
#[non_exhaustive]
pub struct DecodeError {
    /// The envelope that was recognised.
    pub shape: EventShape,
    /// What is wrong with it.
    pub reason: &'static str,
    /// How it is refused: [`RejectionKind::MalformedEvent`] (400),
    /// [`RejectionKind::HeadersTooLarge`] (431) or [`RejectionKind::TooLarge`] (413).
    pub kind: RejectionKind,
}

impl DecodeError {
    pub(crate) fn new(shape: EventShape, reason: &'static str) -> Self {
        Self::with_kind(shape, RejectionKind::MalformedEvent, reason)
    }

    pub(crate) fn with_kind(shape: EventShape, kind: RejectionKind, reason: &'static str) -> Self {
        Self {
            shape,
            reason,
            kind,
        }
    }

    pub(crate) fn headers(shape: EventShape, e: AdapterRefusal) -> Self {
        Self::with_kind(shape, RejectionKind::HeadersTooLarge, e.reason())
    }
}

/// An event or record the adapter refused, with what it could read of it.
#[derive(Debug)]
pub(crate) struct Refused {
    error: DecodeError,
    trigger: Trigger,
    peer: Option<IpAddr>,
}

impl Refused {
    pub(crate) fn message(error: DecodeError, trigger: MessageTrigger) -> Box<Self> {
        Box::new(Self {
            error,
            trigger: Trigger::Message(trigger),
            peer: None,
        })
    }

    pub(crate) fn http(error: DecodeError, peer: Option<IpAddr>) -> Box<Self> {
        Box::new(Self {
            error,
            trigger: Trigger::Http,
            peer,
        })
    }

    /// The stand-in request the stack answers with the refusal (see [`AdapterRefusal`]).
    fn into_request(self) -> GuardRequest {
        let mut req = AdapterRefusal::new(self.error.kind, self.error.reason).into_request();
        req.extensions_mut().insert(self.trigger);
        if let Some(ip) = self.peer {
            req.extensions_mut().insert(Peer::new(ip));
        }
        req
    }
}

/// One unit of work: a request, or the refusal of an event or record.
pub(crate) type Unit = Result<GuardRequest, Box<Refused>>;

/// Detects the envelope of `event` and decodes it into neutral requests; any malformed part
/// fails the whole event (for inspecting events; [`decode_or_refuse`] is what the runtime uses).
///
/// Anything that is not a recognised envelope is a direct invocation: its payload becomes a
/// `POST /` JSON body with `Trigger::Direct`.
pub fn decode(event: LambdaEvent<Value>, options: &DecodeOptions) -> Result<Decoded, DecodeError> {
    let (shape, invocation, units) = units(event, options);
    let requests = units
        .into_iter()
        .map(|u| u.map_err(|r| r.error))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(finish(shape, invocation, requests))
}

/// Like [`decode`], but an event or record that cannot be decoded becomes a stand-in request
/// carrying an [`AdapterRefusal`] (with the record's `Trigger`, so a failure names that record
/// only): the Guard stack answers it (400 `guard.adapter.malformed_event`, 431
/// `guard.ingress.headers_too_large` or 413 `guard.ingress.too_large`) and writes its security
/// event, and the handler never sees it.
///
/// ```
/// use guard_aws::decode::{decode_or_refuse, DecodeOptions};
/// use guard_core::request::AdapterRefusal;
/// use lambda_runtime::{Context, LambdaEvent};
///
/// let payload = serde_json::json!({"Records": [
///     {"eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:1:q", "messageId": "a", "body": "{}"},
///     {"eventSource": "aws:kinesis", "eventSourceARN": "arn:aws:sqs:us-east-1:1:q", "messageId": "b", "body": "{}"}
/// ]});
/// let decoded = decode_or_refuse(LambdaEvent::new(payload, Context::default()), &DecodeOptions::default());
/// assert!(decoded.requests[0].extensions().get::<AdapterRefusal>().is_none());
/// let refusal = decoded.requests[1].extensions().get::<AdapterRefusal>().unwrap();
/// assert_eq!(refusal.reason(), "record from another event source");
/// ```
pub fn decode_or_refuse(event: LambdaEvent<Value>, options: &DecodeOptions) -> Decoded {
    let (shape, invocation, units) = units(event, options);
    let requests = units
        .into_iter()
        .map(|u| u.unwrap_or_else(|r| r.into_request()))
        .collect();
    finish(shape, invocation, requests)
}

/// [`decode_or_refuse`] from the payload text: HTTP API (payload 2.0) and Function URL events in
/// one typed pass over the text, every other event through a `serde_json::Value` as before (same
/// requests either way). Fails only when the text is not JSON the `Value` parser accepts (the
/// runtime's own deserialization would have refused it).
pub(crate) fn decode_text(
    text: &str,
    context: Context,
    options: &DecodeOptions,
) -> Result<Decoded, serde_json::Error> {
    if let Some(fast) = fast::parse(text) {
        let shape = fast.shape();
        let invocation = invocation_from_context(&context);
        let req =
            http_events::http_v2(fast.parts(), shape, options).unwrap_or_else(|r| r.into_request());
        return Ok(finish(shape, invocation, vec![req]));
    }
    let payload: Value = serde_json::from_str(text)?;
    Ok(decode_or_refuse(
        LambdaEvent::new(payload, context),
        options,
    ))
}

fn units(
    event: LambdaEvent<Value>,
    options: &DecodeOptions,
) -> (EventShape, Invocation, Vec<Unit>) {
    let (payload, context) = event.into_parts();
    let invocation = invocation_from_context(&context);
    let shape = detect(&payload);
    let units = match shape {
        EventShape::ApiGatewayV1
        | EventShape::WebSocket
        | EventShape::ApiGatewayV2
        | EventShape::FunctionUrl
        | EventShape::Alb { .. } => vec![http_events::decode(&payload, shape, options)],
        EventShape::Sqs { .. } => records::sqs(&payload, shape),
        EventShape::Sns => records::sns(&payload),
        EventShape::EventBridge => vec![records::eventbridge(&payload)],
        EventShape::S3 => records::s3(&payload),
        EventShape::DynamoDb => records::dynamodb(&payload),
        EventShape::Kinesis => records::kinesis(&payload, options.max_body_bytes),
        EventShape::Direct => vec![Ok(records::direct(&payload))],
    };
    (shape, invocation, units)
}

fn finish(shape: EventShape, invocation: Invocation, requests: Vec<GuardRequest>) -> Decoded {
    let last = requests.len().saturating_sub(1);
    let mut invocation = Some(invocation);
    let requests = requests
        .into_iter()
        .enumerate()
        .map(|(i, mut req)| {
            req.extensions_mut().insert(shape);
            // Each request gets its own copy; the last one takes the original.
            let inv = if i == last {
                invocation.take()
            } else {
                invocation.clone()
            };
            if let Some(inv) = inv {
                req.extensions_mut().insert(inv);
            }
            req
        })
        .collect();
    Decoded { shape, requests }
}

/// Which envelope is this? Decided on fields only the platform's envelopes carry together.
pub(crate) fn detect(payload: &Value) -> EventShape {
    let Some(obj) = payload.as_object() else {
        return EventShape::Direct;
    };
    if let Some(first) = obj
        .get("Records")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
    {
        let source = first
            .get("eventSource")
            .or_else(|| first.get("EventSource"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        return match source {
            "aws:sqs" => {
                let fifo = first
                    .get("eventSourceARN")
                    .and_then(Value::as_str)
                    .is_some_and(|arn| arn.ends_with(".fifo"));
                EventShape::Sqs { fifo }
            }
            "aws:sns" => EventShape::Sns,
            "aws:s3" => EventShape::S3,
            "aws:dynamodb" => EventShape::DynamoDb,
            "aws:kinesis" => EventShape::Kinesis,
            _ => EventShape::Direct,
        };
    }
    if obj.contains_key("detail-type") && obj.contains_key("source") && obj.contains_key("detail") {
        return EventShape::EventBridge;
    }
    let Some(ctx) = obj.get("requestContext").and_then(Value::as_object) else {
        return EventShape::Direct;
    };
    if ctx.get("elb").is_some_and(Value::is_object) {
        let multi_value = obj.get("multiValueHeaders").is_some_and(Value::is_object);
        return EventShape::Alb { multi_value };
    }
    if ctx.contains_key("connectionId") && ctx.contains_key("eventType") {
        return EventShape::WebSocket;
    }
    if ctx.get("http").is_some_and(Value::is_object)
        && obj.get("version").and_then(Value::as_str) == Some("2.0")
    {
        let domain = ctx
            .get("domainName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        return if domain.contains(".lambda-url.") {
            EventShape::FunctionUrl
        } else {
            EventShape::ApiGatewayV2
        };
    }
    if obj.get("httpMethod").is_some_and(Value::is_string) {
        return EventShape::ApiGatewayV1;
    }
    EventShape::Direct
}

/// `Invocation` from the Lambda context: ids, deadline, trace, and region/account/name from the ARN.
pub(crate) fn invocation_from_context(ctx: &Context) -> Invocation {
    let mut inv = Invocation::new(Cloud::Aws);
    if !ctx.request_id.is_empty() {
        inv.request_id = Some(ctx.request_id.clone());
    }
    if ctx.deadline > 0 {
        inv.deadline = UNIX_EPOCH.checked_add(Duration::from_millis(ctx.deadline));
    }
    if let Some(xray) = ctx.xray_trace_id.as_deref() {
        inv.trace_from_xray(xray);
    }
    if let Some(arn) = FunctionArn::parse(&ctx.invoked_function_arn) {
        inv.region = Some(arn.region.to_owned());
        inv.account = Some(arn.account.to_owned());
        inv.function = Some(arn.function.to_owned());
        inv.function_id = Some(ctx.invoked_function_arn.clone());
    } else if !ctx.env_config.function_name.is_empty() {
        inv.function = Some(ctx.env_config.function_name.clone());
    }
    inv
}

/// `arn:<partition>:lambda:<region>:<account>:function:<name>[:<qualifier>]`.
struct FunctionArn<'a> {
    region: &'a str,
    account: &'a str,
    function: &'a str,
}

impl<'a> FunctionArn<'a> {
    fn parse(arn: &'a str) -> Option<Self> {
        let mut parts = arn.split(':');
        let (Some("arn"), Some(_partition), Some("lambda"), Some(region), Some(account)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let (Some("function"), Some(function)) = (parts.next(), parts.next()) else {
            return None;
        };
        (!region.is_empty() && !account.is_empty() && !function.is_empty()).then_some(Self {
            region,
            account,
            function,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_function_arn_with_and_without_qualifier() {
        let a =
            FunctionArn::parse("arn:aws:lambda:eu-west-1:123456789012:function:orders").unwrap();
        assert_eq!(
            (a.region, a.account, a.function),
            ("eu-west-1", "123456789012", "orders")
        );
        let b = FunctionArn::parse("arn:aws-cn:lambda:cn-north-1:1:function:orders:live").unwrap();
        assert_eq!(b.function, "orders");
        assert!(FunctionArn::parse("arn:aws:s3:::bucket").is_none());
        assert!(FunctionArn::parse("").is_none());
    }

    #[test]
    fn the_xray_trace_of_the_context_fills_the_invocation() {
        let mut ctx = Context::default();
        ctx.xray_trace_id = Some(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".into(),
        );
        let inv = invocation_from_context(&ctx);
        assert_eq!(
            inv.trace_id.as_deref(),
            Some("1-5759e988-bd862e3fe1be46a994272793")
        );
        assert_eq!(inv.parent_span_id.as_deref(), Some("53995c3f42cd8ad8"));
        ctx.xray_trace_id = Some("Root=1-abc\n{\"event\":\"forged\"}".into());
        assert_eq!(
            invocation_from_context(&ctx).trace_id,
            None,
            "malformed: ignored"
        );
    }

    #[test]
    fn anything_unrecognised_is_direct() {
        for v in [
            serde_json::json!(null),
            serde_json::json!([1, 2]),
            serde_json::json!({"order_id": "x"}),
            serde_json::json!({"Records": [{"eventSource": "aws:unknown"}]}),
            serde_json::json!({"requestContext": {}}),
        ] {
            assert_eq!(detect(&v), EventShape::Direct, "{v}");
        }
    }
}
