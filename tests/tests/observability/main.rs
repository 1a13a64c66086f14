//! Observability end to end: OCSF output checked by the OCSF schema validator, and the three
//! example functions chained through the outbound helper, exporting over OTLP into an in-process
//! collector (one trace, the signed hop admitted, an unsigned one refused).

mod adapters;
mod chain;
mod ocsf;

/// A signed orders request body's `X-Guard-Signature` (`t=<now>,v1=<HMAC-SHA256("<t>.<body>")>`).
pub(crate) fn guard_signature(key: &[u8], body: &[u8]) -> String {
    use hmac::Mac;
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The orders example's valid order.
pub(crate) fn order() -> Vec<u8> {
    std::fs::read(guard_tests::server::repo_root().join("examples/orders/order.json")).unwrap()
}

/// `tracing` caches per callsite whether any subscriber wants it; tests that install their own
/// subscriber run one at a time so another test's lack of one cannot disable their spans.
pub(crate) static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
