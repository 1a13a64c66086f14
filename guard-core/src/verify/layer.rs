//! The [`Verifier`] trait, the `all` / `any` / `by_trigger` combinators (public as
//! [`VerifyLayer::all`] / [`VerifyLayer::any`]) and the [`VerifyLayer`] that runs one verifier in
//! front of the handler.

use std::mem;
use std::sync::Arc;

use crate::future::MaybeBoxFuture;
use crate::rejection::{Rejection, RejectionKind};
use crate::replay::PendingReplays;
use crate::request::{GuardRequest, Principal, PrincipalKind, Trigger, VerifiedSlot};
use futures_util::future::BoxFuture;

/// The boxed future a [`Verifier`] returns: the verified [`Principal`], or the [`Rejection`] to send.
pub(crate) type VerifyFuture<'a> = BoxFuture<'a, Result<Principal, Rejection>>;

/// A shared, type-erased verifier (what the combinators hold).
pub(crate) type BoxVerifier = Arc<dyn Verifier>;

/// Decides whether a request comes from someone (or somewhere) allowed.
///
/// Implementations look only at what the platform vouches for (extensions set by the adapter) and at
/// credentials in the request (headers, raw body). They never change the request. A verifier that
/// finds no credentials at all answers [`RejectionKind::MissingCredentials`] (401); credentials that
/// do not verify are 401 with a specific code; a verified caller that is not allowed is 403.
///
/// `verify` returns `futures_util::future::BoxFuture` (the pinned, boxed `Send` future the
/// other extension traits return too): an implementation answers `Box::pin(async move { .. })`.
/// Synchronous closures `Fn(&GuardRequest) -> Result<Principal, Rejection>` are verifiers:
///
/// ```
/// use guard_core::GuardRequest;
/// use guard_core::request::{Principal, PrincipalKind};
/// use guard_core::verify::Verifier;
/// use guard_core::{Rejection, RejectionKind};
///
/// let api_key = |req: &GuardRequest| match req.headers().get("x-internal") {
///     Some(_) => Ok(Principal::new(PrincipalKind::Custom("internal".into()), "batch-job")),
///     None => Err(Rejection::new(RejectionKind::MissingCredentials)),
/// };
/// let req = http::Request::new(bytes::Bytes::new());
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// assert!(rt.block_on(api_key.verify(&req)).is_err());
/// ```
pub trait Verifier: Send + Sync + 'static {
    /// Verifies `req`.
    fn verify<'a>(&'a self, req: &'a GuardRequest) -> BoxFuture<'a, Result<Principal, Rejection>>;

    /// The verdict [`verify`](Self::verify) would give, when it can be had at once **and without
    /// side effects** (no I/O, no replay store, no counters): an address allow-list, for example.
    /// `None` (the default) means "ask `verify`". The verify layer's service calls this first and, on `Some`, skips
    /// boxing a future on the request path; its answer may be discarded, so it must be pure.
    ///
    /// ```
    /// use guard_core::verify::{CidrVerifier, Verifier};
    /// let v = CidrVerifier::new(["10.0.0.0/8".parse().unwrap()]);
    /// let req = http::Request::new(bytes::Bytes::new()); // no peer address: refused at once
    /// assert!(matches!(v.verify_now(&req), Some(Err(_))));
    /// ```
    fn verify_now(&self, req: &GuardRequest) -> Option<Result<Principal, Rejection>> {
        let _ = req;
        None
    }
}

impl<F> Verifier for F
where
    F: Fn(&GuardRequest) -> Result<Principal, Rejection> + Send + Sync + 'static,
{
    fn verify<'a>(&'a self, req: &'a GuardRequest) -> VerifyFuture<'a> {
        let r = self(req);
        Box::pin(async move { r })
    }
}

impl Verifier for BoxVerifier {
    fn verify<'a>(&'a self, req: &'a GuardRequest) -> VerifyFuture<'a> {
        (**self).verify(req)
    }

