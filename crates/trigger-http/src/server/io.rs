//! A connection's byte stream as hyper sees it: the socket (or TLS over it), noting when
//! request bytes arrive, moving between runtimes with its connection, closing with a
//! lingering read, and ending between requests when the connection goes to another
//! server ([`crate::handoff`]).

use super::ConnState;
use crate::handoff::{HandOffCell, Redirect, request_host};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

/// A connection's byte stream: the socket, or TLS over it.
pub(super) enum Stream {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
}

impl tokio::io::AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(stream) => stream.is_write_vectored(),
            Stream::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The connection's socket, noting when request bytes arrive on an idle connection.
pub(super) struct ConnIo {
    /// Always `Some` until dropped (taken by the lingering close).
    pub(super) stream: Option<Stream>,
    /// Whether the socket is registered with the slow lane's runtime (or the one it was
    /// accepted on).
    pub(super) on_slow_lane: bool,
    /// Where the socket goes if a request handler asks ([`hand_off_connection`]).
    pub(super) hand_off: Arc<HandOffCell>,
    /// The handler asked, and the connection is ending to hand its socket over.
    pub(super) handing_off: bool,
    /// hyper ended the connection cleanly after the end of stream `handing_off` gave it,
    /// its buffered writes flushed: only then does the socket go on.
    pub(super) handed_cleanly: bool,
    /// Bytes were written since hyper's last completed flush: a response may still be in
    /// hyper's buffer, and hyper would drop it at an end of stream.
    pub(super) unflushed: bool,
    /// A read waits for the response to be flushed before the connection may go.
    pub(super) waits_for_flush: bool,
    /// A handed-over connection: where its requests for elsewhere send it.
    pub(super) redirect: Option<Redirect>,
    pub(super) state: Arc<ConnState>,
    /// The connection's slot, held until the socket is closed, lingering included, so
    /// lingering sockets count against the connection limit.
    pub(super) slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl ConnIo {
    fn stream(&mut self) -> Pin<&mut Stream> {
        let here = wisp_engine::on_slow_lane();
        if here != self.on_slow_lane {
            self.on_slow_lane = here;
            self.register_here();
        }
        Pin::new(
            self.stream
                .as_mut()
                .expect("the stream is taken only on drop"),
        )
    }
}

impl ConnIo {
    /// Ready once something is waiting in the socket (bytes, the client's end or an
    /// error), without reading it; registers for readiness otherwise.
    fn peek_waiting(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut space = [std::mem::MaybeUninit::uninit(); 1];
        let mut peeked = tokio::io::ReadBuf::uninit(&mut space);
        match self.stream.as_mut() {
            Some(Stream::Plain(stream)) => stream.poll_peek(cx, &mut peeked).map(|_| ()),
            _ => Poll::Ready(()),
        }
    }

    /// The `Host` of the request waiting unread in the socket, once data is there: `None`
    /// when what has arrived is not a whole HTTP/1 request head with a `Host` (the client
    /// closed, or the head is split), which is then read and served as usual.
    fn peek_host(&mut self, cx: &mut Context<'_>) -> Poll<Option<String>> {
        let mut space = [std::mem::MaybeUninit::uninit(); 8 << 10];
        let mut peeked = tokio::io::ReadBuf::uninit(&mut space);
        let Some(Stream::Plain(stream)) = self.stream.as_mut() else {
            return Poll::Ready(None);
        };
        match stream.poll_peek(cx, &mut peeked) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(_) | Ok(0)) => Poll::Ready(None),
            Poll::Ready(Ok(_)) => Poll::Ready(request_host(peeked.filled())),
        }
    }

    /// The connection moved to another runtime (a flooded app's connection to the slow
    /// lane): registers its socket with this runtime's reactor, so its readiness events
    /// are handled by this runtime's threads, not by the serving threads it left. A
    /// duplicate of the descriptor is registered first, so a failure keeps the socket
    /// where it was. (A TLS connection stays registered where it was accepted.)
    fn register_here(&mut self) {
        use std::os::fd::AsFd as _;
        let Some(Stream::Plain(socket)) = &self.stream else {
            return;
        };
        let moved = socket
            .as_fd()
            .try_clone_to_owned()
            .and_then(|fd| tokio::net::TcpStream::from_std(std::net::TcpStream::from(fd)));
        match moved {
            // Dropping the old one deregisters and closes only its descriptor.
            Ok(moved) => self.stream = Some(Stream::Plain(moved)),
            Err(err) => {
                tracing::debug!("a connection stays registered where it was accepted: {err}")
            }
        }
    }
}

/// How long, at most, a closed connection keeps reading what its client still sends.
const LINGER: Duration = Duration::from_secs(2);
/// How long a lingering connection waits for more bytes before closing.
const LINGER_QUIET: Duration = Duration::from_millis(500);

