//! `SecretsManagerSource` against a local stub speaking Secrets Manager's documented JSON wire
//! format (awsJson1_1: `POST /`, `X-Amz-Target: secretsmanager.GetSecretValue`; errors as
//! `x-amzn-ErrorType` or `__type`): each error kind maps to permanent or transient, and a stalled
//! endpoint ends within the budget as a transient error and a 503 from the secrets layer.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_secretsmanager::config::{Credentials, SharedHttpClient};
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use bytes::Bytes;
use guard_aws::secrets::{SecretsManagerSource, https_client, sdk_http_client};
use guard_core::secrets::SecretsLayer;
use guard_core::{GuardRequest, GuardResponse};
use guard_http::HttpClient;
use guard_secrets::{SecretSource, SecretStore, SecretVersion, SecretsError};
use guard_tests::http::{Reply, StubServer, response};
use guard_tests::server::within;
use tower::{Layer, ServiceExt, service_fn};

const JSON: (&str, &str) = ("content-type", "application/x-amz-json-1.1");

/// A source on `stub`: two attempts at most (short backoff), `timeouts` as given.
async fn source(
    stub: &StubServer,
    http: SharedHttpClient,
    timeouts: Option<TimeoutConfig>,
) -> SecretsManagerSource {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(stub.url(""))
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "stub"))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(2)
                .with_initial_backoff(Duration::from_millis(10)),
        )
        .http_client(http);
    if let Some(t) = timeouts {
        loader = loader.timeout_config(t);
    }
    SecretsManagerSource::from_conf(&loader.load().await)
}

async fn fetch(stub: &StubServer) -> Result<String, SecretsError> {
    let s = source(stub, https_client(), None).await;
    let v = s.fetch("orders-api-key", SecretVersion::Current).await?;
    Ok(v.expose_str().unwrap().to_owned())
}

