//! [`JsonBody`]: the validated body, handed to the handler in the request extensions.

use std::fmt;
use std::sync::OnceLock;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::json::{JsonError, classify_typed, parse_strict};
use super::plan;

/// The request body as [`ValidateLayer`](super::ValidateLayer) validated it, in the request
/// extensions: strict JSON (no duplicate keys, no out-of-range numbers, nothing trailing) that
/// passed the schema.
///
/// The layer usually validates in one pass without building a tree, so the
/// [`serde_json::Value`] is built only if the handler asks for it ([`JsonBody::value`], parsed
/// on the first call and kept); [`JsonBody::deserialize`] reads a typed struct straight from the
/// bytes, borrowing strings where it can. Cloning copies the bytes handle (cheap) and the parsed
/// value if there is one. `Debug` shows the length only, never the content.
///
/// ```
/// use bytes::Bytes;
/// use guard_core::validate::JsonBody;
///
/// let body = JsonBody::parse(Bytes::from_static(br#"{"id":7,"sku":"BOOK-42"}"#)).unwrap();
/// assert_eq!(body.value().unwrap()["id"], 7);
///
/// #[derive(serde::Deserialize)]
/// struct Order<'a> { id: u32, sku: &'a str }
/// let order: Order<'_> = body.deserialize().unwrap();
/// assert_eq!((order.id, order.sku), (7, "BOOK-42"));
///
/// assert!(JsonBody::parse(Bytes::from_static(br#"{"a":1,"a":2}"#)).is_err());
/// ```
#[derive(Clone)]
pub struct JsonBody {
    bytes: Bytes,
    value: OnceLock<Result<Value, JsonError>>,
}

impl JsonBody {
    /// Parses `bytes` into a [`Value`], refusing duplicate keys, non-finite numbers and trailing
    /// data: the strict parse the layer falls back to when its single pass is not sure.
    ///
    /// ```
    /// use guard_core::validate::{JsonBody, JsonError};
    /// assert!(JsonBody::parse_value(br#"{"a":1}"#).is_ok());
    /// assert_eq!(JsonBody::parse_value(br#"{"a":1,"a":2}"#), Err(JsonError::DuplicateKey));
    /// assert_eq!(JsonBody::parse_value(b"1e400"), Err(JsonError::NumberOutOfRange));
    /// assert_eq!(JsonBody::parse_value(b"18446744073709551617"), Err(JsonError::NumberOutOfRange));
    /// assert!(JsonBody::parse_value(b"1.8446744073709552e19").is_ok());
    /// ```
    pub fn parse_value(bytes: &[u8]) -> Result<Value, JsonError> {
        parse_strict(bytes)
    }

    /// Checks `bytes` with the same strictness as [`parse_value`](Self::parse_value) (without building a tree) and
    /// wraps them. The layer does this itself; this is for handler tests and hand-built requests.
    ///
    /// ```
    /// # use bytes::Bytes;
    /// # use guard_core::validate::{JsonBody, JsonError};
    /// assert!(JsonBody::parse(Bytes::from_static(b"[1,2]")).is_ok());
    /// assert_eq!(JsonBody::parse(Bytes::from_static(b"1e400")).unwrap_err(), JsonError::NumberOutOfRange);
    /// ```
    pub fn parse(bytes: Bytes) -> Result<Self, JsonError> {
        if plan::is_strict_json(&bytes) {
            return Ok(Self::checked(bytes));
        }
        // Not sure (or refused): the full parse gives the exact verdict.
        let value = parse_strict(&bytes)?;
        Ok(Self::with_value(bytes, value))
    }

    /// Bytes the caller has already found strict (the value is parsed on demand).
    pub(crate) fn checked(bytes: Bytes) -> Self {
        Self {
            bytes,
            value: OnceLock::new(),
        }
    }

    /// Bytes with the value the full path already built from them.
    pub(crate) fn with_value(bytes: Bytes, value: Value) -> Self {
        Self {
            bytes,
            value: OnceLock::from(Ok(value)),
        }
    }

