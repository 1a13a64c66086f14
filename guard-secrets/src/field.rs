//! `name#field`: one scalar field of a JSON-object secret, without copying the other values.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use zeroize::Zeroizing;

use crate::{SecretValue, SecretsError};

/// Selects the scalar field `field` of the JSON object in `value`. Strings give their UTF-8 bytes,
/// numbers and booleans their JSON text. Errors never quote the document (the parser's own
/// messages may contain values, so they are not used).
pub(crate) fn select(
    value: &SecretValue,
    name: &str,
    field: &str,
) -> Result<SecretValue, SecretsError> {
    let fail = |what: &str| SecretsError::Permanent {
        name: name.to_string(),
        reason: format!("field `{field}`: {what}"),
    };
    let mut de = serde_json::Deserializer::from_slice(value.expose_bytes());
    let found = FieldSeed { field }
        .deserialize(&mut de)
        .and_then(|found| de.end().map(|()| found))
        .map_err(|_| fail("the secret is not a JSON object with scalar values at that field"))?;
    match found {
        Some(bytes) => Ok(SecretValue::new(bytes.to_vec())),
        None => Err(fail("no such field in the JSON secret")),
    }
}

struct FieldSeed<'f> {
    field: &'f str,
}

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Option<Zeroizing<Vec<u8>>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_> {
    type Value = Option<Zeroizing<Vec<u8>>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == self.field {
                if found.is_some() {
                    return Err(de::Error::custom("duplicate field"));
                }
                found = Some(map.next_value::<Scalar>()?.0);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// A JSON scalar as zeroized bytes.
struct Scalar(Zeroizing<Vec<u8>>);

impl<'de> de::Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number or boolean")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar(Zeroizing::new(v.as_bytes().to_vec())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar(Zeroizing::new(v.into_bytes())))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar(Zeroizing::new(v.to_string().into_bytes())))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar(Zeroizing::new(v.to_string().into_bytes())))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar(Zeroizing::new(v.to_string().into_bytes())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar(Zeroizing::new(v.to_string().into_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_string_number_and_bool_fields() {
        let v =
            SecretValue::from(r#"{"user":"app","password":"p\u00e4ss","port":5432,"tls":true}"#);
        assert!(select(&v, "db", "password").unwrap().expose_str() == Some("päss"));
        assert!(select(&v, "db", "port").unwrap().expose_str() == Some("5432"));
        assert!(select(&v, "db", "tls").unwrap().expose_str() == Some("true"));
    }

    #[test]
    fn errors_never_quote_the_secret() {
        let cases = [
            r#""just-a-string-s3cr3t""#,
            r#"{"password":["s3cr3t"]}"#,
            r#"{"password":"s3cr3t","password":"s3cr3t"}"#,
            r#"{"other":"s3cr3t"}"#,
            r#"{"password":"s3cr3t"} trailing"#,
            "s3cr3t",
        ];
        for doc in cases {
            let err = select(&SecretValue::from(doc), "db", "password").unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(!text.contains("s3cr3t"), "error text leaks the value");
            assert!(!err.is_transient());
        }
    }
}
