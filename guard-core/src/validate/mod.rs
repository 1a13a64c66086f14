//! Input validation: strict JSON parsing (duplicate keys and out-of-range numbers refused), JSON
//! Schema ([`ValidateLayer`], `jsonschema` compiled once, linear-time `regex` engine, formats
//! asserted, no remote `$ref`), and typed validation ([`TypedValidateLayer`] → [`Validated<T>`]).
//!
//! The accepted body is left in the request extensions as [`JsonBody`], so the handler reads
//! exactly the bytes that were validated. For schemas within a common keyword subset the layer
//! validates in a single pass over the bytes, without building a `serde_json::Value` (see
//! [`ValidateLayer`]); the handler builds one only if it asks ([`JsonBody::value`]).

mod body;
mod compile;
mod json;
mod leaf;
mod plan;
mod schema;
mod typed;

pub use body::JsonBody;
pub use json::JsonError;
pub(crate) use schema::CompiledSchema;
pub use schema::ValidateLayer;
pub use typed::{TypedValidateLayer, Validated};
