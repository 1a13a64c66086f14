//! What a limiter counts by: [`RateKey`] turns a request into a [`BucketKey`].
//!
//! The built-in keys read only what the *platform* or the verification layer vouched for:
//!
//! - [`RateKey::global`]: one bucket for everything.
//! - [`RateKey::peer`]: the [`Peer`](crate::request::Peer) extension set by the adapter — never a
//!   header, so a client that rewrites `X-Forwarded-For` stays in its bucket. IPv4 addresses (and
//!   IPv4-mapped IPv6 ones) count one by one; IPv6 addresses are grouped by their /64, the block one
//!   subscriber or host usually gets, so rotating addresses inside it does not buy a fresh bucket. A
//!   request without a `Peer` (messages, direct invocations) counts in one shared `no-peer` bucket:
//!   it is never unlimited.
//! - [`RateKey::principal`]: the [`Principal`](crate::request::Principal) inserted by verification,
//!   by kind, issuer and subject. **Without a principal** (no verification configured, or a verifier
//!   that inserts none) the key falls back to the peer, with the same `no-peer` bucket behind it: the
//!   post-auth limiter never lets an anonymous request through uncounted.
//! - [`RateKey::custom`]: any function `Fn(&GuardRequest) -> Option<BucketKey>`; `None` exempts the
//!   request from this limiter (the built-in keys never return `None`).
//!
//! Messages (queue, topic, stream and bus deliveries) can be decided apart: exempt
//! ([`RateKey::exempt_messages`]) or one bucket per platform-reported source
//! ([`RateKey::messages_by_source`]). A message has no address, so under the peer key every message
//! would share the `no-peer` bucket and a burst of valid queue records would be refused, redelivered
//! and finally dead-lettered. The policy builder always sets one of the two (`[rate_limit]
//! messages`, default `exempt`).
//!
//! ```
//! use guard_core::rate_limit::key::RateKey;
//! use guard_core::request::Peer;
//!
//! let mut a = http::Request::new(bytes::Bytes::new());
//! a.extensions_mut().insert(Peer::new("2001:db8:1:2::1".parse().unwrap()));
//! let mut b = http::Request::new(bytes::Bytes::new());
//! b.extensions_mut().insert(Peer::new("2001:db8:1:2:ffff::9".parse().unwrap()));
//! b.headers_mut().insert("x-forwarded-for", "198.51.100.1".parse().unwrap());
//! assert_eq!(RateKey::peer().key(&a), RateKey::peer().key(&b));
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use crate::request::{GuardRequest, PrincipalKind, Trigger};

/// The identity of one bucket.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BucketKey(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    Global,
    NoPeer,
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6Net([u8; 8]),
    Named(Arc<str>),
    /// A network principal (kind `network`, no issuer): its address, whole (not by /64), as the
    /// text key `p:7:network0:<address>` would have counted it.
    NetworkPrincipal(IpAddr),
    /// The source of a message: `<kind length>:<kind><source id>`.
    MessageSource(Arc<str>),
}

impl BucketKey {
    /// The single shared bucket.
    ///
    /// ```
    /// use guard_core::rate_limit::key::BucketKey;
    /// assert_eq!(BucketKey::global(), BucketKey::global());
    /// ```
    pub fn global() -> Self {
        BucketKey(Repr::Global)
    }

