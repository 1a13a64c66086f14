//! Throw-away `redis-server`s for tests: loopback only, persistence off, stopped by PID on drop —
//! one server (plaintext, TLS, or with a password) or a 3-primary + 3-replica Redis Cluster.
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
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::server::{ChildProcess, free_port, tool};

/// A `redis-server` child process on `127.0.0.1:<port>`.
#[derive(Debug)]
pub struct RedisServer {
    process: Option<ChildProcess>,
    port: u16,
    extra: Vec<String>,
    tls: bool,
}

/// The files of a TLS server: its certificate chain and key, and the CA that issued them (PEM).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Server certificate (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// The issuing CA (PEM).
    pub ca: PathBuf,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers `PING`.
    pub fn start() -> Self {
        Self::start_with(Vec::new(), false)
    }

    /// A server that answers only TLS (`--port 0 --tls-port <port>`): no plaintext listener.
    /// Clients are not asked for certificates.
    pub fn start_tls(files: &TlsFiles) -> Self {
        Self::start_with(tls_args(files), true)
    }

    /// A TLS-only server that also requires `AUTH` with `password` (the `default` user).
    pub fn start_tls_with_password(files: &TlsFiles, password: &str) -> Self {
        let mut extra = tls_args(files);
        extra.extend(["--requirepass".into(), password.into()]);
        Self::start_with(extra, true)
    }

    /// A server that requires `AUTH` (`--requirepass`, the `default` user).
    pub fn start_with_password(password: &str) -> Self {
        Self::start_with(vec!["--requirepass".into(), password.into()], false)
    }

    /// A server ready to be a replication primary: replicas sync at once (the default waits 5 s
    /// for more replicas to join).
    pub fn start_primary() -> Self {
        Self::start_with(vec!["--repl-diskless-sync-delay".into(), "0".into()], false)
    }

    /// A replica of `primary` (`--replicaof`), returned once `primary` counts it as an online
    /// replica.
    pub fn start_replica_of(primary: &RedisServer) -> Self {
        let before = primary.online_replicas();
        static N: AtomicUsize = AtomicUsize::new(0);
        // The copy of the primary's data a replica receives goes to the temporary directory,
        // under a name no other replica uses (never a dump.rdb in the working directory).
        let file = format!(
            "guard-replica-{}-{}.rdb",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let replica = Self::start_with(
            vec![
                "--replicaof".into(),
                "127.0.0.1".into(),
                primary.port.to_string(),
                "--dir".into(),
                std::env::temp_dir().to_string_lossy().into_owned(),
                "--dbfilename".into(),
                file,
            ],
            false,
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while primary.online_replicas() <= before {
            assert!(
                Instant::now() < deadline,
                "the replica on {} never came online",
                replica.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // "online" is the primary's view of the link; one acknowledged write shows the replica
        // answers GETACK too, so a test's first WAIT measures replication, not the start-up.
        while primary.cli(None, &["WAIT", "1", "1000"]).trim() == "0" {
            assert!(
                Instant::now() < deadline,
                "the replica on {} never acknowledged a write",
                replica.port
            );
        }
        replica
    }

    /// How many replicas this server reports as connected and online (`INFO replication`).
    pub fn online_replicas(&self) -> usize {
        self.cli(None, &["INFO", "replication"])
            .lines()
            .filter(|l| l.starts_with("slave") && l.contains("state=online"))
            .count()
    }

    /// Runs one `redis-cli` command (plaintext servers), authenticating with `password`; its
    /// stdout.
    pub fn cli(&self, password: Option<&str>, args: &[&str]) -> String {
        let mut all = Vec::new();
        if let Some(p) = password {
            all.extend(["--no-auth-warning", "-a", p]);
        }
        all.extend_from_slice(args);
        cli(self.port, &all)
    }

    fn start_with(extra: Vec<String>, tls: bool) -> Self {
        let port = free_port();
        RedisServer {
            process: Some(spawn(port, &extra, tls)),
            port,
            extra,
            tls,
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
        self.process = Some(spawn(self.port, &self.extra, self.tls));
    }
}

/// The arguments of a TLS-only server that does not ask clients for certificates.
fn tls_args(files: &TlsFiles) -> Vec<String> {
    let path = |p: &PathBuf| p.to_string_lossy().into_owned();
    vec![
        "--tls-cert-file".into(),
        path(&files.cert),
        "--tls-key-file".into(),
        path(&files.key),
        "--tls-ca-cert-file".into(),
        path(&files.ca),
        "--tls-auth-clients".into(),
        "no".into(),
    ]
}

fn spawn(port: u16, extra: &[String], tls: bool) -> ChildProcess {
    let mut cmd = Command::new(tool("redis-server"));
    if tls {
        cmd.args(["--port", "0", "--tls-port", &port.to_string()]);
    } else {
        cmd.args(["--port", &port.to_string()]);
    }
    cmd.args(["--bind", "127.0.0.1"])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let process = ChildProcess::spawn(cmd, port, Duration::from_secs(10));
    if tls {
        // Listening is enough: the handshake is the test's business.
        return process;
    }
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

/// Sends `PING` and expects `+PONG`, or `-NOAUTH` from a server that wants a password (a server
/// still loading answers `-LOADING`).
fn answers_ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH"))
}

/// A Redis Cluster of 3 primaries and 3 replicas on free loopback ports
/// (`--cluster-node-timeout 1000`: a dead primary is replaced within a few seconds), created with
/// `redis-cli --cluster create`, every node stopped by PID on drop.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<(u16, Option<ChildProcess>)>,
    dir: PathBuf,
    /// `redis-cli` arguments for TLS nodes (empty for plaintext).
    cli_tls: Vec<String>,
    tls: bool,
}

impl RedisCluster {
    /// Starts six nodes, joins them, and waits until every node reports `cluster_state:ok`.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Like [`start`](Self::start), every node answering only TLS (clients, the cluster bus and
    /// replication), with the certificate in `files` (one certificate for every node on
    /// 127.0.0.1).
    pub fn start_tls(files: &TlsFiles) -> Self {
        Self::start_with(Some(files))
    }

    fn start_with(files: Option<&TlsFiles>) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "guard-redis-cluster-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let mut nodes = Vec::new();
        for _ in 0..6 {
            let port = free_port();
            let mut cmd = Command::new(tool("redis-server"));
            match files {
                Some(files) => {
                    cmd.args(["--port", "0", "--tls-port", &port.to_string()])
                        .args(tls_args(files))
                        .args(["--tls-cluster", "yes", "--tls-replication", "yes"]);
                }
                None => {
                    cmd.args(["--port", &port.to_string()]);
                }
            }
            // The bus port is chosen too: port + 10000 may be taken or beyond 65535.
            cmd.args(["--cluster-port", &free_port().to_string()])
                .args(["--bind", "127.0.0.1"])
                .args(["--save", ""])
                .args(["--appendonly", "no"])
                .args(["--cluster-enabled", "yes"])
                // Replicas sync at once (the default waits 5 s for more replicas to join).
                .args(["--repl-diskless-sync-delay", "0"])
                .args(["--cluster-node-timeout", "1000"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .arg("--dir")
                .arg(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            nodes.push((
                port,
                Some(ChildProcess::spawn(cmd, port, Duration::from_secs(10))),
            ));
        }
        let cli_tls = match files {
            Some(f) => vec![
                "--tls".to_owned(),
                "--cacert".to_owned(),
                f.ca.to_string_lossy().into_owned(),
            ],
            None => Vec::new(),
        };
        let me = RedisCluster {
            nodes,
            dir,
            cli_tls,
            tls: files.is_some(),
        };
        let mut create = Command::new(tool("redis-cli"));
        create.args(&me.cli_tls).args(["--cluster", "create"]);
        for (port, _) in &me.nodes {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let out = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        me.wait_until(
            Duration::from_secs(20),
            "every node sees cluster_state:ok",
            |c| {
                c.running_ports()
                    .all(|p| c.cli(p, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
            },
        );
        me.wait_until(
            Duration::from_secs(20),
            "every replica linked to its primary",
            |c| {
                let linked = c
                    .running_ports()
                    .map(|p| c.cli(p, &["INFO", "replication"]))
                    .filter(|info| {
                        info.contains("role:slave") && info.contains("master_link_status:up")
                    })
                    .count();
                linked == 3
            },
        );
        me
    }

    /// `redis://127.0.0.1:<port of the first node>` (`rediss://` for TLS): a seed node.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.nodes[0].0)
    }

    fn cli(&self, port: u16, args: &[&str]) -> String {
        let mut all: Vec<&str> = self.cli_tls.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        cli(port, &all)
    }

    fn running_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.nodes
            .iter()
            .filter(|(_, p)| p.is_some())
            .map(|(port, _)| *port)
    }

    /// The port of the live primary that owns `key`'s slot (asked of a running node).
    pub fn primary_port_of(&self, key: &str) -> u16 {
        self.owner(key).expect("a live primary owns the key's slot")
    }

    fn owner(&self, key: &str) -> Option<u16> {
        let port = self.running_ports().next()?;
        let slot: u16 = self
            .cli(port, &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .ok()?;
        for line in self.cli(port, &["CLUSTER", "NODES"]).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let owns = fields[8..].iter().any(|range| match range.split_once('-') {
                Some((a, b)) => {
                    a.parse::<u16>().is_ok_and(|a| a <= slot)
                        && b.parse::<u16>().is_ok_and(|b| slot <= b)
                }
                None => range.parse::<u16>() == Ok(slot),
            });
            if owns {
                let addr = fields[1].split('@').next().unwrap_or("");
                return addr.rsplit(':').next().and_then(|p| p.parse().ok());
            }
        }
        None
    }

    /// Kills (by PID) the node on `port`.
    pub fn kill(&mut self, port: u16) {
        for (p, process) in &mut self.nodes {
            if *p == port
                && let Some(mut child) = process.take()
            {
                child.stop();
            }
        }
    }

    /// Waits until a live primary other than `old_port` owns `key`'s slot and every running node
    /// reports `cluster_state:ok`. Returns the new primary's port.
    pub fn wait_for_failover(&self, key: &str, old_port: u16, limit: Duration) -> u16 {
        self.wait_until(limit, "a replica is promoted", |c| {
            c.running_ports()
                .all(|p| c.cli(p, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
                && c.owner(key).is_some_and(|p| p != old_port)
        });
        self.primary_port_of(key)
    }

    /// The ports of the running replicas of the primary on `primary_port`.
    pub fn replicas_of(&self, primary_port: u16) -> Vec<u16> {
        let id = self
            .cli(primary_port, &["CLUSTER", "MYID"])
            .trim()
            .to_owned();
        let mut ports = Vec::new();
        for line in self.cli(primary_port, &["CLUSTER", "NODES"]).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 || fields[3] != id || fields[2].contains("fail") {
                continue;
            }
            let port: u16 = fields[1]
                .split('@')
                .next()
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok())
                .expect("a port");
            if self.running_ports().any(|p| p == port) {
                ports.push(port);
            }
        }
        ports
    }

    /// Whether every running replica of the primary on `primary_port` holds `key` (asked with
    /// `READONLY` + `EXISTS` on each replica). Plaintext clusters only.
    pub fn replicas_hold(&self, primary_port: u16, key: &str) -> bool {
        let replicas = self.replicas_of(primary_port);
        for &port in &replicas {
            let mut s = TcpStream::connect(("127.0.0.1", port)).expect("replica");
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let cmd = format!("READONLY\r\nEXISTS {key}\r\n");
            s.write_all(cmd.as_bytes()).expect("write");
            let mut out = Vec::new();
            let mut buf = [0u8; 64];
            while !String::from_utf8_lossy(&out).contains(':') {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
            }
            if !String::from_utf8_lossy(&out).contains(":1") {
                return false;
            }
        }
        !replicas.is_empty()
    }

    /// How many replicas the primary on `primary_port` reports as connected and online.
    pub fn online_replicas_of(&self, primary_port: u16) -> usize {
        self.cli(primary_port, &["INFO", "replication"])
            .lines()
            .filter(|l| l.starts_with("slave") && l.contains("state=online"))
            .count()
    }

    fn wait_until(&self, limit: Duration, what: &str, ok: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + limit;
        while !ok(self) {
            assert!(
                Instant::now() < deadline,
                "cluster: not {what} within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for (_, process) in &mut self.nodes {
            if let Some(mut p) = process.take() {
                p.stop();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One `redis-cli` command against `127.0.0.1:<port>`; its stdout (empty when it fails).
fn cli(port: u16, args: &[&str]) -> String {
    Command::new(tool("redis-cli"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}
