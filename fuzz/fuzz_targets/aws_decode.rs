//! Any bytes as a Lambda event: decoding never panics, every request stays within the header
//! limits, and the refusing decoder yields one request (or refusal) per unit the strict one sees.
#![no_main]

use guard_aws::decode::{DecodeOptions, decode, decode_or_refuse};
use lambda_runtime::{Context, LambdaEvent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let options = DecodeOptions::default();
    let event = || LambdaEvent::new(value.clone(), Context::default());
    let strict = decode(event(), &options);
    let lenient = decode_or_refuse(event(), &options);
    for req in &lenient.requests {
        assert!(req.headers().len() <= 100, "header limit exceeded");
    }
    if let Ok(strict) = strict {
        assert_eq!(strict.requests.len(), lenient.requests.len());
    }
});
