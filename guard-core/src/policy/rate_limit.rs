//! The `[rate_limit]` section of `guard.toml`.
//!
//! ```toml
//! [rate_limit]
//! per_second = 5            # or per_minute = 300 (exactly one of the two)
//! burst = 10                # default: the per_second / per_minute count
//! pre_auth = "peer"         # before verification: "peer" (default), "global" or "off"
//! post_auth = "principal"   # after verification: "principal" (default), "peer", "global" or "off"
//! messages = "exempt"       # queue/topic/stream messages: "exempt" (default) or "source"
//! backend = "memory"        # default; or "redis://host:6379/0" / "rediss://host:6380" shared by every instance
//! failure_mode = "open"     # Redis unreachable: "open" (default, admit and count) or "closed" (503)
//! timeout_ms = 100          # Redis: budget of one check, connection included
//! connect_timeout_ms = 1000 # Redis: one connection attempt
//! max_keys = 100000         # memory: most buckets kept per placement
//! key_prefix = "guard:rl:shop-orders-prod-intake"  # Redis: default guard:rl:<function name>
//! cluster = false           # Redis: the URL is one seed node of a Redis Cluster
//! username = "guard"        # Redis: ACL user (optional)
//! password_secret = "redis-password"   # Redis: the password's name in the secret store
//! tls_ca_file = "/etc/guard/redis-ca.pem"  # rediss: trust only this CA (default: platform roots)
//! tls_insecure_skip_verify_for_tests = false  # rediss: NO certificate check; test setups only
//! replay_min_replicas = 0   # Redis replay store: replicas that must acknowledge each record (WAIT)
//! replay_replica_timeout_ms = 50  # ...within this time, else 503 (less than timeout_ms)
//! ```
//!
//! With a Redis backend, `[verify.hmac] replay = true` records signatures in the same Redis
//! (keys `<key_prefix>:replay:`), so a signature accepted by one instance is refused by every
//! other. That store always fails closed (503 `guard.verify.unavailable`), whatever
//! `failure_mode` says: a replay check that admits when it cannot look is no check.
//!
//! **What Redis replication can lose.** A primary acknowledges a write before any replica has
//! it. If the primary dies within those few milliseconds, the replica promoted in its place never
//! saw the record, and that one signature can be accepted once more within its timestamp
//! tolerance. `replay_min_replicas = N` follows each new record with `WAIT N
//! replay_replica_timeout_ms` on the primary that owns the key (one round trip with the `SET`,
//! routed by the key's slot in a cluster); fewer acknowledgements in time → 503 and the record is
//! deleted again so the retry is not taken for a replay. `WAIT` guarantees that N replicas hold
//! the record in memory when the request is admitted; it does not make the write durable on disk,
//! does not stop a failover from promoting a replica that did not acknowledge (Redis prefers the
//! most up-to-date one), and does not help a primary that restarts empty without a failover.
//! While fewer than N replicas are connected, every signed request is refused.
//!
//! A password is never written in the policy: a URL carrying one is refused (without repeating
//! it); name the secret with `password_secret` instead. `rediss://` always verifies the server's
//! certificate and host name; a URL fragment (`#insecure`) is refused.
//!
//! Numbers are plain integers here so that [`check`](RateLimitPolicy::check) can report *every* zero
//! or out-of-range value with its key path at once; the layer then builds the non-zero types.

use serde::Deserialize;

use super::PolicyProblem;

/// What to do when the shared (Redis) backend cannot answer.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FailureMode {
    /// Admit the request, count it and log a warning (availability first; the default).
    #[default]
    Open,
    /// Refuse with 503 `guard.rate.backend_unavailable`.
    Closed,
}

/// What one placement of the rate limiter counts by.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RateLimitKey {
    /// No limiter at this placement.
    Off,
    /// One bucket for the whole function instance (memory) or for every instance (Redis).
    Global,
    /// The platform-observed client address (IPv4 by address, IPv6 by /64).
    Peer,
    /// The verified principal (post-auth only; falls back to the peer when there is none).
    Principal,
}

/// How both limiters count messages (SQS, SNS, Kinesis, Pub/Sub, Event Grid, Azure queue...).
///
/// A message carries no client address, and a refused one is redelivered and finally
/// dead-lettered by the platform, so messages are never counted as one anonymous caller.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub(crate) enum MessageRateLimit {
    /// Not rate-limited (the default): the platform's batch size and concurrency pace delivery,
    /// and a valid message from the allowed source is never dead-lettered by the limiter.
    #[default]
    Exempt,
    /// One bucket per message kind and platform-reported source. A message over the rate is
    /// refused with 429 (transient: redelivered, and dead-lettered after the platform's
    /// redelivery limit), so size the rate for the queue's peak.
    Source,
}

