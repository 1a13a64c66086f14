//! A local moto server (AWS service mocks speaking the real wire protocols) for the AWS SDK tests.
//!
//! Started from `.tools/venv/bin/moto_server` (installed by `scripts/setup-tools.sh`) on a free
//! loopback port with dummy credentials; stopped by PID; restartable on the same port (moto keeps
//! its state in memory, so a restart starts empty).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::server::{ChildProcess, free_port, tool};

/// The dummy access key id the server and clients use.
pub const ACCESS_KEY_ID: &str = "testing";
/// The dummy secret access key.
pub const SECRET_ACCESS_KEY: &str = "testing";
/// The region the tests use.
pub const REGION: &str = "us-east-1";

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running (or stopped, restartable) moto server.
#[derive(Debug)]
pub struct Moto {
    process: Option<ChildProcess>,
    port: u16,
    log: PathBuf,
}

impl Moto {
    /// Starts moto on a free loopback port. Panics (with the set-up command) when moto is missing.
    pub fn start() -> Self {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("guard-moto-{port}.log"));
        let mut me = Moto {
            process: None,
            port,
            log,
        };
        me.spawn();
        me
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log.display()));
        let mut cmd = Command::new(tool("moto_server"));
        cmd.args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
            .env("AWS_DEFAULT_REGION", REGION)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log);
        self.process = Some(ChildProcess::spawn(cmd, self.port, START_TIMEOUT));
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The file moto's output goes to.
    pub fn log_path(&self) -> &PathBuf {
        &self.log
    }

    /// The PID while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(|p| p.pid())
    }

    /// Kills the server (by PID) and waits until the port refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop();
        }
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("moto still accepts connections on {} after stop", self.port);
    }

    /// Starts the server again on the same port (empty state).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Drops every resource moto holds (`POST /moto-api/reset`).
    pub fn reset(&self) {
        let status = post(self.port, "/moto-api/reset");
        assert_eq!(status, 200, "moto reset answered {status}");
    }
}

/// A minimal HTTP/1.1 POST with an empty body; returns the status code.
fn post(port: u16, path: &str) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to moto");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set timeout");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response from moto: {response:?}"))
}
