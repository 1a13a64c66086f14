//! The audit record: one per request, the documented field set, escaping, no headers.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use guard_core::Guard;
use guard_core::audit::{AuditLayer, JsonLinesSink, SecurityEvent};
use guard_core::ingress::IngressLayer;
use guard_core::request::{Cloud, Invocation, Peer, Principal, PrincipalKind};
use guard_core::validate::ValidateLayer;
use guard_core::verify::{CidrVerifier, VerifyLayer};
use http::Method;
use tower::Layer;

use crate::support::{CountingHandler, call, json_post};

/// The documented schema of a security event, written out independently of the library's type:
/// any field added, removed or renamed fails deserialization.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct DocumentedEvent {
    event: String,
    outcome: String,
    code: String,
    status: u16,
    layer: String,
    reason: Option<String>,
    cloud: String,
    function: Option<String>,
    request_id: Option<String>,
    trace_id: Option<String>,
    trigger: String,
    source_id: Option<String>,
    peer: Option<String>,
    principal: Option<String>,
    latency_us: u64,
}

/// A `Write` that keeps everything written.
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

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn stack(
    sink: JsonLinesSink,
    handler: CountingHandler,
) -> guard_core::GuardService<CountingHandler> {
    Guard::builder()
        .audit(AuditLayer::new(sink))
        .ingress(
            IngressLayer::new()
                .methods([Method::POST])
                .max_body_bytes(1024),
        )
        .validate(ValidateLayer::json_only())
        .build()
        .wrap(handler)
}

#[tokio::test]
async fn one_event_per_request_with_the_documented_fields() {
    let out = Captured::default();
    let sink = JsonLinesSink::new(out.clone(), 64);
    let h = CountingHandler::default();
    let mut svc = stack(sink.clone(), h.clone());

    let mut allowed = json_post(b"{\"a\":1}");
    let mut inv = Invocation::new(Cloud::Aws);
    inv.function = Some("shop-orders-prod-intake".into());
    inv.request_id = Some("req-1".into());
    allowed.extensions_mut().insert(inv);
    allowed
        .extensions_mut()
        .insert(Peer::new("203.0.113.9".parse().unwrap()));
    assert_eq!(call(&mut svc, allowed).await.status(), 201);

    let denied = http::Request::get("/").body(Bytes::new()).unwrap();
    assert_eq!(call(&mut svc, denied).await.status(), 405);
    let dup = json_post(br#"{"a":1,"a":2}"#);
    assert_eq!(call(&mut svc, dup).await.status(), 400);

    assert!(sink.flush(Duration::from_secs(5)));
    let text = out.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "exactly one event per request:\n{text}");
    let events: Vec<DocumentedEvent> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(events[0].outcome, "allow");
    assert_eq!(events[0].code, "guard.allow");
    assert_eq!(events[0].status, 201);
    assert_eq!(events[0].cloud, "aws");
    assert_eq!(
        events[0].function.as_deref(),
        Some("shop-orders-prod-intake")
    );
    assert_eq!(events[0].request_id.as_deref(), Some("req-1"));
    assert_eq!(events[0].peer.as_deref(), Some("203.0.113.9"));
    assert_eq!(events[1].outcome, "deny");
    assert_eq!(events[1].code, "guard.ingress.method_not_allowed");
    assert_eq!(events[1].layer, "ingress");
    assert_eq!(events[1].status, 405);
    assert_eq!(events[2].code, "guard.validate.malformed_json");
    assert_eq!(events[2].reason.as_deref(), Some("duplicate key"));
    assert!(events.iter().all(|e| e.event == "guard.decision"));
    assert_eq!(h.calls(), 1);
}

#[tokio::test]
async fn the_library_event_type_matches_the_documented_schema() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let layer = AuditLayer::new(move |e: SecurityEvent| s.lock().unwrap().push(e));
    let mut svc = layer.layer(CountingHandler::default());
    call(&mut svc, json_post(b"{}")).await;
    let event = seen.lock().unwrap()[0].clone();
    let line = serde_json::to_string(&event).unwrap();
    let _: DocumentedEvent = serde_json::from_str(&line).unwrap();
}

