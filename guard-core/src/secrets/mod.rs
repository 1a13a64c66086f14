//! Secrets: [`SecretSource`] providers, the shared [`SecretStore`] cache, [`SecretValue`], and the
//! [`SecretsLayer`] that hands named secrets to the handler.
//!
//! The store is shared by the whole stack: the HMAC verifier asks it for keys by name, the secrets
//! layer hands named secrets to the handler ([`SecretHandles`] request extension).
//!
//! | source | where the value comes from |
//! |---|---|
//! | `provider = "env"` in `[secrets]` | `GUARD_SECRET_<NAME>` environment variables (local runs, tests) |
//! | `provider = "file"` in `[secrets]` | one file per secret in a mounted directory (Cloud Run, Kubernetes) |
//! | `guard_aws::secrets::SecretsManagerSource` | AWS Secrets Manager |
//! | any closure `Fn(&str, SecretVersion) -> Result<SecretValue, SecretsError>` | anything |
//!
//! `SecretStore`, `SecretsLayer` and their types need the `secrets` feature (they use Tokio).

mod env;
mod error;
#[cfg(feature = "secrets")]
mod field;
mod file;
#[cfg(feature = "secrets")]
mod layer;
#[cfg(feature = "secrets")]
mod slot;
mod source;
#[cfg(feature = "secrets")]
mod store;
#[cfg(feature = "secrets")]
mod store_builder;
#[cfg(feature = "secrets")]
mod store_stats;
mod value;

#[allow(unused_imports)] // the builder's `provider = "env"`
pub(crate) use env::EnvSource;
pub use error::SecretsError;
#[allow(unused_imports)] // the builder's `provider = "file"`
pub(crate) use file::FileSource;
#[cfg(feature = "secrets")]
pub use layer::{SecretHandles, SecretsLayer};
pub(crate) use source::FetchFuture;
pub use source::{SecretSource, SecretVersion};
#[cfg(feature = "secrets")]
pub use store::SecretStore;
#[cfg(feature = "secrets")]
pub use store_builder::SecretStoreBuilder;
#[cfg(feature = "secrets")]
pub use store_stats::{SecretStoreStats, SecretVersions};
pub use value::SecretValue;
