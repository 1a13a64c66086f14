//! The eleven native envelopes: how one case's request is wrapped for each adapter, handed to the
//! adapter's own service in process, and how the adapter's native answer is read back.

use std::convert::Infallible;
use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use guard_core::request::{Peer, Trigger, TrustedProxies};
use guard_core::{GuardRequest, GuardResponse};
use http::HeaderMap;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Map, Value, json};
use tower::util::BoxCloneService;
use tower::{Layer, ServiceExt};

/// A Guard stack around the orders handler.
pub(crate) type Stack = BoxCloneService<GuardRequest, GuardResponse, Infallible>;

pub(crate) const SQS_ALLOWED: &str = "arn:aws:sqs:us-east-1:123456789012:orders";
pub(crate) const SQS_FOREIGN: &str = "arn:aws:sqs:us-east-1:123456789012:returns";
pub(crate) const SUBSCRIPTION_ALLOWED: &str = "projects/shop-prod/subscriptions/orders-push";
pub(crate) const SUBSCRIPTION_FOREIGN: &str = "projects/shop-prod/subscriptions/returns-push";
pub(crate) const EVENTS_ALLOWED: &str = "//pubsub.googleapis.com/projects/shop-prod/topics/orders";
pub(crate) const EVENTS_FOREIGN: &str = "//pubsub.googleapis.com/projects/shop-prod/topics/returns";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cloud {
    Aws,
    Azure,
    Gcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Envelope {
    ApiGatewayV1,
    ApiGatewayV2,
    FunctionUrl,
    Alb,
    Sqs,
    AzureInvocation,
    AzureProxy,
    AzureQueue,
    GcpHttp,
    GcpPubSub,
    GcpEvents,
}

pub(crate) const ALL: [Envelope; 11] = [
    Envelope::ApiGatewayV1,
    Envelope::ApiGatewayV2,
    Envelope::FunctionUrl,
    Envelope::Alb,
    Envelope::Sqs,
    Envelope::AzureInvocation,
    Envelope::AzureProxy,
    Envelope::AzureQueue,
    Envelope::GcpHttp,
    Envelope::GcpPubSub,
    Envelope::GcpEvents,
];

impl Envelope {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Envelope::ApiGatewayV1 => "aws-apigw-v1",
            Envelope::ApiGatewayV2 => "aws-apigw-v2",
            Envelope::FunctionUrl => "aws-function-url",
            Envelope::Alb => "aws-alb",
            Envelope::Sqs => "aws-sqs",
            Envelope::AzureInvocation => "azure-invocation",
            Envelope::AzureProxy => "azure-proxy",
            Envelope::AzureQueue => "azure-queue",
            Envelope::GcpHttp => "gcp-http",
            Envelope::GcpPubSub => "gcp-pubsub",
            Envelope::GcpEvents => "gcp-cloudevents",
        }
    }

    pub(crate) fn cloud(self) -> Cloud {
        match self {
            Envelope::ApiGatewayV1
            | Envelope::ApiGatewayV2
            | Envelope::FunctionUrl
            | Envelope::Alb
            | Envelope::Sqs => Cloud::Aws,
            Envelope::AzureInvocation | Envelope::AzureProxy | Envelope::AzureQueue => Cloud::Azure,
            Envelope::GcpHttp | Envelope::GcpPubSub | Envelope::GcpEvents => Cloud::Gcp,
        }
    }

    pub(crate) fn is_message(self) -> bool {
        matches!(
            self,
            Envelope::Sqs | Envelope::AzureQueue | Envelope::GcpPubSub | Envelope::GcpEvents
        )
    }
}

/// What the client (or the queue) sends, before any envelope.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) method: String,
    /// `(name, value)` in the order the client sent them (Content-Type, Content-Length, signature).
    pub(crate) headers: Vec<(String, String)>,
    /// The address the platform observed.
    pub(crate) peer: String,
    /// What the client put in `X-Forwarded-For` itself.
    pub(crate) forwarded: Option<String>,
    pub(crate) body: Vec<u8>,
    /// Messages: from the allowed queue / subscription.
    pub(crate) allowed_source: bool,
    /// A per-send id (message ids, request ids).
    pub(crate) seq: usize,
}

