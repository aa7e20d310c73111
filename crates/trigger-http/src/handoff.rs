//! Handing a client connection to another server between two of its requests: a node
//! passes a flooded app's keep-alive connections to its worker process, which serves them
//! and passes back those whose next request is for another app. The connection's socket
//! goes with the next request unread in it; [`crate::server`]'s connection IO decides
//! when that is safe (a response fully flushed, nothing of a next request read).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Takes over a client connection's socket, between two of its requests: the client's
/// next request, if it sent one, is still unread in the socket.
pub type HandOff = Arc<dyn Fn(std::net::TcpStream) + Send + Sync>;

/// Decides, before each request on a handed-over connection is read, from its `Host`,
/// whether the connection goes on elsewhere: where to, or `None` to serve it here.
pub type Redirect = Arc<dyn Fn(&str) -> Option<HandOff> + Send + Sync>;

/// A plain HTTP/1 client connection another server handed over between two requests
/// (see [`hand_off_connection`]), for [`serve_with_handed_off`].
pub struct HandedConnection {
    /// The client's socket.
    pub stream: tokio::net::TcpStream,
    /// Where the connection goes when a request on it is not for this server: checked
    /// against each request's `Host` before the request is read. A request whose head
    /// has not fully arrived when it is checked is served here.
    pub redirect: Option<Redirect>,
}

tokio::task_local! {
    /// The connection whose request is being handled, for [`hand_off_connection`].
    pub(crate) static HAND_OFF: Arc<HandOffCell>;
}

/// Asks for the connection the current request came on to be handed to `to` once this
/// request's response is sent: an embedder serving its requests elsewhere (a node's
/// worker process) takes the whole connection. Only a plain HTTP/1 connection whose
/// client has sent nothing more is handed off; any other stays. Outside a connection's
/// request this does nothing.
pub fn hand_off_connection(to: HandOff) {
    let _ = HAND_OFF.try_with(|cell| {
        *cell.to.lock().unwrap_or_else(|e| e.into_inner()) = Some(to);
        cell.asked.store(true, Ordering::Release);
    });
}

/// One connection's hand-off request.
#[derive(Default)]
pub(crate) struct HandOffCell {
    asked: AtomicBool,
    pub(crate) to: std::sync::Mutex<Option<HandOff>>,
}

impl HandOffCell {
    pub(crate) fn asked(&self) -> bool {
        self.asked.load(Ordering::Acquire)
    }

    /// A new request started: an earlier one's wish no longer holds.
    pub(crate) fn clear(&self) {
        if self.asked() {
            self.asked.store(false, Ordering::Release);
            self.take();
        }
    }

    pub(crate) fn take(&self) -> Option<HandOff> {
        self.to.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// The authority the HTTP/1 request head at the start of `bytes` is routed by, if the
/// whole head is there: its absolute-form target's, else its `Host` header (as
/// [`request_authority`](crate::request_authority) reads them).
pub(crate) fn request_host(bytes: &[u8]) -> Option<String> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?;
    let target = request_line
        .strip_suffix(" HTTP/1.1")
        .or_else(|| request_line.strip_suffix(" HTTP/1.0"))?
        .split_once(' ')?
        .1;
    if let Ok(uri) = target.parse::<http::Uri>()
        && let Some(authority) = uri.authority()
    {
        return Some(authority.as_str().to_owned());
    }
    lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("host")
            .then(|| value.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{Peer, RequestHandler, ServerConfig, serve_with_handed_off};
    use http::Request;
    use std::io::{Read as _, Write as _};
    use std::net::SocketAddr;
    use std::time::Duration;
    use wasmtime_wasi_http::WasiBody;
    use wisp_trigger::BoxFuture;

    #[test]
    fn the_authority_of_a_whole_request_head_is_found() {
        let head = b"GET /a HTTP/1.1\r\nAccept: */*\r\nHOST:  shop.example:8080 \r\n\r\nbody";
        assert_eq!(request_host(head).as_deref(), Some("shop.example:8080"));
        assert_eq!(
            request_host(b"GET / HTTP/1.0\r\nhost: a\r\n\r\n").as_deref(),
            Some("a")
        );
        // An absolute-form target is routed by its authority, as hyper's request is.
        let absolute = b"GET http://b.test:81/x HTTP/1.1\r\nhost: a\r\n\r\n";
        assert_eq!(request_host(absolute).as_deref(), Some("b.test:81"));
        // Not yet whole, no Host, or not HTTP/1.
        assert_eq!(request_host(b"GET / HTTP/1.1\r\nhost: a\r\n"), None);
        assert_eq!(request_host(b"GET / HTTP/1.1\r\naccept: a\r\n\r\n"), None);
        assert_eq!(request_host(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), None);
        assert_eq!(request_host(b"GET / HTTP/1.1\r\n\xff: a\r\n\r\n"), None);
    }

    /// The large body `/big` answers with: more than a socket buffer holds.
    const BIG: usize = 4 << 20;

    /// Answers `here`, and on `/leave` (after a moment, so hyper reads ahead meanwhile)
    /// and `/big` asks for the connection to go to the receiver once the response is
    /// sent.
    struct Leaving(std::sync::mpsc::Sender<std::net::TcpStream>);

    impl RequestHandler for Leaving {
        fn handle_request(
            self: Arc<Self>,
            request: Request<hyper::body::Incoming>,
            _peer: Peer,
        ) -> BoxFuture<'static, http::Response<WasiBody>> {
            let path = request.uri().path().to_owned();
            if path == "/leave" || path == "/big" {
                let to = self.0.clone();
                hand_off_connection(Arc::new(move |socket| {
                    let _ = to.send(socket);
                }));
            }
            Box::pin(async move {
                match path.as_str() {
                    "/leave" => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        crate::text_response(http::StatusCode::OK, "here\n")
                    }
                    "/big" => {
                        let big: &'static str = Box::leak("x".repeat(BIG - 5).into_boxed_str());
                        let mut response = crate::text_response(http::StatusCode::OK, big);
                        response.headers_mut().remove(http::header::CONTENT_LENGTH);
                        response
                    }
                    _ => crate::text_response(http::StatusCode::OK, "here\n"),
                }
            })
        }
    }