impl Drop for ConnIo {
    /// A connection closed while its client is still sending (the body of a request
    /// refused with 413 or answered without being read, the rest of a head refused with
    /// 431) would answer those bytes with a reset, and the client could lose the response
    /// just written. Such a connection first reads and discards what keeps coming, for a
    /// moment ("lingering close", as other servers do). That is the case when bytes are
    /// waiting, or when the last request had a body (its client may be paused between
    /// writes); any other connection closes at once.
    fn drop(&mut self) {
        // A TLS connection closes with the TLS session; bytes still arriving on it could
        // not be read without it.
        let Some(Stream::Plain(stream)) = self.stream.take() else {
            return;
        };
        if self.handing_off
            && self.handed_cleanly
            && let Some(to) = self.hand_off.take()
        {
            match stream.into_std() {
                Ok(socket) => to(socket),
                Err(err) => tracing::debug!("cannot hand a connection off: {err}"),
            }
            return;
        }
        let mut probe = [0u8; 512];
        let waiting = match stream.try_read(&mut probe) {
            // Closed by the client, or failed: nothing more will arrive.
            Ok(0) => return,
            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => return,
            Ok(_) => true,
            Err(_) => false,
        };
        if !waiting && !self.state.body_sent.load(Ordering::Acquire) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(linger(stream, self.slot.take()));
        }
    }
}

async fn linger(
    mut stream: tokio::net::TcpStream,
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.shutdown().await;
    let until = tokio::time::Instant::now() + LINGER;
    let mut buf = vec![0u8; 16 << 10];
    while let Ok(Ok(read)) = tokio::time::timeout_at(
        until.min(tokio::time::Instant::now() + LINGER_QUIET),
        stream.read(&mut buf),
    )
    .await
    {
        if read == 0 {
            break;
        }
    }
}

impl tokio::io::AsyncRead for ConnIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.handing_off {
            return Poll::Ready(Ok(()));
        }
        let asked = self.hand_off.asked();
        // Only a plain HTTP/1 connection goes elsewhere, and only after a request that
        // had no body (whose unread rest would go along) and no bytes read ahead of the
        // next one (which hyper would keep).
        let may_leave = (asked || self.redirect.is_some())
            && !self.state.http2.load(Ordering::Acquire)
            && !self.state.body_sent.load(Ordering::Acquire)
            && !self.state.read_ahead.load(Ordering::Acquire)
            && !self.state.past_head.load(Ordering::Acquire)
            && matches!(self.stream, Some(Stream::Plain(_)));
        let mut between_requests = self.state.in_flight.load(Ordering::SeqCst) == 0;
        if may_leave && !between_requests {
            // hyper reads ahead while a response is in flight, to notice a client that
            // leaves; the next request must stay unread until this one has ended, so
            // that it can go elsewhere. The socket is only peeked at meanwhile: a client
            // that closes (or sends more) is read as usual.
            *self
                .state
                .parked_read
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            self.state.read_parked.store(true, Ordering::SeqCst);
            if self.state.in_flight.load(Ordering::SeqCst) != 0 {
                match self.peek_waiting(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => {}
                }
            } else {
                between_requests = true;
            }
            self.state.read_parked.store(false, Ordering::SeqCst);
        }
        let between_requests = may_leave && between_requests;
        if between_requests && self.unflushed {
            // The response is not all out: the connection can go once it is.
            self.waits_for_flush = true;
            return Poll::Pending;
        }
        if between_requests && let Some(redirect) = self.redirect.clone() {
            let host = match self.peek_host(cx) {
                Poll::Ready(host) => host,
                Poll::Pending => return Poll::Pending,
            };
            if let Some(to) = host.and_then(|host| redirect(&host)) {
                // The next request is for elsewhere: it goes there unread, with the socket.
                *self.hand_off.to.lock().unwrap_or_else(|e| e.into_inner()) = Some(to);
                self.handing_off = true;
                return Poll::Ready(Ok(()));
            }
        }
        if asked && between_requests {
            // Between requests, with nothing of the next one read: end of stream for
            // hyper, which then ends the connection (its buffered writes flushed first),
            // and the socket (with whatever the client sends next still in it) goes on
            // in Drop.
            self.handing_off = true;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = self.stream().poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.bytes_read();
            if self.state.in_flight.load(Ordering::Acquire) > 0 {
                self.state.read_ahead.store(true, Ordering::Release);
            } else {
                self.state.read_ahead.store(false, Ordering::Release);
                // Reads of a head that ends where the read ends leave hyper nothing more.
                let read = &buf.filled()[before..];
                let past = match read.len().checked_sub(4) {
                    Some(end) if read.ends_with(b"\r\n\r\n") => {
                        memchr::memmem::find(&read[..end], b"\r\n\r\n").is_some()
                    }
                    _ => true,
                };
                self.state.past_head.store(past, Ordering::Release);
            }
        }
        polled
    }
}

impl tokio::io::AsyncWrite for ConnIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.unflushed = true;
        self.stream().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.unflushed = true;
        self.stream().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream
            .as_ref()
            .is_some_and(tokio::io::AsyncWrite::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let flushed = self.stream().poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) && self.unflushed {
            // hyper flushes only once its own buffer is empty: the response is out.
            self.unflushed = false;
            if self.waits_for_flush {
                self.waits_for_flush = false;
                cx.waker().wake_by_ref();
            }
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.handing_off {
            // The connection goes on elsewhere: no FIN.
            self.handed_cleanly = true;
            return Poll::Ready(Ok(()));
        }
        self.stream().poll_shutdown(cx)
    }
}