impl Request {
    fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `X-Forwarded-For` as it reaches the function: the client's entries, then the peer the
    /// platform's front end appended.
    fn forwarded_for(&self) -> String {
        match &self.forwarded {
            Some(f) => format!("{f}, {}", self.peer),
            None => self.peer.clone(),
        }
    }

    fn http_headers(&self) -> Vec<(String, String)> {
        let mut h = self.headers.clone();
        h.push(("X-Forwarded-For".into(), self.forwarded_for()));
        h
    }
}

/// The adapter's native answer, read back.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observed {
    /// The client's status (HTTP), or the refusal's status when a message reply carries one.
    pub(crate) status: Option<u16>,
    /// The problem `code` of the answer's body, when it has one.
    pub(crate) code: Option<String>,
    /// Messages: whether the platform would consider the message done.
    pub(crate) acked: Option<bool>,
    /// HTTP: whether the answer carries `Retry-After`.
    pub(crate) retry_after: bool,
    /// The whole native answer as text (status, headers and body, or the Lambda response
    /// document): what a client or the platform could read.
    pub(crate) raw: String,
}

/// How the runner breaks one envelope on purpose (the test of the runner itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tamper {
    /// GCP plain HTTP resolves the peer from the left-most `X-Forwarded-For` entry.
    LeftmostForwardedPeer,
    /// The Azure queue reply acknowledges a refused message.
    AckRefusedMessages,
}

/// Tokens the GCP push deliveries carry (Pub/Sub and Eventarc audiences).
pub(crate) struct PushTokens {
    pub(crate) pubsub: String,
    pub(crate) events: String,
}

pub(crate) async fn send(
    envelope: Envelope,
    req: &Request,
    stack: Stack,
    policy: &guard_core::Policy,
    tokens: &PushTokens,
    tamper: Option<Tamper>,
) -> Observed {
    match envelope {
        Envelope::ApiGatewayV1
        | Envelope::ApiGatewayV2
        | Envelope::FunctionUrl
        | Envelope::Alb
        | Envelope::Sqs => aws(envelope, req, stack).await,
        Envelope::AzureInvocation | Envelope::AzureProxy | Envelope::AzureQueue => {
            azure(envelope, req, stack, policy, tamper).await
        }
        Envelope::GcpHttp | Envelope::GcpPubSub | Envelope::GcpEvents => {
            gcp(envelope, req, stack, policy, tokens, tamper).await
        }
    }
}

// ------------------------------------------------------------------------------------------ AWS

pub(crate) fn lambda_context(seq: usize) -> Context {
    let mut ctx = Context::default();
    ctx.request_id = format!("conformance-{seq}");
    ctx.invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:aws-orders".into();
    ctx
}

fn header_map(headers: &[(String, String)]) -> Map<String, Value> {
    headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), Value::String(v.clone())))
        .collect()
}

