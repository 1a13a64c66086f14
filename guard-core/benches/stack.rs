//! The full orders stack (`examples/orders/guard.toml`, built as `examples/aws-orders` builds it):
//! build time from the policy, the allow path, and every denial path.
//!
//! `cargo bench -p guard-core --bench stack`. Each call gets a fresh request; the audit events go
//! to a non-blocking JSON-lines sink writing to `io::sink()` (formatted on its writer thread). The
//! allow-path stacks raise the policy's rate (5/s, burst 10) so the loop stays under it — both
//! limiters still check every call; `deny_429_rate` uses the policy's own rate.

mod support;

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use guard_core::clock::WallClock;
use guard_core::{GuardBuilder, GuardDeps};
use support::*;
use tower::service_fn;

fn benches(c: &mut Criterion) {
    let body = order();
    let policy = policy();
    let sink = null_sink();

    let mut g = c.benchmark_group("stack");
    g.bench_function("build_from_policy", |b| {
        b.iter(|| {
            GuardBuilder::from_policy_with(black_box(&policy), GuardDeps::with_secrets(store()))
                .unwrap()
                .build()
        })
    });
    g.bench_function("load_policy_and_build", |b| {
        b.iter(|| {
            let p = support::policy();
            GuardBuilder::from_policy_with(&p, GuardDeps::with_secrets(store()))
                .unwrap()
                .build()
        })
    });

    let mut bare = service_fn(handler);
    expect(&mut bare, request(&body), 201, "bare");
    g.bench_function("bare_handler", |b| {
        b.iter(|| run(&mut bare, request(&body)))
    });

    // Signatures are remembered for 600 s and the replay store refuses new ones when full: a fake
    // wall clock moving 10 ms per signed call lets old entries expire as real traffic would.
    let clock = WallClock::fake_at_unix(unix_now());
    let open = guard_at(&policy_unlimited(), &sink, &clock);
    let mut full = open.wrap(service_fn(handler));
    expect(&mut full, request(&body), 201, "allow (address)");
    g.bench_function("allow_path", |b| b.iter(|| run(&mut full, request(&body))));

    let signed = |body: &Bytes| {
        clock.advance(std::time::Duration::from_millis(10));
        let mut req = request_from(body, "192.0.2.1");
        let sig = stripe_signature(HMAC_KEY, clock.unix_seconds(), body);
        req.headers_mut()
            .insert("x-guard-signature", sig.parse().unwrap());
        req
    };
    expect(&mut full, signed(&unique_order()), 201, "allow (signed)");
    g.bench_function("allow_path_signed_hmac_replay", |b| {
        b.iter_batched(
            || signed(&unique_order()),
            |r| run(&mut full, r),
            BatchSize::SmallInput,
        )
    });

    // ---- denials --------------------------------------------------------------------------------
    let get = || {
        let mut r = request(&body);
        *r.method_mut() = http::Method::GET;
        r
    };
    expect(&mut full, get(), 405, "405");
    g.bench_function("deny_405_method", |b| b.iter(|| run(&mut full, get())));

    let big = Bytes::from(vec![b' '; 70 * 1024]);
    expect(&mut full, request(&big), 413, "413");
    g.bench_function("deny_413_too_large", |b| {
        b.iter(|| run(&mut full, request(&big)))
    });

    let text = || {
        let mut r = request(&body);
        r.headers_mut()
            .insert("content-type", "text/plain".parse().unwrap());
        r
    };
    expect(&mut full, text(), 415, "415");
    g.bench_function("deny_415_media_type", |b| b.iter(|| run(&mut full, text())));

    let deep = Bytes::from(format!("{}{}", "[".repeat(64), "]".repeat(64)));
    expect(&mut full, request(&deep), 400, "400 depth");
    g.bench_function("deny_400_too_deep", |b| {
        b.iter(|| run(&mut full, request(&deep)))
    });

    expect(&mut full, request_from(&body, "192.0.2.1"), 403, "403");
    g.bench_function("deny_403_address", |b| {
        b.iter(|| run(&mut full, request_from(&body, "192.0.2.1")))
    });

    let forged = || {
        let mut r = request_from(&body, "192.0.2.1");
        let sig = format!("t={},v1={}", clock.unix_seconds(), "0".repeat(64));
        r.headers_mut()
            .insert("x-guard-signature", sig.parse().unwrap());
        r
    };
    expect(&mut full, forged(), 401, "401");
    let one = forged();
    g.bench_function("deny_401_bad_signature", |b| {
        b.iter_batched(|| one.clone(), |r| run(&mut full, r), BatchSize::SmallInput)
    });

    let mut bad = serde_json::from_slice::<serde_json::Value>(&body).unwrap();
    bad["items"][0]["qty"] = 0.into();
    let bad = Bytes::from(serde_json::to_vec(&bad).unwrap());
    expect(&mut full, request(&bad), 400, "400 schema");
    g.bench_function("deny_400_schema", |b| {
        b.iter(|| run(&mut full, request(&bad)))
    });

    // The policy's own rate (5/s, burst 10, per address): one caller quickly runs out.
    let limited = guard(&policy, &sink);
    let mut limited = limited.wrap(service_fn(handler));
    for _ in 0..10 {
        run(&mut limited, request(&body));
    }
    expect(&mut limited, request(&body), 429, "429");
    g.bench_function("deny_429_rate", |b| {
        b.iter(|| run(&mut limited, request(&body)))
    });
    g.finish();

    sink.flush(std::time::Duration::from_secs(5));
    eprintln!(
        "audit sink: {} events written, {} dropped (queue full)",
        sink.written(),
        sink.dropped()
    );
}

criterion_group!(stack, benches);
criterion_main!(stack);
