//! `[authz]` → the [`AuthzLayer`].

use crate::authz::AuthzLayer;
use crate::policy::authz::to_rule;
use crate::policy::{AuthzPolicy, PolicyError, PolicyProblem};

/// The layer for the section's rules, in order.
pub(super) fn authz_layer(section: &AuthzPolicy) -> Result<AuthzLayer, PolicyError> {
    AuthzLayer::new(section.rules.iter().map(to_rule))
        .map_err(|e| PolicyError::new(vec![PolicyProblem::new("authz", e.to_string())]))
}