#[tokio::test]
async fn newline_and_ansi_in_a_header_make_one_escaped_record() {
    let out = Captured::default();
    let sink = JsonLinesSink::new(out.clone(), 64);
    let mut svc = stack(sink.clone(), CountingHandler::default());
    let mut req = json_post(b"{}");
    // `http` refuses CR/LF in header values, so a newline can only arrive through a value an
    // adapter copies from the event (here the trace header the platform passed in its context).
    assert!(http::HeaderValue::from_bytes(b"a\nb").is_err());
    let mut inv = Invocation::new(Cloud::Aws);
    inv.trace_id = Some("1-abc\n{\"event\":\"forged\"}\u{1b}[31mred".into());
    req.extensions_mut().insert(inv);
    call(&mut svc, req).await;
    assert!(sink.flush(Duration::from_secs(5)));
    let text = out.text();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(!text.contains('\u{1b}'), "raw ESC must not reach the log");
    let e: DocumentedEvent = serde_json::from_str(text.trim_end()).unwrap();
    let trace = e.trace_id.unwrap();
    assert!(!trace.contains('\n') && !trace.contains('\u{1b}'));
    assert!(
        trace.contains("\\u{a}") && trace.contains("\\u{1b}"),
        "{trace}"
    );
    assert_eq!(e.event, "guard.decision");
}

#[tokio::test]
async fn bidi_overrides_and_isolates_are_escaped_not_written_raw() {
    let out = Captured::default();
    let sink = JsonLinesSink::new(out.clone(), 64);
    let mut svc = stack(sink.clone(), CountingHandler::default());
    let mut req = json_post(b"{}");
    let bidi: Vec<char> = ('\u{202a}'..='\u{202e}')
        .chain('\u{2066}'..='\u{2069}')
        .collect();
    let mut inv = Invocation::new(Cloud::Aws);
    inv.trace_id = Some(bidi.iter().map(|c| format!("x{c}")).collect());
    req.extensions_mut().insert(inv);
    call(&mut svc, req).await;
    assert!(sink.flush(Duration::from_secs(5)));
    let text = out.text();
    for c in &bidi {
        assert!(
            !text.contains(*c),
            "raw U+{:04X} reached the log",
            *c as u32
        );
    }
    let e: DocumentedEvent = serde_json::from_str(text.trim_end()).unwrap();
    let trace = e.trace_id.unwrap();
    for c in &bidi {
        let escaped = c.escape_unicode().to_string();
        assert!(trace.contains(&escaped), "{escaped} missing in {trace}");
    }
}

#[tokio::test]
async fn a_non_ascii_trace_header_is_left_out_not_mangled_into_the_record() {
    // `http` refuses control bytes (ESC, CR, LF) in header values; what it does allow beyond
    // visible ASCII (obs-text) is not text, so the trace header is ignored rather than logged.
    assert!(http::HeaderValue::from_bytes(b"\x1b[31m").is_err());
    let out = Captured::default();
    let sink = JsonLinesSink::new(out.clone(), 64);
    let mut svc = stack(sink.clone(), CountingHandler::default());
    let mut req = json_post(b"{}");
    req.headers_mut().insert(
        "x-amzn-trace-id",
        http::HeaderValue::from_bytes(b"Root=1-\xff\xfe\tboom").unwrap(),
    );
    call(&mut svc, req).await;
    assert!(sink.flush(Duration::from_secs(5)));
    let text = out.text();
    assert_eq!(text.lines().count(), 1);
    let e: DocumentedEvent = serde_json::from_str(text.trim_end()).unwrap();
    assert_eq!(e.trace_id, None);
}

