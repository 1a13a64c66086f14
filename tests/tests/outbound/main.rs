//! The one outbound HTTP client and everything that fetches through it, over real HTTP against
//! scripted local servers: redirects are never followed, responses are capped, every exchange
//! ends within its budget, plain HTTP is refused by its own rule; the JWKS endpoint and Secrets
//! Manager behind a stalled server end within their budget and fail closed; Secrets Manager's
//! documented errors map to permanent or transient.

mod client;
mod jwks;
mod secrets_manager;
