//! Batches of messages through a Guard stack, and what each answer means for the message.
//!
//! Queues, streams and topics hand a function several messages at once (SQS, Kinesis, DynamoDB
//! Streams) or one at a time (Pub/Sub push, Azure queues). The adapter decodes each message into
//! its own [`GuardRequest`] with a `Trigger::Message`; [`BatchOrder::run`] runs them through a ready
//! stack and [`MessageVerdict`] turns each answer into what the platform must do with the
//! message:
//!
//! | answer | verdict | the platform |
//! |---|---|---|
//! | 2xx | [`Ack`](MessageVerdict::Ack) | deletes / checkpoints the message |
//! | 429, 5xx, an inner service error, not run | [`RetryTransient`](MessageVerdict::RetryTransient) | redelivers it; a retry may succeed |
//! | any other status (4xx) | [`RetryPermanent`](MessageVerdict::RetryPermanent) | redelivers it until its limit, then dead-letters it |
//!
//! No verdict drops a message: every non-2xx answer reports it failed, so it is redelivered and
//! finally dead-lettered. [`BatchOrder::Ordered`] (SQS FIFO, Kinesis, DynamoDB Streams) runs one
//! message at a time and stops at the first failure: that message and every later one are
//! reported failed, so none is processed out of order. [`BatchOrder::Concurrent`] runs up to `n`
//! messages at once; one failure never touches the others.
//!
//! ```
//! use std::num::NonZeroUsize;
//! use bytes::Bytes;
//! use guard_core::message::{BatchOrder, MessageVerdict};
//! use guard_core::{GuardRequest, GuardResponse};
//! use guard_core::request::{MessageTrigger, Trigger};
//! use guard_core::{Rejection, RejectionKind};
//! use tower::service_fn;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let stack = service_fn(|req: GuardRequest| async move {
//!     Ok::<GuardResponse, std::convert::Infallible>(if req.body().as_ref() == b"ok" {
//!         GuardResponse::new(Bytes::new())
//!     } else {
//!         Rejection::new(RejectionKind::SchemaViolation).into_response()
//!     })
//! });
//! let message = |id: &str, body: &'static str| {
//!     let mut req = GuardRequest::new(Bytes::from_static(body.as_bytes()));
//!     req.extensions_mut().insert(Trigger::Message(MessageTrigger::new("sqs", "arn:q", id)));
//!     req
//! };
//! let batch = vec![message("a", "ok"), message("b", "bad"), message("c", "ok")];
//! let results = BatchOrder::Ordered.run(stack, batch).await;
//! let verdicts: Vec<_> = results.iter().map(|r| r.verdict).collect();
//! assert_eq!(
//!     verdicts,
//!     [MessageVerdict::Ack, MessageVerdict::RetryPermanent, MessageVerdict::RetryTransient]
//! );
//! assert_eq!(results[1].message_id.as_deref(), Some("b"));
//! assert_eq!(results[1].failure_code().as_deref(), Some("guard.validate.schema"));
//! # });
//! ```

use std::borrow::Cow;
use std::fmt;
use std::num::NonZeroUsize;

use futures_util::{StreamExt, stream};
use tower::ServiceExt;
use tower_service::Service;

use crate::Rejection;
use crate::request::{GuardRequest, GuardResponse, Trigger};

/// What the platform must do with one message, decided from the stack's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageVerdict {
    /// Processed (2xx): acknowledge it.
    Ack,
    /// Refused for what it is (4xx other than 429): redelivering it gives the same answer, so it
    /// ends in the dead-letter queue after the platform's redelivery limit.
    RetryPermanent,
    /// Failed for now (429, 5xx, an inner service error, or not run because an earlier message
    /// of an ordered batch failed): a redelivery may succeed.
    RetryTransient,
}

impl MessageVerdict {
    /// The verdict for an answer: the rejection's kind when Guard refused (a [`Rejection`] on the
    /// response), else the status.
    ///
    /// ```
    /// use guard_core::message::MessageVerdict;
    /// use guard_core::{Rejection, RejectionKind};
    /// let limited = Rejection::new(RejectionKind::RateLimited).into_response();
    /// assert_eq!(MessageVerdict::of(&limited), MessageVerdict::RetryTransient);
    /// let ok = guard_core::GuardResponse::new(bytes::Bytes::new());
    /// assert_eq!(MessageVerdict::of(&ok), MessageVerdict::Ack);
    /// ```
    pub fn of(response: &GuardResponse) -> Self {
        let status = response.status();
        if status.is_success() {
            return MessageVerdict::Ack;
        }
        let transient = match response.extensions().get::<Rejection>() {
            Some(d) => d.kind().is_transient(),
            None => status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS,
        };
        if transient {
            MessageVerdict::RetryTransient
        } else {
            MessageVerdict::RetryPermanent
        }
    }