    fn verify_now(&self, req: &GuardRequest) -> Option<Result<Principal, Rejection>> {
        (**self).verify_now(req)
    }
}

/// Type-erasing a [`Verifier`] so it can go into `any` / `all`.
pub(crate) trait VerifierExt: Verifier + Sized {
    fn boxed(self) -> BoxVerifier {
        Arc::new(self)
    }
}

impl<V: Verifier> VerifierExt for V {}

/// The rank from which a failure means "credentials were presented and refused" (or could not be
/// checked), as opposed to "nothing presented" or "address / source not listed".
const PRESENTED_AND_REFUSED: u8 = 2;

/// How strongly a failure speaks, when several verifiers failed and one answer must be chosen.
///
/// A verifier that could not decide (5xx: JWKS or secrets unreachable) beats one that saw bad
/// credentials, which beats an address or source that is not listed, which beats "no
/// credentials": a caller from an unlisted network that presents nothing is told 403, not invited
/// to authenticate (zero trust: the answer does not advertise other ways in), while a caller that
/// did present credentials learns they were wrong.
fn rank(kind: RejectionKind) -> u8 {
    use RejectionKind::*;
    match kind {
        MissingCredentials => 0,
        ForbiddenAddress | ForbiddenSource => 1,
        BadSignature | StaleSignature | Replayed | BadToken | Forbidden => 2,
        _ => 3,
    }
}

/// Accepts when **any** inner verifier accepts. See `any`.
#[derive(Clone)]
struct Any {
    verifiers: Arc<[BoxVerifier]>,
}

/// Accepts when **all** inner verifiers accept. See `all`.
#[derive(Clone)]
struct All {
    verifiers: Arc<[BoxVerifier]>,
}

impl std::fmt::Debug for Any {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Any")
            .field("verifiers", &self.verifiers.len())
            .finish()
    }
}

impl std::fmt::Debug for All {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("All")
            .field("verifiers", &self.verifiers.len())
            .finish()
    }
}

/// Runs every verifier in order; one that accepts is enough, **but presented credentials are always
/// checked**: a request carrying a signature or token that fails (or cannot be checked now) is
/// refused even when another verifier, such as an address allow-list, accepted it, and a valid
/// signature is used up whichever verifier admitted the request. "Nothing presented"
/// (`missing_credentials`) and "address / source not listed" (`forbidden_address`,
/// `forbidden_source`) only mean that verifier did not admit.
///
/// On success the principal is the first one that is not merely a network address or message
/// source, else the first. When nothing admits, the answer is the strongest failure: unavailable
/// (5xx) > bad credentials (401) > address/source not listed (403) > missing credentials (401);
/// ties go to the earlier verifier. An empty `any` refuses with 401
/// `guard.verify.missing_credentials`.
pub(crate) fn any(
    verifiers: impl IntoIterator<Item = BoxVerifier>,
) -> impl Verifier + Clone + std::fmt::Debug {
    Any {
        verifiers: verifiers.into_iter().collect(),
    }
}

/// Runs every verifier in order; the first failure decides (later ones are not run). On success the
/// principal is the first one that is not merely a network address or message source (a token or
/// signature says more about *who* than an address does), else the first. An empty `all` refuses
/// with 401 `guard.verify.missing_credentials` (zero trust: nothing configured is not "allow").
pub(crate) fn all(
    verifiers: impl IntoIterator<Item = BoxVerifier>,
) -> impl Verifier + Clone + std::fmt::Debug {
    All {
        verifiers: verifiers.into_iter().collect(),
    }
}

fn nothing_configured() -> Rejection {
    Rejection::new(RejectionKind::MissingCredentials).with_reason("no verifier configured")
}

impl Verifier for Any {
    fn verify<'a>(&'a self, req: &'a GuardRequest) -> VerifyFuture<'a> {
        Box::pin(async move {
            let mut verdict = AnyVerdict::default();
            for v in self.verifiers.iter() {
                verdict.add(v.verify(req).await);
            }
            verdict.finish()
        })
    }

