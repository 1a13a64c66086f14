//! `aws-orders`: the orders function on AWS Lambda. The perimeter is the shared
//! `examples/orders/guard.toml` with `order.schema.json`, built into the binary (see the README
//! for `GUARD_POLICY`, `GUARD_SECRETS_PROVIDER` and `GUARD_RATE_BACKEND`); each decision is one
//! JSON line on stdout.

mod handler;

use std::process::ExitCode;

const POLICY: &str = include_str!("../../orders/guard.toml");
const SCHEMA: &str = include_str!("../../orders/order.schema.json");

// One thread: Lambda runs one invocation at a time, and the audit writer has its own thread, so
// worker threads would only add to the cold start (≈ 0.15 ms for the multi-thread runtime's two
// workers, BENCHMARKS.md "Cold start: where the time goes"). With `otel` the multi-thread runtime
// stays: the per-invocation span export blocks this thread while the exporter's gRPC connection
// needs the runtime to make progress.
#[cfg_attr(not(feature = "otel"), tokio::main(flavor = "current_thread"))]
#[cfg_attr(feature = "otel", tokio::main)]
async fn main() -> ExitCode {
    let handler = handler::from_env();
    match guard_aws::serve(POLICY, Some(SCHEMA), handler).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aws-orders: {e}");
            ExitCode::FAILURE
        }
    }
}
