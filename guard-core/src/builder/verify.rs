//! `[verify]` → the [`VerifyLayer`], and `VerifyDeps`, what it needs from the rest of the stack
//! (set through [`GuardDeps`](crate::GuardDeps)).

use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

use crate::clock::WallClock;
use crate::policy::{ClaimRule, HmacEncoding, HmacPolicy, HmacPreset, JwtPolicy};
use crate::policy::{PolicyError, PolicyProblem, VerifyMode, VerifyPolicy};
use crate::rejection::{Rejection, RejectionKind};
use crate::replay::ReplayStore;
use crate::request::{GuardRequest, Principal, TrustedProxies};
use guard_secrets::SecretStore;
use crate::verify::{
    BoxVerifier, CidrVerifier, ClaimPredicate, EasyAuthVerifier, HmacScheme, HmacVerifier,
    JwksCache, JwtVerifier, MemoryReplayStore, MessageChecks, PlatformIdentityVerifier,
    SignatureEncoding, SourceVerifier, Verifier, VerifierExt, VerifyLayer, all, any, by_trigger,
    header_name, parse_algorithm,
};

/// What a policy-built verifier needs from the rest of the stack: made by the builder from
/// [`GuardDeps`](crate::GuardDeps).
#[derive(Clone)]
pub(crate) struct VerifyDeps {
    secrets: SecretStore,
    clock: WallClock,
    replay: Option<Arc<dyn ReplayStore>>,
    /// Platform checks an adapter adds for messages of one kind (SNS signatures, ...).
    message_verifiers: Vec<(String, BoxVerifier)>,
    /// The client for JWKS and OIDC discovery (default: one with the platform's roots).
    #[cfg(feature = "jwks-http")]
    http_client: Option<guard_http::HttpClient>,
}

impl std::fmt::Debug for VerifyDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyDeps")
            .field("replay", &self.replay.is_some())
            .field("message_verifiers", &kinds(&self.message_verifiers))
            .finish_non_exhaustive()
    }
}

/// The message kinds of an adapter's checks, what `Debug` shows of them.
pub(super) fn kinds(checks: &[(String, impl Sized)]) -> Vec<&str> {
    checks.iter().map(|(kind, _)| kind.as_str()).collect()
}

impl VerifyDeps {
    /// HMAC keys from `secrets`, the system clock, and (when `[verify.hmac] replay = true`) a
    /// [`MemoryReplayStore`] on that clock.
    pub(crate) fn new(secrets: SecretStore) -> Self {
        Self {
            secrets,
            clock: WallClock::system(),
            replay: None,
            message_verifiers: Vec::new(),
            #[cfg(feature = "jwks-http")]
            http_client: None,
        }
    }

    /// The HTTP client for JWKS and OpenID configurations.
    #[cfg(feature = "jwks-http")]
    pub(crate) fn http_client(mut self, client: guard_http::HttpClient) -> Self {
        self.http_client = Some(client);
        self
    }

    /// Messages of `kind` must also pass `verifier`, after the source allow-list.
    pub(crate) fn message_verifier(mut self, kind: impl Into<String>, verifier: impl Verifier) -> Self {
        self.message_verifiers
            .push((kind.into(), Arc::new(verifier)));
        self
    }

    /// Whether an adapter added a check for messages of `kind`.
    pub(crate) fn has_message_verifier(&self, kind: &str) -> bool {
        self.message_verifiers.iter().any(|(k, _)| k == kind)
    }

    /// The wall clock for signature windows, token lifetimes and JWKS refreshes.
    pub(crate) fn clock(mut self, clock: WallClock) -> Self {
        self.clock = clock;
        self
    }

    /// A shared replay store (e.g. Redis) instead of the in-memory one.
    pub(crate) fn replay_store(mut self, store: Arc<dyn ReplayStore>) -> Self {
        self.replay = Some(store);
        self
    }

