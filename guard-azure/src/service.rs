//! [`AzureService`]: what the custom handler's server runs. It tells the host's two kinds of
//! request apart and hands each to the Guard stack as the request the client (or queue) sent:
//!
//! - **invocation mode**: `POST /{function}` for a function of the app ([`Functions`]) →
//!   decoded from `{Data, Metadata}` ([`decode`](crate::decode)), answered as `{Outputs, Logs,
//!   ReturnValue}` ([`encode`](crate::encode));
//! - **proxy mode** (`enableProxyingHttpRequest` / `enableForwardingHttpRequest`): any other
//!   request is the client's own, on its original path (`/api/orders`): it goes to the stack as
//!   it came, with the peer the server resolved through the trusted proxies, and is answered
//!   plainly.
//!
//! Both get an `Invocation` on `Cloud::Azure`; Easy Auth headers are removed unless the policy
//! trusts them. With [`event_grid`](AzureService::event_grid), Event Grid's webhook handshakes
//! are answered for the configured subscriptions and origins, and its deliveries are split into
//! one message per event ([`crate::eventgrid`]).
//!
//! The host talks to the handler on loopback only, and proxied requests keep their route prefix
//! (`/api/...`), so a client's request never arrives on `/{function}`: keep a non-empty
//! `routePrefix` in `host.json` (the default `api`), or a client could send an envelope of its own.

use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use guard_core::audit::AuditLayer;
use guard_core::message::BatchOrder;
use guard_core::request::AdapterRefusal;
use guard_core::{GuardRequest, GuardResponse, RejectionKind};
use tower::{Layer, ServiceExt};
use tower_service::Service;

use crate::decode::{
    DecodeOptions, check_proxied_headers, decode_or_refuse, invocation, strip_easy_auth,
};
use crate::eventgrid::{EventGrid, Handshake, delivery_answer, split_delivery};
use crate::functions::{FunctionTrigger, Functions};

/// How many events of one Event Grid delivery run through the stack at once.
const EVENTS_AT_ONCE: NonZeroUsize = NonZeroUsize::new(8).unwrap();

/// Serves invocation mode and proxy mode in front of a Guard stack `S`.
#[derive(Debug, Clone)]
pub struct AzureService<S> {
    inner: S,
    functions: Arc<Functions>,
    options: DecodeOptions,
    event_grid: Option<Arc<(EventGrid, AuditLayer)>>,
}

impl<S> AzureService<S> {
    /// `inner` (a Guard stack around the handler) for the app's `functions`.
    pub fn new(inner: S, functions: Functions, options: DecodeOptions) -> Self {
        Self {
            inner,
            functions: Arc::new(functions),
            options,
            event_grid: None,
        }
    }

    /// Answers Event Grid's handshakes for what `event_grid` allows, each recorded as one
    /// security event through `audit` (the stack's audit layer). Refused handshakes go through
    /// the stack as an [`AdapterRefusal`] (403), so they are recorded once too. Deliveries for
    /// a configured subscription are split into one message per event, each through the stack
    /// ([`crate::eventgrid::split_delivery`], [`crate::eventgrid::delivery_answer`]).
    pub fn event_grid(mut self, event_grid: EventGrid, audit: AuditLayer) -> Self {
        self.event_grid = Some(Arc::new((event_grid, audit)));
        self
    }
}

