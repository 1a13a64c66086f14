//! Secrets for the handler: the [`SecretsLayer`] and its [`SecretHandles`] request extension.
//!
//! The secret store itself, its sources and values live in the `guard-secrets` crate
//! (`guard_secrets::{SecretStore, SecretSource, SecretValue, SecretsError, ...}`). One store is
//! shared by the whole stack: the HMAC verifier asks it for keys by name, the secrets layer hands
//! named secrets to the handler.
//!
//! | source | where the value comes from |
//! |---|---|
//! | `provider = "env"` in `[secrets]` | `GUARD_SECRET_<NAME>` environment variables (`guard_secrets::EnvSource`; local runs, tests) |
//! | `provider = "file"` in `[secrets]` | one file per secret in a mounted directory (`guard_secrets::FileSource`; Cloud Run, Kubernetes) |
//! | `guard_aws::secrets::SecretsManagerSource` | AWS Secrets Manager |
//! | any closure `Fn(&str, SecretVersion) -> Result<SecretValue, SecretsError>` | anything |

mod layer;

pub use layer::{SecretHandles, SecretsLayer};
