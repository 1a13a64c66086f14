//! Secrets: [`SecretSource`] providers, the shared [`SecretStore`] cache, and [`SecretValue`].
//!
//! The store is shared by the whole stack: the HMAC verifier asks it for keys by name, the secrets
//! layer hands named secrets to the handler.

mod error;
mod source;
mod store;
mod value;

pub use error::SecretsError;
pub use source::{FetchFuture, SecretSource, SecretVersion};
pub use store::{SecretStore, SecretVersions};
pub use value::SecretValue;
