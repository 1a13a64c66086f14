//! Each layer alone, on the orders payload (examples/orders).
//!
//! `cargo bench -p guard-core --bench layers`. Each bench calls the tower service directly with a
//! fresh request per iteration; `layer/bare_handler` is the handler alone, so a layer's overhead is
//! its figure minus bare. Before timing, every service is called once and its status checked: a
//! bench never times a path it does not take.

mod support;

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use guard_core::Unavailable;
use guard_core::audit::AuditLayer;
use guard_core::clock::WallClock;
use guard_core::ingress::IngressLayer;
use guard_core::rate_limit::{Rate, RateLimitLayer, key};
use guard_core::secrets::SecretsLayer;
use guard_core::validate::{JsonBody, TypedValidateLayer, ValidateLayer};
use guard_core::verify::{
    CidrVerifier, HmacScheme, HmacVerifier, JwksCache, JwtVerifier, MemoryReplayStore, VerifyLayer,
};
use jsonwebtoken::Algorithm;
use support::*;
use tower::{Layer, service_fn};
use validator::Validate;

/// 2023-11-14T22:13:20Z: the fake "now" of the JWT benches (tokens are valid for an hour).
const T0: u64 = 1_700_000_000;

#[derive(serde::Deserialize, serde::Serialize, Validate)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Item {
    #[validate(length(max = 64))]
    sku: String,
    #[validate(range(min = 1, max = 1000))]
    qty: u32,
}

/// The typed twin of `order.schema.json` (serde + validator).
#[derive(serde::Deserialize, Validate)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Order {
    #[validate(length(min = 12, max = 36))]
    order_id: String,
    #[validate(email)]
    customer_email: String,
    #[validate(length(min = 1, max = 50), nested)]
    items: Vec<Item>,
    total_cents: u64,
    currency: String,
}

/// The order borrowed from the body (no allocation but the items `Vec`): the floor of a typed,
/// zero-copy parse, for the "validate without building a `Value`" investigation.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct OrderRef<'a> {
    order_id: &'a str,
    customer_email: &'a str,
    items: Vec<ItemRef<'a>>,
    total_cents: u64,
    currency: &'a str,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ItemRef<'a> {
    sku: &'a str,
    qty: u32,
}

fn test_data(name: &str) -> Vec<u8> {
    std::fs::read(repo().join("guard-core/tests/data/verify").join(name)).unwrap()
}

