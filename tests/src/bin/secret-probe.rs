//! Reads one secret through `SecretsManagerSource::from_env()` (the SDK's standard configuration:
//! `AWS_ENDPOINT_URL`, `AWS_REGION`, credentials from the environment) and prints a fingerprint
//! of it — the first 8 hex characters of its SHA-256, never the value. Used by the moto tests to
//! show that the endpoint override is honoured.

use guard_aws::secrets::SecretsManagerSource;
use guard_secrets::SecretStore;
use sha2::{Digest, Sha256};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let Some(name) = std::env::args().nth(1) else {
        eprintln!("usage: secret-probe <secret-name>");
        std::process::exit(2);
    };
    let store = SecretStore::new(SecretsManagerSource::from_env().await);
    match store.get(&name).await {
        Ok(v) => println!("{}", &hex::encode(Sha256::digest(v.expose_bytes()))[..8]),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
