//! [`SecurityEvent`]: the one record written per decision.

use serde::{Deserialize, Serialize};

/// Allowed through the perimeter, or refused by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Every check passed; the handler ran.
    Allow,
    /// A layer refused the request; the handler did not run.
    Deny,
}

/// The security event: a fixed field set on target `guard::security`, one per request.
///
/// Strings that come from the request (trace id, source, principal, function name...) are
/// length-capped and stripped of control characters before they get here. Headers are never
/// recorded, so `Authorization`, cookies and signatures cannot leak through this record.
///
/// ```
/// use guard_core::audit::{Outcome, SecurityEvent};
/// let line = r#"{"event":"guard.decision","outcome":"deny","code":"guard.rate.limited","status":429,
///   "layer":"rate_limit","reason":null,"cloud":"aws","function":"f","request_id":"r","trace_id":null,
///   "trigger":"http","source_id":null,"peer":"203.0.113.9","principal":null,"latency_us":12}"#;
/// let e: SecurityEvent = serde_json::from_str(line).unwrap();
/// assert_eq!(e.outcome, Outcome::Deny);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityEvent {
    /// Always `guard.decision`.
    pub event: String,
    /// `allow` or `deny`.
    pub outcome: Outcome,
    /// The rejection code, or `guard.allow`.
    pub code: String,
    /// The HTTP status returned (the handler's when allowed).
    pub status: u16,
    /// The layer that decided (`ingress`, `verify`, ...) or `handler` when allowed.
    pub layer: String,
    /// The internal reason a layer gave for a denial (never values or secrets).
    pub reason: Option<String>,
    /// `aws`, `azure`, `gcp` or `local`.
    pub cloud: String,
    /// The function name, when the adapter knows it.
    pub function: Option<String>,
    /// The platform request id.
    pub request_id: Option<String>,
    /// Trace id from the platform or `traceparent` / `X-Amzn-Trace-Id` / `X-Cloud-Trace-Context`.
    pub trace_id: Option<String>,
    /// `http`, `direct` or the message kind (`sqs`, `pubsub`...).
    pub trigger: String,
    /// The message source (ARN / topic / subscription).
    pub source_id: Option<String>,
    /// The platform-observed client address.
    pub peer: Option<String>,
    /// `kind:subject` of the verified principal.
    pub principal: Option<String>,
    /// Time spent inside the perimeter and handler, in microseconds.
    pub latency_us: u64,
}

/// Event name of every decision record.
pub(crate) const DECISION_EVENT: &str = "guard.decision";
/// Code recorded for allowed requests.
pub(crate) const ALLOW_CODE: &str = "guard.allow";

impl SecurityEvent {
    /// The `code` of an allowed request's event.
    pub const ALLOW_CODE: &str = ALLOW_CODE;
}

/// Caps `s` at `max` bytes (on a character boundary, marking the cut with `…`) and replaces
/// control characters (newlines, ANSI escapes...), line separators and the bidirectional
/// formatting characters (U+200E/F marks, U+202A–U+202E embeddings and overrides, U+2066–U+2069
/// isolates: they reorder what a log viewer shows) with their `\u{..}` spelling.
pub(crate) fn sanitize(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max) + 4);
    for c in s.chars() {
        if out.len() >= max {
            out.push('…');
            break;
        }
        if c.is_control() || is_layout_control(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Characters that are not `char::is_control` but still change how a line is laid out or read:
/// line and paragraph separators and the bidirectional marks, embeddings, overrides and isolates.
fn is_layout_control(c: char) -> bool {
    matches!(
        c,
        '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn sanitize_escapes_control_and_bidi_characters_and_caps_the_length() {
        assert_eq!(sanitize("a\nb\x1b[31m", 64), "a\\u{a}b\\u{1b}[31m");
        assert_eq!(sanitize("abcdef", 3), "abc…");
        assert_eq!(sanitize("ok\u{202e}gnp.exe", 64), "ok\\u{202e}gnp.exe");
    }
}
