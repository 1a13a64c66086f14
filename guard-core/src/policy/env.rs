//! Where a deployed function's policy comes from, and the environment overrides every adapter
//! entry point and example applies.
//!
//! | variable | effect |
//! |---|---|
//! | `GUARD_POLICY` | path of a `guard.toml` used instead of the one built into the binary ([`Policy::from_env_or`]) |
//! | `GUARD_SECRETS_PROVIDER` | `env`, `file`, `aws`, `azure` or `gcp`: replaces `[secrets] provider` |
//! | `GUARD_RATE_BACKEND` | `memory`, or a `redis://` or `rediss://` (TLS) URL: replaces `[rate_limit] backend` |
//!
//! An override for a section the policy does not have is an error (it would silently do
//! nothing), and an overridden value is checked like the file's own.

use std::path::Path;

use super::{Policy, PolicyError, PolicyProblem, SecretsProvider};

/// Path of a policy file that replaces the embedded one.
pub(crate) const POLICY_VAR: &str = "GUARD_POLICY";
/// Replaces `[secrets] provider`.
pub(crate) const SECRETS_PROVIDER_VAR: &str = "GUARD_SECRETS_PROVIDER";
/// Replaces `[rate_limit] backend`.
pub(crate) const RATE_BACKEND_VAR: &str = "GUARD_RATE_BACKEND";

impl Policy {
    /// Parses a policy whose `[validate] schema` is given as text instead of a file path (a
    /// schema built into the binary with `include_str!`). The schema is compiled and checked with
    /// the rest of the policy.
    ///
    /// ```
    /// let policy = guard_core::Policy::from_toml_str_with_schema(
    ///     "[function]\nallow_unverified = true\n[validate]\nschema = \"order.schema.json\"",
    ///     r#"{"type": "object", "required": ["order_id"]}"#,
    /// ).unwrap();
    /// # let _ = policy;
    ///
    /// let err = guard_core::Policy::from_toml_str_with_schema("", "{}").unwrap_err();
    /// assert_eq!(err.problems()[0].path, "validate");
    /// ```
    pub fn from_toml_str_with_schema(text: &str, schema: &str) -> Result<Self, PolicyError> {
        Self::parse(text, super::SchemaFrom::Text(schema))
    }

    /// The policy of a deployed function: the file named by `GUARD_POLICY` when it is set,
    /// otherwise `embedded` (with `schema`, when given, as its `[validate]` schema); then the
    /// environment overrides of [`apply_env`](Self::apply_env).
    ///
    /// ```
    /// const POLICY: &str = "[function]\nname = \"shop-orders-prod-intake\"\nallow_unverified = true";
    /// let policy = guard_core::Policy::from_env_or(POLICY, None).unwrap();
    /// assert_eq!(policy.function_name(), Some("shop-orders-prod-intake"));
    /// ```
    pub fn from_env_or(embedded: &str, schema: Option<&str>) -> Result<Self, PolicyError> {
        Self::from_vars_or(embedded, schema, |k| std::env::var(k).ok())
    }

