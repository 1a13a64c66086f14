//! [`CidrVerifier`]: the caller's platform-observed address must be on an allow-list, and
//! [`TrustedProxies`]: deriving that address from `X-Forwarded-For` without trusting the client.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{HeaderMap, HeaderName};
use ipnet::IpNet;

use super::layer::{Verifier, VerifyFuture};
use crate::rejection::{Rejection, RejectionKind};
use crate::request::{GuardRequest, Peer, Principal, PrincipalKind};

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
/// fewer entries than `hops`, is an error: the verifier then refuses (fail closed).
///
/// ```
/// use guard_core::verify::TrustedProxies;
///
/// let mut h = http::HeaderMap::new();
/// h.append("x-forwarded-for", "10.0.0.5, 1.2.3.4".parse().unwrap());
/// let one = TrustedProxies::new(1).unwrap();
/// assert_eq!(one.client_ip(&h).unwrap().to_string(), "1.2.3.4"); // never the spoofable 10.0.0.5
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedProxies {
    hops: usize,
}

/// Why no client address could be derived from `X-Forwarded-For`. Carries no header values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardedError {
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
    /// assert!(guard_core::verify::TrustedProxies::new(0).is_none());
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

    /// The client address according to the trusted proxies (see the type docs).
    pub fn client_ip(&self, headers: &HeaderMap) -> Result<IpAddr, ForwardedError> {
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

/// Accepts callers whose address is in one of the allowed networks (IPv4 and IPv6).
///
/// The address is the [`Peer`] the adapter observed, or, when [`TrustedProxies`] are configured,
/// the one they report in `X-Forwarded-For`. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are
/// matched as IPv4. No address → 403 `guard.verify.forbidden_address` (fail closed); an address
/// outside every network → 403 `guard.verify.forbidden_address`. The principal is
/// `PrincipalKind::Network` with the address as subject ([`Subject::ip`](crate::request::Subject::ip)).
///
/// ```
/// use guard_core::verify::{CidrVerifier, Verifier};
/// use guard_core::request::Peer;
///
/// let v = CidrVerifier::new(["203.0.113.0/24".parse().unwrap(), "2001:db8::/32".parse().unwrap()]);
/// let mut req = http::Request::new(bytes::Bytes::new());
/// req.extensions_mut().insert(Peer::new("198.51.100.9".parse().unwrap()));
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// assert_eq!(rt.block_on(v.verify(&req)).unwrap_err().code(), "guard.verify.forbidden_address");
/// ```
#[derive(Debug, Clone)]
pub struct CidrVerifier {
    nets: Arc<[IpNet]>,
    proxies: Option<TrustedProxies>,
}

impl CidrVerifier {
    /// Allows the given networks (an empty list allows nobody).
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            nets: nets.into_iter().map(|n| n.trunc()).collect(),
            proxies: None,
        }
    }

    /// Takes the client address from `X-Forwarded-For` through `proxies` instead of [`Peer`].
    pub fn with_trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.proxies = Some(proxies);
        self
    }

    /// Whether `ip` is allowed.
    ///
    /// ```
    /// let v = guard_core::verify::CidrVerifier::new(["10.0.0.0/8".parse().unwrap()]);
    /// assert!(v.allows("::ffff:10.1.2.3".parse().unwrap()));
    /// ```
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }

    fn check(&self, req: &GuardRequest) -> Result<Principal, Rejection> {
        let forbidden =
            |why: &'static str| Rejection::new(RejectionKind::ForbiddenAddress).with_reason(why);
        let ip = match self.proxies {
            Some(p) => p.client_ip(req.headers()).map_err(|e| {
                forbidden(match e {
                    ForwardedError::Missing => "no x-forwarded-for header",
                    ForwardedError::TooShort => "x-forwarded-for shorter than trusted hops",
                    _ => "malformed x-forwarded-for",
                })
            })?,
            None => req
                .extensions()
                .get::<Peer>()
                .map(|p| p.ip())
                .ok_or_else(|| forbidden("no platform-observed peer address"))?,
        };
        if self.allows(ip) {
            // The address itself is the subject: nothing is formatted or allocated here.
            Ok(Principal::new(PrincipalKind::Network, ip.to_canonical()))
        } else {
            Err(forbidden("address not on the allow-list"))
        }
    }
}

impl Verifier for CidrVerifier {
    fn verify<'a>(&'a self, req: &'a GuardRequest) -> VerifyFuture<'a> {
        let r = self.check(req);
        Box::pin(async move { r })
    }

    /// Pure and immediate: the allow-list needs nothing but the request.
    fn verify_now(&self, req: &GuardRequest) -> Option<Result<Principal, Rejection>> {
        Some(self.check(req))
    }
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

    #[test]
    fn host_bits_in_a_network_are_ignored() {
        let v = CidrVerifier::new(["10.1.2.3/8".parse().unwrap()]);
        assert!(v.allows(ip("10.200.0.1")));
        assert!(!v.allows(ip("11.0.0.1")));
    }
}
