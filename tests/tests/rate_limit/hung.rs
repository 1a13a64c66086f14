//! A Redis that accepts connections and never answers (a plain TCP listener that stalls): every
//! check ends within the connection's time budget, then fail-open admits, counts and logs, and
//! fail-closed answers 503.

use std::io::Write;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use guard_core::rate_limit::{
    AdmittedOnBackendError, FailureMode, Rate, RateLimitLayer, RedisConnection, key,
};
use tower::Layer;

use crate::support::{Counting, from, prefix, redis_backend, send};

/// Accepts every connection, counts it, keeps it open and never writes a byte.
async fn silent_redis() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            open.push(tcp);
        }
    });
    (url, accepted)
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_silent_redis_ends_each_check_within_the_budget_then_applies_the_failure_mode() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // This test's thread only (current-thread runtime): other tests keep their own output.
    let _logging = tracing::subscriber::set_default(subscriber);

    let (url, accepted) = silent_redis().await;
    let budget = Duration::from_millis(300);
    let conn = RedisConnection::open(&url, budget, budget).unwrap();
    let rate = Rate::per_minute(NonZeroU32::new(3).unwrap());
    let open_backend = redis_backend(&conn, rate, &prefix("hung-open"), FailureMode::Open);
    let closed_backend = redis_backend(&conn, rate, &prefix("hung-closed"), FailureMode::Closed);
    let (open_handler, closed_handler) = (Counting::default(), Counting::default());
    let mut open =
        RateLimitLayer::new(open_backend.clone(), key::Global).layer(open_handler.service());
    let mut closed =
        RateLimitLayer::new(closed_backend.clone(), key::Global).layer(closed_handler.service());

    for n in 1..=3 {
        let started = Instant::now();
        let resp = send(&mut open, from("203.0.113.7")).await;
        let took = started.elapsed();
        assert!(took < budget * 3, "fail-open check {n} took {took:?}");
        assert_eq!(resp.status(), 200);
        assert!(resp.extensions().get::<AdmittedOnBackendError>().is_some());
        assert_eq!(open_backend.allowed_on_error(), n);

        let started = Instant::now();
        let resp = send(&mut closed, from("203.0.113.7")).await;
        let took = started.elapsed();
        assert!(took < budget * 3, "fail-closed check {n} took {took:?}");
        assert_eq!(resp.status(), 503);
        let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(body["code"], "guard.rate.backend_unavailable");
    }
    assert_eq!(open_handler.calls(), 3);
    assert_eq!(closed_handler.calls(), 0);
    assert!(
        accepted.load(Ordering::SeqCst) >= 1,
        "the silent server was reached"
    );
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert_eq!(
        text.matches("request admitted (fail-open)").count(),
        3,
        "{text}"
    );
    assert_eq!(
        text.matches("request refused (fail-closed)").count(),
        3,
        "{text}"
    );
}
