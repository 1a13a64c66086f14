//! Running a Lambda function locally under `cargo lambda watch` and invoking it over the Runtime
//! API (`POST /2015-03-31/functions/<name>/invocations`), as AWS's own tools do.
//!
//! The watcher runs in its own process group; dropping [`LambdaWatch`] stops the group, then any
//! of its descendants left (the function runs in a session of its own) by PID, and reaps it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::server::{free_port, repo_root, tool, wait_for_port};

/// A `cargo lambda watch` process serving one workspace binary.
#[derive(Debug)]
pub struct LambdaWatch {
    child: Option<Child>,
    /// The Runtime API / invoke port on 127.0.0.1.
    pub port: u16,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// What an invocation returned.
#[derive(Debug, Clone)]
pub struct Invoked {
    /// HTTP status of the invoke call (200 even when the function reported an error).
    pub status: u16,
    /// Response headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The function's response payload.
    pub body: Vec<u8>,
}

fn collect(stream: impl Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            into.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
}

impl LambdaWatch {
    /// Builds `bin` of `package` once (so the watcher's own `cargo run` finds it ready), then
    /// starts `cargo lambda watch` for it on a free loopback port with `env` passed to the
    /// function, and waits until the invoke port accepts connections.
    pub fn start(package: &str, bin: &str, env: &[(&str, &str)]) -> Self {
        Self::start_with_features(package, bin, "", env)
    }

    /// [`start`](Self::start) with the package's cargo `features` (comma-separated) on, for
    /// the build and the watcher's own.
    pub fn start_with_features(
        package: &str,
        bin: &str,
        features: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let features: &[&str] = if features.is_empty() {
            &[]
        } else {
            &["--features", features]
        };
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", package, "--bin", bin])
            .args(features)
            .current_dir(repo_root())
            .status()
            .unwrap_or_else(|e| panic!("cannot run cargo build for {package}: {e}"));
        assert!(
            status.success(),
            "cargo build -p {package} --bin {bin} failed"
        );

        let port = free_port();
        let mut cmd = Command::new(tool("cargo-lambda"));
        cmd.args(["lambda", "watch", "--quiet", "--ignore-changes"])
            .args(["--invoke-address", "127.0.0.1"])
            .args(["--invoke-port", &port.to_string()])
            .args(["-p", package, "--bin", bin])
            .args(features)
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        for (k, v) in env {
            cmd.arg("--env-var").arg(format!("{k}={v}"));
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start cargo lambda watch: {e}"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            collect(out, stdout.clone());
        }
        if let Some(err) = child.stderr.take() {
            collect(err, stderr.clone());
        }
        let mut me = LambdaWatch {
            child: Some(child),
            port,
            stdout,
            stderr,
        };
        if !wait_for_port(port, Duration::from_secs(60)) {
            let log = me.stderr_text();
            me.stop();
            panic!("cargo lambda watch did not listen on 127.0.0.1:{port}\n{log}");
        }
        me
    }

    /// Invokes `function` with `payload` (synchronously, `RequestResponse`).
    pub fn invoke(&self, function: &str, payload: &[u8], timeout: Duration) -> Invoked {
        let path = format!("/2015-03-31/functions/{function}/invocations");
        http_post(self.port, &path, payload, timeout).unwrap_or_else(|e| {
            panic!(
                "invoke {function} failed: {e}\nwatch stderr:\n{}",
                self.stderr_text()
            )
        })
    }

    /// Every line the function (and the watcher) wrote to stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The watcher's stderr so far (build and runtime logs), for failure messages.
    pub fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// Waits until `pred` holds for the stdout lines, or `timeout` passes; returns the lines.
    pub fn wait_for_stdout(
        &self,
        timeout: Duration,
        pred: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let start = Instant::now();
        loop {
            let lines = self.stdout_lines();
            if pred(&lines) || start.elapsed() > timeout {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the watcher and the function: `SIGTERM` to the watcher's process group (it stops its
    /// function instances itself), then `SIGKILL` by PID to whatever of it and its descendants
    /// (the function runs in a session of its own) is still there after 5 s. Reaps the watcher.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = child.id();
        let family = descendants(pgid);
        signal("TERM", &format!("-{pgid}"));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for (pid, started) in family {
            // Only the very processes seen before (same start time): a PID may have been reused.
            if start_time(pid) == Some(started) {
                signal("KILL", &pid.to_string());
            }
        }
        if let Ok(None) = child.try_wait() {
            signal("KILL", &format!("-{pgid}"));
        }
        let _ = child.wait();
    }
}

/// `kill -s <sig> -- <target>` (a negative target is a process group).
fn signal(sig: &str, target: &str) {
    let _ = Command::new("kill")
        .args(["-s", sig, "--", target])
        .stderr(Stdio::null())
        .status();
}

/// `(pid, start time)` of every descendant of `root` (from `/proc/<pid>/stat`).
fn descendants(root: u32) -> Vec<(u32, u64)> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some((ppid, started)) = stat_fields(pid) {
                parent_of.push((pid, ppid, started));
            }
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(pid, ppid, started) in &parent_of {
            if ppid == p && !found.iter().any(|&(f, _)| f == pid) {
                found.push((pid, started));
                frontier.push(pid);
            }
        }
    }
    found
}

fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid).map(|(_, started)| started)
}

/// Parent PID and start time of `pid`; the command name may hold spaces and parentheses, so the
/// fields are read after its last `)`.
fn stat_fields(pid: u32) -> Option<(u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) ... starttime is field 22 of the full line = index 19 here.
    Some((fields.get(1)?.parse().ok()?, fields.get(19)?.parse().ok()?))
}

impl Drop for LambdaWatch {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A minimal HTTP/1.1 POST to 127.0.0.1 (`Connection: close`; plain or chunked responses).
fn http_post(port: u16, path: &str, body: &[u8], timeout: Duration) -> Result<Invoked, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|_| stream.write_all(body))
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("reading the response: {e}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut rest = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("no status line")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
    {
        rest = dechunk(&rest)?;
    }
    Ok(Invoked {
        status,
        headers,
        body: rest,
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk")?;
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}
