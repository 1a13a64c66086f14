//! `guard-peer-bench`: Guard's row of the peer benchmark (`benches/peers/README.md`).
//!
//! The orders perimeter (`examples/orders/guard.toml` + `order.schema.json`) built as
//! `examples/aws-orders` builds it, wrapped by the AWS adapter's Lambda service
//! (`guard_aws::GuardLayer`: decode → Guard stack → encode), invoked in-process with the API
//! Gateway v2 event of `benches/peers/fixtures/apigw-v2-orders.json`. Bare = the same adapter
//! service around the same trivial handler (201, body not read), so the difference is what the
//! perimeter adds.
//!
//! Timing follows the README's method: sanity cases first (exit 1 on a mismatch), warm-up, then
//! `ROUNDS` rounds alternating stack and bare calls; per call a fresh event is deserialized from
//! the fixture text and a fresh Lambda context built *before* the clock is read. Prints one JSON
//! line on stdout; progress goes to stderr.
//!
//! Environment: `BENCH_WARMUP` (default 20000), `BENCH_ITERS` (default 200000).

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use guard_core::audit::{AuditLayer, JsonLinesSink};
use guard_core::secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
use guard_core::{GuardBuilder, GuardDeps, GuardRequest, GuardResponse, Policy};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::Value;
use tower::{Layer, Service, service_fn};

const ROUNDS: usize = 10;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The trivial handler, the same in stack and bare: 201, body not read.
async fn handler(_req: GuardRequest) -> Result<GuardResponse, Infallible> {
    let mut r = http::Response::new(Bytes::from_static(b"{\"accepted\":true}"));
    *r.status_mut() = http::StatusCode::CREATED;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// The orders function's secrets, in process (the example reads them from the environment or
/// Secrets Manager; both are cached by the same store, which is what a warm call sees).
fn store() -> SecretStore {
    SecretStore::new(
        |name: &str, v: SecretVersion| -> Result<SecretValue, SecretsError> {
            match (name, v) {
                ("orders-api-key", SecretVersion::Current) => Ok(SecretValue::from("bench-key")),
                ("orders-webhook-hmac", SecretVersion::Current) => {
                    Ok(SecretValue::from("bench-webhook-key"))
                }
                _ => Err(SecretsError::not_found(name)),
            }
        },
    )
}

/// A Lambda context like the runtime's: request id, function ARN, deadline.
fn context() -> Context {
    let mut ctx = Context::default();
    ctx.request_id = "8f5e3c1a-6b2d-4e7f-9a10-3c4d5e6f7a8b".into();
    ctx.invoked_function_arn =
        "arn:aws:lambda:us-east-1:123456789012:function:shop-orders-prod-intake".into();
    ctx.deadline = 1_793_534_403_000;
    ctx
}

/// Polls a future that never waits on I/O to completion (the whole stack answers synchronously
/// once the secret is cached; a spin keeps it correct if something ever returns pending).
fn block<F: Future>(fut: F) -> F::Output {
    use std::task::{Context as TaskContext, Poll, Waker};
    let mut fut = std::pin::pin!(fut);
    let mut cx = TaskContext::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::hint::spin_loop();
    }
}

type Lambda = Box<dyn FnMut(LambdaEvent<Value>) -> Value>;

fn lambda<S>(mut svc: S) -> Lambda
where
    S: Service<LambdaEvent<Value>, Response = Value, Error = lambda_runtime::Diagnostic> + 'static,
{
    Box::new(move |event| match block(svc.call(event)) {
        Ok(v) => v,
        Err(d) => serde_json::json!({"error": d.error_type}),
    })
}

fn status(v: &Value) -> u64 {
    v["statusCode"].as_u64().unwrap_or(0)
}

struct Bench {
    fixture: String,
    sink: JsonLinesSink,
}

impl Bench {
    /// A fresh event deserialized from the fixture text, after `edit`.
    fn event(&self, edit: impl FnOnce(&mut Value)) -> LambdaEvent<Value> {
        let mut v: Value = serde_json::from_str(&self.fixture).expect("fixture is JSON");
        edit(&mut v);
        LambdaEvent::new(v, context())
    }

