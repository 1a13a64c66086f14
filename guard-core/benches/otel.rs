//! The allow path of the orders stack with the `otel` feature: the invocation span compiled in but
//! no subscriber (`allow_path_otel_idle`), and exported — a `tracing-opentelemetry` subscriber over
//! an SDK tracer with a batching processor whose exporter drops the batches
//! (`allow_path_otel_exporting`). Compare with `stack/allow_path` built without the feature.
//!
//! `cargo bench -p guard-core --features otel --bench otel`.

mod support;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use guard_core::clock::WallClock;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use support::*;
use tower::service_fn;
use tracing_subscriber::layer::SubscriberExt;

/// Takes every batch and drops it: the cost measured is Guard's and the SDK's, not a network's.
#[derive(Debug)]
struct DropExporter;

impl SpanExporter for DropExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        drop(batch);
        Ok(())
    }
}

fn benches(c: &mut Criterion) {
    let body: Bytes = order();
    let sink = null_sink();
    let clock = WallClock::fake_at_unix(unix_now());
    let open = guard_at(&policy_unlimited(), &sink, &clock);
    let mut full = open.wrap(service_fn(handler));
    expect(&mut full, request(&body), 201, "allow (address)");

    let mut g = c.benchmark_group("otel");
    g.bench_function("allow_path_otel_idle", |b| {
        b.iter(|| run(&mut full, request(&body)))
    });

    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(DropExporter)
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("guard-bench")));
    tracing::subscriber::with_default(subscriber, || {
        g.bench_function("allow_path_otel_exporting", |b| {
            b.iter(|| run(&mut full, request(&body)))
        });
    });
    g.finish();
    let _ = provider.shutdown();
}

criterion_group!(otel, benches);
criterion_main!(otel);
