//! # guard-gcp
//!
//! The Google Cloud adapter for Guard (HTTP server for Cloud Run / Functions gen2, Pub/Sub push
//! envelope, CloudEvents, push OIDC identity, Secret Manager source). Not built yet: this crate
//! reserves the name and the place in the workspace; its push-identity verifier already exists in
//! `guard-core` (`guard_core::verify::JwtVerifier::google_push`).
