//! The adversarial catalogue: hostile inputs, each named for what it proves, sent through the
//! native envelopes of all three adapters (AWS, Azure, GCP) around the orders function, built as
//! the conformance suite builds it. Every refusal must have
//!
//! - the expected status and stable `code` (where the envelope shows them, and in the event),
//! - the handler not called,
//! - exactly one security event, with no raw control or bidirectional character in any field,
//! - no secret, token, signature or key bytes in any captured output: the security events, the
//!   tracing logs, and the native answer (status, headers and body).
//!
//! Cases are grouped by concern: `json` (bodies), `signatures` (HMAC), `tokens` (JWT), `sns`,
//! `headers` (forwarded addresses, header floods, Easy Auth), `messages` (Pub/Sub bombs, log
//! injection) and `defects` (one case per defect issue 16 found).

#[path = "../conformance/envelopes.rs"]
mod envelopes;
#[path = "../conformance/orders.rs"]
mod orders;

mod defects;
mod headers;
mod json;
mod messages;
mod signatures;
mod sns;
mod tokens;

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};

use guard_core::Policy;
use guard_core::audit::{Outcome, SecurityEvent};

use envelopes::{Envelope, Observed, PushTokens, Request};
use orders::{API_KEY, Fixture, WEBHOOK_KEY};

/// Every tracing line written by the process (all levels), for the leak check.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        logs
    })
}

/// What the process logged so far.
fn log_text() -> String {
    String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned()
}

/// What one hostile input produced in one envelope.
struct Seen {
    /// Where it was sent (the envelope's name).
    place: String,
    /// The adapter's native answer, read back.
    observed: Observed,
    /// Handler calls it caused.
    calls: usize,
    /// The security events it caused.
    events: Vec<SecurityEvent>,
    /// A message (its refusal must be reported to the platform as not done).
    message: bool,
}

impl Seen {
    /// Collects the calls and events `f` recorded since `calls_before`.
    fn collect(place: &str, observed: Observed, f: &Fixture, calls_before: usize) -> Self {
        Seen {
            place: place.to_owned(),
            message: observed.acked.is_some(),
            observed,
            calls: f.calls.load(Ordering::SeqCst) - calls_before,
            events: std::mem::take(&mut *f.events.lock().unwrap()),
        }
    }
}

/// The bytes that must never be written anywhere: the two secrets of the orders function, the
/// push signing key, and whatever credentials the case itself sent (`extra`).
fn secrets(extra: &[String]) -> Vec<String> {
    let pem = String::from_utf8(orders::private_key_pem()).unwrap();
    // A line from the middle of the key's base64 body.
    let key_line = pem.lines().nth(5).unwrap().to_owned();
    let mut all = vec![WEBHOOK_KEY.to_owned(), API_KEY.to_owned(), key_line];
    all.extend(extra.iter().filter(|s| s.len() >= 8).cloned());
    all
}

/// Whether `s` holds a raw control character, line separator or bidirectional formatting
/// character: what a log line must never carry from a request.
fn has_raw_control(s: &str) -> bool {
    s.chars().any(|c| {
        c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}')
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    })
}

/// The problems with `seen` for a refusal `(status, code)`; empty when it holds.
fn refusal_problems(seen: &Seen, status: u16, code: &str, extra_secrets: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let at = &seen.place;
    if seen.calls != 0 {
        problems.push(format!("{at}: the handler ran {} time(s)", seen.calls));
    }
    match seen.events.as_slice() {
        [event] => {
            if event.outcome != Outcome::Deny || event.status != status || event.code != code {
                problems.push(format!(
                    "{at}: event {:?} {} {}, expected deny {status} {code}",
                    event.outcome, event.status, event.code
                ));
            }
        }
        events => problems.push(format!("{at}: {} security events", events.len())),
    }
    let o = &seen.observed;
    if let Some(s) = o.status
        && s != status
    {
        problems.push(format!("{at}: answered {s}, expected {status}"));
    }
    if let Some(c) = &o.code
        && c != code
    {
        problems.push(format!("{at}: answered code {c}, expected {code}"));
    }
    if seen.message && o.acked != Some(false) {
        problems.push(format!("{at}: a refused message was acknowledged"));
    }
    problems.extend(hygiene_problems(seen, extra_secrets));
    problems
}

