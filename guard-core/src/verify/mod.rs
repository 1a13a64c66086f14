//! Source verification: [`VerifyLayer`] runs a [`Verifier`] before the handler. Zero trust —
//! nothing passes unless a verifier accepts it.
//!
//! | verifier | accepts | refuses with |
//! |---|---|---|
//! | [`CidrVerifier`] | platform-observed address ([`Peer`](crate::request::Peer), or [`TrustedProxies`](crate::request::TrustedProxies) over `X-Forwarded-For`) in an allow-list | 403 `forbidden_address` |
//! | `[verify.sources]` | a message from an ARN / topic / subscription listed for its trigger kind (`*` = one segment) | 403 `forbidden_source` |
//! | [`HmacVerifier`] | GitHub / Stripe-style / Slack / generic HMAC-SHA256 over the raw body, keys from the [`SecretStore`](guard_secrets::SecretStore) | 401 `missing_credentials` / `bad_signature` / `stale` / `replayed` |
//! | [`JwtVerifier`] | OIDC bearer token, keys from a [`JwksCache`] (a JWKS URL, or the issuer's OpenID configuration: [`JwksCache::discover`]) | 401 `missing_credentials` / `bad_token`, 403 `forbidden`, 503 `unavailable` |
//! | [`PlatformIdentityVerifier`] (AWS API Gateway authorizers, ...), [`EasyAuthVerifier`], [`JwtVerifier::google_push`] | identities the platform verified | 401 / 403 |
//! | closures `Fn(&GuardRequest) -> Result<Principal, Rejection>` | anything you decide | your rejection |
//!
//! Combine them with [`VerifyLayer::any`] and [`VerifyLayer::all`]. A verifier that could not decide because a dependency is down answers 503
//! (`guard.verify.unavailable`, `guard.secrets.unavailable`), so messages are redelivered.
//!
//! On success the layer inserts the [`Principal`](crate::request::Principal) into the request
//! extensions (for the rate limiter and the handler) and hands its kind and subject to the audit
//! layer, which sits outside, through a private per-request slot that layer put on the request
//! (nothing goes on the response, so a handler cannot make the audit record another principal).
//! On failure the handler is not called and no principal is recorded.
//!
//! ## From the policy
//!
//! The builder ([`Guard::from_policy`](crate::Guard::from_policy)) makes the layer from
//! `[verify]`, and [`Guard::verify_layer`](crate::Guard::verify_layer) hands it out. The orders example
//! (`examples/orders`) — callers from `203.0.113.0/24` or `198.51.100.0/24`, **or** signed with
//! `X-Guard-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">` using the secret
//! `orders-webhook-hmac`, at most 300 s old, each signature accepted once (a signature presented
//! from an allowed address is checked and used up too); messages only from the configured queue /
//! subscription of their own trigger kind — is:
//!
//! ```toml
//! [verify]
//! mode = "any"
//!
//! [verify.sources]                                      # by trigger kind
//! sqs = ["arn:aws:sqs:us-east-1:123456789012:orders"]   # AWS SQS
//! azure-queue = ["orders"]                              # Azure Storage queue
//! pubsub = ["projects/shop-prod/subscriptions/orders-push"]  # GCP Pub/Sub push
//!
//! [verify.cidr]
//! allow = ["203.0.113.0/24", "198.51.100.0/24"]
//!
//! [verify.hmac]
//! preset = "stripe"
//! header = "X-Guard-Signature"
//! secret = "orders-webhook-hmac"
//! tolerance_secs = 300
//! replay = true
//!
//! [verify.gcp_push]                                     # Pub/Sub push must carry Google's token
//! audience = "https://orders.example.com/pubsub"
//! service_account = "orders-push@shop-prod.iam.gserviceaccount.com"
//! ```
//!
//! The request checks of that policy, built by hand:
//!
//! ```
//! use bytes::Bytes;
//! use guard_core::request::Peer;
//! use guard_secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
//! use guard_core::{GuardBuilder, GuardDeps};
//! use tower::{Layer, Service, ServiceExt};
//! # let policy = guard_core::Policy::from_toml_str(r#"
//! #     [verify]
//! #     mode = "any"
//! #     [verify.sources]
//! #     sqs = ["arn:aws:sqs:us-east-1:123456789012:orders"]
//! #     azure-queue = ["orders"]
//! #     pubsub = ["projects/shop-prod/subscriptions/orders-push"]
//! #     [verify.cidr]
//! #     allow = ["203.0.113.0/24", "198.51.100.0/24"]
//! #     [verify.hmac]
//! #     preset = "stripe"
//! #     header = "X-Guard-Signature"
//! #     secret = "orders-webhook-hmac"
//! #     tolerance_secs = 300
//! #     replay = true
//! #     [verify.gcp_push]
//! #     audience = "https://orders.example.com/pubsub"
//! #     service_account = "orders-push@shop-prod.iam.gserviceaccount.com"
//! # "#).unwrap();
//! let store = SecretStore::new(|name: &str, v: SecretVersion| match (name, v) {
//!     ("orders-webhook-hmac", SecretVersion::Current) => Ok(SecretValue::from("k")),
//!     _ => Err(SecretsError::not_found(name)),
//! });
//! let guard = GuardBuilder::from_policy_with(&policy, GuardDeps::with_secrets(store)).unwrap().build();
//! let layer = guard.verify_layer().unwrap().clone();
//! let handler = tower::service_fn(|_req: http::Request<Bytes>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(Bytes::from_static(b"ok")))
//! });
//! let mut svc = layer.layer(handler);
//!
//! let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! rt.block_on(async {
//!     let mut req = http::Request::new(Bytes::from_static(b"{}"));
//!     req.extensions_mut().insert(Peer::new("203.0.113.7".parse().unwrap()));
//!     let resp = svc.ready().await.unwrap().call(req).await.unwrap();
//!     assert_eq!(resp.status(), 200);
//!
//!     let mut req = http::Request::new(Bytes::from_static(b"{}"));
//!     req.extensions_mut().insert(Peer::new("192.0.2.1".parse().unwrap()));
//!     let resp = svc.ready().await.unwrap().call(req).await.unwrap();
//!     assert_eq!(resp.status(), 403); // not allow-listed and not signed
//! });
//! ```

