//! [`Guard`]: the layers assembled in their canonical order.
//!
//! ```text
//! Audit ─▶ Ingress ─▶ RateLimit(pre-auth) ─▶ Verify ─▶ RateLimit(principal) ─▶ Validate ─▶ Secrets ─▶ handler
//! ```
//!
//! Signatures a verifier accepted are recorded by the replay store (insert-if-absent, a
//! [`ReplayCommitLayer`]) only once every layer admitted the request, just before the handler, so
//! a request refused with 429 (or a transient 503) can be retried with the same signature. The builder always uses this order. A stage that is not configured is skipped; audit and
//! ingress are always on (with safe defaults). To use another order, compose the public layers
//! yourself with `tower::ServiceBuilder`.

use tower::util::{Either, option_layer};
use tower_layer::{Identity, Layer, Stack};

use crate::audit::{AuditLayer, JsonLinesSink};
use crate::ingress::IngressLayer;
use crate::policy::{Policy, PolicyError, PolicyProblem};
use crate::rate_limit::RateLimitLayer;
use crate::secrets::{SecretStore, SecretsError, SecretsLayer};
use crate::validate::ValidateLayer;
use crate::verify::{ReplayCommitLayer, VerifyDeps, VerifyLayer};

/// The assembled perimeter: a `tower` layer. Cheap to clone; build it once at start-up.
///
/// ```
/// use bytes::Bytes;
/// use guard_core::Guard;
/// use tower::{Layer, Service, ServiceExt, service_fn};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let policy = guard_core::Policy::from_toml_str(r#"
///     [function]
///     allow_unverified = true    # zero trust: without [verify] this must be explicit
///     [ingress]
///     methods = ["POST"]
///     max_body_bytes = 65536
/// "#).unwrap();
/// let guard = Guard::from_policy(&policy).unwrap();
/// let mut svc = guard.layer(service_fn(|_req: http::Request<Bytes>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(Bytes::from_static(b"done")))
/// }));
/// let get = http::Request::get("/").body(Bytes::new()).unwrap();
/// assert_eq!(svc.ready().await.unwrap().call(get).await.unwrap().status(), 405);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct Guard {
    audit: AuditLayer,
    rate_pre: Option<RateLimitLayer>,
    rate_post: Option<RateLimitLayer>,
    ingress: IngressLayer,
    verify: Option<VerifyLayer>,
    validate: Option<ValidateLayer>,
    secrets: Option<SecretsLayer>,
    prefetch: bool,
}

/// Builds a [`Guard`] from layers; unset stages are skipped (audit and ingress get defaults).
#[derive(Debug, Default)]
pub struct GuardBuilder {
    audit: Option<AuditLayer>,
    rate_pre: Option<RateLimitLayer>,
    rate_post: Option<RateLimitLayer>,
    ingress: Option<IngressLayer>,
    verify: Option<VerifyLayer>,
    validate: Option<ValidateLayer>,
    secrets: Option<SecretsLayer>,
    prefetch: bool,
}

/// What a policy-built stack shares with the rest of the application.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct GuardDeps {
    /// The secret store (HMAC keys, handler secrets). When unset, it is built from `[secrets]`
    /// for the built-in providers (`env`, `file`); cloud providers are built by their adapter
    /// crate and passed here.
    pub secrets: Option<SecretStore>,
    /// Overrides for the verification layer (clock, shared replay store). Defaults are built from
    /// [`secrets`](Self::secrets) when unset.
    pub verify: Option<VerifyDeps>,
}

impl GuardDeps {
    /// Dependencies with this secret store.
    ///
    /// ```
    /// use guard_core::secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
    /// let store = SecretStore::new(|_: &str, _: SecretVersion| -> Result<SecretValue, SecretsError> {
    ///     Ok(SecretValue::from("k"))
    /// });
    /// let deps = guard_core::GuardDeps::with_secrets(store);
    /// assert!(deps.secrets.is_some());
    /// ```
    pub fn with_secrets(store: SecretStore) -> Self {
        Self {
            secrets: Some(store),
            verify: None,
        }
    }
}

