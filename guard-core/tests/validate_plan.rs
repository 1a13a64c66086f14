//! The single-pass check of `ValidateLayer` against the full path (`JsonBody::parse_value` + `jsonschema`):
//! for a corpus of schemas and bodies, the layer answers exactly the same (status and the whole
//! problem body, details exposed) with the single pass on and off, the handler runs in the same
//! cases and sees the same value, and the single pass really decides the bodies it should.
//!
//! The orders payload and schema come from `examples/orders/`; the other schemas and bodies are
//! the edge cases of each supported keyword, written out below.
#![cfg(feature = "validate")]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use guard_core::validate::{JsonBody, ValidateLayer};
use guard_core::{GuardRequest, GuardResponse};
use serde_json::{Value, json};
use tower::{Layer, Service, ServiceExt, service_fn};

/// What the handler saw: whether the value was already built when it ran, and the value.
type Seen = Arc<Mutex<Option<(bool, Value)>>>;

/// One layer's answer to one body.
#[derive(Debug, PartialEq)]
struct Verdict {
    status: u16,
    body: Bytes,
    /// `Some` when the handler ran: the value it read from `JsonBody`.
    handler_saw: Option<Value>,
}

/// Calls `layer` over a handler that records the `JsonBody`; returns the verdict and whether the
/// value had been built before the handler asked for it.
async fn verdict(layer: &ValidateLayer, body: &[u8]) -> (Verdict, Option<bool>) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let handler = service_fn(move |req: GuardRequest| {
        let s = s.clone();
        async move {
            let body = req
                .extensions()
                .get::<JsonBody>()
                .expect("JsonBody present");
            let was_parsed = body.is_parsed();
            let value = body.value().expect("accepted body parses").clone();
            *s.lock().unwrap() = Some((was_parsed, value));
            Ok::<GuardResponse, Infallible>(http::Response::new(Bytes::from_static(b"ok")))
        }
    });
    let mut svc = layer.clone().layer(handler);
    let req = http::Request::post("/orders")
        .header("content-type", "application/json")
        .body(Bytes::copy_from_slice(body))
        .unwrap();
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    let seen = seen.lock().unwrap().take();
    let v = Verdict {
        status: resp.status().as_u16(),
        body: resp.into_body(),
        handler_saw: seen.as_ref().map(|(_, v)| v.clone()),
    };
    (v, seen.map(|(parsed, _)| parsed))
}

/// How much of a schema the single pass is expected to decide.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// A plan, and it accepts every body the full path accepts (no fallback for valid bodies).
    Decides,
    /// A plan that may hand some valid bodies to the full path (e.g. `enum` meeting a container).
    Defers,
    /// No plan: the schema uses a keyword outside the subset.
    NoPlan,
}

struct Totals {
    accepted: usize,
    accepted_by_plan: usize,
    rejected: usize,
}

/// Checks every body of `bodies` against `schema` with the single pass on and off.
async fn differential(name: &str, schema: &Value, expect: Expect, bodies: &[Vec<u8>]) -> Totals {
    let fast = ValidateLayer::with_schema(schema)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .expose_details(true);
    let full = fast.clone().single_pass(false);
    assert_eq!(
        fast.uses_single_pass(),
        expect != Expect::NoPlan,
        "{name}: plan expected = {expect:?}"
    );
    assert!(!full.uses_single_pass());
    let mut totals = Totals {
        accepted: 0,
        accepted_by_plan: 0,
        rejected: 0,
    };
    for body in bodies {
        let shown = String::from_utf8_lossy(body);
        let (with_plan, plan_parsed) = verdict(&fast, body).await;
        let (without, full_parsed) = verdict(&full, body).await;
        assert_eq!(with_plan, without, "{name}: body {shown}");
        if with_plan.status == 200 {
            totals.accepted += 1;
            // The full path always hands over the value it built.
            assert_eq!(full_parsed, Some(true), "{name}: body {shown}");
            // The handler sees exactly what `JsonBody::parse_value` makes of the bytes.
            assert_eq!(
                with_plan.handler_saw,
                JsonBody::parse_value(body).ok(),
                "{name}: {shown}"
            );
            if plan_parsed == Some(false) {
                totals.accepted_by_plan += 1;
            } else {
                assert_ne!(
                    expect,
                    Expect::Decides,
                    "{name}: plan deferred valid body {shown}"
                );
            }
        } else {
            totals.rejected += 1;
            assert_eq!(
                with_plan.handler_saw, None,
                "{name}: handler ran on a denial"
            );
        }
    }
    if expect == Expect::NoPlan {
        assert_eq!(totals.accepted_by_plan, 0, "{name}");
    }
    eprintln!(
        "{name}: {} accepted ({} by the single pass), {} rejected",
        totals.accepted, totals.accepted_by_plan, totals.rejected
    );
    totals
}

