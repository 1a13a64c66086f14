//! `[audit] allow_sample_rate`: allowed decisions are sampled, denials never are.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use guard_core::audit::{AuditLayer, Outcome, SecurityEvent};
use guard_core::request::Peer;
use guard_core::{GuardBuilder, GuardRequest, GuardResponse, Policy};
use tower::{Layer, ServiceExt, service_fn};

const POLICY: &str = r#"
    [audit]
    allow_sample_rate = 0.0
    [verify.cidr]
    allow = ["10.0.0.0/8"]
"#;

async fn ok(_req: GuardRequest) -> Result<GuardResponse, Infallible> {
    Ok(GuardResponse::new(Bytes::new()))
}

fn from(ip: &str) -> GuardRequest {
    let mut req = http::Request::post("/").body(Bytes::new()).unwrap();
    req.extensions_mut().insert(Peer::new(ip.parse().unwrap()));
    req
}

#[tokio::test]
async fn at_a_rate_of_zero_every_denial_is_still_logged_and_no_allow_is() {
    let _one = crate::ONE_AT_A_TIME.lock().await;
    let policy = Policy::from_toml_str(POLICY).unwrap();
    let built = GuardBuilder::from_policy(&policy).unwrap().build();
    assert!(
        format!("{:?}", built.audit_layer()).contains("allow_sample_per_million: 0"),
        "the builder applies the policy's rate: {:?}",
        built.audit_layer()
    );
    let seen = Arc::new(Mutex::new(Vec::<SecurityEvent>::new()));
    let s = seen.clone();
    // The policy's audit settings (its rate of 0.0) with a sink that keeps the events.
    let guard = GuardBuilder::from_policy(&policy)
        .unwrap()
        .audit_sink(move |e: SecurityEvent| s.lock().unwrap().push(e))
        .build();
    assert!(
        format!("{:?}", guard.audit_layer()).contains("allow_sample_per_million: 0"),
        "the policy's rate is 0.0: {:?}",
        guard.audit_layer()
    );
    let svc = guard.layer(service_fn(ok));
    let (mut allowed, mut denied) = (0, 0);
    for i in 0..200u32 {
        let ip = if i % 3 == 0 {
            "203.0.113.9"
        } else {
            "10.1.2.3"
        };
        let resp = svc.clone().oneshot(from(ip)).await.unwrap();
        if resp.status() == 403 {
            denied += 1;
        } else {
            allowed += 1;
        }
    }
    let events = seen.lock().unwrap();
    assert!(allowed > 100 && denied > 50);
    assert_eq!(events.len(), denied, "exactly the denials are logged");
    assert!(events.iter().all(|e| e.outcome == Outcome::Deny));
}

#[tokio::test]
async fn a_rate_keeps_that_share_of_allowed_decisions_and_every_denial() {
    let _one = crate::ONE_AT_A_TIME.lock().await;
    let seen = Arc::new(Mutex::new(Vec::<SecurityEvent>::new()));
    let s = seen.clone();
    let audit =
        AuditLayer::new(move |e: SecurityEvent| s.lock().unwrap().push(e)).sample_allowed(0.1);
    let policy = Policy::from_toml_str("[verify.cidr]\nallow = [\"10.0.0.0/8\"]").unwrap();
    let guard = GuardBuilder::from_policy(&policy)
        .unwrap()
        .audit(audit)
        .build();
    let svc = guard.layer(service_fn(ok));
    for _ in 0..1000 {
        svc.clone().oneshot(from("10.1.2.3")).await.unwrap();
    }
    for _ in 0..7 {
        svc.clone().oneshot(from("192.0.2.1")).await.unwrap();
    }
    let events = seen.lock().unwrap();
    let allows = events
        .iter()
        .filter(|e| e.outcome == Outcome::Allow)
        .count();
    let denies = events.iter().filter(|e| e.outcome == Outcome::Deny).count();
    assert_eq!((allows, denies), (100, 7));
}

#[test]
fn a_rate_outside_zero_to_one_is_a_policy_problem() {
    let err = Policy::from_toml_str("[audit]\nallow_sample_rate = 1.5").unwrap_err();
    assert!(err.to_string().contains("audit.allow_sample_rate"), "{err}");
}