    /// `store` unless a replay store was given already (the builder's Redis default).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn replay_store_or(mut self, store: Arc<dyn ReplayStore>) -> Self {
        self.replay.get_or_insert(store);
        self
    }
}

fn predicates(rules: &[ClaimRule]) -> Vec<ClaimPredicate> {
    rules
        .iter()
        .filter_map(|r| {
            if let Some(v) = &r.equals {
                Some(ClaimPredicate::equals(r.claim.clone(), v.clone()))
            } else if let Some(v) = &r.contains {
                Some(ClaimPredicate::contains(r.claim.clone(), v.clone()))
            } else {
                r.exists.map(|_| ClaimPredicate::Exists(r.claim.clone()))
            }
        })
        .collect()
}

/// The cache with the refresh times and the clock, or the problem (at `at`) that made it.
#[cfg(feature = "jwks-http")]
fn finish_cache(
    cache: Result<JwksCache, crate::ConfigError>,
    ttl: Duration,
    cooldown: Duration,
    deps: &VerifyDeps,
    at: &str,
) -> Result<JwksCache, PolicyProblem> {
    cache
        .map(|c| c.ttl(ttl).cooldown(cooldown).clock(deps.clock.clone()))
        .map_err(|e| PolicyProblem::new(at, e.to_string()))
}

fn jwks_cache(
    url: &str,
    ttl: Duration,
    cooldown: Duration,
    deps: &VerifyDeps,
    at: &str,
) -> Result<JwksCache, PolicyProblem> {
    #[cfg(feature = "jwks-http")]
    {
        let builder = match &deps.http_client {
            Some(client) => JwksCache::from_url_with_client(url, client.clone()),
            None => JwksCache::from_url(url),
        };
        finish_cache(builder, ttl, cooldown, deps, at)
    }
    #[cfg(not(feature = "jwks-http"))]
    {
        let _ = (url, ttl, cooldown, deps);
        Err(PolicyProblem::new(
            at,
            "fetching a JWKS needs guard-core's `jwks-http` feature",
        ))
    }
}

/// The keys of `issuer`, found by OIDC discovery.
fn discovered_cache(
    issuer: &str,
    ttl: Duration,
    cooldown: Duration,
    deps: &VerifyDeps,
    at: &str,
) -> Result<JwksCache, PolicyProblem> {
    #[cfg(feature = "jwks-http")]
    {
        let client = match &deps.http_client {
            Some(c) => c.clone(),
            None => guard_http::HttpClient::builder()
                .build()
                .map_err(|e| PolicyProblem::new(at, e.to_string()))?,
        };
        finish_cache(JwksCache::discover(issuer, client), ttl, cooldown, deps, at)
    }
    #[cfg(not(feature = "jwks-http"))]
    {
        let _ = (issuer, ttl, cooldown, deps);
        Err(PolicyProblem::new(
            at,
            "OIDC discovery needs guard-core's `jwks-http` feature",
        ))
    }
}

/// One `[verify.jwt]` table: its verifier, the issuers it accepts, and its cache when the keys
/// come from discovery (warmed at start by [`VerifyLayer::discover_now`]).
#[allow(clippy::type_complexity)]
fn jwt_verifier(
    j: &JwtPolicy,
    deps: &VerifyDeps,
    base: &str,
) -> Result<(JwtVerifier, Vec<String>, Option<JwksCache>), PolicyProblem> {
    let ttl = Duration::from_secs(j.jwks_ttl_secs);
    let cooldown = Duration::from_secs(j.jwks_cooldown_secs);
    let discovery = !j.issuer.is_empty() && j.jwks_url.is_empty();
    let jwks = if discovery {
        discovered_cache(&j.issuer, ttl, cooldown, deps, &format!("{base}.issuer"))?
    } else {
        jwks_cache(
            &j.jwks_url,
            ttl,
            cooldown,
            deps,
            &format!("{base}.jwks_url"),
        )?
    };
    let issuers = if j.issuer.is_empty() {
        j.issuers.clone()
    } else {
        vec![j.issuer.clone()]
    };
    let algs = j
        .algorithms
        .iter()
        .map(|a| parse_algorithm(a))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PolicyProblem::new(format!("{base}.algorithms"), e.to_string()))?;
    let mut b = JwtVerifier::builder(jwks.clone())
        .issuers(issuers.iter().cloned())
        .audiences(j.audiences.iter().cloned())
        .algorithms(algs)
        .leeway(Duration::from_secs(j.leeway_secs))
        .clock(deps.clock.clone());
    for p in predicates(&j.claims) {
        b = b.require(p);
    }
    let v = b
        .build()
        .map_err(|e| PolicyProblem::new(base.to_string(), e.to_string()))?;
    Ok((v, issuers, discovery.then_some(jwks)))
}

