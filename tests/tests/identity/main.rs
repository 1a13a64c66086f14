//! Identity (issue 20): OpenID Connect discovery against local servers and a real OpenID Provider
//! (`oidc-provider`, started by the test over https), and the same authorization verdicts on
//! every principal kind.

mod authz;
mod discovery;
mod provider;
mod support;
