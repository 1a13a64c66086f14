//! [`SecretsLayer`], [`Secrets`] and the [`SecretHandles`] request extension.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;
use tower_service::Service;

use crate::future::MaybeBoxFuture;
use crate::rejection::{Rejection, RejectionKind};
use crate::request::{GuardRequest, GuardResponse};
use guard_secrets::{SecretStore, SecretValue, SecretsError};

/// One fetched secret: the name as written in the layer's list, and its value.
type Pair = (Arc<str>, Arc<SecretValue>);

/// How many secrets [`SecretHandles`] holds without a heap allocation of its own.
const INLINE: usize = 2;

/// The secrets of one request: up to [`INLINE`] inline (the usual case: cloning them only bumps
/// reference counts), more in one shared slice.
#[derive(Clone)]
enum FetchedSecrets {
    Inline([Option<Pair>; INLINE]),
    Shared(Arc<[Pair]>),
}

impl FetchedSecrets {
    fn iter(&self) -> impl Iterator<Item = &Pair> {
        let (inline, shared): (&[Option<Pair>], &[Pair]) = match self {
            FetchedSecrets::Inline(items) => (items, &[]),
            FetchedSecrets::Shared(items) => (&[], items),
        };
        inline.iter().flatten().chain(shared)
    }
}

/// Collects [`FetchedSecrets`] in list order.
struct FetchedSecretsBuilder {
    inline: [Option<Pair>; INLINE],
    len: usize,
    more: Vec<Pair>,
}

impl FetchedSecretsBuilder {
    fn new() -> Self {
        FetchedSecretsBuilder {
            inline: Default::default(),
            len: 0,
            more: Vec::new(),
        }
    }

    fn push(&mut self, pair: Pair) {
        match self.inline.get_mut(self.len) {
            Some(slot) => *slot = Some(pair),
            None => self.more.push(pair),
        }
        self.len += 1;
    }

    fn finish(self) -> FetchedSecrets {
        if self.more.is_empty() {
            FetchedSecrets::Inline(self.inline)
        } else {
            FetchedSecrets::Shared(self.inline.into_iter().flatten().chain(self.more).collect())
        }
    }
}

/// The secrets a [`SecretsLayer`] fetched for this request, by name. A request extension.
///
/// `Debug` lists the names only.
#[derive(Clone)]
pub struct SecretHandles {
    values: FetchedSecrets,
    store: SecretStore,
}

impl SecretHandles {
    /// The secret `name` (as written in the layer's lists, `name#field` included), if it was fetched.
    ///
    /// ```
    /// # let store = guard_secrets::SecretStore::new(|n: &str, _| Err(guard_secrets::SecretsError::not_found(n)));
    /// # let handles = guard_core::secrets::SecretHandles::empty(store);
    /// assert!(handles.get("orders-api-key").is_none());
    /// ```
    pub fn get(&self, name: &str) -> Option<Arc<SecretValue>> {
        self.values
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| v.clone())
    }

    /// The names present.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.iter().map(|(n, _)| &**n)
    }

    /// The shared store, to read a secret the layer was not told about.
    pub fn store(&self) -> &SecretStore {
        &self.store
    }

    /// Handles holding nothing (for tests of handlers).
    pub fn empty(store: SecretStore) -> Self {
        Self {
            values: FetchedSecrets::Inline(Default::default()),
            store,
        }
    }
}