impl GuardBuilder {
    /// A builder holding every layer the policy describes, so single stages can still be replaced
    /// (e.g. the audit sink) before [`build`](Self::build). All problems are reported at once.
    ///
    /// ```
    /// use guard_core::audit::{AuditLayer, TracingSink};
    /// let policy = guard_core::Policy::from_toml_str("[function]\nallow_unverified = true").unwrap();
    /// let guard = guard_core::GuardBuilder::from_policy(&policy).unwrap()
    ///     .audit(AuditLayer::new(TracingSink))
    ///     .build();
    /// # let _ = guard;
    /// ```
    pub fn from_policy(policy: &Policy) -> Result<GuardBuilder, PolicyError> {
        Self::from_policy_with(policy, GuardDeps::default())
    }

    /// Like [`from_policy`](Self::from_policy), with the secret store and other shared parts
    /// supplied by the caller (an adapter's secret provider, a Redis replay store, a fake clock).
    ///
    /// Zero trust: a policy without `[verify]` is refused unless it says
    /// `function.allow_unverified = true`.
    ///
    /// ```
    /// let policy = guard_core::Policy::from_toml_str("[verify.cidr]\nallow = [\"10.0.0.0/8\"]").unwrap();
    /// let b = guard_core::GuardBuilder::from_policy_with(&policy, guard_core::GuardDeps::default());
    /// assert!(b.is_ok());
    /// ```
    pub fn from_policy_with(policy: &Policy, deps: GuardDeps) -> Result<GuardBuilder, PolicyError> {
        let mut problems = Vec::new();
        let mut collect = |e: PolicyError| problems.extend_from_slice(e.problems());
        let ingress = IngressLayer::from_policy(&policy.ingress)
            .map_err(&mut collect)
            .ok();
        let store = match (deps.secrets, &policy.secrets) {
            (Some(store), _) => Some(store),
            (None, Some(section)) => match section.local_source() {
                Some(source) => match section.store_builder(source).build() {
                    Ok(store) => Some(store),
                    Err(e) => {
                        collect(PolicyError::new(vec![PolicyProblem::new(
                            "secrets",
                            e.to_string(),
                        )]));
                        None
                    }
                },
                None => {
                    collect(PolicyError::new(vec![PolicyProblem::new(
                        "secrets.provider",
                        "this provider is built by its adapter crate (e.g. guard_aws::secrets): build the store there and pass it with GuardDeps::with_secrets",
                    )]));
                    None
                }
            },
            (None, None) => None,
        };
        let secrets = match (&policy.secrets, &store) {
            (Some(section), Some(store))
                if !section.required.is_empty() || !section.optional.is_empty() =>
            {
                Some(section.layer(store.clone()))
            }
            _ => None,
        };
        let verify = match &policy.verify {
            Some(v) => {
                let verify_deps = match (deps.verify, &store) {
                    (Some(d), _) => Some(d),
                    (None, Some(store)) => Some(VerifyDeps::new(store.clone())),
                    (None, None) if v.hmac.is_some() => {
                        collect(PolicyError::new(vec![PolicyProblem::new(
                            "verify.hmac.secret",
                            "HMAC keys come from the secret store: configure [secrets] or pass a store",
                        )]));
                        None
                    }
                    (None, None) => Some(VerifyDeps::new(no_secrets())),
                };
                verify_deps.and_then(|d| VerifyLayer::from_policy(v, &d).map_err(&mut collect).ok())
            }
            None if policy.function.allow_unverified => None,
            None => {
                collect(PolicyError::new(vec![PolicyProblem::new(
                    "verify",
                    "missing: every request would pass unverified; add a [verify] section or set function.allow_unverified = true",
                )]));
                None
            }
        };
        let validate = match &policy.validate {
            Some(v) => ValidateLayer::from_policy(v).map_err(&mut collect).ok(),
            None => None,
        };
        let rate = RateLimitLayer::from_policy(policy)
            .map_err(&mut collect)
            .unwrap_or_default();
        if !problems.is_empty() {
            return Err(PolicyError::new(problems));
        }
        Ok(GuardBuilder {
            audit: Some(AuditLayer::from_policy(&policy.audit)),
            rate_pre: rate.pre_auth,
            rate_post: rate.post_auth,
            ingress,
            verify,
            validate,
            secrets,
            prefetch: policy.secrets.as_ref().is_some_and(|s| s.prefetch),
        })
    }

