//! Running a Guard stack on Lambda: [`GuardLayer`] turns any
//! `Service<GuardRequest, Response = GuardResponse>` into the
//! `Service<LambdaEvent<serde_json::Value>>` that `lambda_runtime::run` drives, and [`run`] does
//! both.
//!
//! Per invocation the service [decodes](crate::decode) the event, runs each request through the
//! inner service, and [encodes](crate::encode) the answer:
//!
//! | event | runs | answers |
//! |---|---|---|
//! | API Gateway v1/v2, Function URL, ALB, WebSocket | once | the HTTP response in the envelope's format |
//! | SQS, Kinesis, DynamoDB Streams | once per record | `{"batchItemFailures": [...]}` listing every non-2xx record |
//! | SQS FIFO, Kinesis, DynamoDB Streams | in order, stopping at the first failure | that record and every later one |
//! | SNS, S3 | once per record | `null`, or an invocation error if any record failed (the platform retries / dead-letters) |
//! | EventBridge, direct invocation | once | the handler's JSON, or a structured error (`errorType` = rejection code) |
//!
//! An event or record that does not decode (invalid base64, an invalid method, a record from
//! another source or without its identifier, more headers than
//! [`HeaderLimits`](guard_core::request::HeaderLimits) allow) becomes a stand-in request carrying
//! an [`AdapterRefusal`](guard_core::request::AdapterRefusal): the stack's `AuditLayer` answers it
//! (400 `guard.adapter.malformed_event`, 413, or 431 `guard.ingress.headers_too_large`) and writes
//! its one security event; the handler never sees it. A bad record fails only itself; a failed
//! record without an identifier cannot be named in `batchItemFailures`, so it fails the
//! invocation and the platform redelivers the batch rather than losing it. Wrap a Guard stack:
//! a bare handler with neither `AuditLayer` nor `IngressLayer` in front would be called with
//! the stand-in.
//!
//! ```
//! use guard_aws::GuardLayer;
//! use guard_core::{GuardRequest, GuardResponse, Rejection, RejectionKind};
//! use lambda_runtime::{Context, LambdaEvent};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // A "stack" that refuses every message whose body is not `ok`.
//! let stack = service_fn(|req: GuardRequest| async move {
//!     Ok::<GuardResponse, std::convert::Infallible>(if req.body().as_ref() == b"ok" {
//!         http::Response::new(bytes::Bytes::new())
//!     } else {
//!         Rejection::new(RejectionKind::SchemaViolation).into_response()
//!     })
//! });
//! let lambda = GuardLayer::new().layer(stack);
//! let event = serde_json::json!({"Records": [
//!     {"eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:1:q", "messageId": "a", "body": "ok"},
//!     {"eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:1:q", "messageId": "b", "body": "bad"}
//! ]});
//! let out = lambda.oneshot(LambdaEvent::new(event, Context::default())).await.unwrap();
//! assert_eq!(out, serde_json::json!({"batchItemFailures": [{"itemIdentifier": "b"}]}));
//! # }
//! ```

use std::error::Error as StdError;
use std::num::NonZeroUsize;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use guard_core::message::{BatchOrder, MessageResult};
use guard_core::{GuardRequest, GuardResponse};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::Value;
use tower::ServiceExt;
use tower_layer::Layer;
use tower_service::Service;

use crate::decode::{DecodeOptions, Decoded, decode_or_refuse, decode_text};
use crate::encode::{self, Reply};
use crate::event::{EventShape, RawEvent};

pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

/// The environment variables `lambda_runtime` needs (it panics without them; [`run`] checks first).
const RUNTIME_ENV: [&str; 4] = [
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_RUNTIME_API",
];

/// Wraps a Guard stack into a Lambda handler service (cheap to clone).
#[derive(Debug, Clone, Copy)]
pub struct GuardLayer {
    options: DecodeOptions,
    concurrency: NonZeroUsize,
}

impl Default for GuardLayer {
    fn default() -> Self {
        Self {
            options: DecodeOptions::default(),
            concurrency: NonZeroUsize::new(8).unwrap_or(NonZeroUsize::MIN),
        }
    }
}

