//! Any bearer token against a verifier with fixed keys: no panic, never accepted (no private key
//! is in the input), and no fetch but the configured one.
#![no_main]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use guard_core::verify::{JwksCache, JwtVerifier, Verifier};
use libfuzzer_sys::fuzz_target;

static FETCHES: AtomicU64 = AtomicU64::new(0);
const JWKS: &[u8] = include_bytes!("../../guard-core/tests/data/verify/jwks.json");

fn verifier() -> &'static (tokio::runtime::Runtime, JwtVerifier) {
    static V: OnceLock<(tokio::runtime::Runtime, JwtVerifier)> = OnceLock::new();
    V.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let jwks = JwksCache::new(|| {
            FETCHES.fetch_add(1, Ordering::Relaxed);
            Ok(JWKS.to_vec())
        });
        let v = JwtVerifier::builder(jwks)
            .issuers(["https://issuer.example".to_string()])
            .audiences(["orders".to_string()])
            .build()
            .unwrap();
        (rt, v)
    })
}

fuzz_target!(|data: &[u8]| {
    let (rt, verifier) = verifier();
    let mut value = b"Bearer ".to_vec();
    value.extend_from_slice(data);
    let Ok(value) = http::HeaderValue::from_bytes(&value) else {
        return;
    };
    let mut req = http::Request::new(bytes::Bytes::new());
    req.headers_mut().insert(http::header::AUTHORIZATION, value);
    assert!(
        rt.block_on(verifier.verify(&req)).is_err(),
        "a forged token was accepted"
    );
});
