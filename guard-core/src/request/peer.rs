//! [`TrustedProxies`]: the client address behind the proxies you run, read from `X-Forwarded-For`
//! without trusting anything the client wrote.
//!
//! Every HTTP adapter whose platform reports the caller only in `X-Forwarded-For` (ALB, the Azure
//! and Cloud Run front ends, anything behind your own load balancer) resolves its [`Peer`] here.
//! The number of proxies comes from the policy's `[function] trusted_proxies`
//! ([`Policy::trusted_proxies`](crate::Policy::trusted_proxies)).

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderName};

use super::Peer;

/// How many proxies you run in front of the function, counted from the function outwards.
///
/// Each proxy *appends* the address it saw to `X-Forwarded-For`, so the right-most `hops` entries
/// were written by proxies you trust and everything to their left was written by the client. The
/// client address is therefore the `hops`-th entry **from the right**; the left-most entry is never
/// used (anyone can write it). With `hops == 1` (one load balancer, e.g. ALB) it is the right-most
/// entry.
///
/// Repeated header lines are joined in order (as if separated by commas). Parsing is bounded: the
/// header is scanned from the right and at most `hops` entries are split and parsed; `hops` itself
/// is at most [`TrustedProxies::MAX_HOPS`] (32), so a 1,000-entry header costs the same as a short
/// one. An entry that is not an IP address (optionally `ip:port` / `[ipv6]:port`), or a header with
/// fewer entries than `hops`, is an error: callers then set no [`Peer`] or refuse (fail closed).
///
/// ```
/// use guard_core::request::TrustedProxies;
///
/// let mut h = http::HeaderMap::new();
/// h.append("x-forwarded-for", "10.0.0.5, 1.2.3.4".parse().unwrap());
/// let one = TrustedProxies::new(1).unwrap();
/// assert_eq!(one.peer(&h).unwrap().ip().to_string(), "1.2.3.4"); // never the spoofable 10.0.0.5
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedProxies {
    hops: usize,
}

/// Why no client address could be derived from `X-Forwarded-For`. Carries no header values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ForwardedError {
    /// No `X-Forwarded-For` header.
    #[error("no x-forwarded-for header")]
    Missing,
    /// Fewer entries than trusted hops: the chain did not pass through all the proxies.
    #[error("x-forwarded-for has fewer entries than trusted hops")]
    TooShort,
    /// An entry that is not an IP address, or a header that is not visible ASCII.
    #[error("x-forwarded-for entry is not an IP address")]
    Malformed,
}

impl TrustedProxies {
    /// The most hops that may be configured (and so the most entries ever parsed).
    pub const MAX_HOPS: usize = 32;

    /// `hops` trusted proxies; `None` unless `1 <= hops <= MAX_HOPS`.
    ///
    /// ```
    /// assert!(guard_core::request::TrustedProxies::new(0).is_none());
    /// ```
    pub fn new(hops: usize) -> Option<Self> {
        (1..=Self::MAX_HOPS)
            .contains(&hops)
            .then_some(Self { hops })
    }

    /// The number of trusted hops.
    pub fn hops(&self) -> usize {
        self.hops
    }

    /// The client address according to the trusted proxies (see the type docs), or why there is
    /// none.
    pub(crate) fn client_ip(&self, headers: &HeaderMap) -> Result<IpAddr, ForwardedError> {
        let mut seen_header = false;
        let mut taken = 0usize;
        // Header lines in reverse order, entries in each line from the right: the joined list,
        // read right to left, without splitting anything we do not need.
        let lines: Vec<_> = headers.get_all(X_FORWARDED_FOR).iter().collect();
        for line in lines.into_iter().rev() {
            seen_header = true;
            let line = line.to_str().map_err(|_| ForwardedError::Malformed)?;
            for entry in line.rsplit(',') {
                taken += 1;
                if taken == self.hops {
                    return parse_entry(entry.trim()).ok_or(ForwardedError::Malformed);
                }
                // Entries a trusted proxy wrote must still be addresses.
                parse_entry(entry.trim()).ok_or(ForwardedError::Malformed)?;
            }
        }
        if seen_header {
            Err(ForwardedError::TooShort)
        } else {
            Err(ForwardedError::Missing)
        }
    }

    /// The [`Peer`] the trusted proxies report, or `None` when the chain is missing, too short or
    /// malformed (no address is better than a spoofable one).
    ///
    /// ```
    /// use guard_core::request::TrustedProxies;
    ///
    /// let mut h = http::HeaderMap::new();
    /// h.append("x-forwarded-for", "1.2.3.4, 10.0.0.9".parse().unwrap());
    /// let two = TrustedProxies::new(2).unwrap();
    /// assert_eq!(two.peer(&h).unwrap().ip().to_string(), "1.2.3.4");
    /// assert!(two.peer(&http::HeaderMap::new()).is_none());
    /// ```
    pub fn peer(&self, headers: &HeaderMap) -> Option<Peer> {
        self.client_ip(headers).ok().map(Peer::new)
    }
}

/// `x-forwarded-for` (`http::header` has no constant for it).
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

fn parse_entry(s: &str) -> Option<IpAddr> {
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append("x-forwarded-for", l.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn counts_trusted_hops_from_the_right_across_lines() {
        let h = xff(&["6.6.6.6, 1.1.1.1", "2.2.2.2", "3.3.3.3"]);
        let two = TrustedProxies::new(2).unwrap();
        assert_eq!(two.client_ip(&h), Ok(ip("2.2.2.2")));
        let three = TrustedProxies::new(3).unwrap();
        assert_eq!(three.client_ip(&h), Ok(ip("1.1.1.1")));
    }

    #[test]
    fn short_missing_and_malformed_chains_are_errors() {
        let one = TrustedProxies::new(1).unwrap();
        let three = TrustedProxies::new(3).unwrap();
        assert_eq!(
            one.client_ip(&HeaderMap::new()),
            Err(ForwardedError::Missing)
        );
        assert_eq!(
            three.client_ip(&xff(&["1.1.1.1, 2.2.2.2"])),
            Err(ForwardedError::TooShort)
        );
        assert_eq!(
            one.client_ip(&xff(&["1.1.1.1, not-an-ip"])),
            Err(ForwardedError::Malformed)
        );
        assert_eq!(
            one.client_ip(&xff(&["1.1.1.1,"])),
            Err(ForwardedError::Malformed)
        );
        let two = TrustedProxies::new(2).unwrap();
        assert_eq!(
            two.client_ip(&xff(&["1.1.1.1, junk, 3.3.3.3"])),
            Err(ForwardedError::Malformed)
        );
        assert_eq!(two.peer(&xff(&["1.1.1.1, junk, 3.3.3.3"])), None);
    }

    #[test]
    fn accepts_ports_brackets_and_mapped_addresses() {
        let one = TrustedProxies::new(1).unwrap();
        assert_eq!(one.client_ip(&xff(&["1.2.3.4:5678"])), Ok(ip("1.2.3.4")));
        assert_eq!(
            one.client_ip(&xff(&["[2001:db8::1]:443"])),
            Ok(ip("2001:db8::1"))
        );
        assert_eq!(
            one.client_ip(&xff(&["::ffff:10.0.0.1"])),
            Ok(ip("10.0.0.1"))
        );
    }

    #[test]
    fn hops_are_bounded() {
        assert!(TrustedProxies::new(0).is_none());
        assert!(TrustedProxies::new(TrustedProxies::MAX_HOPS).is_some());
        assert!(TrustedProxies::new(TrustedProxies::MAX_HOPS + 1).is_none());
    }
}