    /// The audit layer (default: JSON lines on stdout).
    ///
    /// ```
    /// let b = guard_core::Guard::builder().audit(guard_core::audit::AuditLayer::new(guard_core::audit::TracingSink));
    /// # let _ = b;
    /// ```
    pub fn audit(mut self, layer: AuditLayer) -> Self {
        self.audit = Some(layer);
        self
    }

    /// The ingress limits (default: [`IngressLayer::new`]).
    ///
    /// ```
    /// let b = guard_core::Guard::builder().ingress(guard_core::ingress::IngressLayer::new().max_depth(8));
    /// # let _ = b;
    /// ```
    pub fn ingress(mut self, layer: IngressLayer) -> Self {
        self.ingress = Some(layer);
        self
    }

    /// The rate limit placed before verification (usually keyed by peer).
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use guard_core::rate_limit::{Rate, RateLimitLayer};
    /// let rate = Rate::per_second(NonZeroU32::new(5).unwrap());
    /// let b = guard_core::Guard::builder().rate_limit_pre_auth(RateLimitLayer::memory(rate, guard_core::rate_limit::key::Peer));
    /// # let _ = b;
    /// ```
    pub fn rate_limit_pre_auth(mut self, layer: RateLimitLayer) -> Self {
        self.rate_pre = Some(layer);
        self
    }

    /// The rate limit placed after verification (usually keyed by principal).
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use guard_core::rate_limit::{Rate, RateLimitLayer};
    /// let rate = Rate::per_second(NonZeroU32::new(5).unwrap());
    /// let b = guard_core::Guard::builder().rate_limit_post_auth(RateLimitLayer::memory(rate, guard_core::rate_limit::key::Principal));
    /// # let _ = b;
    /// ```
    pub fn rate_limit_post_auth(mut self, layer: RateLimitLayer) -> Self {
        self.rate_post = Some(layer);
        self
    }

    /// Source verification (zero trust).
    ///
    /// ```
    /// use guard_core::verify::{CidrVerifier, VerifyLayer};
    /// let v = VerifyLayer::new(CidrVerifier::new(["10.0.0.0/8".parse().unwrap()]));
    /// let b = guard_core::Guard::builder().verify(v);
    /// # let _ = b;
    /// ```
    pub fn verify(mut self, layer: VerifyLayer) -> Self {
        self.verify = Some(layer);
        self
    }

    /// Named secrets for the handler (innermost layer).
    ///
    /// ```
    /// use guard_core::secrets::{EnvSource, SecretStore, SecretsLayer};
    /// let layer = SecretsLayer::new(SecretStore::new(EnvSource::new())).require("orders-api-key");
    /// let b = guard_core::Guard::builder().secrets(layer);
    /// # let _ = b;
    /// ```
    pub fn secrets(mut self, layer: SecretsLayer) -> Self {
        self.secrets = Some(layer);
        self
    }

    /// JSON parsing and schema validation.
    ///
    /// ```
    /// let b = guard_core::Guard::builder().validate(guard_core::validate::ValidateLayer::json_only());
    /// # let _ = b;
    /// ```
    pub fn validate(mut self, layer: ValidateLayer) -> Self {
        self.validate = Some(layer);
        self
    }

    /// The perimeter.
    ///
    /// ```
    /// let guard = guard_core::Guard::builder().build();
    /// # let _ = guard;
    /// ```
    pub fn build(self) -> Guard {
        Guard {
            audit: self
                .audit
                .unwrap_or_else(|| AuditLayer::new(JsonLinesSink::stdout(4096))),
            ingress: self.ingress.unwrap_or_default(),
            rate_pre: self.rate_pre,
            rate_post: self.rate_post,
            verify: self.verify,
            validate: self.validate,
            secrets: self.secrets,
            prefetch: self.prefetch,
        }
    }
}