    fn verify_now(&self, req: &GuardRequest) -> Option<Result<Principal, Rejection>> {
        let mut verdict = AnyVerdict::default();
        for v in self.verifiers.iter() {
            verdict.add(v.verify_now(req)?);
        }
        Some(verdict.finish())
    }
}

/// What [`Any`] gathered so far: the best principal and the strongest refusal.
#[derive(Default)]
struct AnyVerdict {
    admitted: Option<Principal>,
    worst: Option<Rejection>,
}

impl AnyVerdict {
    fn add(&mut self, outcome: Result<Principal, Rejection>) {
        match outcome {
            Ok(p) => {
                if self
                    .admitted
                    .as_ref()
                    .is_none_or(|c| !names_a_caller(c) && names_a_caller(&p))
                {
                    self.admitted = Some(p);
                }
            }
            Err(r) => {
                if self
                    .worst
                    .as_ref()
                    .is_none_or(|w| rank(r.kind()) > rank(w.kind()))
                {
                    self.worst = Some(r);
                }
            }
        }
    }

    /// A presented credential that failed (or could not be checked) refuses the request even when
    /// another verifier admitted it; otherwise any admission wins.
    fn finish(self) -> Result<Principal, Rejection> {
        match (self.admitted, self.worst) {
            (_, Some(r)) if rank(r.kind()) >= PRESENTED_AND_REFUSED => Err(r),
            (Some(p), _) => Ok(p),
            (None, worst) => Err(worst.unwrap_or_else(nothing_configured)),
        }
    }
}

fn names_a_caller(p: &Principal) -> bool {
    !matches!(p.kind, PrincipalKind::Network | PrincipalKind::Source)
}

impl Verifier for All {
    fn verify<'a>(&'a self, req: &'a GuardRequest) -> VerifyFuture<'a> {
        Box::pin(async move {
            let mut chosen: Option<Principal> = None;
            for v in self.verifiers.iter() {
                let p = v.verify(req).await?;
                if chosen
                    .as_ref()
                    .is_none_or(|c| !names_a_caller(c) && names_a_caller(&p))
                {
                    chosen = Some(p);
                }
            }
            chosen.ok_or_else(nothing_configured)
        })
    }

    fn verify_now(&self, req: &GuardRequest) -> Option<Result<Principal, Rejection>> {
        let mut chosen: Option<Principal> = None;
        for v in self.verifiers.iter() {
            let p = match v.verify_now(req)? {
                Ok(p) => p,
                Err(r) => return Some(Err(r)),
            };
            if chosen
                .as_ref()
                .is_none_or(|c| !names_a_caller(c) && names_a_caller(&p))
            {
                chosen = Some(p);
            }
        }
        Some(chosen.ok_or_else(nothing_configured))
    }
}

/// Sends HTTP and direct invocations to one verifier and platform messages to another. See
/// [`by_trigger`].
#[derive(Clone)]
pub(crate) struct ByTrigger {
    requests: BoxVerifier,
    messages: BoxVerifier,
}

impl std::fmt::Debug for ByTrigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByTrigger").finish_non_exhaustive()
    }
}

/// Verifies [`Trigger::Message`] requests with `messages` and everything else (HTTP, direct
/// invocations, requests without a `Trigger`) with `requests`. This is how `[verify]` keeps
/// "callers must be on the allow-list or sign" apart from "messages must come from the listed
/// queue", so a signed message from another queue is still refused.
pub(crate) fn by_trigger(requests: impl Verifier, messages: impl Verifier) -> ByTrigger {
    ByTrigger {
        requests: Arc::new(requests),
        messages: Arc::new(messages),
    }
}

impl Verifier for ByTrigger {
    fn verify<'a>(&'a self, req: &'a GuardRequest) -> VerifyFuture<'a> {
        match req.extensions().get::<Trigger>() {
            Some(Trigger::Message(_)) => self.messages.verify(req),
            _ => self.requests.verify(req),
        }
    }

