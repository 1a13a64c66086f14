//! # Guard secrets
//!
//! Where Guard's secrets come from and how they are kept: [`SecretSource`] providers, the shared
//! [`SecretStore`] cache in front of them, [`SecretValue`] (zeroized on drop, never printed) and
//! the injected [`WallClock`].
//!
//! The store is shared by the whole stack: guard-core's HMAC verifier asks it for keys by name,
//! its `SecretsLayer` hands named secrets to the handler (`guard_core::secrets`).
//!
//! | source | where the value comes from |
//! |---|---|
//! | [`EnvSource`] (`provider = "env"` in a Guard policy's `[secrets]`) | `GUARD_SECRET_<NAME>` environment variables (local runs, tests) |
//! | [`FileSource`] (`provider = "file"`) | one file per secret in a mounted directory (Cloud Run, Kubernetes) |
//! | `guard_aws::secrets::SecretsManagerSource` | AWS Secrets Manager |
//! | `guard_azure::keyvault::KeyVaultSource` | Azure Key Vault |
//! | `guard_gcp::secrets::SecretManagerSource` | Google Secret Manager |
//! | any closure `Fn(&str, SecretVersion) -> Result<SecretValue, SecretsError>` | anything |
//!
//! ```
//! use std::time::Duration;
//! use guard_secrets::{SecretStore, SecretValue, SecretVersion, SecretsError, WallClock};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let source = |name: &str, _: SecretVersion| -> Result<SecretValue, SecretsError> {
//!     match name {
//!         "api-key" => Ok(SecretValue::from("k1")),
//!         _ => Err(SecretsError::not_found(name)),
//!     }
//! };
//! let clock = WallClock::fake_at_unix(1_700_000_000);
//! let store = SecretStore::builder(source)
//!     .ttl(Duration::from_secs(60))
//!     .clock(clock.clone())
//!     .build()
//!     .unwrap();
//! assert_eq!(store.get("api-key").await.unwrap().expose_str(), Some("k1"));
//! clock.advance(Duration::from_secs(10));
//! store.get("api-key").await.unwrap(); // still fresh: served from the cache
//! assert_eq!(store.stats().fetches, 1);
//! assert!(store.get("missing").await.is_err()); // fail closed
//! # });
//! ```
//!
//! ## Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `store` | yes | [`SecretStore`], [`SecretStoreBuilder`], [`SecretStoreStats`], [`SecretVersions`] (Tokio) |
//! | `http` | no | `SecretsError::from_http`: a failed exchange of Guard's outbound client (`guard-http`) as a transient or permanent error |
//!
//! Without `store` the crate has the sources, values, errors and the clock, and no Tokio.

mod clock;
mod env;
mod error;
#[cfg(feature = "store")]
mod field;
mod file;
#[cfg(feature = "store")]
mod slot;
mod source;
#[cfg(feature = "store")]
mod store;
#[cfg(feature = "store")]
mod store_builder;
#[cfg(feature = "store")]
mod store_stats;
mod value;

pub use clock::WallClock;
pub use env::EnvSource;
pub use error::{SecretsError, SettingsError};
pub use file::FileSource;
pub use source::{SecretSource, SecretVersion};
#[cfg(feature = "store")]
pub use store::SecretStore;
#[cfg(feature = "store")]
pub use store_builder::SecretStoreBuilder;
#[cfg(feature = "store")]
pub use store_stats::{SecretStoreStats, SecretVersions};
pub use value::SecretValue;

/// The boxed future [`SecretSource::fetch`] returns: `futures_util::future::BoxFuture`.
pub(crate) type FetchFuture<'a> =
    futures_util::future::BoxFuture<'a, Result<SecretValue, SecretsError>>;
