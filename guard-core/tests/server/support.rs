//! A server on a free loopback port with a counting handler and a capturing audit sink, and raw
//! TCP clients (so the tests control every byte on the wire).

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use guard_core::audit::{AuditLayer, SecurityEvent};
use guard_core::request::Peer;
use guard_core::server::Server;
use guard_core::{GuardRequest, GuardResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::Layer;

/// Events captured by a closure sink, in order.
#[derive(Clone, Default)]
pub(crate) struct Events(Arc<Mutex<Vec<SecurityEvent>>>);

impl Events {
    pub(crate) fn all(&self) -> Vec<SecurityEvent> {
        self.0.lock().unwrap().clone()
    }

    pub(crate) fn layer(&self) -> AuditLayer {
        let events = self.0.clone();
        AuditLayer::new(move |e: SecurityEvent| events.lock().unwrap().push(e))
    }

    /// Waits (up to 2 s) until `n` events arrived; events from a closing connection are written
    /// by its task just after the client sees the close.
    pub(crate) async fn wait_for(&self, n: usize) -> Vec<SecurityEvent> {
        for _ in 0..200 {
            if self.0.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.all()
    }
}

/// A handler that counts its calls and answers 200 with `<peer or "none"> <body length>`.
#[derive(Clone, Default)]
pub(crate) struct Handler {
    pub(crate) calls: Arc<AtomicUsize>,
}

impl Handler {
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub(crate) fn service(
        &self,
    ) -> impl tower::Service<
        GuardRequest,
        Response = GuardResponse,
        Error = Infallible,
        Future = impl Send + 'static,
    > + Clone
    + Send
    + 'static {
        let calls = self.calls.clone();
        tower::service_fn(move |req: GuardRequest| {
            calls.fetch_add(1, Ordering::SeqCst);
            let peer = req
                .extensions()
                .get::<Peer>()
                .map_or("none".to_string(), |p| p.ip().to_string());
            let body = format!("{peer} {}", req.body().len());
            async move { Ok::<_, Infallible>(http::Response::new(Bytes::from(body))) }
        })
    }
}

/// A running server: its address, the events it recorded, and a way to stop it.
pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    pub(crate) handler: Handler,
    pub(crate) events: Events,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    pub(crate) async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
    }
}

/// A listener on a free loopback port whose accepted sockets have a small receive buffer, so
/// that bytes a client "sent" are close to bytes the server read.
pub(crate) fn small_buffer_listener() -> TcpListener {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    socket.listen(64).unwrap()
}

/// Serves the counting handler (behind the capturing audit layer, as in a Guard stack) with
/// `server` (SIGTERM off: only the SIGTERM test listens for it).
pub(crate) async fn start(server: Server) -> Running {
    start_on(small_buffer_listener(), server.shutdown_on_sigterm(false)).await
}

pub(crate) async fn start_on(listener: TcpListener, server: Server) -> Running {
    let handler = Handler::default();
    let events = Events::default();
    let stack = events.layer().layer(handler.service());
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = server.audit(events.layer()).with_shutdown(async {
        let _ = stopped.await;
    });
    let task = tokio::spawn(server.serve(listener, stack));
    Running {
        addr,
        handler,
        events,
        stop: Some(stop),
        task,
    }
}

/// A client socket with a small send buffer.
pub(crate) async fn connect(addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Sends `request` and reads until the server closes (or 5 s pass). A server may answer and
/// close before the whole request is sent, so a failed write is not an error here.
pub(crate) async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = connect(addr).await;
    let _ = s.write_all(request).await;
    read_until_close(&mut s).await
}

/// Everything the server sends until it closes the connection (or 5 s pass).
pub(crate) async fn read_until_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw HTTP/1.1 answer (0 if there is none).
pub(crate) fn status(answer: &str) -> u16 {
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A `Write` into a shared buffer, for a `JsonLinesSink` the test reads back.
#[derive(Clone, Default)]
pub(crate) struct SharedBuf(pub(crate) Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