    fn verify_now(&self, req: &GuardRequest) -> Option<Result<Principal, Rejection>> {
        match req.extensions().get::<Trigger>() {
            Some(Trigger::Message(_)) => self.messages.verify_now(req),
            _ => self.requests.verify_now(req),
        }
    }
}

/// Runs a [`Verifier`] before the inner service. See the [module docs](crate::verify).
///
/// Signatures a verifier accepted are recorded by their replay store only once the request is
/// admitted: here, just before the inner service (or, inside a [`Guard`](crate::Guard), just
/// before the handler, after the per-principal rate limit and the other checks). A request the verifier refuses uses nothing up.
///
/// On success the [`Principal`] is inserted into the request extensions for the layers and handler
/// inside (its only allocation: `http::Extensions` boxes every value), and, when an
/// [`AuditLayer`](crate::audit::AuditLayer) is outside, its kind and subject are handed to that
/// layer's per-request slot (nothing is put on the response). On failure the inner service is not
/// called and the response is the rendered [`Rejection`].
#[derive(Clone)]
pub struct VerifyLayer {
    verifier: BoxVerifier,
    commit_here: bool,
    /// Key caches whose issuer is found by OIDC discovery (policy-built), warmed at start.
    discovered: Arc<[super::JwksCache]>,
}

impl std::fmt::Debug for VerifyLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyLayer").finish_non_exhaustive()
    }
}

impl VerifyLayer {
    /// A layer running `verifier` on every request.
    pub fn new(verifier: impl Verifier) -> Self {
        Self {
            verifier: Arc::new(verifier),
            commit_here: true,
            discovered: Arc::new([]),
        }
    }

    /// A layer admitting a request when **any** of `verifiers` does; presented credentials are
    /// always checked, and when nothing admits the strongest failure answers: unavailable (5xx) >
    /// bad credentials (401) > address or source not listed (403) > missing credentials (401), ties
    /// to the earlier verifier. On success the principal is the first that is not merely an address
    /// or message source. An empty list refuses with 401 `guard.verify.missing_credentials`.
    ///
    /// Layers nest through [`verifier`](Self::verifier): `VerifyLayer::any([VerifyLayer::all([a,
    /// b]).verifier().clone(), c])`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use guard_core::verify::{CidrVerifier, Verifier, VerifyLayer};
    /// use guard_core::request::Peer;
    ///
    /// let nets = VerifyLayer::any([
    ///     Arc::new(CidrVerifier::new(["10.0.0.0/8".parse().unwrap()])) as Arc<dyn Verifier>,
    ///     Arc::new(CidrVerifier::new(["2001:db8::/32".parse().unwrap()])),
    /// ]);
    /// let mut req = http::Request::new(bytes::Bytes::new());
    /// req.extensions_mut().insert(Peer::new("2001:db8::7".parse().unwrap()));
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// assert!(rt.block_on(nets.verifier().verify(&req)).is_ok());
    /// ```
    pub fn any(verifiers: impl IntoIterator<Item = Arc<dyn Verifier>>) -> Self {
        Self::new(any(verifiers))
    }

    /// A layer admitting a request only when **all** of `verifiers` do, run in order (the first
    /// failure answers; later ones are not run). On success the principal is the first that is
    /// not merely an address or message source. An empty list refuses with 401
    /// `guard.verify.missing_credentials` (nothing configured is not "allow").
    ///
    /// ```
    /// use std::sync::Arc;
    /// use guard_core::verify::{CidrVerifier, Verifier, VerifyLayer};
    /// use guard_core::request::Peer;
    ///
    /// let both = VerifyLayer::all([
    ///     Arc::new(CidrVerifier::new(["10.0.0.0/8".parse().unwrap()])) as Arc<dyn Verifier>,
    ///     Arc::new(CidrVerifier::new(["10.1.0.0/16".parse().unwrap()])),
    /// ]);
    /// let mut req = http::Request::new(bytes::Bytes::new());
    /// req.extensions_mut().insert(Peer::new("10.2.0.1".parse().unwrap())); // in the first only
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// assert_eq!(rt.block_on(both.verifier().verify(&req)).unwrap_err().status(), 403);
    /// ```
    pub fn all(verifiers: impl IntoIterator<Item = Arc<dyn Verifier>>) -> Self {
        Self::new(all(verifiers))
    }

