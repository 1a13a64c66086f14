//! `[verify]` loading: every problem, with its key path.

use guard_core::Policy;
use guard_core::VerifyDeps;
use guard_core::secrets::SecretStore;

use crate::support::Keys;

fn paths(toml: &str) -> Vec<String> {
    let err = Policy::from_toml_str(toml).unwrap_err();
    err.problems().iter().map(|p| p.path.clone()).collect()
}

#[test]
fn reports_every_verify_mistake_with_its_key_path() {
    let p = paths(
        r#"
        [verify]
        [verify.sources]
        sqs = ["arn:aws:sqs:*:1:orders-*", ""]
        SQS = ["arn:aws:sqs:*:1:orders"]
        kinesis = []
        [verify.cidr]
        allow = ["203.0.113.0/24", "300.0.0.0/8", "10.0.0.0/33", "fe80::/129"]
        trusted_proxy_hops = 99
        [verify.hmac]
        preset = "github"
        secret = ""
        header = "X-Custom"
        tolerance_secs = 0
        [verify.jwt]
        jwks_url = "file:///etc/passwd"
        algorithms = ["RS256", "HS256", "none", "ES512"]
        leeway_secs = 3600
        claims = [{ claim = "scope" }, { claim = "", equals = 1, contains = "x" }]
        "#,
    );
    for expected in [
        "verify.sources.sqs[0]",
        "verify.sources.sqs[1]",
        "verify.sources.SQS",
        "verify.sources.kinesis",
        "verify.cidr.allow[1]",
        "verify.cidr.allow[2]",
        "verify.cidr.allow[3]",
        "verify.cidr.trusted_proxy_hops",
        "verify.hmac.secret",
        "verify.hmac.header",
        "verify.hmac.tolerance_secs",
        "verify.jwt.jwks_url",
        "verify.jwt.issuers",
        "verify.jwt.audiences",
        "verify.jwt.algorithms[1]",
        "verify.jwt.algorithms[2]",
        "verify.jwt.algorithms[3]",
        "verify.jwt.leeway_secs",
        "verify.jwt.claims[0]",
        "verify.jwt.claims[1].claim",
        "verify.jwt.claims[1]",
    ] {
        assert!(
            p.iter().any(|x| x == expected),
            "missing {expected} in {p:?}"
        );
    }
    assert!(!p.iter().any(|x| x == "verify.cidr.allow[0]"), "{p:?}");
}

#[test]
fn unknown_keys_and_modes_are_reported() {
    assert!(
        paths("[verify]\nmode = \"most\"\nsources={sqs=[\"q\"]}")
            .iter()
            .any(|p| p.starts_with("verify"))
    );
    assert_eq!(
        paths("[verify.hmac]\nsecrett = \"x\""),
        ["verify.hmac.secrett"]
    );
}

#[test]
fn sources_must_be_listed_by_trigger_kind() {
    // The flat list of earlier versions is refused: its entries would admit any kind.
    assert!(
        paths("[verify]\nsources = [\"arn:aws:sqs:us-east-1:1:orders\"]")
            .iter()
            .any(|p| p.starts_with("verify"))
    );
    let p = Policy::from_toml_str("[verify.sources]\nsqs = [\"arn:aws:sqs:us-east-1:1:orders\"]")
        .unwrap();
    assert_eq!(
        p.verify.unwrap().sources["sqs"],
        ["arn:aws:sqs:us-east-1:1:orders"]
    );
    // gcp_push needs its kinds' subscriptions listed.
    let p = paths(
        "[verify.sources]\nsqs = [\"q\"]\n[verify.gcp_push]\naudience = \"a\"\nservice_account = \"s\"",
    );
    assert_eq!(p, ["verify.sources.pubsub"]);
    // A per-kind audience names one of its kinds, and is not empty.
    let p = paths(
        "[verify.sources]\npubsub = [\"s\"]\n[verify.gcp_push]\naudience = \"a\"\nservice_account = \"s\"\naudiences = { eventarc = \"\" }",
    );
    assert_eq!(
        p,
        [
            "verify.gcp_push.audiences",
            "verify.gcp_push.audiences.eventarc"
        ]
    );
}

#[test]
fn an_empty_verify_section_is_a_mistake() {
    assert_eq!(paths("[verify]\nmode = \"all\""), ["verify"]);
}

#[test]
fn generic_preset_needs_a_header_and_others_refuse_generic_keys() {
    let p = paths("[verify.hmac]\npreset = \"generic\"\nsecret = \"s\"");
    assert_eq!(p, ["verify.hmac.header"]);
    let p = paths("[verify.hmac]\nsecret = \"s\"\nprefix = \"sha256=\"");
    assert_eq!(p, ["verify.hmac.prefix"]);
}

#[test]
fn from_policy_refuses_an_unchecked_policy() {
    let mut policy = guard_core::policy::VerifyPolicy::default();
    policy.sources = [("sqs".to_string(), vec!["a:*x".to_string()])].into();
    let store: SecretStore = Keys::new(b"k").store("k");
    let err = VerifyDeps::new(store).verify_layer(&policy).unwrap_err();
    assert_eq!(err.problems()[0].path, "verify.sources.sqs[0]");
}