/// Runs `req` through the stack, or answers it as an Event Grid handshake.
/// `keyed`: whether the host required the function's key for this request (see
/// [`Functions::requires_key`]); Event Grid deliveries are taken only then.
async fn run<S>(
    inner: S,
    event_grid: Option<Arc<(EventGrid, AuditLayer)>>,
    keyed: bool,
    req: GuardRequest,
) -> Result<GuardResponse, S::Error>
where
    S: Service<GuardRequest, Response = GuardResponse> + Clone,
{
    let handshake = match &event_grid {
        Some(eg) if req.extensions().get::<AdapterRefusal>().is_none() => eg.0.classify(&req),
        _ => Handshake::None,
    };
    // Event Grid does not sign deliveries: only a function the host keys may take them, or
    // anyone could post "events" past the request checks of an open function.
    let handshake = match handshake {
        Handshake::Delivery if !keyed => Handshake::Refused(
            RejectionKind::ForbiddenSource,
            "event grid delivery to a function without a key",
        ),
        other => other,
    };
    match handshake {
        Handshake::None => inner.oneshot(req).await,
        Handshake::Granted(granted) => {
            let Some(eg) = event_grid else {
                return inner.oneshot(req).await;
            };
            let answer = tower::service_fn(move |_req: GuardRequest| {
                let resp = granted.clone().into_response();
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            match eg.1.layer(answer).oneshot(req).await {
                Ok(resp) => Ok(resp),
                Err(never) => match never {},
            }
        }
        Handshake::Delivery => {
            let events = match split_delivery(&req) {
                Ok(events) => events,
                Err(refusal) => return inner.oneshot(stand_in(refusal, req)).await,
            };
            let results = BatchOrder::Concurrent(EVENTS_AT_ONCE)
                .run(inner, events)
                .await;
            delivery_answer(results)
        }
        Handshake::Refused(kind, reason) => {
            inner
                .oneshot(stand_in(AdapterRefusal::new(kind, reason), req))
                .await
        }
    }
}

/// The stand-in that refuses `req` with `refusal`: its path and extensions (trigger, peer,
/// invocation), no headers, no body.
fn stand_in(refusal: AdapterRefusal, req: GuardRequest) -> GuardRequest {
    let mut stand_in = refusal.into_request();
    *stand_in.uri_mut() = req.uri().clone();
    let (parts, _) = req.into_parts();
    stand_in.extensions_mut().extend(parts.extensions);
    stand_in
}

impl<S> Service<GuardRequest> for AzureService<S>
where
    S: Service<GuardRequest, Response = GuardResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = GuardResponse;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<GuardResponse, S::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Each request runs on its own clone of the stack, after that clone's readiness.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: GuardRequest) -> Self::Future {
        let inner = self.inner.clone();
        let functions = self.functions.clone();
        let options = self.options;
        let event_grid = self.event_grid.clone();
        Box::pin(async move {
            let function = invoked_function(&req, &functions);
            match function {
                Some((name, trigger)) => {
                    let (parts, body) = req.into_parts();
                    let decoded =
                        decode_or_refuse(&name, &trigger, &parts.headers, &body, &options);
                    let answer = match &trigger {
                        FunctionTrigger::Http { .. } => {
                            let keyed = functions.requires_key(&name);
                            run(inner, event_grid, keyed, decoded).await?
                        }
                        FunctionTrigger::Message { .. } => inner.oneshot(decoded).await?,
                    };
                    Ok(match &trigger {
                        FunctionTrigger::Http { output, .. } => {
                            crate::encode::http_reply(&answer, output)
                        }
                        FunctionTrigger::Message { .. } => crate::encode::message_reply(answer),
                    })
                }
                None => {
                    let mut req = req;
                    let inv = invocation(
                        proxied_function(req.uri().path()),
                        req.headers(),
                        req.headers(),
                    );
                    req.extensions_mut().insert(inv);
                    if let Err(e) = check_proxied_headers(req.headers(), &options) {
                        let refusal =
                            AdapterRefusal::new(RejectionKind::HeadersTooLarge, e.reason());
                        return inner.oneshot(stand_in(refusal, req)).await;
                    }
                    if !options.keep_easy_auth {
                        strip_easy_auth(req.headers_mut());
                    }
                    let keyed = functions.keyed_function_at(req.uri().path()).is_some();
                    run(inner, event_grid, keyed, req).await
                }
            }
        })
    }
}

/// `POST /{function}` for a function of the app: an invocation.
fn invoked_function(
    req: &GuardRequest,
    functions: &Functions,
) -> Option<(String, FunctionTrigger)> {
    if req.method() != http::Method::POST {
        return None;
    }
    let name = req.uri().path().strip_prefix('/')?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    functions.get(name).map(|t| (name.to_owned(), t.clone()))
}

/// The function a proxied request is for: the first path segment after `/api/` (the default
/// route prefix), for the security event.
fn proxied_function(path: &str) -> Option<&str> {
    path.strip_prefix("/api/")?
        .split('/')
        .next()
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn only_a_post_to_a_known_function_is_an_invocation() {
        let functions = Functions::default().with(
            "orders",
            FunctionTrigger::Http {
                binding: "req".into(),
                output: "res".into(),
            },
        );
        let req = |m: &str, p: &str| {
            http::Request::builder()
                .method(m)
                .uri(p)
                .body(Bytes::new())
                .unwrap()
        };
        assert!(invoked_function(&req("POST", "/orders"), &functions).is_some());
        assert!(invoked_function(&req("GET", "/orders"), &functions).is_none());
        assert!(invoked_function(&req("POST", "/api/orders"), &functions).is_none());
        assert!(invoked_function(&req("POST", "/other"), &functions).is_none());
        assert_eq!(proxied_function("/api/orders/1"), Some("orders"));
        assert_eq!(proxied_function("/orders"), None);
    }
}
