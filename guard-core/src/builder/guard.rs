//! [`Guard`], [`GuardBuilder`] and [`GuardDeps`]: the stages in their canonical order.

use tower::util::{Either, option_layer};
use tower_layer::{Identity, Layer, Stack};

use std::sync::Arc;

use super::verify::kinds;
use super::{VerifyDeps, audit, authz, rate_limit, secrets, validate};
use crate::audit::{AuditLayer, JsonLinesSink};
use crate::authz::AuthzLayer;
use crate::ingress::IngressLayer;
use crate::policy::{Policy, PolicyError, PolicyProblem};
use crate::rate_limit::RateLimitLayer;
use guard_secrets::{SecretSource, SecretStore, SecretsError};
use crate::secrets::SecretsLayer;
use crate::validate::ValidateLayer;
use crate::clock::WallClock;
use crate::replay::ReplayStore;
use crate::verify::{ReplayCommitLayer, VerifyLayer};

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
    authz: Option<AuthzLayer>,
    validate: Option<ValidateLayer>,
    secrets: Option<SecretsLayer>,
    prefetch: bool,
    typed: TypedSettings,
}

/// `[validate] typed_status` and `expose_details`, for [`Guard::typed_validation`].
#[derive(Debug, Clone, Copy, Default)]
struct TypedSettings {
    unprocessable: bool,
    expose_details: bool,
}

impl From<Option<&crate::policy::ValidatePolicy>> for TypedSettings {
    fn from(section: Option<&crate::policy::ValidatePolicy>) -> Self {
        section
            .map(|v| TypedSettings {
                unprocessable: v.typed_status == Some(422),
                expose_details: v.expose_details,
            })
            .unwrap_or_default()
    }
}

/// Builds a [`Guard`] from layers; unset stages are skipped (audit and ingress get defaults).
#[derive(Debug, Default)]
pub struct GuardBuilder {
    /// `[function] name`: given to an audit layer that names no function.
    function: Option<String>,
    audit: Option<AuditLayer>,
    rate_pre: Option<RateLimitLayer>,
    rate_post: Option<RateLimitLayer>,
    ingress: Option<IngressLayer>,
    verify: Option<VerifyLayer>,
    authz: Option<AuthzLayer>,
    validate: Option<ValidateLayer>,
    secrets: Option<SecretsLayer>,
    prefetch: bool,
    typed: TypedSettings,
    /// `[audit] max_field_len` and `allow_sample_rate`, for [`GuardBuilder::audit_sink`].
    audit_settings: audit::AuditSettings,
}

/// What a policy-built stack shares with the rest of the application.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct GuardDeps {
    /// The secret store (HMAC keys, handler secrets). When unset, it is built from `[secrets]`
    /// for the built-in providers (`env`, `file`); cloud providers are built by their adapter
    /// crate and passed here.
    pub secrets: Option<SecretStore>,
    /// The adapter's secret source for the cloud providers (`aws`, `azure`, `gcp`): the builder
    /// makes the store from it with `[secrets]`' cache settings. Ignored when
    /// [`secrets`](Self::secrets) is set.
    pub secret_source: Option<std::sync::Arc<dyn guard_secrets::SecretSource>>,
    /// Checks an adapter adds for messages of one kind (see [`GuardDeps::message_verifier`]).
    pub message_verifiers: Vec<(String, std::sync::Arc<dyn crate::verify::Verifier>)>,
    /// The wall clock of signature windows, token lifetimes and JWKS refreshes (default: the
    /// system clock); see [`GuardDeps::clock`].
    pub clock: Option<WallClock>,
    /// A shared replay store (e.g. Redis) instead of the in-memory one; see
    /// [`GuardDeps::replay_store`].
    pub replay_store: Option<Arc<dyn ReplayStore>>,
    /// The client `[verify.jwt]` fetches keys and OpenID configurations with; see
    /// [`GuardDeps::http_client`].
    #[cfg(feature = "jwks-http")]
    pub http_client: Option<guard_http::HttpClient>,
}

impl std::fmt::Debug for GuardDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardDeps")
            .field("secrets", &self.secrets)
            .field("secret_source", &self.secret_source.is_some())
            .field("message_verifiers", &kinds(&self.message_verifiers))
            .field("clock", &self.clock.is_some())
            .field("replay_store", &self.replay_store.is_some())
            .finish_non_exhaustive()
    }
}

