//! Amazon SNS: the message envelope ([`SnsMessage`]) and its signature ([`SnsVerifier`]).
//!
//! SNS signs every message it delivers — to HTTP(S) subscriptions, to Lambda, and inside SQS
//! bodies when raw delivery is off — with RSA over a fixed "string to sign": `SignatureVersion`
//! `1` is RSA-SHA1, `2` RSA-SHA256 (PKCS#1 v1.5). The certificate is fetched from the URL in the
//! message, so that URL is checked strictly ([`CertUrl`]) before any fetch; fetched certificates
//! are cached per URL. Lambda payloads are otherwise unsigned: verifying SNS records delivered to
//! Lambda proves they came from SNS even if someone can invoke the function directly.

mod cert_url;
mod fetch;
mod message;
mod verify;

pub use cert_url::CertUrl;
pub use fetch::{CertFetchError, CertFetcher, CertFuture};
#[cfg(feature = "https-fetch")]
pub use fetch::{HttpsCertFetcher, MAX_CERT_BYTES};
pub use message::SnsMessage;
pub use verify::{SnsConfigError, SnsVerifier, SnsVerifierBuilder};
