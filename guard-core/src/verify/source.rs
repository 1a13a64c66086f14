//! [`SourceVerifier`]: platform messages must come from a listed queue / topic / subscription.

use std::sync::Arc;

use crate::ConfigError;
use crate::rejection::{Rejection, RejectionKind};
use crate::request::{GuardRequest, Principal, PrincipalKind, Trigger};

/// Longest pattern or source id considered (longer source ids never match).
const MAX_LEN: usize = 2048;

/// One allow-list entry: segments separated by `:` or `/`, where a segment that is exactly `*`
/// matches any one non-empty segment (never a separator, so `*` cannot span `:` or `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourcePattern {
    text: String,
}

impl SourcePattern {
    /// Parses a pattern. A `*` inside a segment (`orders-*`) and `**` are refused: the wildcard is
    /// a whole segment or nothing, so what it can match stays obvious.
    pub(crate) fn parse(text: &str) -> Result<Self, ConfigError> {
        if text.is_empty() || text.len() > MAX_LEN {
            return Err(ConfigError::InvalidSourcePattern {
                pattern: text.chars().take(64).collect(),
                reason: "must be 1 to 2048 characters",
            });
        }
        for seg in text.split([':', '/']) {
            if seg.contains('*') && seg != "*" {
                return Err(ConfigError::InvalidSourcePattern {
                    pattern: text.chars().take(64).collect(),
                    reason: "`*` must be a whole segment between `:` or `/`",
                });
            }
        }
        Ok(Self { text: text.into() })
    }

