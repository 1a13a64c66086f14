//! Heap allocations per request on the CIDR + in-memory rate limit allow path (issue 7: the
//! target is zero), counted by an instrumenting global allocator (`stats_alloc`).
//!
//! `cargo bench -p guard-core --bench alloc_count`. Prints one line per step: the checks alone
//! (CIDR allow-list, bucket key, `MemoryBackend::check`), each layer around a handler that does not
//! allocate, and the two together. Requests are built before the counted region; only allocations
//! made while the request runs (and its response is dropped) are counted. Nothing is asserted:
//! these are measurements.

use std::alloc::System;
use std::convert::Infallible;
use std::hint::black_box;
use std::num::NonZeroU32;

use bytes::Bytes;
use guard_core::audit::{AuditLayer, JsonLinesSink};
use guard_core::rate_limit::key::{self, BucketKey, RateKey};
use guard_core::rate_limit::{MemoryBackend, Rate, RateLimitLayer};
use guard_core::request::Peer;
use guard_core::secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
use guard_core::verify::{CidrVerifier, VerifyLayer};
use guard_core::{GuardBuilder, GuardDeps, GuardRequest, GuardResponse};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::{Layer, Service, ServiceBuilder, service_fn};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const CALLS: usize = 10_000;

fn unlimited() -> Rate {
    // Never exhausted by this loop, with counts like a real policy's (burst 100).
    Rate::per_second(NonZeroU32::new(1_000_000_000).unwrap())
        .with_burst(NonZeroU32::new(100).unwrap())
}

thread_local! {
    /// The body of the requests: `{}` for the single layers, the order for the full stack.
    static BODY: std::cell::RefCell<Bytes> = const { std::cell::RefCell::new(Bytes::from_static(b"{}")) };
}

fn request() -> GuardRequest {
    let mut req = http::Request::post("/orders")
        .header("content-type", "application/json")
        .body(BODY.with(|b| b.borrow().clone()))
        .unwrap();
    req.extensions_mut()
        .insert(Peer::new("203.0.113.7".parse().unwrap()));
    req
}