#[tokio::test]
async fn reads_a_secret_string_with_the_current_stage() {
    let stub = StubServer::start(|seen| {
        let ok = seen
            .head
            .to_ascii_lowercase()
            .contains("x-amz-target: secretsmanager.getsecretvalue")
            && String::from_utf8_lossy(&seen.body).contains(r#""VersionStage":"AWSCURRENT""#);
        let body = br#"{"ARN":"arn:aws:secretsmanager:us-east-1:123456789012:secret:orders-api-key-AbCdEf","Name":"orders-api-key","SecretString":"key-v1","VersionId":"v1","VersionStages":["AWSCURRENT"],"CreatedDate":1714564800.0}"#;
        Reply::Respond(if ok {
            response("200 OK", &[JSON], body)
        } else {
            response("400 Bad Request", &[JSON], br#"{"__type":"InvalidRequestException"}"#)
        })
    })
    .await;
    assert_eq!(fetch(&stub).await.unwrap(), "key-v1");
}

/// How each documented error kind is classified, sent once as the `x-amzn-ErrorType` header and
/// once as the body's `__type`: (status, error type, transient?, SDK attempts).
#[tokio::test]
async fn each_error_kind_is_permanent_or_transient() {
    let cases: &[(&str, &str, bool)] = &[
        ("400 Bad Request", "AccessDeniedException", false),
        ("400 Bad Request", "ResourceNotFoundException", false),
        ("400 Bad Request", "ThrottlingException", true),
        ("500 Internal Server Error", "InternalServiceError", true),
        ("503 Service Unavailable", "ServiceUnavailable", true),
    ];
    for &(status, kind, transient) in cases {
        for in_header in [true, false] {
            let stub = StubServer::start(move |_| {
                let body = format!(r#"{{"__type":"{kind}","message":"stub says {kind}"}}"#);
                Reply::Respond(if in_header {
                    response(status, &[JSON, ("x-amzn-errortype", kind)], b"{}")
                } else {
                    response(status, &[JSON], body.as_bytes())
                })
            })
            .await;
            let err = fetch(&stub).await.unwrap_err();
            let what = format!("{kind} (in header: {in_header}): {err:?}");
            assert_eq!(err.is_transient(), transient, "{what}");
            match kind {
                "AccessDeniedException" => {
                    assert!(matches!(err, SecretsError::AccessDenied { .. }), "{what}")
                }
                "ResourceNotFoundException" => {
                    assert!(matches!(err, SecretsError::NotFound { .. }), "{what}")
                }
                _ => assert!(matches!(err, SecretsError::Transient { .. }), "{what}"),
            }
            // The SDK retries what is transient and only that.
            let attempts = if transient { 2 } else { 1 };
            assert_eq!(stub.hits(), attempts, "{what}");
        }
    }
}

#[tokio::test]
async fn a_bare_5xx_without_an_error_type_is_transient() {
    let stub = StubServer::start(|_| Reply::Respond(response("502 Bad Gateway", &[], b""))).await;
    let err = fetch(&stub).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_an_oversized_answer_is_refused() {
    let elsewhere = StubServer::start(|_| {
        Reply::Respond(response("200 OK", &[JSON], br#"{"SecretString":"moved"}"#))
    })
    .await;
    let location = elsewhere.url("/");
    let redirecting = StubServer::start(move |_| {
        Reply::Respond(response(
            "307 Temporary Redirect",
            &[("location", &location)],
            b"",
        ))
    })
    .await;
    let err = fetch(&redirecting).await.unwrap_err();
    assert!(!err.is_transient(), "{err:?}");
    assert_eq!(elsewhere.hits(), 0, "the redirect target was never asked");

    let secret = "x".repeat(2048);
    let big = format!(r#"{{"Name":"orders-api-key","SecretString":"{secret}"}}"#);
    let oversized =
        StubServer::start(move |_| Reply::Respond(response("200 OK", &[JSON], big.as_bytes())))
            .await;
    let small = HttpClient::builder()
        .max_response_bytes(1024)
        .build()
        .unwrap();
    let s = source(&oversized, sdk_http_client(small), None).await;
    let err = s
        .fetch("orders-api-key", SecretVersion::Current)
        .await
        .unwrap_err();
    assert!(
        format!("{err:?}").contains("response body over 1024 bytes"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_stalled_endpoint_ends_at_the_attempt_timeout_of_the_client() {
    let stalled = StubServer::stalling().await;
    let attempt = Duration::from_millis(300);
    let client = HttpClient::builder().timeout(attempt).build().unwrap();
    // No operation timeout configured: each attempt is still bounded by the client.
    let s = source(&stalled, sdk_http_client(client), None).await;
    let started = Instant::now();
    let err = within(
        Duration::from_secs(5),
        s.fetch("orders-api-key", SecretVersion::Current),
    )
    .await
    .unwrap_err();
    let took = started.elapsed();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(stalled.hits(), 2, "both attempts reached the server");
    assert!(
        took >= attempt * 2 && took < Duration::from_secs(2),
        "took {took:?}"
    );
}

#[tokio::test]
async fn a_stalled_endpoint_ends_at_the_operation_timeout_and_the_layer_fails_closed() {
    let stalled = StubServer::stalling().await;
    let budget = Duration::from_millis(500);
    let timeouts = TimeoutConfig::builder().operation_timeout(budget).build();
    let s = source(&stalled, https_client(), Some(timeouts)).await;
    let store = SecretStore::new(s);
    let handler = service_fn(|_req: GuardRequest| async {
        Ok::<_, Infallible>(GuardResponse::new(Bytes::from_static(b"reached")))
    });
    let svc = SecretsLayer::new(store)
        .require("orders-api-key")
        .layer(handler);
    let started = Instant::now();
    let resp = within(budget * 10, svc.oneshot(GuardRequest::new(Bytes::new())))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(body["code"], "guard.secrets.unavailable");
    assert!(took >= budget && took < budget * 3, "took {took:?}");
    assert_eq!(stalled.hits(), 1);
}