// `Rejection` (≈100 bytes) is the crate's refusal type and the error side
// of the public `Verifier` contract; the Ok side (`Principal`) is as large. Boxing it would only
// move the cost to the refusal path and complicate every verifier.
#![allow(clippy::result_large_err)]

mod cidr;
mod commit;
mod hmac;
mod jwks;
mod jwt;
mod layer;
mod messages;
#[cfg(feature = "jwks-http")]
mod oidc;
mod platform;
mod replay;
mod source;

pub use cidr::CidrVerifier;
#[allow(unused_imports)] // only the Guard builder (every layer on) places it
pub(crate) use commit::ReplayCommitLayer;
pub(crate) use hmac::header_name;
#[cfg(feature = "outbound")]
pub(crate) use hmac::signature_headers as hmac_signature_headers;
pub use hmac::{HmacScheme, HmacVerifier, HmacVerifierBuilder, SignatureEncoding};
pub use jwks::{JwksCache, JwksFetcher};
pub(crate) use jwt::parse_algorithm;
pub use jwt::{ClaimPredicate, JwtVerifier, JwtVerifierBuilder};
pub(crate) use layer::VerifyFuture;
pub(crate) use layer::{BoxVerifier, VerifierExt, all, any, by_trigger};
pub use layer::{Verifier, VerifyLayer};
pub(crate) use messages::MessageChecks;
#[cfg(feature = "jwks-http")]
pub(crate) use oidc::{IssuerRouter, check_issuer};
pub use platform::{EasyAuthVerifier, PlatformIdentity, PlatformIdentityVerifier};
pub use replay::MemoryReplayStore;
pub(crate) use source::{SourcePattern, SourceVerifier};
