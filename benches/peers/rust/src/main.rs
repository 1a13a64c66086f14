//! `guard-peer-bench`: Guard's row of the peer benchmark (`benches/peers/README.md`).
//!
//! Each invocation is timed **from the payload bytes to the response bytes**, as the Lambda
//! runtime sees it: the bytes are deserialized the way `lambda_runtime` does (`serde_path_to_error`
//! over `serde_json::from_slice`) into the event type `guard_aws::run` uses, the AWS adapter
//! decodes the event, the Guard stack of `examples/orders/guard.toml` runs, the adapter encodes
//! the answer, the security events are flushed before answering (as `guard_aws::serve` does), and
//! the answer is serialized with `serde_json::to_vec` (what the runtime sends back). Bare = the
//! same adapter around the same trivial handler (201, body not read): the adapter's own cost.
//! A `lambda_http` row (its `Adapter` over `LambdaRequest`, the same trivial handler) is the
//! reference for what a bare Rust adapter costs.
//!
//! Timing follows the README's method: sanity cases first (exit 1 on a mismatch), warm-up, then
//! `ROUNDS` rounds alternating the stacks; per call a fresh Lambda context is built *before* the
//! clock is read. Prints one JSON line per row on stdout; progress goes to stderr.
//!
//! Environment: `BENCH_WARMUP` (default 20000), `BENCH_ITERS` (default 200000),
//! `GUARD_BENCH_NAME` (the row's name, default `guard`; `run.sh` names the deploy build's row).

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use guard_core::audit::JsonLinesSink;
use guard_core::{Guard, GuardBuilder, GuardDeps, GuardRequest, GuardResponse, Policy};
use guard_secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
use lambda_runtime::{Context, LambdaEvent};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tower::{Layer, Service, service_fn};

const ROUNDS: usize = 10;
/// What `guard_aws::serve` waits at most for the security events before answering.
const FLUSH_BUDGET: Duration = Duration::from_millis(200);

/// The event type `guard_aws::run` hands to the adapter: what the runtime deserializes into.
type Payload = guard_aws::event::RawEvent;

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

/// The same handler for `lambda_http`.
async fn lambda_http_handler(
    _req: lambda_http::Request,
) -> Result<http::Response<lambda_http::Body>, Infallible> {
    let mut r = http::Response::new(lambda_http::Body::Text("{\"accepted\":true}".into()));
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

/// What `lambda_runtime` does with the payload bytes before calling the handler.
fn deserialize<T: DeserializeOwned>(bytes: &[u8], ctx: Context) -> LambdaEvent<T> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize(de) {
        Ok(payload) => LambdaEvent::new(payload, ctx),
        Err(e) => panic!("the runtime would refuse this payload: {e}"),
    }
}

/// One invocation: payload bytes (and the context the runtime built) in, response bytes out.
type Invoke = Box<dyn FnMut(&[u8], Context) -> Vec<u8>>;

/// A Lambda service invoked as the runtime does; `after` runs between the handler's answer and
/// serialization (the audit flush of `guard_aws::serve`).
fn invoke<T, S, R>(mut svc: S, after: impl Fn() + 'static) -> Invoke
where
    T: DeserializeOwned,
    S: Service<LambdaEvent<T>, Response = R> + 'static,
    S::Error: std::fmt::Debug,
    R: Serialize,
{
    Box::new(move |bytes, ctx| {
        let event = deserialize::<T>(bytes, ctx);
        let out = block(svc.call(event));
        after();
        match out {
            Ok(v) => serde_json::to_vec(&v).expect("a response serializes"),
            Err(e) => format!("{{\"error\":\"{e:?}\"}}").into_bytes(),
        }
    })
}

fn status(bytes: &[u8]) -> u64 {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| v["statusCode"].as_u64())
        .unwrap_or(0)
}

struct Bench {
    fixture: Value,
    sink: JsonLinesSink,
}

