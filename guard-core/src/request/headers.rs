//! [`HeaderLimits`]: how many header fields and header bytes a request may carry, checked while an
//! adapter builds the header map ([`HeaderBuilder`]) so that no input can make it panic or grow
//! without bound.
//!
//! `http::HeaderMap` panics when more than 24,576 distinct names are appended with `append`; a
//! platform envelope is JSON, so nothing but the adapter bounds what arrives. Every adapter builds
//! its headers through [`HeaderBuilder`], which counts before it allocates and uses the
//! non-panicking `try_append`.
//!
//! ```
//! use guard_core::request::HeaderLimits;
//!
//! let mut headers = HeaderLimits::new(2, 1024).builder();
//! headers.append("content-type", "application/json").unwrap();
//! headers.append("x-a", "1").unwrap();
//! let refused = headers.append("x-b", "2").unwrap_err();
//! assert_eq!(refused.rejection().status(), 431);
//! ```

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::AdapterRefusal;
use crate::RejectionKind;

/// Bounds on the header fields of one request. The defaults follow common servers: 100 fields
/// (hyper's and Apache's default), 64 KiB of names and values together (the ALB's limit; nginx
/// allows 32 KiB, API Gateway REST 10 KiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeaderLimits {
    /// Most header fields (each value of a repeated name counts).
    pub max_fields: usize,
    /// Most bytes of names and values together.
    pub max_bytes: usize,
}

impl Default for HeaderLimits {
    fn default() -> Self {
        Self {
            max_fields: Self::DEFAULT_MAX_FIELDS,
            max_bytes: Self::DEFAULT_MAX_BYTES,
        }
    }
}

impl HeaderLimits {
    /// Default field count: 100.
    pub const DEFAULT_MAX_FIELDS: usize = 100;
    /// Default total size of names and values: 64 KiB.
    pub const DEFAULT_MAX_BYTES: usize = 64 * 1024;

    /// Limits of `max_fields` fields and `max_bytes` bytes.
    ///
    /// ```
    /// let l = guard_core::request::HeaderLimits::new(50, 16 * 1024);
    /// assert_eq!(l.max_fields, 50);
    /// ```
    pub fn new(max_fields: usize, max_bytes: usize) -> Self {
        Self {
            max_fields,
            max_bytes,
        }
    }

    /// An empty header map that enforces these limits as it fills.
    ///
    /// ```
    /// let h = guard_core::request::HeaderLimits::default().builder().finish();
    /// assert!(h.is_empty());
    /// ```
    pub fn builder(&self) -> HeaderBuilder {
        HeaderBuilder {
            headers: HeaderMap::new(),
            limits: *self,
            fields: 0,
            bytes: 0,
        }
    }

    /// Checks a header map built elsewhere (a server's parser). Headers over the limits are
    /// refused with [`RejectionKind::HeadersTooLarge`] (431, `guard.ingress.headers_too_large`).
    ///
    /// ```
    /// use guard_core::request::HeaderLimits;
    /// let mut h = http::HeaderMap::new();
    /// h.insert("x-a", http::HeaderValue::from_static("1"));
    /// assert!(HeaderLimits::new(1, 64).check(&h).is_ok());
    /// assert!(HeaderLimits::new(0, 64).check(&h).is_err());
    /// ```
    pub fn check(&self, headers: &HeaderMap) -> Result<(), AdapterRefusal> {
        if headers.len() > self.max_fields {
            return Err(TOO_MANY_FIELDS);
        }
        let bytes = headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len())
            .fold(0usize, usize::saturating_add);
        if bytes > self.max_bytes {
            return Err(TOO_MANY_BYTES);
        }
        Ok(())
    }
}

/// A header map under construction, within [`HeaderLimits`].
#[derive(Debug)]
pub struct HeaderBuilder {
    headers: HeaderMap,
    limits: HeaderLimits,
    fields: usize,
    bytes: usize,
}