impl GuardLayer {
    /// Default decoding (ALB: one trusted hop) and up to 8 unordered records in flight.
    ///
    /// ```
    /// let layer = guard_aws::GuardLayer::new();
    /// # let _ = layer;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Decoding options (trusted proxies in front of an ALB).
    ///
    /// ```
    /// use guard_aws::{GuardLayer, decode::DecodeOptions};
    /// use guard_core::request::TrustedProxies;
    /// let o = DecodeOptions::default().with_alb_proxies(TrustedProxies::new(2).unwrap());
    /// let layer = GuardLayer::new().decode_options(o);
    /// # let _ = layer;
    /// ```
    pub fn decode_options(mut self, options: DecodeOptions) -> Self {
        self.options = options;
        self
    }

    /// How many records of an unordered batch (standard SQS) run at once. Ordered sources (SQS
    /// FIFO, Kinesis, DynamoDB Streams) always run one at a time.
    ///
    /// ```
    /// use std::num::NonZeroUsize;
    /// let layer = guard_aws::GuardLayer::new().batch_concurrency(NonZeroUsize::MIN);
    /// # let _ = layer;
    /// ```
    pub fn batch_concurrency(mut self, n: NonZeroUsize) -> Self {
        self.concurrency = n;
        self
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = GuardService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GuardService {
            inner,
            layer: *self,
        }
    }
}

/// A Guard stack as a Lambda handler: `Service<LambdaEvent<Value>, Response = Value, Error = Diagnostic>`.
#[derive(Debug, Clone)]
pub struct GuardService<S> {
    inner: S,
    layer: GuardLayer,
}

guard_core::inner_service_accessors!(GuardService);

impl<S> Service<LambdaEvent<Value>> for GuardService<S>
where
    S: Service<GuardRequest, Response = GuardResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = Value;
    type Error = Diagnostic;
    type Future = BoxFuture<'static, Result<Value, Diagnostic>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(inner_error)
    }

    fn call(&mut self, event: LambdaEvent<Value>) -> Self::Future {
        // An event (or record) that does not decode becomes a stand-in the stack refuses and
        // records: every refusal has its security event, and a bad record fails only itself.
        let decoded = decode_or_refuse(event, &self.layer.options);
        let fut = self.dispatch(decoded, true);
        Box::pin(async move { fut.await.map(Reply::into_value) })
    }
}

/// The same service on the payload text as the runtime delivered it ([`RawEvent`]): HTTP API
/// and Function URL events are decoded in one typed pass and their answers serialized without
/// a `serde_json::Value` in between; every other event as in the `LambdaEvent<Value>` service.
impl<S> Service<LambdaEvent<RawEvent>> for GuardService<S>
where
    S: Service<GuardRequest, Response = GuardResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = Reply;
    type Error = Diagnostic;
    type Future = BoxFuture<'static, Result<Reply, Diagnostic>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(inner_error)
    }

    fn call(&mut self, event: LambdaEvent<RawEvent>) -> Self::Future {
        let (payload, context) = event.into_parts();
        match decode_text(payload.as_str(), context, &self.layer.options) {
            Ok(decoded) => self.dispatch(decoded, false),
            Err(e) => Box::pin(std::future::ready(Err(Diagnostic {
                error_type: "Runtime.DeserializationError".to_owned(),
                error_message: format!("the payload is not JSON Guard can read: {e}"),
            }))),
        }
    }
}

impl<S> GuardService<S>
where
    S: Service<GuardRequest, Response = GuardResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    /// Runs the decoded requests through the stack and encodes the answer (`as_value`: an HTTP
    /// answer as the `serde_json::Value` of [`encode::http_response`]).
    fn dispatch(
        &mut self,
        decoded: Decoded,
        as_value: bool,
    ) -> BoxFuture<'static, Result<Reply, Diagnostic>> {
        let shape = decoded.shape;
        let mut requests = decoded.requests;
        if shape.is_http() || matches!(shape, EventShape::Direct | EventShape::EventBridge) {
            // One request: call the service that `poll_ready` drove to readiness, in place — no
            // clone of the stack per invocation.
            let Some(req) = requests.pop() else {
                return Box::pin(std::future::ready(Ok(Reply::value(Value::Null))));
            };
            let fut = self.inner.call(req);
            return Box::pin(async move {
                let resp = fut.await.map_err(inner_error)?;
                if shape.is_http() && as_value {
                    Ok(Reply::value(encode::http_response(shape, resp)))
                } else if shape.is_http() {
                    Ok(Reply::http(shape, resp))
                } else {
                    encode::direct_result(resp).map(Reply::value)
                }
            });
        }
        // A batch calls the stack once per record, each after its own readiness: take the service
        // that was driven to readiness and leave a clone in its place.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let concurrency = self.layer.concurrency;
        Box::pin(async move {
            handle_batch(inner, shape, requests, concurrency)
                .await
                .map(Reply::value)
        })
    }
}

