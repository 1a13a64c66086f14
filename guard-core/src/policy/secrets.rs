//! The `[secrets]` section of `guard.toml`.
//!
//! ```
//! use guard_core::Policy;
//! use guard_core::policy::SecretsProvider;
//!
//! let p = Policy::from_toml_str(r#"
//!     [secrets]
//!     provider = "file"
//!     directory = "/run/secrets"
//!     required = ["orders-api-key", "db#password"]
//!     ttl_secs = 120
//! "#).unwrap();
//! assert_eq!(p.secrets_provider(), Some(SecretsProvider::File));
//!
//! let err = Policy::from_toml_str("[secrets]\nprovider = \"file\"\nrequired = [\"\"]\nttl_secs = 0").unwrap_err();
//! let paths: Vec<_> = err.problems().iter().map(|p| p.path.as_str()).collect();
//! assert_eq!(paths, ["secrets.directory", "secrets.required[0]", "secrets.ttl_secs"]);
//! ```

use std::path::PathBuf;

use serde::Deserialize;

use super::PolicyProblem;

/// Where secrets come from.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SecretsProvider {
    /// `GUARD_SECRET_<NAME>` environment variables.
    #[default]
    Env,
    /// One file per secret in `directory`.
    File,
    /// AWS Secrets Manager (`guard-aws`).
    Aws,
    /// Azure Key Vault (`guard-azure`).
    Azure,
    /// GCP Secret Manager (`guard-gcp`).
    Gcp,
}

/// The `[secrets]` section: which secrets the handler needs, where they come from, and how the
/// [`SecretStore`](guard_secrets::SecretStore) caches them. Durations are whole seconds.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub(crate) struct SecretsPolicy {
    /// The provider (default `env`).
    pub(crate) provider: SecretsProvider,
    /// The mounted directory, for `provider = "file"` (and only then).
    pub(crate) directory: Option<PathBuf>,
    /// For `provider = "file"`: drop one trailing newline from each file.
    pub(crate) trim_trailing_newline: bool,
    /// Secrets the handler cannot do without (`name` or `name#json_field`): 503 when unavailable.
    pub(crate) required: Vec<String>,
    /// Secrets handed to the handler when available.
    pub(crate) optional: Vec<String>,
    /// Fetch every listed secret at start-up (default true).
    pub(crate) prefetch: bool,
    /// Freshness of a fetched value (default 300).
    pub(crate) ttl_secs: u64,
    /// Background refresh this long before expiry (default 30; 0 = off; must be < `ttl_secs`).
    pub(crate) refresh_ahead_secs: u64,
    /// Serve an expired value for up to this long while the source fails transiently (default 900).
    pub(crate) max_staleness_secs: u64,
    /// Do not ask the source again for this long after a failure (default 1).
    pub(crate) retry_after_error_secs: u64,
    /// A fetch taking longer is a transient failure, in milliseconds (default 5000; the store built
    /// from the policy needs a Tokio runtime with timers, as every `#[tokio::main]` has).
    pub(crate) fetch_timeout_ms: u64,
    /// Most secret names cached (default 1024).
    pub(crate) max_entries: usize,
    /// Forced refreshes (after a signature failure) at most once per name per this long (default 10).
    pub(crate) force_refresh_interval_secs: u64,
    /// How long a replaced value stays acceptable as the previous version (default 3600).
    pub(crate) previous_grace_secs: u64,
}

impl Default for SecretsPolicy {
    fn default() -> Self {
        Self {
            provider: SecretsProvider::Env,
            directory: None,
            trim_trailing_newline: false,
            required: Vec::new(),
            optional: Vec::new(),
            prefetch: true,
            ttl_secs: 300,
            refresh_ahead_secs: 30,
            max_staleness_secs: 900,
            retry_after_error_secs: 1,
            fetch_timeout_ms: 5000,
            max_entries: 1024,
            force_refresh_interval_secs: 10,
            previous_grace_secs: 3600,
        }
    }
}

