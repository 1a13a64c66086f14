//! The pieces the end-to-end tests share: the `gcp-orders` binary started as Cloud Run starts it,
//! a raw HTTP/1.1 client, a local stand-in for Google's JWKS, metadata server and Secret
//! Manager, and push tokens signed with the test key.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

pub const SUBSCRIPTION: &str = "projects/shop-prod/subscriptions/orders-push";
pub const EVENT_SOURCE: &str = "//pubsub.googleapis.com/projects/shop-prod/topics/orders";
pub const PUSH_AUDIENCE: &str = "https://orders.example.com/pubsub";
pub const EVENTS_AUDIENCE: &str = "https://orders.example.com/events";
pub const PUSH_ACCOUNT: &str = "orders-push@shop-prod.iam.gserviceaccount.com";
pub const KID: &str = "gcp-e2e-1";
pub const METADATA_TOKEN: &str = "ya29.e2e-metadata-token";

pub fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read(path).unwrap()
}

pub fn json_fixture(name: &str) -> Value {
    serde_json::from_slice(&data(name)).unwrap()
}

pub fn order() -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../orders/order.json")).unwrap()
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---------------------------------------------------------------- the function

/// `gcp-orders` on a free loopback port, with its stdout lines collected.
pub struct Function {
    child: Child,
    pub port: u16,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn collect(stream: impl Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            match line {
                Ok(l) => sink.lock().unwrap().push(l),
                Err(_) => break,
            }
        }
    });
    lines
}