fn inner_error(e: impl Into<BoxError>) -> Diagnostic {
    let e: BoxError = e.into();
    Diagnostic {
        error_type: "guard.inner_error".to_owned(),
        error_message: e.to_string(),
    }
}

async fn handle_batch<S>(
    inner: S,
    shape: EventShape,
    requests: Vec<GuardRequest>,
    concurrency: NonZeroUsize,
) -> Result<Value, Diagnostic>
where
    S: Service<GuardRequest, Response = GuardResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    let order = if shape.is_ordered() {
        BatchOrder::Ordered
    } else {
        BatchOrder::Concurrent(concurrency)
    };
    // Errors become diagnostics at once: the results cross await points, `S::Error` need not be
    // `Send`.
    let mut results = order.run(inner.map_err(inner_error), requests).await;
    if shape.reports_batch_failures() {
        // A failed record without an identifier cannot be named in `batchItemFailures` (an empty
        // identifier fails the whole batch anyway): fail the invocation, so the platform
        // redelivers the batch rather than deleting a record that was refused.
        if let Some(i) = results.iter().position(MessageResult::is_unnamed_failure) {
            return Err(record_error(results.swap_remove(i)));
        }
        let failed = results
            .into_iter()
            .filter(|r| !r.verdict.is_ack())
            .filter_map(|r| r.message_id);
        return Ok(encode::batch_failures(failed));
    }
    // SNS / S3: no partial failure protocol; a failed record fails the invocation so the platform
    // retries it and finally dead-letters it.
    match results.into_iter().find(|r| !r.verdict.is_ack()) {
        Some(r) => Err(record_error(r)),
        None => Ok(Value::Null),
    }
}

/// The invocation error for a failed record: the refusal's code and problem document.
fn record_error(result: MessageResult<Diagnostic>) -> Diagnostic {
    match result.outcome {
        Some(Ok(resp)) => encode::diagnostic(&resp),
        Some(Err(e)) => e,
        None => Diagnostic {
            error_type: result
                .failure_code()
                .unwrap_or(std::borrow::Cow::Borrowed("guard.aws.record_failed"))
                .into_owned(),
            error_message: format!(
                "record {} failed",
                result.message_id.as_deref().unwrap_or("without an id")
            ),
        },
    }
}

/// The first runtime variable `is_set` says is missing.
fn first_missing(is_set: impl Fn(&str) -> bool) -> Option<&'static str> {
    RUNTIME_ENV.iter().copied().find(|name| !is_set(name))
}

/// Why [`run`] could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A variable the Lambda runtime sets is missing: this is not running inside Lambda (or
    /// `cargo lambda watch`).
    #[error("{0} is not set: not running inside the Lambda runtime")]
    MissingEnv(&'static str),
    /// The runtime loop stopped with an error.
    #[error("lambda runtime: {0}")]
    Runtime(lambda_runtime::Error),
}

/// Runs `service` (a Guard stack around the handler) as this Lambda function, with the default
/// [`GuardLayer`]. Returns an error instead of panicking when the Lambda environment is missing.
pub async fn run<S>(service: S) -> Result<(), RunError>
where
    S: Service<GuardRequest, Response = GuardResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    run_with(GuardLayer::default(), service).await
}

/// [`run`] with a configured layer.
pub async fn run_with<S>(layer: GuardLayer, service: S) -> Result<(), RunError>
where
    S: Service<GuardRequest, Response = GuardResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    run_raw(layer.layer(service)).await
}

