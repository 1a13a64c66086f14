//! The stable contract, written out literally: every rejection kind's status, code, layer and
//! transient flag (a renamed code or a changed status fails here), and the ingress limits at
//! their exact edges.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use guard_core::ingress::IngressLayer;
use guard_core::{GuardRequest, GuardResponse, Rejection, RejectionKind};
use tower::{Layer, Service};

use crate::support::{CountingHandler, call, json_post, problem};

#[test]
fn every_rejection_kind_keeps_its_status_code_layer_and_transience() {
    use RejectionKind::*;
    #[rustfmt::skip]
    let golden: [(RejectionKind, u16, &str, &str, bool); 24] = [
        (TooLarge,               413, "guard.ingress.too_large",              "ingress",    false),
        (HeadersTooLarge,        431, "guard.ingress.headers_too_large",      "ingress",    false),
        (RequestTimeout,         408, "guard.ingress.timeout",                "ingress",    false),
        (MalformedEvent,         400, "guard.adapter.malformed_event",        "adapter",    false),
        (TooDeep,                400, "guard.ingress.too_deep",               "ingress",    false),
        (UnsupportedMediaType,   415, "guard.ingress.unsupported_media_type", "ingress",    false),
        (MethodNotAllowed,       405, "guard.ingress.method_not_allowed",     "ingress",    false),
        (MalformedJson,          400, "guard.validate.malformed_json",        "validate",   false),
        (SchemaViolation,        400, "guard.validate.schema",                "validate",   false),
        (InvalidInput,           400, "guard.validate.invalid",               "validate",   false),
        (MissingCredentials,     401, "guard.verify.missing_credentials",     "verify",     false),
        (BadSignature,           401, "guard.verify.bad_signature",           "verify",     false),
        (StaleSignature,         401, "guard.verify.stale",                   "verify",     false),
        (Replayed,               401, "guard.verify.replayed",                "verify",     false),
        (BadToken,               401, "guard.verify.bad_token",               "verify",     false),
        (Forbidden,              403, "guard.verify.forbidden",               "verify",     false),
        (ForbiddenAddress,       403, "guard.verify.forbidden_address",       "verify",     false),
        (ForbiddenSource,        403, "guard.verify.forbidden_source",        "verify",     false),
        (VerifyUnavailable,      503, "guard.verify.unavailable",             "verify",     true),
        (AuthzForbidden,         403, "guard.authz.forbidden",                "authz",      false),
        (RateLimited,            429, "guard.rate.limited",                   "rate_limit", true),
        (RateBackendUnavailable, 503, "guard.rate.backend_unavailable",       "rate_limit", true),
        (SecretsUnavailable,     503, "guard.secrets.unavailable",            "secrets",    true),
        (Internal,               500, "guard.internal",                       "guard",      true),
    ];
    for (kind, status, code, layer, transient) in golden {
        assert_eq!(kind.status().as_u16(), status, "{kind:?} status");
        assert_eq!(kind.code(), code, "{kind:?} code");
        assert_eq!(kind.layer(), layer, "{kind:?} layer");
        assert_eq!(kind.is_transient(), transient, "{kind:?} transient");
        // The rendered refusal says the same: status line, problem body and `type`.
        let resp = Rejection::new(kind).into_response();
        assert_eq!(resp.status().as_u16(), status, "{kind:?} response status");
        let body = problem(&resp);
        assert_eq!(body["code"], code);
        assert_eq!(body["status"], status);
        assert_eq!(body["type"], format!("urn:guard:problem:{code}"));
    }
}

fn layer(max_body: u64, max_depth: u32) -> IngressLayer {
    IngressLayer::new()
        .max_body_bytes(max_body)
        .max_depth(max_depth)
        .content_types(["application/json"])
        .methods([http::Method::POST])
}

async fn status(l: IngressLayer, req: GuardRequest) -> u16 {
    let mut svc = l.layer(CountingHandler::default());
    call(&mut svc, req).await.status().as_u16()
}

#[tokio::test]
async fn the_size_limit_admits_exactly_the_limit() {
    let body = |n: usize| {
        let mut b = vec![b' '; n];
        b[0] = b'[';
        b[n - 1] = b']';
        b
    };
    assert_eq!(status(layer(64, 4), json_post(&body(64))).await, 201);
    assert_eq!(status(layer(64, 4), json_post(&body(65))).await, 413);
    let declared = |n: &str| {
        let mut r = json_post(b"[]");
        r.headers_mut().insert("content-length", n.parse().unwrap());
        r
    };
    assert_eq!(status(layer(64, 4), declared("64")).await, 201);
    assert_eq!(status(layer(64, 4), declared("65")).await, 413);
}

#[tokio::test]
async fn wide_but_shallow_json_at_max_depth_is_admitted() {
    // Depth goes back down at every closing bracket: 500 siblings at depth 2 are depth 2.
    let mut wide = b"[".to_vec();
    wide.extend(b"{},".repeat(499));
    wide.extend(b"{}]");
    assert_eq!(status(layer(4096, 2), json_post(&wide)).await, 201);
    let mut arrays = b"{\"a\":[".to_vec();
    arrays.extend(b"[],".repeat(300));
    arrays.extend(b"[]]}");
    assert_eq!(status(layer(4096, 3), json_post(&arrays)).await, 201);
    // One level more is refused.
    assert_eq!(status(layer(4096, 2), json_post(b"[[{}]]")).await, 400);
}

/// Not ready until `ready` is set; counts how often it was polled.
#[derive(Clone, Default)]
struct Gate {
    ready: Arc<AtomicBool>,
    polls: Arc<AtomicUsize>,
}

impl Service<GuardRequest> for Gate {
    type Response = GuardResponse;
    type Error = Infallible;
    type Future = std::future::Ready<Result<GuardResponse, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        if self.ready.load(Ordering::SeqCst) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, _: GuardRequest) -> Self::Future {
        std::future::ready(Ok(http::Response::new(Bytes::new())))
    }
}

#[test]
fn ingress_is_ready_only_when_its_inner_service_is() {
    let gate = Gate::default();
    let mut svc = layer(64, 4).layer(gate.clone());
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_pending());
    assert_eq!(gate.polls.load(Ordering::SeqCst), 1);
    gate.ready.store(true, Ordering::SeqCst);
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    assert_eq!(gate.polls.load(Ordering::SeqCst), 2);
}
