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
    /// A number does not fit in a 64-bit float or integer: `1e400`, or an integer literal beyond
    /// the 64-bit range (`18446744073709551617`, `-9223372036854775809`, `10^20` written out).
    /// Such an integer would reach the handler as a rounded float, a value the client did not
    /// send, so it is refused rather than kept approximately.
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

/// Parses `bytes` into a [`Value`], refusing duplicate keys, non-finite numbers and trailing data
/// (public as [`JsonBody::parse_value`](super::JsonBody::parse_value)).
pub(crate) fn parse_strict(bytes: &[u8]) -> Result<Value, JsonError> {
    let first = parse_with(
        bytes,
        StrictValue {
            large_floats: false,
        },
    );
    match first {
        Ok(value) => Ok(value),
        // A float at or beyond 2^63 in magnitude may be an integer literal that overflowed the
        // 64-bit types: decide on the literal itself (rare, so the fast path never scans).
        Err(e) if e.to_string().starts_with(MAYBE_LARGE_INTEGER) => {
            if has_integer_beyond_64_bits(bytes) {
                Err(JsonError::NumberOutOfRange)
            } else {
                parse_with(bytes, StrictValue { large_floats: true }).map_err(|e| classify(&e))
            }
        }
        Err(e) => Err(classify(&e)),
    }
}

fn parse_with(bytes: &[u8], seed: StrictValue) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = seed.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

const DUPLICATE: &str = "guard:duplicate-key";
const OUT_OF_RANGE: &str = "guard:number-out-of-range";
const MAYBE_LARGE_INTEGER: &str = "guard:maybe-large-integer";

/// 2^63: every integer literal of smaller magnitude fits `i64` or `u64`, so `serde_json` reports
/// it exactly; from here on an integer literal that overflows arrives as a rounded `f64`.
const INTEGER_LIMIT: f64 = 9_223_372_036_854_775_808.0;

/// `true` for a float that an over-range integer literal could have become.
pub(crate) fn may_be_large_integer(v: f64) -> bool {
    v.is_finite() && v.abs() >= INTEGER_LIMIT
}

/// `true` when `bytes` holds, outside strings, an integer literal (no `.`, `e` or `E`) outside
/// `i64::MIN..=u64::MAX`.
pub(crate) fn has_integer_beyond_64_bits(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while i < bytes.len()
                    && matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                let token = &bytes[start..i];
                if !token.iter().any(|b| matches!(b, b'.' | b'e' | b'E')) && !fits_64_bits(token) {
                    return true;
                }
            }
            _ => i += 1,
        }
    }
    false
}

fn fits_64_bits(token: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(token) else {
        return false;
    };
    match text.strip_prefix('-') {
        Some(_) => text.parse::<i64>().is_ok(),
        None => text.parse::<u64>().is_ok(),
    }
}

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

/// The strict tree builder; `large_floats` admits floats of magnitude ≥ 2^63 once the body is
/// known to hold no over-range integer literal.
#[derive(Clone, Copy)]
struct StrictValue {
    large_floats: bool,
}

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
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
        if !self.large_floats && may_be_large_integer(v) {
            return Err(E::custom(MAYBE_LARGE_INTEGER));
        }
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
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(v) = seq.next_element_seed(self)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self)?;
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
    fn rejects_integer_literals_beyond_64_bits_instead_of_rounding_them() {
        for literal in [
            "18446744073709551616",
            "18446744073709551617",
            "100000000000000000000",
            "-9223372036854775809",
        ] {
            let body = format!("{{\"qty\":[1,{literal}]}}");
            assert_eq!(
                parse_strict(body.as_bytes()),
                Err(JsonError::NumberOutOfRange),
                "{literal}"
            );
        }
        // The 64-bit edges themselves are exact.
        let v = parse_strict(b"[18446744073709551615,-9223372036854775808]").unwrap();
        assert_eq!(v, serde_json::json!([u64::MAX, i64::MIN]));
    }

    #[test]
    fn keeps_large_floats_and_digits_inside_strings() {
        let v = parse_strict(br#"{"f":1e20,"g":-2.5E30,"s":"100000000000000000000"}"#).unwrap();
        assert_eq!(v["f"], serde_json::json!(1e20));
        assert_eq!(v["s"], "100000000000000000000");
        let escaped = br#"{"s":"\"100000000000000000000","f":1e19}"#;
        assert!(parse_strict(escaped).is_ok());
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
