//! Any bytes as a Pub/Sub push envelope or a CloudEvent (binary or structured mode): decoding
//! never panics; the result is either the adapter's refusal or a message carrying its trigger,
//! and a Pub/Sub message's decoded data never exceeds the bound.
#![no_main]

use bytes::Bytes;
use guard_core::request::{AdapterRefusal, Trigger};
use libfuzzer_sys::fuzz_target;

const MAX_DATA: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let mut req = http::Request::builder().method("POST");
    let pubsub = selector % 3 == 0;
    req = match selector % 3 {
        0 => req
            .uri("/pubsub")
            .header("content-type", "application/json"),
        1 => req
            .uri("/events")
            .header("content-type", "application/cloudevents+json"),
        _ => req
            .uri("/events")
            .header("content-type", "application/json")
            .header("ce-id", "e-1")
            .header("ce-source", "//pubsub.googleapis.com/projects/p/topics/t")
            .header("ce-specversion", "1.0")
            .header("ce-type", "google.cloud.pubsub.topic.v1.messagePublished"),
    };
    let mut req = req.body(Bytes::copy_from_slice(body)).unwrap();
    req.extensions_mut().insert(Trigger::Http);
    let out = if pubsub {
        guard_gcp::decode::pubsub(req, MAX_DATA)
    } else {
        guard_gcp::decode::cloud_event(req, MAX_DATA)
    };
    assert!(out.extensions().get::<Trigger>().is_some(), "no trigger");
    if pubsub && out.extensions().get::<AdapterRefusal>().is_none() {
        assert!(out.body().len() <= MAX_DATA, "data over the bound");
    }
});
