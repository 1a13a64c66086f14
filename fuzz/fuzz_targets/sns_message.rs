//! Any SNS envelope and certificate URL: parsing never panics, and a certificate URL that is
//! accepted always points at `https://sns.<region>.amazonaws.com(.cn)/SimpleNotificationService-<hex>.pem`
//! as `http::Uri` reads it (no userinfo, port, query or fragment can move the host elsewhere).
#![no_main]

use guard_aws::sns::{CertUrl, SnsMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<SnsMessage>(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(url) = CertUrl::parse(text) {
        let uri: http::Uri = url.as_str().parse().expect("an accepted URL is a URI");
        assert_eq!(uri.scheme_str(), Some("https"));
        assert!(uri.port().is_none());
        assert!(uri.query().is_none());
        let host = uri.host().expect("host");
        let region = url.region();
        assert!(
            host == format!("sns.{region}.amazonaws.com")
                || host == format!("sns.{region}.amazonaws.com.cn"),
            "host {host}"
        );
        let authority = uri.authority().expect("authority").as_str();
        assert!(!authority.contains('@'));
        let path = uri.path();
        let hex = path
            .strip_prefix("/SimpleNotificationService-")
            .and_then(|p| p.strip_suffix(".pem"))
            .expect("path");
        assert!(!hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    }
});
