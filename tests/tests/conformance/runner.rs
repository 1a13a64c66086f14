//! Reads the cases, runs each through every envelope on a fresh stack, and renders the
//! case × envelope table.

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use guard_core::Policy;
use guard_core::audit::SecurityEvent;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

pub(crate) use crate::envelopes::Tamper;
use crate::envelopes::{self, Cloud, Envelope, Request};
use crate::orders::{API_KEY, WEBHOOK_KEY, fixture, order, policy, push_tokens, root};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cases {
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default = "all")]
    applies_to: String,
    body: Option<String>,
    body_size: Option<usize>,
    body_depth: Option<usize>,
    #[serde(default = "post")]
    method: String,
    content_type: Option<String>,
    content_length: Option<u64>,
    #[serde(default = "partner")]
    peer: String,
    forwarded: Option<String>,
    signature: Option<String>,
    #[serde(default = "allowed")]
    source: String,
    #[serde(default = "all")]
    secrets: String,
    #[serde(default = "one")]
    times: usize,
    before_status: Option<u16>,
    status: u16,
    code: String,
    #[serde(default)]
    retry_after: bool,
    handler_called: Option<bool>,
}

fn all() -> String {
    "all".into()
}
fn post() -> String {
    "POST".into()
}
fn partner() -> String {
    "203.0.113.10".into()
}
fn allowed() -> String {
    "allowed".into()
}
fn one() -> usize {
    1
}

impl Case {
    fn applies(&self, envelope: Envelope) -> bool {
        match self.applies_to.as_str() {
            "http" => !envelope.is_message(),
            "message" => envelope.is_message(),
            "all" => true,
            other => panic!("{}: applies_to = {other:?}", self.name),
        }
    }

    fn body(&self) -> Vec<u8> {
        if let Some(size) = self.body_size {
            // {"pad":"xxx…"} of exactly `size` bytes.
            let pad = size.saturating_sub(r#"{"pad":""}"#.len());
            return format!(r#"{{"pad":"{}"}}"#, "x".repeat(pad)).into_bytes();
        }
        if let Some(depth) = self.body_depth {
            return format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes();
        }
        match self.body.as_deref() {
            None | Some("@order") => order(),
            Some(text) => text.as_bytes().to_vec(),
        }
    }

    /// The client's request for send number `seq`; a signature is computed once per case so that
    /// repeated sends replay it.
    fn request(&self, seq: usize, signature: Option<&(String, Vec<u8>)>) -> Request {
        let mut body = self.body();
        let mut headers = Vec::new();
        match self.content_type.as_deref() {
            None => headers.push(("Content-Type".into(), "application/json".into())),
            Some("") => {}
            Some(ct) => headers.push(("Content-Type".into(), ct.into())),
        }
        if let Some((value, sent_body)) = signature {
            headers.push(("X-Guard-Signature".into(), value.clone()));
            body = sent_body.clone();
        }
        let length = self.content_length.unwrap_or(body.len() as u64);
        if !(self.method == "GET" && body.is_empty()) {
            headers.push(("Content-Length".into(), length.to_string()));
        }
        Request {
            method: self.method.clone(),
            headers,
            peer: self.peer.clone(),
            forwarded: self.forwarded.clone(),
            body,
            allowed_source: match self.source.as_str() {
                "allowed" => true,
                "foreign" => false,
                other => panic!("{}: source = {other:?}", self.name),
            },
            seq,
        }
    }

    /// `(header value, body actually sent)` for the case's signature kind.
    fn signature(&self) -> Option<(String, Vec<u8>)> {
        let kind = self.signature.as_deref()?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let body = self.body();
        let sign = |t: u64, bytes: &[u8]| {
            let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_KEY.as_bytes()).unwrap();
            mac.update(format!("{t}.").as_bytes());
            mac.update(bytes);
            format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
        };
        Some(match kind {
            "valid" => (sign(now, &body), body),
            "stale" => (sign(now - 600, &body), body),
            "future" => (sign(now + 600, &body), body),
            "tampered" => {
                let sent = String::from_utf8(body.clone())
                    .unwrap()
                    .replace("\"qty\":2", "\"qty\":20")
                    .into_bytes();
                assert_ne!(sent, body, "{}: nothing to tamper with", self.name);
                (sign(now, &body), sent)
            }
            "reserialised" => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let sent = serde_json::to_vec_pretty(&v).unwrap();
                (sign(now, &body), sent)
            }
            "garbage" => (format!("t={now},v1=zz-not-hex-{}", "a".repeat(40)), body),
            other => panic!("{}: signature = {other:?}", self.name),
        })
    }
}