/// How long Google's push-token keys are kept, and the least time between two fetches of them
/// (a token signed by a key not yet seen triggers a refresh, at most once per cooldown).
const GCP_PUSH_JWKS_TTL: Duration = Duration::from_secs(3600);
const GCP_PUSH_JWKS_COOLDOWN: Duration = Duration::from_secs(10);

/// The providers of the identities guard-aws reads from API Gateway authorizers, which
/// `[verify.aws_authorizer]` accepts.
const AWS_AUTHORIZERS: [&str; 4] = ["aws-iam", "aws-cognito", "aws-jwt", "aws-lambda-authorizer"];

fn no_request_checks(_: &GuardRequest) -> Result<Principal, Rejection> {
    Err(Rejection::new(RejectionKind::MissingCredentials)
        .with_reason("policy has no request checks; only messages are accepted"))
}

impl VerifyLayer {
    /// Builds the verifier the `[verify]` section describes (see [`crate::policy::VerifyPolicy`]):
    /// `by_trigger(requests, messages)` where `requests` is `any`/`all` of the configured request
    /// checks in the order cidr, hmac, jwt, azure_easy_auth, aws_authorizer (presented credentials
    /// are checked, and a valid signature used up, even when the address already passed), and
    /// `messages` is the source allow-list scoped by trigger kind (plus the GCP push token for its
    /// kinds). Reports every problem with its key path.
    pub(crate) fn from_policy(policy: &VerifyPolicy, deps: &VerifyDeps) -> Result<Self, PolicyError> {
        let mut problems = Vec::new();
        policy.check("verify", &mut problems);
        if policy.sns.is_some() && !deps.has_message_verifier("sns") {
            problems.push(PolicyProblem::new(
                "verify.sns",
                "SNS signatures are verified by the AWS adapter: build the stack with guard_aws::builder_from_policy",
            ));
        }
        if !problems.is_empty() {
            return Err(PolicyError::new(problems));
        }
        let (checks, discovered) = request_checks(policy, deps, &mut problems);
        let push = push_checks(policy, deps, &mut problems);
        let sources = SourceVerifier::new(
            policy
                .sources
                .iter()
                .flat_map(|(kind, list)| list.iter().map(move |p| (kind.as_str(), p.as_str()))),
        );
        let sources = match sources {
            Ok(s) => s,
            Err(e) => {
                problems.push(PolicyProblem::new("verify.sources", e.to_string()));
                return Err(PolicyError::new(problems));
            }
        };
        if !problems.is_empty() {
            return Err(PolicyError::new(problems));
        }
        let requests: BoxVerifier = if checks.is_empty() {
            Arc::new(no_request_checks)
        } else {
            match policy.mode {
                VerifyMode::Any => any(checks).boxed(),
                VerifyMode::All => all(checks).boxed(),
            }
        };
        Ok(VerifyLayer::new(by_trigger(
            requests,
            MessageChecks::new(sources, push, deps.message_verifiers.clone()),
        ))
        .with_discovery(discovered))
    }
}