/// A handler like any JSON handler: a static body and a `content-type` (so the response's header
/// map is allocated by the handler, not by the first layer that adds a header).
async fn handler(_req: GuardRequest) -> Result<GuardResponse, Infallible> {
    let mut r = http::Response::new(Bytes::from_static(b"{}"));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

fn block<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// Allocations and bytes per call of `f` (after a warm-up of the same length).
fn per_call(name: &str, mut f: impl FnMut()) {
    for _ in 0..CALLS {
        f();
    }
    let region = Region::new(GLOBAL);
    for _ in 0..CALLS {
        f();
    }
    let s = region.change();
    println!(
        "{name:<58} {:>6.2} allocs/call {:>8.1} bytes/call {:>6.2} reallocs/call",
        s.allocations as f64 / CALLS as f64,
        s.bytes_allocated as f64 / CALLS as f64,
        s.reallocations as f64 / CALLS as f64,
    );
}

/// Counts a service call: a fresh request per call, built outside the counted region. Prints the
/// count and the count over the bare handler's.
fn service_per_call<S>(name: &str, bare: f64, mut svc: S) -> f64
where
    S: Service<GuardRequest, Response = GuardResponse, Error = Infallible>,
{
    let mut requests: Vec<GuardRequest> = (0..2 * CALLS).map(|_| request()).collect();
    for _ in 0..CALLS {
        let Ok(resp) = block(svc.call(requests.pop().unwrap()));
        assert!(
            resp.status().is_success(),
            "{name}: the allow path must be taken"
        );
    }
    let region = Region::new(GLOBAL);
    for _ in 0..CALLS {
        let resp = block(svc.call(requests.pop().unwrap()));
        let _ = black_box(resp);
    }
    let s = region.change();
    let allocs = s.allocations as f64 / CALLS as f64;
    println!(
        "{name:<58} {allocs:>6.2} allocs/call {:>8.1} bytes/call {:>6.2} reallocs/call ({:+.2} over bare)",
        s.bytes_allocated as f64 / CALLS as f64,
        s.reallocations as f64 / CALLS as f64,
        allocs - bare,
    );
    allocs
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is accepted and ignored.
    let ip = "203.0.113.7".parse().unwrap();
    let nets = [
        "203.0.113.0/24".parse().unwrap(),
        "198.51.100.0/24".parse().unwrap(),
    ];
    let cidr = CidrVerifier::new(nets);
    println!("allocations per request, allow path ({CALLS} calls after {CALLS} warm-up calls)");
    per_call("check: CidrVerifier::allows", || {
        black_box(cidr.allows(black_box(ip)));
    });
    let req = request();
    per_call("check: key::Peer.key(&req)", || {
        black_box(key::Peer.key(black_box(&req)));
    });
    let mem = MemoryBackend::new(unlimited());
    let k = BucketKey::peer(ip);
    per_call("check: MemoryBackend::check (peer key)", || {
        black_box(mem.check(black_box(&k)));
    });

    let bare = service_per_call("layer: bare handler", 0.0, service_fn(handler));
    service_per_call(
        "layer: RateLimit(memory, peer)",
        bare,
        RateLimitLayer::memory(unlimited(), key::Peer).layer(service_fn(handler)),
    );
    service_per_call(
        "layer: RateLimit(memory, peer), no headers on allow",
        bare,
        RateLimitLayer::memory(unlimited(), key::Peer)
            .headers_on_allow(false)
            .layer(service_fn(handler)),
    );
    service_per_call(
        "layer: Verify(CIDR)",
        bare,
        VerifyLayer::new(cidr.clone()).layer(service_fn(handler)),
    );
    service_per_call(
        "stack: RateLimit(peer) > Verify(CIDR)",
        bare,
        ServiceBuilder::new()
            .layer(RateLimitLayer::memory(unlimited(), key::Peer))
            .layer(VerifyLayer::new(cidr.clone()))
            .service_fn(handler),
    );
    service_per_call(
        "stack: RateLimit(peer) > Verify(CIDR) > RateLimit(principal)",
        bare,
        ServiceBuilder::new()
            .layer(RateLimitLayer::memory(unlimited(), key::Peer))
            .layer(VerifyLayer::new(cidr.clone()))
            .layer(RateLimitLayer::memory(unlimited(), key::Principal))
            .service_fn(handler),
    );
    // The whole orders stack (audit to a null sink, ingress, both limiters, CIDR-or-HMAC, strict
    // parse + schema, cached secret) on the orders payload, for reference.
    let policy = {
        let mut p = guard_core::Policy::load(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/orders/guard.toml"),
        )
        .unwrap();
        let rate = p.rate_limit.as_mut().unwrap();
        rate.per_second = Some(1_000_000_000);
        rate.burst = Some(100);
        p
    };
    let store = SecretStore::new(
        |name: &str, _: SecretVersion| -> Result<SecretValue, SecretsError> {
            match name {
                "orders-api-key" => Ok(SecretValue::from("k")),
                _ => Err(SecretsError::not_found(name)),
            }
        },
    );
    let sink = JsonLinesSink::new(std::io::sink(), 1 << 16);
    let guard = GuardBuilder::from_policy_with(&policy, GuardDeps::with_secrets(store))
        .unwrap()
        .audit(AuditLayer::new(sink.clone()))
        .build();
    let order = Bytes::from(
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/orders/order.json"),
        )
        .unwrap(),
    );
    BODY.with(|b| *b.borrow_mut() = order);
    service_per_call(
        "stack: the full orders stack (orders payload)",
        bare,
        guard.wrap(service_fn(handler)),
    );
    sink.flush(std::time::Duration::from_secs(5));
}
