//! [`SecretsLayer`], [`Secrets`] and the [`SecretHandles`] request extension.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use super::{SecretStore, SecretValue, SecretsError};
use crate::future::BoxResponseFuture;
use crate::rejection::{Rejection, RejectionKind};
use crate::request::{GuardRequest, GuardResponse};

/// The secrets a [`SecretsLayer`] fetched for this request, by name. A request extension.
///
/// `Debug` lists the names only.
#[derive(Clone)]
pub struct SecretHandles {
    values: Arc<[(Arc<str>, Arc<SecretValue>)]>,
    store: SecretStore,
}

impl SecretHandles {
    /// The secret `name` (as written in the layer's lists, `name#field` included), if it was fetched.
    ///
    /// ```
    /// # let store = guard_core::secrets::SecretStore::new(guard_core::secrets::EnvSource::new());
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
            values: Arc::new([]),
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
/// use guard_core::secrets::{SecretHandles, SecretStore, SecretValue, SecretVersion, SecretsError, SecretsLayer};
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

/// The response future of [`Secrets`].
pub type ResponseFuture<E> = BoxResponseFuture<E>;

impl<S> Service<GuardRequest> for Secrets<S>
where
    S: Service<GuardRequest, Response = GuardResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = GuardResponse;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: GuardRequest) -> Self::Future {
        // Take the service that was driven to readiness; leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let store = &layer.store;
            let required =
                futures_util::future::join_all(layer.required.iter().map(|n| store.get(n))).await;
            let mut values = Vec::with_capacity(layer.required.len() + layer.optional.len());
            for (name, result) in layer.required.iter().zip(required) {
                match result {
                    Ok(v) => values.push((name.clone(), v)),
                    Err(e) => {
                        let why = match e {
                            SecretsError::NotFound { .. } => "not found",
                            SecretsError::AccessDenied { .. } => "access denied",
                            SecretsError::Transient { .. } => "source unavailable",
                            _ => "source error",
                        };
                        return Ok(Rejection::new(RejectionKind::SecretsUnavailable)
                            .with_reason(format!("required secret `{name}`: {why}"))
                            .into_response());
                    }
                }
            }
            let optional =
                futures_util::future::join_all(layer.optional.iter().map(|n| store.get(n))).await;
            for (name, result) in layer.optional.iter().zip(optional) {
                if let Ok(v) = result {
                    values.push((name.clone(), v));
                }
            }
            req.extensions_mut().insert(SecretHandles {
                values: values.into(),
                store: layer.store.clone(),
            });
            inner.call(req).await
        })
    }
}
