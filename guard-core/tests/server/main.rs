//! `guard_core::server` over real TCP on loopback: body limits while reading, header limits,
//! slow clients, peers, keep-alive and graceful shutdown. Every refusal the server makes must
//! reach the handler never and the audit sink exactly once.
#![cfg(feature = "server")]

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use guard_core::GuardRequest;
use guard_core::audit::{AuditLayer, JsonLinesSink, Outcome, SecurityEvent};
use guard_core::request::TrustedProxies;
use guard_core::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::Layer;

use support::{SharedBuf, connect, exchange, read_until_close, start, status};

/// The one event a refusal must leave: `code`, `status`, the socket's peer, outcome deny.
fn assert_one_refusal(events: &[SecurityEvent], code: &str, status: u16) {
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.outcome, Outcome::Deny);
    assert_eq!(e.code, code);
    assert_eq!(e.status, status);
    assert_eq!(e.layer, "ingress");
    assert_eq!(e.peer.as_deref(), Some("127.0.0.1"));
}

#[tokio::test]
async fn declared_oversized_body_is_refused_from_the_headers_alone() {
    let srv = start(Server::new().max_body_bytes(64 * 1024)).await;
    // Only the head is sent: an answer proves the server did not wait for a single body byte.
    let answer = exchange(
        srv.addr,
        b"POST /orders HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 10000000\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 413, "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("guard.ingress.too_large"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"));
    assert_eq!(srv.handler.calls(), 0);
    let events = srv.events.wait_for(1).await;
    assert_one_refusal(&events, "guard.ingress.too_large", 413);
    assert_eq!(
        events[0].reason.as_deref(),
        Some("declared content-length over the limit")
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_oversized_body_is_cut_off_at_the_limit() {
    const LIMIT: usize = 64 * 1024;
    const SLACK: usize = 64 * 1024;
    const BODY: usize = 10_000_000;
    let srv = start(Server::new().max_body_bytes(LIMIT as u64)).await;
    let (mut rd, mut wr) = connect(srv.addr).await.into_split();
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    });
    wr.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let payload = vec![b'a'; 16 * 1024];
    let mut chunk = format!("{:x}\r\n", payload.len()).into_bytes();
    chunk.extend_from_slice(&payload);
    chunk.extend_from_slice(b"\r\n");
    // Bytes of the body (chunk framing included) the client's kernel accepted before the server
    // stopped reading and closed: an upper bound of what the server read.
    let mut sent = 0usize;
    let mut at = 0usize;
    while sent < BODY {
        match tokio::time::timeout(Duration::from_secs(2), wr.write(&chunk[at..])).await {
            Ok(Ok(n)) if n > 0 => {
                sent += n;
                at = (at + n) % chunk.len();
            }
            _ => break, // closed / reset by the server, or it stopped reading
        }
    }
    println!("chunked body: client sent {sent} bytes before the server stopped (limit {LIMIT})");
    assert!(
        sent <= LIMIT + SLACK,
        "server read {sent} bytes, more than {LIMIT} + {SLACK}"
    );
    let answer = reader.await.unwrap();
    assert_eq!(status(&answer), 413, "{answer}");
    assert!(answer.contains("guard.ingress.too_large"), "{answer}");
    assert_eq!(srv.handler.calls(), 0);
    let events = srv.events.wait_for(1).await;
    assert_one_refusal(&events, "guard.ingress.too_large", 413);
    assert_eq!(events[0].reason.as_deref(), Some("body over the limit"));
    srv.stop().await;
}

#[tokio::test]
async fn body_within_the_limit_reaches_the_handler_chunked_or_not() {
    let srv = start(Server::new().max_body_bytes(10)).await;
    let answer = exchange(
        srv.addr,
        b"POST / HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert!(answer.ends_with("127.0.0.1 10"), "{answer}");
    let answer = exchange(
        srv.addr,
        b"POST / HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 11\r\n\r\nhello world",
    )
    .await;
    assert_eq!(status(&answer), 413, "{answer}");
    assert_eq!(srv.handler.calls(), 1);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_trickling_headers_is_disconnected_within_the_timeout() {
    const TIMEOUT: Duration = Duration::from_secs(2);
    let srv = start(Server::new().header_read_timeout(TIMEOUT)).await;
    let (mut rd, mut wr) = connect(srv.addr).await.into_split();
    let t0 = Instant::now();
    let closed = tokio::spawn(async move {
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return (t0.elapsed(), got),
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    });
    let head = b"GET /orders HTTP/1.1\r\nhost: example.com\r\n\r\n";
    let mut sent = 0;
    for byte in head {
        if closed.is_finished() || wr.write_all(&[*byte]).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (after, got) = tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .expect("the server never disconnected the slow client")
        .unwrap();
    println!(
        "trickled headers: {sent} bytes sent, disconnected after {after:?} (timeout {TIMEOUT:?})"
    );
    assert!(sent < head.len(), "the whole head got through");
    assert!(after >= TIMEOUT - Duration::from_millis(100), "{after:?}");
    assert!(after < TIMEOUT + Duration::from_millis(900), "{after:?}");
    assert!(
        got.is_empty(),
        "no answer is owed to a client that never sent its head"
    );
    assert_eq!(srv.handler.calls(), 0);
    let events = srv.events.wait_for(1).await;
    assert_one_refusal(&events, "guard.ingress.timeout", 408);
    srv.stop().await;
}

#[tokio::test]
async fn client_trickling_its_body_gets_408() {
    let srv = start(Server::new().body_read_timeout(Duration::from_millis(500))).await;
    let mut s = connect(srv.addr).await;
    s.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nab")
        .await
        .unwrap();
    let t0 = Instant::now();
    let answer = read_until_close(&mut s).await;
    assert_eq!(status(&answer), 408, "{answer}");
    assert!(answer.contains("guard.ingress.timeout"), "{answer}");
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert_eq!(srv.handler.calls(), 0);
    assert_one_refusal(&srv.events.wait_for(1).await, "guard.ingress.timeout", 408);
    srv.stop().await;
}

#[tokio::test]
async fn too_many_headers_get_431_and_one_event() {
    let srv = start(Server::new().max_headers(20)).await;
    let mut req = b"GET / HTTP/1.1\r\nhost: x\r\n".to_vec();
    for i in 0..30 {
        req.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    let answer = exchange(srv.addr, &req).await;
    assert_eq!(status(&answer), 431, "{answer}");
    assert_eq!(srv.handler.calls(), 0);
    assert_one_refusal(
        &srv.events.wait_for(1).await,
        "guard.ingress.headers_too_large",
        431,
    );
    srv.stop().await;
}

#[tokio::test]
async fn oversized_header_section_gets_431() {
    let srv = start(Server::new().max_header_bytes(8 * 1024)).await;
    let req = format!(
        "GET / HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let answer = exchange(srv.addr, req.as_bytes()).await;
    assert_eq!(status(&answer), 431, "{answer}");
    assert_eq!(srv.handler.calls(), 0);
    srv.stop().await;
}

#[tokio::test]
async fn peer_is_the_socket_or_the_right_most_untrusted_forwarded_entry() {
    let direct = start(Server::new()).await;
    let req =
        b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-forwarded-for: 203.0.113.9\r\n\r\n";
    let answer = exchange(direct.addr, req).await;
    assert!(answer.ends_with("127.0.0.1 0"), "{answer}");
    direct.stop().await;

    let proxied = start(Server::new().trusted_proxies(TrustedProxies::new(1))).await;
    let spoofed = b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-forwarded-for: 10.0.0.1, 203.0.113.9\r\n\r\n";
    assert!(
        exchange(proxied.addr, spoofed)
            .await
            .ends_with("203.0.113.9 0")
    );
    let none = b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    assert!(exchange(proxied.addr, none).await.ends_with("none 0"));
    let events = proxied.events.wait_for(2).await;
    assert_eq!(events[0].peer.as_deref(), Some("203.0.113.9"));
    proxied.stop().await;
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let srv = start(Server::new()).await;
    let mut s = connect(srv.addr).await;
    let mut buf = vec![0u8; 4096];
    for _ in 0..3 {
        s.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
            .await
            .unwrap();
        let n = s.read(&mut buf).await.unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert_eq!(status(&answer), 200, "{answer}");
        assert!(answer.ends_with("127.0.0.1 2"), "{answer}");
    }
    assert_eq!(srv.handler.calls(), 3);
    assert_eq!(srv.events.wait_for(3).await.len(), 3);
    srv.stop().await;
}

/// The only test that listens for SIGTERM (the others turn it off, so the signal this test sends
/// to its own process stops only this server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_refuses_new_ones_and_flushes_the_audit() {
    const IN_FLIGHT: usize = 20;
    let lines = SharedBuf::default();
    let sink = JsonLinesSink::new(lines.clone(), 1024);
    let audit = AuditLayer::new(sink.clone());
    let entered = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let handler = {
        let (entered, finished, gate) = (entered.clone(), finished.clone(), gate.clone());
        tower::service_fn(move |_req: GuardRequest| {
            let (entered, finished, gate) = (entered.clone(), finished.clone(), gate.clone());
            async move {
                entered.fetch_add(1, Ordering::SeqCst);
                gate.acquire().await.unwrap().forget();
                finished.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Infallible>(http::Response::new(Bytes::from_static(b"done")))
            }
        })
    };
    let hook_saw = Arc::new(Mutex::new(None));
    let listener = support::small_buffer_listener();
    let addr = listener.local_addr().unwrap();
    let server = Server::new().audit(audit.clone()).on_shutdown({
        let (hook_saw, finished, lines) = (hook_saw.clone(), finished.clone(), lines.clone());
        move || {
            let flushed = sink.flush(Duration::from_secs(2));
            let written = lines.0.lock().unwrap().split(|b| *b == b'\n').count() - 1;
            *hook_saw.lock().unwrap() = Some((flushed, finished.load(Ordering::SeqCst), written));
        }
    });
    let running = tokio::spawn(server.serve(listener, audit.layer(handler)));

    let clients: Vec<_> = (0..IN_FLIGHT)
        .map(|i| {
            tokio::spawn(async move {
                let req = format!("POST /{i} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{{}}");
                exchange(addr, req.as_bytes()).await
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while entered.load(Ordering::SeqCst) < IN_FLIGHT {
        assert!(Instant::now() < deadline, "requests never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let kill = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut refused = false;
    for _ in 0..200 {
        match tokio::net::TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                refused = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    assert!(refused, "new connections were still accepted after SIGTERM");
    assert_eq!(
        finished.load(Ordering::SeqCst),
        0,
        "in-flight requests were cut short"
    );
    assert!(
        !running.is_finished(),
        "the server stopped before its requests were answered"
    );

    gate.add_permits(IN_FLIGHT);
    for c in clients {
        let answer = c.await.unwrap();
        assert_eq!(status(&answer), 200, "{answer}");
        assert!(answer.ends_with("done"), "{answer}");
    }
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("server did not stop")
        .unwrap()
        .unwrap();
    let (flushed, finished_at_hook, written_at_hook) = hook_saw
        .lock()
        .unwrap()
        .expect("the shutdown hook did not run");
    assert!(flushed);
    assert_eq!(
        finished_at_hook, IN_FLIGHT,
        "the hook ran before the requests finished"
    );
    assert_eq!(
        written_at_hook, IN_FLIGHT,
        "events missing when the hook returned"
    );
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let events: Vec<SecurityEvent> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), IN_FLIGHT);
    assert!(
        events
            .iter()
            .all(|e| e.outcome == Outcome::Allow && e.status == 200)
    );
}

#[tokio::test]
async fn requests_still_running_at_the_drain_timeout_are_cut_off_and_recorded() {
    let events = support::Events::default();
    let stuck = tower::service_fn(|_req: GuardRequest| async {
        std::future::pending::<()>().await;
        Ok::<_, Infallible>(http::Response::new(Bytes::new()))
    });
    let listener = support::small_buffer_listener();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let hook_ran = Arc::new(AtomicUsize::new(0));
    let server = Server::new()
        .drain_timeout(Duration::from_millis(300))
        .shutdown_on_sigterm(false)
        .audit(events.layer())
        .with_shutdown(async {
            let _ = stopped.await;
        })
        .on_shutdown({
            let hook_ran = hook_ran.clone();
            move || {
                hook_ran.fetch_add(1, Ordering::SeqCst);
            }
        });
    let running = tokio::spawn(server.serve(listener, events.layer().layer(stuck)));
    let client = tokio::spawn(exchange(addr, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(3), running)
        .await
        .expect("the drain timeout did not end the server")
        .unwrap()
        .unwrap();
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert_eq!(hook_ran.load(Ordering::SeqCst), 1);
    assert_eq!(client.await.unwrap(), "", "the stuck request got no answer");
    let events = events.all();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0].code.as_str(), events[0].status),
        ("guard.internal", 499)
    );
}