/// The request checks in the order cidr, hmac, jwt, azure_easy_auth, aws_authorizer, and the
/// JWKS caches that come from OIDC discovery; a check that cannot be built adds its problem.
fn request_checks(
    policy: &VerifyPolicy,
    deps: &VerifyDeps,
    problems: &mut Vec<PolicyProblem>,
) -> (Vec<BoxVerifier>, Vec<JwksCache>) {
    let mut checks: Vec<BoxVerifier> = Vec::new();
    if let Some(c) = &policy.cidr {
        let nets = c.allow.iter().filter_map(|n| n.parse().ok());
        let mut v = CidrVerifier::new(nets);
        if let Some(p) = TrustedProxies::new(c.trusted_proxy_hops as usize) {
            v = v.with_trusted_proxies(p);
        }
        checks.push(v.boxed());
    }
    if let Some(h) = &policy.hmac {
        match hmac_verifier(h, deps) {
            Ok(v) => checks.push(v.boxed()),
            Err(p) => problems.push(p),
        }
    }
    let discovered = jwt_checks(policy, deps, &mut checks, problems);
    if let Some(e) = &policy.azure_easy_auth {
        let v = predicates(&e.claims).into_iter().fold(
            EasyAuthVerifier::new().auth_types(e.auth_types.iter().cloned()),
            EasyAuthVerifier::require,
        );
        checks.push(v.boxed());
    }
    if let Some(a) = &policy.aws_authorizer {
        let v = AWS_AUTHORIZERS[1..]
            .iter()
            .fold(PlatformIdentityVerifier::new(AWS_AUTHORIZERS[0]), |v, p| {
                v.or_provider(*p)
            });
        let v = predicates(&a.claims)
            .into_iter()
            .fold(v, PlatformIdentityVerifier::require);
        checks.push(v.boxed());
    }
    (checks, discovered)
}

/// The `[[verify.jwt]]` tables: one verifier, or a router by issuer for several. Returns the
/// caches that come from discovery.
fn jwt_checks(
    policy: &VerifyPolicy,
    deps: &VerifyDeps,
    checks: &mut Vec<BoxVerifier>,
    problems: &mut Vec<PolicyProblem>,
) -> Vec<JwksCache> {
    let mut discovered = Vec::new();
    let mut routes = Vec::new();
    for (n, j) in policy.jwt.iter().enumerate() {
        let base = if policy.jwt.len() > 1 {
            format!("verify.jwt[{n}]")
        } else {
            "verify.jwt".to_string()
        };
        match jwt_verifier(j, deps, &base) {
            Ok((v, issuers, cache)) => {
                discovered.extend(cache);
                routes.push((issuers, v));
            }
            Err(p) => problems.push(p),
        }
    }
    match routes.len() {
        0 => {}
        1 => checks.push(routes.remove(0).1.boxed()),
        #[cfg(feature = "jwks-http")]
        _ => checks.push(crate::verify::IssuerRouter::new(routes).boxed()),
        #[cfg(not(feature = "jwks-http"))]
        _ => problems.push(PolicyProblem::new(
            "verify.jwt",
            "several issuers need guard-core's `jwks-http` feature",
        )),
    }
    discovered
}

/// `[verify.gcp_push]`: one push-token verifier per message kind it covers.
fn push_checks(
    policy: &VerifyPolicy,
    deps: &VerifyDeps,
    problems: &mut Vec<PolicyProblem>,
) -> Vec<(String, JwtVerifier)> {
    let Some(g) = &policy.gcp_push else {
        return Vec::new();
    };
    let jwks = match jwks_cache(
        &g.jwks_url,
        GCP_PUSH_JWKS_TTL,
        GCP_PUSH_JWKS_COOLDOWN,
        deps,
        "verify.gcp_push.jwks_url",
    ) {
        Ok(jwks) => jwks,
        Err(p) => {
            problems.push(p);
            return Vec::new();
        }
    };
    let mut push = Vec::new();
    for kind in &g.kinds {
        let audience = g.audiences.get(kind).unwrap_or(&g.audience);
        match JwtVerifier::google_push(jwks.clone(), audience.clone(), g.service_account.clone())
            .clock(deps.clock.clone())
            .build()
        {
            Ok(v) => push.push((kind.clone(), v)),
            Err(e) => problems.push(PolicyProblem::new("verify.gcp_push", e.to_string())),
        }
    }
    push
}