    /// The bucket of a client address: IPv4 (and IPv4-mapped IPv6) by address, IPv6 by /64.
    ///
    /// ```
    /// use guard_core::rate_limit::key::BucketKey;
    /// let a = BucketKey::peer("2001:db8::1".parse().unwrap());
    /// let b = BucketKey::peer("2001:db8::ffff:2".parse().unwrap());
    /// assert_eq!(a, b);
    /// assert_eq!(BucketKey::peer("::ffff:192.0.2.1".parse().unwrap()),
    ///            BucketKey::peer("192.0.2.1".parse().unwrap()));
    /// ```
    pub fn peer(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => BucketKey(Repr::V4(v4.octets())),
            IpAddr::V6(v6) => {
                let o = v6.octets();
                let mut net = [0u8; 8];
                net.copy_from_slice(&o[..8]);
                BucketKey(Repr::V6Net(net))
            }
        }
    }

    /// The shared bucket of requests that carry no platform-observed address.
    ///
    /// ```
    /// use guard_core::rate_limit::key::BucketKey;
    /// assert_ne!(BucketKey::no_peer(), BucketKey::global());
    /// ```
    pub fn no_peer() -> Self {
        BucketKey(Repr::NoPeer)
    }

    /// A bucket named by the application (tenant, API key id...). Names never collide with the
    /// address or global buckets.
    ///
    /// ```
    /// use guard_core::rate_limit::key::BucketKey;
    /// assert_eq!(BucketKey::named("tenant-1"), BucketKey::named(String::from("tenant-1")));
    /// ```
    pub fn named(name: impl AsRef<str>) -> Self {
        BucketKey(Repr::Named(Arc::from(name.as_ref())))
    }

    /// The stable text form used in Redis keys: `g`, `np`, `4:<addr>`, `6:<net>/64`, `n:<name>`.
    pub(crate) fn write_redis_suffix(&self, out: &mut String) {
        use std::fmt::Write;
        match &self.0 {
            Repr::Global => out.push('g'),
            Repr::NoPeer => out.push_str("np"),
            Repr::V4(o) => {
                let _ = write!(out, "4:{}.{}.{}.{}", o[0], o[1], o[2], o[3]);
            }
            Repr::V6Net(n) => {
                let mut o = [0u8; 16];
                o[..8].copy_from_slice(n);
                let _ = write!(out, "6:{}/64", Ipv6Addr::from(o));
            }
            Repr::Named(s) => {
                out.push_str("n:");
                out.push_str(s);
            }
            Repr::NetworkPrincipal(ip) => {
                // The same text as the named key a network principal had before it got its own
                // variant, so buckets in Redis carry over.
                let _ = write!(out, "n:p:7:network0:{ip}");
            }
            Repr::MessageSource(source) => {
                out.push_str("m:");
                out.push_str(source);
            }
        }
    }
}

/// Shows the kind of bucket and, for addresses, the (grouped) address; names are not shown.
impl fmt::Debug for BucketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Global => f.write_str("BucketKey(global)"),
            Repr::NoPeer => f.write_str("BucketKey(no-peer)"),
            Repr::V4(_) | Repr::V6Net(_) | Repr::NetworkPrincipal(_) => {
                let mut s = String::new();
                self.write_redis_suffix(&mut s);
                write!(f, "BucketKey({s})")
            }
            Repr::Named(n) => write!(f, "BucketKey(named, {} bytes)", n.len()),
            Repr::MessageSource(n) => write!(f, "BucketKey(message source, {} bytes)", n.len()),
        }
    }
}

/// How a limiter turns a request into the bucket it counts against: [`global`](Self::global),
/// [`peer`](Self::peer), [`principal`](Self::principal) or [`custom`](Self::custom), and what it
/// does with messages ([`exempt_messages`](Self::exempt_messages),
/// [`messages_by_source`](Self::messages_by_source)).
///
/// ```
/// use guard_core::rate_limit::key::{BucketKey, RateKey};
/// let req = http::Request::new(bytes::Bytes::new());
/// assert_eq!(RateKey::global().key(&req), Some(BucketKey::global()));
/// assert_eq!(RateKey::peer().key(&req), Some(BucketKey::no_peer()));
/// ```
#[derive(Clone)]
pub struct RateKey {
    by: By,
    messages: MessageRule,
}

/// An application's key function.
type KeyFn = dyn Fn(&GuardRequest) -> Option<BucketKey> + Send + Sync;

