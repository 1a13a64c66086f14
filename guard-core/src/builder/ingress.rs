//! `[ingress]` → the [`IngressLayer`].

use http::Method;

use crate::ingress::IngressLayer;
use crate::policy::{IngressPolicy, PolicyError, PolicyProblem};

impl IngressLayer {
    /// Builds the layer from the `[ingress]` policy section (checked when the policy was loaded;
    /// a method that does not convert is still reported rather than dropped).
    pub(crate) fn from_policy(policy: &IngressPolicy) -> Result<Self, PolicyError> {
        let mut problems = Vec::new();
        let mut methods = Vec::new();
        for (i, m) in policy.methods.iter().enumerate() {
            match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                Ok(m) => methods.push(m),
                Err(_) => problems.push(PolicyProblem::new(
                    format!("ingress.methods[{i}]"),
                    "not an HTTP method",
                )),
            }
        }
        if !problems.is_empty() {
            return Err(PolicyError::new(problems));
        }
        Ok(Self::new()
            .max_body_bytes(policy.max_body_bytes)
            .max_depth(policy.max_depth)
            .content_types(&policy.content_types)
            .methods(methods))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Policy;

    #[test]
    fn the_layer_defaults_match_the_policy_defaults() {
        let from_policy = IngressLayer::from_policy(&IngressPolicy::default()).unwrap();
        assert_eq!(
            format!("{from_policy:?}"),
            format!("{:?}", IngressLayer::new())
        );
    }

    #[test]
    fn a_section_with_methods_makes_a_layer() {
        let p = Policy::from_toml_str("[ingress]\nmethods = [\"POST\"]").unwrap();
        assert!(IngressLayer::from_policy(&p.ingress).is_ok());
    }
}