    /// Whether `source` matches, segment by segment (separators must be identical).
    pub(crate) fn matches(&self, source: &str) -> bool {
        if source.len() > MAX_LEN {
            return false;
        }
        let mut pat = Tokens::new(&self.text);
        let mut src = Tokens::new(source);
        loop {
            match (pat.next(), src.next()) {
                (None, None) => return true,
                (Some(Token::Sep(a)), Some(Token::Sep(b))) if a == b => {}
                (Some(Token::Seg("*")), Some(Token::Seg(s))) if !s.is_empty() => {}
                (Some(Token::Seg(p)), Some(Token::Seg(s))) if p == s && p != "*" => {}
                _ => return false,
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Token<'a> {
    Seg(&'a str),
    Sep(char),
}

/// Alternating segments and separators: `a:b/c` → `a` `:` `b` `/` `c`; `a::b` has an empty segment.
struct Tokens<'a> {
    rest: &'a str,
    want_segment: bool,
    done: bool,
}

impl<'a> Tokens<'a> {
    fn new(s: &'a str) -> Self {
        Self {
            rest: s,
            want_segment: true,
            done: false,
        }
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        if self.done {
            return None;
        }
        if self.want_segment {
            self.want_segment = false;
            let end = self.rest.find([':', '/']).unwrap_or(self.rest.len());
            let (seg, rest) = self.rest.split_at(end);
            self.rest = rest;
            if rest.is_empty() {
                self.done = true;
            }
            Some(Token::Seg(seg))
        } else {
            self.want_segment = true;
            let c = self.rest.chars().next()?;
            self.rest = &self.rest[c.len_utf8()..];
            Some(Token::Sep(c))
        }
    }
}

/// Accepts [`Trigger::Message`] requests whose `source_id` (the ARN / topic / subscription the
/// platform reported) matches a pattern listed **for the message's kind** (`sqs`, `sns`,
/// `eventbridge`, `kinesis`, `pubsub`, `azure-queue`, ...): an SQS queue's ARN never admits a
/// Kinesis record, and an Azure queue named `orders` never admits an EventBridge event whose
/// `source` is `orders`. A kind with no entries admits nothing. Anything else — another source, an
/// HTTP request, no trigger at all — is 403 `guard.verify.forbidden_source`. The principal is
/// `PrincipalKind::Source` with the source id as subject and the message kind as issuer.
#[derive(Debug, Clone)]
pub(crate) struct SourceVerifier {
    entries: Arc<[(Box<str>, SourcePattern)]>,
}

/// A trigger kind as written in the policy: 1 to 64 of `a-z`, `0-9`, `_`, `-`.
fn kind_ok(kind: &str) -> bool {
    (1..=64).contains(&kind.len())
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl SourceVerifier {
    /// Allows messages of each `(kind, pattern)` pair's kind from sources matching its pattern;
    /// every bad kind or pattern is an error.
    pub(crate) fn new<I, K, P>(entries: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, P)>,
        K: AsRef<str>,
        P: AsRef<str>,
    {
        let entries = entries
            .into_iter()
            .map(|(k, p)| {
                let kind = k.as_ref();
                if !kind_ok(kind) {
                    return Err(ConfigError::InvalidSourceKind(
                        kind.chars().take(64).collect(),
                    ));
                }
                Ok((kind.into(), SourcePattern::parse(p.as_ref())?))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            entries: entries.into(),
        })
    }

    fn check(&self, req: &GuardRequest) -> Result<Principal, Rejection> {
        let forbidden =
            |why: &'static str| Rejection::new(RejectionKind::ForbiddenSource).with_reason(why);
        let Some(Trigger::Message(m)) = req.extensions().get::<Trigger>() else {
            return Err(forbidden("not a platform message"));
        };
        let listed = self
            .entries
            .iter()
            .any(|(kind, p)| **kind == *m.kind && p.matches(&m.source_id));
        if listed {
            Ok(Principal::new(PrincipalKind::Source, m.source_id.clone())
                .with_issuer(m.kind.clone()))
        } else {
            Err(forbidden(
                "message source not on the allow-list for its trigger kind",
            ))
        }
    }
}

crate::macros::verifier_from_check!(SourceVerifier);

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        SourcePattern::parse(p).unwrap().matches(s)
    }

    #[test]
    fn exact_patterns_match_only_themselves() {
        let arn = "arn:aws:sqs:us-east-1:123456789012:orders";
        assert!(m(arn, arn));
        assert!(!m(arn, "arn:aws:sqs:us-east-1:123456789012:orders2"));
        assert!(!m(arn, "arn:aws:sqs:us-east-1:123456789012"));
        assert!(!m(arn, "arn:aws:sqs:us-east-1:123456789012:orders:x"));
    }

    #[test]
    fn star_matches_exactly_one_non_empty_segment() {
        assert!(m("arn:aws:sqs:*:1:q", "arn:aws:sqs:eu-west-1:1:q"));
        assert!(!m("arn:aws:sqs:*:1:q", "arn:aws:sqs::1:q"));
        assert!(!m("arn:aws:sqs:*:1:q", "arn:aws:sqs:a:b:1:q"));
        assert!(!m(
            "projects/p/subscriptions/*",
            "projects/p/subscriptions/a/b"
        ));
        assert!(!m(
            "projects/p/subscriptions/*",
            "projects/p/subscriptions:x"
        ));
        // A literal `*` in the source is just a segment for an exact pattern, never a wildcard.
        assert!(!m("a:b", "a:*"));
    }

    #[test]
    fn separators_must_be_identical() {
        assert!(!m("a:b", "a/b"));
        assert!(m("arn:aws:s3:::bucket", "arn:aws:s3:::bucket"));
    }

    fn message(kind: &str, source: &str) -> GuardRequest {
        let mut req = http::Request::new(bytes::Bytes::new());
        req.extensions_mut()
            .insert(Trigger::Message(crate::request::MessageTrigger::new(
                kind, source, "m-1",
            )));
        req
    }

    #[test]
    fn entries_admit_only_messages_of_their_own_kind() {
        let arn = "arn:aws:sqs:us-east-1:123456789012:orders";
        let v = SourceVerifier::new([("sqs", arn), ("azure-queue", "orders")]).unwrap();
        assert!(v.check(&message("sqs", arn)).is_ok());
        assert!(v.check(&message("azure-queue", "orders")).is_ok());
        // The same source ids under another kind, and a kind with no entries: refused.
        for (kind, source) in [
            ("eventbridge", "orders"),
            ("kinesis", arn),
            ("sns", arn),
            ("sqs", "orders"),
            ("azure-queue", arn),
        ] {
            let r = v.check(&message(kind, source)).unwrap_err();
            assert_eq!(r.kind(), RejectionKind::ForbiddenSource, "{kind} {source}");
        }
    }

    #[test]
    fn bad_kinds_are_refused() {
        for kind in ["", "SQS", "sqs queue", &"k".repeat(65)] {
            assert!(SourceVerifier::new([(kind, "q")]).is_err(), "{kind:?}");
        }
    }

    #[test]
    fn partial_wildcards_are_refused() {
        assert!(SourcePattern::parse("orders-*").is_err());
        assert!(SourcePattern::parse("a:**").is_err());
        assert!(SourcePattern::parse("").is_err());
    }
}

#[cfg(test)]
mod a_wildcard_is_a_whole_segment_example {
    #[test]
    fn a_wildcard_is_a_whole_segment() {
        use super::SourcePattern;
        let p = SourcePattern::parse("arn:aws:sqs:*:123456789012:orders").unwrap();
        assert!(p.matches("arn:aws:sqs:eu-west-1:123456789012:orders"));
        assert!(!p.matches("arn:aws:sqs:eu-west-1:123456789012:orders-dlq"));
        assert!(SourcePattern::parse("arn:aws:sqs:*:*:orders-*").is_err());
    }
}

#[cfg(test)]
mod sources_are_scoped_by_message_kind_example {
    #[test]
    fn sources_are_scoped_by_message_kind() {
        use super::SourceVerifier;
        use crate::request::{MessageTrigger, Trigger};
        use crate::verify::Verifier;

        let v = SourceVerifier::new([("pubsub", "projects/shop-prod/subscriptions/*")]).unwrap();
        let message = |kind: &str| {
            let mut req = http::Request::new(bytes::Bytes::new());
            req.extensions_mut()
                .insert(Trigger::Message(MessageTrigger::new(
                    kind,
                    "projects/shop-prod/subscriptions/orders-push",
                    "1",
                )));
            req
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(
            rt.block_on(v.verify(&message("pubsub"))).unwrap().subject,
            "projects/shop-prod/subscriptions/orders-push"
        );
        assert!(rt.block_on(v.verify(&message("eventarc"))).is_err()); // listed for another kind
    }
}