    /// Whether the message was processed.
    ///
    /// ```
    /// assert!(!guard_core::message::MessageVerdict::RetryPermanent.is_ack());
    /// ```
    pub fn is_ack(self) -> bool {
        self == MessageVerdict::Ack
    }

    /// A stable lower-case name for logs: `ack`, `retry_permanent`, `retry_transient`.
    ///
    /// ```
    /// assert_eq!(guard_core::message::MessageVerdict::Ack.as_str(), "ack");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            MessageVerdict::Ack => "ack",
            MessageVerdict::RetryPermanent => "retry_permanent",
            MessageVerdict::RetryTransient => "retry_transient",
        }
    }
}

/// How to run a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchOrder {
    /// One message at a time, in delivery order; the first failure stops the batch and every
    /// later message is reported failed without being run (SQS FIFO, Kinesis, DynamoDB Streams).
    Ordered,
    /// Up to this many messages at once; results still come in delivery order (SQS standard).
    Concurrent(NonZeroUsize),
}

/// One message's result, in the batch's delivery order.
///
/// Its `Debug` shows the answer's status only (never a body) and no error.
#[non_exhaustive]
pub struct MessageResult<E> {
    /// The platform's message id (`Trigger::Message`'s `message_id`), when the request had a
    /// non-empty one: the identifier a partial batch failure names.
    pub message_id: Option<String>,
    /// What the platform must do with the message.
    pub verdict: MessageVerdict,
    /// What the stack did: `Some(Ok(answer))` when it answered (the handler's response or a
    /// rendered rejection), `Some(Err(error))` when it failed with an error (not a refusal),
    /// `None` when the message was not run (an earlier message of an ordered batch failed).
    pub outcome: Option<Result<GuardResponse, E>>,
}

impl<E> fmt::Debug for MessageResult<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// What the stack did, without the answer's body or the error.
        struct Outcome(Option<u16>, bool);
        impl fmt::Debug for Outcome {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    Outcome(Some(status), _) => write!(f, "Answered({status})"),
                    Outcome(None, true) => f.write_str("Errored"),
                    Outcome(None, false) => f.write_str("NotRun"),
                }
            }
        }
        let outcome = match &self.outcome {
            Some(Ok(r)) => Outcome(Some(r.status().as_u16()), false),
            Some(Err(_)) => Outcome(None, true),
            None => Outcome(None, false),
        };
        f.debug_struct("MessageResult")
            .field("message_id", &self.message_id)
            .field("verdict", &self.verdict)
            .field("outcome", &outcome)
            .finish()
    }
}

impl<E> MessageResult<E> {
    /// The stable code of the failure ([`Rejection::failure_code`] of the answer; `guard.message.errored`
    /// for an inner error, `guard.message.not_run` for a message an ordered batch did not run),
    /// `None` when the message was acknowledged (see the [module example](self)).
    pub fn failure_code(&self) -> Option<Cow<'static, str>> {
        if self.verdict.is_ack() {
            return None;
        }
        Some(match &self.outcome {
            Some(Ok(r)) => Rejection::failure_code(r),
            Some(Err(_)) => Cow::Borrowed("guard.message.errored"),
            None => Cow::Borrowed("guard.message.not_run"),
        })
    }

    /// Whether the message failed and has no id: a partial batch failure cannot name it, so the
    /// adapter must fail the whole delivery instead (or lose the message).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use guard_core::message::{BatchOrder, MessageResult};
    /// use guard_core::{GuardRequest, Rejection, RejectionKind};
    /// let refuse = tower::service_fn(|_: GuardRequest| async {
    ///     Ok::<_, std::convert::Infallible>(Rejection::new(RejectionKind::ForbiddenSource).into_response())
    /// });
    /// let results = BatchOrder::Ordered.run(refuse, vec![GuardRequest::new(Default::default())]).await;
    /// assert_eq!(results.iter().position(MessageResult::is_unnamed_failure), Some(0));
    /// # });
    /// ```
    pub fn is_unnamed_failure(&self) -> bool {
        !self.verdict.is_ack() && self.message_id.is_none()
    }
}

