//! Request checks at the front door: the authority a request names, the size of its body,
//! and one rate-limited log line per refusal.

use bytes::Bytes;
use http::Request;
use http::header::{CONTENT_LENGTH, HOST};
use http_body::{Body, Frame, SizeHint};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use wasmtime_wasi_http::Error as HttpError;

/// Default request body cap (100 MiB); a route's `max_request_body_size` overrides it.
pub const DEFAULT_MAX_REQUEST_BODY: u64 = 100 << 20;

/// The request's authority, checked: the URI's (absolute form, HTTP/2 `:authority`), else
/// the one `Host` header; without either, `local` (the listen address) for HTTP/1.0 and
/// HTTP/2, and an error for HTTP/1.1, which must send `Host` (RFC 9112 §3.2). Anything that
/// is not a plain `host[:port]` (a path, a fragment, user info) is refused: guests build
/// URLs from it.
pub(crate) fn authority<B>(
    request: &Request<B>,
    local: Option<SocketAddr>,
) -> Result<String, &'static str> {
    if let Some(authority) = request.uri().authority() {
        return checked(authority.as_str());
    }
    let mut hosts = request.headers().get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Err("more than one Host header"),
        (Some(host), None) => checked(
            host.to_str()
                .map_err(|_| "a Host header that is not text")?,
        ),
        (None, _) => match (request.version(), local) {
            (http::Version::HTTP_11, Some(_)) => Err("an HTTP/1.1 request without a Host header"),
            (_, Some(local)) => Ok(local.to_string()),
            (_, None) => Err("no authority"),
        },
    }
}

/// `host[:port]` with a non-empty host (a name or an IP literal) and no user info.
fn checked(text: &str) -> Result<String, &'static str> {
    let invalid = "a Host that is not a valid host[:port]";
    let authority: http::uri::Authority = text.parse().map_err(|_| invalid)?;
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return Err(invalid);
    }
    let host = authority.host();
    let name_ok = host.starts_with('[')
        || host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !name_ok {
        return Err(invalid);
    }
    Ok(authority.as_str().to_owned())
}

/// A request body cut off at its route's limit. With a declared `Content-Length` (at most
/// the limit) hyper already holds the body to that length; without one the cap is counted
/// here and [`CappedBody::tripped`] tells that it was hit.
pub(crate) struct CappedBody {
    inner: hyper::body::Incoming,
    remaining: u64,
    tripped: Option<Arc<AtomicBool>>,
}

/// Caps `body` at `limit` bytes; `Err(declared)` when its `Content-Length` already says more.
pub(crate) fn cap_body(
    body: hyper::body::Incoming,
    headers: &http::HeaderMap,
    limit: u64,
) -> Result<CappedBody, u64> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(declared) if declared > limit => Err(declared),
        Some(_) => Ok(CappedBody {
            inner: body,
            remaining: limit,
            tripped: None,
        }),
        None => Ok(CappedBody {
            inner: body,
            remaining: limit,
            tripped: Some(Arc::new(AtomicBool::new(false))),
        }),
    }
}

impl CappedBody {
    /// Set once a streamed body passed the limit (`None` when the length was declared).
    pub(crate) fn tripped(&self) -> Option<Arc<AtomicBool>> {
        self.tripped.clone()
    }
}

impl Body for CappedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = frame.data_ref() {
            let len = data.len() as u64;
            if len > self.remaining {
                if let Some(tripped) = &self.tripped {
                    tripped.store(true, Ordering::Release);
                }
                self.remaining = 0;
                return Poll::Ready(Some(Err(HttpError::HttpRequestBodySize(None))));
            }
            self.remaining -= len;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The kinds of refusal the front door logs, each at a bounded rate so a flood of bad
/// requests cannot flood the log: a refused request is logged once, and past
/// [`LINES_PER_SECOND`] lines of a kind the rest are counted and summed up.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RefusalLog {
    ConnectionsFull,
    AcceptFailed,
    SlowHeaders,
    HeadersTooLarge,
    Malformed,
    BadRequest,
    BodyTooLarge,
}

/// Lines per second and kind before further ones are only counted.
const LINES_PER_SECOND: u32 = 5;

struct Window {
    start: Option<Instant>,
    lines: u32,
    suppressed: u64,
}

const KINDS: usize = 7;
static WINDOWS: [std::sync::Mutex<Window>; KINDS] = [const {
    std::sync::Mutex::new(Window {
        start: None,
        lines: 0,
        suppressed: 0,
    })
}; KINDS];

impl RefusalLog {
    /// Logs `message` unless this kind already logged [`LINES_PER_SECOND`] lines in the
    /// current second.
    pub(crate) fn log(self, message: std::fmt::Arguments<'_>) {
        let mut window = WINDOWS[self as usize]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if window
            .start
            .is_none_or(|start| now.duration_since(start) >= Duration::from_secs(1))
        {
            let suppressed = std::mem::take(&mut window.suppressed);
            window.start = Some(now);
            window.lines = 0;
            if suppressed > 0 {
                tracing::warn!(
                    target: "wisp::refused",
                    "{suppressed} more like the line before were not logged"
                );
            }
        }
        if window.lines < LINES_PER_SECOND {
            window.lines += 1;
            drop(window);
            tracing::warn!(target: "wisp::refused", "{message}");
        } else {
            window.suppressed += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: http::Version, hosts: &[&str]) -> Request<()> {
        let mut builder = Request::builder().uri("/x").version(version);
        for host in hosts {
            builder = builder.header(HOST, *host);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn authorities_are_checked() {
        let local = Some(SocketAddr::from(([127, 0, 0, 1], 3000)));
        let v11 = http::Version::HTTP_11;
        assert_eq!(
            authority(&request(v11, &["example.com"]), local).unwrap(),
            "example.com"
        );
        assert_eq!(
            authority(&request(v11, &["a.b:8080"]), local).unwrap(),
            "a.b:8080"
        );
        assert_eq!(
            authority(&request(v11, &["[::1]:80"]), local).unwrap(),
            "[::1]:80"
        );
        for bad in [
            "x/admin#",
            "x#frag",
            "user@x",
            "x?q",
            "",
            ":80",
            "x y",
            "ex%41mple",
        ] {
            assert!(authority(&request(v11, &[bad]), local).is_err(), "{bad:?}");
        }
        assert!(authority(&request(v11, &["a", "b"]), local).is_err());
        assert!(authority(&request(v11, &[]), local).is_err());
        assert_eq!(
            authority(&request(http::Version::HTTP_10, &[]), local).unwrap(),
            "127.0.0.1:3000"
        );
        // Absolute form: the URI's authority wins, and is checked the same way.
        let absolute = Request::builder()
            .uri("http://example.org:81/x")
            .header(HOST, "other")
            .body(())
            .unwrap();
        assert_eq!(authority(&absolute, local).unwrap(), "example.org:81");
    }
}
