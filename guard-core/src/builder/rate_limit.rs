//! `[rate_limit]` → the pre-auth and post-auth [`RateLimitLayer`]s.

use std::num::{NonZeroU32, NonZeroUsize};

use crate::Policy;
use crate::policy::{
    BackendChoice, MessageRateLimit, PolicyError, PolicyProblem, RateLimitKey,
    RateLimitPolicy,
};
use crate::rate_limit::key::RateKey;
use crate::rate_limit::{Backend, MemoryBackend, MemoryOptions, Rate, RateLimitLayer};

/// The layers `[rate_limit]` asks for, for the builder to place.
#[derive(Debug, Clone, Default)]
pub(crate) struct RateLimitLayers {
    /// Between ingress and verification.
    pub(crate) pre_auth: Option<RateLimitLayer>,
    /// Between verification and validation.
    pub(crate) post_auth: Option<RateLimitLayer>,
    /// With a Redis backend: the replay store on the same connection (keys
    /// `<key_prefix>:replay:`, `replay_min_replicas` applied), which the [`Guard`](crate::Guard)
    /// gives `[verify.hmac] replay` unless the caller passed a store of its own.
    #[cfg(feature = "redis")]
    pub(crate) replay: Option<crate::rate_limit::RedisReplayStore>,
}

/// The layers the `[rate_limit]` section asks for, to be placed as the canonical stack does:
/// `pre_auth` between ingress and verification (by peer by default), `post_auth` between
/// verification and validation (by principal by default). No section: no layers. `secrets` is
/// the store that holds `[rate_limit] password_secret` (a policy naming one is refused without a
/// store).
///
/// With a Redis backend both placements share one connection and use the key prefixes
/// `<key_prefix>:pre:` and `<key_prefix>:post:` (`key_prefix` defaults to
/// `guard:rl:<function name>`). Nothing connects before the first request. The section was
/// checked when the policy was loaded.
pub(crate) fn rate_limit_layers(
    policy: &Policy,
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))] secrets: Option<
        &guard_secrets::SecretStore,
    >,
) -> Result<RateLimitLayers, PolicyError> {
    let Some(section) = &policy.rate_limit else {
        return Ok(RateLimitLayers::default());
    };
    let rate = rate(section)?;
    let backends = BackendRecipe::new(
        section,
        policy.function.name.as_deref(),
        #[cfg(feature = "redis")]
        secrets,
    )?;
    let build = |choice: RateLimitKey, placement: &'static str| {
        let key = match choice {
            RateLimitKey::Off => return None,
            RateLimitKey::Global => RateKey::global(),
            RateLimitKey::Peer => RateKey::peer(),
            RateLimitKey::Principal => RateKey::principal(),
        };
        let key = match section.messages {
            MessageRateLimit::Exempt => key.exempt_messages(),
            MessageRateLimit::Source => key.messages_by_source(),
        };
        Some(RateLimitLayer::from_parts(
            backends.build(rate, placement),
            key,
            placement,
        ))
    };
    Ok(RateLimitLayers {
        pre_auth: build(section.pre_auth, "pre_auth"),
        post_auth: build(section.post_auth, "post_auth"),
        #[cfg(feature = "redis")]
        replay: backends.replay_store(section),
    })
}

/// The section's rate: `per_second` or `per_minute`, with `burst` when given.
fn rate(section: &RateLimitPolicy) -> Result<Rate, PolicyError> {
    let count = section
        .per_second
        .or(section.per_minute)
        .and_then(NonZeroU32::new)
        .ok_or_else(|| {
            PolicyError::new(vec![PolicyProblem::new(
                "rate_limit.per_second",
                "must be at least 1",
            )])
        })?;
    let rate = if section.per_second.is_some() {
        Rate::per_second(count)
    } else {
        Rate::per_minute(count)
    };
    Ok(match section.burst.and_then(NonZeroU32::new) {
        Some(burst) => rate.with_burst(burst),
        None => rate,
    })
}

/// What the policy's backend choice builds per placement.
enum BackendRecipe {
    Memory(MemoryOptions),
    #[cfg(feature = "redis")]
    Redis {
        conn: crate::rate_limit::RedisConnection,
        prefix: String,
        failure_mode: crate::rate_limit::FailureMode,
    },
}

impl BackendRecipe {
    fn new(
        section: &RateLimitPolicy,
        function: Option<&str>,
        #[cfg(feature = "redis")] secrets: Option<&guard_secrets::SecretStore>,
    ) -> Result<Self, PolicyError> {
        match section.backend_choice() {
            BackendChoice::Memory => {
                let max = usize::try_from(section.max_keys).unwrap_or(usize::MAX);
                let mut opts = MemoryOptions::default();
                if let Some(max) = NonZeroUsize::new(max) {
                    opts = opts.with_max_keys(max);
                }
                Ok(BackendRecipe::Memory(opts))
            }
            #[cfg(feature = "redis")]
            BackendChoice::Redis(url) => Self::redis(url, section, function, secrets),
            #[cfg(not(feature = "redis"))]
            BackendChoice::Redis(_) => {
                let _ = function;
                Err(PolicyError::new(vec![PolicyProblem::new(
                    "rate_limit.backend",
                    "a Redis backend needs guard-core's `redis` feature",
                )]))
            }
        }
    }