impl BatchOrder {
    /// Runs `requests` through `service` in this order (each on its own clone of the stack,
    /// after its own readiness) and returns one result per request, in delivery order.
    ///
    /// A failed message is logged (target `guard::message`, its id, status and verdict; never its
    /// body): the decision itself is the stack's security event.
    pub async fn run<S>(
        self,
        service: S,
        requests: Vec<GuardRequest>,
    ) -> Vec<MessageResult<S::Error>>
    where
        S: Service<GuardRequest, Response = GuardResponse> + Clone,
    {
        match self {
            BatchOrder::Ordered => {
                let mut results = Vec::with_capacity(requests.len());
                let mut failed = false;
                for req in requests {
                    let result = if failed {
                        MessageResult {
                            message_id: message_id(&req),
                            verdict: MessageVerdict::RetryTransient,
                            outcome: None,
                        }
                    } else {
                        run_one(service.clone(), req).await
                    };
                    failed |= !result.verdict.is_ack();
                    results.push(result);
                }
                results
            }
            BatchOrder::Concurrent(n) => {
                stream::iter(requests)
                    .map(move |req| run_one(service.clone(), req))
                    .buffered(n.get())
                    .collect()
                    .await
            }
        }
    }
}

fn message_id(req: &GuardRequest) -> Option<String> {
    match req.extensions().get::<Trigger>() {
        Some(Trigger::Message(m)) if !m.message_id.is_empty() => Some(m.message_id.clone()),
        _ => None,
    }
}