#[tokio::test]
async fn authorization_and_other_secret_headers_never_appear() {
    let out = Captured::default();
    let sink = JsonLinesSink::new(out.clone(), 64);
    let mut svc = stack(sink.clone(), CountingHandler::default());
    for body in [&b"{}"[..], b"{\"a\":1,\"a\":1}"] {
        let mut req = json_post(body);
        let h = req.headers_mut();
        h.insert(
            "authorization",
            "Bearer eyJ.SECRET-TOKEN.sig".parse().unwrap(),
        );
        h.insert("cookie", "session=SECRET-COOKIE".parse().unwrap());
        h.insert("x-hub-signature-256", "sha256=SECRET-SIG".parse().unwrap());
        h.insert("x-ms-token-aad-id-token", "SECRET-AAD".parse().unwrap());
        call(&mut svc, req).await;
    }
    assert!(sink.flush(Duration::from_secs(5)));
    let text = out.text();
    assert_eq!(text.lines().count(), 2);
    for needle in [
        "SECRET",
        "Bearer",
        "authorization",
        "Authorization",
        "cookie",
    ] {
        assert!(!text.contains(needle), "`{needle}` leaked into: {text}");
    }
}

#[tokio::test]
async fn a_principal_a_handler_leaves_on_the_response_is_not_recorded() {
    // Only the verification layer can tell the audit layer who was verified: a handler (or any
    // inner layer) putting a `Principal` on its response cannot make the event name someone.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let handler = tower::service_fn(|_req: guard_core::GuardRequest| async {
        let mut r = http::Response::new(Bytes::new());
        r.extensions_mut()
            .insert(Principal::new(PrincipalKind::Hmac, "orders-webhook-hmac"));
        Ok::<_, std::convert::Infallible>(r)
    });
    let mut svc = AuditLayer::new(move |e: SecurityEvent| s.lock().unwrap().push(e)).layer(handler);
    call(&mut svc, json_post(b"{}")).await;
    assert_eq!(seen.lock().unwrap()[0].principal, None);
}

#[tokio::test]
async fn the_verified_principal_is_recorded_without_a_response_extension() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let handler = tower::service_fn(|req: guard_core::GuardRequest| async move {
        // The handler sees the principal on its request...
        let who = req
            .extensions()
            .get::<Principal>()
            .expect("verified principal");
        let peer = req.extensions().get::<Peer>().unwrap().ip();
        assert_eq!(who.subject.ip(), Some(peer));
        Ok::<_, std::convert::Infallible>(http::Response::new(Bytes::new()))
    });
    let mut svc = tower::ServiceBuilder::new()
        .layer(AuditLayer::new(move |e: SecurityEvent| {
            s.lock().unwrap().push(e)
        }))
        .layer(VerifyLayer::new(CidrVerifier::new(["203.0.113.0/24"
            .parse()
            .unwrap()])))
        .service(handler);
    let from = |ip: &str| {
        let mut req = json_post(b"{}");
        req.extensions_mut().insert(Peer::new(ip.parse().unwrap()));
        req
    };
    let resp = call(&mut svc, from("203.0.113.7")).await;
    // ...and nothing is left on the response for the audit layer to read.
    assert!(resp.extensions().get::<Principal>().is_none());
    let refused = call(&mut svc, from("198.51.100.1")).await;
    assert_eq!(refused.status(), 403);
    let allowed_again = call(&mut svc, from("203.0.113.8")).await;
    assert_eq!(allowed_again.status(), 200);
    let events = seen.lock().unwrap();
    let principals: Vec<_> = events.iter().map(|e| e.principal.as_deref()).collect();
    // One event per request, each with its own principal: the refused request records none.
    assert_eq!(
        principals,
        [
            Some("network:203.0.113.7"),
            None,
            Some("network:203.0.113.8")
        ]
    );
}

/// A writer that blocks until released: the audit thread is stuck, the queue fills.
struct Stuck(Arc<(Mutex<bool>, std::sync::Condvar)>);

