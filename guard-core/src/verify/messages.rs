//! The verifier for messages (queue, topic and push triggers): source allow-list, push tokens and
//! the checks an adapter adds per message kind.

use super::jwt::JwtVerifier;
use super::layer::{BoxVerifier, Verifier, VerifyFuture};
use super::source::SourceVerifier;
use crate::request::{GuardRequest, Trigger};

/// Messages: the source must be listed; messages of the push kinds must also carry the push token,
/// and messages of a kind an adapter added a check for must pass it.
pub(crate) struct MessageChecks {
    sources: SourceVerifier,
    push: Vec<(String, JwtVerifier)>,
    platform: Vec<(String, BoxVerifier)>,
}

impl MessageChecks {
    /// `sources` for every message; `push` token checks and `platform` checks (an adapter's) for
    /// messages of their kind.
    pub(crate) fn new(
        sources: SourceVerifier,
        push: Vec<(String, JwtVerifier)>,
        platform: Vec<(String, BoxVerifier)>,
    ) -> Self {
        Self {
            sources,
            push,
            platform,
        }
    }
}

impl Verifier for MessageChecks {
    fn verify<'a>(&'a self, req: &'a GuardRequest) -> VerifyFuture<'a> {
        Box::pin(async move {
            let source = self.sources.verify(req).await?;
            let kind = match req.extensions().get::<Trigger>() {
                Some(Trigger::Message(m)) => m.kind.as_str(),
                _ => "",
            };
            let mut principal = None;
            for (_, jwt) in self.push.iter().filter(|(k, _)| k == kind) {
                principal = Some(jwt.verify(req).await?);
            }
            for (_, check) in self.platform.iter().filter(|(k, _)| k == kind) {
                principal = Some(check.verify(req).await?);
            }
            match principal {
                Some(mut p) => {
                    p.claims.insert(
                        "source".into(),
                        serde_json::Value::from(source.subject.to_string()),
                    );
                    Ok(p)
                }
                None => Ok(source),
            }
        })
    }
}
