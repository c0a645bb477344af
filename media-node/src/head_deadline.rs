//! Slow-header clients on the signaling port: a connection must deliver its first HTTP
//! request head (up to the blank line) within a deadline, or it is closed. hyper's own
//! header-read timeout needs a timer that `axum::serve` does not set, so without this a
//! socket that trickles (or never sends) its head would hold a descriptor forever.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Finds the end of an HTTP/1 request head (`\r\n\r\n`) across reads.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HeadEnd {
    /// How many bytes of `\r\n\r\n` the bytes seen so far end with (4: the head is complete).
    matched: u8,
}

impl HeadEnd {
    /// Feeds the next bytes read; true once the head is complete.
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        const END: &[u8; 4] = b"\r\n\r\n";
        for &b in bytes {
            if self.matched == 4 {
                break;
            }
            self.matched = if b == END[usize::from(self.matched)] {
                self.matched + 1
            } else if b == b'\r' {
                1
            } else {
                0
            };
        }
        self.matched == 4
    }
}

/// A listener whose connections are closed when their first request head is late.
pub struct HeadDeadline<L> {
    inner: L,
    deadline: Duration,
}

impl<L> HeadDeadline<L> {
    /// Wraps `inner`; each accepted connection has `deadline` to send its request head.
    pub fn new(inner: L, deadline: Duration) -> Self {
        HeadDeadline { inner, deadline }
    }
}

impl<L: Listener<Addr = SocketAddr>> Listener for HeadDeadline<L> {
    type Io = Timed<L::Io>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, SocketAddr) {
        let (io, addr) = self.inner.accept().await;
        let timer = Some(Box::pin(tokio::time::sleep_until(
            Instant::now() + self.deadline,
        )));
        (
            Timed {
                io,
                timer,
                head: HeadEnd::default(),
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection under a head deadline: reads fail with `TimedOut` once it passes before the
/// head is complete; after that, a plain pass-through.
pub struct Timed<S> {
    io: S,
    /// Running until the head is complete; None afterwards.
    timer: Option<Pin<Box<Sleep>>>,
    head: HeadEnd,
}

impl<S: AsyncRead + Unpin> AsyncRead for Timed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.timer.is_some() && this.head.feed(&buf.filled()[before..]) {
                    this.timer = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match this.timer.as_mut().map(|t| t.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request head not received in time",
                ))),
                _ => Poll::Pending,
            },
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Timed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::HeadEnd;

    #[test]
    fn a_head_ends_at_the_blank_line_even_split_across_reads() {
        let mut end = HeadEnd::default();
        assert!(!end.feed(b"GET /rtc HTTP/1.1\r\nHost: a\r"));
        assert!(!end.feed(b"\n\r"));
        assert!(end.feed(b"\nbody"));
    }

    #[test]
    fn line_ends_without_a_blank_line_do_not_end_the_head() {
        let mut end = HeadEnd::default();
        assert!(!end.feed(b"GET / HTTP/1.1\r\nA: b\r\n\rX\r\n"));
        assert!(!end.feed(b"\r\r\n\r"));
        assert!(end.feed(b"\n"));
    }
}
