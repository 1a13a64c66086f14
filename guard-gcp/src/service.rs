//! [`GcpLayer`]: Cloud Run's routes through a Guard stack.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use guard_core::message::MessageVerdict;
use guard_core::request::Invocation;
use guard_core::{GuardRequest, GuardResponse, Policy};
use http::{Method, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::decode;

/// The default bound on decoded message data when no policy says (1 MiB).
const DEFAULT_MAX_DATA: usize = 1024 * 1024;

#[derive(Debug)]
struct Routes {
    pubsub: String,
    events: String,
    max_data: usize,
    invocation: Invocation,
}

/// Routes what Cloud Run delivers through a Guard stack and answers as the platform expects.
///
/// | request | decoded as | answer |
/// |---|---|---|
/// | `POST` on the push path (default `/pubsub`) | [`decode::pubsub`] | [`push_answer`]: an accepted message is acknowledged with an ack status, a refused one never is |
/// | `POST` on the events path (default `/events`) | [`decode::cloud_event`] | [`push_answer`] (Eventarc delivers through a push subscription) |
/// | anything else | plain HTTP | the stack's answer as it is |
///
/// Every request gets the [`Invocation`](guard_core::request::Invocation) from Cloud Run's
/// environment and its trace.
///
/// ```
/// use guard_core::{GuardRequest, GuardResponse};
/// use guard_gcp::GcpLayer;
/// use tower::{Layer, ServiceExt};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let handler = tower::service_fn(|_req: GuardRequest| async {
///     let mut resp = GuardResponse::new(bytes::Bytes::new());
///     *resp.status_mut() = http::StatusCode::NON_AUTHORITATIVE_INFORMATION; // 203
///     Ok::<_, std::convert::Infallible>(resp)
/// });
/// let svc = GcpLayer::new().layer(handler);
/// let mut push = GuardRequest::new(
///     r#"{"message":{"data":"e30=","messageId":"1"},"subscription":"s"}"#.into(),
/// );
/// *push.method_mut() = http::Method::POST;
/// *push.uri_mut() = "/pubsub".parse().unwrap();
/// let resp = svc.oneshot(push).await.unwrap();
/// assert_eq!(resp.status(), 200); // 203 is a nack for Pub/Sub: the accepted message is acked
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct GcpLayer {
    routes: Arc<Routes>,
}

impl Default for GcpLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl GcpLayer {
    /// Push on `/pubsub`, CloudEvents on `/events`, data up to 1 MiB, the invocation from
    /// `K_SERVICE`, `K_REVISION` and `GOOGLE_CLOUD_PROJECT`.
    pub fn new() -> Self {
        Self {
            routes: Arc::new(Routes {
                pubsub: "/pubsub".into(),
                events: "/events".into(),
                max_data: DEFAULT_MAX_DATA,
                invocation: decode::invocation_from_env(),
            }),
        }
    }

    /// As [`new`](Self::new), with message data bounded by the policy's `[ingress]
    /// max_body_bytes`.
    ///
    /// ```
    /// let policy = guard_core::Policy::from_toml_str("[ingress]\nmax_body_bytes = 1024").unwrap();
    /// let layer = guard_gcp::GcpLayer::from_policy(&policy);
    /// # let _ = layer;
    /// ```
    pub fn from_policy(policy: &Policy) -> Self {
        let max = usize::try_from(policy.max_body_bytes()).unwrap_or(usize::MAX);
        Self::new().map(|r| r.max_data = max)
    }

    /// The path Pub/Sub pushes to.
    pub fn pubsub_path(self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.map(|r| r.pubsub = path)
    }

    /// The path Eventarc (or any CloudEvents sender) posts to.
    pub fn events_path(self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.map(|r| r.events = path)
    }

    fn map(self, f: impl FnOnce(&mut Routes)) -> Self {
        let mut routes = Arc::try_unwrap(self.routes).unwrap_or_else(|shared| Routes {
            pubsub: shared.pubsub.clone(),
            events: shared.events.clone(),
            max_data: shared.max_data,
            invocation: shared.invocation.clone(),
        });
        f(&mut routes);
        Self {
            routes: Arc::new(routes),
        }
    }
}

impl<S> Layer<S> for GcpLayer {
    type Service = GcpService<S>;

    fn layer(&self, inner: S) -> GcpService<S> {
        GcpService {
            inner,
            routes: self.routes.clone(),
        }
    }
}

/// The service [`GcpLayer`] makes.
#[derive(Debug, Clone)]
pub struct GcpService<S> {
    inner: S,
    routes: Arc<Routes>,
}

impl<S> Service<GuardRequest> for GcpService<S>
where
    S: Service<GuardRequest, Response = GuardResponse>,
    S::Future: Send + 'static,
{
    type Response = GuardResponse;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<GuardResponse, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: GuardRequest) -> Self::Future {
        let routes = &self.routes;
        let post = req.method() == Method::POST;
        let path = req.uri().path();
        let (req, message) = if post && path == routes.pubsub {
            (decode::pubsub(req, routes.max_data), true)
        } else if post && path == routes.events {
            (decode::cloud_event(req, routes.max_data), true)
        } else {
            (req, false)
        };
        let req = decode::with_invocation(req, &routes.invocation);
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            Ok(if message { push_answer(resp) } else { resp })
        })
    }
}

/// The answer to a push delivery: Pub/Sub acknowledges only 102, 200, 201, 202 and 204. An
/// accepted message answered with another 2xx (203, 205, 206...) is acknowledged with 200 (body
/// kept); a refusal keeps its 4xx / 5xx status, which Pub/Sub treats as a nack and redelivers.
///
/// ```
/// use guard_core::{GuardResponse, Rejection, RejectionKind};
/// let mut partial = GuardResponse::new(bytes::Bytes::new());
/// *partial.status_mut() = http::StatusCode::PARTIAL_CONTENT;
/// assert_eq!(guard_gcp::push_answer(partial).status(), 200);
/// let refused = Rejection::new(RejectionKind::ForbiddenSource).into_response();
/// assert_eq!(guard_gcp::push_answer(refused).status(), 403);
/// ```
pub fn push_answer(mut resp: GuardResponse) -> GuardResponse {
    let acked = matches!(resp.status().as_u16(), 102 | 200 | 201 | 202 | 204);
    if MessageVerdict::of(&resp).is_ack() && !acked {
        *resp.status_mut() = StatusCode::OK;
    }
    resp
}
