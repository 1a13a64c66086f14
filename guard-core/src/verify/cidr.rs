//! [`CidrVerifier`]: the caller's platform-observed address must be on an allow-list.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::rejection::{Rejection, RejectionKind};
use crate::request::{
    ForwardedError, GuardRequest, Peer, Principal, PrincipalKind, TrustedProxies,
};

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

// Pure and immediate: the allow-list needs nothing but the request.
crate::macros::verifier_from_check!(CidrVerifier, pure);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Verifier;

    #[test]
    fn host_bits_in_a_network_are_ignored() {
        let v = CidrVerifier::new(["10.1.2.3/8".parse().unwrap()]);
        assert!(v.allows("10.200.0.1".parse().unwrap()));
        assert!(!v.allows("11.0.0.1".parse().unwrap()));
    }

    #[test]
    fn decides_at_once_without_a_future() {
        let v = CidrVerifier::new(["10.0.0.0/8".parse().unwrap()]);
        let from = |ip: &str| {
            let mut req = http::Request::new(bytes::Bytes::new());
            req.extensions_mut().insert(Peer::new(ip.parse().unwrap()));
            req
        };
        let allowed = v.verify_now(&from("10.1.2.3")).expect("decided at once");
        assert_eq!(allowed.unwrap().subject, "10.1.2.3");
        let refused = v.verify_now(&from("11.0.0.1")).expect("decided at once");
        assert_eq!(refused.unwrap_err().kind(), RejectionKind::ForbiddenAddress);
    }
}