    /// The validated bytes (a cheap handle on the request body).
    ///
    /// ```
    /// # use bytes::Bytes;
    /// let body = guard_core::validate::JsonBody::parse(Bytes::from_static(b"{}")).unwrap();
    /// assert_eq!(&body.bytes()[..], b"{}");
    /// ```
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The body as a [`Value`], parsed strictly on the first call and kept for the next ones.
    /// The bytes were checked before, so this does not fail in practice; it returns the parse
    /// error rather than panicking if it ever did.
    ///
    /// ```
    /// # use bytes::Bytes;
    /// let body = guard_core::validate::JsonBody::parse(Bytes::from_static(b"{\"a\":[1]}")).unwrap();
    /// assert_eq!(body.value().unwrap(), &serde_json::json!({"a": [1]}));
    /// ```
    pub fn value(&self) -> Result<&Value, JsonError> {
        self.value
            .get_or_init(|| parse_strict(&self.bytes))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Diagnostic: whether the [`Value`] has been built — by the layer's full path (a schema outside
    /// the single-pass subset, or a body the single pass was unsure of) or by a call to
    /// [`value`](Self::value).
    ///
    /// ```
    /// # use bytes::Bytes;
    /// let body = guard_core::validate::JsonBody::parse(Bytes::from_static(b"[1]")).unwrap();
    /// assert!(!body.is_parsed());
    /// body.value().unwrap();
    /// assert!(body.is_parsed());
    /// ```
    pub fn is_parsed(&self) -> bool {
        self.value.get().is_some()
    }

    /// Deserializes the bytes into `T` (which may borrow `&str`s from the body). A body that is
    /// not shaped like `T` gives [`JsonError::Mismatch`]; the error never carries body content.
    ///
    /// ```
    /// # use bytes::Bytes;
    /// # use guard_core::validate::{JsonBody, JsonError};
    /// let body = JsonBody::parse(Bytes::from_static(b"{\"qty\":\"two\"}")).unwrap();
    /// #[derive(serde::Deserialize, Debug)]
    /// struct Item { qty: u32 }
    /// assert!(matches!(body.deserialize::<Item>(), Err(JsonError::Mismatch { .. })));
    /// ```
    pub fn deserialize<'a, T: Deserialize<'a>>(&'a self) -> Result<T, JsonError> {
        serde_json::from_slice(&self.bytes).map_err(|e| classify_typed(&e))
    }
}

impl fmt::Debug for JsonBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonBody")
            .field("len", &self.bytes.len())
            .field("parsed", &self.is_parsed())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_content() {
        let body = JsonBody::parse(Bytes::from_static(br#"{"password":"hunter2"}"#)).unwrap();
        let shown = format!("{body:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("password"),
            "{shown}"
        );
        assert_eq!(shown, "JsonBody { len: 22, parsed: false }");
        body.value().unwrap();
        assert_eq!(format!("{body:?}"), "JsonBody { len: 22, parsed: true }");
    }

    #[test]
    fn a_body_the_check_is_unsure_of_still_gets_the_exact_verdict() {
        // Strict JSON is accepted whichever path decided; refusals carry parse_strict's reason.
        assert_eq!(
            JsonBody::parse(Bytes::from_static(br#"{"a":1,"\u0061":2}"#)).unwrap_err(),
            JsonError::DuplicateKey
        );
        assert!(matches!(
            JsonBody::parse(Bytes::from_static(b"{} {}")).unwrap_err(),
            JsonError::Syntax { .. }
        ));
    }

    #[test]
    fn value_errors_instead_of_panicking_on_bytes_that_were_never_checked() {
        let body = JsonBody::checked(Bytes::from_static(b"{\"a\":"));
        assert!(matches!(body.value(), Err(JsonError::Syntax { .. })));
        assert!(matches!(body.value(), Err(JsonError::Syntax { .. })));
    }

    #[test]
    fn deserialize_reports_a_mismatch_without_content() {
        let body = JsonBody::parse(Bytes::from_static(br#"{"qty":"secret-value"}"#)).unwrap();
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Item {
            qty: u32,
        }
        let err = body.deserialize::<Item>().unwrap_err();
        assert!(matches!(err, JsonError::Mismatch { .. }));
        assert!(!err.to_string().contains("secret-value"));
    }
}
