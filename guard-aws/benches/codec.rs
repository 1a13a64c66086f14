//! AWS event decode + encode: API Gateway HTTP API (payload 2.0) and an SQS batch of 10 orders.
//!
//! `cargo bench -p guard-aws --bench codec`. Inputs:
//! - `benches/peers/fixtures/apigw-v2-orders.json` (the peer benchmark's event, see its README);
//! - an SQS batch of 10 built from the first record of `tests/fixtures/data/sqs-orders-batch.json`
//!   (a valid order on the orders queue), with message ids `bench-0` .. `bench-9`.
//!
//! Decoding starts from a `serde_json::Value` (what `lambda_runtime` hands the handler); the
//! Lambda service also times `GuardService` (decode → trivial handler → encode) as it runs under
//! `lambda_runtime`, with a fresh copy of the event per call, built outside the timed region.

use std::convert::Infallible;
use std::hint::black_box;
use std::path::PathBuf;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use guard_aws::GuardLayer;
use guard_aws::decode::{DecodeOptions, decode};
use guard_aws::encode::{batch_failures, http_response};
use guard_aws::event::EventShape;
use guard_core::{GuardRequest, GuardResponse};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::Value;
use tower::{Layer, Service, service_fn};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn apigw_v2() -> Value {
    let text = std::fs::read(repo().join("benches/peers/fixtures/apigw-v2-orders.json")).unwrap();
    serde_json::from_slice(&text).unwrap()
}

fn sqs_batch_10() -> Value {
    let text =
        std::fs::read(repo().join("guard-aws/tests/fixtures/data/sqs-orders-batch.json")).unwrap();
    let mut event: Value = serde_json::from_slice(&text).unwrap();
    let first = event["Records"][0].clone();
    let records: Vec<Value> = (0..10)
        .map(|i| {
            let mut r = first.clone();
            r["messageId"] = Value::String(format!("bench-{i}"));
            r
        })
        .collect();
    event["Records"] = Value::Array(records);
    event
}

fn created() -> GuardResponse {
    let mut r = http::Response::new(Bytes::from_static(b"{\"accepted\":true}"));
    *r.status_mut() = http::StatusCode::CREATED;
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

async fn handler(req: GuardRequest) -> Result<GuardResponse, Infallible> {
    black_box(req.body());
    Ok(created())
}

fn block<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::hint::spin_loop();
    }
}

fn benches(c: &mut Criterion) {
    let opts = DecodeOptions::default();
    let mut g = c.benchmark_group("aws");

    // ---- API Gateway HTTP API v2 ----------------------------------------------------------------
    let v2 = apigw_v2();
    let decoded = decode(LambdaEvent::new(v2.clone(), Context::default()), &opts).unwrap();
    assert_eq!(decoded.shape, EventShape::ApiGatewayV2);
    g.bench_function("apigw_v2/decode", |b| {
        b.iter_batched(
            || LambdaEvent::new(v2.clone(), Context::default()),
            |e| decode(e, &opts).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("apigw_v2/encode_201", |b| {
        b.iter_batched(
            created,
            |r| http_response(EventShape::ApiGatewayV2, r),
            BatchSize::SmallInput,
        )
    });
    let mut svc = GuardLayer::new().layer(service_fn(handler));
    let out = block(svc.call(LambdaEvent::new(v2.clone(), Context::default()))).unwrap();
    assert_eq!(out["statusCode"], 201);
    g.bench_function("apigw_v2/lambda_service_bare_handler", |b| {
        b.iter_batched(
            || LambdaEvent::new(v2.clone(), Context::default()),
            |e| block(svc.call(e)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("apigw_v2/clone_event_value", |b| {
        b.iter(|| black_box(v2.clone()))
    });

    // ---- SQS, 10 records ------------------------------------------------------------------------
    let sqs = sqs_batch_10();
    let decoded = decode(LambdaEvent::new(sqs.clone(), Context::default()), &opts).unwrap();
    assert_eq!(decoded.requests.len(), 10);
    g.bench_function("sqs_10/decode", |b| {
        b.iter_batched(
            || LambdaEvent::new(sqs.clone(), Context::default()),
            |e| decode(e, &opts).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("sqs_10/encode_2_failures", |b| {
        b.iter(|| batch_failures(black_box(["bench-3", "bench-7"])))
    });
    let mut svc = GuardLayer::new().layer(service_fn(handler));
    let out = block(svc.call(LambdaEvent::new(sqs.clone(), Context::default()))).unwrap();
    assert_eq!(out, serde_json::json!({"batchItemFailures": []}));
    g.bench_function("sqs_10/lambda_service_bare_handler", |b| {
        b.iter_batched(
            || LambdaEvent::new(sqs.clone(), Context::default()),
            |e| block(svc.call(e)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(codec, benches);
criterion_main!(codec);