fn aws_event(envelope: Envelope, req: &Request) -> Value {
    let headers = header_map(&req.http_headers());
    let text = req.body_text();
    let b64 = B64.encode(&req.body);
    let v2 = |domain: &str| {
        json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": "/orders",
            "rawQueryString": "",
            "headers": headers,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "abc",
                "domainName": domain,
                "http": {"method": req.method, "path": "/orders", "protocol": "HTTP/1.1",
                         "sourceIp": req.peer, "userAgent": "conformance"},
                "requestId": format!("r-{}", req.seq),
                "routeKey": "$default",
                "stage": "$default",
                "time": "01/Dec/2026:20:00:00 +0000",
                "timeEpoch": 1_796_155_200_000u64
            },
            "body": b64,
            "isBase64Encoded": true
        })
    };
    match envelope {
        Envelope::ApiGatewayV1 => json!({
            "resource": "/orders",
            "path": "/orders",
            "httpMethod": req.method,
            "headers": headers,
            "multiValueHeaders": headers.iter().map(|(k, v)| (k.clone(), json!([v]))).collect::<Map<_, _>>(),
            "queryStringParameters": null,
            "requestContext": {
                "accountId": "123456789012",
                "resourcePath": "/orders",
                "httpMethod": req.method,
                "path": "/prod/orders",
                "stage": "prod",
                "requestId": format!("r-{}", req.seq),
                "identity": {"sourceIp": req.peer, "userAgent": "conformance"}
            },
            "body": text,
            "isBase64Encoded": false
        }),
        Envelope::ApiGatewayV2 => v2("abc.execute-api.us-east-1.amazonaws.com"),
        Envelope::FunctionUrl => v2("abc.lambda-url.us-east-1.on.aws"),
        Envelope::Alb => json!({
            "requestContext": {"elb": {"targetGroupArn":
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/orders/6d0ecf831eec9f09"}},
            "httpMethod": req.method,
            "path": "/orders",
            "queryStringParameters": {},
            "headers": headers,
            "body": text,
            "isBase64Encoded": false
        }),
        Envelope::Sqs => json!({"Records": [{
            "messageId": format!("m-{}", req.seq),
            "receiptHandle": "handle",
            "body": text,
            "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1796155200000"},
            "messageAttributes": {},
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": if req.allowed_source { SQS_ALLOWED } else { SQS_FOREIGN },
            "awsRegion": "us-east-1"
        }]}),
        _ => unreachable!("not an AWS envelope"),
    }
}

async fn aws(envelope: Envelope, req: &Request, stack: Stack) -> Observed {
    let event = LambdaEvent::new(aws_event(envelope, req), lambda_context(req.seq));
    let out = guard_aws::GuardLayer::new()
        .layer(stack)
        .oneshot(event)
        .await
        .unwrap_or_else(|e| panic!("{}: {e:?}", envelope.name()));
    let raw = out.to_string();
    if envelope == Envelope::Sqs {
        let failures = out["batchItemFailures"].as_array().map_or(0, Vec::len);
        return Observed {
            acked: Some(failures == 0),
            raw,
            ..Observed::default()
        };
    }
    let body = out["body"].as_str().unwrap_or_default();
    let body = if out["isBase64Encoded"] == true {
        B64.decode(body).unwrap_or_default()
    } else {
        body.as_bytes().to_vec()
    };
    let has = |map: &Value, name: &str| {
        map.as_object()
            .is_some_and(|m| m.keys().any(|k| k.eq_ignore_ascii_case(name)))
    };
    Observed {
        status: out["statusCode"].as_u64().map(|s| s as u16),
        code: problem_code(&body),
        acked: None,
        retry_after: has(&out["headers"], "retry-after")
            || has(&out["multiValueHeaders"], "retry-after"),
        raw: format!("{raw}\n{}", String::from_utf8_lossy(&body)),
    }
}

// ---------------------------------------------------------------------------------------- Azure

pub(crate) fn azure_functions() -> guard_azure::functions::Functions {
    use guard_azure::functions::Functions;
    let root =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/azure-orders");
    let read = |f: &str| std::fs::read_to_string(root.join(f).join("function.json")).unwrap();
    let orders = Functions::parse(&read("orders")).unwrap();
    let queue = Functions::parse(&read("orders-queue")).unwrap();
    // A function of the same app bound to another queue.
    let returns = Functions::parse(
        r#"{"bindings":[{"type":"queueTrigger","direction":"in","name":"msg","queueName":"returns"}]}"#,
    )
    .unwrap();
    Functions::default()
        .with("orders", orders)
        .with("orders-queue", queue)
        .with("returns-queue", returns)
}

/// What guard-core's server does before the stack: `Trigger::Http` and the peer through one
/// trusted proxy (the cloud's front end), or the left-most entry when tampered with.
pub(crate) fn served(mut req: GuardRequest, leftmost: bool) -> GuardRequest {
    req.extensions_mut().insert(Trigger::Http);
    let peer = if leftmost {
        req.headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
            .map(Peer::new)
    } else {
        TrustedProxies::new(1).and_then(|p| p.peer(req.headers()))
    };
    if let Some(peer) = peer {
        req.extensions_mut().insert(peer);
    }
    req
}

