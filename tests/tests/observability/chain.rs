//! The three examples as their platforms' local tools run them — `aws-orders` under
//! `cargo lambda watch`, `azure-orders` as the Functions host starts a custom handler, `gcp-orders`
//! on `PORT` — built with their `otel` feature: AWS passes an accepted order to Azure, Azure to
//! GCP, each through the outbound helper over loopback (signed with the orders webhook key).
//! Every function exports its spans over OTLP (configured only by `OTEL_*` variables) into an
//! in-process collector: one trace id in all three, each hop the parent of the next; and an
//! unsigned call to GCP from an outside address is refused.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use fake_opentelemetry_collector::{ExportedSpan, FakeCollectorServer};
use guard_tests::lambda::LambdaWatch;
use guard_tests::server::{ChildProcess, free_port, repo_root};
use serde_json::{Value, json};

const KEY: &str = "chain-webhook-key";
const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";

/// Builds `package`'s binary with its `otel` feature (once per run) and returns its path.
fn binary(package: &'static str) -> PathBuf {
    static BUILT: OnceLock<std::sync::Mutex<Vec<(&'static str, PathBuf)>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap();
    if let Some((_, p)) = built.iter().find(|(n, _)| *n == package) {
        return p.clone();
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            package,
            "--bin",
            package,
            "--features",
            "otel",
        ])
        .args(["--message-format", "json"])
        .current_dir(repo_root())
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo build");
    assert!(
        out.status.success(),
        "cargo build -p {package} --features otel failed"
    );
    let path = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == package)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported the executable");
    built.push((package, path.clone()));
    path
}

