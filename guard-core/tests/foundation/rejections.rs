//! One test per rejection code: the status, the code, the body shape, and that the handler did
//! not run.

use bytes::Bytes;
use guard_core::ingress::IngressLayer;
use guard_core::validate::{TypedValidateLayer, ValidateLayer, Validated};
use http::Method;
use serde_json::json;
use tower::{Layer, ServiceBuilder};

use crate::support::{CountingHandler, call, json_post, problem};

fn order_schema() -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(crate::support::repo_file(
            "examples/orders/order.schema.json",
        ))
        .unwrap(),
    )
    .unwrap()
}

const ORDER: &[u8] = include_bytes!("../../../examples/orders/order.json");

async fn assert_rejected<S>(
    mut svc: S,
    handler: &CountingHandler,
    req: guard_core::GuardRequest,
    status: u16,
    code: &str,
) where
    S: tower::Service<
            guard_core::GuardRequest,
            Response = guard_core::GuardResponse,
            Error = std::convert::Infallible,
        >,
{
    let resp = call(&mut svc, req).await;
    assert_eq!(resp.status(), status, "status for {code}");
    let body = problem(&resp);
    assert_eq!(body["code"], code);
    assert_eq!(body["type"], format!("urn:guard:problem:{code}"));
    assert_eq!(handler.calls(), 0, "handler must not run when {code}");
}

fn ingress() -> IngressLayer {
    IngressLayer::new()
        .max_body_bytes(64)
        .max_depth(4)
        .content_types(["application/json"])
        .methods([Method::POST])
}

#[tokio::test]
async fn too_large_by_content_length_header() {
    let h = CountingHandler::default();
    let mut req = json_post(b"{}");
    req.headers_mut()
        .insert("content-length", "65".parse().unwrap());
    assert_rejected(
        ingress().layer(h.clone()),
        &h,
        req,
        413,
        "guard.ingress.too_large",
    )
    .await;
}

#[tokio::test]
async fn too_large_by_real_length_when_header_lies() {
    let h = CountingHandler::default();
    let mut req = json_post(&[b' '; 65]);
    req.headers_mut()
        .insert("content-length", "2".parse().unwrap());
    assert_rejected(
        ingress().layer(h.clone()),
        &h,
        req,
        413,
        "guard.ingress.too_large",
    )
    .await;
}

#[tokio::test]
async fn too_deep_is_refused_before_parsing() {
    let h = CountingHandler::default();
    // Not even well-formed: the depth scan decides before any parser sees it.
    assert_rejected(
        ingress().layer(h.clone()),
        &h,
        json_post(b"[[[[[\"x\""),
        400,
        "guard.ingress.too_deep",
    )
    .await;
}

#[tokio::test]
async fn unsupported_media_type() {
    let h = CountingHandler::default();
    let req = http::Request::post("/")
        .header("content-type", "text/plain")
        .body(Bytes::from_static(b"{}"))
        .unwrap();
    assert_rejected(
        ingress().layer(h.clone()),
        &h,
        req,
        415,
        "guard.ingress.unsupported_media_type",
    )
    .await;
}

#[tokio::test]
async fn missing_or_repeated_content_type_is_unsupported() {
    let h = CountingHandler::default();
    let req = http::Request::post("/")
        .body(Bytes::from_static(b"{}"))
        .unwrap();
    assert_rejected(
        ingress().layer(h.clone()),
        &h,
        req,
        415,
        "guard.ingress.unsupported_media_type",
    )
    .await;
    let req = http::Request::post("/")
        .header("content-type", "application/json")
        .header("content-type", "text/plain")
        .body(Bytes::from_static(b"{}"))
        .unwrap();
    assert_rejected(
        ingress().layer(h.clone()),
        &h,
        req,
        415,
        "guard.ingress.unsupported_media_type",
    )
    .await;
}

