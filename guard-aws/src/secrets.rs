//! [`SecretsManagerSource`]: a [`SecretSource`] on AWS Secrets Manager.
//!
//! | [`SecretVersion`] | version stage asked for |
//! |---|---|
//! | `Current` | `AWSCURRENT` |
//! | `Previous` | `AWSPREVIOUS` |
//! | `Pending` | `AWSPENDING` |
//!
//! The stage is always sent (`GetSecretValue` with `VersionStage`). `SecretString` gives the
//! string's UTF-8 bytes, `SecretBinary` the raw bytes. Errors are classified for the store:
//!
//! | outcome | [`SecretsError`] |
//! |---|---|
//! | `ResourceNotFoundException` (secret or stage missing) | `NotFound` |
//! | `AccessDeniedException`, `UnrecognizedClientException`, invalid / expired credentials | `AccessDenied` |
//! | throttling, `InternalServiceError`, any 5xx, timeouts, connection failures, unreadable responses | `Transient` |
//! | anything else (`DecryptionFailure`, `InvalidRequestException`, bad parameters...) | `Permanent` |
//!
//! The endpoint comes from the SDK's standard configuration: `AWS_ENDPOINT_URL` /
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER`, the shared config file, or
//! [`aws_config::ConfigLoader::endpoint_url`].
//!
//! HTTP goes through [`https_client`]: Guard's one outbound client, guard-http (hyper over HTTP/1.1 with
//! rustls on *ring*, the hyper client `lambda_runtime` already carries). The SDK's own client
//! (`aws-smithy-http-client`) would add HTTP/2 (`h2`) and, by default, aws-lc (a C build).
//!
//! Time is bounded twice: each attempt by the client's total timeout (5 s by default), the whole
//! call, retries included, by the SDK's operation timeout — [`DEFAULT_OPERATION_TIMEOUT`] when
//! the configuration sets none. A stalled endpoint therefore ends as a transient error, and the
//! store serves a stale value or fails closed (503).
//!
//! ```no_run
//! use guard_aws::secrets::SecretsManagerSource;
//! use guard_secrets::SecretStore;
//!
//! # async fn demo() -> Result<(), guard_secrets::SecretsError> {
//! let store = SecretStore::new(SecretsManagerSource::from_env().await);
//! let key = store.get("orders-api-key").await?;
//! # let _ = key; Ok(()) }
//! ```

use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_types::timeout::TimeoutConfig;
use futures_util::future::BoxFuture;
use guard_http::HttpClient;
use guard_secrets::{SecretSource, SecretValue, SecretVersion, SecretsError};

use crate::http::SdkHttpClient;

/// Reads secrets from AWS Secrets Manager (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct SecretsManagerSource {
    client: Client,
}

/// The AWS SDK's HTTP client on Guard's outbound client with its default limits
/// ([`guard_http`]: hyper over HTTP/1.1, rustls on *ring*, the platform's root
/// certificates, no redirects, capped responses, 2 s to connect and 5 s per attempt). Plain
/// `http://` is used only for an endpoint on a loopback or link-local address (a local emulator
/// named by `AWS_ENDPOINT_URL`).
///
/// ```
/// let http = guard_aws::secrets::https_client();
/// let config = aws_sdk_secretsmanager::Config::builder().http_client(http);
/// # let _ = config;
/// ```
pub fn https_client() -> SharedHttpClient {
    SharedHttpClient::new(SdkHttpClient::new(HttpClient::builder().build()))
}

/// The AWS SDK's HTTP client on `client` (its limits, roots and pinned addresses); the SDK's
/// own connect and read timeouts are not used, its operation timeouts still apply.
///
/// ```
/// use guard_http::HttpClient;
/// use std::time::Duration;
///
/// let client = HttpClient::builder().timeout(Duration::from_secs(2)).build().unwrap();
/// let http = guard_aws::secrets::sdk_http_client(client);
/// # let _ = http;
/// ```
pub fn sdk_http_client(client: HttpClient) -> SharedHttpClient {
    SharedHttpClient::new(SdkHttpClient::new(Ok(client)))
}

/// How long one `GetSecretValue` call may take, retries included, when the SDK configuration
/// sets no operation timeout.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

impl SecretsManagerSource {
    /// A source using the standard AWS configuration (environment, shared files, container and
    /// instance credentials), with [`https_client`].
    pub async fn from_env() -> Self {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .http_client(https_client())
            .load()
            .await;
        Self::from_conf(&config)
    }