impl Write for Stuck {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (lock, cv) = &*self.0;
        let mut released = lock.lock().unwrap();
        while !*released {
            released = cv.wait(released).unwrap();
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_stalled_sink_never_stalls_the_handler_and_drops_are_counted() {
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let sink = JsonLinesSink::new(Stuck(gate.clone()), 4);
    let h = CountingHandler::default();
    let mut svc = stack(sink.clone(), h.clone());
    for _ in 0..100 {
        assert_eq!(call(&mut svc, json_post(b"{}")).await.status(), 201);
    }
    assert_eq!(
        h.calls(),
        100,
        "every request was answered while the writer was stuck"
    );
    // At most one queue-full (4) held by the stuck writer plus 4 queued; the rest were dropped
    // and counted.
    assert!(sink.dropped() >= 92, "dropped = {}", sink.dropped());
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    assert!(sink.flush(Duration::from_secs(5)));
    assert_eq!(sink.written() + sink.dropped(), 100);
}

/// A `Write` that takes its time over every line (a slow log pipe).
#[derive(Clone, Default)]
struct SlowCaptured(Captured);

impl Write for SlowCaptured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::thread::sleep(Duration::from_millis(30));
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const NAMED: &str = r#"
[function]
name = "shop-orders-prod-intake"
allow_unverified = true
[ingress]
methods = ["POST"]
"#;

#[tokio::test]
async fn events_carry_the_policy_function_name_over_the_platform_name() {
    let policy = guard_core::Policy::from_toml_str(NAMED).unwrap();
    let seen = Arc::new(Mutex::new(Vec::<SecurityEvent>::new()));
    let s = seen.clone();
    // The layer is replaced (a capturing sink); the policy's name still reaches it.
    let guard = guard_core::GuardBuilder::from_policy(&policy)
        .unwrap()
        .audit(AuditLayer::new(move |e: SecurityEvent| {
            s.lock().unwrap().push(e)
        }))
        .build();
    let mut svc = guard.wrap(CountingHandler::default());
    let mut req = json_post(b"{}");
    let mut inv = Invocation::new(Cloud::Aws);
    inv.function = Some("aws-orders".into());
    req.extensions_mut().insert(inv);
    call(&mut svc, req).await;
    call(&mut svc, json_post(b"{}")).await;

    // Without a policy name, the platform's name is kept.
    let unnamed = guard_core::Policy::from_toml_str("[function]\nallow_unverified = true").unwrap();
    let s = seen.clone();
    let mut plain = guard_core::GuardBuilder::from_policy(&unnamed)
        .unwrap()
        .audit(AuditLayer::new(move |e: SecurityEvent| {
            s.lock().unwrap().push(e)
        }))
        .build()
        .wrap(CountingHandler::default());
    let mut req = json_post(b"{}");
    let mut inv = Invocation::new(Cloud::Aws);
    inv.function = Some("aws-orders".into());
    req.extensions_mut().insert(inv);
    call(&mut plain, req).await;

    let names: Vec<Option<String>> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.function.clone())
        .collect();
    assert_eq!(
        names,
        [
            Some("shop-orders-prod-intake".to_string()),
            Some("shop-orders-prod-intake".to_string()),
            Some("aws-orders".to_string()),
        ]
    );
}

#[tokio::test]
async fn flush_audit_waits_until_every_event_is_written() {
    let policy = guard_core::Policy::from_toml_str(NAMED).unwrap();
    let out = SlowCaptured::default();
    let guard = guard_core::GuardBuilder::from_policy(&policy)
        .unwrap()
        .audit(AuditLayer::new(JsonLinesSink::new(out.clone(), 64)))
        .build();
    let mut svc = guard.wrap(CountingHandler::default());
    for _ in 0..5 {
        call(&mut svc, json_post(b"{}")).await;
    }
    // Five lines at 30 ms each: not written yet when the last answer is back.
    assert!(out.0.text().lines().count() < 5);
    assert!(guard.flush_audit(Duration::from_secs(5)));
    let text = out.0.text();
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(
        text.lines()
            .all(|l| l.contains("\"function\":\"shop-orders-prod-intake\""))
    );
}

/// Captures the raw JSON objects a stack's [`JsonLinesSink`] writes.
fn raw_events(out: &Captured) -> Vec<serde_json::Map<String, serde_json::Value>> {
    out.text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test]
async fn a_cancelled_request_still_writes_exactly_one_event_with_status_499() {
    let out = Captured::default();
    let sink = JsonLinesSink::new(out.clone(), 64);
    let never = tower::service_fn(|_req: guard_core::GuardRequest| {
        std::future::pending::<Result<guard_core::GuardResponse, std::convert::Infallible>>()
    });
    let mut svc = AuditLayer::new(sink.clone()).layer(never);
    let fut = tower::Service::call(&mut svc, json_post(b"{}"));
    // A platform timeout: the response future is dropped before it completes.
    let timed_out = tokio::time::timeout(Duration::from_millis(20), fut).await;
    assert!(timed_out.is_err());
    assert!(sink.flush(Duration::from_secs(5)));
    let events = raw_events(&out);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["status"], 499);
    assert_eq!(events[0]["outcome"], "deny");
    assert_eq!(events[0]["code"], "guard.internal");
    assert_eq!(events[0]["principal"], serde_json::Value::Null);
}

