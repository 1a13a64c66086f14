//! The Functions host's side, as far as the custom handler can see it: start the handler as the
//! host does (working directory = the app root, `FUNCTIONS_CUSTOMHANDLER_PORT`, the arguments
//! from `host.json`), wait until it listens, and send it requests over plain HTTP/1.1 on
//! loopback (invocation mode and proxy mode).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use guard_tests::server::{ChildProcess, free_port, repo_root};
use serde_json::{Value, json};

/// The example app's root: `host.json`, `orders/`, `orders-queue/`.
pub(crate) fn app_root() -> PathBuf {
    repo_root().join("examples/azure-orders")
}

/// Builds the example binary once per test run and returns its path.
pub(crate) fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "azure-orders",
                "--bin",
                "azure-orders",
            ])
            .args(["--message-format", "json"])
            .current_dir(repo_root())
            .stderr(Stdio::inherit())
            .output()
            .expect("run cargo build");
        assert!(out.status.success(), "cargo build -p azure-orders failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "azure-orders")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported no azure-orders executable")
    })
}

/// A running custom handler with its output collected.
pub(crate) struct Handler {
    process: ChildProcess,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

fn collect(stream: impl Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            into.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
}

impl Handler {
    /// Starts the handler in `root` with `env`, as the host would, and waits (up to the host's
    /// own 60 s) until it listens.
    pub(crate) fn start(root: &Path, env: &[(&str, &str)]) -> Self {
        let host: Value =
            serde_json::from_str(&std::fs::read_to_string(root.join("host.json")).unwrap())
                .unwrap();
        let description = &host["customHandler"]["description"];
        assert_eq!(description["defaultExecutablePath"], "azure-orders");
        let args: Vec<String> = description["arguments"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let port = free_port();
        let mut cmd = Command::new(binary());
        cmd.args(&args)
            .current_dir(root)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("FUNCTIONS_WORKER_RUNTIME", "custom")
            .env("WEBSITE_SITE_NAME", "shop-orders")
            .env("REGION_NAME", "West Europe")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        // Spawned by ChildProcess, which waits for the port; output is read from the pipes.
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let process = ChildProcess::spawn_with(cmd, port, Duration::from_secs(60), |child| {
            if let Some(out) = child.stdout.take() {
                collect(out, stdout.clone());
            }
            if let Some(err) = child.stderr.take() {
                collect(err, stderr.clone());
            }
        });
        Handler {
            process,
            stdout,
            stderr,
        }
    }

    /// Every stdout line so far.
    pub(crate) fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Everything on stdout and stderr so far.
    pub(crate) fn all_output(&self) -> String {
        let mut s = self.stdout_lines().join("\n");
        s.push('\n');
        s.push_str(&self.stderr.lock().unwrap().join("\n"));
        s
    }

    /// The decision events on stdout so far.
    pub(crate) fn decisions(&self) -> Vec<Value> {
        self.stdout_lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
            .filter(|v| v["event"] == "guard.decision")
            .collect()
    }

    /// Waits until there are at least `n` decision events, then a little more for extra ones.
    pub(crate) fn wait_for_decisions(&self, n: usize) -> Vec<Value> {
        let start = Instant::now();
        while self.decisions().len() < n && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        self.decisions()
    }

    /// Whether the process is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Sends one raw HTTP/1.1 request and reads the whole answer.
    pub(crate) fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Answer {
        let mut stream = TcpStream::connect(("127.0.0.1", self.process.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        // A server that refuses an oversized head may close before all of it is written.
        let _ = stream.write_all(head.as_bytes());
        // A server that refuses early may close before the whole body is written.
        let _ = stream.write_all(body);
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        Answer::parse(&raw)
    }

    /// An invocation-mode POST of `envelope` to `/{function}`, with the host's headers.
    pub(crate) fn invoke(&self, function: &str, envelope: &Value) -> Answer {
        let headers = [
            ("content-type", "application/json".to_owned()),
            (
                "user-agent",
                "Azure-Functions-Host/4.1036.1.23224".to_owned(),
            ),
            ("x-azure-functions-hostversion", "4.1036.1.23224".to_owned()),
            ("x-azure-functions-invocationid", next_invocation_id()),
        ];
        self.send(
            "POST",
            &format!("/{function}"),
            &headers,
            envelope.to_string().as_bytes(),
        )
    }
}

fn next_invocation_id() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!("5d2e3c7a-0000-4000-8000-{n:012}")
}

/// An HTTP answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    fn parse(raw: &[u8]) -> Self {
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(raw)));
        let head = String::from_utf8_lossy(&raw[..end]);
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .expect("status line");
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut body = raw[end + 4..].to_vec();
        // hyper answers small bodies with content-length; a chunked one is not expected here.
        if let Some(len) = Self::content_length(&head) {
            body.truncate(len);
        }
        Answer {
            status,
            headers,
            body,
        }
    }

    fn content_length(head: &str) -> Option<usize> {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// What a client got, in either mode: the HTTP status, headers and body the client sees.
#[derive(Debug)]
pub(crate) struct ClientView {
    pub(crate) status: u16,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: String,
}

impl ClientView {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// How the client's request reaches the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `POST /orders` with `{"Data": {"req": {...}}, "Metadata": {...}}`.
    Invocation,
    /// The client's request on `/api/orders` (`enableProxyingHttpRequest`).
    Proxy,
}

/// The HTTP trigger's `Data.req` for a client request, as the host serializes it.
pub(crate) fn http_envelope(method: &str, headers: &[(&str, String)], body: &str) -> Value {
    let mut h = serde_json::Map::new();
    for (k, v) in headers {
        h.insert((*k).to_owned(), json!([v]));
    }
    json!({
        "Data": {
            "req": {
                "Url": "https://shop-orders.azurewebsites.net/api/orders",
                "Method": method,
                "Query": {},
                "Headers": h,
                "Params": {},
                "Identities": [{"AuthenticationType": null, "IsAuthenticated": false, "Actor": null,
                                "BootstrapContext": null, "Label": null, "Name": null,
                                "NameClaimType": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
                                "RoleClaimType": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"}],
                "Body": body
            }
        },
        "Metadata": {
            "Query": {},
            "Headers": h,
            "sys": {"MethodName": "orders", "UtcNow": "2026-12-01T20:00:00.000Z", "RandGuid": "0f8fad5b-d9cb-469f-a165-70867728950e"}
        }
    })
}

impl Handler {
    /// Sends the client's request in `mode` and returns what the client gets.
    pub(crate) fn client(
        &self,
        mode: Mode,
        method: &str,
        headers: &[(&str, String)],
        body: &str,
    ) -> ClientView {
        self.client_of("orders", mode, method, headers, body)
    }

    /// Sends the client's request for the HTTP function `function` (route `/api/<function>`)
    /// in `mode` and returns what the client gets.
    pub(crate) fn client_of(
        &self,
        function: &str,
        mode: Mode,
        method: &str,
        headers: &[(&str, String)],
        body: &str,
    ) -> ClientView {
        match mode {
            Mode::Proxy => {
                let path = format!("/api/{function}");
                let a = self.send(method, &path, headers, body.as_bytes());
                ClientView {
                    status: a.status,
                    headers: a.headers,
                    body: String::from_utf8_lossy(&a.body).into_owned(),
                }
            }
            Mode::Invocation => {
                let mut envelope = http_envelope(method, headers, body);
                envelope["Data"]["req"]["Url"] = json!(format!(
                    "https://shop-orders.azurewebsites.net/api/{function}"
                ));
                envelope["Metadata"]["sys"]["MethodName"] = json!(function);
                let a = self.invoke(function, &envelope);
                assert_eq!(
                    a.status,
                    200,
                    "the host's own reply: {}",
                    String::from_utf8_lossy(&a.body)
                );
                let v = a.json();
                let res = &v["Outputs"]["res"];
                ClientView {
                    status: res["statusCode"].as_u64().expect("Outputs.res.statusCode") as u16,
                    headers: res["headers"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| {
                                    (
                                        k.to_ascii_lowercase(),
                                        v.as_str().unwrap_or_default().to_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    body: res["body"].as_str().unwrap_or_default().to_owned(),
                }
            }
        }
    }
}
