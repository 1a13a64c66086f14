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
//! HTTP goes through [`https_client`]: hyper over HTTP/1.1 with rustls on *ring* and the
//! platform's root certificates, the hyper client `lambda_runtime` already carries. The SDK's own
//! client (`aws-smithy-http-client`) would add HTTP/2 (`h2`) and, by default, aws-lc (a C build).
//!
//! ```no_run
//! use guard_aws::secrets::SecretsManagerSource;
//! use guard_core::secrets::SecretStore;
//!
//! # async fn demo() -> Result<(), guard_core::secrets::SecretsError> {
//! let store = SecretStore::new(SecretsManagerSource::from_env().await);
//! let key = store.get("orders-api-key").await?;
//! # let _ = key; Ok(()) }
//! ```

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::ErrorKind;
use guard_core::secrets::{FetchFuture, SecretSource, SecretValue, SecretVersion, SecretsError};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;

use crate::http::Schemes;

/// Reads secrets from AWS Secrets Manager (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct SecretsManagerSource {
    client: Client,
}

/// An HTTP client for the AWS SDK: hyper over HTTP/1.1, rustls with the *ring* crypto provider
/// and the platform's root certificates (`http://` only for an endpoint the configuration names,
/// such as a local emulator). It applies the SDK's connect and read timeouts and keeps a pool of
/// connections.
///
/// ```
/// let http = guard_aws::secrets::https_client();
/// let config = aws_sdk_secretsmanager::Config::builder().http_client(http);
/// # let _ = config;
/// ```
pub fn https_client() -> SharedHttpClient {
    SharedHttpClient::new(SdkHttpClient::default())
}

/// Connect and read timeouts, as the SDK asks for them.
type Timeouts = (Option<Duration>, Option<Duration>);

/// Builds one pooled connector per set of timeouts the SDK asks for (one client asks with one set,
/// so the pool is kept across requests).
#[derive(Debug, Default)]
struct SdkHttpClient {
    cached: Mutex<Option<(Timeouts, SharedHttpConnector)>>,
}

impl HttpClient for SdkHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let timeouts = (settings.connect_timeout(), settings.read_timeout());
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((seen, connector)) = cached.as_ref()
            && *seen == timeouts
        {
            return connector.clone();
        }
        let connector = match crate::http::client(Schemes::HttpsOrHttp, timeouts.0) {
            Ok(client) => SharedHttpConnector::new(SdkConnector {
                client,
                read_timeout: timeouts.1,
            }),
            // No root certificates: every request fails (the store reports it; nothing is sent).
            Err(reason) => SharedHttpConnector::new(NoConnector(reason)),
        };
        *cached = Some((timeouts, connector.clone()));
        connector
    }
}

#[derive(Debug)]
struct SdkConnector {
    client: hyper_util::client::legacy::Client<HttpsConnector<TcpConnector>, SdkBody>,
    read_timeout: Option<Duration>,
}

impl HttpConnector for SdkConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        let response = self.client.request(request);
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let response = match read_timeout {
                Some(limit) => tokio::time::timeout(limit, response)
                    .await
                    .map_err(|e| ConnectorError::timeout(e.into()))?,
                None => response.await,
            };
            match response {
                Ok(response) => HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                    .map_err(|e| ConnectorError::other(e.into(), None)),
                Err(e) => Err(connector_error(e)),
            }
        })
    }
}

/// What the SDK's retry policy needs to know: connection and I/O failures are retried as
/// transient, a timeout is a timeout, a request hyper refused to send is the caller's.
fn connector_error(err: hyper_util::client::legacy::Error) -> ConnectorError {
    enum Kind {
        Io,
        Timeout,
        User,
        Transient,
        Other,
    }
    let kind = if err.is_connect() {
        Kind::Io
    } else {
        let mut kind = Kind::Other;
        let mut next = std::error::Error::source(&err);
        while let Some(e) = next {
            if let Some(h) = e.downcast_ref::<hyper::Error>() {
                if h.is_timeout() {
                    kind = Kind::Timeout;
                } else if h.is_user() {
                    kind = Kind::User;
                } else if h.is_closed() || h.is_canceled() {
                    kind = Kind::Io;
                } else if h.is_incomplete_message() {
                    kind = Kind::Transient;
                }
            } else if e.is::<std::io::Error>() {
                kind = Kind::Io;
            }
            if !matches!(kind, Kind::Other) {
                break;
            }
            next = e.source();
        }
        kind
    };
    let err = err.into();
    match kind {
        Kind::Io => ConnectorError::io(err),
        Kind::Timeout => ConnectorError::timeout(err),
        Kind::User => ConnectorError::user(err),
        Kind::Transient => ConnectorError::other(err, Some(ErrorKind::TransientError)),
        Kind::Other => ConnectorError::other(err, None),
    }
}

/// Stands in for the client when TLS could not be set up.
#[derive(Debug)]
struct NoConnector(String);

impl HttpConnector for NoConnector {
    fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
        HttpConnectorFuture::ready(Err(ConnectorError::other(self.0.clone().into(), None)))
    }
}

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

    /// A source using `config`; [`https_client`] is used when it has no HTTP client.
    pub fn from_conf(config: &SdkConfig) -> Self {
        let mut builder = aws_sdk_secretsmanager::config::Builder::from(config);
        if config.http_client().is_none() {
            builder = builder.http_client(https_client());
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
    /// use guard_core::secrets::SecretVersion;
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
    fn fetch<'a>(&'a self, name: &'a str, version: SecretVersion) -> FetchFuture<'a> {
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