/// No secret anywhere, no raw control character in an event.
fn hygiene_problems(seen: &Seen, extra_secrets: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let at = &seen.place;
    let events: Vec<String> = seen
        .events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    let logs = log_text();
    for secret in secrets(extra_secrets) {
        let short = &secret[..8.min(secret.len())];
        if seen.observed.raw.contains(&secret) {
            problems.push(format!("{at}: secret {short}… in the answer"));
        }
        if events.iter().any(|e| e.contains(&secret)) {
            problems.push(format!("{at}: secret {short}… in a security event"));
        }
        if logs.contains(&secret) {
            problems.push(format!("{at}: secret {short}… in the logs"));
        }
    }
    for e in &seen.events {
        let fields = [
            Some(&e.code),
            Some(&e.layer),
            e.reason.as_ref(),
            Some(&e.cloud),
            e.function.as_ref(),
            e.request_id.as_ref(),
            e.trace_id.as_ref(),
            Some(&e.trigger),
            e.source_id.as_ref(),
            e.peer.as_ref(),
            e.principal.as_ref(),
        ];
        if fields.into_iter().flatten().any(|f| has_raw_control(f)) {
            problems.push(format!("{at}: a raw control character in the event {e:?}"));
        }
    }
    problems
}

/// Asserts the refusal in every envelope, listing every problem at once.
#[track_caller]
fn assert_refused(case: &str, seen: &[Seen], status: u16, code: &str, extra_secrets: &[String]) {
    assert!(!seen.is_empty(), "{case}: sent nowhere");
    let problems: Vec<String> = seen
        .iter()
        .flat_map(|s| refusal_problems(s, status, code, extra_secrets))
        .collect();
    assert!(problems.is_empty(), "{case}:\n  {}", problems.join("\n  "));
}

/// Sends `req` through `envelopes` of the orders policy (one fresh stack each), with the push
/// tokens `tokens` on GCP messages (the valid ones when `None`).
async fn through(
    envelopes: &[Envelope],
    req: &Request,
    tokens: Option<&PushTokens>,
    policy_of: impl Fn(envelopes::Cloud) -> Policy,
) -> Vec<Seen> {
    let mut out = Vec::new();
    for &envelope in envelopes {
        let policy = policy_of(envelope.cloud());
        let f = orders::fixture(&policy, "all");
        out.push(send_to(&f, envelope, req, &policy, tokens).await);
    }
    out
}

/// Sends `req` through one envelope to an existing fixture.
async fn send_to(
    f: &Fixture,
    envelope: Envelope,
    req: &Request,
    policy: &Policy,
    tokens: Option<&PushTokens>,
) -> Seen {
    logs();
    let before = f.calls.load(Ordering::SeqCst);
    let observed = envelopes::send(
        envelope,
        req,
        f.stack.clone(),
        policy,
        tokens.unwrap_or_else(|| orders::push_tokens()),
        None,
    )
    .await;
    let mut seen = Seen::collect(envelope.name(), observed, f, before);
    seen.message = envelope.is_message();
    seen
}

/// The envelopes a client's HTTP request arrives in.
const HTTP: [Envelope; 7] = [
    Envelope::ApiGatewayV1,
    Envelope::ApiGatewayV2,
    Envelope::FunctionUrl,
    Envelope::Alb,
    Envelope::AzureInvocation,
    Envelope::AzureProxy,
    Envelope::GcpHttp,
];

/// The envelopes that carry the body's bytes as they are (base64 or raw), not as JSON text.
const BYTES: [Envelope; 6] = [
    Envelope::ApiGatewayV2,
    Envelope::FunctionUrl,
    Envelope::AzureProxy,
    Envelope::GcpHttp,
    Envelope::GcpPubSub,
    Envelope::GcpEvents,
];

/// A partner caller's order (`body`), as JSON.
fn request(body: Vec<u8>) -> Request {
    Request {
        method: "POST".into(),
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            ("Content-Length".into(), body.len().to_string()),
        ],
        peer: "203.0.113.10".into(),
        forwarded: None,
        body,
        allowed_source: true,
        seq: 0,
    }
}

/// An outside caller's request (not on the address allow-list).
fn outside(body: Vec<u8>) -> Request {
    Request {
        peer: "192.0.2.77".into(),
        ..request(body)
    }
}