impl Bench {
    /// The fixture's bytes after `edit`.
    fn event(&self, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
        let mut v = self.fixture.clone();
        edit(&mut v);
        serde_json::to_vec(&v).expect("event serializes")
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

fn sanity(
    b: &Bench,
    stack: &mut Invoke,
    bare: &mut Invoke,
    lhttp: &mut Invoke,
) -> Result<(), String> {
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
        let out = stack(&b.event(edit), context());
        let s = status(&out);
        if !ok(s) {
            return Err(format!(
                "{name}: got {s} ({})",
                String::from_utf8_lossy(&out)
            ));
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
    let s = status(&bare(&b.event(|_| {}), context()));
    if s != 201 || b.lines() != before {
        return Err(format!("bare: got {s}, or it logged a decision"));
    }
    eprintln!("  ok  bare → 201, no decision line");
    let s = status(&lhttp(&b.event(|_| {}), context()));
    if s != 201 {
        return Err(format!("lambda_http: got {s}"));
    }
    eprintln!("  ok  lambda_http → 201");
    Ok(())
}

/// Nearest-rank percentile of sorted nanoseconds, in microseconds.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1] as f64 / 1000.0
}

fn main() -> ExitCode {
    match run() {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("guard-peer-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The orders stack, as examples/aws-orders builds it (policy and schema from examples/orders).
fn orders_guard(sink: &JsonLinesSink) -> Result<Guard, String> {
    let dir = repo().join("examples/orders");
    let read =
        |name: &str| std::fs::read_to_string(dir.join(name)).map_err(|e| format!("{name}: {e}"));
    // 5/s burst 10 per caller would refuse a warm loop from one address after 10 calls: raise the
    // rate so every timed call is allowed (both limiters still check each call).
    let text = read("guard.toml")?;
    let raised = text
        .replacen("per_second = 5\n", "per_second = 1000000000\n", 1)
        .replacen("burst = 10\n", "burst = 100\n", 1);
    if raised == text {
        return Err("examples/orders/guard.toml no longer says per_second = 5, burst = 10".into());
    }
    let policy = Policy::from_toml_str_with_schema(&raised, &read("order.schema.json")?)
        .map_err(|e| format!("policy: {e}"))?;
    Ok(
        GuardBuilder::from_policy_with(&policy, GuardDeps::with_secrets(store()))
            .map_err(|e| format!("policy: {e}"))?
            .audit_sink(sink.clone())
            .build(),
    )
}

fn run() -> Result<Vec<String>, String> {
    let warmup = env_usize("BENCH_WARMUP", 20_000);
    let iters = env_usize("BENCH_ITERS", 200_000).max(ROUNDS);
    let name = std::env::var("GUARD_BENCH_NAME").unwrap_or_else(|_| "guard".into());
    let text = std::fs::read(repo().join("benches/peers/fixtures/apigw-v2-orders.json"))
        .map_err(|e| format!("fixture: {e}"))?;
    let order = std::fs::read_to_string(repo().join("examples/orders/order.json"))
        .map_err(|e| format!("order: {e}"))?;
    let fixture: Value = serde_json::from_slice(&text).map_err(|e| format!("fixture: {e}"))?;
    if fixture["body"].as_str() != Some(order.trim_end()) {
        return Err("the fixture's body is not examples/orders/order.json".into());
    }

    let sink = JsonLinesSink::new(std::io::sink(), 4096);
    let guard = orders_guard(&sink)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let _entered = rt.enter();
    block(guard.prefetch()).map_err(|e| format!("prefetch: {} secret(s) failed", e.len()))?;
    let flush = guard.clone();
    let mut stack = invoke::<Payload, _, _>(
        guard_aws::GuardLayer::new().layer(guard.layer(service_fn(handler))),
        move || {
            flush.flush_audit(FLUSH_BUDGET);
        },
    );
    let mut bare = invoke::<Payload, _, _>(
        guard_aws::GuardLayer::new().layer(service_fn(handler)),
        || {},
    );
    let mut lhttp = invoke::<lambda_http::request::LambdaRequest, _, _>(
        lambda_http::Adapter::from(service_fn(lambda_http_handler)),
        || {},
    );
    let b = Bench { fixture, sink };

    eprintln!("guard-peer-bench ({name}): sanity");
    sanity(&b, &mut stack, &mut bare, &mut lhttp)?;

    eprintln!("guard-peer-bench ({name}): warm-up ({warmup} calls each)");
    for _ in 0..warmup {
        for f in [&mut stack, &mut bare, &mut lhttp] {
            std::hint::black_box(f(&text, context()));
        }
    }

    eprintln!("guard-peer-bench ({name}): timing ({iters} calls each, {ROUNDS} rounds)");
    let per_round = iters / ROUNDS;
    let mut times = [(); 3].map(|_| Vec::with_capacity(per_round * ROUNDS));
    let lines_before = b.lines();
    for _ in 0..ROUNDS {
        for (f, out) in [&mut stack, &mut bare, &mut lhttp]
            .into_iter()
            .zip(times.iter_mut())
        {
            for _ in 0..per_round {
                let ctx = context();
                let t = Instant::now();
                let answer = f(&text, ctx);
                let ns = t.elapsed().as_nanos() as u64;
                if status(&answer) != 201 {
                    return Err(format!("a timed call answered {}", status(&answer)));
                }
                out.push(ns);
            }
        }
    }
    let [mut stack_ns, mut bare_ns, mut lhttp_ns] = times;
    let lines = b.lines() - lines_before;
    if lines != stack_ns.len() as u64 || b.sink.dropped() != 0 {
        return Err(format!(
            "{lines} decision lines for {} timed stack calls ({} dropped)",
            stack_ns.len(),
            b.sink.dropped()
        ));
    }
    for v in [&mut stack_ns, &mut bare_ns, &mut lhttp_ns] {
        v.sort_unstable();
    }
    let guard = serde_json::json!({
        "name": name,
        "median_us": percentile(&stack_ns, 50.0),
        "p99_us": percentile(&stack_ns, 99.0),
        "bare_median_us": percentile(&bare_ns, 50.0),
        "bare_p99_us": percentile(&bare_ns, 99.0),
        "samples": stack_ns.len(),
        "runtime": env!("GUARD_BENCH_RUSTC"),
        "versions": {"guard-core": env!("CARGO_PKG_VERSION"), "guard-aws": env!("CARGO_PKG_VERSION")},
        "note": "bytes → lambda_runtime's deserialize → guard-aws decode (API GW v2) → full orders policy (audit event, ingress, rate limit pre+post auth (memory, rate raised), CIDR-or-HMAC verify, strict parse + schema, cached secret) → encode → audit flush (as guard_aws::serve) → serde_json::to_vec",
    });
    // "lambda_http", or "lambda_http (deploy)" beside "guard (deploy)".
    let reference_name = format!(
        "lambda_http{}",
        name.strip_prefix("guard").unwrap_or_default()
    );
    let reference = serde_json::json!({
        "name": reference_name,
        "kind": "adapter",
        "median_us": percentile(&lhttp_ns, 50.0),
        "p99_us": percentile(&lhttp_ns, 99.0),
        "samples": lhttp_ns.len(),
        "runtime": env!("GUARD_BENCH_RUSTC"),
        "note": "bytes → LambdaRequest → lambda_http::Adapter → trivial handler → LambdaResponse → serde_json::to_vec",
    });
    Ok(vec![guard.to_string(), reference.to_string()])
}
