//! The trace a request belongs to, from whichever header the platform or the caller used — W3C
//! `traceparent`, AWS `X-Amzn-Trace-Id` (also the Lambda context's X-Ray trace id), Google
//! `X-Cloud-Trace-Context` — read into an [`Invocation`] by [`Invocation::trace_from_headers`] and
//! [`Invocation::trace_from_xray`].
//!
//! Values are checked strictly; anything malformed is ignored (no trace), never an error, and
//! never logged.

use http::HeaderMap;

use super::Invocation;

impl Invocation {
    /// Sets [`trace_id`](Self::trace_id) and [`parent_span_id`](Self::parent_span_id) from the
    /// first trace header present and well-formed, in this order: W3C `traceparent`,
    /// `X-Amzn-Trace-Id`, `X-Cloud-Trace-Context`. Returns whether one was found; when none is,
    /// nothing changes.
    ///
    /// ```
    /// use guard_core::request::{Cloud, Invocation};
    ///
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert(
    ///     "traceparent",
    ///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap(),
    /// );
    /// let mut inv = Invocation::new(Cloud::Gcp);
    /// assert!(inv.trace_from_headers(&headers));
    /// assert_eq!(inv.trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    /// assert_eq!(inv.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
    ///
    /// let mut h = http::HeaderMap::new();
    /// h.insert("x-cloud-trace-context", "105445aa7843bc8bf206b12000100000/1;o=1".parse().unwrap());
    /// assert!(inv.trace_from_headers(&h));
    /// assert_eq!(inv.parent_span_id.as_deref(), Some("0000000000000001"));
    /// assert!(!inv.trace_from_headers(&http::HeaderMap::new()));
    /// assert_eq!(inv.trace_id.as_deref(), Some("105445aa7843bc8bf206b12000100000"));
    /// ```
    pub fn trace_from_headers(&mut self, headers: &HeaderMap) -> bool {
        self.adopt(TraceContext::from_headers(headers))
    }

    /// Sets [`trace_id`](Self::trace_id) and [`parent_span_id`](Self::parent_span_id) from an AWS
    /// X-Ray trace id (`Root=1-<8 hex>-<24 hex>;Parent=<16 hex>;Sampled=0|1|?`, fields in any
    /// order), as in the Lambda context and `X-Amzn-Trace-Id`. The trace id is the root as X-Ray
    /// spells it. Returns whether the value was well-formed; when not, nothing changes.
    ///
    /// ```
    /// use guard_core::request::{Cloud, Invocation};
    /// let mut inv = Invocation::new(Cloud::Aws);
    /// assert!(inv.trace_from_xray("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"));
    /// assert_eq!(inv.trace_id.as_deref(), Some("1-5759e988-bd862e3fe1be46a994272793"));
    /// assert_eq!(inv.parent_span_id.as_deref(), Some("53995c3f42cd8ad8"));
    /// assert!(!inv.trace_from_xray("Root=not-a-trace"));
    /// assert_eq!(inv.parent_span_id.as_deref(), Some("53995c3f42cd8ad8"));
    /// ```
    pub fn trace_from_xray(&mut self, value: &str) -> bool {
        self.adopt(TraceContext::from_xray(value))
    }

    fn adopt(&mut self, trace: Option<TraceContext>) -> bool {
        let Some(trace) = trace else { return false };
        self.trace_id = Some(trace.trace_id);
        self.parent_span_id = trace.parent_span_id;
        true
    }
}

/// A trace id and the caller's span, as parsed from one trace header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TraceContext {
    trace_id: String,
    parent_span_id: Option<String>,
    sampled: Option<bool>,
}

