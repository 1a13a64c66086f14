//! placeholder
#[cfg(feature = "secrets-manager")]
pub mod secrets;