    pub(crate) fn with_discovery(mut self, caches: Vec<super::JwksCache>) -> Self {
        self.discovered = caches.into();
        self
    }

    /// Runs OIDC discovery and fetches the keys of every issuer the policy names by `issuer`
    /// alone, so a refused configuration is reported at start (on the `guard::verify` target)
    /// rather than at the first request. Tokens stay refused (503) while no key is had.
    #[cfg_attr(
        not(all(
            feature = "audit",
            feature = "authz",
            feature = "ingress",
            feature = "validate",
            feature = "rate-limit"
        )),
        allow(dead_code) // called by the Guard builder's prefetch
    )]
    pub(crate) async fn discover_now(&self) {
        for cache in self.discovered.iter() {
            if let Err(e) = cache.refresh().await {
                tracing::error!(target: "guard::verify", error = %e, "signing keys not fetched at start");
            }
        }
    }

    /// Leaves the verified signatures of each admitted request in its [`PendingReplays`] instead
    /// of recording them before the inner service: a [`ReplayCommitLayer`](super::ReplayCommitLayer)
    /// further in must record them (the [`Guard`](crate::Guard) puts it just before the handler,
    /// so a 429 from the per-principal limit does not use a signature up).
    #[cfg_attr(
        not(all(
            feature = "audit",
            feature = "authz",
            feature = "ingress",
            feature = "validate",
            feature = "rate-limit"
        )),
        allow(dead_code) // only the Guard builder, which needs every layer, defers
    )]
    pub(crate) fn commit_replay_later(mut self) -> Self {
        self.commit_here = false;
        self
    }

    /// The verifier this layer runs.
    pub fn verifier(&self) -> &BoxVerifier {
        &self.verifier
    }
}

crate::macros::layer_service! {
    /// The service built by [`VerifyLayer`].
    #[derive(Clone)]
    pub struct Verify<S> from VerifyLayer { verifier: BoxVerifier, commit_here: bool }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Verify<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verify")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Verify<S> {
    /// Wraps `inner` with `verifier`.
    pub fn new(inner: S, verifier: impl Verifier) -> Self {
        Self {
            inner,
            verifier: Arc::new(verifier),
            commit_here: true,
        }
    }
}

crate::macros::opaque_future! {
    /// The response future of [`Verify`].
    pub type ResponseFuture<F, E> = MaybeBoxFuture<F, E>;
}

/// Hands a verified principal to the audit layer's slot (when there is one) and to the layers and
/// handler inside. Called only once the verifier accepted `req`.
fn hand_over_principal(req: &mut GuardRequest, principal: Principal) {
    if let Some(slot) = req.extensions().get::<VerifiedSlot>() {
        slot.fill(&principal);
    }
    req.extensions_mut().insert(principal);
}