#[tokio::test]
async fn an_inner_service_error_writes_exactly_one_event_with_status_500() {
    let out = Captured::default();
    let sink = JsonLinesSink::new(out.clone(), 64);
    let failing = tower::service_fn(|_req: guard_core::GuardRequest| async {
        Err::<guard_core::GuardResponse, _>(std::io::Error::other("backend exploded"))
    });
    let svc = AuditLayer::new(sink.clone()).layer(failing);
    let result = tower::ServiceExt::oneshot(svc, json_post(b"{}")).await;
    assert!(result.is_err(), "the inner error passes through unchanged");
    assert!(sink.flush(Duration::from_secs(5)));
    let events = raw_events(&out);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["status"], 500);
    assert_eq!(events[0]["code"], "guard.internal");
    assert!(
        !out.text().contains("backend exploded"),
        "the error text is not logged"
    );
}

#[tokio::test]
async fn max_field_len_caps_a_10_kb_trace_id() {
    let out = Captured::default();
    let sink = JsonLinesSink::new(out.clone(), 64);
    let mut svc = AuditLayer::new(sink.clone())
        .max_field_len(64)
        .layer(CountingHandler::default());
    let mut req = json_post(b"{}");
    let mut inv = Invocation::new(Cloud::Aws);
    inv.trace_id = Some("t".repeat(10 * 1024));
    req.extensions_mut().insert(inv);
    call(&mut svc, req).await;
    assert!(sink.flush(Duration::from_secs(5)));
    let events = raw_events(&out);
    let trace = events[0]["trace_id"].as_str().unwrap();
    assert_eq!(trace, format!("{}…", "t".repeat(64)));
    assert!(out.text().len() < 1024, "the whole line stays small");
}

/// An output that refuses every write (a closed pipe, a full disk).
#[derive(Clone, Default)]
struct Broken;

impl Write for Broken {
    fn write(&mut self, _buf: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            "closed",
        ))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Err(std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            "closed",
        ))
    }
}

#[tokio::test]
async fn a_sink_whose_writer_always_fails_counts_failures_not_written() {
    let sink = JsonLinesSink::new(Broken, 64);
    let mut svc = stack(sink.clone(), CountingHandler::default());
    for _ in 0..3 {
        call(&mut svc, json_post(b"{}")).await;
    }
    assert!(
        sink.flush(Duration::from_secs(5)),
        "failed events are not left pending"
    );
    assert_eq!(sink.written(), 0);
    assert_eq!(sink.failed(), 3);
}

#[tokio::test]
async fn every_event_has_exactly_the_documented_keys_nulls_included() {
    let out = Captured::default();
    let sink = JsonLinesSink::new(out.clone(), 64);
    let mut svc = stack(sink.clone(), CountingHandler::default());
    // A bare request: every optional field is null, and still present.
    call(&mut svc, json_post(b"{}")).await;
    assert!(sink.flush(Duration::from_secs(5)));
    let events = raw_events(&out);
    let keys: Vec<&str> = events[0].keys().map(String::as_str).collect();
    let mut expected = [
        "event",
        "outcome",
        "code",
        "status",
        "layer",
        "reason",
        "cloud",
        "function",
        "request_id",
        "trace_id",
        "trigger",
        "source_id",
        "peer",
        "principal",
        "latency_us",
    ];
    expected.sort_unstable();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(keys, expected);
    for nullable in [
        "reason",
        "function",
        "request_id",
        "trace_id",
        "source_id",
        "peer",
        "principal",
    ] {
        assert_eq!(events[0][nullable], serde_json::Value::Null, "{nullable}");
    }
}
