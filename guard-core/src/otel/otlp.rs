//! OTLP export (feature `otlp`): the invocation spans go to an OpenTelemetry collector over
//! OTLP/gRPC, configured only by the standard variables — `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (nothing is sent unless one is set; `https://` uses TLS
//! with the platform's roots), `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and `OTEL_BSP_*`.
//! `OTEL_TRACES_EXPORTER=none` turns it off; `OTEL_EXPORTER_OTLP_PROTOCOL` other than `grpc` is
//! refused.
//!
//! Spans are batched. Every [`Guard::flush_audit`](crate::Guard::flush_audit) — what the adapters
//! call before Lambda freezes the process after an answer, and on a Cloud Run or Azure shutdown —
//! also exports the spans ended so far, within the same time budget.
//!
//! ```no_run
//! # #[tokio::main] async fn main() {
//! // At start-up, inside the Tokio runtime (the exporter's connection lives on it):
//! match guard_core::otel::otlp::install_from_env() {
//!     Ok(true) => eprintln!("spans exported over OTLP"),
//!     Ok(false) => {} // no OTLP endpoint configured
//!     Err(e) => eprintln!("OTLP export not started: {e}"),
//! }
//! # }
//! ```

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;

/// The installed provider, flushed with the audit log.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Why OTLP export could not start.
type Error = Box<dyn std::error::Error + Send + Sync>;

/// Starts exporting spans when the `OTEL_*` variables name an OTLP endpoint: builds the exporter
/// and a batching tracer provider, and installs a global `tracing` subscriber that bridges spans
/// to it. `Ok(false)` when no endpoint is configured (or `OTEL_TRACES_EXPORTER=none`); an error
/// when the configuration is unusable or a global subscriber is already set (then compose
/// `tracing_opentelemetry::layer()` into yours instead). Call it inside the Tokio runtime.
pub fn install_from_env() -> Result<bool, Error> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    if var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none")) {
        return Ok(false);
    }
    if var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .is_none()
    {
        return Ok(false);
    }
    let protocol =
        var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"));
    if let Some(p) = protocol.filter(|p| p.trim() != "grpc") {
        return Err(format!("OTEL_EXPORTER_OTLP_PROTOCOL={p}: only grpc is supported").into());
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .build();
    let tracer = provider.tracer("guard");
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer));
    tracing::subscriber::set_global_default(subscriber)?;
    PROVIDER
        .set(provider)
        .map_err(|_| "OTLP export was already installed")?;
    Ok(true)
}

/// Exports the spans ended so far, waiting at most `timeout`; `true` when done (or nothing is
/// installed).
pub(crate) fn flush(timeout: Duration) -> bool {
    let Some(provider) = PROVIDER.get() else {
        return true;
    };
    let provider = provider.clone();
    let (done, wait) = std::sync::mpsc::sync_channel(1);
    // The export may block on the network: bounded by `timeout` from here.
    let spawned = std::thread::Builder::new()
        .name("guard-otlp-flush".into())
        .spawn(move || {
            let _ = done.send(provider.force_flush().is_ok());
        });
    spawned.is_ok() && wait.recv_timeout(timeout).unwrap_or(false)
}
