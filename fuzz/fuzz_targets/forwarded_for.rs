//! Any `X-Forwarded-For` value (possibly repeated): resolution never panics, and an address it
//! returns was written in the header.
#![no_main]

use guard_core::request::TrustedProxies;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&hops, rest)) = data.split_first() else {
        return;
    };
    let mut headers = http::HeaderMap::new();
    for line in rest.split(|b| *b == b'\n') {
        if let Ok(v) = http::HeaderValue::from_bytes(line) {
            headers.append("x-forwarded-for", v);
        }
    }
    let Some(proxies) = TrustedProxies::new(usize::from(hops % 40)) else {
        return;
    };
    if let Some(ip) = proxies.peer(&headers).map(|p| p.ip()) {
        let text: String = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",")
            .to_ascii_lowercase();
        let canon = ip.to_string().to_ascii_lowercase();
        let expanded = match ip {
            std::net::IpAddr::V6(v6) => v6
                .segments()
                .iter()
                .map(|s| format!("{s:x}"))
                .collect::<Vec<_>>()
                .join(":"),
            std::net::IpAddr::V4(_) => canon.clone(),
        };
        // Some spelling of the address is in the header (IPv6 may be written expanded or with
        // leading zeros; the resolver parses, so only sanity is checked for those).
        assert!(
            text.contains(&canon) || text.contains(&expanded) || ip.is_ipv6(),
            "resolved an address that is not in the header"
        );
    }
});
