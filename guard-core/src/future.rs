//! Response futures shared by the layers, behind each layer's opaque `ResponseFuture`
//! (`crate::macros::opaque_future!`).
//!
//! Synchronous checks (ingress, CIDR, in-memory rate limit, schema) either answer at once with a
//! rendered rejection or hand the request to the inner service: [`CheckFuture`] covers both without
//! boxing. Layers whose checks are asynchronous (JWKS, Redis, secrets) use [`BoxResponseFuture`], and
//! layers that usually answer at once but sometimes must wait (verify, secrets, rate limit) use
//! [`MaybeBoxFuture`]. A refusal polled again after it completed answers a 500 instead of hanging.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::request::GuardResponse;

/// A boxed response future, for layers whose checks await something.
pub(crate) type BoxResponseFuture<E> =
    Pin<Box<dyn Future<Output = Result<GuardResponse, E>> + Send>>;

pin_project! {
    /// Either an immediate response (a rejection) or the inner service's future.
    pub(crate) struct CheckFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Rejected { response: Option<GuardResponse> },
        Inner { #[pin] future: F },
    }
}

#[cfg_attr(
    not(any(
        feature = "ingress",
        feature = "validate",
        feature = "audit",
        feature = "authz"
    )),
    allow(dead_code)
)]
impl<F> CheckFuture<F> {
    /// A future that resolves to `response` at once.
    pub(crate) fn rejected(response: GuardResponse) -> Self {
        CheckFuture {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }

    /// A future that awaits the inner service.
    pub(crate) fn inner(future: F) -> Self {
        CheckFuture {
            state: State::Inner { future },
        }
    }
}

impl<F, E> Future for CheckFuture<F>
where
    F: Future<Output = Result<GuardResponse, E>>,
{
    type Output = Result<GuardResponse, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Rejected { response } => answer_once(response),
            StateProj::Inner { future } => future.poll(cx),
        }
    }
}

pin_project! {
    /// The inner service's future (a check answered at once), an immediate response, or a boxed
    /// future when the check had to wait: the synchronous answers cost no allocation.
    pub(crate) struct MaybeBoxFuture<F, E> {
        #[pin]
        state: MaybeState<F, E>,
    }
}

pin_project! {
    #[project = MaybeStateProj]
    enum MaybeState<F, E> {
        Inner { #[pin] future: F },
        Rejected { response: Option<GuardResponse> },
        Boxed { future: BoxResponseFuture<E> },
    }
}

impl<F, E> std::fmt::Debug for MaybeBoxFuture<F, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MaybeBoxFuture")
    }
}

impl<F, E> MaybeBoxFuture<F, E> {
    /// A future that resolves to `response` at once.
    pub(crate) fn rejected(response: GuardResponse) -> Self {
        MaybeBoxFuture {
            state: MaybeState::Rejected {
                response: Some(response),
            },
        }
    }

    /// A future that awaits the inner service.
    pub(crate) fn inner(future: F) -> Self {
        MaybeBoxFuture {
            state: MaybeState::Inner { future },
        }
    }

    /// A future that awaits a boxed check (and the inner service after it).
    pub(crate) fn boxed(future: BoxResponseFuture<E>) -> Self {
        MaybeBoxFuture {
            state: MaybeState::Boxed { future },
        }
    }
}

impl<F, E> Future for MaybeBoxFuture<F, E>
where
    F: Future<Output = Result<GuardResponse, E>>,
{
    type Output = Result<GuardResponse, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            MaybeStateProj::Inner { future } => future.poll(cx),
            MaybeStateProj::Rejected { response } => answer_once(response),
            MaybeStateProj::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}

/// The refusal the first time; [`polled_after_completion`] after that.
fn answer_once<E>(response: &mut Option<GuardResponse>) -> Poll<Result<GuardResponse, E>> {
    Poll::Ready(Ok(response.take().unwrap_or_else(polled_after_completion)))
}

/// What a refusal future answers when it is polled again after it completed: a 500 with the
/// reason in the security event, rather than a panic or a `Pending` that would hang the caller
/// without a wake-up.
fn polled_after_completion() -> GuardResponse {
    crate::Rejection::new(crate::RejectionKind::Internal)
        .with_reason("response future polled after completion")
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    #[test]
    fn a_completed_refusal_polled_again_answers_500_instead_of_hanging() {
        let refusal = crate::Rejection::new(crate::RejectionKind::TooLarge).into_response();
        let mut f = std::pin::pin!(MaybeBoxFuture::<
            std::future::Ready<Result<GuardResponse, ()>>,
            (),
        >::rejected(refusal));
        let mut cx = Context::from_waker(Waker::noop());
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(r)) => assert_eq!(r.status(), 413),
            other => panic!("first poll: {other:?}"),
        }
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(r)) => assert_eq!(r.status(), 500),
            other => panic!("second poll: {other:?}"),
        }
    }
}
