//! Heap allocations per request on the CIDR + in-memory rate limit allow path (issue 7: the
//! target is zero), counted by an instrumenting global allocator (`stats_alloc`).
//!
//! `cargo bench -p guard-core --bench alloc_count`. Prints one line per step: the checks alone
//! (CIDR allow-list, bucket keys, `MemoryBackend::check`), each layer around a handler whose only
//! allocations are its response's header map, the CIDR + rate-limit stacks, and the whole orders
//! stack. Requests are built before the counted region; only allocations made while the request
//! runs (and its response is dropped) are counted. Nothing is asserted: these are measurements.
//!
//! The audit sink's writer thread would otherwise be counted too (the allocator is global): it is
//! parked in its first `write` before the counted region starts, so the events of the region wait
//! in the queue and only the request thread's allocations are counted.

use std::alloc::System;
use std::convert::Infallible;
use std::hint::black_box;
use std::num::NonZeroU32;

use bytes::Bytes;
use std::sync::mpsc;

use guard_core::audit::{AuditLayer, JsonLinesSink};
use guard_core::ingress::IngressLayer;
use guard_core::rate_limit::key::{self, BucketKey};
use guard_core::rate_limit::{MemoryBackend, Rate, RateLimitLayer};
use guard_core::request::Peer;
use guard_core::secrets::SecretsLayer;
use guard_core::verify::{CidrVerifier, Verifier, VerifyLayer};
use guard_core::{GuardBuilder, GuardDeps, GuardRequest, GuardResponse};
use guard_secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
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
        "{name:<62} {:>6.2} allocs/call {:>8.1} bytes/call {:>6.2} reallocs/call",
        s.allocations as f64 / CALLS as f64,
        s.bytes_allocated as f64 / CALLS as f64,
        s.reallocations as f64 / CALLS as f64,
    );
}

/// Counts a service call: a fresh request per call, built outside the counted region. Prints the
/// count and the count over the bare handler's.
fn service_per_call<S>(name: &str, bare: f64, svc: S) -> f64
where
    S: Service<GuardRequest, Response = GuardResponse, Error = Infallible>,
{
    service_per_call_with(name, bare, svc, || {})
}

/// [`service_per_call`], running `settle` between the warm-up and the counted region.
fn service_per_call_with<S>(name: &str, bare: f64, mut svc: S, settle: impl FnOnce()) -> f64
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
    settle();
    let region = Region::new(GLOBAL);
    for _ in 0..CALLS {
        let resp = block(svc.call(requests.pop().unwrap()));
        let _ = black_box(resp);
    }
    let s = region.change();
    let allocs = s.allocations as f64 / CALLS as f64;
    println!(
        "{name:<62} {allocs:>6.2} allocs/call {:>8.1} bytes/call {:>6.2} reallocs/call ({:+.2} over bare)",
        s.bytes_allocated as f64 / CALLS as f64,
        s.reallocations as f64 / CALLS as f64,
        allocs - bare,
    );
    allocs
}

/// A writer that parks the audit writer thread in its first `write` until released, so that the
/// events of the counted region are queued but not formatted (see the module docs).
struct GatedWriter {
    parked: mpsc::Sender<()>,
    release: mpsc::Receiver<()>,
    open: bool,
}