    /// How many decision lines the sink has written once it has drained.
    fn lines(&self) -> u64 {
        if !self.sink.flush(Duration::from_secs(5)) {
            eprintln!("guard-peer-bench: the audit sink did not drain");
        }
        self.sink.written()
    }
}

fn with_body(order: impl FnOnce(&mut Value)) -> impl FnOnce(&mut Value) {
    move |event: &mut Value| {
        let mut o: Value = serde_json::from_str(event["body"].as_str().unwrap()).unwrap();
        order(&mut o);
        event["body"] = Value::String(o.to_string());
    }
}

fn sanity(b: &Bench, stack: &mut Lambda, bare: &mut Lambda) -> Result<(), String> {
    type Edit = Box<dyn FnOnce(&mut Value)>;
    type Case = (&'static str, Edit, fn(u64) -> bool);
    let cases: Vec<Case> = vec![
        ("valid order → 201", Box::new(|_| {}), |s| s == 201),
        (
            "qty 0 → 4xx",
            Box::new(with_body(|o| o["items"][0]["qty"] = 0.into())),
            |s| (400..500).contains(&s),
        ),
        (
            "invalid email → 4xx",
            Box::new(with_body(|o| o["customer_email"] = "not-an-email".into())),
            |s| (400..500).contains(&s),
        ),
        (
            "unknown property → 4xx",
            Box::new(with_body(|o| o["extra"] = 1.into())),
            |s| (400..500).contains(&s),
        ),
        (
            "total_cents as a string → 4xx",
            Box::new(with_body(|o| o["total_cents"] = "4599".into())),
            |s| (400..500).contains(&s),
        ),
        (
            "malformed JSON → 4xx",
            Box::new(|e: &mut Value| e["body"] = "{\"order_id\":".into()),
            |s| (400..500).contains(&s),
        ),
        (
            "text/plain → 415",
            Box::new(|e: &mut Value| e["headers"]["content-type"] = "text/plain".into()),
            |s| s == 415,
        ),
        (
            "source 192.0.2.1 → 403",
            Box::new(|e: &mut Value| e["requestContext"]["http"]["sourceIp"] = "192.0.2.1".into()),
            |s| s == 403,
        ),
        (
            "source 203.0.114.1 → 403",
            Box::new(|e: &mut Value| {
                e["requestContext"]["http"]["sourceIp"] = "203.0.114.1".into()
            }),
            |s| s == 403,
        ),
        (
            "source 198.51.100.255 → 201",
            Box::new(|e: &mut Value| {
                e["requestContext"]["http"]["sourceIp"] = "198.51.100.255".into()
            }),
            |s| s == 201,
        ),
    ];
    for (name, edit, ok) in cases {
        let before = b.lines();
        let out = stack(b.event(edit));
        let s = status(&out);
        if !ok(s) {
            return Err(format!("{name}: got {s} ({out})"));
        }
        let lines = b.lines() - before;
        if lines != 1 {
            return Err(format!(
                "{name}: {lines} decision lines, expected exactly 1"
            ));
        }
        eprintln!("  ok  {name} ({s})");
    }
    let before = b.lines();
    let s = status(&bare(b.event(|_| {})));
    if s != 201 || b.lines() != before {
        return Err(format!("bare: got {s}, or it logged a decision"));
    }
    eprintln!("  ok  bare → 201, no decision line");
    Ok(())
}

/// Nearest-rank percentile of sorted nanoseconds, in microseconds.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1] as f64 / 1000.0
}