/// The `[rate_limit]` section: GCRA limits placed before and after verification.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub(crate) struct RateLimitPolicy {
    /// Sustained rate, requests per second (exactly one of `per_second` / `per_minute`).
    pub(crate) per_second: Option<u32>,
    /// Sustained rate, requests per minute.
    pub(crate) per_minute: Option<u32>,
    /// Requests admitted at once from a full bucket; default: the rate's count.
    pub(crate) burst: Option<u32>,
    /// Key of the limiter placed before verification (`peer` by default).
    pub(crate) pre_auth: RateLimitKey,
    /// Key of the limiter placed after verification (`principal` by default).
    pub(crate) post_auth: RateLimitKey,
    /// How both limiters count messages (`exempt` by default).
    pub(crate) messages: MessageRateLimit,
    /// `memory` (default) or a `redis://` URL shared by every instance.
    pub(crate) backend: String,
    /// Redis unreachable: admit (`open`, default) or refuse with 503 (`closed`).
    pub(crate) failure_mode: FailureMode,
    /// Redis: the most one check may take, in milliseconds (connection included).
    pub(crate) timeout_ms: u64,
    /// Redis: the most one connection attempt may take, in milliseconds.
    pub(crate) connect_timeout_ms: u64,
    /// Memory: the most buckets kept per placement (idle ones are evicted first).
    pub(crate) max_keys: u64,
    /// Redis: prefix of every key; default `guard:rl:<function name>`.
    pub(crate) key_prefix: Option<String>,
    /// Redis: the URL is one seed node of a Redis Cluster (the other nodes are discovered).
    pub(crate) cluster: bool,
    /// Redis: the ACL user to authenticate as (with [`password_secret`](Self::password_secret)).
    pub(crate) username: Option<String>,
    /// Redis: name of the password in the secret store (`AUTH`), read when connecting.
    pub(crate) password_secret: Option<String>,
    /// `rediss://`: a PEM file with the CA(s) to trust instead of the platform's roots.
    pub(crate) tls_ca_file: Option<String>,
    /// `rediss://`: accept any certificate and host name. Self-signed test setups only: anyone on
    /// the path could then read and forge every decision. Warned about when the layer is built.
    pub(crate) tls_insecure_skip_verify_for_tests: bool,
    /// Redis replay store: replicas that must acknowledge each new record (`WAIT`) before the
    /// request is admitted (default 0: none, replication stays asynchronous).
    pub(crate) replay_min_replicas: u32,
    /// Redis replay store: how long to wait for those acknowledgements, in milliseconds (less
    /// than `timeout_ms`, which bounds the whole check).
    pub(crate) replay_replica_timeout_ms: u64,
}

impl Default for RateLimitPolicy {
    fn default() -> Self {
        Self {
            per_second: None,
            per_minute: None,
            burst: None,
            pre_auth: RateLimitKey::Peer,
            post_auth: RateLimitKey::Principal,
            messages: MessageRateLimit::Exempt,
            backend: "memory".into(),
            failure_mode: FailureMode::Open,
            timeout_ms: 100,
            connect_timeout_ms: 1000,
            max_keys: 100_000,
            key_prefix: None,
            cluster: false,
            username: None,
            password_secret: None,
            tls_ca_file: None,
            tls_insecure_skip_verify_for_tests: false,
            replay_min_replicas: 0,
            replay_replica_timeout_ms: 50,
        }
    }
}

/// The backend a [`RateLimitPolicy`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BackendChoice<'a> {
    /// In-process memory.
    Memory,
    /// A Redis URL.
    Redis(&'a str),
}

