//! `[validate]` → the [`ValidateLayer`].

use crate::policy::{PolicyError, PolicyProblem, ValidatePolicy};
use crate::validate::{ValidateLayer, compile_schema};

impl ValidateLayer {
    /// Builds the layer from the `[validate]` section (the schema document must have been read, as
    /// [`Policy::load`](crate::Policy::load) does).
    pub(crate) fn from_policy(policy: &ValidatePolicy) -> Result<Self, PolicyError> {
        let schema = match (&policy.schema, &policy.schema_document) {
            (_, Some(doc)) => Some((
                doc,
                compile_schema(doc).map_err(|e| {
                    PolicyError::new(vec![PolicyProblem::new("validate.schema", e.to_string())])
                })?,
            )),
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
        Ok(Self::from_compiled(schema, policy.expose_details))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_without_a_schema_parses_json_only() {
        assert!(ValidateLayer::from_policy(&ValidatePolicy::default()).is_ok());
    }
}