impl GuardDeps {
    /// Dependencies with this secret store.
    ///
    /// ```
    /// use guard_secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
    /// let store = SecretStore::new(|_: &str, _: SecretVersion| -> Result<SecretValue, SecretsError> {
    ///     Ok(SecretValue::from("k"))
    /// });
    /// let deps = guard_core::GuardDeps::with_secrets(store);
    /// assert!(deps.secrets.is_some());
    /// ```
    pub fn with_secrets(store: SecretStore) -> Self {
        Self {
            secrets: Some(store),
            ..Self::default()
        }
    }

    /// Dependencies with the adapter's secret source; the store is built from it with the
    /// policy's `[secrets]` cache settings.
    ///
    /// ```
    /// use guard_secrets::{SecretValue, SecretVersion, SecretsError};
    /// let source = |_: &str, _: SecretVersion| -> Result<SecretValue, SecretsError> { Ok(SecretValue::from("k")) };
    /// let deps = guard_core::GuardDeps::with_secret_source(source);
    /// assert!(deps.secret_source.is_some());
    /// ```
    pub fn with_secret_source(source: impl guard_secrets::SecretSource) -> Self {
        Self {
            secret_source: Some(std::sync::Arc::new(source)),
            ..Self::default()
        }
    }

    /// Messages of `kind` must also pass `verifier` (after the source allow-list): an adapter's
    /// platform check, such as guard-aws's SNS signature verifier for `[verify.sns]`.
    ///
    /// ```
    /// use guard_core::GuardRequest;
    /// use guard_core::request::Principal;
    /// use guard_core::{Rejection, RejectionKind};
    /// let deps = guard_core::GuardDeps::default().message_verifier("sns", |_: &GuardRequest| -> Result<Principal, Rejection> {
    ///     Err(Rejection::new(RejectionKind::BadSignature))
    /// });
    /// assert_eq!(deps.message_verifiers.len(), 1);
    /// ```
    pub fn message_verifier(
        mut self,
        kind: impl Into<String>,
        verifier: impl crate::verify::Verifier,
    ) -> Self {
        self.message_verifiers
            .push((kind.into(), std::sync::Arc::new(verifier)));
        self
    }

