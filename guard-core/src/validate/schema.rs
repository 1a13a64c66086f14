//! [`ValidateLayer`]: strict JSON parse + JSON Schema, on the exact bytes the handler will see.

use std::sync::Arc;

use jsonschema::Validator;
use serde_json::Value;
use tower_layer::Layer;

use super::body::JsonBody;
use super::compile::compile_schema;
use super::json::{JsonError, parse_strict};
use super::plan::Plan;
use crate::ConfigError;
use crate::future::CheckFuture;
use crate::request::{GuardRequest, GuardResponse};
use crate::{Rejection, RejectionKind, ValidationDetail};

/// Most validation details reported in one rejection.
const MAX_DETAILS: usize = 16;
#[derive(Debug, Clone)]
struct Config {
    schema: Option<Validator>,
    /// The single-pass check: [`Plan::any`] without a schema, `None` for a schema outside the
    /// supported subset.
    plan: Option<Arc<Plan>>,
    /// Whether to try `plan` first (on unless turned off with [`ValidateLayer::single_pass`]).
    single_pass: bool,
    expose_details: bool,
}

impl Config {
    fn new(schema: Option<CompiledSchema>, expose_details: bool) -> Self {
        let (schema, plan) = match schema {
            Some(compiled) => (Some(compiled.validator), compiled.plan),
            None => (None, Some(Arc::new(Plan::any()))),
        };
        Config {
            schema,
            plan,
            single_pass: true,
            expose_details,
        }
    }
}

/// A schema compiled once: the `jsonschema` validator and, for a schema within the single-pass
/// subset, the plan. The policy compiles its schema when it is loaded and the builder hands this
/// to the layer.
#[derive(Debug, Clone)]
pub(crate) struct CompiledSchema {
    validator: Validator,
    plan: Option<Arc<Plan>>,
}

impl CompiledSchema {
    /// Compiles `schema` (see [`compile_schema`]) and its single-pass plan.
    pub(crate) fn new(schema: &Value) -> Result<Self, ConfigError> {
        Ok(Self {
            validator: compile_schema(schema)?,
            plan: Plan::compile(schema).map(Arc::new),
        })
    }
}

