//! One policy, three clouds: every case of `tests/conformance/cases.toml` runs through the orders
//! policy in every native envelope of the three adapters — AWS (API Gateway v1, v2, Function URL,
//! ALB, SQS), Azure (invocation mode, proxy mode, queue), GCP (plain HTTP, Pub/Sub push,
//! CloudEvents) — in process, each (case, envelope) on a fresh stack, and must give the same
//! `(status, code)` everywhere with exactly one security event of that code per decision.

mod envelopes;
mod orders;
mod runner;

use runner::{Tamper, run_suite};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_gives_the_same_verdict_in_every_envelope() {
    let started = std::time::Instant::now();
    let report = run_suite(None).await;
    println!(
        "{} cases × {} envelopes: {} runs in {:?}\n{}",
        report.cases,
        report.envelopes,
        report.runs,
        started.elapsed(),
        report.table
    );
    assert!(report.cases >= 40, "only {} cases", report.cases);
    assert!(
        report.envelopes >= 10,
        "only {} envelopes",
        report.envelopes
    );
    assert!(report.differences == 0, "\n{}", report.table);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adapter_taking_the_leftmost_forwarded_entry_fails_the_suite_with_the_table() {
    let report = run_suite(Some(Tamper::LeftmostForwardedPeer)).await;
    println!("{}", report.table);
    assert!(report.differences > 0, "the broken envelope went unnoticed");
    // The spoofing case is caught, in the broken envelope's column only.
    let line = report
        .table
        .lines()
        .find(|l| l.contains("outside caller claims a partner address"))
        .expect("the spoofing case is in the table");
    assert!(line.contains("201 allow"), "{line}");
    assert!(line.contains("403 verify.forbidden_address"), "{line}");
    assert!(report.table.contains("gcp-http"), "{}", report.table);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adapter_acking_refused_messages_fails_the_suite_with_the_table() {
    let report = run_suite(Some(Tamper::AckRefusedMessages)).await;
    println!("{}", report.table);
    assert!(report.differences > 0, "the broken envelope went unnoticed");
    let line = report
        .table
        .lines()
        .find(|l| l.contains("message from a foreign queue"))
        .expect("the foreign-queue case is in the table");
    assert!(line.contains("acked!"), "{line}");
}
