//! Shared helpers: a handler that counts its calls, and request builders.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use guard_core::{GuardRequest, GuardResponse};
use tower::{Service, ServiceExt};

/// A handler that answers 201 and counts how often it ran.
#[derive(Clone, Default)]
pub(crate) struct CountingHandler {
    pub(crate) calls: Arc<AtomicUsize>,
}

impl CountingHandler {
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Service<GuardRequest> for CountingHandler {
    type Response = GuardResponse;
    type Error = Infallible;
    type Future = std::future::Ready<Result<GuardResponse, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: GuardRequest) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut r = http::Response::new(Bytes::from_static(b"{\"ok\":true}"));
        *r.status_mut() = http::StatusCode::CREATED;
        std::future::ready(Ok(r))
    }
}

pub(crate) fn json_post(body: &[u8]) -> GuardRequest {
    http::Request::post("/orders")
        .header("content-type", "application/json")
        .body(Bytes::copy_from_slice(body))
        .unwrap()
}

pub(crate) async fn call<S>(svc: &mut S, req: GuardRequest) -> GuardResponse
where
    S: Service<GuardRequest, Response = GuardResponse, Error = Infallible>,
{
    svc.ready().await.unwrap().call(req).await.unwrap()
}

/// Parses a problem+json body and checks its exact field set.
pub(crate) fn problem(resp: &GuardResponse) -> serde_json::Map<String, serde_json::Value> {
    assert_eq!(
        resp.headers()["content-type"],
        "application/problem+json",
        "rejections are problem+json"
    );
    let body: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(resp.body()).expect("problem body is JSON");
    for key in ["type", "title", "status", "code"] {
        assert!(body.contains_key(key), "problem has `{key}`");
    }
    assert_eq!(body["status"], resp.status().as_u16());
    body
}

pub(crate) fn repo_file(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join(rel)
}
