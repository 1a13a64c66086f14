//! Any bytes as an Azure Functions custom-handler invocation (HTTP trigger or queue trigger):
//! decoding never panics; the result is either the adapter's refusal or a request within the
//! header limits that carries its trigger; Easy Auth headers never survive when the policy does
//! not trust Easy Auth.
#![no_main]

use guard_azure::decode::{DecodeOptions, decode_or_refuse};
use guard_azure::functions::Functions;
use guard_core::request::{AdapterRefusal, Trigger};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let function = if selector & 1 == 0 {
        r#"{"bindings":[{"type":"httpTrigger","direction":"in","name":"req"},{"type":"http","direction":"out","name":"res"}]}"#
    } else {
        r#"{"bindings":[{"type":"queueTrigger","direction":"in","name":"msg","queueName":"orders"}]}"#
    };
    let trigger = Functions::parse(function).expect("a valid function.json");
    let options = DecodeOptions::default();
    let req = decode_or_refuse("orders", &trigger, &http::HeaderMap::new(), body, &options);
    assert!(req.extensions().get::<Trigger>().is_some(), "no trigger");
    if req.extensions().get::<AdapterRefusal>().is_none() {
        assert!(req.headers().len() <= 100, "header limit exceeded");
        assert!(
            !req.headers()
                .keys()
                .any(|n| n.as_str().starts_with("x-ms-client-principal")
                    || n.as_str().starts_with("x-ms-token-")),
            "an Easy Auth header survived"
        );
    }
});
