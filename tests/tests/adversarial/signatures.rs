//! HMAC webhook signatures (`X-Guard-Signature: t=<unix>,v1=<hex>` over `"<t>.<body>"`) from an
//! outside address, so the signature alone decides: replay, a re-serialised body, clock skew both
//! ways, and scheme downgrades, in every HTTP envelope.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::orders::{WEBHOOK_KEY, fixture, now, order, policy};
use crate::{HTTP, Seen, assert_refused, outside, send_to};

fn mac(t: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_KEY.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// An outside caller's order carrying `signature` in `X-Guard-Signature`.
fn signed(body: Vec<u8>, signature: String) -> crate::envelopes::Request {
    let mut req = outside(body);
    req.headers.push(("X-Guard-Signature".into(), signature));
    req
}

struct SignatureCase {
    name: &'static str,
    /// `(header value, body sent)` for the order.
    make: fn(&[u8]) -> (String, Vec<u8>),
    status: u16,
    code: &'static str,
}

const CASES: &[SignatureCase] = &[
    SignatureCase {
        name: "a_reserialised_body_with_the_same_json_breaks_the_signature",
        make: |body| {
            let t = now();
            let v: serde_json::Value = serde_json::from_slice(body).unwrap();
            (
                format!("t={t},v1={}", mac(t, body)),
                serde_json::to_vec_pretty(&v).unwrap(),
            )
        },
        status: 401,
        code: "guard.verify.bad_signature",
    },
    SignatureCase {
        name: "a_signature_ten_minutes_old_is_stale_beyond_the_300_s_tolerance",
        make: |body| {
            let t = now() - 600;
            (format!("t={t},v1={}", mac(t, body)), body.to_vec())
        },
        status: 401,
        code: "guard.verify.stale",
    },
    SignatureCase {
        name: "a_signature_ten_minutes_in_the_future_is_stale_beyond_the_300_s_tolerance",
        make: |body| {
            let t = now() + 600;
            (format!("t={t},v1={}", mac(t, body)), body.to_vec())
        },
        status: 401,
        code: "guard.verify.stale",
    },
    SignatureCase {
        name: "a_fresh_timestamp_on_an_old_signature_is_a_bad_signature",
        make: |body| {
            let old = now() - 3600;
            (format!("t={},v1={}", now(), mac(old, body)), body.to_vec())
        },
        status: 401,
        code: "guard.verify.bad_signature",
    },
    SignatureCase {
        name: "a_scheme_downgrade_to_v0_is_not_accepted_as_v1",
        make: |body| {
            let t = now();
            (format!("t={t},v0={}", mac(t, body)), body.to_vec())
        },
        status: 401,
        code: "guard.verify.bad_signature",
    },
    SignatureCase {
        name: "a_sha1_length_signature_is_not_accepted",
        make: |body| {
            let t = now();
            (format!("t={t},v1={}", &mac(t, body)[..40]), body.to_vec())
        },
        status: 401,
        code: "guard.verify.bad_signature",
    },
    SignatureCase {
        name: "a_signature_without_its_timestamp_is_refused",
        make: |body| (format!("v1={}", mac(now(), body)), body.to_vec()),
        status: 401,
        code: "guard.verify.bad_signature",
    },
    SignatureCase {
        name: "a_signature_of_the_empty_body_does_not_cover_the_order",
        make: |body| {
            let t = now();
            (format!("t={t},v1={}", mac(t, b"")), body.to_vec())
        },
        status: 401,
        code: "guard.verify.bad_signature",
    },
    SignatureCase {
        name: "a_signature_header_of_ten_thousand_entries_is_refused",
        make: |body| {
            let t = now();
            let junk = vec!["v1=00"; 10_000].join(",");
            (format!("t={t},{junk}"), body.to_vec())
        },
        status: 401,
        code: "guard.verify.bad_signature",
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_stale_signatures_are_refused_in_every_http_envelope() {
    for case in CASES {
        let (signature, body) = (case.make)(&order());
        let req = signed(body, signature.clone());
        let mut seen = Vec::new();
        for envelope in HTTP {
            let policy = policy(envelope.cloud());
            let f = fixture(&policy, "all");
            seen.push(send_to(&f, envelope, &req, &policy, None).await);
        }
        assert_refused(case.name, &seen, case.status, case.code, &[signature]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_signature_is_refused_the_second_time_in_every_http_envelope() {
    let body = order();
    let t = now();
    let signature = format!("t={t},v1={}", mac(t, &body));
    let req = signed(body, signature.clone());
    let mut replays: Vec<Seen> = Vec::new();
    for envelope in HTTP {
        let policy = policy(envelope.cloud());
        let f = fixture(&policy, "all");
        let first = send_to(&f, envelope, &req, &policy, None).await;
        assert_eq!(first.calls, 1, "{}: the first delivery", first.place);
        replays.push(send_to(&f, envelope, &req, &policy, None).await);
    }
    assert_refused(
        "a_replayed_signature_is_refused_the_second_time",
        &replays,
        401,
        "guard.verify.replayed",
        &[signature],
    );
}

/// Leaving the signature off (to fall back on the address check) from outside is no way in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_signature_from_outside_falls_back_to_the_address_check_and_is_forbidden() {
    let mut seen = Vec::new();
    for envelope in HTTP {
        let policy = policy(envelope.cloud());
        let f = fixture(&policy, "all");
        seen.push(send_to(&f, envelope, &outside(order()), &policy, None).await);
    }
    assert_refused(
        "dropping_the_signature_from_outside_falls_back_to_the_address_check_and_is_forbidden",
        &seen,
        403,
        "guard.verify.forbidden_address",
        &[],
    );
}
