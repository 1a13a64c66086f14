//! Input validation: strict JSON parsing (duplicate keys and out-of-range numbers refused), JSON
//! Schema ([`ValidateLayer`], `jsonschema` compiled once, linear-time `regex` engine, formats
//! asserted, no remote `$ref`), and typed validation ([`TypedValidateLayer`] → [`Validated<T>`]).
//!
//! The parsed body is left in the request extensions as [`JsonBody`], so the handler never parses
//! twice and sees exactly the value that was validated.

mod json;
mod schema;
mod typed;

pub use json::{JsonError, parse_strict};
pub use schema::{JsonBody, ResponseFuture, SchemaError, Validate, ValidateLayer, compile_schema};
pub use typed::{TypedValidate, TypedValidateLayer, Validated};