impl Function {
    /// Starts the binary as Cloud Run does (`PORT`, `K_SERVICE`, `K_REVISION`) with `env`, and
    /// waits until it answers.
    pub fn start(env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gcp-orders"));
        for (k, _) in std::env::vars() {
            if k.starts_with("GUARD_") || k == "GCE_METADATA_HOST" || k == "GOOGLE_CLOUD_PROJECT" {
                cmd.env_remove(k);
            }
        }
        cmd.env("PORT", port.to_string())
            .env("K_SERVICE", "gcp-orders")
            .env("K_REVISION", "gcp-orders-00001-abc")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        let f = Function {
            child,
            port,
            stdout,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "gcp-orders did not listen: {:?}",
                f.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        f
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// The decision events so far.
    pub fn decisions(&self) -> Vec<Value> {
        self.stdout()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event"] == "guard.decision")
            .collect()
    }

    /// Sends one request and returns the answer and the decision events it added (waiting for
    /// `events` of them, then a little longer so that an extra one would be seen).
    pub fn send(&self, req: &Req, events: usize) -> (Resp, Vec<Value>) {
        let before = self.decisions().len();
        let resp = req.send(self.port);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.decisions().len() < before + events && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(150));
        let new: Vec<Value> = self.decisions().into_iter().skip(before).collect();
        (resp, new)
    }

    /// Waits (at most 15 s) for the exit status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader threads take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- HTTP client

pub struct Req {
    pub method: &'static str,
    pub path: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

pub fn post(path: &'static str, body: impl Into<Vec<u8>>) -> Req {
    Req {
        method: "POST",
        path,
        headers: Vec::new(),
        body: body.into(),
    }
}

impl Req {
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn method(mut self, method: &'static str) -> Self {
        self.method = method;
        self
    }

    pub fn head(&self) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n",
            self.method,
            self.path,
            self.body.len()
        );
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        head.into_bytes()
    }

    pub fn send(&self, port: u16) -> Resp {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        stream.write_all(&self.head()).unwrap();
        // A server that refuses on the declared length may close before the body is sent.
        let _ = stream.write_all(&self.body);
        read_response(stream)
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

pub fn read_response(mut stream: TcpStream) -> Resp {
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_owned(),
    }
}

// ---------------------------------------------------------------- push tokens

pub fn claims(aud: &str) -> Value {
    let t = now();
    json!({
        "iss": "https://accounts.google.com",
        "aud": aud,
        "azp": "111111111111111111111",
        "sub": "111111111111111111111",
        "email": PUSH_ACCOUNT,
        "email_verified": true,
        "iat": t,
        "exp": t + 3600,
    })
}

/// An RS256 token signed with the test key under `kid`.
pub fn rs256(kid: &str, claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.into());
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&data("push-signing-key.pem")).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with `alg: none` and no signature.
pub fn unsigned(claims: &Value) -> String {
    let header = json!({"alg": "none", "typ": "JWT", "kid": KID});
    format!(
        "{}.{}.",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

/// HS256 "signed" with the public key's PEM as the HMAC key (the algorithm-confusion attack).
pub fn hs256_with_public_key(claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(KID.into());
    let key = jsonwebtoken::EncodingKey::from_secret(public_pem().as_bytes());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn private_key() -> rsa::RsaPrivateKey {
    let pem = String::from_utf8(data("push-signing-key.pem")).unwrap();
    rsa::RsaPrivateKey::from_pkcs8_pem(&pem).unwrap()
}

fn public_pem() -> String {
    use rsa::pkcs8::EncodePublicKey;
    private_key()
        .to_public_key()
        .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
        .unwrap()
}

pub fn jwks() -> Value {
    let key = private_key();
    json!({"keys": [{
        "kty": "RSA", "alg": "RS256", "use": "sig", "kid": KID,
        "n": b64url(&key.n().to_bytes_be()),
        "e": b64url(&key.e().to_bytes_be()),
    }]})
}

// ---------------------------------------------------------------- Google stand-in

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
}

/// A local HTTP server answering as Google's JWKS endpoint (`/oauth2/v3/certs`), the metadata
/// server (token, project id) and Secret Manager (`:access`), recording every request.
pub struct Google {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

/// What the stand-in's Secret Manager holds: name -> (value, CRC32C it announces).
pub type Secrets = BTreeMap<String, (String, u32)>;

pub fn crc32c(bytes: &[u8]) -> u32 {
    crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(bytes)
}

impl Google {
    pub fn start(secrets: Secrets) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let jwks = jwks().to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let log = log.clone();
                let jwks = jwks.clone();
                let secrets = secrets.clone();
                std::thread::spawn(move || answer(stream, &log, &jwks, &secrets));
            }
        });
        Google { port, seen }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn answer(stream: TcpStream, log: &Mutex<Vec<Seen>>, jwks: &str, secrets: &Secrets) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("").to_owned();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    log.lock().unwrap().push(Seen {
        method,
        path: path.clone(),
        headers: headers.clone(),
    });
    let metadata_ok = headers.get("metadata-flavor").map(String::as_str) == Some("Google");
    let bearer_ok = headers.get("authorization").map(String::as_str)
        == Some(&format!("Bearer {METADATA_TOKEN}"));
    let secret = path
        .strip_prefix("/v1/projects/shop-prod/secrets/")
        .and_then(|rest| rest.strip_suffix("/versions/latest:access"));
    let (status, body) = match path.as_str() {
        "/oauth2/v3/certs" => (200, jwks.to_owned()),
        "/computeMetadata/v1/instance/service-accounts/default/token" if metadata_ok => (
            200,
            json!({"access_token": METADATA_TOKEN, "expires_in": 3599, "token_type": "Bearer"})
                .to_string(),
        ),
        "/computeMetadata/v1/project/project-id" if metadata_ok => (200, "shop-prod".into()),
        p if p.starts_with("/computeMetadata/") => (403, "Missing Metadata-Flavor".into()),
        _ => match secret.and_then(|s| secrets.get(s).map(|v| (s, v))) {
            Some(_) if !bearer_ok => (401, "{}".into()),
            Some((name, (value, crc))) => (
                200,
                json!({
                    "name": format!("projects/123456789/secrets/{name}/versions/1"),
                    "payload": {
                        "data": base64::engine::general_purpose::STANDARD.encode(value),
                        "dataCrc32c": crc.to_string(),
                    }
                })
                .to_string(),
            ),
            None => (404, r#"{"error":{"code":404,"status":"NOT_FOUND"}}"#.into()),
        },
    };
    let mut stream = reader.into_inner();
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}
