//! The native baseline for `rps.sh`: a hyper 1 server answering `Hello from Wisp\n`, and
//! with `--touch4mib`, allocating and touching 4 MiB per request like the guest of the
//! same name. Like the `spin-loop` guest, a path starting with `/loop` spins (for 30 s,
//! Wisp's default deadline) on the worker thread that took it, as a handler with a busy
//! loop would: the baseline of `noisy-neighbour.sh`.
//! Usage: `native-hello 127.0.0.1:8082 [--touch4mib]`.

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;

fn touch4mib() -> String {
    let mut v = vec![0u8; 4 << 20];
    for i in (0..v.len()).step_by(4096) {
        v[i] = (i / 4096) as u8;
    }
    let sum: u64 = std::hint::black_box(&v).iter().map(|b| u64::from(*b)).sum();
    format!("touched 4194304 bytes sum={sum}\n")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let addr: std::net::SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:8082".to_owned())
        .parse()
        .expect("usage: native-hello ADDR [--touch4mib]");
    let touch = args.next().as_deref() == Some("--touch4mib");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        eprintln!(
            "Listening on http://{}",
            listener.local_addr().expect("addr")
        );
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: hyper::Request<_>| async move {
                        if req.uri().path().starts_with("/loop") {
                            let started = std::time::Instant::now();
                            let mut counter = 0u64;
                            while started.elapsed() < std::time::Duration::from_secs(30) {
                                counter = std::hint::black_box(counter.wrapping_add(1));
                            }
                        }
                        let body = if touch {
                            Bytes::from(touch4mib())
                        } else {
                            Bytes::from_static(b"Hello from Wisp\n")
                        };
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "text/plain")
                                .body(Full::new(body))
                                .expect("response"),
                        )
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}
