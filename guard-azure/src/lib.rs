//! # guard-azure
//!
//! The Azure Functions adapter for Guard (custom-handler server, Easy Auth principal, Event Grid
//! handshake, Key Vault secret source). Not built yet: this crate reserves the name and the place
//! in the workspace; the layers it will feed live in `guard-core` and already run on Azure's
//! request model (`http::Request<Bytes>` with `Trigger`, `Peer` and `Invocation` extensions).
