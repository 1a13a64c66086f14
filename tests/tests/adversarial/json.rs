//! Hostile bodies, in every envelope that can carry them: nesting bombs, numbers out of range,
//! duplicate keys, bytes that are not UTF-8, a byte-order mark, lone surrogates, a ReDoS attempt
//! against a schema `pattern`, mass assignment, and oversize by length.

use std::time::{Duration, Instant};

use crate::envelopes::{ALL, Cloud, Envelope};
use crate::orders::{order, policy, policy_with};
use crate::{BYTES, HTTP, Seen, assert_refused, request, through};

/// The example order with `from` replaced by `to` in its text.
fn order_with(from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(order()).unwrap();
    assert!(text.contains(from), "{from} not in the order");
    text.replacen(from, to, 1).into_bytes()
}

fn nested_arrays(depth: usize) -> Vec<u8> {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
}

/// The orders policy with room for a 1 MiB body (so a nesting bomb reaches the depth check).
fn roomy(cloud: Cloud) -> guard_core::Policy {
    policy_with(
        cloud,
        |t| t.replace("max_body_bytes = 65536", "max_body_bytes = 1048576"),
        &[],
    )
}

struct BodyCase {
    name: &'static str,
    body: fn() -> Vec<u8>,
    envelopes: &'static [Envelope],
    status: u16,
    code: &'static str,
}

const CASES: &[BodyCase] = &[
    BodyCase {
        name: "one_hundred_thousand_nested_arrays_are_refused_by_size_before_any_parsing",
        body: || nested_arrays(100_000),
        envelopes: &ALL,
        status: 413,
        code: "guard.ingress.too_large",
    },
    BodyCase {
        name: "a_number_out_of_f64_range_1e400_is_malformed_json",
        body: || order_with("\"total_cents\":", "\"total_cents\":1e400,\"x\":"),
        envelopes: &ALL,
        status: 400,
        code: "guard.validate.malformed_json",
    },
    BodyCase {
        name: "duplicate_keys_are_malformed_json_so_no_parser_can_pick_another_value",
        body: || order_with("\"currency\":", "\"currency\":\"XXX\",\"currency\":"),
        envelopes: &ALL,
        status: 400,
        code: "guard.validate.malformed_json",
    },
    BodyCase {
        name: "bytes_that_are_not_utf8_are_malformed_json",
        body: || {
            let mut b = order_with("ord_", "ord_\u{1}");
            let at = b.iter().position(|c| *c == 1).unwrap();
            b[at] = 0xff;
            b
        },
        envelopes: &BYTES,
        status: 400,
        code: "guard.validate.malformed_json",
    },
    BodyCase {
        name: "a_byte_order_mark_before_the_json_is_malformed_json",
        body: || [b"\xef\xbb\xbf".as_slice(), &order()].concat(),
        envelopes: &ALL,
        status: 400,
        code: "guard.validate.malformed_json",
    },
    BodyCase {
        name: "a_lone_surrogate_escape_is_malformed_json",
        body: || order_with("\"sku\":\"", "\"sku\":\"\\ud800"),
        envelopes: &ALL,
        status: 400,
        code: "guard.validate.malformed_json",
    },
    BodyCase {
        name: "mass_assignment_of_an_is_admin_field_is_a_schema_violation",
        body: || order_with("{", "{\"isAdmin\":true,"),
        envelopes: &ALL,
        status: 400,
        code: "guard.validate.schema",
    },
    BodyCase {
        name: "mass_assignment_inside_an_item_is_a_schema_violation",
        body: || order_with("\"sku\":", "\"unit_price_cents\":0,\"sku\":"),
        envelopes: &ALL,
        status: 400,
        code: "guard.validate.schema",
    },
    BodyCase {
        name: "oversize_by_real_length_one_byte_over_the_limit_is_413",
        body: || {
            let pad = 65_537 - r#"{"pad":""}"#.len();
            format!(r#"{{"pad":"{}"}}"#, "x".repeat(pad)).into_bytes()
        },
        envelopes: &ALL,
        status: 413,
        code: "guard.ingress.too_large",
    },
    BodyCase {
        name: "a_prototype_pollution_key_is_a_schema_violation",
        body: || order_with("{", "{\"__proto__\":{\"isAdmin\":true},"),
        envelopes: &ALL,
        status: 400,
        code: "guard.validate.schema",
    },
    BodyCase {
        name: "a_nul_byte_escape_in_the_order_id_is_a_schema_violation",
        body: || order_with("ord_", "ord_\\u0000"),
        envelopes: &ALL,
        status: 400,
        code: "guard.validate.schema",
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_are_refused_in_every_envelope() {
    for case in CASES {
        let seen = through(case.envelopes, &request((case.body)()), None, policy).await;
        assert_refused(case.name, &seen, case.status, case.code, &[]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_thousand_nested_arrays_under_a_roomy_size_limit_are_refused_by_depth() {
    let seen = through(&ALL, &request(nested_arrays(100_000)), None, roomy).await;
    assert_refused(
        "one_hundred_thousand_nested_arrays_under_a_roomy_size_limit_are_refused_by_depth",
        &seen,
        400,
        "guard.ingress.too_deep",
        &[],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_by_declared_content_length_is_refused_before_the_body_is_read() {
    let mut req = request(order());
    req.headers
        .retain(|(k, _)| !k.eq_ignore_ascii_case("content-length"));
    req.headers
        .push(("Content-Length".into(), (10u64 << 20).to_string()));
    let seen = through(&HTTP, &req, None, policy).await;
    assert_refused(
        "oversize_by_declared_content_length_is_refused_before_the_body_is_read",
        &seen,
        413,
        "guard.ingress.too_large",
        &[],
    );
}

/// `^(a+)+$` backtracks exponentially in a backtracking engine on `aaaa…!`; the schema's regex
/// engine decides it in linear time, so 60,000 characters are refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redos_pattern_on_sixty_thousand_characters_is_decided_in_linear_time() {
    let schema = r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object",
        "properties":{"note":{"type":"string","pattern":"^(a+)+$"}}}"#;
    let redos = |cloud| {
        policy_with(
            cloud,
            |t| t.replace("order.schema.json", "redos.schema.json"),
            &[("redos.schema.json", schema)],
        )
    };
    let body = format!(r#"{{"note":"{}!"}}"#, "a".repeat(60_000)).into_bytes();
    let started = Instant::now();
    let seen: Vec<Seen> = through(&ALL, &request(body), None, redos).await;
    let took = started.elapsed();
    assert_refused(
        "a_redos_pattern_on_sixty_thousand_characters_is_decided_in_linear_time",
        &seen,
        400,
        "guard.validate.schema",
        &[],
    );
    // Eleven envelopes in a debug build; a backtracking engine would not end this year.
    assert!(took < Duration::from_secs(10), "took {took:?}");
}