crate::macros::forwarding_service! {
impl owning for Verify<S> {
    type Future = ResponseFuture<S::Future, S::Error>;

    fn call(&mut self, mut req: GuardRequest) -> Self::Future {
        // A verdict reached at once (an address allow-list): no future to box, no clone of inner.
        if let Some(verdict) = self.verifier.verify_now(&req) {
            return match verdict {
                Ok(principal) => {
                    hand_over_principal(&mut req, principal);
                    ResponseFuture::new(MaybeBoxFuture::inner(self.inner.call(req)))
                }
                Err(rejection) => {
                    ResponseFuture::new(MaybeBoxFuture::rejected(rejection.into_response()))
                }
            };
        }
        // The ready service is the one we were polled on: take it, leave a clone behind.
        let clone = self.inner.clone();
        let mut inner = mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        let commit_here = self.commit_here;
        let pending = PendingReplays::default();
        req.extensions_mut().insert(pending.clone());
        let future = Box::pin(async move {
            let verdict = verifier.verify(&req).await;
            match verdict {
                Ok(principal) => {
                    if commit_here || pending.is_empty() {
                        req.extensions_mut().remove::<PendingReplays>();
                        if let Err(rejection) = pending.commit().await {
                            return Ok(rejection.into_response());
                        }
                    }
                    hand_over_principal(&mut req, principal);
                    inner.call(req).await
                }
                Err(rejection) => Ok(rejection.into_response()),
            }
        });
        ResponseFuture::new(MaybeBoxFuture::boxed(future))
    }
}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rejection::RejectionKind as K;

    fn fails(kind: K) -> impl Verifier {
        move |_: &GuardRequest| Err(Rejection::new(kind))
    }

    fn passes(kind: PrincipalKind, who: &'static str) -> impl Verifier {
        move |_: &GuardRequest| Ok(Principal::new(kind.clone(), who))
    }

    fn run(v: &dyn Verifier) -> Result<Principal, Rejection> {
        let req = http::Request::new(bytes::Bytes::new());
        futures_util::FutureExt::now_or_never(v.verify(&req)).expect("synchronous verifiers")
    }

    /// A pure verifier: answers at once through `verify_now` as well as through `verify`.
    struct Now(Result<(PrincipalKind, &'static str), K>);

    impl Verifier for Now {
        fn verify<'a>(&'a self, req: &'a GuardRequest) -> VerifyFuture<'a> {
            let r = self.verify_now(req).expect("pure");
            Box::pin(async move { r })
        }

        fn verify_now(&self, _req: &GuardRequest) -> Option<Result<Principal, Rejection>> {
            Some(match &self.0 {
                Ok((kind, who)) => Ok(Principal::new(kind.clone(), *who)),
                Err(kind) => Err(Rejection::new(*kind)),
            })
        }
    }

    fn now(v: &dyn Verifier) -> Option<Result<Principal, Rejection>> {
        v.verify_now(&http::Request::new(bytes::Bytes::new()))
    }

    #[test]
    fn pure_combinators_decide_at_once_with_the_verdict_verify_gives() {
        let cases = [
            any(vec![
                Now(Err(K::MissingCredentials)).boxed(),
                Now(Err(K::ForbiddenAddress)).boxed(),
            ]),
            any(vec![
                Now(Err(K::ForbiddenAddress)).boxed(),
                Now(Ok((PrincipalKind::Network, "10.0.0.1"))).boxed(),
            ]),
            any(Vec::new()),
        ];
        for v in cases {
            let at_once = now(&v).expect("every verifier is pure");
            match (at_once, run(&v)) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind()),
                (a, b) => panic!("verify_now {a:?} but verify {b:?}"),
            }
        }
        let v = all([
            Now(Ok((PrincipalKind::Source, "arn"))).boxed(),
            Now(Ok((PrincipalKind::Jwt, "user-1"))).boxed(),
        ]);
        assert_eq!(now(&v).unwrap().unwrap().subject, "user-1");
        let v = all([
            Now(Ok((PrincipalKind::Source, "arn"))).boxed(),
            Now(Err(K::BadToken)).boxed(),
        ]);
        assert_eq!(now(&v).unwrap().unwrap_err().kind(), K::BadToken);
    }

    #[test]
    fn combinators_defer_to_verify_when_a_verifier_they_reach_cannot_answer_at_once() {
        // Closures may have side effects: they never answer through `verify_now`.
        let v = any([
            Now(Err(K::ForbiddenAddress)).boxed(),
            fails(K::BadSignature).boxed(),
        ]);
        assert!(now(&v).is_none());
        assert_eq!(run(&v).unwrap_err().kind(), K::BadSignature);
        // ...even when an earlier pure verifier admitted: presented credentials are always checked.
        let v = any([
            Now(Ok((PrincipalKind::Network, "10.0.0.1"))).boxed(),
            fails(K::BadSignature).boxed(),
        ]);
        assert!(now(&v).is_none());
        assert_eq!(run(&v).unwrap_err().kind(), K::BadSignature);
        let v = all([
            Now(Ok((PrincipalKind::Network, "10.0.0.1"))).boxed(),
            passes(PrincipalKind::Jwt, "user-1").boxed(),
        ]);
        assert!(now(&v).is_none());
        let v = all([
            Now(Err(K::ForbiddenAddress)).boxed(),
            passes(PrincipalKind::Jwt, "user-1").boxed(),
        ]);
        assert_eq!(now(&v).unwrap().unwrap_err().kind(), K::ForbiddenAddress);
    }

    #[test]
    fn any_reports_the_strongest_failure() {
        let v = any([
            fails(K::ForbiddenAddress).boxed(),
            fails(K::MissingCredentials).boxed(),
        ]);
        assert_eq!(run(&v).unwrap_err().kind(), K::ForbiddenAddress);
        let v = any([
            fails(K::BadSignature).boxed(),
            fails(K::VerifyUnavailable).boxed(),
            fails(K::MissingCredentials).boxed(),
        ]);
        assert_eq!(run(&v).unwrap_err().kind(), K::VerifyUnavailable);
    }

    #[test]
    fn any_checks_presented_credentials_even_when_another_admits() {
        let addr = || passes(PrincipalKind::Network, "1.2.3.4").boxed();
        // Nothing presented, or another address list that does not match: the address admits.
        let v = any([addr(), fails(K::MissingCredentials).boxed()]);
        assert_eq!(run(&v).unwrap().subject, "1.2.3.4");
        let v = any([fails(K::ForbiddenAddress).boxed(), addr()]);
        assert_eq!(run(&v).unwrap().subject, "1.2.3.4");
        // A presented credential that fails, or cannot be checked, refuses.
        for kind in [
            K::BadSignature,
            K::StaleSignature,
            K::Replayed,
            K::BadToken,
            K::Forbidden,
            K::VerifyUnavailable,
        ] {
            let v = any([addr(), fails(kind).boxed()]);
            assert_eq!(run(&v).unwrap_err().kind(), kind);
        }
        // Both admit: the principal that says who.
        let v = any([addr(), passes(PrincipalKind::Hmac, "hook").boxed()]);
        assert_eq!(run(&v).unwrap().subject, "hook");
    }

    #[test]
    fn all_prefers_a_principal_that_says_who() {
        let v = all([
            passes(PrincipalKind::Source, "arn").boxed(),
            passes(PrincipalKind::Jwt, "user-1").boxed(),
        ]);
        assert_eq!(run(&v).unwrap().subject, "user-1");
        let v = all([
            passes(PrincipalKind::Source, "arn").boxed(),
            fails(K::BadToken).boxed(),
        ]);
        assert_eq!(run(&v).unwrap_err().kind(), K::BadToken);
    }

    #[test]
    fn empty_combinators_refuse() {
        assert_eq!(run(&any([])).unwrap_err().kind(), K::MissingCredentials);
        assert_eq!(run(&all([])).unwrap_err().kind(), K::MissingCredentials);
    }
}

#[cfg(test)]
mod by_trigger_routes_messages_to_their_verifier_example {
    #[test]
    fn by_trigger_routes_messages_to_their_verifier() {
        use super::super::source::SourceVerifier;
        use super::by_trigger;
        use crate::request::{MessageTrigger, Trigger};
        use crate::verify::{CidrVerifier, Verifier};

        let v = by_trigger(
            CidrVerifier::new(["10.0.0.0/8".parse().unwrap()]),
            SourceVerifier::new([("sqs", "arn:aws:sqs:us-east-1:123456789012:orders")]).unwrap(),
        );
        let mut msg = http::Request::new(bytes::Bytes::new());
        msg.extensions_mut()
            .insert(Trigger::Message(MessageTrigger::new(
                "sqs",
                "arn:aws:sqs:us-east-1:123456789012:orders",
                "m-1",
            )));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert!(rt.block_on(v.verify(&msg)).is_ok());
    }
}
