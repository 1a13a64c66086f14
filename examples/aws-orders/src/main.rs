//! `aws-orders`: the orders function on AWS Lambda. The perimeter is the shared
//! `examples/orders/guard.toml` with `order.schema.json`, built into the binary (see the README
//! for `GUARD_POLICY`, `GUARD_SECRETS_PROVIDER` and `GUARD_RATE_BACKEND`); each decision is one
//! JSON line on stdout.

mod handler;

use std::process::ExitCode;

const POLICY: &str = include_str!("../../orders/guard.toml");
const SCHEMA: &str = include_str!("../../orders/order.schema.json");

#[tokio::main]
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
