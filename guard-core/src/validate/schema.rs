//! [`ValidateLayer`]: strict JSON parse + JSON Schema, on the exact bytes the handler will see.

use std::sync::Arc;
use std::task::{Context, Poll};

use jsonschema::{PatternOptions, Validator};
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;

use super::json::{JsonError, parse_strict};
use crate::future::CheckFuture;
use crate::policy::{PolicyError, PolicyProblem, ValidatePolicy};
use crate::request::{GuardRequest, GuardResponse};
use crate::{Rejection, RejectionKind, ValidationDetail};

/// Most validation details reported in one rejection.
const MAX_DETAILS: usize = 16;
/// Size limit for one compiled `pattern` (bounds memory; the engine is linear-time).
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// The parsed request body, put in the request extensions so the handler does not parse twice.
///
/// ```
/// # use std::sync::Arc;
/// let body = guard_core::validate::JsonBody(Arc::new(serde_json::json!({"a": 1})));
/// assert_eq!(body.0["a"], 1);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct JsonBody(pub Arc<Value>);

/// A schema could not be compiled. The message names the problem, never request data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schema does not compile: {0}")]
pub struct SchemaError(String);

/// Compiles `schema` once: linear-time `regex` pattern engine (with a size limit), `format`
/// asserted, and no remote or file `$ref` resolution — a schema that needs a fetch fails here.
///
/// ```
/// let ok = guard_core::validate::compile_schema(&serde_json::json!({"type": "object"}));
/// assert!(ok.is_ok());
/// let remote = serde_json::json!({"$ref": "http://example.com/s.json"});
/// assert!(guard_core::validate::compile_schema(&remote).is_err());
/// ```
pub fn compile_schema(schema: &Value) -> Result<Validator, SchemaError> {
    jsonschema::options()
        .with_pattern_options(PatternOptions::regex().size_limit(PATTERN_SIZE_LIMIT))
        .should_validate_formats(true)
        .build(schema)
        .map_err(|e| SchemaError(e.to_string()))
}

#[derive(Debug)]
struct Config {
    schema: Option<Validator>,
    expose_details: bool,
}

/// Parses the body strictly and validates it against a JSON Schema. Cheap to clone.
///
/// ```
/// use bytes::Bytes;
/// use guard_core::validate::{JsonBody, ValidateLayer};
/// use tower::{Layer, Service, ServiceExt, service_fn};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let schema = serde_json::json!({"type": "object", "required": ["id"]});
/// let layer = ValidateLayer::with_schema(&schema).unwrap();
/// let mut svc = layer.layer(service_fn(|req: http::Request<Bytes>| async move {
///     let body = req.extensions().get::<JsonBody>().unwrap();
///     Ok::<_, std::convert::Infallible>(http::Response::new(Bytes::from(body.0["id"].to_string())))
/// }));
/// let bad = http::Request::new(Bytes::from_static(b"{}"));
/// assert_eq!(svc.ready().await.unwrap().call(bad).await.unwrap().status(), 400);
/// let good = http::Request::new(Bytes::from_static(b"{\"id\":7}"));
/// assert_eq!(svc.ready().await.unwrap().call(good).await.unwrap().body(), "7");
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct ValidateLayer {
    config: Arc<Config>,
}

impl ValidateLayer {
    /// Strict JSON parsing only (duplicate keys, out-of-range numbers), no schema.
    ///
    /// ```
    /// let layer = guard_core::validate::ValidateLayer::json_only();
    /// # let _ = layer;
    /// ```
    pub fn json_only() -> Self {
        Self {
            config: Arc::new(Config {
                schema: None,
                expose_details: false,
            }),
        }
    }

    /// Strict JSON parsing and the given schema, compiled now.
    ///
    /// ```
    /// let layer = guard_core::validate::ValidateLayer::with_schema(&serde_json::json!({}));
    /// assert!(layer.is_ok());
    /// ```
    pub fn with_schema(schema: &Value) -> Result<Self, SchemaError> {
        Ok(Self {
            config: Arc::new(Config {
                schema: Some(compile_schema(schema)?),
                expose_details: false,
            }),
        })
    }

    /// Builds the layer from the `[validate]` section (the schema document must have been read, as
    /// [`Policy::load`](crate::Policy::load) does).
    ///
    /// ```
    /// let p = guard_core::policy::ValidatePolicy::default();
    /// assert!(guard_core::validate::ValidateLayer::from_policy(&p).is_ok());
    /// ```
    pub fn from_policy(policy: &ValidatePolicy) -> Result<Self, PolicyError> {
        let schema = match (&policy.schema, &policy.schema_document) {
            (_, Some(doc)) => Some(compile_schema(doc).map_err(|e| {
                PolicyError::new(vec![PolicyProblem::new("validate.schema", e.to_string())])
            })?),
            (Some(path), None) => {
                return Err(PolicyError::new(vec![PolicyProblem::new(
                    "validate.schema",
                    format!(
                        "schema {} was not read: load the policy with Policy::load",
                        path.display()
                    ),
                )]));
            }
            (None, None) => None,
        };
        Ok(Self {
            config: Arc::new(Config {
                schema,
                expose_details: policy.expose_details,
            }),
        })
    }

    /// Whether 400 bodies list `[{pointer, keyword}]` (never values). Off by default.
    ///
    /// ```
    /// let layer = guard_core::validate::ValidateLayer::json_only().expose_details(true);
    /// # let _ = layer;
    /// ```
    pub fn expose_details(self, yes: bool) -> Self {
        let config = Config {
            schema: self.config.schema.clone(),
            expose_details: yes,
        };
        Self {
            config: Arc::new(config),
        }
    }
}

impl<S> Layer<S> for ValidateLayer {
    type Service = Validate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Validate {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service produced by [`ValidateLayer`].
#[derive(Debug, Clone)]
pub struct Validate<S> {
    inner: S,
    config: Arc<Config>,
}

crate::macros::inner_service_accessors!(Validate);

/// The response future of [`Validate`].
pub type ResponseFuture<F> = CheckFuture<F>;

impl<S, E> Service<GuardRequest> for Validate<S>
where
    S: Service<GuardRequest, Response = GuardResponse, Error = E>,
{
    type Response = GuardResponse;
    type Error = E;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: GuardRequest) -> Self::Future {
        let value = match parse_strict(req.body()) {
            Ok(v) => v,
            Err(e) => {
                let reason = match e {
                    JsonError::DuplicateKey => "duplicate key",
                    JsonError::NumberOutOfRange => "number out of range",
                    JsonError::Syntax { .. } => "syntax",
                };
                return CheckFuture::rejected(
                    Rejection::new(RejectionKind::MalformedJson)
                        .with_reason(reason)
                        .into_response(),
                );
            }
        };
        if let Some(schema) = &self.config.schema
            && !schema.is_valid(&value)
        {
            let details: Vec<ValidationDetail> = schema
                .iter_errors(&value)
                .take(MAX_DETAILS)
                .map(|e| ValidationDetail {
                    pointer: e.instance_path().as_str().to_owned(),
                    keyword: e.kind().keyword().to_owned(),
                })
                .collect();
            let reason = details
                .first()
                .map(|d| format!("{} at {}", d.keyword, d.pointer))
                .unwrap_or_else(|| "schema".into());
            return CheckFuture::rejected(
                Rejection::new(RejectionKind::SchemaViolation)
                    .with_details(details)
                    .with_reason(reason)
                    .render(self.config.expose_details),
            );
        }
        req.extensions_mut().insert(JsonBody(Arc::new(value)));
        CheckFuture::inner(self.inner.call(req))
    }
}
