//! A scripted plain-HTTP/1.1 server on a free loopback port, for the outbound client's tests:
//! each request gets the reply a closure picks (a raw response, silence, or a response cut off
//! and then silence); requests are counted. Stopped when dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// What the server does with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Writes these bytes (a whole HTTP response) and closes the connection.
    Respond(Vec<u8>),
    /// Keeps the connection open and never writes anything.
    Stall,
    /// Writes these bytes (the start of a response), then keeps the connection open silently.
    StartThenStall(Vec<u8>),
}

/// The request as the server saw it: the head (request line and headers) and the body.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Request line and headers, as text.
    pub head: String,
    /// The body (read up to `Content-Length`).
    pub body: Vec<u8>,
}

/// A running stub server.
#[derive(Debug)]
pub struct StubServer {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl StubServer {
    /// Starts a server answering each request with `reply(request)`. Needs a Tokio runtime.
    pub async fn start(reply: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let reply = Arc::new(reply);
        let task = tokio::spawn(async move {
            // Dropping the set (when the server task is aborted) aborts every connection.
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let reply = reply.clone();
                let counted = counted.clone();
                connections.spawn(async move { serve(stream, &*reply, &counted).await });
            }
        });
        StubServer { addr, hits, task }
    }

    /// A server that accepts every connection and never answers.
    pub async fn stalling() -> Self {
        Self::start(|_| Reply::Stall).await
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The loopback address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many complete requests arrived.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut stream: TcpStream,
    reply: &(dyn Fn(&Seen) -> Reply + Send + Sync),
    hits: &AtomicUsize,
) {
    let Some(seen) = read_request(&mut stream).await else {
        return;
    };
    hits.fetch_add(1, Ordering::SeqCst);
    match reply(&seen) {
        Reply::Respond(bytes) => {
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
        }
        Reply::Stall => std::future::pending().await,
        Reply::StartThenStall(bytes) => {
            let _ = stream.write_all(&bytes).await;
            let _ = stream.flush().await;
            std::future::pending().await
        }
    }
}

/// Reads one request head and its `Content-Length` body; `None` when the client sends no
/// complete head.
async fn read_request(stream: &mut TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Seen { head, body })
}

/// A whole HTTP/1.1 response with `Content-Length` and `Connection: close`.
pub fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        r.push_str(&format!("{name}: {value}\r\n"));
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}