impl RateLimitPolicy {
    /// The configured backend: `memory` (the default), or the Redis URL.
    pub(crate) fn backend_choice(&self) -> BackendChoice<'_> {
        if self.backend.eq_ignore_ascii_case("memory") {
            BackendChoice::Memory
        } else {
            BackendChoice::Redis(&self.backend)
        }
    }

    /// Adds every semantic problem of this section (with key paths under `path`) to `problems`.
    pub(crate) fn check(&self, path: &str, problems: &mut Vec<PolicyProblem>) {
        let mut problem = |key: &str, msg: &str| {
            problems.push(PolicyProblem::new(format!("{path}.{key}"), msg));
        };
        match (self.per_second, self.per_minute) {
            (None, None) => problem("per_second", "set one of `per_second` or `per_minute`"),
            (Some(_), Some(_)) => {
                problem("per_minute", "set only one of `per_second` or `per_minute`")
            }
            _ => {}
        }
        if self.per_second == Some(0) {
            problem("per_second", "must be at least 1");
        }
        if self.per_minute == Some(0) {
            problem("per_minute", "must be at least 1");
        }
        if self.burst == Some(0) {
            problem("burst", "must be at least 1");
        }
        if self.pre_auth == RateLimitKey::Principal {
            problem(
                "pre_auth",
                "the principal is only known after verification: use `peer`, `global` or `off`",
            );
        }
        if self.pre_auth == RateLimitKey::Off && self.post_auth == RateLimitKey::Off {
            problem(
                "post_auth",
                "both placements are `off`: remove the section to disable rate limiting",
            );
        }
        self.check_backend(&mut problem);
    }

    /// The backend keys: timeouts, key space, and the Redis connection settings (URL, TLS,
    /// credentials), each only where its backend uses it.
    fn check_backend(&self, problem: &mut impl FnMut(&str, &str)) {
        if self.timeout_ms == 0 {
            problem("timeout_ms", "must be at least 1");
        }
        if self.connect_timeout_ms == 0 {
            problem("connect_timeout_ms", "must be at least 1");
        }
        if self.max_keys == 0 {
            problem("max_keys", "must be at least 1");
        }
        if let Some(prefix) = &self.key_prefix
            && (prefix.is_empty() || prefix.len() > 200 || prefix.chars().any(char::is_control))
        {
            problem(
                "key_prefix",
                "must be 1 to 200 characters without control characters",
            );
        }
        self.check_redis(problem);
    }

    /// The Redis connection settings (URL, TLS, credentials), refused for the memory backend.
    fn check_redis(&self, problem: &mut impl FnMut(&str, &str)) {
        let tls = match self.backend_choice() {
            BackendChoice::Redis(url) => {
                if let Err(msg) = check_redis_url(url) {
                    problem("backend", &msg);
                }
                url.get(..9)
                    .is_some_and(|s| s.eq_ignore_ascii_case("rediss://"))
            }
            BackendChoice::Memory => {
                let redis_only = [
                    ("cluster", self.cluster),
                    ("username", self.username.is_some()),
                    ("password_secret", self.password_secret.is_some()),
                    ("replay_min_replicas", self.replay_min_replicas > 0),
                ];
                for (key, set) in redis_only {
                    if set {
                        problem(key, "only for a Redis backend");
                    }
                }
                false
            }
        };
        self.check_redis_credentials(problem);
        self.check_redis_tls(tls, problem);
    }

    /// The Redis user, the password's secret name, and the replica acknowledgements of replay.
    fn check_redis_credentials(&self, problem: &mut impl FnMut(&str, &str)) {
        if let Some(user) = &self.username
            && (user.is_empty() || user.len() > 128 || user.chars().any(char::is_control))
        {
            problem(
                "username",
                "must be 1 to 128 characters without control characters",
            );
        }
        if let Some(name) = &self.password_secret
            && name.trim().is_empty()
        {
            problem("password_secret", "must name a secret");
        }
        if self.replay_min_replicas > 0 {
            if self.replay_min_replicas > 16 {
                problem("replay_min_replicas", "must be at most 16");
            }
            if self.replay_replica_timeout_ms == 0 {
                problem(
                    "replay_replica_timeout_ms",
                    "must be at least 1 (`WAIT` with 0 waits forever)",
                );
            } else if self.replay_replica_timeout_ms >= self.timeout_ms {
                problem(
                    "replay_replica_timeout_ms",
                    "must be less than `timeout_ms`, the budget of the whole check",
                );
            }
        }
    }

    /// The TLS settings, which only a `rediss://` backend (`tls`) uses.
    fn check_redis_tls(&self, tls: bool, problem: &mut impl FnMut(&str, &str)) {
        if let Some(file) = &self.tls_ca_file {
            if !tls {
                problem("tls_ca_file", "only for a `rediss://` backend");
            } else if file.trim().is_empty() {
                problem("tls_ca_file", "must be a path to a PEM file");
            }
        }
        if self.tls_insecure_skip_verify_for_tests {
            if !tls {
                problem(
                    "tls_insecure_skip_verify_for_tests",
                    "only for a `rediss://` backend",
                );
            } else if self.tls_ca_file.is_some() {
                problem(
                    "tls_insecure_skip_verify_for_tests",
                    "set `tls_ca_file` (verification on) or this, not both",
                );
            }
        }
    }
}

