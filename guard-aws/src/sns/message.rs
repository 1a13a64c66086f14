//! The SNS message envelope, as delivered to HTTP(S) subscriptions, to Lambda (`Records[].Sns`)
//! and inside SQS bodies.

use std::fmt;

use serde::Deserialize;

/// One SNS message envelope: a `Notification`, `SubscriptionConfirmation` or
/// `UnsubscribeConfirmation`.
///
/// Lambda records spell `SigningCertUrl` / `UnsubscribeUrl`, HTTP deliveries `SigningCertURL` /
/// `SubscribeURL`: both are accepted. `Debug` shows the ids only, never the message or signature.
///
/// ```
/// let m: guard_aws::sns::SnsMessage = serde_json::from_str(r#"{
///     "Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:aws:sns:us-east-1:1:t",
///     "Message": "hi", "Timestamp": "2024-01-01T00:00:00.000Z", "SignatureVersion": "2",
///     "Signature": "c2ln", "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0.pem"
/// }"#).unwrap();
/// assert_eq!(m.signing_cert_url, "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0.pem");
/// assert!(!format!("{m:?}").contains("c2ln"));
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct SnsMessage {
    /// `Notification`, `SubscriptionConfirmation` or `UnsubscribeConfirmation`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// The message id.
    pub message_id: String,
    /// The topic ARN.
    pub topic_arn: String,
    /// The subject (notifications only, optional).
    #[serde(default)]
    pub subject: Option<String>,
    /// The message text.
    #[serde(default)]
    pub message: String,
    /// ISO 8601 time the message was published.
    #[serde(default)]
    pub timestamp: String,
    /// `1` (RSA-SHA1) or `2` (RSA-SHA256).
    #[serde(default)]
    pub signature_version: String,
    /// Base64 signature.
    #[serde(default)]
    pub signature: String,
    /// Where the signing certificate is (checked strictly before any fetch).
    #[serde(default, rename = "SigningCertURL", alias = "SigningCertUrl")]
    pub signing_cert_url: String,
    /// Confirmation URL (confirmations only). Never fetched by Guard.
    #[serde(default, rename = "SubscribeURL", alias = "SubscribeUrl")]
    pub subscribe_url: Option<String>,
    /// Confirmation token (confirmations only).
    #[serde(default)]
    pub token: Option<String>,
}

impl fmt::Debug for SnsMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnsMessage")
            .field("kind", &self.kind)
            .field("message_id", &self.message_id)
            .field("topic_arn", &self.topic_arn)
            .field("signature_version", &self.signature_version)
            .finish_non_exhaustive()
    }
}