    /// The wall clock for signature windows, token lifetimes and JWKS refreshes (a fake clock
    /// in tests).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use guard_core::clock::WallClock;
    /// let deps = guard_core::GuardDeps::default().clock(WallClock::fake_at_unix(1_700_000_000));
    /// assert!(deps.clock.is_some());
    /// ```
    pub fn clock(mut self, clock: WallClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// A shared replay store (e.g. Redis) for `[verify.hmac] replay = true`, instead of the
    /// in-memory one.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use guard_core::verify::MemoryReplayStore;
    /// let deps = guard_core::GuardDeps::default().replay_store(Arc::new(MemoryReplayStore::new(1000)));
    /// assert!(deps.replay_store.is_some());
    /// ```
    pub fn replay_store(mut self, store: Arc<dyn ReplayStore>) -> Self {
        self.replay_store = Some(store);
        self
    }

    /// The HTTP client `[verify.jwt]` fetches keys and OpenID configurations with (its roots,
    /// timeouts; bodies stay capped by the JWKS rules). Default: a client trusting the
    /// platform's root certificates.
    ///
    /// ```
    /// use guard_http::HttpClient;
    /// let client = HttpClient::builder().root_certificates_der([]).build().unwrap();
    /// let deps = guard_core::GuardDeps::default().http_client(client);
    /// assert!(deps.http_client.is_some());
    /// ```
    #[cfg(feature = "jwks-http")]
    pub fn http_client(mut self, client: guard_http::HttpClient) -> Self {
        self.http_client = Some(client);
        self
    }

    /// The verifier's dependencies: `base` (its secret store) with these overrides and checks.
    fn verify_deps(self, base: VerifyDeps) -> VerifyDeps {
        let mut deps = self
            .message_verifiers
            .into_iter()
            .fold(base, |d, (kind, check)| d.message_verifier(kind, check));
        if let Some(clock) = self.clock {
            deps = deps.clock(clock);
        }
        if let Some(store) = self.replay_store {
            deps = deps.replay_store(store);
        }
        #[cfg(feature = "jwks-http")]
        if let Some(client) = self.http_client {
            deps = deps.http_client(client);
        }
        deps
    }
}

/// A builder method replacing one stage with `layer`.
macro_rules! stage_setter {
    ($(#[$doc:meta])* $name:ident($layer:ty) => $field:ident) => {
        $(#[$doc])*
        pub fn $name(mut self, layer: $layer) -> Self {
            self.$field = Some(layer);
            self
        }
    };
}

impl GuardBuilder {
    /// A builder holding every layer the policy describes, so single stages can still be replaced
    /// (e.g. the audit sink) before [`build`](Self::build). All problems are reported at once.
    ///
    /// ```
    /// use guard_core::audit::AuditLayer;
    /// let policy = guard_core::Policy::from_toml_str("[function]\nallow_unverified = true").unwrap();
    /// let guard = guard_core::GuardBuilder::from_policy(&policy).unwrap()
    ///     .audit(AuditLayer::tracing())
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
        let mut problems = Problems::default();
        let ingress = problems.take(IngressLayer::from_policy(&policy.ingress));
        let store = problems
            .take(secret_store(
                policy,
                deps.secrets.clone(),
                deps.secret_source.clone(),
            ))
            .flatten();
        let secrets = policy
            .secrets
            .as_ref()
            .zip(store.as_ref())
            .filter(|(section, _)| !section.required.is_empty() || !section.optional.is_empty())
            .map(|(section, store)| secrets::secrets_layer(section, store.clone()));
        let rate = problems
            .take(rate_limit::rate_limit_layers(policy, store.as_ref()))
            .unwrap_or_default();
        let shared_replay = shared_replay(&rate);
        let verify = problems
            .take(verify_layer(policy, deps, store.as_ref(), shared_replay))
            .flatten();
        let authz = match &policy.authz {
            Some(section) => problems.take(authz::authz_layer(section)),
            None => None,
        };
        let validate = match &policy.validate {
            Some(v) => problems.take(validate::validate_layer(v)),
            None => None,
        };
        problems.into_result()?;
        Ok(GuardBuilder {
            function: policy.function.name.clone(),
            audit: Some(audit::audit_layer(&policy.audit)),
            audit_settings: audit::AuditSettings::from(&policy.audit),
            rate_pre: rate.pre_auth,
            rate_post: rate.post_auth,
            ingress,
            verify,
            authz,
            validate,
            secrets,
            prefetch: policy.secrets.as_ref().is_some_and(|s| s.prefetch),
            typed: TypedSettings::from(policy.validate.as_ref()),
        })
    }

    stage_setter! {
        /// The audit layer (default: JSON lines on stdout). A layer without a
        /// [function name](AuditLayer::function_name) gets the policy's `[function] name`.
        ///
        /// ```
        /// let b = guard_core::Guard::builder().audit(guard_core::audit::AuditLayer::tracing());
        /// # let _ = b;
        /// ```
        audit(AuditLayer) => audit
    }

    /// An audit layer writing to `sink`, with the policy's `[audit]` field cap and share of
    /// allowed decisions recorded (the defaults without a policy).
    ///
    /// ```
    /// use guard_core::audit::SecurityEvent;
    /// let policy = guard_core::Policy::from_toml_str(
    ///     "[function]\nallow_unverified = true\n[audit]\nallow_sample_rate = 0.5",
    /// ).unwrap();
    /// let guard = guard_core::GuardBuilder::from_policy(&policy).unwrap()
    ///     .audit_sink(|e: SecurityEvent| println!("{}", e.code))
    ///     .build();
    /// assert!(format!("{:?}", guard.audit_layer()).contains("allow_sample_per_million: 500000"));
    /// ```
    pub fn audit_sink(mut self, sink: impl crate::audit::SecuritySink) -> Self {
        self.audit = Some(self.audit_settings.layer(sink));
        self
    }

    stage_setter! {
        /// The ingress limits (default: [`IngressLayer::new`]).
        ///
        /// ```
        /// let b = guard_core::Guard::builder().ingress(guard_core::ingress::IngressLayer::new().max_depth(8));
        /// # let _ = b;
        /// ```
        ingress(IngressLayer) => ingress
    }

    stage_setter! {
        /// The rate limit placed before verification (usually keyed by peer).
        ///
        /// ```
        /// use std::num::NonZeroU32;
        /// use guard_core::rate_limit::{Rate, RateLimitLayer};
        /// let rate = Rate::per_second(NonZeroU32::new(5).unwrap());
        /// let b = guard_core::Guard::builder().rate_limit_pre_auth(RateLimitLayer::memory(rate, guard_core::rate_limit::key::RateKey::peer()));
        /// # let _ = b;
        /// ```
        rate_limit_pre_auth(RateLimitLayer) => rate_pre
    }

    stage_setter! {
        /// The rate limit placed after verification (usually keyed by principal).
        ///
        /// ```
        /// use std::num::NonZeroU32;
        /// use guard_core::rate_limit::{Rate, RateLimitLayer};
        /// let rate = Rate::per_second(NonZeroU32::new(5).unwrap());
        /// let b = guard_core::Guard::builder().rate_limit_post_auth(RateLimitLayer::memory(rate, guard_core::rate_limit::key::RateKey::principal()));
        /// # let _ = b;
        /// ```
        rate_limit_post_auth(RateLimitLayer) => rate_post
    }

    stage_setter! {
        /// Source verification (zero trust).
        ///
        /// ```
        /// use guard_core::verify::{CidrVerifier, VerifyLayer};
        /// let v = VerifyLayer::new(CidrVerifier::new(["10.0.0.0/8".parse().unwrap()]));
        /// let b = guard_core::Guard::builder().verify(v);
        /// # let _ = b;
        /// ```
        verify(VerifyLayer) => verify
    }

    stage_setter! {
        /// Authorization rules, after verification and the per-principal limit, before validation.
        ///
        /// ```
        /// use guard_core::authz::{AuthzLayer, AuthzRule};
        /// let rules = AuthzLayer::new([AuthzRule::requests("all").any_verified()]).unwrap();
        /// let b = guard_core::Guard::builder().authz(rules);
        /// # let _ = b;
        /// ```
        authz(AuthzLayer) => authz
    }

    stage_setter! {
        /// Named secrets for the handler (innermost layer).
        ///
        /// ```
        /// use guard_secrets::{SecretStore, SecretsError};
        /// use guard_core::secrets::SecretsLayer;
        /// let store = SecretStore::new(|n: &str, _| Err(SecretsError::not_found(n)));
        /// let layer = SecretsLayer::new(store).require("orders-api-key");
        /// let b = guard_core::Guard::builder().secrets(layer);
        /// # let _ = b;
        /// ```
        secrets(SecretsLayer) => secrets
    }

    stage_setter! {
        /// JSON parsing and schema validation.
        ///
        /// ```
        /// let b = guard_core::Guard::builder().validate(guard_core::validate::ValidateLayer::json_only());
        /// # let _ = b;
        /// ```
        validate(ValidateLayer) => validate
    }

    /// The perimeter.
    ///
    /// ```
    /// let guard = guard_core::Guard::builder().build();
    /// # let _ = guard;
    /// ```
    pub fn build(self) -> Guard {
        let audit = self
            .audit
            .unwrap_or_else(|| AuditLayer::new(JsonLinesSink::stdout(JsonLinesSink::DEFAULT_BUFFER)));
        let audit = match self.function {
            Some(name) if audit.function().is_none() => audit.function_name(name),
            _ => audit,
        };
        Guard {
            audit,
            ingress: self.ingress.unwrap_or_default(),
            rate_pre: self.rate_pre,
            rate_post: self.rate_post,
            verify: self.verify,
            authz: self.authz,
            validate: self.validate,
            secrets: self.secrets,
            prefetch: self.prefetch,
            typed: self.typed,
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
    /// It also runs the OIDC discovery of every `[verify.jwt] issuer` without `jwks_url`: a
    /// configuration Guard refuses is logged as an error on the `guard::verify` target.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let guard = guard_core::Guard::builder().build();
    /// assert!(guard.prefetch().await.is_ok());
    /// # });
    /// ```
    pub async fn prefetch(&self) -> Result<(), Vec<SecretsError>> {
        if let Some(verify) = &self.verify {
            verify.discover_now().await;
        }
        match (&self.secrets, self.prefetch) {
            (Some(layer), true) => layer.prefetch().await,
            _ => Ok(()),
        }
    }

    /// Blocks until every security event recorded so far is written, or `timeout` passes; `true`
    /// when all were. Lambda freezes and Cloud Run throttles an instance once it has answered:
    /// call this before the answer leaves so each event lands with its own invocation's logs.
    /// The default sink writes the queued lines on the calling thread (one write, no hand-off).
    ///
    /// ```
    /// let guard = guard_core::Guard::builder().build();
    /// assert!(guard.flush_audit(std::time::Duration::from_millis(200)));
    /// ```
    pub fn flush_audit(&self, timeout: std::time::Duration) -> bool {
        self.audit.flush(timeout)
    }

    /// A [`TypedValidateLayer`](crate::validate::TypedValidateLayer) for `T` as the policy's
    /// `[validate]` section configures it: `typed_status = 422` answers semantic failures with
    /// 422 (400 otherwise), and `expose_details` lists the failing fields. Put it inside the
    /// stack, in front of the handler that reads `Validated<T>`.
    ///
    /// ```
    /// #[derive(serde::Deserialize, validator::Validate)]
    /// struct Order { #[validate(range(min = 1))] qty: u32 }
    /// let policy = guard_core::Policy::from_toml_str(
    ///     "[function]\nallow_unverified = true\n[validate]\ntyped_status = 422").unwrap();
    /// let typed = guard_core::Guard::from_policy(&policy).unwrap().typed_validation::<Order>();
    /// # let _ = typed;
    /// ```
    pub fn typed_validation<T>(&self) -> crate::validate::TypedValidateLayer<T> {
        crate::validate::TypedValidateLayer::new()
            .unprocessable_entity(self.typed.unprocessable)
            .expose_details(self.typed.expose_details)
    }

    /// The audit layer at the top of the stack: give it to anything that refuses requests before
    /// the stack sees them (the HTTP server's own 408 / 413 / 431), so those refusals land in the
    /// same sink, with the same function name.
    ///
    /// ```
    /// let guard = guard_core::Guard::builder().build();
    /// let audit = guard.audit_layer().clone();
    /// # let _ = audit;
    /// ```
    pub fn audit_layer(&self) -> &AuditLayer {
        &self.audit
    }

    /// The rate limiters placed before and after verification (`[rate_limit] pre_auth` and
    /// `post_auth`), `None` where the stack has none.
    ///
    /// ```
    /// let policy = guard_core::Policy::from_toml_str(
    ///     "[function]\nallow_unverified = true\n[rate_limit]\nper_second = 5\npost_auth = \"off\"",
    /// ).unwrap();
    /// let guard = guard_core::Guard::from_policy(&policy).unwrap();
    /// let (pre_auth, post_auth) = guard.rate_limit_layers();
    /// assert_eq!(pre_auth.unwrap().label(), "pre_auth");
    /// assert!(post_auth.is_none());
    /// ```
    pub fn rate_limit_layers(&self) -> (Option<&RateLimitLayer>, Option<&RateLimitLayer>) {
        (self.rate_pre.as_ref(), self.rate_post.as_ref())
    }

    /// The verification layer `[verify]` describes, `None` without the section: to verify
    /// something outside this stack the way it does (a stack of your own, a test).
    ///
    /// ```
    /// let policy = guard_core::Policy::from_toml_str("[verify.cidr]\nallow = [\"10.0.0.0/8\"]").unwrap();
    /// let guard = guard_core::Guard::from_policy(&policy).unwrap();
    /// assert!(guard.verify_layer().is_some());
    /// ```
    pub fn verify_layer(&self) -> Option<&VerifyLayer> {
        self.verify.as_ref()
    }

    /// `server` (with its limits) serving this perimeter: the refusals it makes itself
    /// (408 / 413 / 431) are recorded by this guard's audit layer, and on shutdown, once
    /// in-flight requests are done, the remaining security events are written (up to
    /// `flush_budget`). This sets the server's [`audit`](crate::server::Server::audit) layer and
    /// replaces its [`on_shutdown`](crate::server::Server::on_shutdown) hook. What the Azure
    /// custom handler and Cloud Run adapters serve on.
    ///
    /// ```
    /// use std::time::Duration;
    /// let guard = guard_core::Guard::builder().build();
    /// let server = guard.server(guard_core::server::Server::new(), Duration::from_secs(1));
    /// # let _ = server;
    /// ```
    #[cfg(feature = "server")]
    pub fn server(
        &self,
        server: crate::server::Server,
        flush_budget: std::time::Duration,
    ) -> crate::server::Server {
        let flush = self.audit.clone();
        server
            .audit(self.audit.clone())
            .on_shutdown(move || {
                flush.flush(flush_budget);
            })
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
                        option_layer(self.authz.clone()),
                        Stack::new(
                            option_layer(self.rate_post.clone()),
                            Stack::new(
                                option_layer(
                                    self.verify.clone().map(VerifyLayer::commit_replay_later),
                                ),
                                Stack::new(
                                    option_layer(self.rate_pre.clone()),
                                    Stack::new(self.ingress.clone(), self.audit.clone()),
                                ),
                            ),
                        ),
                    ),
                ),
            ),
        )
    }
}

