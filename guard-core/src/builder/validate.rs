//! `[validate]` → the [`ValidateLayer`].

use crate::policy::{PolicyError, PolicyProblem, ValidatePolicy};
use crate::validate::{CompiledSchema, ValidateLayer};

/// The layer for the `[validate]` section, with the schema compiled when the policy was loaded
/// (as [`Policy::load`](crate::Policy::load) and
/// [`Policy::from_toml_str_with_schema`](crate::Policy::from_toml_str_with_schema) do).
pub(super) fn validate_layer(policy: &ValidatePolicy) -> Result<ValidateLayer, PolicyError> {
    let problem = |message: String| PolicyError::new(vec![PolicyProblem::new("validate.schema", message)]);
    let schema = match (&policy.schema, &policy.schema_document, &policy.compiled) {
        (_, _, Some(compiled)) => Some(compiled.clone()),
        // A document the policy's check did not compile (a policy assembled in this crate).
        (_, Some(doc), None) => Some(CompiledSchema::new(doc).map_err(|e| problem(e.to_string()))?),
        (Some(path), None, None) => {
            return Err(problem(format!(
                "schema {} was not read: load the policy with Policy::load",
                path.display()
            )));
        }
        (None, None, None) => None,
    };
    Ok(ValidateLayer::from_compiled(schema, policy.expose_details))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_without_a_schema_parses_json_only() {
        assert!(validate_layer(&ValidatePolicy::default()).is_ok());
    }

    #[test]
    fn a_schema_file_that_was_not_read_is_a_problem() {
        let policy = crate::Policy::from_toml_str("[validate]\nschema = \"order.schema.json\"")
            .unwrap_or_else(|e| panic!("{e}"));
        let err = validate_layer(policy.validate.as_ref().unwrap()).unwrap_err();
        assert_eq!(err.problems()[0].path, "validate.schema");
    }
}