#[derive(Clone)]
enum By {
    Global,
    Peer,
    Principal,
    Custom(Arc<KeyFn>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MessageRule {
    /// Messages are keyed like any other request.
    AsRequests,
    Exempt,
    BySource,
}

impl fmt::Debug for RateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let by = match self.by {
            By::Global => "global",
            By::Peer => "peer",
            By::Principal => "principal",
            By::Custom(_) => "custom",
        };
        f.debug_struct("RateKey")
            .field("by", &by)
            .field("messages", &self.messages)
            .finish()
    }
}

impl RateKey {
    const fn by(by: By) -> Self {
        Self {
            by,
            messages: MessageRule::AsRequests,
        }
    }

    /// One bucket for every request.
    pub fn global() -> Self {
        Self::by(By::Global)
    }

    /// The platform-observed client address (the `Peer` extension; never a header). IPv6 by /64.
    pub fn peer() -> Self {
        Self::by(By::Peer)
    }

    /// The verified principal (kind, issuer, subject); without one, the [`peer`](Self::peer) key.
    ///
    /// Principals of different kinds or issuers never share a bucket. A network principal (the
    /// CIDR verifier's) is keyed by its address without any allocation; other principals by a name
    /// built from the length-prefixed kind, issuer and subject (one allocation).
    ///
    /// ```
    /// use guard_core::rate_limit::key::RateKey;
    /// use guard_core::request::{Principal, PrincipalKind};
    /// let mut a = http::Request::new(bytes::Bytes::new());
    /// a.extensions_mut().insert(Principal::new(PrincipalKind::Jwt, "alice"));
    /// let mut b = http::Request::new(bytes::Bytes::new());
    /// b.extensions_mut().insert(Principal::new(PrincipalKind::Hmac, "alice"));
    /// assert_ne!(RateKey::principal().key(&a), RateKey::principal().key(&b));
    /// ```
    pub fn principal() -> Self {
        Self::by(By::Principal)
    }

    /// A key computed by the application; `None` exempts the request from this limiter.
    ///
    /// ```
    /// use guard_core::rate_limit::key::{BucketKey, RateKey};
    /// let by_tenant = RateKey::custom(|req| {
    ///     req.headers().get("x-tenant").and_then(|v| v.to_str().ok()).map(BucketKey::named)
    /// });
    /// assert_eq!(by_tenant.key(&http::Request::new(bytes::Bytes::new())), None);
    /// ```
    pub fn custom(
        key: impl Fn(&GuardRequest) -> Option<BucketKey> + Send + Sync + 'static,
    ) -> Self {
        Self::by(By::Custom(Arc::new(key)))
    }

    /// Messages (a [`Trigger::Message`]) are not counted by this limiter; other requests by this
    /// key.
    ///
    /// Exempt is the safe choice for queues: a refused message is redelivered and, after the
    /// platform's redelivery limit, dead-lettered, so a limiter in front of a valid queue loses
    /// orders under load. Who may deliver messages is decided by the platform's permissions and
    /// the source allow-list; how fast they arrive by the platform's own batch size and
    /// concurrency.
    ///
    /// ```
    /// use guard_core::rate_limit::key::RateKey;
    /// use guard_core::request::{MessageTrigger, Trigger};
    /// let mut msg = http::Request::new(bytes::Bytes::new());
    /// msg.extensions_mut().insert(Trigger::Message(MessageTrigger::new("sqs", "arn:aws:sqs:us-east-1:1:q", "m-1")));
    /// assert_eq!(RateKey::peer().exempt_messages().key(&msg), None);
    /// let http = http::Request::new(bytes::Bytes::new());
    /// assert_eq!(RateKey::peer().exempt_messages().key(&http), RateKey::peer().key(&http));
    /// ```
    pub fn exempt_messages(mut self) -> Self {
        self.messages = MessageRule::Exempt;
        self
    }

    /// Messages count in one bucket per kind and platform-reported source; other requests by this
    /// key. Use it only when a downstream needs the cap, with a rate sized for the queue.
    ///
    /// ```
    /// use guard_core::rate_limit::key::RateKey;
    /// use guard_core::request::{MessageTrigger, Trigger};
    /// let mut msg = http::Request::new(bytes::Bytes::new());
    /// msg.extensions_mut().insert(Trigger::Message(MessageTrigger::new("sqs", "arn:aws:sqs:us-east-1:1:q", "m-1")));
    /// assert!(RateKey::peer().messages_by_source().key(&msg).is_some());
    /// ```
    pub fn messages_by_source(mut self) -> Self {
        self.messages = MessageRule::BySource;
        self
    }

