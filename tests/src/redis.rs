//! A throw-away `redis-server` for tests: loopback only, persistence off, stopped by PID on drop.
//!
//! ```no_run
//! let mut redis = guard_tests::redis::RedisServer::start();
//! let url = redis.url();
//! redis.kill(); // an outage...
//! redis.restart(); // ...and the same server back on the same port, empty
//! # let _ = url;
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::server::{ChildProcess, free_port, tool};

/// A `redis-server` child process on `127.0.0.1:<port>`.
#[derive(Debug)]
pub struct RedisServer {
    process: Option<ChildProcess>,
    port: u16,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers `PING`.
    pub fn start() -> Self {
        let port = free_port();
        RedisServer {
            process: Some(spawn(port)),
            port,
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Whether the server process is running (started and not killed).
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// Kills the server (by PID) and waits until the port refuses connections.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "redis on {} did not stop",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same port (empty: persistence is off).
    pub fn restart(&mut self) {
        self.kill();
        self.process = Some(spawn(self.port));
    }
}

fn spawn(port: u16) -> ChildProcess {
    let mut cmd = Command::new(tool("redis-server"));
    cmd.args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1"])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let process = ChildProcess::spawn(cmd, port, Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !answers_ping(port) {
        assert!(
            Instant::now() < deadline,
            "redis-server on {port} accepts connections but does not answer PING"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    process
}

/// Sends `PING` and expects `+PONG` (a server still loading answers `-LOADING`).
fn answers_ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}