/// Checks a Redis URL without ever echoing it (it may carry a password).
fn check_redis_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("must be `memory` or a `redis://` / `rediss://` URL".into());
    };
    if !scheme.eq_ignore_ascii_case("redis") && !scheme.eq_ignore_ascii_case("rediss") {
        return Err("must be `memory` or a `redis://` / `rediss://` URL".into());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (userinfo, host) = authority.rsplit_once('@').unwrap_or(("", authority));
    if userinfo.contains(':') {
        return Err(
            "a password in the URL is refused: store it as a secret and name it with `password_secret`"
                .into(),
        );
    }
    if url.contains('#') {
        return Err(
            "a URL fragment is refused (`#insecure` would turn off certificate checks)".into(),
        );
    }
    if host.is_empty() || host.starts_with(':') {
        return Err("the Redis URL has no host".into());
    }
    parse_redis_url(url)
}

#[cfg(feature = "redis")]
fn parse_redis_url(url: &str) -> Result<(), String> {
    redis::Client::open(url)
        .map(drop)
        .map_err(|_| "not a valid Redis URL".into())
}

#[cfg(not(feature = "redis"))]
fn parse_redis_url(_url: &str) -> Result<(), String> {
    Err("a Redis backend needs guard-core's `redis` feature".into())
}

#[cfg(test)]
mod tests {
    use crate::Policy;

    use crate::policy::tests::problem_paths as paths;

    #[test]
    fn orders_section_loads_with_defaults() {
        let p = Policy::from_toml_str("[rate_limit]\nper_second = 5\nburst = 10").unwrap();
        let r = p.rate_limit.unwrap();
        assert_eq!(r.per_second, Some(5));
        assert_eq!(r.burst, Some(10));
        assert_eq!(r.pre_auth, super::RateLimitKey::Peer);
        assert_eq!(r.post_auth, super::RateLimitKey::Principal);
        assert_eq!(r.backend_choice(), super::BackendChoice::Memory);
    }

    #[test]
    fn reports_every_zero_value_with_its_key_path() {
        let got = paths(
            "[rate_limit]\nper_minute = 0\nburst = 0\ntimeout_ms = 0\nconnect_timeout_ms = 0\nmax_keys = 0",
        );
        assert_eq!(
            got,
            [
                "rate_limit.per_minute",
                "rate_limit.burst",
                "rate_limit.timeout_ms",
                "rate_limit.connect_timeout_ms",
                "rate_limit.max_keys"
            ]
        );
    }

    #[test]
    fn requires_exactly_one_rate() {
        assert_eq!(paths("[rate_limit]\nburst = 3"), ["rate_limit.per_second"]);
        assert_eq!(
            paths("[rate_limit]\nper_second = 1\nper_minute = 60"),
            ["rate_limit.per_minute"]
        );
    }

    #[test]
    fn rejects_principal_before_verification_and_both_off() {
        assert_eq!(
            paths("[rate_limit]\nper_second = 1\npre_auth = \"principal\""),
            ["rate_limit.pre_auth"]
        );
        assert_eq!(
            paths("[rate_limit]\nper_second = 1\npre_auth = \"off\"\npost_auth = \"off\""),
            ["rate_limit.post_auth"]
        );
        assert_eq!(
            paths("[rate_limit]\nper_second = 1\npost_auth = \"ip\""),
            ["rate_limit.post_auth"]
        );
    }

    #[test]
    fn bad_backend_urls_are_reported_without_echoing_them() {
        for url in [
            "redis:/nohost",
            "http://cache:6379",
            "redis://:s3cret@/0",
            "rediss://:s3cret@cache:6380",
            "redis://user:s3cret@cache:6379",
            "rediss://cache:6380/#insecure",
        ] {
            let toml = format!("[rate_limit]\nper_second = 1\nbackend = \"{url}\"");
            let err = Policy::from_toml_str(&toml).unwrap_err();
            assert_eq!(err.problems().len(), 1, "{url}: {err}");
            assert_eq!(err.problems()[0].path, "rate_limit.backend");
            assert!(!err.to_string().contains("s3cret"), "{err}");
        }
    }