    /// The bucket of `req`, or `None` when it is exempt from this limiter.
    pub fn key(&self, req: &GuardRequest) -> Option<BucketKey> {
        if self.messages != MessageRule::AsRequests
            && let Some(Trigger::Message(m)) = req.extensions().get::<Trigger>()
        {
            return (self.messages == MessageRule::BySource).then(|| {
                BucketKey(Repr::MessageSource(Arc::from(format!(
                    "{}:{}{}",
                    m.kind.len(),
                    m.kind,
                    m.source_id
                ))))
            });
        }
        match &self.by {
            By::Global => Some(BucketKey::global()),
            By::Peer => Some(peer_key(req)),
            By::Principal => Some(principal_key(req)),
            By::Custom(key) => key(req),
        }
    }
}

fn peer_key(req: &GuardRequest) -> BucketKey {
    match req.extensions().get::<crate::request::Peer>() {
        Some(p) => BucketKey::peer(p.ip()),
        None => BucketKey::no_peer(),
    }
}

fn principal_key(req: &GuardRequest) -> BucketKey {
    let Some(p) = req.extensions().get::<crate::request::Principal>() else {
        return peer_key(req);
    };
    if p.kind == PrincipalKind::Network
        && p.issuer.is_none()
        && let Some(ip) = p.subject.ip()
    {
        return BucketKey(Repr::NetworkPrincipal(ip));
    }
    // Length-prefixed parts, so that no choice of subject can collide with another principal.
    let kind = p.kind.as_str();
    let issuer = p.issuer.as_deref().unwrap_or("");
    BucketKey(Repr::Named(
        p.subject
            .with_text(|subject| principal_name(kind, issuer, subject)),
    ))
}