/// Every problem the stages report, gathered so that one error lists them all.
#[derive(Default)]
struct Problems(Vec<PolicyProblem>);

impl Problems {
    /// The stage's result, or `None` with its problems kept.
    fn take<T>(&mut self, result: Result<T, PolicyError>) -> Option<T> {
        result
            .map_err(|e| self.0.extend_from_slice(e.problems()))
            .ok()
    }

    fn into_result(self) -> Result<(), PolicyError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(PolicyError::new(self.0))
        }
    }
}

fn problem(path: &str, message: impl Into<String>) -> PolicyError {
    PolicyError::new(vec![PolicyProblem::new(path, message)])
}

/// The secret store: the caller's, else one over the adapter's source or the built-in provider's,
/// with `[secrets]`' cache settings. `None` when there is no `[secrets]` section.
fn secret_store(
    policy: &Policy,
    store: Option<SecretStore>,
    source: Option<Arc<dyn SecretSource>>,
) -> Result<Option<SecretStore>, PolicyError> {
    let Some(section) = (match (store, &policy.secrets) {
        (Some(store), _) => return Ok(Some(store)),
        (None, section) => section,
    }) else {
        return Ok(None);
    };
    let source = source.or_else(|| secrets::local_source(section)).ok_or_else(|| {
        problem(
            "secrets.provider",
            "this provider is built by its adapter crate (e.g. guard_aws::secrets): pass its source with GuardDeps::with_secret_source",
        )
    })?;
    secrets::store_builder(section, source)
        .build()
        .map(Some)
        .map_err(|e| problem("secrets", e.to_string()))
}