fn main() -> ExitCode {
    match run() {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("guard-peer-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<String, String> {
    let warmup = env_usize("BENCH_WARMUP", 20_000);
    let iters = env_usize("BENCH_ITERS", 200_000).max(ROUNDS);
    let fixture =
        std::fs::read_to_string(repo().join("benches/peers/fixtures/apigw-v2-orders.json"))
            .map_err(|e| format!("fixture: {e}"))?;
    let order = std::fs::read_to_string(repo().join("examples/orders/order.json"))
        .map_err(|e| format!("order: {e}"))?;
    let parsed: Value = serde_json::from_str(&fixture).map_err(|e| format!("fixture: {e}"))?;
    if parsed["body"].as_str() != Some(order.trim_end()) {
        return Err("the fixture's body is not examples/orders/order.json".into());
    }

    // The stack, as examples/aws-orders builds it (policy and schema from examples/orders).
    let mut policy = Policy::load(repo().join("examples/orders/guard.toml"))
        .map_err(|e| format!("policy: {e}"))?;
    // 5/s burst 10 per caller would refuse a warm loop from one address after 10 calls: raise the
    // rate so every timed call is allowed (both limiters still check each call).
    if let Some(rate) = policy.rate_limit.as_mut() {
        rate.per_second = Some(1_000_000_000);
        rate.burst = Some(100);
    }
    let sink = JsonLinesSink::new(std::io::sink(), policy.audit.buffer);
    let guard = GuardBuilder::from_policy_with(&policy, GuardDeps::with_secrets(store()))
        .map_err(|e| format!("policy: {e}"))?
        .audit(AuditLayer::new(sink.clone()).max_field_len(policy.audit.max_field_len))
        .build();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let _entered = rt.enter();
    block(guard.prefetch()).map_err(|e| format!("prefetch: {} secret(s) failed", e.len()))?;
    let mut stack = lambda(guard_aws::GuardLayer::new().layer(guard.layer(service_fn(handler))));
    let mut bare = lambda(guard_aws::GuardLayer::new().layer(service_fn(handler)));
    let b = Bench { fixture, sink };

    eprintln!("guard-peer-bench: sanity");
    sanity(&b, &mut stack, &mut bare)?;

    eprintln!("guard-peer-bench: warm-up ({warmup} calls each)");
    for _ in 0..warmup {
        let e = b.event(|_| {});
        std::hint::black_box(stack(e));
        let e = b.event(|_| {});
        std::hint::black_box(bare(e));
    }

    eprintln!("guard-peer-bench: timing ({iters} calls each, {ROUNDS} rounds)");
    let per_round = iters / ROUNDS;
    let mut stack_ns = Vec::with_capacity(per_round * ROUNDS);
    let mut bare_ns = Vec::with_capacity(per_round * ROUNDS);
    let lines_before = b.lines();
    for _ in 0..ROUNDS {
        for (f, out) in [(&mut stack, &mut stack_ns), (&mut bare, &mut bare_ns)] {
            for _ in 0..per_round {
                let e = b.event(|_| {});
                let t = Instant::now();
                let v = f(e);
                let ns = t.elapsed().as_nanos() as u64;
                if status(&v) != 201 {
                    return Err(format!("a timed call answered {}", status(&v)));
                }
                out.push(ns);
            }
        }
    }
    let lines = b.lines() - lines_before;
    if lines != stack_ns.len() as u64 || b.sink.dropped() != 0 {
        return Err(format!(
            "{lines} decision lines for {} timed stack calls ({} dropped)",
            stack_ns.len(),
            b.sink.dropped()
        ));
    }
    stack_ns.sort_unstable();
    bare_ns.sort_unstable();
    let line = serde_json::json!({
        "name": "guard",
        "median_us": percentile(&stack_ns, 50.0),
        "p99_us": percentile(&stack_ns, 99.0),
        "bare_median_us": percentile(&bare_ns, 50.0),
        "bare_p99_us": percentile(&bare_ns, 99.0),
        "samples": stack_ns.len(),
        "runtime": env!("GUARD_BENCH_RUSTC"),
        "versions": {"guard-core": env!("CARGO_PKG_VERSION"), "guard-aws": env!("CARGO_PKG_VERSION")},
        "note": "guard-aws decode/encode (API GW v2) + full orders policy: audit event (JSON line formatted on the sink's writer thread), ingress, rate limit pre+post auth (memory, rate raised), CIDR-or-HMAC verify, strict parse + schema, cached secret",
    });
    Ok(line.to_string())
}