    /// Reads one response: its head, then `content-length` bytes.
    fn read_response(stream: &mut std::net::TcpStream) -> String {
        let head = String::from_utf8(read_head(stream)).unwrap();
        let length: usize = head
            .to_ascii_lowercase()
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map_or(0, |length| length.trim().parse().unwrap());
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).unwrap();
        head + &String::from_utf8(body).unwrap()
    }

    fn read_head(stream: &mut std::net::TcpStream) -> Vec<u8> {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(stream.read(&mut byte).unwrap(), 1, "{head:?}");
            head.push(byte[0]);
        }
        head
    }

    /// A server on a loopback port whose handed-over connections come from the returned
    /// sender, and whose handler sends connections it lets go to the returned receiver.
    async fn server() -> (
        SocketAddr,
        tokio::sync::mpsc::Sender<HandedConnection>,
        std::sync::mpsc::Receiver<std::net::TcpStream>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (handed_tx, handed_rx) = tokio::sync::mpsc::channel(4);
        let (gone_tx, gone_rx) = std::sync::mpsc::channel();
        tokio::spawn(serve_with_handed_off(
            Arc::new(Leaving(gone_tx)),
            listener,
            Some(handed_rx),
            ServerConfig::default(),
            std::future::pending(),
        ));
        (address, handed_tx, gone_rx)
    }

    fn connect(address: SocketAddr) -> std::net::TcpStream {
        let client = std::net::TcpStream::connect(address).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        client
    }

    /// Takes the socket the server let go of, as a blocking one.
    fn taken(gone: &std::sync::mpsc::Receiver<std::net::TcpStream>) -> std::net::TcpStream {
        let taken = gone.recv_timeout(Duration::from_secs(10)).unwrap();
        taken.set_nonblocking(false).unwrap();
        taken
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        taken
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_is_handed_off_once_its_response_is_sent() {
        let (address, _handed, gone) = server().await;
        let mut client = connect(address);
        let next = tokio::task::spawn_blocking(move || {
            // Handed off as soon as the whole response is out, before the client sends
            // anything more, even for a response larger than the socket's buffers.
            for path in ["/leave", "/big"] {
                client
                    .write_all(format!("GET {path} HTTP/1.1\r\nhost: a.test\r\n\r\n").as_bytes())
                    .unwrap();
                let response = read_response(&mut client);
                assert!(response.starts_with("HTTP/1.1 200"), "{response:.200}");
                assert!(response.ends_with("\r\n\r\nhere\n") || response.len() > BIG);
                let mut taken = taken(&gone);
                // The connection goes on with whoever took it, the next request unread.
                client
                    .write_all(b"GET /next HTTP/1.1\r\nhost: b.test\r\n\r\n")
                    .unwrap();
                assert_eq!(
                    read_head(&mut taken),
                    b"GET /next HTTP/1.1\r\nhost: b.test\r\n\r\n"
                );
                taken
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhere\n")
                    .unwrap();
                assert!(read_response(&mut client).ends_with("\r\n\r\nhere\n"));
                client = connect(address);
            }
        });
        next.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_stays_after_a_request_with_a_body_or_a_pipelined_one() {
        let (address, _handed, gone) = server().await;
        let mut client = connect(address);
        tokio::task::spawn_blocking(move || {
            // A body the handler did not read: its rest would go along with the socket.
            client
                .write_all(b"POST /leave HTTP/1.1\r\nhost: a.test\r\ncontent-length: 3\r\n\r\nabc")
                .unwrap();
            assert!(read_response(&mut client).ends_with("here\n"));
            // Two requests at once: hyper holds the second when the first ends.
            client
                .write_all(b"GET /leave HTTP/1.1\r\nhost: a.test\r\n\r\nGET /x HTTP/1.1\r\nhost: a.test\r\n\r\n")
                .unwrap();
            for _ in 0..2 {
                assert!(read_response(&mut client).ends_with("here\n"));
            }
            // Pipelined while one is in flight, the last split inside its head: hyper
            // holds a part of it when the one asking to leave ends.
            client
                .write_all(b"GET /leave HTTP/1.1\r\nhost: a.test\r\n\r\n")
                .unwrap();
            std::thread::sleep(Duration::from_millis(10));
            client
                .write_all(b"GET /leave HTTP/1.1\r\nhost: a.test\r\n\r\nGET /y HT")
                .unwrap();
            std::thread::sleep(Duration::from_millis(150));
            client.write_all(b"TP/1.1\r\nhost: a.test\r\n\r\n").unwrap();
            for _ in 0..3 {
                let response = read_response(&mut client);
                assert!(response.starts_with("HTTP/1.1 200"), "{response}");
            }
            // All answered here, and the connection is still served here.
            client
                .write_all(b"GET /x HTTP/1.1\r\nhost: a.test\r\n\r\n")
                .unwrap();
            assert!(read_response(&mut client).ends_with("here\n"));
            assert!(gone.try_recv().is_err());
        })
        .await
        .unwrap();
    }

    /// A client connected to a listener of its own, its accepted socket handed to the
    /// server (through `handed`) with a rule sending it back, to the returned receiver,
    /// before a request for a host `elsewhere` picks.
    async fn hand_over(
        handed: &tokio::sync::mpsc::Sender<HandedConnection>,
        elsewhere: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> (
        std::net::TcpStream,
        std::sync::mpsc::Receiver<std::net::TcpStream>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = connect(listener.local_addr().unwrap());
        let (accepted, _) = listener.accept().await.unwrap();
        let (back_tx, back_rx) = std::sync::mpsc::channel();
        let back: HandOff = Arc::new(move |socket| {
            let _ = back_tx.send(socket);
        });
        let redirect: Redirect = Arc::new(move |host| elsewhere(host).then(|| back.clone()));
        handed
            .send(HandedConnection {
                stream: accepted,
                redirect: Some(redirect),
            })
            .await
            .unwrap();
        (client, back_rx)
    }

    /// Sends `request` on a handed-over connection and asserts that the socket came back
    /// through `back` with the request still unread in it.
    fn goes_back_unread(
        client: &mut std::net::TcpStream,
        back: &std::sync::mpsc::Receiver<std::net::TcpStream>,
        request: &[u8],
    ) {
        client.write_all(request).unwrap();
        assert_eq!(read_head(&mut taken(back)), request);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_handed_over_connection_is_served_until_a_request_for_elsewhere() {
        let (address, handed, _gone) = server().await;
        let (mut client, back_rx) = hand_over(&handed, |host| host == "other.test").await;
        assert_ne!(address, client.peer_addr().unwrap());
        tokio::task::spawn_blocking(move || {
            for _ in 0..2 {
                client
                    .write_all(b"GET / HTTP/1.1\r\nhost: mine.test\r\n\r\n")
                    .unwrap();
                assert!(read_response(&mut client).starts_with("HTTP/1.1 200"));
            }
            goes_back_unread(
                &mut client,
                &back_rx,
                b"GET /x HTTP/1.1\r\nhost: other.test\r\n\r\n",
            );
        })
        .await
        .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_handed_over_connection_whose_first_request_is_for_elsewhere_goes_on() {
        let (_address, handed, _gone) = server().await;
        let (mut client, back_rx) = hand_over(&handed, |_| true).await;
        tokio::task::spawn_blocking(move || {
            goes_back_unread(
                &mut client,
                &back_rx,
                b"GET /first HTTP/1.1\r\nhost: other.test\r\n\r\n",
            );
        })
        .await
        .unwrap();
    }
}
