//! Observability: the invocation's OpenTelemetry server span (parent from each trace header,
//! semantic-convention and `guard.*` attributes, the handler's spans inside it) through the real
//! `opentelemetry_sdk` in-memory exporter, and the sampling of allowed decisions.

mod outbound;
mod sampling;
mod spans;

/// `tracing` caches per callsite whether any subscriber wants it; a test running without one
/// while another installs its own could leave the span's callsite disabled for the other. The
/// tests of this binary that pass through the audit layer therefore run one at a time.
pub(crate) static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