impl TraceContext {
    /// From the first header present and well-formed, in this order: `traceparent`,
    /// `X-Amzn-Trace-Id`, `X-Cloud-Trace-Context`.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        value("traceparent")
            .and_then(Self::from_traceparent)
            .or_else(|| value("x-amzn-trace-id").and_then(Self::from_xray))
            .or_else(|| value("x-cloud-trace-context").and_then(Self::from_cloud_trace))
    }

    /// W3C Trace Context `traceparent`: `version-traceid-parentid-flags`, lower-case hex; the
    /// all-zero ids and version `ff` are invalid; a later version may append fields.
    pub(crate) fn from_traceparent(value: &str) -> Option<Self> {
        let value = value.trim();
        let head = value.get(..55)?;
        let tail = &value[55..];
        let mut parts = head.split('-');
        let (version, trace_id, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let version_ok = is_lower_hex(version, 2) && version != "ff";
        // Version 00 is exactly 55 characters; later versions may add `-...` after the flags.
        let tail_ok = tail.is_empty() || (version != "00" && tail.starts_with('-'));
        if !version_ok
            || !tail_ok
            || !is_lower_hex(trace_id, 32)
            || !is_lower_hex(parent, 16)
            || !is_lower_hex(flags, 2)
            || is_zero(trace_id)
            || is_zero(parent)
        {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(Self {
            trace_id: trace_id.to_owned(),
            parent_span_id: Some(parent.to_owned()),
            sampled: Some(flags & 1 == 1),
        })
    }

    /// AWS X-Ray: `Root=1-<8 hex>-<24 hex>;Parent=<16 hex>;Sampled=0|1|?` (fields in any order,
    /// others ignored), as in `X-Amzn-Trace-Id` and the Lambda context's trace id. The trace id is
    /// the root as X-Ray spells it (`1-5759e988-bd862e3fe1be46a994272793`).
    pub(crate) fn from_xray(value: &str) -> Option<Self> {
        let (mut root, mut parent, mut sampled) = (None, None, None);
        for field in value.split(';') {
            let Some((key, val)) = field.trim().split_once('=') else {
                continue;
            };
            match key {
                "Root" => root = Some(val),
                "Parent" => parent = Some(val),
                "Sampled" => sampled = Some(val),
                _ => {}
            }
        }
        let root = root?;
        let valid_root = root.is_ascii()
            && matches!(root.as_bytes(), [b'1', b'-', ..])
            && root.len() == 35
            && root.as_bytes()[10] == b'-'
            && is_hex(&root[2..10])
            && is_hex(&root[11..]);
        if !valid_root {
            return None;
        }
        let parent = match parent {
            Some(p) if is_hex(p) && p.len() == 16 => Some(p.to_ascii_lowercase()),
            Some(_) => return None,
            None => None,
        };
        Some(Self {
            trace_id: root.to_ascii_lowercase(),
            parent_span_id: parent,
            sampled: match sampled {
                Some("1") => Some(true),
                Some("0") => Some(false),
                _ => None,
            },
        })
    }

    /// Google Cloud `X-Cloud-Trace-Context`: `TRACE_ID/SPAN_ID;o=OPTIONS`, the trace id 32 hex,
    /// the span id decimal (given here as 16 hex digits, like the others), `;o=` optional (bit 1:
    /// sampled).
    pub(crate) fn from_cloud_trace(value: &str) -> Option<Self> {
        let (ids, options) = match value.trim().split_once(';') {
            Some((ids, options)) => (ids, Some(options)),
            None => (value.trim(), None),
        };
        let (trace_id, span) = match ids.split_once('/') {
            Some((t, s)) => (t, Some(s)),
            None => (ids, None),
        };
        if !is_hex(trace_id) || trace_id.len() != 32 || is_zero(trace_id) {
            return None;
        }
        let parent = match span {
            Some(s) if !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) => {
                Some(format!("{:016x}", s.parse::<u64>().ok()?))
            }
            Some(_) => return None,
            None => None,
        };
        let sampled = match options.map(|o| o.strip_prefix("o=").map(str::parse::<u8>)) {
            Some(Some(Ok(bits))) => Some(bits & 1 == 1),
            Some(_) => return None,
            None => None,
        };
        Some(Self {
            trace_id: trace_id.to_ascii_lowercase(),
            parent_span_id: parent,
            sampled,
        })
    }

    /// The trace id: 32 lower-case hex (W3C, Cloud Trace) or the X-Ray root
    /// (`1-xxxxxxxx-xxxxxxxxxxxxxxxxxxxxxxxx`).
    #[cfg(test)]
    pub(crate) fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// The caller's span (16 lower-case hex), when the header carried one.
    #[cfg(test)]
    pub(crate) fn parent_span_id(&self) -> Option<&str> {
        self.parent_span_id.as_deref()
    }

    /// The caller's sampling decision, when the header carried one.
    #[cfg(any(test, feature = "otel"))]
    pub(crate) fn sampled(&self) -> Option<bool> {
        self.sampled
    }

    /// The trace id and parent span id, for an [`Invocation`](super::Invocation).
    pub(crate) fn into_ids(self) -> (String, Option<String>) {
        (self.trace_id, self.parent_span_id)
    }
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_zero(s: &str) -> bool {
    s.bytes().all(|b| b == b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// The examples the public `TraceContext` documented before it became crate-private.
    #[test]
    fn each_header_format_parses_as_documented() {
        {
            let mut h = http::HeaderMap::new();
            h.insert(
                "x-cloud-trace-context",
                "105445aa7843bc8bf206b12000100000/1;o=1".parse().unwrap(),
            );
            let t = TraceContext::from_headers(&h).unwrap();
            assert_eq!(t.parent_span_id(), Some("0000000000000001"));
        }
        {
            let t = TraceContext::from_traceparent(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            )
            .unwrap();
            assert_eq!(t.sampled(), Some(false));
            assert!(
                TraceContext::from_traceparent(
                    "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
                )
                .is_none()
            );
        }
        {
            let t = TraceContext::from_xray(
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
            )
            .unwrap();
            assert_eq!(t.trace_id(), "1-5759e988-bd862e3fe1be46a994272793");
            assert_eq!(t.parent_span_id(), Some("53995c3f42cd8ad8"));
            assert!(TraceContext::from_xray("Root=not-a-trace").is_none());
        }
        {
            let t = TraceContext::from_cloud_trace("105445aa7843bc8bf206b12000100000/2706;o=1")
                .unwrap();
            assert_eq!(t.trace_id(), "105445aa7843bc8bf206b12000100000");
            assert_eq!(t.parent_span_id(), Some("0000000000000a92"));
            assert_eq!(t.sampled(), Some(true));
        }
        {
            let t = TraceContext::from_cloud_trace("105445AA7843BC8BF206B12000100000").unwrap();
            assert_eq!(t.trace_id(), "105445aa7843bc8bf206b12000100000");
        }
        {
            let t = TraceContext::from_xray("Root=1-5759e988-bd862e3fe1be46a994272793").unwrap();
            assert_eq!(t.parent_span_id(), None);
        }
        {
            let t = TraceContext::from_xray("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=?")
                .unwrap();
            assert_eq!(t.sampled(), None);
        }
        {
            let t = TraceContext::from_cloud_trace("105445aa7843bc8bf206b12000100000/1").unwrap();
            let (trace, parent) = t.into_ids();
            assert_eq!(
                (trace.len(), parent.as_deref()),
                (32, Some("0000000000000001"))
            );
        }
    }

    #[test]
    fn traceparent_is_checked_strictly() {
        assert!(TraceContext::from_traceparent(TP).is_some());
        for bad in [
            "",
            "00",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
            "0é-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::from_traceparent(bad), None, "{bad}");
        }
        let future = format!("01{}-later-fields", &TP[2..]);
        assert!(TraceContext::from_traceparent(&future).is_some());
    }

    #[test]
    fn xray_needs_a_well_formed_root() {
        let t =
            TraceContext::from_xray("Sampled=0; Root=1-5759E988-BD862E3FE1BE46A994272793").unwrap();
        assert_eq!(t.trace_id(), "1-5759e988-bd862e3fe1be46a994272793");
        assert_eq!(t.sampled(), Some(false));
        for bad in [
            "",
            "1-5759e988-bd862e3fe1be46a994272793",
            "Root=",
            "Parent=53995c3f42cd8ad8",
            "Root=2-5759e988-bd862e3fe1be46a994272793",
            "Root=1-5759e988-bd862e3fe1be46a99427279",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=xyz",
            "Root=1-5759e98é-bd862e3fe1be46a99427279",
            "Root=1-5759e988-bd862e3fe1be46a994272793\n{\"event\":\"forged\"}",
        ] {
            assert_eq!(TraceContext::from_xray(bad), None, "{bad}");
        }
    }

    #[test]
    fn cloud_trace_span_ids_become_hex() {
        let t =
            TraceContext::from_cloud_trace("105445aa7843bc8bf206b12000100000/18446744073709551615")
                .unwrap();
        assert_eq!(t.parent_span_id(), Some("ffffffffffffffff"));
        for bad in [
            "105445aa7843bc8bf206b12000100000/18446744073709551616",
            "105445aa7843bc8bf206b12000100000/-1;o=1",
            "105445aa7843bc8bf206b12000100000/1;o=x",
            "105445aa7843bc8bf206b12000100000/1;sampled",
            "105445aa7843bc8bf206b1200010000/1",
            "00000000000000000000000000000000/1",
            "/1;o=1",
        ] {
            assert_eq!(TraceContext::from_cloud_trace(bad), None, "{bad}");
        }
    }

    #[test]
    fn headers_are_tried_in_order_and_malformed_ones_skipped() {
        let mut h = HeaderMap::new();
        h.insert("traceparent", "garbage".parse().unwrap());
        h.insert(
            "x-amzn-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793".parse().unwrap(),
        );
        h.insert(
            "x-cloud-trace-context",
            "105445aa7843bc8bf206b12000100000/1".parse().unwrap(),
        );
        let t = TraceContext::from_headers(&h).unwrap();
        assert_eq!(t.trace_id(), "1-5759e988-bd862e3fe1be46a994272793");
        h.insert("traceparent", TP.parse().unwrap());
        assert_eq!(
            TraceContext::from_headers(&h).unwrap().trace_id(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(TraceContext::from_headers(&HeaderMap::new()), None);
    }
}
