//! Differential: the single-pass validation plan and the full path (strict parse + JSON Schema)
//! give the same status and problem body for any body, against the orders schema and with no
//! schema; and `JsonBody::parse` agrees with `JsonBody::parse_value`.
#![no_main]

use std::sync::OnceLock;

use guard_core::validate::{JsonBody, ValidateLayer};
use libfuzzer_sys::fuzz_target;
use tower::{Layer, ServiceExt};

const SCHEMA: &str = include_str!("../../examples/orders/order.schema.json");

fn layers() -> &'static (tokio::runtime::Runtime, Vec<(ValidateLayer, ValidateLayer)>) {
    static L: OnceLock<(tokio::runtime::Runtime, Vec<(ValidateLayer, ValidateLayer)>)> =
        OnceLock::new();
    L.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        let orders = ValidateLayer::with_schema(&schema)
            .unwrap()
            .expose_details(true);
        let json = ValidateLayer::json_only().expose_details(true);
        let pairs = [orders, json]
            .into_iter()
            .map(|fast| (fast.clone(), fast.single_pass(false)))
            .collect();
        (rt, pairs)
    })
}

fuzz_target!(|data: &[u8]| {
    let body = bytes::Bytes::copy_from_slice(data);
    assert_eq!(
        JsonBody::parse(body.clone()).is_ok(),
        JsonBody::parse_value(data).is_ok(),
        "JsonBody::parse and JsonBody::parse_value disagree"
    );
    let (rt, pairs) = layers();
    for (fast, full) in pairs {
        let run = |layer: &ValidateLayer| {
            let svc = layer.layer(tower::service_fn(
                |_req: http::Request<bytes::Bytes>| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(bytes::Bytes::new()))
                },
            ));
            let resp = rt
                .block_on(svc.oneshot(http::Request::new(body.clone())))
                .unwrap();
            (resp.status(), resp.into_body())
        };
        assert_eq!(run(fast), run(full), "single pass and full path disagree");
    }
});
