//! CIDR allow-lists and X-Forwarded-For.

use bytes::Bytes;
use guard_core::GuardRequest;
use guard_core::RejectionKind;
use guard_core::request::TrustedProxies;
use guard_core::request::{Peer, PrincipalKind};
use guard_core::verify::CidrVerifier;

use crate::support::Stack;

fn with_xff(lines: &[&str]) -> GuardRequest {
    let mut b = http::Request::builder();
    for l in lines {
        b = b.header("x-forwarded-for", *l);
    }
    let mut req = b.body(Bytes::new()).unwrap();
    // The load balancer's own address, as the platform saw it.
    req.extensions_mut()
        .insert(Peer::new("10.0.0.1".parse().unwrap()));
    req
}

fn peer(ip: &str) -> GuardRequest {
    let mut req = http::Request::new(Bytes::new());
    req.extensions_mut().insert(Peer::new(ip.parse().unwrap()));
    req
}

#[tokio::test]
async fn spoofed_left_most_entry_is_ignored_with_one_trusted_hop() {
    let v = CidrVerifier::new(["10.0.0.0/8".parse().unwrap()])
        .with_trusted_proxies(TrustedProxies::new(1).unwrap());
    let s = Stack::of(v);
    s.denied(
        with_xff(&["10.0.0.5, 1.2.3.4"]),
        RejectionKind::ForbiddenAddress,
    )
    .await;
    // Repeated header lines are joined: the right-most entry of the last line counts.
    s.denied(
        with_xff(&["10.0.0.5", "1.2.3.4"]),
        RejectionKind::ForbiddenAddress,
    )
    .await;
    let p = s.allowed(with_xff(&["1.2.3.4", "10.9.9.9"])).await;
    assert_eq!(p.kind, PrincipalKind::Network);
    assert_eq!(p.subject, "10.9.9.9");
}

#[tokio::test]
async fn missing_or_short_forwarded_chain_fails_closed() {
    let v = CidrVerifier::new(["0.0.0.0/0".parse().unwrap()])
        .with_trusted_proxies(TrustedProxies::new(2).unwrap());
    let s = Stack::of(v);
    s.denied(with_xff(&[]), RejectionKind::ForbiddenAddress)
        .await;
    s.denied(with_xff(&["1.2.3.4"]), RejectionKind::ForbiddenAddress)
        .await;
    s.denied(
        with_xff(&["1.2.3.4, nonsense"]),
        RejectionKind::ForbiddenAddress,
    )
    .await;
    s.allowed(with_xff(&["1.2.3.4, 5.6.7.8"])).await;
}

/// The client sees one code; the security event says which part of the chain was wrong.
#[tokio::test]
async fn the_event_names_why_an_address_was_refused() {
    let v = CidrVerifier::new(["10.0.0.0/8".parse().unwrap()])
        .with_trusted_proxies(TrustedProxies::new(2).unwrap());
    let s = Stack::of(v);
    for (req, reason) in [
        (with_xff(&[]), "no x-forwarded-for header"),
        (
            with_xff(&["1.2.3.4"]),
            "x-forwarded-for shorter than trusted hops",
        ),
        (
            with_xff(&["1.2.3.4, nonsense"]),
            "malformed x-forwarded-for",
        ),
        (
            with_xff(&["1.2.3.4, 5.6.7.8"]),
            "address not on the allow-list",
        ),
    ] {
        assert_eq!(s.call(req).await.status(), 403, "{reason}");
        let event = s.events.lock().unwrap().pop().expect("one event");
        assert_eq!(event.reason.as_deref(), Some(reason));
    }
    let s = Stack::of(CidrVerifier::new(["10.0.0.0/8".parse().unwrap()]));
    assert_eq!(s.call(http::Request::new(Bytes::new())).await.status(), 403);
    let event = s.events.lock().unwrap().pop().expect("one event");
    assert_eq!(
        event.reason.as_deref(),
        Some("no platform-observed peer address")
    );
}

#[tokio::test]
async fn ipv6_allow_lists_work() {
    let s = Stack::of(CidrVerifier::new([
        "2001:db8:abcd::/48".parse().unwrap(),
        "203.0.113.0/24".parse().unwrap(),
    ]));
    s.allowed(peer("2001:db8:abcd:12::1")).await;
    s.denied(peer("2001:db8:abce::1"), RejectionKind::ForbiddenAddress)
        .await;
    // IPv4-mapped IPv6 is matched as IPv4.
    s.allowed(peer("::ffff:203.0.113.9")).await;
    s.denied(peer("::ffff:198.51.100.1"), RejectionKind::ForbiddenAddress)
        .await;
}

#[tokio::test]
async fn no_peer_is_forbidden() {
    let s = Stack::of(CidrVerifier::new([
        "0.0.0.0/0".parse().unwrap(),
        "::/0".parse().unwrap(),
    ]));
    s.denied(
        http::Request::new(Bytes::new()),
        RejectionKind::ForbiddenAddress,
    )
    .await;
}

#[tokio::test]
async fn thousand_entry_header_is_bounded() {
    let v = CidrVerifier::new(["198.51.100.0/24".parse().unwrap()])
        .with_trusted_proxies(TrustedProxies::new(2).unwrap());
    let s = Stack::of(v);
    // 1,000 attacker-written entries (some not even addresses) left of the trusted part.
    let mut entries: Vec<String> = (0..1000)
        .map(|i| format!("10.{}.{}.1", i / 256, i % 256))
        .collect();
    // Never parsed: only the right-most `hops` entries are (else this would be malformed).
    entries[3] = "garbage".into();
    entries.push("198.51.100.7".into()); // written by our first proxy: the client
    entries.push("10.0.0.2".into()); // written by our second proxy
    let line = entries.join(", ");
    let p = s.allowed(with_xff(&[&line])).await;
    assert_eq!(p.subject, "198.51.100.7");
    // Also as 1,002 separate header lines.
    let lines: Vec<&str> = entries.iter().map(String::as_str).collect();
    assert_eq!(s.allowed(with_xff(&lines)).await.subject, "198.51.100.7");
}