#[tokio::test]
async fn content_type_parameters_and_case_are_ignored() {
    let h = CountingHandler::default();
    let mut svc = ingress().layer(h.clone());
    let req = http::Request::post("/")
        .header("content-type", "Application/JSON; charset=utf-8")
        .body(Bytes::from_static(b"{}"))
        .unwrap();
    assert_eq!(call(&mut svc, req).await.status(), 201);
    assert_eq!(h.calls(), 1);
}

#[tokio::test]
async fn method_not_allowed() {
    let h = CountingHandler::default();
    let req = http::Request::put("/")
        .header("content-type", "application/json")
        .body(Bytes::from_static(b"{}"))
        .unwrap();
    assert_rejected(
        ingress().layer(h.clone()),
        &h,
        req,
        405,
        "guard.ingress.method_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn malformed_json_duplicate_keys() {
    let h = CountingHandler::default();
    assert_rejected(
        ValidateLayer::json_only().layer(h.clone()),
        &h,
        json_post(br#"{"a":1,"a":2}"#),
        400,
        "guard.validate.malformed_json",
    )
    .await;
}

#[tokio::test]
async fn malformed_json_huge_number() {
    let h = CountingHandler::default();
    assert_rejected(
        ValidateLayer::json_only().layer(h.clone()),
        &h,
        json_post(br#"{"total_cents":1e400}"#),
        400,
        "guard.validate.malformed_json",
    )
    .await;
}

#[tokio::test]
async fn malformed_json_syntax() {
    let h = CountingHandler::default();
    assert_rejected(
        ValidateLayer::json_only().layer(h.clone()),
        &h,
        json_post(b"{\"a\":"),
        400,
        "guard.validate.malformed_json",
    )
    .await;
}

#[tokio::test]
async fn schema_violation_hides_values_and_details_by_default() {
    let h = CountingHandler::default();
    let layer = ValidateLayer::with_schema(&order_schema()).unwrap();
    let mut bad: serde_json::Value = serde_json::from_slice(ORDER).unwrap();
    bad["customer_email"] = json!("secret-looking-value-not-an-email");
    let req = json_post(&serde_json::to_vec(&bad).unwrap());
    let mut svc = layer.layer(h.clone());
    let resp = call(&mut svc, req).await;
    assert_eq!(resp.status(), 400);
    let body = problem(&resp);
    assert_eq!(body["code"], "guard.validate.schema");
    assert!(!body.contains_key("errors"));
    assert!(!String::from_utf8_lossy(resp.body()).contains("secret-looking"));
    assert_eq!(h.calls(), 0);
}

#[tokio::test]
async fn schema_violation_details_are_pointer_and_keyword_only_when_exposed() {
    let h = CountingHandler::default();
    let layer = ValidateLayer::with_schema(&order_schema())
        .unwrap()
        .expose_details(true);
    let mut bad: serde_json::Value = serde_json::from_slice(ORDER).unwrap();
    bad["items"][1]["qty"] = json!(0);
    let mut svc = layer.layer(h.clone());
    let resp = call(&mut svc, json_post(&serde_json::to_vec(&bad).unwrap())).await;
    let body = problem(&resp);
    assert_eq!(
        body["errors"],
        json!([{"pointer": "/items/1/qty", "keyword": "minimum"}])
    );
    assert_eq!(h.calls(), 0);
}

#[tokio::test]
async fn format_email_is_asserted() {
    let h = CountingHandler::default();
    let mut bad: serde_json::Value = serde_json::from_slice(ORDER).unwrap();
    bad["customer_email"] = json!("not-an-email");
    let svc = ValidateLayer::with_schema(&order_schema())
        .unwrap()
        .layer(h.clone());
    assert_rejected(
        svc,
        &h,
        json_post(&serde_json::to_vec(&bad).unwrap()),
        400,
        "guard.validate.schema",
    )
    .await;
}

#[tokio::test]
async fn valid_order_reaches_the_handler_with_the_parsed_value() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let s = seen.clone();
    let handler = tower::service_fn(move |req: guard_core::GuardRequest| {
        let s = s.clone();
        async move {
            *s.lock().unwrap() = req
                .extensions()
                .get::<guard_core::validate::JsonBody>()
                .map(|b| b.value().unwrap().clone());
            Ok::<_, std::convert::Infallible>(http::Response::new(Bytes::new()))
        }
    });
    let mut svc = ValidateLayer::with_schema(&order_schema())
        .unwrap()
        .layer(handler);
    assert_eq!(call(&mut svc, json_post(ORDER)).await.status(), 200);
    let expected: serde_json::Value = serde_json::from_slice(ORDER).unwrap();
    assert_eq!(seen.lock().unwrap().as_ref(), Some(&expected));
}

#[derive(serde::Deserialize, validator::Validate)]
#[allow(dead_code)]
struct TypedOrder {
    #[validate(length(min = 1, max = 50))]
    items: Vec<serde_json::Value>,
    #[validate(range(min = 1, max = 100_000))]
    total_cents: u64,
}

#[tokio::test]
async fn typed_validation_is_400_by_default() {
    let h = CountingHandler::default();
    let svc = TypedValidateLayer::<TypedOrder>::new().layer(h.clone());
    assert_rejected(
        svc,
        &h,
        json_post(br#"{"items":[],"total_cents":5}"#),
        400,
        "guard.validate.invalid",
    )
    .await;
}

#[tokio::test]
async fn typed_validation_is_422_when_configured() {
    let h = CountingHandler::default();
    let svc = TypedValidateLayer::<TypedOrder>::new()
        .unprocessable_entity(true)
        .layer(h.clone());
    assert_rejected(
        svc,
        &h,
        json_post(br#"{"items":[1],"total_cents":0}"#),
        422,
        "guard.validate.invalid",
    )
    .await;
}

#[tokio::test]
async fn typed_validation_wrong_shape_stays_400() {
    let h = CountingHandler::default();
    let svc = TypedValidateLayer::<TypedOrder>::new()
        .unprocessable_entity(true)
        .layer(h.clone());
    assert_rejected(
        svc,
        &h,
        json_post(br#"{"items":"x"}"#),
        400,
        "guard.validate.invalid",
    )
    .await;
}

#[tokio::test]
async fn typed_validation_puts_the_value_in_extensions() {
    let handler = tower::service_fn(|req: guard_core::GuardRequest| async move {
        let n = req
            .extensions()
            .get::<Validated<TypedOrder>>()
            .map(|v| v.0.total_cents)
            .unwrap_or(0);
        Ok::<_, std::convert::Infallible>(http::Response::new(Bytes::from(n.to_string())))
    });
    let mut svc = ServiceBuilder::new()
        .layer(ValidateLayer::json_only())
        .layer(TypedValidateLayer::<TypedOrder>::new())
        .service(handler);
    let resp = call(&mut svc, json_post(br#"{"items":[1],"total_cents":42}"#)).await;
    assert_eq!(resp.body(), "42");
}

#[tokio::test]
async fn message_triggers_skip_http_only_checks_but_keep_limits() {
    use guard_core::request::{MessageTrigger, Trigger};
    let h = CountingHandler::default();
    let mut svc = ingress().layer(h.clone());
    // No content type and no method on a queue message: allowed through ingress.
    let mut req = http::Request::new(Bytes::from_static(b"{\"a\":1}"));
    req.extensions_mut()
        .insert(Trigger::Message(MessageTrigger::new("sqs", "arn:q", "m1")));
    assert_eq!(call(&mut svc, req).await.status(), 201);
    // But depth is still enforced.
    let mut deep = http::Request::new(Bytes::from_static(b"[[[[[1]]]]]"));
    deep.extensions_mut()
        .insert(Trigger::Message(MessageTrigger::new("sqs", "arn:q", "m2")));
    assert_eq!(call(&mut svc, deep).await.status(), 400);
    assert_eq!(h.calls(), 1);
}