pub(crate) fn plain_request(
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> GuardRequest {
    let mut b = http::Request::builder().method(method).uri(path);
    for (k, v) in headers {
        b = b.header(k.as_str(), v.as_str());
    }
    b.body(Bytes::from(body)).unwrap()
}

async fn azure(
    envelope: Envelope,
    req: &Request,
    stack: Stack,
    policy: &guard_core::Policy,
    tamper: Option<Tamper>,
) -> Observed {
    let options = guard_azure::decode::DecodeOptions::from_policy(policy);
    let service = guard_azure::AzureService::new(stack, azure_functions(), options);
    let host_headers = vec![(
        "X-Azure-Functions-InvocationId".to_owned(),
        format!("inv-{}", req.seq),
    )];
    match envelope {
        Envelope::AzureInvocation => {
            let headers: Map<String, Value> = req
                .http_headers()
                .into_iter()
                .map(|(k, v)| (k, json!([v])))
                .collect();
            let envelope = json!({
                "Data": {"req": {
                    "Url": "https://shop-orders.azurewebsites.net/api/orders",
                    "Method": req.method,
                    "Query": {},
                    "Headers": headers,
                    "Params": {},
                    "Identities": [],
                    "Body": req.body_text()
                }},
                "Metadata": {}
            });
            let host = plain_request(
                "POST",
                "/orders",
                &host_headers,
                envelope.to_string().into_bytes(),
            );
            let reply = service.oneshot(served(host, false)).await.unwrap();
            assert_eq!(
                reply.status(),
                200,
                "the host's own reply to an HTTP invocation"
            );
            let raw = raw_text(&reply);
            let v: Value = serde_json::from_slice(reply.body()).unwrap();
            let res = &v["Outputs"]["res"];
            Observed {
                status: res["statusCode"].as_u64().map(|s| s as u16),
                code: problem_code(res["body"].as_str().unwrap_or_default().as_bytes()),
                acked: None,
                retry_after: res["headers"]
                    .as_object()
                    .is_some_and(|m| m.keys().any(|k| k.eq_ignore_ascii_case("retry-after"))),
                raw,
            }
        }
        Envelope::AzureProxy => {
            let client = served(
                plain_request(
                    &req.method,
                    "/api/orders",
                    &req.http_headers(),
                    req.body.clone(),
                ),
                false,
            );
            http_observed(service.oneshot(client).await.unwrap())
        }
        Envelope::AzureQueue => {
            let function = if req.allowed_source {
                "/orders-queue"
            } else {
                "/returns-queue"
            };
            let envelope = json!({
                "Data": {"msg": req.body_text()},
                "Metadata": {"Id": format!("m-{}", req.seq), "DequeueCount": 1,
                             "InsertionTime": "2026-12-01T20:00:00+00:00"}
            });
            let host = plain_request(
                "POST",
                function,
                &host_headers,
                envelope.to_string().into_bytes(),
            );
            let mut reply = service.oneshot(served(host, false)).await.unwrap();
            if tamper == Some(Tamper::AckRefusedMessages) && !reply.status().is_success() {
                reply = http::Response::new(Bytes::from_static(
                    br#"{"Outputs":{},"Logs":[],"ReturnValue":null}"#,
                ));
            }

            message_observed(reply, |s| (200..300).contains(&s))
        }
        _ => unreachable!("not an Azure envelope"),
    }
}

// ------------------------------------------------------------------------------------------ GCP

async fn gcp(
    envelope: Envelope,
    req: &Request,
    stack: Stack,
    policy: &guard_core::Policy,
    tokens: &PushTokens,
    tamper: Option<Tamper>,
) -> Observed {
    let service = guard_gcp::GcpLayer::from_policy(policy).layer(stack);
    match envelope {
        Envelope::GcpHttp => {
            let leftmost = tamper == Some(Tamper::LeftmostForwardedPeer);
            let client = served(
                plain_request(
                    &req.method,
                    "/orders",
                    &req.http_headers(),
                    req.body.clone(),
                ),
                leftmost,
            );
            http_observed(service.oneshot(client).await.unwrap())
        }
        Envelope::GcpPubSub => {
            let envelope = json!({
                "message": {
                    "data": B64.encode(&req.body),
                    "attributes": {"origin": "checkout"},
                    "messageId": format!("m-{}", req.seq),
                    "publishTime": "2026-12-01T20:00:00.000Z"
                },
                "subscription": if req.allowed_source { SUBSCRIPTION_ALLOWED } else { SUBSCRIPTION_FOREIGN },
                "deliveryAttempt": 1
            });
            let headers = push_headers(&tokens.pubsub, "application/json");
            let push = served(
                plain_request(
                    "POST",
                    "/pubsub",
                    &headers,
                    envelope.to_string().into_bytes(),
                ),
                false,
            );
            message_observed(service.oneshot(push).await.unwrap(), is_pubsub_ack)
        }
        Envelope::GcpEvents => {
            let mut headers = push_headers(&tokens.events, "application/json");
            let source = if req.allowed_source {
                EVENTS_ALLOWED
            } else {
                EVENTS_FOREIGN
            };
            headers.extend([
                ("ce-id".to_owned(), format!("e-{}", req.seq)),
                ("ce-source".to_owned(), source.to_owned()),
                ("ce-specversion".to_owned(), "1.0".to_owned()),
                ("ce-type".to_owned(), "com.example.order.placed".to_owned()),
                ("ce-time".to_owned(), "2026-12-01T20:00:00Z".to_owned()),
            ]);
            let event = served(
                plain_request("POST", "/events", &headers, req.body.clone()),
                false,
            );
            message_observed(service.oneshot(event).await.unwrap(), is_pubsub_ack)
        }
        _ => unreachable!("not a GCP envelope"),
    }
}

pub(crate) fn push_headers(token: &str, content_type: &str) -> Vec<(String, String)> {
    vec![
        ("Authorization".into(), format!("Bearer {token}")),
        ("Content-Type".into(), content_type.into()),
        // Google's front end appends the push service's address.
        ("X-Forwarded-For".into(), "66.249.84.1".into()),
    ]
}

/// Pub/Sub push acknowledges 102, 200, 201, 202 and 204 only.
pub(crate) fn is_pubsub_ack(status: u16) -> bool {
    matches!(status, 102 | 200 | 201 | 202 | 204)
}

// ---------------------------------------------------------------------------------------- reading

pub(crate) fn problem_code(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("code")?.as_str().map(str::to_owned)
}

fn has_retry_after(headers: &HeaderMap) -> bool {
    headers.contains_key(http::header::RETRY_AFTER)
}

/// Status line, headers and body of a plain HTTP answer, as text.
pub(crate) fn raw_text(resp: &GuardResponse) -> String {
    let mut text = format!("{}\n", resp.status());
    for (name, value) in resp.headers() {
        text.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    text.push_str(&String::from_utf8_lossy(resp.body()));
    text
}

pub(crate) fn http_observed(resp: GuardResponse) -> Observed {
    Observed {
        status: Some(resp.status().as_u16()),
        code: problem_code(resp.body()),
        acked: None,
        retry_after: has_retry_after(resp.headers()),
        raw: raw_text(&resp),
    }
}

/// A message reply: acknowledged, or refused with the refusal's status and problem.
pub(crate) fn message_observed(resp: GuardResponse, is_ack: impl Fn(u16) -> bool) -> Observed {
    let status = resp.status().as_u16();
    let raw = raw_text(&resp);
    if is_ack(status) {
        Observed {
            acked: Some(true),
            raw,
            ..Observed::default()
        }
    } else {
        Observed {
            status: Some(status),
            code: problem_code(resp.body()),
            acked: Some(false),
            retry_after: false,
            raw,
        }
    }
}
