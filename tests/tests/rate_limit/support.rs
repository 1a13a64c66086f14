//! Shared helpers: a counting handler, requests from an address, a 2-thread runtime, and a load
//! generator that measures how many requests a stack admits over a window.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use guard_core::rate_limit::{FailureMode, Rate, RedisBackend, RedisConnection};
use guard_core::request::Peer;
use guard_core::{GuardRequest, GuardResponse};
use tower::util::BoxCloneService;
use tower::{Service, ServiceExt};

pub(crate) type Handler = BoxCloneService<GuardRequest, GuardResponse, Infallible>;

/// A handler that counts its calls and answers 200.
#[derive(Clone, Default)]
pub(crate) struct Counting(Arc<AtomicUsize>);

impl Counting {
    pub(crate) fn calls(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    pub(crate) fn service(&self) -> Handler {
        let calls = self.0.clone();
        BoxCloneService::new(tower::service_fn(move |_req: GuardRequest| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(http::Response::new(Bytes::from_static(b"ok"))) }
        }))
    }
}

/// A request the platform saw coming from `ip`.
pub(crate) fn from(ip: &str) -> GuardRequest {
    let mut req = http::Request::new(Bytes::new());
    req.extensions_mut().insert(Peer::new(ip.parse().unwrap()));
    req
}

pub(crate) async fn send<S>(svc: &mut S, req: GuardRequest) -> GuardResponse
where
    S: Service<GuardRequest, Response = GuardResponse, Error = Infallible>,
{
    svc.ready().await.unwrap().call(req).await.unwrap()
}

/// The runtime of the acceptance criteria: multi-threaded, two workers.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Held by the tests that start a cluster or hammer over TLS, so that they run one at a time: on
/// a 2-core machine, several 6-node clusters and TLS load at once starve each other's request
/// loops and the exactness lower bound (which measures throughput) would fail for want of CPU.
pub(crate) fn one_heavy_test_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A key prefix no other test uses.
pub(crate) fn prefix(test: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "test:{}:{test}:{}:",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub(crate) fn connection(url: &str) -> RedisConnection {
    RedisConnection::open(url, Duration::from_millis(500), Duration::from_millis(500)).unwrap()
}

pub(crate) fn redis_backend(
    conn: &RedisConnection,
    rate: Rate,
    prefix: &str,
    mode: FailureMode,
) -> RedisBackend {
    RedisBackend::new(conn.clone(), rate)
        .with_key_prefix(prefix)
        .with_failure_mode(mode)
}

/// Makes `conn` connect (one `EXISTS` on a key no test uses), so a measurement starts connected.
pub(crate) async fn warm_up(conn: &RedisConnection) {
    use guard_core::replay::ReplayStore;
    let store = guard_core::rate_limit::RedisReplayStore::new(conn.clone(), prefix("warm-up"));
    store.seen(b"warm-up").await.expect("the connection is up");
}

/// What one service admitted during a [`hammer`] run.
#[derive(Debug)]
pub(crate) struct Load {
    /// Requests answered 200.
    pub(crate) admitted: usize,
    /// Requests answered 429.
    pub(crate) refused: usize,
}

/// Sends requests from `tasks` concurrent tasks per service, as fast as answers come, until
/// `window` has passed. Returns each service's counts and the measured window: from before the
/// first request until the last answer (every decision was taken inside it).
pub(crate) async fn hammer<S>(
    services: Vec<S>,
    tasks: usize,
    window: Duration,
) -> (Vec<Load>, Duration)
where
    S: Service<GuardRequest, Response = GuardResponse, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let start = Instant::now();
    let deadline = start + window;
    let mut handles = Vec::new();
    for (i, svc) in services.into_iter().enumerate() {
        for _ in 0..tasks {
            let mut svc = svc.clone();
            handles.push(tokio::spawn(async move {
                let (mut admitted, mut refused) = (0usize, 0usize);
                let mut last = Instant::now();
                while Instant::now() < deadline {
                    let resp = send(&mut svc, from("203.0.113.7")).await;
                    last = Instant::now();
                    match resp.status().as_u16() {
                        200 => admitted += 1,
                        429 => refused += 1,
                        other => panic!("unexpected status {other}"),
                    }
                    tokio::task::yield_now().await;
                }
                (i, admitted, refused, last)
            }));
        }
    }
    let mut loads: Vec<Load> = Vec::new();
    let mut end = start;
    for h in handles {
        let (i, admitted, refused, last) = h.await.unwrap();
        while loads.len() <= i {
            loads.push(Load {
                admitted: 0,
                refused: 0,
            });
        }
        loads[i].admitted += admitted;
        loads[i].refused += refused;
        end = end.max(last);
    }
    (loads, end - start)
}

/// B + R·T + 1: the most a GCRA limiter may admit over `elapsed` (the +1 is boundary rounding).
pub(crate) fn upper_bound(rate: Rate, elapsed: Duration) -> f64 {
    let per_sec = f64::from(rate.count().get()) / rate.period().as_secs_f64();
    f64::from(rate.burst().get()) + per_sec * elapsed.as_secs_f64() + 1.0
}

/// 95 % of B + R·T for the nominal window: the least it must admit when demand exceeds the limit.
pub(crate) fn lower_bound(rate: Rate, window: Duration) -> f64 {
    let per_sec = f64::from(rate.count().get()) / rate.period().as_secs_f64();
    0.95 * (f64::from(rate.burst().get()) + per_sec * window.as_secs_f64())
}