fn repo_file(rel: &str) -> Vec<u8> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read(root.join(rel)).unwrap()
}

/// Bodies every small schema is tried with (`tests/data/validate_plan/bodies.txt`): scalars at
/// the edges of each keyword, containers, duplicate keys (also spelled with escapes), out-of-range
/// numbers, malformed JSON; plus the bodies a line of that file cannot hold.
fn generic_bodies() -> Vec<Vec<u8>> {
    let text = repo_file("guard-core/tests/data/validate_plan/bodies.txt");
    let mut out: Vec<Vec<u8>> = text
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty() && !line.starts_with(b"#"))
        .map(<[u8]>::to_vec)
        .collect();
    assert!(out.len() >= 100, "{} bodies", out.len());
    // Empty, whitespace only, whitespace around a value.
    out.push(Vec::new());
    out.push(b" ".to_vec());
    out.push(b" \n{\"a\":\"x\",\"b\":1}\n ".to_vec());
    // Not UTF-8 inside a string (twice), and a bare invalid byte.
    out.push(b"\"\xff\"".to_vec());
    out.push(b"{\"a\":\"\xc3\"}".to_vec());
    out.push(b"\xff".to_vec());
    // Nesting below and beyond serde_json's recursion limit (128).
    for depth in [100, 127, 128, 129, 300] {
        out.push(format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes());
        out.push(format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth)).into_bytes());
    }
    // Many undeclared keys (beyond the inline set), once clean and once with a late duplicate.
    let keys: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
    out.push(format!("{{{}}}", keys.join(",")).into_bytes());
    out.push(format!("{{{},\"k7\":0}}", keys.join(",")).into_bytes());
    out
}

/// `tests/data/validate_plan/schemas.json`.
fn schemas() -> Value {
    serde_json::from_slice(&repo_file(
        "guard-core/tests/data/validate_plan/schemas.json",
    ))
    .unwrap()
}

/// The small schemas: one per supported keyword and a few combinations.
fn supported_schemas() -> Vec<(String, Value, Expect)> {
    let doc = schemas();
    doc["supported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let expect = match s["expect"].as_str().unwrap() {
                "decides" => Expect::Decides,
                "defers" => Expect::Defers,
                other => panic!("unknown expectation {other}"),
            };
            (
                s["name"].as_str().unwrap().to_owned(),
                s["schema"].clone(),
                expect,
            )
        })
        .collect()
}

