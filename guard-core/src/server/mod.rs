//! Serving a Guard stack over HTTP/1.1 (feature `server`): for the Azure Functions custom handler,
//! Cloud Run, or anything else that forwards plain HTTP to a port.
//!
//! [`Server`] accepts connections on a [`tokio::net::TcpListener`] with hyper and hands every
//! request, as a [`GuardRequest`](crate::GuardRequest) with [`Trigger::Http`](crate::request::Trigger)
//! and its [`Peer`](crate::request::Peer), to a clone of your stack (any
//! `Service<GuardRequest, Response = GuardResponse> + Clone`, typically a
//! [`GuardService`](crate::GuardService)). Before the stack runs, the server protects itself:
//!
//! | threat | what the server does | answer |
//! |---|---|---|
//! | huge declared body | refuses on the `Content-Length` header, reads none of the body | 413 `guard.ingress.too_large` |
//! | huge chunked body | reads frame by frame, stops at the frame that passes the limit, keeps nothing of it | 413 |
//! | huge or numerous headers | hyper's `max_buf_size` / `max_headers` | 431 (from hyper) |
//! | slow headers (slowloris) | hyper's header read timeout on tokio's timer | connection closed |
//! | slow body | a deadline on the whole body | 408 `guard.ingress.timeout` |
//! | spoofed `X-Forwarded-For` | the socket address, or the right-most untrusted entry through [`TrustedProxies`](crate::request::TrustedProxies) | — |
//!
//! Every refusal the server makes itself goes through an [`AuditLayer`](crate::audit::AuditLayer)
//! ([`Server::audit`]; give it the stack's, or its sink), so it is recorded exactly once, like a
//! refusal from a layer. The stack is not called for those requests, so nothing is recorded
//! twice. When hyper refuses a request head (431, 400) or a client stalls mid-head, the event has
//! no request fields, only the socket's peer; an idle keep-alive connection that times out, or a
//! client that goes away, is not a refusal and records nothing.
//!
//! **Shutdown.** On SIGTERM (Cloud Run gives 10 s before SIGKILL) or the future passed to
//! [`Server::with_shutdown`], the listener is closed (new connections are refused), idle
//! keep-alive connections are closed, in-flight requests finish within
//! [`Server::drain_timeout`], and then the [`Server::on_shutdown`] hook runs — flush the
//! audit sink there so that no event is lost when the instance stops.
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use guard_core::audit::{AuditLayer, JsonLinesSink};
//! use guard_core::server::Server;
//! use guard_core::{GuardRequest, GuardResponse};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use tower::Layer;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
//! let sink = JsonLinesSink::new(std::io::sink(), 1024);
//! let audit = AuditLayer::new(sink.clone());
//! let handler = tower::service_fn(|req: GuardRequest| async move {
//!     Ok::<GuardResponse, Infallible>(http::Response::new(Bytes::from(format!("{} bytes", req.body().len()))))
//! });
//! let stack = audit.layer(handler); // or a whole Guard: guard.wrap(handler)
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = Server::new()
//!     .max_body_bytes(16)
//!     .shutdown_on_sigterm(false)
//!     .audit(audit)
//!     .with_shutdown(async { stopped.await.ok(); })
//!     .on_shutdown(move || { sink.flush(std::time::Duration::from_secs(1)); });
//! let running = tokio::spawn(server.serve(listener, stack));
//!
//! let mut client = tokio::net::TcpStream::connect(addr).await?;
//! client.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n").await?;
//! let mut answer = String::new();
//! client.read_to_string(&mut answer).await?;
//! assert!(answer.starts_with("HTTP/1.1 413"));
//!
//! stop.send(()).ok();
//! running.await.unwrap()?;
//! # Ok(()) }
//! ```

mod body;
mod config;
mod serve;

pub use serve::Server;