    #[cfg(feature = "redis")]
    #[test]
    fn replica_acknowledgements_need_redis_and_a_wait_inside_the_budget() {
        let redis = "[rate_limit]\nper_second = 1\nbackend = \"redis://cache:6379\"\n";
        let p = Policy::from_toml_str(&format!("{redis}replay_min_replicas = 1")).unwrap();
        let r = p.rate_limit.unwrap();
        assert_eq!(
            (r.replay_min_replicas, r.replay_replica_timeout_ms),
            (1, 50)
        );
        assert_eq!(
            paths("[rate_limit]\nper_second = 1\nreplay_min_replicas = 1"),
            ["rate_limit.replay_min_replicas"]
        );
        assert_eq!(
            paths(&format!("{redis}replay_min_replicas = 17")),
            ["rate_limit.replay_min_replicas"]
        );
        for timeout in [
            "replay_replica_timeout_ms = 0",
            "replay_replica_timeout_ms = 100",
        ] {
            assert_eq!(
                paths(&format!("{redis}replay_min_replicas = 1\n{timeout}")),
                ["rate_limit.replay_replica_timeout_ms"],
                "{timeout} with the default timeout_ms = 100"
            );
        }
        assert!(
            Policy::from_toml_str(&format!(
                "{redis}replay_min_replicas = 2\nreplay_replica_timeout_ms = 99"
            ))
            .is_ok()
        );
    }

    #[cfg(feature = "redis")]
    #[test]
    fn accepts_a_redis_url() {
        let p = Policy::from_toml_str(
            "[rate_limit]\nper_second = 1\nbackend = \"redis://cache.internal:6379/2\"\nfailure_mode = \"closed\"",
        )
        .unwrap();
        let r = p.rate_limit.unwrap();
        assert_eq!(r.failure_mode, super::FailureMode::Closed);
        assert!(matches!(r.backend_choice(), super::BackendChoice::Redis(_)));
    }

    #[cfg(feature = "redis")]
    #[test]
    fn accepts_tls_cluster_and_credentials_by_secret_name() {
        let p = Policy::from_toml_str(
            "[rate_limit]\nper_second = 1\nbackend = \"rediss://guard@cache.internal:6380\"\ncluster = true\nusername = \"guard\"\npassword_secret = \"redis-password\"\ntls_ca_file = \"/etc/guard/ca.pem\"",
        )
        .unwrap();
        let r = p.rate_limit.unwrap();
        assert!(r.cluster);
        assert_eq!(r.password_secret.as_deref(), Some("redis-password"));
    }

    #[cfg(feature = "redis")]
    #[test]
    fn tls_settings_need_rediss_and_exclude_each_other() {
        assert_eq!(
            paths(
                "[rate_limit]\nper_second = 1\nbackend = \"redis://cache:6379\"\ntls_ca_file = \"ca.pem\"\ntls_insecure_skip_verify_for_tests = true"
            ),
            [
                "rate_limit.tls_ca_file",
                "rate_limit.tls_insecure_skip_verify_for_tests"
            ]
        );
        assert_eq!(
            paths(
                "[rate_limit]\nper_second = 1\nbackend = \"rediss://cache:6380\"\ntls_ca_file = \"ca.pem\"\ntls_insecure_skip_verify_for_tests = true"
            ),
            ["rate_limit.tls_insecure_skip_verify_for_tests"]
        );
        assert_eq!(
            paths("[rate_limit]\nper_second = 1\ncluster = true\npassword_secret = \"p\""),
            ["rate_limit.cluster", "rate_limit.password_secret"]
        );
    }

    #[test]
    fn unknown_keys_are_refused_with_their_path() {
        assert_eq!(
            paths("[rate_limit]\nper_second = 1\nper_hour = 3"),
            ["rate_limit.per_hour"]
        );
    }
}

#[cfg(test)]
mod every_bad_rate_is_reported_at_its_path_example {
    #[test]
    fn every_bad_rate_is_reported_at_its_path() {
        let err =
            crate::Policy::from_toml_str("[rate_limit]\nper_second = 0\nburst = 0").unwrap_err();
        let paths: Vec<_> = err.problems().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["rate_limit.per_second", "rate_limit.burst"]);
    }
}
