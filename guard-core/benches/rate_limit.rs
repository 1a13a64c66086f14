//! The allow path of the rate limiter, for both backends.
//!
//! `cargo bench -p guard-core --bench rate_limit --features redis`
//!
//! The Redis benchmarks start their own `redis-server` (on PATH; `scripts/setup-tools.sh` installs
//! it) on a free loopback port with persistence off, and stop it at the end.

use std::convert::Infallible;
use std::hint::black_box;
use std::num::NonZeroU32;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use guard_core::GuardRequest;
use guard_core::rate_limit::key::{self, BucketKey};
use guard_core::rate_limit::{MemoryBackend, Rate, RateLimitLayer};
use guard_core::request::Peer;
use tower::{Layer, Service};

/// A limit so high that every check is admitted: the allow path, every time.
fn unlimited() -> Rate {
    Rate::per_second(NonZeroU32::MAX).with_burst(NonZeroU32::MAX)
}

fn request(ip: std::net::IpAddr) -> GuardRequest {
    let mut req = http::Request::new(Bytes::new());
    req.extensions_mut().insert(Peer::new(ip));
    req
}

fn handler()
-> impl Service<GuardRequest, Response = guard_core::GuardResponse, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    tower::service_fn(|_req: GuardRequest| async {
        Ok::<_, Infallible>(http::Response::new(Bytes::from_static(b"ok")))
    })
}

fn memory(c: &mut Criterion) {
    let mem = MemoryBackend::new(unlimited());
    let k = BucketKey::peer("203.0.113.7".parse().unwrap());
    assert!(mem.check(&k).allowed);
    c.bench_function("memory/check one key", |b| {
        b.iter(|| black_box(mem.check(black_box(&k))))
    });

    let keys: Vec<BucketKey> = (0..10_000u32)
        .map(|i| BucketKey::peer(std::net::IpAddr::from((0xC633_6400u32 + i).to_be_bytes())))
        .collect();
    let mut i = 0;
    c.bench_function("memory/check 10k keys round robin", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(mem.check(&keys[i]))
        })
    });

    let mut svc = RateLimitLayer::memory(unlimited(), key::RateKey::peer()).layer(handler());
    let ip = "203.0.113.7".parse().unwrap();
    c.bench_function("memory/layer call (peer key, headers on)", |b| {
        b.iter(|| {
            let resp = svc.call(request(ip)).now_or_never().unwrap().unwrap();
            black_box(resp)
        })
    });
}

#[cfg(feature = "redis")]
mod redis_bench {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use super::*;
    use guard_core::rate_limit::{RedisBackend, RedisConnection};

    /// A redis-server child, killed by PID on drop.
    struct Server(Child, u16);

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn start() -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/setup-tools.sh)");
        let server = Server(child, port);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                let mut buf = [0u8; 8];
                if s.write_all(b"PING\r\n").is_ok()
                    && matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
                {
                    return server;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(super) fn redis(c: &mut Criterion) {
        let server = start();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let conn = RedisConnection::open(
            &format!("redis://127.0.0.1:{}", server.1),
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .unwrap();
        let backend = RedisBackend::new(conn, unlimited());
        let k = BucketKey::peer("203.0.113.7".parse().unwrap());
        assert!(rt.block_on(backend.check(&k)).unwrap().allowed);

        c.bench_function("redis/check one key (one round trip)", |b| {
            b.iter(|| black_box(rt.block_on(backend.check(&k)).unwrap()))
        });

        let checks = 16;
        c.bench_function("redis/16 concurrent checks on one connection", |b| {
            b.iter(|| {
                rt.block_on(futures_util::future::join_all(
                    (0..checks).map(|_| backend.check(&k)),
                ))
            })
        });

        let mut svc = RateLimitLayer::new(backend.clone(), key::RateKey::peer()).layer(handler());
        let ip = "203.0.113.7".parse().unwrap();
        c.bench_function("redis/layer call (peer key, headers on)", |b| {
            b.iter(|| black_box(rt.block_on(svc.call(request(ip))).unwrap()))
        });
        assert_eq!(backend.allowed_on_error(), 0, "every check reached Redis");
        drop(server);
    }
}

#[cfg(feature = "redis")]
criterion_group!(benches, memory, redis_bench::redis);
#[cfg(not(feature = "redis"))]
criterion_group!(benches, memory);
criterion_main!(benches);
