//! A Redis that accepts connections and never answers (a plain TCP listener that stalls): every
//! check ends within the connection's time budget, then fail-open admits, counts and logs, and
//! fail-closed answers 503.

use std::io::Write;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use guard_core::rate_limit::{
    AdmittedOnBackendError, FailureMode, Rate, RateLimitLayer, RedisConnection, key,
};
use guard_tests::server::within;
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

/// Everything this test binary logs, from the first call on (a global subscriber: a thread-local
/// one can miss events whose callsite another test's thread registered first).
fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        logs
    })
}

#[tokio::test]
async fn a_silent_redis_ends_each_check_within_the_budget_then_applies_the_failure_mode() {
    let logs = logs();
    let (url, accepted) = silent_redis().await;
    let budget = Duration::from_millis(300);
    let conn = RedisConnection::open(&url, budget, budget).unwrap();
    let rate = Rate::per_minute(NonZeroU32::new(3).unwrap());
    let open_backend = redis_backend(&conn, rate, &prefix("hung-open"), FailureMode::Open);
    let closed_backend = redis_backend(&conn, rate, &prefix("hung-closed"), FailureMode::Closed);
    let (open_handler, closed_handler) = (Counting::default(), Counting::default());
    let mut open = RateLimitLayer::new(open_backend.clone(), key::RateKey::global())
        .with_label("hung_open")
        .layer(open_handler.service());
    let mut closed = RateLimitLayer::new(closed_backend.clone(), key::RateKey::global())
        .with_label("hung_closed")
        .layer(closed_handler.service());

    for n in 1..=3 {
        let started = Instant::now();
        let resp = within(budget * 10, send(&mut open, from("203.0.113.7"))).await;
        let took = started.elapsed();
        assert!(took < budget * 3, "fail-open check {n} took {took:?}");
        assert_eq!(resp.status(), 200);
        assert!(resp.extensions().get::<AdmittedOnBackendError>().is_some());
        assert_eq!(open_backend.allowed_on_error(), n);

        let started = Instant::now();
        let resp = within(budget * 10, send(&mut closed, from("203.0.113.7"))).await;
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
    // Logged once per request, by this test's layers (other tests log through the same
    // subscriber under their own labels).
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    let lines = |label: &str, outcome: &str| {
        text.lines()
            .filter(|l| l.contains(label) && l.contains(outcome))
            .count()
    };
    assert_eq!(
        lines("hung_open", "request admitted (fail-open)"),
        3,
        "{text}"
    );
    assert_eq!(
        lines("hung_closed", "request refused (fail-closed)"),
        3,
        "{text}"
    );
}