    /// `backend = "redis://…"`: one connection for both placements, with the password from the
    /// secret store and the CA file read now; nothing connects before the first request.
    #[cfg(feature = "redis")]
    fn redis(
        url: &str,
        section: &RateLimitPolicy,
        function: Option<&str>,
        secrets: Option<&guard_secrets::SecretStore>,
    ) -> Result<Self, PolicyError> {
        let problem = |path: &str, msg: String| {
            PolicyError::new(vec![PolicyProblem::new(format!("rate_limit.{path}"), msg)])
        };
        let mut builder = crate::rate_limit::RedisConnection::builder(url)
            .timeout(std::time::Duration::from_millis(section.timeout_ms))
            .connect_timeout(std::time::Duration::from_millis(section.connect_timeout_ms))
            .cluster(section.cluster);
        if let Some(user) = &section.username {
            builder = builder.username(user);
        }
        if let Some(name) = &section.password_secret {
            let store = secrets.ok_or_else(|| {
                problem(
                    "password_secret",
                    "the password comes from the secret store: configure [secrets] or pass a store".into(),
                )
            })?;
            builder = builder.password_secret(store.clone(), name);
        }
        if let Some(file) = &section.tls_ca_file {
            let pem = std::fs::read(file).map_err(|e| {
                problem(
                    "tls_ca_file",
                    format!("cannot read the CA file: {}", e.kind()),
                )
            })?;
            builder = builder.tls_ca_pem(pem);
        }
        if section.tls_insecure_skip_verify_for_tests {
            builder = builder.dangerous_skip_tls_verification_for_tests();
        }
        let conn = builder
            .build()
            .map_err(|e| problem("backend", e.to_string()))?;
        let prefix = section
            .key_prefix
            .clone()
            .unwrap_or_else(|| format!("guard:rl:{}", function.unwrap_or("default")));
        Ok(BackendRecipe::Redis {
            conn,
            prefix,
            failure_mode: match section.failure_mode {
                crate::policy::FailureMode::Open => crate::rate_limit::FailureMode::Open,
                crate::policy::FailureMode::Closed => crate::rate_limit::FailureMode::Closed,
            },
        })
    }

    /// The Redis replay store on the limiters' connection: keys `<prefix>:replay:`, with the
    /// replica acknowledgements the section asks for.
    #[cfg(feature = "redis")]
    fn replay_store(
        &self,
        section: &RateLimitPolicy,
    ) -> Option<crate::rate_limit::RedisReplayStore> {
        match self {
            BackendRecipe::Memory(_) => None,
            BackendRecipe::Redis { conn, prefix, .. } => Some(
                crate::rate_limit::RedisReplayStore::new(conn.clone(), format!("{prefix}:replay:"))
                    .require_replicas(
                        section.replay_min_replicas,
                        std::time::Duration::from_millis(section.replay_replica_timeout_ms),
                    ),
            ),
        }
    }

    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    fn build(&self, rate: Rate, placement: &str) -> Backend {
        match self {
            BackendRecipe::Memory(opts) => MemoryBackend::with_options(rate, *opts).into(),
            #[cfg(feature = "redis")]
            BackendRecipe::Redis {
                conn,
                prefix,
                failure_mode,
            } => {
                let short = if placement == "pre_auth" {
                    "pre"
                } else {
                    "post"
                };
                crate::rate_limit::RedisBackend::new(conn.clone(), rate)
                    .with_key_prefix(format!("{prefix}:{short}:"))
                    .with_failure_mode(*failure_mode)
                    .into()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::rate_limit_layers;
    use crate::Policy;

    #[test]
    fn a_section_makes_a_pre_auth_and_a_post_auth_layer() {
        let policy = Policy::from_toml_str("[rate_limit]\nper_second = 5\nburst = 10").unwrap();
        let layers = rate_limit_layers(&policy, None).unwrap();
        assert_eq!(layers.pre_auth.unwrap().label(), "pre_auth");
        assert_eq!(layers.post_auth.unwrap().label(), "post_auth");
        assert!(
            rate_limit_layers(&Policy::default(), None)
                .unwrap()
                .pre_auth
                .is_none()
        );
    }

    #[test]
    fn a_section_without_a_rate_is_refused_with_its_key_path() {
        let mut policy = Policy::default();
        policy.rate_limit = Some(Default::default());
        let err = rate_limit_layers(&policy, None).unwrap_err();
        assert_eq!(err.problems()[0].path, "rate_limit.per_second");
    }
}
