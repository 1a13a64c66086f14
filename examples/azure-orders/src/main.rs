//! `azure-orders`: the orders function as an Azure Functions custom handler. The perimeter is the
//! shared `examples/orders/guard.toml` with `order.schema.json`, built into the binary (see the
//! README for `GUARD_POLICY`, `GUARD_SECRETS_PROVIDER` and `GUARD_RATE_BACKEND`); it serves the
//! functions `orders` (HTTP) and `orders-queue` (queue `orders`) on
//! `FUNCTIONS_CUSTOMHANDLER_PORT`, and each decision is one JSON line on stdout.

// The same handler as the AWS example: one file, compiled into both binaries.
#[path = "../../aws-orders/src/handler.rs"]
mod handler;

use std::process::ExitCode;

const POLICY: &str = include_str!("../../orders/guard.toml");
const SCHEMA: &str = include_str!("../../orders/order.schema.json");

#[tokio::main]
async fn main() -> ExitCode {
    let handler = handler::from_env();
    match guard_azure::serve(POLICY, Some(SCHEMA), handler).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("azure-orders: {e}");
            ExitCode::FAILURE
        }
    }
}
