//! Integration tests for `guard_core::verify`: every denial asserts the status, the stable code
//! and that the handler was not called (see `support::Stack::denied`).
#![cfg(all(feature = "verify", feature = "jwks-http"))]

mod network;
mod orders;
mod platform;
mod policy;
mod signatures;
mod support;
mod tokens;
mod wycheproof_ecdsa;
