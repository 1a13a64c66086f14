//! The `[secrets]` section of `guard.toml`.

use serde::Deserialize;

use super::PolicyProblem;

/// The `[secrets]` section. (Filled in by its issue.)
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SecretsPolicy {}

impl SecretsPolicy {
    /// Adds every semantic problem of this section (with key paths under `path`) to `problems`.
    pub fn check(&self, path: &str, problems: &mut Vec<PolicyProblem>) {
        let _ = (path, problems);
    }
}