/// Why `name` (`secret` or `secret#field`) is not a usable secret name, if it is not.
fn name_problem(name: &str) -> Option<&'static str> {
    let (base, field) = match name.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (name, None),
    };
    if base.is_empty() {
        return Some("must not be empty");
    }
    if name.len() > 512 {
        return Some("longer than 512 bytes");
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Some("must not contain whitespace or control characters");
    }
    match field {
        Some("") => Some("`#` must be followed by a JSON field name"),
        Some(f) if f.contains('#') => Some("at most one `#field` selector"),
        _ => None,
    }
}

impl SecretsPolicy {
    /// Adds every semantic problem of this section (with key paths under `path`) to `problems`.
    pub(crate) fn check(&self, path: &str, problems: &mut Vec<PolicyProblem>) {
        let mut problem = |key: &str, msg: &str| {
            problems.push(PolicyProblem::new(format!("{path}.{key}"), msg));
        };
        match (self.provider, &self.directory) {
            (SecretsProvider::File, None) => {
                problem("directory", "required when provider = \"file\"");
            }
            (SecretsProvider::File, Some(d)) if d.as_os_str().is_empty() => {
                problem("directory", "must not be empty");
            }
            (SecretsProvider::File, Some(_)) | (_, None) => {}
            (_, Some(_)) => problem("directory", "only used with provider = \"file\""),
        }
        let mut seen = std::collections::HashSet::new();
        for (list, names) in [("required", &self.required), ("optional", &self.optional)] {
            for (i, name) in names.iter().enumerate() {
                let key = format!("{list}[{i}]");
                if let Some(why) = name_problem(name) {
                    problem(&key, why);
                } else if !seen.insert(name.as_str()) {
                    problem(&key, "listed more than once");
                }
            }
        }
        if self.ttl_secs == 0 {
            problem("ttl_secs", "must be at least 1");
        } else if self.refresh_ahead_secs >= self.ttl_secs {
            problem("refresh_ahead_secs", "must be less than ttl_secs");
        }
        if self.fetch_timeout_ms == 0 {
            problem("fetch_timeout_ms", "must be at least 1");
        }
        if self.max_entries == 0 {
            problem("max_entries", "must be at least 1");
        } else if self.required.len() + self.optional.len() > self.max_entries {
            problem(
                "max_entries",
                "smaller than the number of listed secrets (they would evict each other)",
            );
        }
        if self.force_refresh_interval_secs == 0 {
            problem(
                "force_refresh_interval_secs",
                "must be at least 1 (forced refreshes are triggered by untrusted requests)",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Policy;

    use crate::policy::tests::problem_paths as paths;

    #[test]
    fn defaults_are_the_documented_ones() {
        let p = Policy::from_toml_str("[secrets]").unwrap().secrets.unwrap();
        assert_eq!(p, SecretsPolicy::default());
        assert_eq!(p.ttl_secs, 300);
        assert_eq!(p.refresh_ahead_secs, 30);
        assert!(p.prefetch);
    }

    #[test]
    fn reports_every_problem_with_its_key_path() {
        let got = paths(
            r##"
            [secrets]
            provider = "aws"
            directory = "/x"
            required = ["a", "a", "b#", "#f", "c d", "e#f#g"]
            optional = ["a"]
            ttl_secs = 30
            refresh_ahead_secs = 30
            fetch_timeout_ms = 0
            max_entries = 0
            force_refresh_interval_secs = 0
            "##,
        );
        assert_eq!(
            got,
            [
                "secrets.directory",
                "secrets.required[1]",
                "secrets.required[2]",
                "secrets.required[3]",
                "secrets.required[4]",
                "secrets.required[5]",
                "secrets.optional[0]",
                "secrets.refresh_ahead_secs",
                "secrets.fetch_timeout_ms",
                "secrets.max_entries",
                "secrets.force_refresh_interval_secs",
            ]
        );
    }

    #[test]
    fn rejects_unknown_keys_and_providers() {
        assert_eq!(paths("[secrets]\nprovder = \"env\""), ["secrets.provder"]);
        assert_eq!(
            paths("[secrets]\nprovider = \"vault\""),
            ["secrets.provider"]
        );
    }

    #[test]
    fn too_small_a_cache_for_the_listed_names_is_reported() {
        assert_eq!(
            paths("[secrets]\nrequired = [\"a\", \"b\"]\nmax_entries = 1"),
            ["secrets.max_entries"]
        );
    }
}