/// What every function gets: the orders secrets from the environment, OTLP to the collector.
fn common_env(endpoint: &str, service: &str) -> Vec<(String, String)> {
    [
        ("GUARD_SECRETS_PROVIDER", "env"),
        ("GUARD_SECRET_ORDERS_API_KEY", "chain-api-key"),
        ("GUARD_SECRET_ORDERS_WEBHOOK_HMAC", KEY),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_SERVICE_NAME", service),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn start(bin: PathBuf, dir: PathBuf, port: u16, env: Vec<(String, String)>) -> ChildProcess {
    let mut cmd = Command::new(bin);
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    ChildProcess::spawn(cmd, port, Duration::from_secs(60))
}

/// A string or integer attribute (the collector keeps each value in its `Debug` spelling,
/// `Some(AnyValue { value: Some(StringValue("aws")) })`).
fn attr(span: &ExportedSpan, key: &str) -> Option<String> {
    let raw = span.attributes.get(key)?;
    if let Some(rest) = raw.split_once("StringValue(\"").map(|(_, r)| r) {
        return rest.split_once('"').map(|(v, _)| v.to_owned());
    }
    let rest = raw.split_once("IntValue(")?.1;
    rest.split_once(')').map(|(v, _)| v.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_crosses_aws_azure_and_gcp_and_only_the_signed_hop_is_admitted() {
    let mut collector = FakeCollectorServer::start().await.unwrap();
    let endpoint = collector.endpoint();

    let gcp_port = free_port();
    let mut gcp_env = common_env(&endpoint, "gcp-orders");
    gcp_env.extend(
        [
            ("PORT", gcp_port.to_string()),
            ("K_SERVICE", "gcp-orders".into()),
            ("GOOGLE_CLOUD_PROJECT", "shop-prod".into()),
            // Only push and event deliveries need the JWKS; none are sent here.
            ("GUARD_GCP_JWKS_URL", "http://127.0.0.1:9/jwks".into()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let azure_port = free_port();
    let mut azure_env = common_env(&endpoint, "azure-orders");
    azure_env.extend(
        [
            ("FUNCTIONS_CUSTOMHANDLER_PORT", azure_port.to_string()),
            ("FUNCTIONS_WORKER_RUNTIME", "custom".into()),
            ("WEBSITE_SITE_NAME", "shop-orders".into()),
            ("REGION_NAME", "westeurope".into()),
            (
                "ORDERS_NEXT_HOP_URL",
                format!("http://127.0.0.1:{gcp_port}/orders"),
            ),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let mut aws_env = common_env(&endpoint, "aws-orders");
    aws_env.push((
        "ORDERS_NEXT_HOP_URL".into(),
        format!("http://127.0.0.1:{azure_port}/api/orders"),
    ));

    let (mut gcp, mut azure, mut aws) = tokio::task::spawn_blocking(move || {
        let gcp = start(binary("gcp-orders"), repo_root(), gcp_port, gcp_env);
        let azure = start(
            binary("azure-orders"),
            repo_root().join("examples/azure-orders"),
            azure_port,
            azure_env,
        );
        let env: Vec<(&str, &str)> = aws_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let aws = LambdaWatch::start_with_features("aws-orders", "aws-orders", "otel", &env);
        (gcp, azure, aws)
    })
    .await
    .unwrap();

    // A partner calls the AWS function (Function URL) inside its own trace.
    let order = crate::order();
    let event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/orders",
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "traceparent": format!("00-{TRACE_ID}-{CALLER_SPAN}-01"),
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc",
            "domainName": "abc.lambda-url.us-east-1.on.aws",
            "http": {"method": "POST", "path": "/orders", "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.5", "userAgent": "partner"},
            "requestId": "chain-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Dec/2026:20:00:00 +0000",
            "timeEpoch": 1_796_155_200_000u64
        },
        "body": base64::engine::general_purpose::STANDARD.encode(&order),
        "isBase64Encoded": true
    });
    let invoked = {
        let aws = &aws;
        let payload = event.to_string();
        tokio::task::block_in_place(|| {
            aws.invoke("aws-orders", payload.as_bytes(), Duration::from_secs(60))
        })
    };
    let out: Value = serde_json::from_slice(&invoked.body).unwrap();
    assert_eq!(out["statusCode"], 201, "{out}\n{}", aws.stderr_text());
    let body: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body["forwarded"], 201,
        "AWS passed the order to Azure, which admitted it: {body}"
    );

    // An unsigned call to the last function, from an address outside the partner networks.
    let client = guard_http::HttpClient::builder().build().unwrap();
    let mut direct = http::Request::post(format!("http://127.0.0.1:{gcp_port}/orders"))
        .header("content-type", "application/json")
        .header("x-forwarded-for", "192.0.2.77")
        .body(bytes::Bytes::from(order.clone()))
        .unwrap();
    direct.headers_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{CALLER_SPAN}-01").parse().unwrap(),
    );
    let refused = client.allowing_local_http().send(direct).await.unwrap();
    assert_eq!(refused.status(), 403, "{:?}", refused.body());

    // Spans arrive in batches (OTEL_BSP_SCHEDULE_DELAY); wait for the three hops and the refusal.
    let mut spans = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        spans.extend(
            collector
                .exported_spans(1, Duration::from_millis(500))
                .await,
        );
        let servers = spans.iter().filter(|s| s.kind.contains("SERVER")).count();
        if servers >= 4 {
            break;
        }
    }
    let servers: Vec<&ExportedSpan> = spans.iter().filter(|s| s.kind.contains("SERVER")).collect();
    let in_trace: Vec<&&ExportedSpan> = servers.iter().filter(|s| s.trace_id == TRACE_ID).collect();
    let by_cloud = |cloud: &str, outcome: &str| {
        in_trace
            .iter()
            .find(|s| {
                attr(s, "cloud.provider").as_deref() == Some(cloud)
                    && attr(s, "guard.outcome").as_deref() == Some(outcome)
            })
            .copied()
            .unwrap_or_else(|| {
                panic!("a {outcome} span from {cloud} in trace {TRACE_ID}: {servers:#?}")
            })
    };
    let (a, z, g) = (
        by_cloud("aws", "allow"),
        by_cloud("azure", "allow"),
        by_cloud("gcp", "allow"),
    );
    // Each hop's server span is the child of the previous function's (the outbound call ran
    // inside it), the first of the partner's span.
    assert_eq!(a.parent_span_id, CALLER_SPAN);
    assert_eq!(
        z.parent_span_id, a.span_id,
        "Azure's parent is the AWS invocation"
    );
    assert_eq!(
        g.parent_span_id, z.span_id,
        "GCP's parent is the Azure invocation"
    );
    assert_eq!(attr(a, "faas.trigger").as_deref(), Some("http"));
    let refusal = by_cloud("gcp", "deny");
    assert_eq!(
        attr(refusal, "guard.code").as_deref(),
        Some("guard.verify.forbidden_address")
    );

    collector.abort();
    aws.stop();
    azure.stop();
    gcp.stop();
}
