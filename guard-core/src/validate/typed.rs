//! [`TypedValidateLayer`]: `serde` + `validator` validation into a [`Validated<T>`] extension.

use std::marker::PhantomData;
use std::sync::Arc;

use http::StatusCode;
use serde::de::DeserializeOwned;
use tower_layer::Layer;
use tower_service::Service;
use validator::{Validate, ValidationErrors, ValidationErrorsKind};

use super::body::JsonBody;
use super::schema::ResponseFuture;
use crate::future::CheckFuture;
use crate::request::{GuardRequest, GuardResponse};
use crate::{Rejection, RejectionKind, ValidationDetail};

/// The typed, validated body, in the request extensions.
///
/// ```
/// # use std::sync::Arc;
/// let v = guard_core::validate::Validated(Arc::new(5u32));
/// assert_eq!(*v.0, 5);
/// ```
#[derive(Debug)]
pub struct Validated<T>(pub Arc<T>);

impl<T> Clone for Validated<T> {
    fn clone(&self) -> Self {
        Validated(self.0.clone())
    }
}

/// Deserializes the body into `T` and runs `T::validate()`. Failures are 400
/// `guard.validate.invalid` (422 when configured). Uses the [`JsonBody`] left by
/// [`ValidateLayer`](super::ValidateLayer) when present; otherwise checks the body with the same
/// strictness itself (duplicate keys, out-of-range numbers, trailing data). Either way `T` is
/// deserialized straight from the bytes, without a `serde_json::Value` in between.
///
/// ```
/// use bytes::Bytes;
/// use guard_core::validate::{TypedValidateLayer, Validated};
/// use tower::{Layer, Service, ServiceExt, service_fn};
///
/// #[derive(serde::Deserialize, validator::Validate)]
/// struct Order { #[validate(range(min = 1, max = 1000))] qty: u32 }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let mut svc = TypedValidateLayer::<Order>::new().unprocessable_entity(true).layer(
///     service_fn(|req: http::Request<Bytes>| async move {
///         let order = req.extensions().get::<Validated<Order>>().unwrap();
///         Ok::<_, std::convert::Infallible>(http::Response::new(Bytes::from(order.0.qty.to_string())))
///     }));
/// let resp = svc.ready().await.unwrap().call(http::Request::new(Bytes::from_static(b"{\"qty\":0}"))).await.unwrap();
/// assert_eq!(resp.status(), 422);
/// # });
/// ```
#[derive(Debug)]
pub struct TypedValidateLayer<T> {
    status: StatusCode,
    expose_details: bool,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for TypedValidateLayer<T> {
    fn clone(&self) -> Self {
        Self {
            status: self.status,
            expose_details: self.expose_details,
            _t: PhantomData,
        }
    }
}

impl<T> Default for TypedValidateLayer<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> TypedValidateLayer<T> {
    /// 400 on failure, details hidden.
    ///
    /// ```
    /// let l = guard_core::validate::TypedValidateLayer::<serde_json::Value>::new();
    /// # let _ = l;
    /// ```
    pub fn new() -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            expose_details: false,
            _t: PhantomData,
        }
    }

    /// Answer semantic failures (`validate()` errors) with 422 instead of 400. Bodies that do not
    /// even deserialize into `T` stay 400.
    ///
    /// ```
    /// let l = guard_core::validate::TypedValidateLayer::<serde_json::Value>::new().unprocessable_entity(true);
    /// # let _ = l;
    /// ```
    pub fn unprocessable_entity(mut self, yes: bool) -> Self {
        self.status = if yes {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_REQUEST
        };
        self
    }

    /// Whether rejection bodies list `[{pointer, keyword}]`.
    ///
    /// ```
    /// let l = guard_core::validate::TypedValidateLayer::<serde_json::Value>::new().expose_details(true);
    /// # let _ = l;
    /// ```
    pub fn expose_details(mut self, yes: bool) -> Self {
        self.expose_details = yes;
        self
    }
}

impl<S, T> Layer<S> for TypedValidateLayer<T> {
    type Service = TypedValidate<S, T>;

    fn layer(&self, inner: S) -> Self::Service {
        TypedValidate {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service produced by [`TypedValidateLayer`].
#[derive(Debug)]
pub struct TypedValidate<S, T> {
    inner: S,
    layer: TypedValidateLayer<T>,
}

impl<S: Clone, T> Clone for TypedValidate<S, T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S, T, E> Service<GuardRequest> for TypedValidate<S, T>
where
    S: Service<GuardRequest, Response = GuardResponse, Error = E>,
    T: DeserializeOwned + Validate + Send + Sync + 'static,
{
    type Response = GuardResponse;
    type Error = E;
    type Future = ResponseFuture<S::Future>;

    crate::macros::poll_ready_from_inner!();

    fn call(&mut self, mut req: GuardRequest) -> Self::Future {
        let checked;
        let body = match req.extensions().get::<JsonBody>() {
            Some(body) => Ok(body),
            None => match JsonBody::parse(req.body().clone()) {
                Ok(b) => {
                    checked = b;
                    Ok(&checked)
                }
                Err(_) => Err("malformed JSON"),
            },
        };
        let parsed = body.and_then(|b| b.deserialize::<T>().map_err(|_| "does not match the type"));
        let value = match parsed {
            Ok(v) => v,
            Err(reason) => {
                return ResponseFuture::new(CheckFuture::rejected(
                    Rejection::new(RejectionKind::InvalidInput)
                        .with_reason(reason)
                        .into_response(),
                ));
            }
        };
        if let Err(errors) = value.validate() {
            let mut details = Vec::new();
            collect_details(&errors, String::new(), &mut details);
            let reason = details
                .first()
                .map(|d| format!("{} at {}", d.keyword, d.pointer))
                .unwrap_or_else(|| "invalid".into());
            return ResponseFuture::new(CheckFuture::rejected(
                Rejection::new(RejectionKind::InvalidInput)
                    .with_status(self.layer.status)
                    .with_details(details)
                    .with_reason(reason)
                    .render(self.layer.expose_details),
            ));
        }
        req.extensions_mut().insert(Validated(Arc::new(value)));
        ResponseFuture::new(CheckFuture::inner(self.inner.call(req)))
    }
}

fn collect_details(errors: &ValidationErrors, prefix: String, out: &mut Vec<ValidationDetail>) {
    let mut fields: Vec<_> = errors.errors().iter().collect();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    for (field, kind) in fields {
        let pointer = format!("{prefix}/{}", escape_pointer(field));
        match kind {
            ValidationErrorsKind::Field(errs) => {
                for e in errs {
                    out.push(ValidationDetail {
                        pointer: pointer.clone(),
                        keyword: e.code.to_string(),
                    });
                }
            }
            ValidationErrorsKind::Struct(inner) => collect_details(inner, pointer, out),
            ValidationErrorsKind::List(items) => {
                for (i, inner) in items {
                    collect_details(inner, format!("{pointer}/{i}"), out);
                }
            }
        }
    }
}

fn escape_pointer(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}
