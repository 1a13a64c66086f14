//! The strict check of `SigningCertURL`, done before anything is fetched.
//!
//! Accepted: exactly `https://sns.<region>.amazonaws.com/SimpleNotificationService-<hex>.pem`
//! (or `.amazonaws.com.cn` for `cn-*` regions). Everything else is refused: another scheme,
//! userinfo (`…@evil.com`), a port, a host that merely starts or ends like SNS
//! (`sns.us-east-1.amazonaws.com.evil.com`, S3 hosts), a query or fragment (`?x=.pem`), another
//! path, percent-encoding, upper case, whitespace. The official validators' "ends with `.pem`"
//! check accepts several of those.

use std::fmt;

/// A certificate URL that passed the strict check.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CertUrl {
    url: String,
    region_len: usize,
}

impl fmt::Debug for CertUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CertUrl").field(&self.url).finish()
    }
}

impl CertUrl {
    /// Checks `url` strictly.
    ///
    /// ```
    /// use guard_aws::sns::CertUrl;
    /// let ok = CertUrl::parse("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123abcd.pem").unwrap();
    /// assert_eq!(ok.region(), "eu-west-1");
    /// assert!(CertUrl::parse("https://sns.eu-west-1.amazonaws.com.evil.com/SimpleNotificationService-0.pem").is_none());
    /// ```
    pub fn parse(url: &str) -> Option<Self> {
        let rest = url.strip_prefix("https://")?;
        let (host, path) = rest.split_at(rest.find('/')?);
        let region = host
            .strip_prefix("sns.")?
            .strip_suffix(".amazonaws.com")
            .or_else(|| {
                host.strip_prefix("sns.")?
                    .strip_suffix(".amazonaws.com.cn")
                    .filter(|r| r.starts_with("cn-"))
            })?;
        if !is_region(region) {
            return None;
        }
        let hex = path
            .strip_prefix("/SimpleNotificationService-")?
            .strip_suffix(".pem")?;
        if hex.is_empty() || hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(Self {
            url: url.to_owned(),
            region_len: region.len(),
        })
    }

    /// The URL.
    ///
    /// ```
    /// let u = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-ab.pem";
    /// assert_eq!(guard_aws::sns::CertUrl::parse(u).unwrap().as_str(), u);
    /// ```
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The region in the host name.
    ///
    /// ```
    /// let u = "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-ab.pem";
    /// assert_eq!(guard_aws::sns::CertUrl::parse(u).unwrap().region(), "cn-north-1");
    /// ```
    pub fn region(&self) -> &str {
        let start = "https://sns.".len();
        &self.url[start..start + self.region_len]
    }
}

/// `us-east-1`, `us-gov-west-1`, `cn-north-1`, `ap-southeast-5`...: lower-case letters and digits
/// in dash-separated parts, ending in a number.
fn is_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && r.len() <= 32
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_certificate_urls() {
        for u in [
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-d6d679a1d18e95c2f9ffcf11f4f9e198.pem",
            "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem",
            "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-0123456789abcdef.pem",
        ] {
            assert!(CertUrl::parse(u).is_some(), "{u}");
        }
    }

    #[test]
    fn debug_shows_the_checked_url() {
        let u = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-ab.pem";
        let parsed = CertUrl::parse(u).unwrap();
        assert_eq!(format!("{parsed:?}"), format!("CertUrl({u:?})"));
    }

    #[test]
    fn the_certificate_name_is_one_to_sixty_four_hex_digits() {
        let named = |hex: &str| {
            format!("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-{hex}.pem")
        };
        assert!(CertUrl::parse(&named("0")).is_some());
        assert!(CertUrl::parse(&named(&"a".repeat(64))).is_some());
        assert!(CertUrl::parse(&named(&"a".repeat(65))).is_none());
        assert!(CertUrl::parse(&named("")).is_none());
        assert!(CertUrl::parse(&named("0g")).is_none());
    }

    #[test]
    fn rejects_every_bypass() {
        for u in [
            "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://sns.us-east-1.amazonaws.com.evil.com/SimpleNotificationService-abc.pem",
            "https://sns.us-east-1.amazonaws.com@evil.com/SimpleNotificationService-abc.pem",
            "https://evil.com@sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem?x=.pem",
            "https://evil.com/x?.pem",
            "https://evil.com/SimpleNotificationService-abc.pem?sns.us-east-1.amazonaws.com",
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem#x",
            "https://s3.amazonaws.com/bucket/SimpleNotificationService-abc.pem",
            "https://my-bucket.s3.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://sns.us-east-1.amazonaws.com/other/SimpleNotificationService-abc.pem",
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem/x.pem",
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-xyz.pem",
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-.pem",
            "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-abc.pem",
            "https://sns.us-east-1.amazonaws.com:443/SimpleNotificationService-abc.pem",
            "https://SNS.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://sns.evil.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://sns.us-east-1.amazonaws.com.cn/SimpleNotificationService-abc.pem",
            "https://sns.a.b.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-ab%63.pem",
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem ",
            "https://sns.us-east-1.amazonaws.com",
            "",
        ] {
            assert!(CertUrl::parse(u).is_none(), "{u}");
        }
    }
}
