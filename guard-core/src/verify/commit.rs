//! [`ReplayCommitLayer`]: records the signatures verified for a request once it is admitted.

use std::mem;

use crate::future::MaybeBoxFuture;
use crate::replay::PendingReplays;
use crate::request::GuardRequest;

/// Records the [`PendingReplays`] a [`VerifyLayer`](super::VerifyLayer) left on the request, each
/// with insert-if-absent, before the inner service runs. Of two concurrent copies of one signed
/// request exactly one gets through; the other is 401 `guard.verify.replayed`, and a store that
/// cannot answer is 503 `guard.verify.unavailable` (fail closed). A request with nothing pending
/// passes straight through.
///
/// The [`Guard`](crate::Guard) places it just before the handler, after the per-principal rate
/// limit and every other check, so a request refused on the way (429 with `Retry-After`, a
/// transient 503) has not used its signature up and its retry succeeds.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayCommitLayer;

crate::macros::layer_service! {
    /// The service built by [`ReplayCommitLayer`].
    #[derive(Debug, Clone)]
    pub struct ReplayCommit<S> from ReplayCommitLayer {}
}

crate::macros::opaque_future! {
    /// The response future of [`ReplayCommit`].
    pub type CommitFuture<F, E> = MaybeBoxFuture<F, E>;
}

crate::macros::forwarding_service! {
impl owning for ReplayCommit<S> {
    type Future = CommitFuture<S::Future, S::Error>;

    fn call(&mut self, mut req: GuardRequest) -> Self::Future {
        let pending = match req.extensions_mut().remove::<PendingReplays>() {
            Some(p) if !p.is_empty() => p,
            _ => return CommitFuture::new(MaybeBoxFuture::inner(self.inner.call(req))),
        };
        // The ready service is the one we were polled on: take it, leave a clone behind.
        let clone = self.inner.clone();
        let mut inner = mem::replace(&mut self.inner, clone);
        CommitFuture::new(MaybeBoxFuture::boxed(Box::pin(async move {
            match pending.commit().await {
                Ok(()) => inner.call(req).await,
                Err(rejection) => Ok(rejection.into_response()),
            }
        })))
    }
}
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_request_with_nothing_pending_passes_through() {
        use crate::verify::ReplayCommitLayer;
        use bytes::Bytes;
        use tower::{Layer, Service, ServiceExt};

        let mut svc =
            ReplayCommitLayer.layer(tower::service_fn(|_r: http::Request<Bytes>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(Bytes::from_static(b"ok")))
            }));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let resp = rt.block_on(async {
            svc.ready()
                .await
                .unwrap()
                .call(http::Request::new(Bytes::new()))
                .await
                .unwrap()
        });
        assert_eq!(resp.status(), 200); // nothing pending
    }
}
