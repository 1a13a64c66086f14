//! The `[rate_limit]` section of `guard.toml`.

use serde::Deserialize;

use super::PolicyProblem;

/// The `[rate_limit]` section. (Filled in by its issue.)
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RateLimitPolicy {}

impl RateLimitPolicy {
    /// Adds every semantic problem of this section (with key paths under `path`) to `problems`.
    pub fn check(&self, path: &str, problems: &mut Vec<PolicyProblem>) {
        let _ = (path, problems);
    }
}
