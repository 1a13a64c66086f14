//! `aws-orders`: the orders function of DESIGN.md §6 on AWS Lambda.
//!
//! The perimeter is the shared `examples/orders/guard.toml` with `order.schema.json` (both built
//! into the binary; `GUARD_POLICY=/path/guard.toml` loads another file instead). API Gateway,
//! Function URL, ALB and SQS events are decoded by `guard-aws`, run through the Guard stack, and
//! the handler answers `201 {"accepted", "items", "key_id"}` where `key_id` is the first 8 hex
//! characters of the SHA-256 of the secret `orders-api-key` (proof that the secret arrived,
//! without showing it). Each decision is one JSON line on stdout.
//!
//! Secrets: `GUARD_SECRETS_PROVIDER=env` reads `GUARD_SECRET_<NAME>` (`orders-api-key` →
//! `GUARD_SECRET_ORDERS_API_KEY`); otherwise AWS Secrets Manager.
//! Rate limit: `GUARD_RATE_BACKEND` is `memory` (default) or a `redis://` URL shared by every
//! instance (built with `--features redis`).

mod handler;

use std::process::ExitCode;
use std::time::Duration;

use guard_core::Policy;
use guard_core::audit::{AuditLayer, JsonLinesSink};
use guard_core::policy::SecretsProvider;
use tower::{Layer, ServiceExt, service_fn};

const POLICY: &str = include_str!("../../orders/guard.toml");
const SCHEMA: &str = include_str!("../../orders/order.schema.json");

/// The shared policy, from `GUARD_POLICY` or the copy built into the binary.
fn load_policy() -> Result<Policy, String> {
    let mut policy = match std::env::var_os("GUARD_POLICY") {
        Some(path) => Policy::load(&path).map_err(|e| e.to_string())?,
        None => {
            let mut policy = Policy::from_toml_str(POLICY).map_err(|e| e.to_string())?;
            if let Some(validate) = policy.validate.as_mut() {
                let schema =
                    serde_json::from_str(SCHEMA).map_err(|e| format!("order schema: {e}"))?;
                validate.schema_document = Some(schema);
            }
            policy
        }
    };
    match (
        std::env::var("GUARD_SECRETS_PROVIDER").as_deref(),
        policy.secrets.as_mut(),
    ) {
        (Ok("env"), Some(s)) => s.provider = SecretsProvider::Env,
        (Ok("aws") | Err(_), Some(s)) => s.provider = SecretsProvider::Aws,
        (Ok(other), _) if other != "env" && other != "aws" => {
            return Err(format!(
                "GUARD_SECRETS_PROVIDER={other}: expected `env` or `aws`"
            ));
        }
        _ => {}
    }
    if let (Ok(backend), Some(rate)) = (
        std::env::var("GUARD_RATE_BACKEND"),
        policy.rate_limit.as_mut(),
    ) {
        rate.backend = backend;
    }
    Ok(policy)
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aws-orders: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let policy = load_policy()?;
    let sink = JsonLinesSink::stdout(policy.audit.buffer);
    // One store for the whole stack (the HMAC verifier's key and the handler's API key), from
    // the provider `[secrets]` names (GUARD_SECRETS_PROVIDER overrides it).
    let guard = guard_aws::builder_from_policy(&policy)
        .await
        .map_err(|e| e.to_string())?
        .audit(AuditLayer::new(sink.clone()).max_field_len(policy.audit.max_field_len))
        .build();
    if let Err(errors) = guard.prefetch().await {
        // Not fatal: the stack fails closed (503) per request while a secret stays unavailable.
        eprintln!(
            "aws-orders: {} secret(s) could not be prefetched",
            errors.len()
        );
    }
    let stack = guard.layer(service_fn(handler::orders));
    // Lambda freezes the process once the response is sent: write this invocation's security
    // events before answering, so each one lands with its own invocation's logs.
    let lambda = guard_aws::GuardLayer::new()
        .layer(stack)
        .then(move |result| {
            let sink = sink.clone();
            async move {
                let _ = tokio::task::spawn_blocking(move || sink.flush(Duration::from_millis(200)))
                    .await;
                result
            }
        });
    guard_aws::run_service(lambda)
        .await
        .map_err(|e| e.to_string())
}