fn hmac_verifier(h: &HmacPolicy, deps: &VerifyDeps) -> Result<HmacVerifier, PolicyProblem> {
    let header = |name: &Option<String>, at: &str| -> Result<Option<HeaderName>, PolicyProblem> {
        name.as_deref()
            .map(|n| header_name(n).map_err(|e| PolicyProblem::new(at, e.to_string())))
            .transpose()
    };
    let scheme = match h.preset {
        HmacPreset::GitHub => HmacScheme::github(),
        HmacPreset::Slack => HmacScheme::slack(),
        HmacPreset::Stripe => match header(&h.header, "verify.hmac.header")? {
            Some(header) => HmacScheme::Stripe { header },
            None => HmacScheme::stripe(),
        },
        HmacPreset::Generic => HmacScheme::Generic {
            header: header(&h.header, "verify.hmac.header")?
                .ok_or_else(|| PolicyProblem::new("verify.hmac.header", "required"))?,
            prefix: h.prefix.clone().unwrap_or_default(),
            encoding: match h.encoding.unwrap_or_default() {
                HmacEncoding::Hex => SignatureEncoding::Hex,
                HmacEncoding::Base64 => SignatureEncoding::Base64,
            },
            timestamp_header: header(&h.timestamp_header, "verify.hmac.timestamp_header")?,
        },
    };
    let mut b = HmacVerifier::builder(scheme, deps.secrets.clone(), h.secret.clone())
        .tolerance(Duration::from_secs(h.tolerance_secs))
        .clock(deps.clock.clone());
    if h.replay {
        let store = deps.replay.clone().unwrap_or_else(|| {
            Arc::new(MemoryReplayStore::default().with_clock(deps.clock.clone()))
        });
        b = b.replay_store(store);
    }
    b.build()
        .map_err(|e| PolicyProblem::new("verify.hmac", e.to_string()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cidr_section_makes_a_layer() {
        use crate::Policy;
        use super::VerifyDeps;
        use guard_secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
        use crate::verify::VerifyLayer;

        let policy = Policy::from_toml_str(
            r#"
            [verify]
            [verify.cidr]
            allow = ["203.0.113.0/24"]
        "#,
        )
        .unwrap();
        let store = SecretStore::new(
            |n: &str, _: SecretVersion| -> Result<SecretValue, SecretsError> {
                Err(SecretsError::not_found(n))
            },
        );
        let layer =
            VerifyLayer::from_policy(policy.verify.as_ref().unwrap(), &VerifyDeps::new(store));
        assert!(layer.is_ok());
    }

    #[test]
    fn from_policy_refuses_an_unchecked_policy() {
        use super::VerifyDeps;
        use crate::policy::VerifyPolicy;
        use guard_secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
        use crate::verify::VerifyLayer;

        let policy = VerifyPolicy {
            sources: [("sqs".to_string(), vec!["a:*x".to_string()])].into(),
            ..VerifyPolicy::default()
        };
        let store = SecretStore::new(
            |_: &str, _: SecretVersion| -> Result<SecretValue, SecretsError> {
                Ok(SecretValue::from("k"))
            },
        );
        let err = VerifyLayer::from_policy(&policy, &VerifyDeps::new(store)).unwrap_err();
        assert_eq!(err.problems()[0].path, "verify.sources.sqs[0]");
    }
}
