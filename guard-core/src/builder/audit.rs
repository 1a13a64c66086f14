//! `[audit]` → the [`AuditLayer`].

use crate::audit::{AuditLayer, JsonLinesSink};
use crate::policy::AuditPolicy;

/// `[audit]`'s settings that do not depend on the sink.
#[derive(Debug, Clone, Copy)]
pub(super) struct AuditSettings {
    max_field_len: usize,
    allow_sample_rate: f64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self::from(&AuditPolicy::default())
    }
}

impl From<&AuditPolicy> for AuditSettings {
    fn from(policy: &AuditPolicy) -> Self {
        Self {
            max_field_len: policy.max_field_len,
            allow_sample_rate: policy.allow_sample_rate,
        }
    }
}

impl AuditSettings {
    /// A layer writing to `sink` with these settings.
    pub(super) fn layer(self, sink: impl crate::audit::SecuritySink) -> AuditLayer {
        AuditLayer::new(sink)
            .max_field_len(self.max_field_len)
            .sample_allowed(self.allow_sample_rate)
    }
}

/// `[audit]`: JSON lines on stdout in the chosen format through a non-blocking
/// [`JsonLinesSink`] of `buffer` events, the field cap, and the share of allowed decisions kept.
pub(super) fn audit_layer(policy: &AuditPolicy) -> AuditLayer {
    let settings = AuditSettings::from(policy);
    match policy.format {
        #[cfg(feature = "ocsf")]
        crate::policy::AuditFormat::Ocsf => {
            settings.layer(JsonLinesSink::ocsf(std::io::stdout(), policy.buffer))
        }
        _ => settings.layer(JsonLinesSink::stdout(policy.buffer)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layer_defaults_match_the_policy_defaults() {
        let from_policy = audit_layer(&AuditPolicy::default());
        let plain = AuditLayer::new(JsonLinesSink::stdout(AuditPolicy::default().buffer));
        assert_eq!(format!("{from_policy:?}"), format!("{plain:?}"));
    }
}