/// Runs a Lambda service on the payload text ([`RawEvent`]), after checking the environment.
pub(crate) async fn run_raw<S>(service: S) -> Result<(), RunError>
where
    S: Service<LambdaEvent<RawEvent>, Response = Reply, Error = Diagnostic> + Send + 'static,
    S::Future: Send + 'static,
{
    if let Some(missing) = first_missing(|name| std::env::var_os(name).is_some()) {
        return Err(RunError::MissingEnv(missing));
    }
    lambda_runtime::run(service)
        .await
        .map_err(RunError::Runtime)
}

/// Runs an already wrapped Lambda service (a [`GuardService`], possibly inside more layers) on
/// `lambda_runtime`, after checking that the Lambda environment is there.
pub async fn run_service<S>(service: S) -> Result<(), RunError>
where
    S: Service<LambdaEvent<Value>, Response = Value, Error = Diagnostic> + Send + 'static,
    S::Future: Send + 'static,
{
    if let Some(missing) = first_missing(|name| std::env::var_os(name).is_some()) {
        return Err(RunError::MissingEnv(missing));
    }
    lambda_runtime::run(service)
        .await
        .map_err(RunError::Runtime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use std::sync::Mutex;

    use bytes::Bytes;
    use guard_core::audit::{AuditLayer, Outcome, SecurityEvent};
    use guard_core::{Rejection, RejectionKind};
    use lambda_runtime::Context as LambdaContext;
    use serde_json::json;

    /// A handler that accepts bodies equal to `ok`, refuses anything else with a schema violation,
    /// and counts its calls.
    fn counting() -> (
        Arc<AtomicUsize>,
        impl Service<
            GuardRequest,
            Response = GuardResponse,
            Error = std::convert::Infallible,
            Future = impl Send,
        > + Clone
        + Send
        + 'static,
    ) {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let svc = tower::service_fn(move |req: GuardRequest| {
            c.fetch_add(1, Ordering::SeqCst);
            async move {
                Ok(if req.body().as_ref() == b"ok" {
                    http::Response::new(Bytes::new())
                } else {
                    Rejection::new(RejectionKind::SchemaViolation).into_response()
                })
            }
        });
        (calls, svc)
    }

    fn sqs(arn: &str, bodies: &[&str]) -> Value {
        let records: Vec<Value> = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| {
                json!({"eventSource": "aws:sqs", "eventSourceARN": arn, "messageId": format!("m{i}"), "body": b})
            })
            .collect();
        json!({ "Records": records })
    }

    async fn invoke(
        svc: impl Service<
            GuardRequest,
            Response = GuardResponse,
            Error = std::convert::Infallible,
            Future = impl Send + 'static,
        > + Clone
        + Send
        + 'static,
        event: Value,
    ) -> Result<Value, Diagnostic> {
        GuardLayer::new()
            .layer(svc)
            .oneshot(LambdaEvent::new(event, LambdaContext::default()))
            .await
    }

    #[tokio::test]
    async fn fifo_batch_stops_at_the_first_failure_and_reports_the_rest() {
        let (calls, svc) = counting();
        let event = sqs(
            "arn:aws:sqs:us-east-1:1:orders.fifo",
            &["ok", "bad", "ok", "ok"],
        );
        let out = invoke(svc, event).await.unwrap();
        assert_eq!(
            out,
            json!({"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m2"}, {"itemIdentifier": "m3"}]})
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn standard_batch_runs_every_record_and_reports_only_failures() {
        let (calls, svc) = counting();
        let event = sqs(
            "arn:aws:sqs:us-east-1:1:orders",
            &["bad", "ok", "bad", "ok"],
        );
        let out = invoke(svc, event).await.unwrap();
        assert_eq!(
            out,
            json!({"batchItemFailures": [{"itemIdentifier": "m0"}, {"itemIdentifier": "m2"}]})
        );
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn failed_sns_record_fails_the_invocation() {
        let (calls, svc) = counting();
        let event = json!({"Records": [{"EventSource": "aws:sns", "Sns": {
            "Type": "Notification", "MessageId": "n1", "TopicArn": "arn:aws:sns:us-east-1:1:t",
            "Message": "bad", "Timestamp": "2024-01-01T00:00:00Z"}}]});
        let err = invoke(svc, event).await.unwrap_err();
        assert_eq!(err.error_type, "guard.validate.schema");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    /// Runs `event` through an audited stack around the counting handler: the answer, the
    /// handler's calls and the security events.
    async fn invoke_audited(
        event: Value,
    ) -> (Result<Value, Diagnostic>, usize, Vec<SecurityEvent>) {
        let (calls, svc) = counting();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let audit = AuditLayer::new(move |e: SecurityEvent| sink.lock().unwrap().push(e));
        let out = invoke(audit.layer(svc), event).await;
        let events = events.lock().unwrap().clone();
        (out, calls.load(Ordering::SeqCst), events)
    }

    /// The one refusal among `events`, checked to be the adapter's own.
    fn the_refusal<'a>(events: &'a [SecurityEvent], code: &str, status: u16) -> &'a SecurityEvent {
        let denied: Vec<_> = events
            .iter()
            .filter(|e| e.outcome == Outcome::Deny)
            .collect();
        assert_eq!(denied.len(), 1, "exactly one refusal event: {events:?}");
        let e = denied[0];
        assert_eq!(e.code, code);
        assert_eq!(e.status, status);
        assert_eq!(e.event, "guard.decision");
        e
    }

    fn problem_code(out: &Value) -> String {
        let body: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
        body["code"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn malformed_http_event_is_refused_without_calling_the_handler() {
        let event = json!({"httpMethod": "POST", "path": "/", "body": "%%%not-base64",
            "requestContext": {"identity": {"sourceIp": "203.0.113.9"}}, "isBase64Encoded": true});
        let (out, calls, events) = invoke_audited(event).await;
        let out = out.unwrap();
        assert_eq!(out["statusCode"], 400);
        assert_eq!(problem_code(&out), "guard.adapter.malformed_event");
        assert_eq!(calls, 0);
        assert_eq!(events.len(), 1);
        let e = the_refusal(&events, "guard.adapter.malformed_event", 400);
        assert_eq!(e.layer, "adapter");
        assert_eq!(e.trigger, "http");
        assert_eq!(e.peer.as_deref(), Some("203.0.113.9"));
        assert_eq!(e.reason.as_deref(), Some("body is not valid base64"));
    }

    #[tokio::test]
    async fn an_invalid_method_is_the_adapters_refusal_with_one_event() {
        let event = json!({"version": "2.0", "rawPath": "/", "headers": {},
            "requestContext": {"domainName": "x.lambda-url.us-east-1.on.aws",
                "http": {"method": "PO ST", "path": "/", "sourceIp": "198.51.100.1"}}});
        let (out, calls, events) = invoke_audited(event).await;
        let out = out.unwrap();
        assert_eq!(out["statusCode"], 400);
        assert_eq!(calls, 0);
        assert_eq!(events.len(), 1);
        let e = the_refusal(&events, "guard.adapter.malformed_event", 400);
        assert_eq!(e.reason.as_deref(), Some("invalid HTTP method"));
    }

    #[tokio::test]
    async fn a_record_from_another_source_fails_only_itself() {
        let mut event = sqs("arn:aws:sqs:us-east-1:1:orders", &["ok", "ok", "ok"]);
        event["Records"][1]["eventSource"] = json!("aws:kinesis");
        let (out, calls, events) = invoke_audited(event).await;
        assert_eq!(
            out.unwrap(),
            json!({"batchItemFailures": [{"itemIdentifier": "m1"}]})
        );
        assert_eq!(calls, 2, "the other two records ran");
        assert_eq!(events.len(), 3, "one event per record");
        let e = the_refusal(&events, "guard.adapter.malformed_event", 400);
        assert_eq!(e.trigger, "sqs");
        assert_eq!(
            e.reason.as_deref(),
            Some("record from another event source")
        );
    }

    #[tokio::test]
    async fn a_record_without_an_id_fails_the_invocation_so_it_is_redelivered() {
        // It cannot be named in batchItemFailures: reporting the others alone would delete it.
        let mut event = sqs("arn:aws:sqs:us-east-1:1:orders", &["ok", "ok", "ok"]);
        event["Records"][1]
            .as_object_mut()
            .unwrap()
            .remove("messageId");
        let (out, calls, events) = invoke_audited(event).await;
        assert_eq!(out.unwrap_err().error_type, "guard.adapter.malformed_event");
        assert_eq!(calls, 2);
        assert_eq!(events.len(), 3);
        let e = the_refusal(&events, "guard.adapter.malformed_event", 400);
        assert_eq!(e.reason.as_deref(), Some("record without messageId"));
    }

    #[tokio::test]
    async fn a_kinesis_record_with_bad_data_fails_only_itself() {
        let record = |seq: &str, data: &str| {
            json!({"eventSource": "aws:kinesis", "eventSourceARN": "arn:aws:kinesis:us-east-1:1:stream/s",
                "kinesis": {"sequenceNumber": seq, "data": data, "partitionKey": "p"}})
        };
        // "b2s=" is "ok"; an ordered source stops at the failure and reports it and the rest.
        let event =
            json!({"Records": [record("1", "b2s="), record("2", "%%%"), record("3", "b2s=")]});
        let (out, calls, events) = invoke_audited(event).await;
        assert_eq!(
            out.unwrap(),
            json!({"batchItemFailures": [{"itemIdentifier": "2"}, {"itemIdentifier": "3"}]})
        );
        assert_eq!(calls, 1);
        assert_eq!(events.len(), 2, "the third record was not run");
        the_refusal(&events, "guard.adapter.malformed_event", 400);
    }

    #[tokio::test]
    async fn thirty_thousand_header_names_are_refused_with_431_not_a_panic() {
        let headers: serde_json::Map<String, Value> = (0..30_000)
            .map(|i| (format!("x-h-{i}"), json!("v")))
            .collect();
        let v2 = json!({"version": "2.0", "rawPath": "/", "headers": headers.clone(),
            "requestContext": {"domainName": "x.lambda-url.us-east-1.on.aws",
                "http": {"method": "POST", "path": "/", "sourceIp": "198.51.100.1"}}});
        let multi: serde_json::Map<String, Value> = headers
            .iter()
            .map(|(k, v)| (k.clone(), json!([v])))
            .collect();
        let v1 = json!({"httpMethod": "POST", "path": "/", "multiValueHeaders": multi,
            "requestContext": {"identity": {"sourceIp": "198.51.100.1"}}});
        for event in [v2, v1] {
            let (out, calls, events) = invoke_audited(event).await;
            let out = out.unwrap();
            assert_eq!(out["statusCode"], 431);
            assert_eq!(problem_code(&out), "guard.ingress.headers_too_large");
            assert_eq!(calls, 0);
            assert_eq!(events.len(), 1);
            let e = the_refusal(&events, "guard.ingress.headers_too_large", 431);
            assert_eq!(e.reason.as_deref(), Some("too many header fields"));
        }
    }

    #[tokio::test]
    async fn a_stand_in_never_reaches_a_handler_behind_the_ingress_layer_alone() {
        let (calls, svc) = counting();
        let stack = guard_core::ingress::IngressLayer::new().layer(svc);
        let event = json!({"httpMethod": "POST", "path": "/", "requestContext": {},
            "body": "%%%", "isBase64Encoded": true});
        let out = invoke(stack, event).await.unwrap();
        assert_eq!(out["statusCode"], 400);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn rejected_direct_invocation_returns_a_structured_error() {
        let (calls, svc) = counting();
        let err = invoke(svc, json!({"order_id": "x"})).await.unwrap_err();
        assert_eq!(err.error_type, "guard.validate.schema");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn run_refuses_to_start_without_the_runtime_variables() {
        assert_eq!(first_missing(|_| false), Some("AWS_LAMBDA_FUNCTION_NAME"));
        assert_eq!(
            first_missing(|n| n != "AWS_LAMBDA_RUNTIME_API"),
            Some("AWS_LAMBDA_RUNTIME_API")
        );
        assert_eq!(first_missing(|_| true), None);
    }
}