/// The verification layer, `None` when the policy has no `[verify]` and says
/// `function.allow_unverified = true` (zero trust: otherwise a missing section is a problem).
/// `shared_replay`: the rate limiter's Redis replay store, used unless the caller passed one.
/// With a Redis rate-limit backend, signatures are recorded in the same Redis, so every
/// instance refuses a replay.
#[cfg_attr(not(feature = "redis"), allow(unused_variables))]
fn shared_replay(rate: &rate_limit::RateLimitLayers) -> Option<Arc<dyn crate::replay::ReplayStore>> {
    #[cfg(feature = "redis")]
    return rate
        .replay
        .clone()
        .map(|redis| Arc::new(redis) as Arc<dyn crate::replay::ReplayStore>);
    #[cfg(not(feature = "redis"))]
    None
}

fn verify_layer(
    policy: &Policy,
    deps: GuardDeps,
    store: Option<&SecretStore>,
    shared_replay: Option<Arc<dyn crate::replay::ReplayStore>>,
) -> Result<Option<VerifyLayer>, PolicyError> {
    let Some(section) = &policy.verify else {
        return if policy.function.allow_unverified {
            Ok(None)
        } else {
            Err(problem(
                "verify",
                "missing: every request would pass unverified; add a [verify] section or set function.allow_unverified = true",
            ))
        };
    };
    let base = match store {
        Some(store) => VerifyDeps::new(store.clone()),
        None if section.hmac.is_some() => {
            return Err(problem(
                "verify.hmac.secret",
                "HMAC keys come from the secret store: configure [secrets] or pass a store",
            ));
        }
        None => VerifyDeps::new(no_secrets()),
    };
    let deps = deps.verify_deps(base);
    let deps = match shared_replay {
        Some(replay) => deps.replay_store_or(replay),
        None => deps,
    };
    VerifyLayer::from_policy(section, &deps).map(Some)
}

/// A store that has no secrets (every read is "not found", so anything needing one fails closed).
fn no_secrets() -> SecretStore {
    SecretStore::new(
        |name: &str,
         _: guard_secrets::SecretVersion|
         -> Result<guard_secrets::SecretValue, guard_secrets::SecretsError> {
            Err(guard_secrets::SecretsError::not_found(name))
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
                Either<AuthzLayer, Identity>,
                Stack<
                    Either<RateLimitLayer, Identity>,
                    Stack<
                        Either<VerifyLayer, Identity>,
                        Stack<Either<RateLimitLayer, Identity>, Stack<IngressLayer, AuditLayer>>,
                    >,
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