/// `p:<len>:<kind><len>:<issuer><subject>` as one allocation: written on the stack first when it
/// fits (the usual case), then copied into the `Arc`.
fn principal_name(kind: &str, issuer: &str, subject: &str) -> Arc<str> {
    use std::io::Write;
    let mut buf = [0u8; 256];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let written = write!(
        cursor,
        "p:{}:{kind}{}:{issuer}{subject}",
        kind.len(),
        issuer.len()
    );
    let end = usize::try_from(cursor.position()).unwrap_or(0);
    if written.is_ok()
        && let Ok(name) = std::str::from_utf8(&buf[..end])
    {
        return Arc::from(name);
    }
    Arc::from(format!(
        "p:{}:{kind}{}:{issuer}{subject}",
        kind.len(),
        issuer.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Peer as PeerAddr, Principal as Who, PrincipalKind};

    fn req_from(ip: &str) -> GuardRequest {
        let mut r = http::Request::new(bytes::Bytes::new());
        r.extensions_mut()
            .insert(PeerAddr::new(ip.parse().unwrap()));
        r
    }

    #[test]
    fn peer_key_ignores_forwarded_headers() {
        let a = req_from("203.0.113.7");
        let mut b = req_from("203.0.113.7");
        b.headers_mut()
            .insert("x-forwarded-for", "1.2.3.4, 5.6.7.8".parse().unwrap());
        b.headers_mut()
            .insert("forwarded", "for=9.9.9.9".parse().unwrap());
        assert_eq!(RateKey::peer().key(&a), RateKey::peer().key(&b));
        assert_ne!(
            RateKey::peer().key(&a),
            RateKey::peer().key(&req_from("203.0.113.8"))
        );
    }

    #[test]
    fn ipv6_is_grouped_by_slash_64() {
        let base = RateKey::peer().key(&req_from("2001:db8:aa:bb::1"));
        assert_eq!(
            base,
            RateKey::peer().key(&req_from("2001:db8:aa:bb:1:2:3:4"))
        );
        assert_ne!(base, RateKey::peer().key(&req_from("2001:db8:aa:bc::1")));
        let mut s = String::new();
        base.unwrap().write_redis_suffix(&mut s);
        assert_eq!(s, "6:2001:db8:aa:bb::/64");
    }

    #[test]
    fn principal_name_is_the_same_whether_it_fits_the_stack_buffer_or_not() {
        for len in [0, 10, 200, 230, 231, 232, 300, 1000] {
            let subject = "s".repeat(len);
            assert_eq!(
                &*principal_name("jwt", "https://iss.example", &subject),
                format!("p:3:jwt19:https://iss.example{subject}")
            );
        }
    }

    #[test]
    fn principal_key_falls_back_to_peer_without_a_principal() {
        let anon = req_from("203.0.113.7");
        assert_eq!(RateKey::principal().key(&anon), RateKey::peer().key(&anon));
        let mut signed = req_from("203.0.113.7");
        signed
            .extensions_mut()
            .insert(Who::new(PrincipalKind::Hmac, "orders-webhook-hmac"));
        assert_ne!(
            RateKey::principal().key(&signed),
            RateKey::peer().key(&signed)
        );
    }

    #[test]
    fn principal_parts_cannot_be_shifted_to_collide() {
        let mut a = req_from("203.0.113.7");
        a.extensions_mut()
            .insert(Who::new(PrincipalKind::Jwt, "b").with_issuer("a:"));
        let mut b = req_from("203.0.113.7");
        b.extensions_mut()
            .insert(Who::new(PrincipalKind::Jwt, ":b").with_issuer("a"));
        assert_ne!(RateKey::principal().key(&a), RateKey::principal().key(&b));
    }

    fn message(kind: &str, source: &str) -> GuardRequest {
        let mut r = http::Request::new(bytes::Bytes::new());
        r.extensions_mut()
            .insert(Trigger::Message(crate::request::MessageTrigger::new(
                kind, source, "m-1",
            )));
        r
    }

    #[test]
    fn messages_are_exempt_or_keyed_by_kind_and_source_never_by_the_no_peer_bucket() {
        let q = "arn:aws:sqs:us-east-1:1:orders";
        assert_eq!(
            RateKey::peer().exempt_messages().key(&message("sqs", q)),
            None
        );
        assert_eq!(
            RateKey::principal()
                .exempt_messages()
                .key(&message("sqs", q)),
            None
        );
        let by_source = RateKey::peer().messages_by_source();
        let a = by_source.key(&message("sqs", q)).unwrap();
        assert_eq!(a, by_source.key(&message("sqs", q)).unwrap());
        assert_ne!(a, BucketKey::no_peer());
        assert_ne!(a, by_source.key(&message("kinesis", q)).unwrap());
        assert_ne!(a, by_source.key(&message("sqs", "other")).unwrap());
        // Kind and source cannot be shifted into each other.
        assert_ne!(
            by_source.key(&message("sq", "sarn")),
            by_source.key(&message("sqs", "arn"))
        );
        assert_eq!(redis_text(&a), format!("m:3:sqs{q}"));
        // HTTP requests are counted by the inner key.
        let http = req_from("203.0.113.7");
        assert_eq!(by_source.key(&http), RateKey::peer().key(&http));
    }

    #[test]
    fn rate_key_debug_names_the_key_and_the_message_rule_not_a_function() {
        let shown = |k: RateKey| format!("{k:?}");
        assert_eq!(
            shown(RateKey::peer().exempt_messages()),
            r#"RateKey { by: "peer", messages: Exempt }"#
        );
        assert_eq!(
            shown(RateKey::custom(|_| None).messages_by_source()),
            r#"RateKey { by: "custom", messages: BySource }"#
        );
        assert_eq!(
            shown(RateKey::principal()),
            r#"RateKey { by: "principal", messages: AsRequests }"#
        );
        assert_eq!(
            shown(RateKey::global()),
            r#"RateKey { by: "global", messages: AsRequests }"#
        );
    }

    #[test]
    fn debug_does_not_print_names() {
        let k = BucketKey::named("tenant-secret-ish");
        assert!(!format!("{k:?}").contains("tenant"));
        assert_eq!(format!("{k:?}"), "BucketKey(named, 17 bytes)");
        let shown = |k: BucketKey| format!("{k:?}");
        assert_eq!(shown(BucketKey::global()), "BucketKey(global)");
        assert_eq!(shown(BucketKey::no_peer()), "BucketKey(no-peer)");
        assert_eq!(
            shown(BucketKey::peer("203.0.113.7".parse().unwrap())),
            "BucketKey(4:203.0.113.7)"
        );
    }

    fn network_principal(ip: &str) -> GuardRequest {
        let mut r = req_from(ip);
        let addr: IpAddr = ip.parse().unwrap();
        r.extensions_mut()
            .insert(Who::new(PrincipalKind::Network, addr));
        r
    }

    fn redis_text(k: &BucketKey) -> String {
        let mut s = String::new();
        k.write_redis_suffix(&mut s);
        s
    }

    #[test]
    fn network_principals_are_keyed_by_address_apart_from_peers_and_other_kinds() {
        let a = RateKey::principal()
            .key(&network_principal("203.0.113.7"))
            .unwrap();
        assert_eq!(
            a,
            RateKey::principal()
                .key(&network_principal("203.0.113.7"))
                .unwrap()
        );
        assert_ne!(
            a,
            RateKey::principal()
                .key(&network_principal("203.0.113.8"))
                .unwrap()
        );
        // Not the pre-auth limiter's peer bucket of the same address...
        assert_ne!(a, BucketKey::peer("203.0.113.7".parse().unwrap()));
        // ...nor a principal of another kind whose subject is the same text.
        for kind in [PrincipalKind::Hmac, PrincipalKind::Custom("network".into())] {
            let mut other = req_from("203.0.113.7");
            other.extensions_mut().insert(Who::new(kind, "203.0.113.7"));
            assert_ne!(a, RateKey::principal().key(&other).unwrap());
        }
        // An issuer keeps it apart too (it goes into the named key).
        let mut issued = req_from("203.0.113.7");
        let addr: IpAddr = "203.0.113.7".parse().unwrap();
        issued
            .extensions_mut()
            .insert(Who::new(PrincipalKind::Network, addr).with_issuer("edge"));
        let issued = RateKey::principal().key(&issued).unwrap();
        assert_ne!(a, issued);
        assert_eq!(redis_text(&issued), "n:p:7:network4:edge203.0.113.7");
        // IPv6 network principals count by address, not by /64 as peers do.
        let v6 = RateKey::principal()
            .key(&network_principal("2001:db8::1"))
            .unwrap();
        assert_ne!(
            v6,
            RateKey::principal()
                .key(&network_principal("2001:db8::2"))
                .unwrap()
        );
    }

    #[test]
    fn network_principal_keys_keep_the_redis_text_of_the_named_key_they_replaced() {
        for ip in ["203.0.113.7", "2001:db8::1"] {
            let k = RateKey::principal().key(&network_principal(ip)).unwrap();
            let before = format!("n:{}", &*principal_name("network", "", ip));
            assert_eq!(redis_text(&k), before);
            assert_eq!(redis_text(&k), format!("n:p:7:network0:{ip}"));
        }
    }

    #[test]
    fn a_principal_with_an_address_subject_of_another_kind_gets_the_text_of_the_address() {
        let addr: IpAddr = "2001:db8::7".parse().unwrap();
        let mut r = req_from("203.0.113.7");
        r.extensions_mut()
            .insert(Who::new(PrincipalKind::Source, addr));
        let mut named = req_from("203.0.113.7");
        named
            .extensions_mut()
            .insert(Who::new(PrincipalKind::Source, "2001:db8::7"));
        assert_eq!(
            RateKey::principal().key(&r),
            RateKey::principal().key(&named)
        );
    }
}