/// Schemas that must keep the full path.
fn unsupported_schemas() -> Vec<(String, Value)> {
    let doc = schemas();
    doc["unsupported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_owned(), s["schema"].clone()))
        .collect()
}

#[tokio::test]
async fn single_pass_gives_the_same_verdicts_as_the_full_path_for_each_supported_keyword() {
    let bodies = generic_bodies();
    let mut decided = 0;
    for (name, schema, expect) in supported_schemas() {
        let name = name.as_str();
        let t = differential(name, &schema, expect, &bodies).await;
        assert!(
            t.rejected > 0 || name == "true",
            "{name}: the corpus rejects something"
        );
        decided += t.accepted_by_plan;
        if expect == Expect::Decides && name != "false" {
            assert!(
                t.accepted_by_plan > 0,
                "{name}: the plan accepted something"
            );
        }
    }
    assert!(decided > 500, "the plan decided {decided} bodies");
}

#[tokio::test]
async fn schemas_outside_the_subset_keep_the_full_path_and_its_verdicts() {
    let bodies = generic_bodies();
    for (name, schema) in unsupported_schemas() {
        differential(&name, &schema, Expect::NoPlan, &bodies).await;
    }
}

#[tokio::test]
async fn json_only_single_pass_agrees_with_parse_strict() {
    let fast = ValidateLayer::json_only().expose_details(true);
    let full = fast.clone().single_pass(false);
    assert!(fast.uses_single_pass());
    for body in generic_bodies() {
        let (a, parsed) = verdict(&fast, &body).await;
        let (b, _) = verdict(&full, &body).await;
        assert_eq!(a, b, "{}", String::from_utf8_lossy(&body));
        assert_eq!(a.status == 200, JsonBody::parse_value(&body).is_ok());
        if a.status == 200 {
            assert_eq!(parsed, Some(false), "the single pass decided it");
        }
    }
}

// ---- the orders payload ------------------------------------------------------------------------

fn order_schema() -> Value {
    serde_json::from_slice(&repo_file("examples/orders/order.schema.json")).unwrap()
}

fn order() -> Value {
    serde_json::from_slice(&repo_file("examples/orders/order.json")).unwrap()
}

/// Values each field of the order is replaced with, in turn.
fn replacements() -> Vec<Value> {
    vec![
        json!(null),
        json!(true),
        json!(0),
        json!(-1),
        json!(1),
        json!(1.0),
        json!(1.5),
        json!(1000),
        json!(1001),
        json!(1e3),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(""),
        json!("x"),
        json!("USD"),
        json!([]),
        json!({}),
        json!([{"sku": "A", "qty": 1}]),
    ]
}

/// Strings at the edges of the orders schema's length limits and pattern.
fn string_edges() -> Vec<(&'static str, String)> {
    vec![
        ("order_id", format!("ord_{}", "A".repeat(7))),
        ("order_id", format!("ord_{}", "A".repeat(8))),
        ("order_id", format!("ord_{}", "9".repeat(32))),
        ("order_id", format!("ord_{}", "z".repeat(33))),
        ("order_id", format!("ord_{}é", "A".repeat(8))),
        ("order_id", format!("ord_{}\n", "A".repeat(8))),
        ("order_id", format!("ORD_{}", "A".repeat(8))),
        ("customer_email", format!("{}@example.com", "a".repeat(64))),
        ("customer_email", format!("{}@example.com", "a".repeat(65))),
        ("customer_email", format!("a@{}.com", "b".repeat(248))),
        ("customer_email", format!("a@{}.com", "b".repeat(249))),
        ("customer_email", "a@b".into()),
        ("customer_email", "\"quoted local\"@example.com".into()),
        ("customer_email", "ana@[192.168.0.1]".into()),
        ("customer_email", "ana@@example.com".into()),
        ("sku", "é".repeat(64)),
        ("sku", "é".repeat(65)),
        ("sku", "🦀".repeat(64)),
        ("sku", "🦀".repeat(65)),
        ("sku", String::new()),
        ("currency", "EUR".into()),
        ("currency", "eur".into()),
        ("currency", "EURO".into()),
    ]
}

/// The order, then every field (top level and the first item's) removed, replaced by each of
/// [`replacements`], and set to each string edge; plus item counts at the limits, an extra field,
/// and textual mutations JSON values cannot express (duplicates, escapes, number spellings).
fn order_mutations() -> Vec<Vec<u8>> {
    let base = order();
    let mut out = vec![serde_json::to_vec(&base).unwrap()];
    let top: Vec<String> = base.as_object().unwrap().keys().cloned().collect();
    let item: Vec<String> = base["items"][0]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let mut edit = |f: &dyn Fn(&mut Value)| {
        let mut v = base.clone();
        f(&mut v);
        out.push(serde_json::to_vec(&v).unwrap());
    };
    for k in &top {
        edit(&|v| {
            v.as_object_mut().unwrap().remove(k);
        });
        for r in replacements() {
            edit(&|v| v[k] = r.clone());
        }
    }
    for k in &item {
        edit(&|v| {
            v["items"][0].as_object_mut().unwrap().remove(k);
        });
        for r in replacements() {
            edit(&|v| v["items"][1][k] = r.clone());
        }
    }
    for (field, s) in string_edges() {
        if field == "sku" {
            edit(&|v| v["items"][0]["sku"] = json!(s));
        } else {
            edit(&|v| v[field] = json!(s));
        }
    }
    for n in [0usize, 1, 50, 51] {
        edit(&|v| v["items"] = json!(vec![json!({"sku": "S", "qty": 1}); n]));
    }
    edit(&|v| v["extra"] = json!(1));
    edit(&|v| v["items"][0]["extra"] = json!(1));
    edit(&|v| v["total_cents"] = json!(u64::MAX));
    let text = String::from_utf8(serde_json::to_vec(&base).unwrap()).unwrap();
    for (from, to) in [
        (r#""order_id":"#, r#""order_id":"ord_AAAAAAAA","order_id":"#),
        (
            r#""order_id":"#,
            r#""\u006frder_id":"ord_AAAAAAAA","order_id":"#,
        ),
        (r#""order_id":"#, r#""\u006frder_id":"#),
        (r#""qty":2"#, r#""qty":2,"qty":2"#),
        (r#""qty":2"#, r#""q\u0074y":2"#),
        (r#""qty":2"#, r#""qty":2.0"#),
        (r#""qty":2"#, r#""qty":2e0"#),
        (r#""qty":2"#, r#""qty":1e400"#),
        (r#""total_cents":4599"#, r#""total_cents":-0"#),
        (
            r#""total_cents":4599"#,
            r#""total_cents":18446744073709551616"#,
        ),
        (r#""total_cents":4599"#, r#""total_cents":4599.0"#),
        (r#""total_cents":4599"#, r#""total_cents":-1e-300"#),
        (r#""currency":"EUR""#, r#""currency":"\u0045UR""#),
        (
            r#""currency":"EUR""#,
            r#""currency":"EUR","currency":"EUR""#,
        ),
        (r#""sku":"BOOK-42""#, r#""sku":"BOOK\u002d42""#),
        (r#""ana@example.com""#, r#""ana\u0040example.com""#),
    ] {
        assert!(text.contains(from), "{from}");
        out.push(text.replacen(from, to, 1).into_bytes());
    }
    for suffix in [" ", "\n", " x", "{}", ",", "]"] {
        out.push(format!("{text}{suffix}").into_bytes());
    }
    out.push(text.as_bytes()[..text.len() - 1].to_vec());
    out.push(Vec::new());
    out
}

#[tokio::test]
async fn orders_schema_single_pass_gives_the_full_paths_verdict_on_every_mutation() {
    let bodies = order_mutations();
    assert!(bodies.len() > 150, "{} bodies", bodies.len());
    let t = differential("orders", &order_schema(), Expect::Decides, &bodies).await;
    assert!(
        t.accepted_by_plan >= 10,
        "{} accepted by the plan",
        t.accepted_by_plan
    );
    assert!(t.rejected > 100, "{} rejected", t.rejected);
}

#[tokio::test]
async fn orders_schema_is_decided_in_a_single_pass_without_building_a_value() {
    let layer = ValidateLayer::with_schema(&order_schema()).unwrap();
    assert!(layer.uses_single_pass());
    let (v, parsed) = verdict(&layer, &repo_file("examples/orders/order.json")).await;
    assert_eq!(v.status, 200);
    assert_eq!(
        parsed,
        Some(false),
        "no Value was built before the handler asked"
    );
}
