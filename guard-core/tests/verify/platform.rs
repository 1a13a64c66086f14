//! Platform principals through the layer.

use base64::Engine as _;
use bytes::Bytes;
use guard_core::GuardRequest;
use guard_core::RejectionKind;
use guard_core::request::{Cloud, Invocation, PrincipalKind};
use guard_core::verify::{
    ClaimPredicate, EasyAuthVerifier, PlatformIdentity, PlatformIdentityVerifier,
};

use crate::support::Stack;

fn easy_auth(json: &str, cloud: Cloud) -> GuardRequest {
    let mut req = http::Request::builder()
        .header(
            "x-ms-client-principal",
            base64::engine::general_purpose::STANDARD.encode(json),
        )
        .body(Bytes::new())
        .unwrap();
    req.extensions_mut().insert(Invocation::new(cloud));
    req
}

const PRINCIPAL: &str = r#"{"auth_typ":"aad",
  "name_typ":"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
  "role_typ":"http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
  "claims":[
    {"typ":"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name","val":"ada@contoso.com"},
    {"typ":"http://schemas.microsoft.com/ws/2008/06/identity/claims/role","val":"Orders.Write"},
    {"typ":"ver","val":"2.0"}]}"#;

#[tokio::test]
async fn easy_auth_principal_is_decoded_on_azure() {
    let s = Stack::of(
        EasyAuthVerifier::new()
            .auth_types(["aad"])
            .require(ClaimPredicate::contains("roles", "Orders.Write")),
    );
    let p = s.allowed(easy_auth(PRINCIPAL, Cloud::Azure)).await;
    assert_eq!(p.kind, PrincipalKind::Platform("azure-easy-auth".into()));
    assert_eq!(p.subject, "ada@contoso.com");
    assert_eq!(p.issuer.as_deref(), Some("aad"));
}

#[tokio::test]
async fn easy_auth_malformed_oversized_or_off_azure_is_401() {
    let s = Stack::of(EasyAuthVerifier::new());
    s.denied(
        easy_auth("{not json", Cloud::Azure),
        RejectionKind::BadToken,
    )
    .await;
    s.denied(easy_auth(PRINCIPAL, Cloud::Aws), RejectionKind::BadToken)
        .await;
    let mut huge = http::Request::builder()
        .header("x-ms-client-principal", "A".repeat(20_000))
        .body(Bytes::new())
        .unwrap();
    huge.extensions_mut().insert(Invocation::new(Cloud::Azure));
    s.denied(huge, RejectionKind::BadToken).await;
    let mut none = http::Request::new(Bytes::new());
    none.extensions_mut().insert(Invocation::new(Cloud::Azure));
    s.denied(none, RejectionKind::MissingCredentials).await;
}

#[tokio::test]
async fn easy_auth_other_provider_is_403() {
    let s = Stack::of(EasyAuthVerifier::new().auth_types(["aad"]));
    let google = PRINCIPAL.replace(r#""auth_typ":"aad""#, r#""auth_typ":"google""#);
    s.denied(easy_auth(&google, Cloud::Azure), RejectionKind::Forbidden)
        .await;
}

#[tokio::test]
async fn aws_authorizer_contexts_become_principals() {
    // What guard-aws hands over for a Cognito authorizer, through the verifier
    // `[verify.aws_authorizer]` makes.
    let s = Stack::of(
        PlatformIdentityVerifier::new("aws-iam")
            .or_provider("aws-cognito")
            .or_provider("aws-jwt")
            .or_provider("aws-lambda-authorizer"),
    );
    let mut req = http::Request::new(Bytes::new());
    let mut cognito = PlatformIdentity::new("aws-cognito", "c-1");
    cognito.issuer = Some("https://cognito-idp.us-east-1.amazonaws.com/pool".into());
    req.extensions_mut().insert(cognito);
    let p = s.allowed(req).await;
    assert_eq!(p.kind, PrincipalKind::Platform("aws-cognito".into()));
    assert_eq!(p.subject, "c-1");
    s.denied(
        http::Request::new(Bytes::new()),
        RejectionKind::MissingCredentials,
    )
    .await;
}

#[tokio::test]
async fn platform_identity_from_another_provider_is_not_accepted() {
    let s = Stack::of(PlatformIdentityVerifier::new("azure-functions-host"));
    let mut req = http::Request::new(Bytes::new());
    req.extensions_mut()
        .insert(PlatformIdentity::new("someone-else", "u"));
    s.denied(req, RejectionKind::MissingCredentials).await;
    let mut req = http::Request::new(Bytes::new());
    req.extensions_mut()
        .insert(PlatformIdentity::new("azure-functions-host", "u"));
    assert_eq!(s.allowed(req).await.subject, "u");
}