    /// A source using `config`; [`https_client`] is used when it has no HTTP client, and
    /// [`DEFAULT_OPERATION_TIMEOUT`] when it sets no operation timeout.
    pub fn from_conf(config: &SdkConfig) -> Self {
        let mut builder = aws_sdk_secretsmanager::config::Builder::from(config);
        if config.http_client().is_none() {
            builder = builder.http_client(https_client());
        }
        let timeouts = config
            .timeout_config()
            .cloned()
            .unwrap_or_else(|| TimeoutConfig::builder().build());
        if timeouts.operation_timeout().is_none() {
            let mut with_default = timeouts.to_builder();
            with_default.set_operation_timeout(Some(DEFAULT_OPERATION_TIMEOUT));
            builder = builder.timeout_config(with_default.build());
        }
        Self::new(Client::from_conf(builder.build()))
    }

    /// A source using an existing client.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The version stage asked for `version`.
    ///
    /// ```
    /// use guard_secrets::SecretVersion;
    /// assert_eq!(guard_aws::secrets::SecretsManagerSource::stage(SecretVersion::Previous), "AWSPREVIOUS");
    /// ```
    pub fn stage(version: SecretVersion) -> &'static str {
        match version {
            SecretVersion::Current => "AWSCURRENT",
            SecretVersion::Previous => "AWSPREVIOUS",
            SecretVersion::Pending => "AWSPENDING",
            _ => "AWSCURRENT",
        }
    }

    async fn get(&self, name: &str, version: SecretVersion) -> Result<SecretValue, SecretsError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(name)
            .version_stage(Self::stage(version))
            .send()
            .await
            .map_err(|e| classify(name, e))?;
        // Move the value out of the response (no extra copy left behind).
        if let Some(s) = out.secret_string {
            return Ok(SecretValue::from(s));
        }
        if let Some(b) = out.secret_binary {
            return Ok(SecretValue::new(b.into_inner()));
        }
        Err(SecretsError::Permanent {
            name: name.to_string(),
            reason: "the secret version has neither SecretString nor SecretBinary".into(),
        })
    }
}

impl SecretSource for SecretsManagerSource {
    fn fetch<'a>(
        &'a self,
        name: &'a str,
        version: SecretVersion,
    ) -> BoxFuture<'a, Result<SecretValue, SecretsError>> {
        Box::pin(self.get(name, version))
    }
}

const ACCESS_DENIED: &[&str] = &[
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "ExpiredTokenException",
    "MissingAuthenticationToken",
];

const TRANSIENT: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalServiceError",
    "InternalFailure",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// Maps an SDK error to the store's permanent / transient classification. The messages come from
/// the SDK and the service (codes, descriptions, secret names), never from a secret's value.
fn classify(name: &str, err: SdkError<GetSecretValueError>) -> SecretsError {
    let reason = || DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let status = service.raw().status().as_u16();
            let code = e.code().unwrap_or_default();
            if e.is_resource_not_found_exception() {
                SecretsError::not_found(name)
            } else if ACCESS_DENIED.contains(&code) {
                SecretsError::AccessDenied { name: name.into() }
            } else if e.is_internal_service_error()
                || TRANSIENT.contains(&code)
                || status == 429
                || status >= 500
            {
                SecretsError::transient(name, reason())
            } else {
                SecretsError::Permanent {
                    name: name.into(),
                    reason: reason(),
                }
            }
        }
        // Timeouts, connection failures, truncated or unparseable responses.
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            SecretsError::transient(name, reason())
        }
        // The request could not even be built (bad configuration): retrying will not help.
        _ => SecretsError::Permanent {
            name: name.into(),
            reason: reason(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aws_config::{BehaviorVersion, SdkConfig};
    use aws_smithy_types::timeout::TimeoutConfig;

    use super::{DEFAULT_OPERATION_TIMEOUT, SecretsManagerSource};

    fn operation_timeout(config: &SdkConfig) -> Option<Duration> {
        let source = SecretsManagerSource::from_conf(config);
        source.client.config().timeout_config()?.operation_timeout()
    }

    #[test]
    fn a_call_is_bounded_when_the_configuration_sets_no_operation_timeout() {
        let bare = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .build();
        assert_eq!(operation_timeout(&bare), Some(DEFAULT_OPERATION_TIMEOUT));
        // Other timeouts the configuration sets are kept next to it.
        let connect = TimeoutConfig::builder()
            .connect_timeout(Duration::from_millis(700))
            .build();
        let with_connect = bare.to_builder().timeout_config(connect).build();
        let source = SecretsManagerSource::from_conf(&with_connect);
        let timeouts = source.client.config().timeout_config().cloned().unwrap();
        assert_eq!(timeouts.connect_timeout(), Some(Duration::from_millis(700)));
        assert_eq!(
            timeouts.operation_timeout(),
            Some(DEFAULT_OPERATION_TIMEOUT)
        );
        // A configured operation timeout wins.
        let own = TimeoutConfig::builder()
            .operation_timeout(Duration::from_secs(3))
            .build();
        let configured = bare.to_builder().timeout_config(own).build();
        assert_eq!(operation_timeout(&configured), Some(Duration::from_secs(3)));
    }
}
