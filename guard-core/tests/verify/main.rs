//! Integration tests for `guard_core::verify`: every denial asserts the status, the stable code
//! that the handler was not called, and that the audit layer (outermost, as in the real stack)
//! wrote exactly one security event with that code (see `support::Stack::denied` / `allowed`).
#![cfg(all(feature = "verify", feature = "jwks-http", feature = "audit"))]

#[cfg(all(
    feature = "authz",
    feature = "ingress",
    feature = "validate",
    feature = "rate-limit",
    feature = "secrets"
))]
mod guard_stack;
mod network;
mod orders;
mod platform;
mod policy;
mod signatures;
mod support;
mod tokens;
mod wycheproof_ecdsa;
