//! Any signature header and body, under each HMAC preset: verification never panics and never
//! accepts (the key is not in the input).
#![no_main]

use std::sync::OnceLock;

use guard_secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};
use guard_core::verify::{HmacScheme, HmacVerifier, Verifier};
use libfuzzer_sys::fuzz_target;

fn verifiers() -> &'static (tokio::runtime::Runtime, Vec<(HmacVerifier, &'static str)>) {
    static V: OnceLock<(tokio::runtime::Runtime, Vec<(HmacVerifier, &'static str)>)> =
        OnceLock::new();
    V.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let store = SecretStore::new(
            |_: &str, _: SecretVersion| -> Result<SecretValue, SecretsError> {
                Ok(SecretValue::from("fuzz-key-never-in-the-input"))
            },
        );
        let v = [
            (HmacScheme::stripe(), "stripe-signature"),
            (HmacScheme::github(), "x-hub-signature-256"),
            (HmacScheme::slack(), "x-slack-signature"),
        ]
        .into_iter()
        .map(|(scheme, header)| {
            (
                HmacVerifier::builder(scheme, store.clone(), "k")
                    .build()
                    .unwrap(),
                header,
            )
        })
        .collect();
        (rt, v)
    })
}

fuzz_target!(|data: &[u8]| {
    let (rt, verifiers) = verifiers();
    let split = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let (header, body) = data.split_at(split);
    let Ok(value) = http::HeaderValue::from_bytes(header) else {
        return;
    };
    for (verifier, name) in verifiers {
        let mut req = http::Request::new(bytes::Bytes::copy_from_slice(body));
        req.headers_mut().insert(*name, value.clone());
        req.headers_mut().insert(
            "x-slack-request-timestamp",
            http::HeaderValue::from_static("1700000000"),
        );
        let verdict = rt.block_on(verifier.verify(&req));
        assert!(verdict.is_err(), "a signature without the key was accepted");
    }
});