impl Guard {
    /// A builder.
    ///
    /// ```
    /// let guard = guard_core::Guard::builder().build();
    /// # let _ = guard;
    /// ```
    pub fn builder() -> GuardBuilder {
        GuardBuilder::default()
    }

    /// Every layer the policy describes, in canonical order; all problems reported at once.
    ///
    /// ```
    /// let policy = guard_core::Policy::from_toml_str("[verify.cidr]\nallow = [\"10.0.0.0/8\"]").unwrap();
    /// assert!(guard_core::Guard::from_policy(&policy).is_ok());
    /// // Zero trust: no [verify] and no explicit opt-out is an error.
    /// assert!(guard_core::Guard::from_policy(&guard_core::Policy::default()).is_err());
    /// ```
    pub fn from_policy(policy: &Policy) -> Result<Guard, PolicyError> {
        GuardBuilder::from_policy(policy).map(GuardBuilder::build)
    }

    /// Fetches the secrets the stack needs before the first request, when the policy says
    /// `secrets.prefetch = true` (a no-op otherwise). Call it once at start-up; failures are
    /// returned (the stack still fails closed per request if a secret stays unavailable).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let guard = guard_core::Guard::builder().build();
    /// assert!(guard.prefetch().await.is_ok());
    /// # });
    /// ```
    pub async fn prefetch(&self) -> Result<(), Vec<SecretsError>> {
        match (&self.secrets, self.prefetch) {
            (Some(layer), true) => layer.prefetch().await,
            _ => Ok(()),
        }
    }

    /// Wraps `handler` (same as `Layer::layer`).
    ///
    /// ```
    /// use bytes::Bytes;
    /// let svc = guard_core::Guard::builder().build().wrap(tower::service_fn(|_r: http::Request<Bytes>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(Bytes::new()))
    /// }));
    /// # let _ = svc;
    /// ```
    pub fn wrap<S>(&self, handler: S) -> GuardService<S> {
        self.layer(handler)
    }

    fn stack(&self) -> GuardStack {
        Stack::new(
            // Signatures are recorded only once every check admitted the request, just before the
            // handler: a 429 or a 503 from a later layer leaves them unspent for the retry.
            option_layer(self.verify.as_ref().map(|_| ReplayCommitLayer)),
            Stack::new(
                option_layer(self.secrets.clone()),
                Stack::new(
                    option_layer(self.validate.clone()),
                    Stack::new(
                        option_layer(self.rate_post.clone()),
                        Stack::new(
                            option_layer(self.verify.clone().map(VerifyLayer::commit_replay_later)),
                            Stack::new(
                                option_layer(self.rate_pre.clone()),
                                Stack::new(self.ingress.clone(), self.audit.clone()),
                            ),
                        ),
                    ),
                ),
            ),
        )
    }
}

/// A store that has no secrets (every read is "not found", so anything needing one fails closed).
fn no_secrets() -> SecretStore {
    SecretStore::new(
        |name: &str,
         _: crate::secrets::SecretVersion|
         -> Result<crate::secrets::SecretValue, crate::secrets::SecretsError> {
            Err(crate::secrets::SecretsError::not_found(name))
        },
    )
}

type GuardStack = Stack<
    Either<ReplayCommitLayer, Identity>,
    Stack<
        Either<SecretsLayer, Identity>,
        Stack<
            Either<ValidateLayer, Identity>,
            Stack<
                Either<RateLimitLayer, Identity>,
                Stack<
                    Either<VerifyLayer, Identity>,
                    Stack<Either<RateLimitLayer, Identity>, Stack<IngressLayer, AuditLayer>>,
                >,
            >,
        >,
    >,
>;

/// The service a [`Guard`] makes of a handler `S`.
pub type GuardService<S> = <GuardStack as Layer<S>>::Service;

impl<S> Layer<S> for Guard {
    type Service = GuardService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        self.stack().layer(inner)
    }
}
