//! The AWS SDK's HTTP client on Guard's outbound [`HttpClient`]: the SDK's
//! `HttpClient` / `HttpConnector` traits, mapped onto one request and one capped response. The
//! connection, TLS and limit rules are the core client's; this file only translates.

use aws_smithy_runtime_api::client::http::{
    HttpClient as SdkClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use guard_http::{HttpClient, HttpError};
use http_body_util::Full;

/// The SDK's view of the core client. `Err` holds why the client could not be built (no root
/// certificate): every request then fails with that reason and nothing is sent.
#[derive(Debug, Clone)]
pub(crate) struct SdkHttpClient(Result<HttpClient, HttpError>);

impl SdkHttpClient {
    /// The SDK's connector over `client`, allowed plain HTTP to a loopback or link-local host
    /// (the endpoint comes from the configuration: a local emulator may be plain HTTP).
    pub(crate) fn new(client: Result<HttpClient, HttpError>) -> Self {
        Self(client.map(|c| c.allowing_local_http()))
    }
}

impl SdkClient for SdkHttpClient {
    /// One connector for every setting: connect and total timeouts are the core client's.
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

impl HttpConnector for SdkHttpClient {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = match &self.0 {
            Ok(client) => client.clone(),
            Err(e) => return HttpConnectorFuture::ready(Err(connector_error(e.clone()))),
        };
        let request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        // The SDK's requests to Secrets Manager carry small JSON bodies, always in memory.
        let (parts, body) = request.into_parts();
        let Some(body) = body.bytes().map(Bytes::copy_from_slice) else {
            let reason = "streaming request bodies are not supported";
            return HttpConnectorFuture::ready(Err(ConnectorError::user(reason.into())));
        };
        let request = http::Request::from_parts(parts, body);
        HttpConnectorFuture::new(async move {
            let response = client.send(request).await.map_err(connector_error)?;
            // A streaming body, not an in-memory one: the SDK logs responses at trace level and
            // an in-memory body's `Debug` shows its bytes (the secret).
            let response = response.map(|b| SdkBody::from_body_1_x(Full::new(b)));
            HttpResponse::try_from(response).map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// What the SDK's retry policy needs to know: connection, I/O and timeouts are retried; a
/// refused request is the caller's; an oversized response is neither.
fn connector_error(err: HttpError) -> ConnectorError {
    match err {
        HttpError::Connect(_) | HttpError::Io(_) => ConnectorError::io(err.into()),
        HttpError::Timeout(_) => ConnectorError::timeout(err.into()),
        HttpError::Refused(_) | HttpError::Setup(_) => ConnectorError::user(err.into()),
        err => ConnectorError::other(err.into(), None),
    }
}
