//! [`SecretValue`]: bytes that zeroize on drop and never print.

use std::fmt;

use zeroize::Zeroizing;

/// A secret's bytes. Zeroized on drop; `Debug` and `Display` print `[redacted]`; not `Serialize`.
///
/// ```
/// use guard_secrets::SecretValue;
/// let v = SecretValue::from("hunter2");
/// assert_eq!(format!("{v:?} {v}"), "[redacted] [redacted]");
/// assert_eq!(v.expose_str(), Some("hunter2"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue {
    bytes: Zeroizing<Vec<u8>>,
}

impl SecretValue {
    /// Wraps bytes.
    ///
    /// ```
    /// let v = guard_secrets::SecretValue::new(vec![1, 2, 3]);
    /// assert_eq!(v.expose_bytes(), &[1, 2, 3]);
    /// ```
    pub fn new(bytes: Vec<u8>) -> Self {
        Self {
            bytes: Zeroizing::new(bytes),
        }
    }

    /// The raw bytes. Keep the borrow short and never log it.
    ///
    /// ```
    /// let v = guard_secrets::SecretValue::from("k");
    /// assert_eq!(v.expose_bytes(), b"k");
    /// ```
    pub fn expose_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The value as UTF-8, if it is.
    ///
    /// ```
    /// let v = guard_secrets::SecretValue::new(vec![0xff]);
    /// assert_eq!(v.expose_str(), None);
    /// ```
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.bytes).ok()
    }

    /// Number of bytes.
    ///
    /// ```
    /// assert_eq!(guard_secrets::SecretValue::from("abc").len(), 3);
    /// ```
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the value is empty.
    ///
    /// ```
    /// assert!(guard_secrets::SecretValue::from("").is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl From<&str> for SecretValue {
    fn from(s: &str) -> Self {
        SecretValue::new(s.as_bytes().to_vec())
    }
}

impl From<String> for SecretValue {
    fn from(s: String) -> Self {
        SecretValue::new(s.into_bytes())
    }
}

impl From<Vec<u8>> for SecretValue {
    fn from(v: Vec<u8>) -> Self {
        SecretValue::new(v)
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}
