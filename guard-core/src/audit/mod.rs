//! Structured security logging: [`AuditLayer`] writes exactly one [`SecurityEvent`] per request
//! (allow or deny) to a [`SecuritySink`].
//!
//! The default sink, [`JsonLinesSink`], writes JSON lines to stdout from a background thread: the
//! request path never formats or blocks, a full queue drops (and counts) instead of stalling.
//! [`AuditLayer::tracing`] emits the same fields as a `tracing` event on target `guard::security`.
//!
//! Field set (see [`SecurityEvent`]): `event`, `outcome`, `code`, `status`, `layer`, `reason`,
//! `cloud`, `function`, `request_id`, `trace_id`, `trigger`, `source_id`, `peer`, `principal`,
//! `latency_us`. No header is ever recorded.

mod event;
mod layer;
#[cfg(feature = "ocsf")]
pub mod ocsf;
mod record;
mod sink;

pub use event::{Outcome, SecurityEvent};
pub use layer::AuditLayer;
pub use sink::{JsonLinesSink, SecuritySink};