/// Compiled schemas compare equal: a [`Policy`](crate::Policy) compares its schema document.
impl PartialEq for CompiledSchema {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Parses the body strictly and validates it against a JSON Schema. Cheap to clone.
///
/// The handler finds the accepted body in the request extensions as a [`JsonBody`].
///
/// **Single pass.** When the schema only uses the keywords listed below, the layer compiles it
/// (once, here) into a plan that checks the body while `serde_json` tokenizes it — duplicate
/// keys, out-of-range numbers and trailing data refused as by [`JsonBody::parse_value`] — without
/// building a [`Value`] or allocating on the accept path. The plan only ever *accepts*: a body it
/// is not sure of goes through the full path (`parse_strict`, then `jsonschema`), which decides
/// and words every rejection. Scalar keywords are checked by `jsonschema` itself
/// (same options, same draft), so patterns, formats and number comparisons agree by construction.
///
/// Supported: `type`, `properties`, `required`, `additionalProperties` (boolean or schema),
/// `minProperties`, `maxProperties`, `items` (one schema), `minItems`, `maxItems`, `enum`,
/// `const`, `minLength`, `maxLength`, `pattern`, `format`, `minimum`, `maximum`,
/// `exclusiveMinimum`, `exclusiveMaximum`, boolean sub-schemas, and the annotations `$schema`
/// (root), `$id`, `title`, `description`, `$comment`, `examples`, `default`, `deprecated`,
/// `readOnly`, `writeOnly`. Any other keyword (`$ref`, `allOf`, `anyOf`, `oneOf`, `not`, `if`,
/// `patternProperties`, `prefixItems`, tuple `items`, `uniqueItems`, `contains`, …), a custom
/// `$schema`, or more than 256 declared keys in one object keeps the full path for that layer
/// ([`ValidateLayer::uses_single_pass`] tells which).
///
/// ```
/// use bytes::Bytes;
/// use guard_core::validate::{JsonBody, ValidateLayer};
/// use tower::{Layer, Service, ServiceExt, service_fn};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let schema = serde_json::json!({"type": "object", "required": ["id"]});
/// let layer = ValidateLayer::with_schema(&schema).unwrap();
/// assert!(layer.uses_single_pass());
/// let mut svc = layer.layer(service_fn(|req: http::Request<Bytes>| async move {
///     let body = req.extensions().get::<JsonBody>().unwrap();
///     let id = body.value().unwrap()["id"].to_string();
///     Ok::<_, std::convert::Infallible>(http::Response::new(Bytes::from(id)))
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
            config: Arc::new(Config::new(None, false)),
        }
    }

    /// Strict JSON parsing and the given schema, compiled now.
    ///
    /// ```
    /// let layer = guard_core::validate::ValidateLayer::with_schema(&serde_json::json!({}));
    /// assert!(layer.is_ok());
    /// ```
    pub fn with_schema(schema: &Value) -> Result<Self, ConfigError> {
        Ok(Self::from_compiled(
            Some(CompiledSchema::new(schema)?),
            false,
        ))
    }

    /// The layer for a schema compiled when the policy was loaded (`None`: JSON parsing only).
    pub(crate) fn from_compiled(schema: Option<CompiledSchema>, expose_details: bool) -> Self {
        Self {
            config: Arc::new(Config::new(schema, expose_details)),
        }
    }

    /// Whether 400 bodies list `[{pointer, keyword}]` (never values). Off by default.
    ///
    /// ```
    /// let layer = guard_core::validate::ValidateLayer::json_only().expose_details(true);
    /// # let _ = layer;
    /// ```
    pub fn expose_details(self, yes: bool) -> Self {
        let mut config = (*self.config).clone();
        config.expose_details = yes;
        Self {
            config: Arc::new(config),
        }
    }

    /// Whether to try the single-pass check before the full path (on by default). Off, every
    /// body is parsed into a [`Value`] and checked by `jsonschema`; the verdicts are the same
    /// either way.
    ///
    /// ```
    /// let layer = guard_core::validate::ValidateLayer::json_only().single_pass(false);
    /// assert!(!layer.uses_single_pass());
    /// ```
    pub fn single_pass(self, enabled: bool) -> Self {
        let mut config = (*self.config).clone();
        config.single_pass = enabled;
        Self {
            config: Arc::new(config),
        }
    }

    /// Diagnostic: whether accepted bodies are checked in a single pass, i.e. the schema (if
    /// any) stays inside the supported keywords and [`single_pass`](Self::single_pass) is on.
    ///
    /// ```
    /// use guard_core::validate::ValidateLayer;
    /// let simple = serde_json::json!({"type": "object", "required": ["id"]});
    /// assert!(ValidateLayer::with_schema(&simple).unwrap().uses_single_pass());
    /// let composed = serde_json::json!({"anyOf": [{"type": "string"}, {"type": "integer"}]});
    /// assert!(!ValidateLayer::with_schema(&composed).unwrap().uses_single_pass());
    /// ```
    pub fn uses_single_pass(&self) -> bool {
        self.config.single_pass && self.config.plan.is_some()
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

crate::macros::opaque_future! {
    /// The response future of [`Validate`] and [`TypedValidate`](super::TypedValidate).
    pub type ResponseFuture<F> = CheckFuture<F>;
}

crate::macros::forwarding_service! {
    impl for Validate<S> {
        type Future = ResponseFuture<S::Future>;

        fn call(&mut self, mut req: GuardRequest) -> Self::Future {
            let config = &*self.config;
            let body = match &config.plan {
                Some(plan) if config.single_pass && plan.accepts(req.body()) => {
                    JsonBody::checked(req.body().clone())
                }
                _ => match full_path(config, req.body()) {
                    Ok(value) => JsonBody::with_value(req.body().clone(), value),
                    Err(rejection) => return ResponseFuture::new(CheckFuture::rejected(*rejection)),
                },
            };
            req.extensions_mut().insert(body);
            ResponseFuture::new(CheckFuture::inner(self.inner.call(req)))
        }
    }
}

/// Parses into a [`Value`] and validates it with `jsonschema`: the verdict for every body the
/// single pass did not accept, and the wording of every rejection (boxed: the rejection path
/// allocates anyway).
fn full_path(config: &Config, body: &[u8]) -> Result<Value, Box<GuardResponse>> {
    let value = match parse_strict(body) {
        Ok(v) => v,
        Err(e) => {
            let reason = match e {
                JsonError::DuplicateKey => "duplicate key",
                JsonError::NumberOutOfRange => "number out of range",
                JsonError::Syntax { .. } | JsonError::Mismatch { .. } => "syntax",
            };
            return Err(Box::new(
                Rejection::new(RejectionKind::MalformedJson)
                    .with_reason(reason)
                    .into_response(),
            ));
        }
    };
    if let Some(schema) = &config.schema
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
        return Err(Box::new(
            Rejection::new(RejectionKind::SchemaViolation)
                .with_details(details)
                .with_reason(reason)
                .render(config.expose_details),
        ));
    }
    Ok(value)
}
