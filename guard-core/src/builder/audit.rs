//! `[audit]` → the [`AuditLayer`].

use crate::audit::{AuditLayer, JsonLinesSink};
use crate::policy::AuditPolicy;

impl AuditLayer {
    /// JSON lines on stdout through a non-blocking [`JsonLinesSink`] sized by the policy.
    pub(crate) fn from_policy(policy: &AuditPolicy) -> Self {
        Self::new(JsonLinesSink::stdout(policy.buffer)).max_field_len(policy.max_field_len)
    }
}

/// `[audit]`: the sink in the chosen format, the field cap, and the share of allowed decisions kept.
pub(super) fn audit_layer(policy: &AuditPolicy) -> AuditLayer {
    let layer = match policy.format {
        #[cfg(feature = "ocsf")]
        crate::policy::AuditFormat::Ocsf => {
            AuditLayer::new(JsonLinesSink::ocsf(std::io::stdout(), policy.buffer))
                .max_field_len(policy.max_field_len)
        }
        _ => AuditLayer::from_policy(policy),
    };
    layer.sample_allowed(policy.allow_sample_rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layer_defaults_match_the_policy_defaults() {
        let from_policy = AuditLayer::from_policy(&AuditPolicy::default());
        let plain = AuditLayer::new(JsonLinesSink::stdout(AuditPolicy::default().buffer));
        assert_eq!(format!("{from_policy:?}"), format!("{plain:?}"));
    }
}