fn load_cases() -> Vec<Case> {
    let path = root().join("conformance/cases.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let cases: Cases = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    cases.case
}

// --------------------------------------------------------------------------------- the run

/// One (case, envelope) outcome: the verdict of the last send and what was wrong.
struct Cell {
    verdict: String,
    problems: Vec<String>,
}

pub(crate) struct Report {
    pub(crate) cases: usize,
    pub(crate) envelopes: usize,
    pub(crate) runs: usize,
    pub(crate) differences: usize,
    pub(crate) table: String,
}

/// `403 verify.forbidden_address`: the status and the code without its `guard.` prefix.
fn short(status: u16, code: &str) -> String {
    format!("{status} {}", code.strip_prefix("guard.").unwrap_or(code))
}

async fn run_one(case: &Case, envelope: Envelope, policy: &Policy, tamper: Option<Tamper>) -> Cell {
    let f = fixture(policy, &case.secrets);
    let signature = case.signature();
    let mut problems = Vec::new();
    let mut verdict = String::new();
    for seq in 0..case.times {
        let last = seq + 1 == case.times;
        let req = case.request(seq, signature.as_ref());
        let calls_before = f.calls.load(Ordering::SeqCst);
        let observed = envelopes::send(
            envelope,
            &req,
            f.stack.clone(),
            policy,
            push_tokens(),
            tamper,
        )
        .await;
        let handler_ran = f.calls.load(Ordering::SeqCst) > calls_before;
        for secret in [WEBHOOK_KEY, API_KEY] {
            if observed.raw.contains(secret) {
                problems.push("a secret in the answer".into());
            }
        }
        let events: Vec<SecurityEvent> = std::mem::take(&mut *f.events.lock().unwrap());
        let step = if case.times > 1 {
            format!("send {}: ", seq + 1)
        } else {
            String::new()
        };
        let [event] = events.as_slice() else {
            problems.push(format!("{step}{} security events", events.len()));
            verdict = "?".into();
            continue;
        };
        // The client's (or the reply's) status and code where the envelope shows them; an SQS
        // verdict and a message acknowledgement show neither, so the decision's own are the verdict.
        let (status, code) = match observed.status {
            None => (event.status, event.code.clone()),
            Some(status) => (
                status,
                observed.code.clone().unwrap_or_else(|| {
                    if (200..300).contains(&status) {
                        guard_core::audit::ALLOW_CODE.to_owned()
                    } else {
                        "(no problem body)".to_owned()
                    }
                }),
            ),
        };
        if event.status != status || event.code != code {
            problems.push(format!(
                "{step}event {} != answer {}",
                short(event.status, &event.code),
                short(status, &code)
            ));
        }
        if let Some(acked) = observed.acked {
            let accepted = (200..300).contains(&event.status);
            if acked != accepted {
                problems.push(format!(
                    "{step}{} a {} decision",
                    if acked { "acked!" } else { "nacked" },
                    event.status
                ));
            }
        }
        let (want_status, want_code) = if last {
            (case.status, case.code.clone())
        } else {
            (
                case.before_status.unwrap_or(201),
                guard_core::audit::ALLOW_CODE.to_owned(),
            )
        };
        if (status, code.as_str()) != (want_status, want_code.as_str()) {
            problems.push(format!("{step}{} expected", short(want_status, &want_code)));
        }
        if last {
            if case.retry_after && !envelope.is_message() && !observed.retry_after {
                problems.push("no Retry-After".into());
            }
            let want_called = case
                .handler_called
                .unwrap_or((200..300).contains(&case.status));
            if handler_ran != want_called {
                problems.push(format!("handler called: {handler_ran}"));
            }
            verdict = short(status, &code);
            if observed.acked == Some(true) && !(200..300).contains(&event.status) {
                verdict = format!("{verdict} acked!");
            }
        }
    }
    Cell { verdict, problems }
}

/// Runs every case through every envelope (with `tamper` breaking one of them) and renders the
/// table: one row per case, one column per envelope, `!` before each cell that differs from the
/// expected verdict, and the problems below.
pub(crate) async fn run_suite(tamper: Option<Tamper>) -> Report {
    let cases = load_cases();
    let policies = [
        (Cloud::Aws, policy(Cloud::Aws)),
        (Cloud::Azure, policy(Cloud::Azure)),
        (Cloud::Gcp, policy(Cloud::Gcp)),
    ];
    let mut rows = Vec::new();
    let mut runs = 0;
    let mut differences = 0;
    for case in &cases {
        let mut cells = Vec::new();
        for envelope in envelopes::ALL {
            if !case.applies(envelope) {
                cells.push(None);
                continue;
            }
            let policy = &policies
                .iter()
                .find(|(c, _)| *c == envelope.cloud())
                .unwrap()
                .1;
            let cell = run_one(case, envelope, policy, tamper).await;
            runs += 1;
            if !cell.problems.is_empty() {
                differences += 1;
            }
            cells.push(Some(cell));
        }
        rows.push((case, cells));
    }
    Report {
        cases: cases.len(),
        envelopes: envelopes::ALL.len(),
        runs,
        differences,
        table: render(&rows),
    }
}

fn render(rows: &[(&Case, Vec<Option<Cell>>)]) -> String {
    let name_width = rows
        .iter()
        .map(|(c, _)| c.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut widths: Vec<usize> = envelopes::ALL.iter().map(|e| e.name().len()).collect();
    for (_, cells) in rows {
        for (i, cell) in cells.iter().enumerate() {
            if let Some(c) = cell {
                widths[i] = widths[i].max(c.verdict.len() + 1);
            }
        }
    }
    let expected_width = rows
        .iter()
        .map(|(c, _)| short(c.status, &c.code).len())
        .max()
        .unwrap_or(8);
    let mut out = String::new();
    out.push_str(&format!(
        "{:name_width$} | {:expected_width$}",
        "case", "expected"
    ));
    for (i, e) in envelopes::ALL.iter().enumerate() {
        out.push_str(&format!(" | {:w$}", e.name(), w = widths[i]));
    }
    out.push('\n');
    let mut notes = Vec::new();
    for (case, cells) in rows {
        out.push_str(&format!(
            "{:name_width$} | {:expected_width$}",
            case.name,
            short(case.status, &case.code)
        ));
        for (i, cell) in cells.iter().enumerate() {
            let text = match cell {
                None => "-".to_owned(),
                Some(c) if c.problems.is_empty() => c.verdict.clone(),
                Some(c) => {
                    notes.push(format!(
                        "  {} × {}: {}",
                        case.name,
                        envelopes::ALL[i].name(),
                        c.problems.join("; ")
                    ));
                    format!("!{}", c.verdict)
                }
            };
            out.push_str(&format!(" | {:w$}", text, w = widths[i]));
        }
        out.push('\n');
    }
    if !notes.is_empty() {
        out.push_str(&format!(
            "\n{} differences:\n{}\n",
            notes.len(),
            notes.join("\n")
        ));
    }
    out
}
