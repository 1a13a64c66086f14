//! `gcp-orders`: the orders function on Cloud Run. The perimeter is the shared
//! `examples/orders/guard.toml` with `order.schema.json`, plus the push identity in `gcp.toml`,
//! built into the binary (see the README for `PORT`, `GUARD_POLICY`, `GUARD_SECRETS_PROVIDER`
//! and `GUARD_RATE_BACKEND`); each decision is one JSON line on stdout.

// The same handler as the AWS example: one source file for both.
#[path = "../../aws-orders/src/handler.rs"]
mod handler;

use std::process::ExitCode;

const POLICY: &str = concat!(
    include_str!("../../orders/guard.toml"),
    include_str!("../gcp.toml")
);
const SCHEMA: &str = include_str!("../../orders/order.schema.json");

#[tokio::main]
async fn main() -> ExitCode {
    let handler = handler::from_env();
    match guard_gcp::serve(POLICY, Some(SCHEMA), handler).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gcp-orders: {e}");
            ExitCode::FAILURE
        }
    }
}
