//! Strict JSON parsing: duplicate object keys and out-of-range numbers are errors, so the handler
//! sees exactly the value that was validated.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a body is not acceptable JSON. Carries no part of the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// An object has the same key twice.
    #[error("duplicate object key")]
    DuplicateKey,
    /// A number does not fit in a 64-bit float or integer (e.g. `1e400`).
    #[error("number out of range")]
    NumberOutOfRange,
    /// Not well-formed JSON (or trailing data).
    #[error("malformed JSON at line {line}, column {column}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// Well-formed JSON that does not deserialize into the requested type
    /// ([`JsonBody::deserialize`](super::JsonBody::deserialize)).
    #[error("JSON does not match the requested type at line {line}, column {column}")]
    Mismatch {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
}

/// Parses `bytes` into a [`Value`], refusing duplicate keys, non-finite numbers and trailing data.
///
/// ```
/// use guard_core::validate::{parse_strict, JsonError};
/// assert!(parse_strict(br#"{"a":1}"#).is_ok());
/// assert_eq!(parse_strict(br#"{"a":1,"a":2}"#), Err(JsonError::DuplicateKey));
/// assert_eq!(parse_strict(b"1e400"), Err(JsonError::NumberOutOfRange));
/// ```
pub fn parse_strict(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue.deserialize(&mut de).map_err(|e| classify(&e))?;
    de.end().map_err(|e| classify(&e))?;
    Ok(value)
}

const DUPLICATE: &str = "guard:duplicate-key";
const OUT_OF_RANGE: &str = "guard:number-out-of-range";

/// Like [`classify`], for deserializing into a caller's type: data errors ("invalid type",
/// "missing field", …) become [`JsonError::Mismatch`].
pub(crate) fn classify_typed(e: &serde_json::Error) -> JsonError {
    match classify(e) {
        JsonError::Syntax { line, column } if e.is_data() => JsonError::Mismatch { line, column },
        other => other,
    }
}

fn classify(e: &serde_json::Error) -> JsonError {
    let msg = e.to_string();
    if msg.starts_with(DUPLICATE) {
        JsonError::DuplicateKey
    } else if msg.starts_with(OUT_OF_RANGE) || msg.starts_with("number out of range") {
        JsonError::NumberOutOfRange
    } else {
        JsonError::Syntax {
            line: e.line(),
            column: e.column(),
        }
    }
}

struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(OUT_OF_RANGE))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        StrictValue.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(v) = seq.next_element_seed(StrictValue)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(StrictValue)?;
            if out.insert(key, value).is_some() {
                return Err(de::Error::custom(DUPLICATE));
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_duplicate_keys_at_any_depth() {
        assert_eq!(
            parse_strict(br#"{"a":{"b":1,"b":1}}"#),
            Err(JsonError::DuplicateKey)
        );
        assert_eq!(
            parse_strict(br#"[{"x":1},{"x":2,"x":3}]"#),
            Err(JsonError::DuplicateKey)
        );
        assert!(parse_strict(br#"[{"x":1},{"x":2}]"#).is_ok());
    }

    #[test]
    fn rejects_huge_numbers_in_every_spelling() {
        assert_eq!(parse_strict(b"1e400"), Err(JsonError::NumberOutOfRange));
        assert_eq!(
            parse_strict(b"{\"n\":-1E+999}"),
            Err(JsonError::NumberOutOfRange)
        );
        let digits = "9".repeat(400);
        assert_eq!(
            parse_strict(digits.as_bytes()),
            Err(JsonError::NumberOutOfRange)
        );
    }

    #[test]
    fn rejects_trailing_data_and_garbage() {
        assert!(matches!(
            parse_strict(b"{} {}"),
            Err(JsonError::Syntax { .. })
        ));
        assert!(matches!(
            parse_strict(b"{\"a\":"),
            Err(JsonError::Syntax { .. })
        ));
        assert!(matches!(parse_strict(b""), Err(JsonError::Syntax { .. })));
    }

    #[test]
    fn keeps_the_exact_value() {
        let v = parse_strict(br#"{"a":[1,-2,3.5,"s",null,true]}"#).unwrap();
        assert_eq!(v, serde_json::json!({"a":[1,-2,3.5,"s",null,true]}));
    }
}
