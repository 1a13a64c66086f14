//! Bodies across envelopes: bounded base64 decoding (Lambda `isBase64Encoded`, Kinesis `data`,
//! Pub/Sub `data`, CloudEvents `data_base64`), text-or-base64 encoding for replies, and the media
//! type of a message body that declares none.
//!
//! ```
//! use guard_core::request::body::BodyCodec;
//!
//! let body = BodyCodec::decode_base64("eyJhIjoxfQ==", 1024).unwrap();
//! assert_eq!(body.as_ref(), br#"{"a":1}"#);
//! assert_eq!(BodyCodec::sniff_media_type(&body), "application/json");
//! assert!(BodyCodec::decode_base64("eyJhIjoxfQ==", 4).is_err(), "refused before decoding");
//!
//! let (text, is_base64) = BodyCodec::encode(Some("image/png"), b"\x89PNG");
//! assert_eq!((text.as_ref(), is_base64), ("iVBORw==", true));
//! ```

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use http::HeaderValue;

use super::AdapterRefusal;
use crate::RejectionKind;

/// Standard alphabet, padding optional (platforms send both), no trailing garbage bits.
const STANDARD_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Base64 that would decode to more than the bound (found from its length, before decoding).
const BASE64_TOO_LARGE: AdapterRefusal =
    AdapterRefusal::new(RejectionKind::TooLarge, "base64 body larger than the limit");
/// Text that is not standard base64.
const BASE64_INVALID: AdapterRefusal = AdapterRefusal::malformed("body is not valid base64");

/// Bodies across envelopes: bounded base64 decoding, text-or-base64 encoding for replies, and the
/// media type of a message body that declares none (see the [module docs](self)).
#[derive(Debug, Clone, Copy)]
pub struct BodyCodec;

impl BodyCodec {
    /// Decodes standard base64 (padded or not, surrounding whitespace ignored), refusing input that
    /// would decode to more than `max_decoded` bytes before allocating anything for it: 413
    /// `guard.ingress.too_large`; text that is not base64 is 400 `guard.adapter.malformed_event`.
    ///
    /// ```
    /// use guard_core::RejectionKind;
    /// use guard_core::request::body::BodyCodec;
    /// assert_eq!(BodyCodec::decode_base64("aGk", 2).unwrap().as_ref(), b"hi");
    /// let too_large = BodyCodec::decode_base64("aGk=", 1).unwrap_err();
    /// assert_eq!(too_large.kind(), RejectionKind::TooLarge);
    /// assert_eq!(too_large.rejection().status(), 413);
    /// let invalid = BodyCodec::decode_base64("%%%", 10).unwrap_err();
    /// assert_eq!(invalid.reason(), "body is not valid base64");
    /// assert_eq!(invalid.rejection().code(), "guard.adapter.malformed_event");
    /// ```
    pub fn decode_base64(text: &str, max_decoded: usize) -> Result<Bytes, AdapterRefusal> {
        let text = text.trim();
        let unpadded = text.trim_end_matches('=');
        // Every 4 characters carry 3 bytes; a valid tail of 2 or 3 carries 1 or 2.
        let decoded_len = unpadded.len() / 4 * 3 + (unpadded.len() % 4) * 3 / 4;
        if decoded_len > max_decoded {
            return Err(BASE64_TOO_LARGE);
        }
        STANDARD_ANY_PAD
            .decode(text)
            .map(Bytes::from)
            .map_err(|_| BASE64_INVALID)
    }

    /// A reply body as an envelope carries it: the text itself when the content type is textual (or
    /// absent) and the bytes are UTF-8, else standard base64 and `true`.
    ///
    /// ```
    /// use guard_core::request::body::BodyCodec;
    /// assert_eq!(BodyCodec::encode(Some("application/json"), b"{}"), ("{}".into(), false));
    /// assert_eq!(BodyCodec::encode(Some("text/plain"), b"\xff"), ("/w==".into(), true));
    /// assert_eq!(BodyCodec::encode(None, b""), ("".into(), false));
    /// ```
    pub fn encode<'a>(content_type: Option<&str>, body: &'a [u8]) -> (Cow<'a, str>, bool) {
        if body.is_empty() {
            return (Cow::Borrowed(""), false);
        }
        match std::str::from_utf8(body) {
            Ok(text) if content_type.is_none_or(is_text_media_type) => (Cow::Borrowed(text), false),
            _ => (
                Cow::Owned(base64::engine::general_purpose::STANDARD.encode(body)),
                true,
            ),
        }
    }

    /// The media type of a message body that declares none: `application/json` when it starts like a
    /// JSON object or array (validation still parses it), `text/plain; charset=utf-8` for other UTF-8
    /// text, `application/octet-stream` otherwise.
    ///
    /// ```
    /// use guard_core::request::body::BodyCodec;
    /// assert_eq!(BodyCodec::sniff_media_type(b" [1,2]"), "application/json");
    /// assert_eq!(BodyCodec::sniff_media_type(b"Hello World"), "text/plain; charset=utf-8");
    /// assert_eq!(BodyCodec::sniff_media_type(b"\x00\xff"), "application/octet-stream");
    /// ```
    pub fn sniff_media_type(body: &[u8]) -> HeaderValue {
        match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') | Some(b'[') => HeaderValue::from_static("application/json"),
            _ if std::str::from_utf8(body).is_ok_and(|t| !t.contains(is_binary_control)) => {
                HeaderValue::from_static("text/plain; charset=utf-8")
            }
            _ => HeaderValue::from_static("application/octet-stream"),
        }
    }
}

/// Whether a content type is text: `text/*`, `*+json`, `*+xml`, JSON, XML, JavaScript, forms,
/// GraphQL (parameters and case ignored).
pub(crate) fn is_text_media_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/xml"
                | "application/javascript"
                | "application/x-www-form-urlencoded"
                | "application/graphql"
        )
}

fn is_binary_control(c: char) -> bool {
    c.is_control() && !matches!(c, '\n' | '\r' | '\t')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_bound_is_exact_for_every_tail_length() {
        for len in 0..=9usize {
            let data = vec![7u8; len];
            let padded = base64::engine::general_purpose::STANDARD.encode(&data);
            let bare = padded.trim_end_matches('=').to_owned();
            for text in [&padded, &bare] {
                assert_eq!(
                    BodyCodec::decode_base64(text, len).unwrap().len(),
                    len,
                    "{text}"
                );
                if len > 0 {
                    assert_eq!(
                        BodyCodec::decode_base64(text, len - 1),
                        Err(BASE64_TOO_LARGE)
                    );
                }
            }
        }
    }

    #[test]
    fn a_huge_input_is_refused_without_decoding() {
        // 8 MiB of text that is not even base64: refused for its size, not after decoding it.
        let huge = "!".repeat(8 << 20);
        assert_eq!(
            BodyCodec::decode_base64(&huge, 1 << 20),
            Err(BASE64_TOO_LARGE)
        );
        assert_eq!(
            BodyCodec::decode_base64(" aGk= \n", 2).unwrap().as_ref(),
            b"hi"
        );
        assert_eq!(BodyCodec::decode_base64("aGk==", 10), Err(BASE64_INVALID));
    }
}

#[cfg(test)]
mod text_media_types_are_recognised_example {
    #[test]
    fn text_media_types_are_recognised() {
        use crate::request::body::is_text_media_type;
        assert!(is_text_media_type("application/problem+json"));
        assert!(is_text_media_type("Text/HTML; charset=utf-8"));
        assert!(!is_text_media_type("image/png"));
    }
}