impl HeaderBuilder {
    /// Adds `name: value`. A pair that cannot be an HTTP header is dropped (every check fails
    /// closed on a missing header, so dropping never widens access) but still counts against the
    /// limits. Fails once the fields or bytes offered exceed the limits (431
    /// `guard.ingress.headers_too_large`).
    ///
    /// ```
    /// let mut h = guard_core::request::HeaderLimits::default().builder();
    /// h.append("Content-Type", "text/plain").unwrap();
    /// h.append("bad name", "dropped").unwrap();
    /// assert_eq!(h.finish()["content-type"], "text/plain");
    ///
    /// let e = guard_core::request::HeaderLimits::new(0, 0).builder().append("a", "b").unwrap_err();
    /// assert_eq!(e.reason(), "too many header fields");
    /// assert_eq!(e.rejection().code(), "guard.ingress.headers_too_large");
    /// ```
    pub fn append(&mut self, name: &str, value: &str) -> Result<(), AdapterRefusal> {
        self.count(name.len() + value.len())?;
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            tracing::debug!(target: "guard::request", "dropped a header that is not valid HTTP");
            return Ok(());
        };
        self.headers
            .try_append(name, value)
            .map(drop)
            .map_err(|_| TOO_MANY_FIELDS)
    }

    /// Sets `name` to `value`, replacing what it had (what it had still counted).
    ///
    /// ```
    /// let mut h = guard_core::request::HeaderLimits::default().builder();
    /// h.insert(http::header::COOKIE, http::HeaderValue::from_static("a=1")).unwrap();
    /// assert_eq!(h.finish()["cookie"], "a=1");
    /// ```
    pub fn insert(&mut self, name: HeaderName, value: HeaderValue) -> Result<(), AdapterRefusal> {
        self.count(name.as_str().len() + value.len())?;
        self.headers
            .try_insert(name, value)
            .map(drop)
            .map_err(|_| TOO_MANY_FIELDS)
    }

    /// Whether nothing was kept yet.
    ///
    /// ```
    /// assert!(guard_core::request::HeaderLimits::default().builder().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    /// The headers.
    ///
    /// ```
    /// let h = guard_core::request::HeaderLimits::default().builder().finish();
    /// assert_eq!(h.len(), 0);
    /// ```
    pub fn finish(self) -> HeaderMap {
        self.headers
    }

    fn count(&mut self, bytes: usize) -> Result<(), AdapterRefusal> {
        self.fields += 1;
        self.bytes = self.bytes.saturating_add(bytes);
        if self.fields > self.limits.max_fields {
            return Err(TOO_MANY_FIELDS);
        }
        if self.bytes > self.limits.max_bytes {
            return Err(TOO_MANY_BYTES);
        }
        Ok(())
    }
}

/// Too many header fields: 431 `guard.ingress.headers_too_large`.
const TOO_MANY_FIELDS: AdapterRefusal =
    AdapterRefusal::new(RejectionKind::HeadersTooLarge, "too many header fields");
/// Header fields too large together: 431 `guard.ingress.headers_too_large`.
const TOO_MANY_BYTES: AdapterRefusal =
    AdapterRefusal::new(RejectionKind::HeadersTooLarge, "header fields too large");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_thousand_distinct_names_are_refused_without_a_panic() {
        let mut h = HeaderLimits::default().builder();
        let mut refused = None;
        for i in 0..30_000 {
            if let Err(e) = h.append(&format!("x-h-{i}"), "v") {
                refused = Some((i, e));
                break;
            }
        }
        let (at, e) = refused.expect("the limit was reached");
        assert_eq!(at, HeaderLimits::DEFAULT_MAX_FIELDS);
        assert_eq!(e.reason(), "too many header fields");
        // Even with limits far above what HeaderMap can hold, the builder never panics.
        let mut unbounded = HeaderLimits::new(usize::MAX, usize::MAX).builder();
        let failed = (0..30_000).find(|i| unbounded.append(&format!("x-h-{i}"), "v").is_err());
        assert!(
            failed.is_some(),
            "HeaderMap's own bound is reported, not a panic"
        );
    }

    #[test]
    fn total_bytes_are_bounded_and_invalid_pairs_count() {
        let mut h = HeaderLimits::new(10, 16).builder();
        h.append("x-a", "12345").unwrap();
        assert_eq!(
            h.append("x-b", "1234567890").unwrap_err().reason(),
            "header fields too large"
        );
        let mut h = HeaderLimits::new(2, 1024).builder();
        h.append("bad name", "v").unwrap();
        h.append("bad name", "v").unwrap();
        assert!(h.append("x-a", "1").is_err());
        assert!(h.is_empty());
    }

    #[test]
    fn an_existing_map_is_checked_against_both_limits() {
        let mut h = HeaderMap::new();
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        assert_eq!(HeaderLimits::new(1, 100).check(&h), Err(TOO_MANY_FIELDS));
        assert_eq!(HeaderLimits::new(2, 7).check(&h), Err(TOO_MANY_BYTES));
        assert_eq!(HeaderLimits::new(2, 8).check(&h), Ok(()));
    }
}