impl std::io::Write for GatedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.open {
            let _ = self.parked.send(());
            let _ = self.release.recv();
            self.open = true;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A sink whose writer can be parked: `(sink, wait_until_parked, release)`.
fn gated_sink() -> (JsonLinesSink, impl FnOnce(), impl FnOnce()) {
    let (parked_tx, parked_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let sink = JsonLinesSink::new(
        GatedWriter {
            parked: parked_tx,
            release: release_rx,
            open: false,
        },
        1 << 16,
    );
    let wait = move || {
        let _ = parked_rx.recv();
    };
    let release = move || {
        let _ = release_tx.send(());
    };
    (sink, wait, release)
}

fn secret_store() -> SecretStore {
    SecretStore::new(
        |name: &str, _: SecretVersion| -> Result<SecretValue, SecretsError> {
            match name {
                "orders-api-key" => Ok(SecretValue::from("k")),
                _ => Err(SecretsError::not_found(name)),
            }
        },
    )
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
    per_call("check: key::RateKey::peer().key(&req)", || {
        black_box(key::RateKey::peer().key(black_box(&req)));
    });
    let mem = MemoryBackend::new(unlimited());
    let k = BucketKey::peer(ip);
    per_call("check: MemoryBackend::check (peer key)", || {
        black_box(mem.check(black_box(&k)));
    });
    let mut verified = request();
    let principal = cidr.verify_now(&verified).unwrap().unwrap();
    verified.extensions_mut().insert(principal);
    per_call(
        "check: key::RateKey::principal().key(&req) (network principal)",
        || {
            black_box(key::RateKey::principal().key(black_box(&verified)));
        },
    );
    let pk = key::RateKey::principal().key(&verified).unwrap();
    let mem = MemoryBackend::new(unlimited());
    per_call(
        "check: MemoryBackend::check (network principal key)",
        || {
            black_box(mem.check(black_box(&pk)));
        },
    );
    per_call("check: CidrVerifier::verify_now (principal built)", || {
        black_box(cidr.verify_now(black_box(&verified)));
    });

    let bare = service_per_call("layer: bare handler", 0.0, service_fn(handler));
    service_per_call(
        "layer: RateLimit(memory, peer)",
        bare,
        RateLimitLayer::memory(unlimited(), key::RateKey::peer()).layer(service_fn(handler)),
    );
    service_per_call(
        "layer: RateLimit(memory, peer), no headers on allow",
        bare,
        RateLimitLayer::memory(unlimited(), key::RateKey::peer())
            .headers_on_allow(false)
            .layer(service_fn(handler)),
    );
    service_per_call(
        "layer: Verify(CIDR)",
        bare,
        VerifyLayer::new(cidr.clone()).layer(service_fn(handler)),
    );
    service_per_call(
        "layer: Ingress (defaults: application/json, depth 32)",
        bare,
        IngressLayer::new().layer(service_fn(handler)),
    );
    let store = secret_store();
    let secrets = SecretsLayer::new(store.clone()).require("orders-api-key");
    block(secrets.prefetch()).unwrap();
    service_per_call(
        "layer: Secrets (one required secret, cached)",
        bare,
        secrets.layer(service_fn(handler)),
    );
    let (sink, parked, release) = gated_sink();
    service_per_call_with(
        "layer: Audit (JsonLinesSink)",
        bare,
        AuditLayer::new(sink.clone()).layer(service_fn(handler)),
        parked,
    );
    release();
    sink.flush(std::time::Duration::from_secs(5));
    let (sink, parked, release) = gated_sink();
    service_per_call_with(
        "stack: Audit > Verify(CIDR)",
        bare,
        ServiceBuilder::new()
            .layer(AuditLayer::new(sink.clone()))
            .layer(VerifyLayer::new(cidr.clone()))
            .service_fn(handler),
        parked,
    );
    release();
    sink.flush(std::time::Duration::from_secs(5));
    service_per_call(
        "stack: RateLimit(peer) > Verify(CIDR)",
        bare,
        ServiceBuilder::new()
            .layer(RateLimitLayer::memory(unlimited(), key::RateKey::peer()))
            .layer(VerifyLayer::new(cidr.clone()))
            .service_fn(handler),
    );
    service_per_call(
        "stack: RateLimit(peer) > Verify(CIDR) > RateLimit(principal)",
        bare,
        ServiceBuilder::new()
            .layer(RateLimitLayer::memory(unlimited(), key::RateKey::peer()))
            .layer(VerifyLayer::new(cidr.clone()))
            .layer(RateLimitLayer::memory(
                unlimited(),
                key::RateKey::principal(),
            ))
            .service_fn(handler),
    );
    // The whole orders stack (audit to a null sink, ingress, both limiters, CIDR-or-HMAC, strict
    // parse + schema, cached secret) on the orders payload, for reference.
    let policy = {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/orders");
        let text = std::fs::read_to_string(dir.join("guard.toml")).unwrap();
        let raised = text
            .replacen("per_second = 5\n", "per_second = 1000000000\n", 1)
            .replacen("burst = 10\n", "burst = 100\n", 1);
        assert!(raised.contains("per_second = 1000000000\n") && raised.contains("burst = 100\n"));
        let schema = std::fs::read_to_string(dir.join("order.schema.json")).unwrap();
        guard_core::Policy::from_toml_str_with_schema(&raised, &schema).unwrap()
    };
    let (sink, parked, release) = gated_sink();
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
    service_per_call_with(
        "stack: the full orders stack (orders payload)",
        bare,
        guard.wrap(service_fn(handler)),
        parked,
    );
    release();
    sink.flush(std::time::Duration::from_secs(5));
}