    /// [`from_env_or`](Self::from_env_or) with the variables read through `var`.
    ///
    /// ```
    /// let vars = |k: &str| (k == "GUARD_RATE_BACKEND").then(|| "redis://cache:6379".to_string());
    /// let policy = guard_core::Policy::from_vars_or("[function]\nallow_unverified = true\n[rate_limit]\nper_second = 5", None, vars).unwrap();
    /// # let _ = policy;
    /// ```
    pub fn from_vars_or(
        embedded: &str,
        schema: Option<&str>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, PolicyError> {
        let mut policy = match var(POLICY_VAR) {
            Some(path) => Self::load(Path::new(&path))?,
            None => match schema {
                Some(schema) => Self::from_toml_str_with_schema(embedded, schema)?,
                None => Self::from_toml_str(embedded)?,
            },
        };
        policy.apply_vars(var)?;
        Ok(policy)
    }

    /// Applies the environment overrides from the process environment:
    ///
    /// | variable | effect |
    /// |---|---|
    /// | `GUARD_POLICY` | path of a `guard.toml` used instead of the one built into the binary ([`Policy::from_env_or`]; not read here) |
    /// | `GUARD_SECRETS_PROVIDER` | `env`, `file`, `aws`, `azure` or `gcp`: replaces `[secrets] provider` |
    /// | `GUARD_RATE_BACKEND` | `memory`, or a `redis://` or `rediss://` (TLS) URL: replaces `[rate_limit] backend` |
    ///
    /// An override for a section the policy does not have is an error (it would silently do
    /// nothing), and an overridden value is checked like the file's own.
    pub fn apply_env(&mut self) -> Result<(), PolicyError> {
        self.apply_vars(|k| std::env::var(k).ok())
    }

    /// [`apply_env`](Self::apply_env) with the variables read through `var`; every problem is
    /// reported, with the variable's name as its path. Values are never echoed (a Redis URL may
    /// carry a password).
    ///
    /// ```
    /// use guard_core::policy::SecretsProvider;
    /// let mut policy = guard_core::Policy::from_toml_str("[function]\nallow_unverified = true\n[secrets]\nprovider = \"aws\"").unwrap();
    /// policy.apply_vars(|k| (k == "GUARD_SECRETS_PROVIDER").then(|| "env".to_string())).unwrap();
    /// assert_eq!(policy.secrets_provider(), Some(SecretsProvider::Env));
    ///
    /// let mut policy = guard_core::Policy::default();
    /// let err = policy.apply_vars(|k| (k == "GUARD_RATE_BACKEND").then(|| "memory".to_string())).unwrap_err();
    /// assert_eq!(err.problems()[0].path, "GUARD_RATE_BACKEND");
    /// ```
    pub fn apply_vars(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), PolicyError> {
        let mut problems = Vec::new();
        if let Some(value) = var(SECRETS_PROVIDER_VAR) {
            match (provider(&value), self.secrets.as_mut()) {
                (Some(p), Some(section)) => section.provider = p,
                (None, _) => problems.push(PolicyProblem::new(
                    SECRETS_PROVIDER_VAR,
                    "expected `env`, `file`, `aws`, `azure` or `gcp`",
                )),
                (Some(_), None) => problems.push(PolicyProblem::new(
                    SECRETS_PROVIDER_VAR,
                    "set, but the policy has no [secrets] section",
                )),
            }
        }
        if let Some(value) = var(RATE_BACKEND_VAR) {
            match self.rate_limit.as_mut() {
                Some(section) => {
                    section.backend = value;
                    let mut found = Vec::new();
                    section.check("rate_limit", &mut found);
                    problems.extend(
                        found
                            .into_iter()
                            .filter(|p| p.path == "rate_limit.backend")
                            .map(|p| PolicyProblem::new(RATE_BACKEND_VAR, p.message)),
                    );
                }
                None => problems.push(PolicyProblem::new(
                    RATE_BACKEND_VAR,
                    "set, but the policy has no [rate_limit] section",
                )),
            }
        }
        if let Some(section) = self.secrets.as_ref() {
            let mut found = Vec::new();
            section.check("secrets", &mut found);
            problems.extend(found);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(PolicyError::new(problems))
        }
    }
}

fn provider(value: &str) -> Option<SecretsProvider> {
    Some(match value {
        "env" => SecretsProvider::Env,
        "file" => SecretsProvider::File,
        "aws" => SecretsProvider::Aws,
        "azure" => SecretsProvider::Azure,
        "gcp" => SecretsProvider::Gcp,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDERS: &str = "[function]\nallow_unverified = true\n[rate_limit]\nper_second = 5\n[secrets]\nprovider = \"aws\"\nrequired = [\"k\"]\n[validate]\nschema = \"s.json\"";

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn overrides_replace_the_provider_and_backend() {
        let p = Policy::from_vars_or(
            ORDERS,
            Some("{}"),
            vars(&[(SECRETS_PROVIDER_VAR, "env"), (RATE_BACKEND_VAR, "MEMORY")]),
        )
        .unwrap();
        assert_eq!(p.secrets.unwrap().provider, SecretsProvider::Env);
        assert_eq!(p.rate_limit.unwrap().backend, "MEMORY");
    }

    #[cfg(feature = "redis")]
    #[test]
    fn a_redis_backend_can_be_named_by_the_environment() {
        let p = Policy::from_vars_or(
            ORDERS,
            Some("{}"),
            vars(&[(RATE_BACKEND_VAR, "redis://127.0.0.1:6379/0")]),
        )
        .unwrap();
        assert_eq!(p.rate_limit.unwrap().backend, "redis://127.0.0.1:6379/0");
    }

    #[test]
    fn bad_overrides_are_all_reported_without_echoing_values() {
        let err = Policy::from_vars_or(
            ORDERS,
            Some("{}"),
            vars(&[
                (SECRETS_PROVIDER_VAR, "vault"),
                (RATE_BACKEND_VAR, "http://user:hunter2@cache"),
            ]),
        )
        .unwrap_err();
        let paths: Vec<_> = err.problems().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, [SECRETS_PROVIDER_VAR, RATE_BACKEND_VAR]);
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(!err.to_string().contains("vault"), "{err}");
    }

    #[cfg(feature = "validate")]
    #[test]
    fn an_embedded_schema_is_compiled_with_the_policy() {
        let err = Policy::from_toml_str_with_schema(ORDERS, r#"{"type": 12}"#).unwrap_err();
        assert_eq!(err.problems()[0].path, "validate.schema", "{err}");
    }

    #[test]
    fn an_embedded_schema_is_kept_with_the_policy() {
        let p = Policy::from_toml_str_with_schema(ORDERS, r#"{"type": "object"}"#).unwrap();
        assert!(p.validate.unwrap().schema_document.is_some());
    }

    #[test]
    fn an_embedded_schema_must_be_json() {
        let err = Policy::from_toml_str_with_schema(ORDERS, "not json").unwrap_err();
        assert_eq!(err.problems()[0].path, "validate.schema", "{err}");
    }

    #[test]
    fn guard_policy_names_the_file_that_replaces_the_embedded_policy() {
        let dir = std::env::temp_dir().join(format!("guard-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("guard.toml");
        std::fs::write(
            &file,
            "[function]\nname = \"team-svc-prod-fn\"\nallow_unverified = true",
        )
        .unwrap();
        let path = file.to_str().unwrap().to_owned();
        let p = Policy::from_vars_or(ORDERS, Some("{}"), move |k| {
            (k == POLICY_VAR).then(|| path.clone())
        })
        .unwrap();
        assert_eq!(p.function.name.as_deref(), Some("team-svc-prod-fn"));
        assert!(p.secrets.is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
