//! Compiling a JSON Schema: one set of options for the `jsonschema` validator and for the
//! single-pass plan's scalar checks.

use std::sync::Arc;

use jsonschema::json::Json;
use jsonschema::{PatternOptions, Retrieve, ValidationOptions, Validator};
use serde_json::Value;

use crate::ConfigError;

/// Size limit for one compiled `pattern` (bounds memory; the engine is linear-time).
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// Compiles `schema` once: linear-time `regex` pattern engine (with a size limit), `format`
/// asserted, and no remote or file `$ref` resolution — a schema that needs a fetch fails here.
pub(crate) fn compile_schema(schema: &Value) -> Result<Validator, ConfigError> {
    options_for()
        .build(schema)
        .map_err(|e| ConfigError::Schema(e.to_string()))
}

/// The options of [`compile_schema`], for any JSON representation (the single-pass plan compiles
/// its scalar checks with these too, so both paths agree on patterns and formats).
pub(crate) fn options_for<F: Json>() -> ValidationOptions<'static, Arc<dyn Retrieve>, F> {
    jsonschema::options_for::<F>()
        .with_pattern_options(PatternOptions::regex().size_limit(PATTERN_SIZE_LIMIT))
        .should_validate_formats(true)
}

#[cfg(test)]
mod tests {
    use super::compile_schema;

    #[test]
    fn local_schemas_compile_and_remote_refs_do_not() {
        assert!(compile_schema(&serde_json::json!({"type": "object"})).is_ok());
        let remote = serde_json::json!({"$ref": "http://example.com/s.json"});
        assert!(compile_schema(&remote).is_err());
    }
}
