//! Reading a request body without ever holding more than the limit, and counting the bytes a
//! connection has read (to tell a slow client from an idle keep-alive connection).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Why a body was not read to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyRefusal {
    /// `Content-Length` declares more than the limit: nothing was read.
    DeclaredTooLarge,
    /// The body passed the limit while streaming.
    TooLarge,
    /// The body did not arrive before the deadline.
    Timeout,
    /// The client broke the body off (connection closed, bad chunk encoding).
    Broken,
}

/// Reads `body` into one buffer, refusing it as soon as it is known to exceed `limit` bytes:
/// before reading when its declared length says so, or at the frame that crosses the limit
/// (which is dropped, never kept). Stops at `deadline`.
pub(super) async fn read_bounded<B>(
    body: B,
    limit: u64,
    deadline: Instant,
) -> Result<Bytes, BodyRefusal>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut body = body;
    let hint = body.size_hint();
    if hint.lower() > limit {
        return Err(BodyRefusal::DeclaredTooLarge);
    }
    if hint.exact() == Some(0) {
        return Ok(Bytes::new());
    }
    let mut buf = BytesMut::with_capacity(hint.lower().min(limit) as usize);
    let mut total = 0u64;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(BodyRefusal::Timeout),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(BodyRefusal::Broken),
            Ok(Some(Ok(frame))) => frame,
        };
        // Trailers carry no body bytes and are not passed on.
        if let Ok(data) = frame.into_data() {
            total = total.saturating_add(data.len() as u64);
            if total > limit {
                return Err(BodyRefusal::TooLarge);
            }
            if buf.is_empty() && body.is_end_stream() {
                // One frame is the whole body: no copy.
                return Ok(data);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// A connection that counts the bytes read from it.
#[derive(Debug)]
pub(super) struct CountingIo<T> {
    inner: T,
    read: Arc<AtomicU64>,
}

impl<T> CountingIo<T> {
    pub(super) fn new(inner: T, read: Arc<AtomicU64>) -> Self {
        Self { inner, read }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CountingIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CountingIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};
    use std::time::Duration;

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        let b = read_bounded(Full::new(Bytes::from_static(b"hello")), 5, later()).await;
        assert_eq!(b.unwrap(), "hello");
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_unread() {
        let b = read_bounded(Full::new(Bytes::from_static(b"hello!")), 5, later()).await;
        assert_eq!(b.unwrap_err(), BodyRefusal::DeclaredTooLarge);
    }

    #[tokio::test]
    async fn a_stream_is_refused_at_the_frame_that_crosses_the_limit() {
        let frames =
            (0..4).map(|_| Ok::<_, io::Error>(http_body::Frame::data(Bytes::from_static(b"abc"))));
        let body = StreamBody::new(futures_util::stream::iter(frames));
        assert_eq!(
            read_bounded(body, 7, later()).await.unwrap_err(),
            BodyRefusal::TooLarge
        );
        let frames =
            (0..2).map(|_| Ok::<_, io::Error>(http_body::Frame::data(Bytes::from_static(b"abc"))));
        let body = StreamBody::new(futures_util::stream::iter(frames));
        assert_eq!(read_bounded(body, 7, later()).await.unwrap(), "abcabc");
    }
}
