//! Starting and stopping local servers for tests.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate lives in the workspace")
        .to_path_buf()
}

/// A program from the test tooling: `.tools/venv/bin/<name>` if present, else `<name>` on `PATH`.
/// Panics with the set-up command when it is nowhere.
pub fn tool(name: &str) -> PathBuf {
    let venv = repo_root().join(".tools/venv/bin").join(name);
    if venv.exists() {
        return venv;
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "`{name}` is not installed: run scripts/setup-tools.sh (the README's test command does)"
    );
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

/// Waits until something accepts TCP connections on `127.0.0.1:port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A child process killed (by PID) and reaped when dropped.
#[derive(Debug)]
pub struct ChildProcess {
    child: Option<Child>,
    /// Its loopback port.
    pub port: u16,
}

impl ChildProcess {
    /// Spawns `cmd`, then waits up to `timeout` for `port` to accept connections.
    pub fn spawn(cmd: Command, port: u16, timeout: Duration) -> Self {
        Self::spawn_with(cmd, port, timeout, |_| {})
    }

    /// [`spawn`](Self::spawn), handing the child to `started` first (to take its piped output).
    pub fn spawn_with(
        mut cmd: Command,
        port: u16,
        timeout: Duration,
        started: impl FnOnce(&mut Child),
    ) -> Self {
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        started(&mut child);
        let mut me = ChildProcess {
            child: Some(child),
            port,
        };
        if !wait_for_port(port, timeout) {
            me.stop();
            panic!("{cmd:?} did not listen on 127.0.0.1:{port} within {timeout:?}");
        }
        me
    }

    /// The PID, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the process is still running (it has not exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills and reaps the process.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Fails (instead of hanging) when `fut` has not ended within `limit`: a budget missing in the
/// code under test shows up as the test's failure. Needs a Tokio runtime with timers.
pub async fn within<F: std::future::Future>(limit: Duration, fut: F) -> F::Output {
    tokio::time::timeout(limit, fut)
        .await
        .expect("still waiting long after the budget: no timeout applied")
}