impl fmt::Debug for SecretHandles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretHandles")
            .field("names", &self.names().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Makes named secrets from a [`SecretStore`] available to the handler as a [`SecretHandles`]
/// request extension. Cheap to clone.
///
/// Required secrets that cannot be had (nothing usable cached and the source fails) end the request
/// with 503 `guard.secrets.unavailable` before the handler runs; optional ones are simply absent.
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use guard_secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
/// use guard_core::secrets::{SecretHandles, SecretsLayer};
/// use guard_core::{GuardRequest, GuardResponse};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let source = |name: &str, _: SecretVersion| -> Result<SecretValue, SecretsError> {
///     if name == "api-key" { Ok("k".into()) } else { Err(SecretsError::not_found(name)) }
/// };
/// let store = SecretStore::new(source);
/// let handler = service_fn(|req: GuardRequest| async move {
///     let key = req.extensions().get::<SecretHandles>().and_then(|s| s.get("api-key"));
///     Ok::<_, Infallible>(GuardResponse::new(Bytes::from(format!("{}", key.is_some()))))
/// });
///
/// let ok = SecretsLayer::new(store.clone()).require("api-key").layer(handler.clone());
/// let resp = ok.oneshot(GuardRequest::new(Bytes::new())).await.unwrap();
/// assert_eq!(resp.status(), 200);
/// assert_eq!(resp.body(), "true");
///
/// let missing = SecretsLayer::new(store).require("nope").layer(handler);
/// let resp = missing.oneshot(GuardRequest::new(Bytes::new())).await.unwrap();
/// assert_eq!(resp.status(), 503);
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct SecretsLayer {
    store: SecretStore,
    required: Arc<[Arc<str>]>,
    optional: Arc<[Arc<str>]>,
}

impl SecretsLayer {
    /// A layer over `store` that fetches nothing yet (add names with [`require`](Self::require)
    /// and [`optional`](Self::optional)).
    pub fn new(store: SecretStore) -> Self {
        Self {
            store,
            required: Arc::new([]),
            optional: Arc::new([]),
        }
    }

    /// The request fails with 503 when `name` (or `name#field`) cannot be had.
    pub fn require(mut self, name: impl AsRef<str>) -> Self {
        self.required = push(&self.required, name.as_ref());
        self
    }

    /// `name` is handed over when it can be had, and absent otherwise.
    pub fn optional(mut self, name: impl AsRef<str>) -> Self {
        self.optional = push(&self.optional, name.as_ref());
        self
    }

    /// The store.
    pub fn store(&self) -> &SecretStore {
        &self.store
    }

    /// Fetches every required and optional secret into the cache (call it at start-up).
    pub async fn prefetch(&self) -> Result<(), Vec<SecretsError>> {
        let required = self.store.prefetch(self.required.iter()).await;
        let _ = self.store.prefetch(self.optional.iter()).await;
        required
    }
}

fn push(list: &[Arc<str>], name: &str) -> Arc<[Arc<str>]> {
    list.iter()
        .cloned()
        .chain((!list.iter().any(|n| &**n == name)).then(|| Arc::from(name)))
        .collect()
}

impl<S> Layer<S> for SecretsLayer {
    type Service = Secrets<S>;

    fn layer(&self, inner: S) -> Secrets<S> {
        Secrets {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service built by [`SecretsLayer`].
#[derive(Clone, Debug)]
pub struct Secrets<S> {
    inner: S,
    layer: SecretsLayer,
}

crate::macros::inner_service_accessors!(Secrets);

crate::macros::opaque_future! {
    /// The response future of [`Secrets`].
    pub type ResponseFuture<F, E> = MaybeBoxFuture<F, E>;
}

/// One answer per name of a list: given by the cache at once, or (`None`) still to be fetched.
type CacheAnswers = Vec<Option<Result<Arc<SecretValue>, SecretsError>>>;

/// Every name's answer from the cache ([`SecretStore::get_now`]), each name asked once.
fn peek_all(store: &SecretStore, names: &[Arc<str>]) -> CacheAnswers {
    names.iter().map(|n| store.get_now(n)).collect()
}

/// `answers` completed: the names the cache could not answer are fetched (concurrently).
async fn resolve(
    store: &SecretStore,
    names: &[Arc<str>],
    answers: CacheAnswers,
) -> Vec<Result<Arc<SecretValue>, SecretsError>> {
    let fetched = futures_util::future::join_all(
        names
            .iter()
            .zip(&answers)
            .filter(|(_, a)| a.is_none())
            .map(|(n, _)| store.get(n)),
    )
    .await;
    let mut fetched = fetched.into_iter();
    names
        .iter()
        .zip(answers)
        .map(|(name, a)| {
            a.or_else(|| fetched.next())
                .unwrap_or_else(|| Err(SecretsError::transient(name, "no answer")))
        })
        .collect()
}

/// The 503 for a required secret that cannot be had (the reason names the secret, never a value).
fn unavailable(name: &str, e: &SecretsError) -> GuardResponse {
    let why = match e {
        SecretsError::NotFound { .. } => "not found",
        SecretsError::AccessDenied { .. } => "access denied",
        SecretsError::Transient { .. } => "source unavailable",
        _ => "source error",
    };
    Rejection::new(RejectionKind::SecretsUnavailable)
        .with_reason(format!("required secret `{name}`: {why}"))
        .into_response()
}

/// What the cache answered at once for the whole request.
enum CacheVerdict {
    /// Every secret answered: the handles, or the 503 of the first required one that failed.
    Ready(Result<SecretHandles, GuardResponse>),
    /// Something must be fetched. The required secrets' answers (every one asked), or, when
    /// every required one was had, the values collected so far and the answers of the optional
    /// names from the first one the cache could not answer on.
    Wait {
        required: CacheAnswers,
        optional: Option<(FetchedSecretsBuilder, usize, CacheAnswers)>,
    },
}

impl SecretsLayer {
    /// Asks the cache for every secret at once, the required ones first (each name once, in list
    /// order, exactly as the awaiting path would), and the optional ones only when every required
    /// one was had.
    fn ask_cache(&self) -> CacheVerdict {
        let store = &self.store;
        let mut values = FetchedSecretsBuilder::new();
        for (i, name) in self.required.iter().enumerate() {
            match store.get_now(name) {
                Some(Ok(v)) => values.push((name.clone(), v)),
                Some(Err(e)) => {
                    // Every required secret is still asked for (as the awaiting path does); the
                    // first failure in list order decides the answer.
                    if let Some(rest) = self.required.get(i + 1..) {
                        let rest = peek_all(store, rest);
                        if rest.iter().any(Option::is_none) {
                            let mut required = Vec::with_capacity(self.required.len());
                            required.extend(values.into_pairs().map(|(_, v)| Some(Ok(v))));
                            required.push(Some(Err(e)));
                            required.extend(rest);
                            return CacheVerdict::Wait {
                                required,
                                optional: None,
                            };
                        }
                    }
                    return CacheVerdict::Ready(Err(unavailable(name, &e)));
                }
                None => {
                    let mut required = Vec::with_capacity(self.required.len());
                    required.extend(values.into_pairs().map(|(_, v)| Some(Ok(v))));
                    required.push(None);
                    if let Some(rest) = self.required.get(i + 1..) {
                        required.extend(peek_all(store, rest));
                    }
                    return CacheVerdict::Wait {
                        required,
                        optional: None,
                    };
                }
            }
        }
        self.ask_cache_optional(values)
    }

    /// The optional secrets, once every required one (in `values`) was had: absent ones are
    /// left out; the first one not cached makes the rest wait for the awaiting path.
    fn ask_cache_optional(&self, mut values: FetchedSecretsBuilder) -> CacheVerdict {
        let store = &self.store;
        let mut optional: Option<(usize, CacheAnswers)> = None;
        for (i, name) in self.optional.iter().enumerate() {
            let answer = store.get_now(name);
            if let Some((_, answers)) = optional.as_mut() {
                answers.push(answer);
                continue;
            }
            match answer {
                Some(Ok(v)) => values.push((name.clone(), v)),
                Some(Err(_)) => {}
                None => {
                    // The names before `i` are settled (found ones are in `values`, the others
                    // are absent); from `i` on, the awaiting path completes the answers.
                    let mut answers: CacheAnswers = Vec::with_capacity(self.optional.len() - i);
                    answers.push(None);
                    optional = Some((i, answers));
                }
            }
        }
        match optional {
            None => CacheVerdict::Ready(Ok(SecretHandles {
                values: values.finish(),
                store: store.clone(),
            })),
            Some((start, answers)) => CacheVerdict::Wait {
                required: Vec::new(),
                optional: Some((values, start, answers)),
            },
        }
    }
}

impl FetchedSecretsBuilder {
    /// The pairs collected so far, in order.
    fn into_pairs(self) -> impl Iterator<Item = Pair> {
        self.inline.into_iter().flatten().chain(self.more)
    }
}

impl<S> Service<GuardRequest> for Secrets<S>
where
    S: Service<GuardRequest, Response = GuardResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = GuardResponse;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    crate::macros::poll_ready_from_inner!();

    fn call(&mut self, mut req: GuardRequest) -> Self::Future {
        let (required, optional) = match self.layer.ask_cache() {
            // Every secret fresh in the cache: no future to box, no clone of the inner service.
            CacheVerdict::Ready(Ok(handles)) => {
                req.extensions_mut().insert(handles);
                return ResponseFuture::new(MaybeBoxFuture::inner(self.inner.call(req)));
            }
            CacheVerdict::Ready(Err(response)) => {
                return ResponseFuture::new(MaybeBoxFuture::rejected(response));
            }
            CacheVerdict::Wait { required, optional } => (required, optional),
        };
        // Take the service that was driven to readiness; leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        let future = Box::pin(async move {
            let store = &layer.store;
            let (mut values, start, optional) = match optional {
                Some(ready) => ready,
                None => {
                    let required = resolve(store, &layer.required, required).await;
                    let mut values = FetchedSecretsBuilder::new();
                    for (name, result) in layer.required.iter().zip(required) {
                        match result {
                            Ok(v) => values.push((name.clone(), v)),
                            Err(e) => return Ok(unavailable(name, &e)),
                        }
                    }
                    (values, 0, peek_all(store, &layer.optional))
                }
            };
            let names = layer.optional.get(start..).unwrap_or_default();
            let optional = resolve(store, names, optional).await;
            for (name, result) in names.iter().zip(optional) {
                if let Ok(v) = result {
                    values.push((name.clone(), v));
                }
            }
            req.extensions_mut().insert(SecretHandles {
                values: values.finish(),
                store: layer.store.clone(),
            });
            inner.call(req).await
        });
        ResponseFuture::new(MaybeBoxFuture::boxed(future))
    }
}