async fn run_one<S>(service: S, req: GuardRequest) -> MessageResult<S::Error>
where
    S: Service<GuardRequest, Response = GuardResponse>,
{
    let message_id = message_id(&req);
    let outcome = service.oneshot(req).await;
    let verdict = match &outcome {
        Ok(resp) => MessageVerdict::of(resp),
        Err(_) => MessageVerdict::RetryTransient,
    };
    if !verdict.is_ack() {
        let status = match &outcome {
            Ok(r) => r.status().as_u16(),
            Err(_) => 500,
        };
        tracing::info!(
            target: "guard::message",
            // Debug-formatted: an id from a forged event cannot break the log line.
            message_id = ?message_id.as_deref().unwrap_or(""),
            status,
            verdict = verdict.as_str(),
            "message failed; reported for redelivery"
        );
    }
    MessageResult {
        message_id,
        verdict,
        outcome: Some(outcome),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;

    use super::*;
    use crate::request::MessageTrigger;
    use crate::{Rejection, RejectionKind};

    fn message(id: &str, body: &'static str) -> GuardRequest {
        let mut req = GuardRequest::new(Bytes::from_static(body.as_bytes()));
        req.extensions_mut()
            .insert(Trigger::Message(MessageTrigger::new("sqs", "arn:q", id)));
        req
    }

    /// Answers by body: `ok` 200, `limited` 429, `boom` an error, `teapot` the handler's 418,
    /// anything else a schema violation; counts its calls and the most calls at once.
    fn stack() -> (
        Arc<AtomicUsize>,
        Arc<AtomicUsize>,
        impl Service<GuardRequest, Response = GuardResponse, Error = &'static str, Future = impl Send>
        + Clone,
    ) {
        let calls = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        let (c, p) = (calls.clone(), peak.clone());
        let svc = tower::service_fn(move |req: GuardRequest| {
            c.fetch_add(1, Ordering::SeqCst);
            let (p, running) = (p.clone(), running.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                running.fetch_sub(1, Ordering::SeqCst);
                match req.body().as_ref() {
                    b"ok" => Ok(GuardResponse::new(Bytes::new())),
                    b"limited" => Ok(Rejection::new(RejectionKind::RateLimited).into_response()),
                    b"boom" => Err("boom"),
                    b"teapot" => {
                        let mut r = GuardResponse::new(Bytes::new());
                        *r.status_mut() = http::StatusCode::IM_A_TEAPOT;
                        Ok(r)
                    }
                    _ => Ok(Rejection::new(RejectionKind::SchemaViolation).into_response()),
                }
            }
        });
        (calls, peak, svc)
    }

    fn verdicts<E>(results: &[MessageResult<E>]) -> Vec<MessageVerdict> {
        results.iter().map(|r| r.verdict).collect()
    }

    #[test]
    fn statuses_map_to_verdicts() {
        let with = |status: u16| {
            let mut r = GuardResponse::new(Bytes::new());
            *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
            MessageVerdict::of(&r)
        };
        assert_eq!(with(200), MessageVerdict::Ack);
        assert_eq!(with(204), MessageVerdict::Ack);
        assert_eq!(with(400), MessageVerdict::RetryPermanent);
        assert_eq!(with(403), MessageVerdict::RetryPermanent);
        assert_eq!(with(429), MessageVerdict::RetryTransient);
        assert_eq!(with(500), MessageVerdict::RetryTransient);
        assert_eq!(with(503), MessageVerdict::RetryTransient);
        let unavailable = Rejection::new(RejectionKind::SecretsUnavailable).into_response();
        assert_eq!(
            MessageVerdict::of(&unavailable),
            MessageVerdict::RetryTransient
        );
    }

    #[tokio::test]
    async fn an_ordered_batch_stops_at_the_first_failure_and_reports_every_later_message() {
        let (calls, peak, svc) = stack();
        let batch = vec![
            message("m0", "ok"),
            message("m1", "bad"),
            message("m2", "ok"),
            message("m3", "ok"),
        ];
        let results = BatchOrder::Ordered.run(svc, batch).await;
        assert_eq!(
            verdicts(&results),
            [
                MessageVerdict::Ack,
                MessageVerdict::RetryPermanent,
                MessageVerdict::RetryTransient,
                MessageVerdict::RetryTransient
            ]
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "nothing after the failure ran"
        );
        assert_eq!(peak.load(Ordering::SeqCst), 1);
        assert!(results[3].outcome.is_none());
        assert_eq!(
            results[3].failure_code().as_deref(),
            Some("guard.message.not_run")
        );
        assert_eq!(results[3].message_id.as_deref(), Some("m3"));
    }

    #[tokio::test]
    async fn a_concurrent_batch_runs_every_message_within_the_bound_in_delivery_order() {
        let (calls, peak, svc) = stack();
        let bodies = [
            "bad", "ok", "limited", "boom", "teapot", "ok", "ok", "ok", "ok", "ok",
        ];
        let batch = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| message(&format!("m{i}"), b))
            .collect();
        let bound = NonZeroUsize::new(3).unwrap();
        let results = BatchOrder::Concurrent(bound).run(svc, batch).await;
        assert_eq!(calls.load(Ordering::SeqCst), bodies.len());
        assert!(peak.load(Ordering::SeqCst) <= 3, "{peak:?}");
        assert!(peak.load(Ordering::SeqCst) > 1, "ran concurrently");
        let ids: Vec<_> = results
            .iter()
            .map(|r| r.message_id.clone().unwrap())
            .collect();
        assert_eq!(ids, (0..10).map(|i| format!("m{i}")).collect::<Vec<_>>());
        assert_eq!(
            verdicts(&results)[..5],
            [
                MessageVerdict::RetryPermanent,
                MessageVerdict::Ack,
                MessageVerdict::RetryTransient,
                MessageVerdict::RetryTransient,
                MessageVerdict::RetryPermanent
            ]
        );
        assert_eq!(
            results[2].failure_code().as_deref(),
            Some("guard.rate.limited")
        );
        assert_eq!(
            results[3].failure_code().as_deref(),
            Some("guard.message.errored")
        );
        assert_eq!(
            results[4].failure_code().as_deref(),
            Some("guard.handler.418")
        );
        assert_eq!(results[1].failure_code(), None);
    }

    #[tokio::test]
    async fn a_result_debug_shows_the_status_never_the_body_or_the_error() {
        let svc = tower::service_fn(|req: GuardRequest| async move {
            if req.body().as_ref() == b"boom" {
                return Err("secret-error");
            }
            let mut r = GuardResponse::new(Bytes::from_static(b"secret-body"));
            *r.status_mut() = http::StatusCode::BAD_REQUEST;
            Ok(r)
        });
        let batch = vec![message("m0", "boom"), message("m1", "x")];
        let errored = BatchOrder::Concurrent(NonZeroUsize::MIN)
            .run(svc, batch)
            .await;
        let batch = vec![message("m0", "x"), message("m1", "x")];
        let ordered = BatchOrder::Ordered.run(svc, batch).await;
        let shown = format!("{errored:?} {ordered:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert_eq!(
            format!("{:?}", ordered[0]),
            "MessageResult { message_id: Some(\"m0\"), verdict: RetryPermanent, outcome: Answered(400) }"
        );
        assert!(format!("{:?}", errored[0]).ends_with("outcome: Errored }"));
        assert!(format!("{:?}", ordered[1]).ends_with("outcome: NotRun }"));
    }

    #[tokio::test]
    async fn a_failure_without_a_message_id_is_found() {
        let (_, _, svc) = stack();
        let mut anonymous = GuardRequest::new(Bytes::from_static(b"bad"));
        anonymous
            .extensions_mut()
            .insert(Trigger::Message(MessageTrigger::new("sqs", "arn:q", "")));
        let batch = vec![message("m0", "bad"), anonymous, message("m2", "ok")];
        let results = BatchOrder::Concurrent(NonZeroUsize::MIN)
            .run(svc, batch)
            .await;
        let unnamed = &results[results
            .iter()
            .position(MessageResult::is_unnamed_failure)
            .expect("the record without an id")];
        assert_eq!(unnamed.message_id, None);
        assert_eq!(unnamed.verdict, MessageVerdict::RetryPermanent);
    }
}