/// A token signed with the test keys of `guard-core/tests/data/verify` (see its README).
fn token(alg: Algorithm) -> String {
    let (kid, key) = match alg {
        Algorithm::RS256 => (
            "rsa-1",
            jsonwebtoken::EncodingKey::from_rsa_pem(&test_data("rsa-private.pem")).unwrap(),
        ),
        _ => (
            "ec-1",
            jsonwebtoken::EncodingKey::from_ec_pem(&test_data("ec-private.pem")).unwrap(),
        ),
    };
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = Some(kid.into());
    let claims = serde_json::json!({
        "iss": "https://issuer.example", "aud": "orders", "sub": "partner-42",
        "iat": T0, "exp": T0 + 3600,
    });
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

/// A JWT verifier over the test JWKS, served by a closure (no network).
fn jwt_layer(alg: Algorithm) -> VerifyLayer {
    let jwks = test_data("jwks.json");
    let cache = JwksCache::new(move || -> Result<Vec<u8>, Unavailable> { Ok(jwks.clone()) })
        .clock(WallClock::fake_at_unix(T0));
    let v = JwtVerifier::builder(cache)
        .issuers(["https://issuer.example"])
        .audiences(["orders"])
        .algorithms([alg])
        .clock(WallClock::fake_at_unix(T0))
        .build()
        .unwrap();
    VerifyLayer::new(v)
}

fn benches(c: &mut Criterion) {
    let body = order();
    let schema = orders_schema();

    let mut g = c.benchmark_group("layer");
    let mut bare = service_fn(handler);
    expect(&mut bare, request(&body), 201, "bare");
    g.bench_function("bare_handler", |b| {
        b.iter(|| run(&mut bare, request(&body)))
    });

    // ---- ingress --------------------------------------------------------------------------------
    // The orders policy's [ingress] section.
    let mut ingress = IngressLayer::new()
        .methods([http::Method::POST])
        .content_types(["application/json"])
        .max_body_bytes(65536)
        .max_depth(16)
        .layer(service_fn(handler));
    expect(&mut ingress, request(&body), 201, "ingress");
    g.bench_function("ingress", |b| b.iter(|| run(&mut ingress, request(&body))));

    // ---- verification ---------------------------------------------------------------------------
    let cidr = CidrVerifier::new([
        "203.0.113.0/24".parse().unwrap(),
        "198.51.100.0/24".parse().unwrap(),
    ]);
    let mut cidr = VerifyLayer::new(cidr).layer(service_fn(handler));
    expect(&mut cidr, request(&body), 201, "cidr");
    g.bench_function("verify_cidr", |b| b.iter(|| run(&mut cidr, request(&body))));

    // The replay store remembers each signature for twice the tolerance (600 s) and refuses new
    // ones when full: a fake clock moving 10 ms per call lets old entries expire, as real traffic
    // would, instead of filling the store within the benchmark.
    let clock = WallClock::fake_at_unix(T0);
    let hmac_verifier = |replay: bool| {
        let b = HmacVerifier::builder(
            HmacScheme::stripe_style("x-guard-signature").unwrap(),
            store(),
            "orders-webhook-hmac",
        )
        .clock(clock.clone());
        let b = if replay {
            b.replay_store(Arc::new(
                MemoryReplayStore::default().with_clock(clock.clone()),
            ))
        } else {
            b
        };
        VerifyLayer::new(b.build().unwrap())
    };
    let signed = |body: &bytes::Bytes| {
        clock.advance(Duration::from_millis(10));
        let mut req = request_from(body, "192.0.2.1");
        let sig = stripe_signature(HMAC_KEY, clock.unix_seconds(), body);
        req.headers_mut()
            .insert("x-guard-signature", sig.parse().unwrap());
        req
    };
    let mut hmac = hmac_verifier(false).layer(service_fn(handler));
    expect(&mut hmac, signed(&body), 201, "hmac");
    let req = signed(&body);
    g.bench_function("verify_hmac_stripe", |b| {
        b.iter_batched(|| req.clone(), |r| run(&mut hmac, r), BatchSize::SmallInput)
    });
    let mut hmac_replay = hmac_verifier(true).layer(service_fn(handler));
    expect(
        &mut hmac_replay,
        signed(&unique_order()),
        201,
        "hmac + replay",
    );
    g.bench_function("verify_hmac_stripe_with_replay_store", |b| {
        b.iter_batched(
            || signed(&unique_order()),
            |r| run(&mut hmac_replay, r),
            BatchSize::SmallInput,
        )
    });

    for (name, alg) in [
        ("verify_jwt_rs256", Algorithm::RS256),
        ("verify_jwt_es256", Algorithm::ES256),
    ] {
        let mut jwt = jwt_layer(alg).layer(service_fn(handler));
        let tok = token(alg);
        let req = || {
            let mut r = request(&body);
            r.headers_mut()
                .insert("authorization", format!("Bearer {tok}").parse().unwrap());
            r
        };
        expect(&mut jwt, req(), 201, name);
        let one = req();
        g.bench_function(name, |b| {
            b.iter_batched(|| one.clone(), |r| run(&mut jwt, r), BatchSize::SmallInput)
        });
    }

    // ---- rate limit (memory; Redis is in benches/rate_limit.rs) ------------------------------------
    // Never exhausted by the loop, with header counts of a real policy's size (burst 100).
    let unlimited = Rate::per_second(NonZeroU32::new(1_000_000_000).unwrap())
        .with_burst(NonZeroU32::new(100).unwrap());
    let mut rate =
        RateLimitLayer::memory(unlimited, key::RateKey::peer()).layer(service_fn(handler));
    expect(&mut rate, request(&body), 201, "rate limit");
    g.bench_function("rate_limit_memory_peer", |b| {
        b.iter(|| run(&mut rate, request(&body)))
    });

    // ---- validation -----------------------------------------------------------------------------
    g.bench_function("parse_strict", |b| {
        b.iter(|| JsonBody::parse_value(black_box(&body)).unwrap())
    });
    g.bench_function("serde_json_from_slice", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&body)).unwrap())
    });
    g.bench_function("serde_json_ignored_any", |b| {
        b.iter(|| serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&body)).unwrap())
    });
    g.bench_function("serde_json_borrowed_struct", |b| {
        b.iter(|| serde_json::from_slice::<OrderRef<'_>>(black_box(&body)).unwrap())
    });
    // jsonschema alone, with the options guard-core compiles schemas with (regex engine, formats).
    let validator = jsonschema::options()
        .with_pattern_options(jsonschema::PatternOptions::regex())
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let value = JsonBody::parse_value(&body).unwrap();
    g.bench_function("jsonschema_is_valid", |b| {
        b.iter(|| validator.is_valid(black_box(&value)))
    });
    let mut json_only = ValidateLayer::json_only().layer(service_fn(handler));
    expect(&mut json_only, request(&body), 201, "json only");
    g.bench_function("validate_parse_only", |b| {
        b.iter(|| run(&mut json_only, request(&body)))
    });
    // The same layers with the single pass turned off: every body parsed into a `Value` and
    // checked by `jsonschema`.
    let mut json_only_full = ValidateLayer::json_only()
        .single_pass(false)
        .layer(service_fn(handler));
    expect(
        &mut json_only_full,
        request(&body),
        201,
        "json only, full path",
    );
    g.bench_function("validate_parse_only_full_path", |b| {
        b.iter(|| run(&mut json_only_full, request(&body)))
    });
    let schema_layer = ValidateLayer::with_schema(&schema).unwrap();
    assert!(
        schema_layer.uses_single_pass(),
        "the orders schema gets a plan"
    );
    let mut schema_svc = schema_layer.clone().layer(service_fn(handler));
    expect(&mut schema_svc, request(&body), 201, "schema");
    g.bench_function("validate_schema", |b| {
        b.iter(|| run(&mut schema_svc, request(&body)))
    });
    let mut schema_full = schema_layer.single_pass(false).layer(service_fn(handler));
    expect(&mut schema_full, request(&body), 201, "schema, full path");
    g.bench_function("validate_schema_full_path", |b| {
        b.iter(|| run(&mut schema_full, request(&body)))
    });
    let mut typed = TypedValidateLayer::<Order>::new().layer(service_fn(handler));
    expect(&mut typed, request(&body), 201, "typed");
    g.bench_function("validate_typed", |b| {
        b.iter(|| run(&mut typed, request(&body)))
    });

    // ---- secrets (the store alone is in benches/secrets.rs) ----------------------------------------
    let mut secrets = SecretsLayer::new(store())
        .require("orders-api-key")
        .layer(service_fn(handler));
    expect(&mut secrets, request(&body), 201, "secrets");
    g.bench_function("secrets_cached", |b| {
        b.iter(|| run(&mut secrets, request(&body)))
    });

    // ---- audit ----------------------------------------------------------------------------------
    let sink = null_sink();
    let mut audit = AuditLayer::new(sink.clone()).layer(service_fn(handler));
    expect(&mut audit, request(&body), 201, "audit");
    g.bench_function("audit_to_nonblocking_sink", |b| {
        b.iter(|| run(&mut audit, request(&body)))
    });
    g.finish();
    sink.flush(std::time::Duration::from_secs(5));
    eprintln!(
        "audit sink: {} events written, {} dropped (queue full)",
        sink.written(),
        sink.dropped()
    );
}

criterion_group!(layers, benches);
criterion_main!(layers);
