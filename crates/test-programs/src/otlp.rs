//! An OTLP/HTTP trace collector for tests: a real HTTP listener that decodes each export
//! with the `opentelemetry-proto` types, shared by the tests of every way Wisp runs (`wisp
//! up`, the shim).

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An OTLP/HTTP collector on 127.0.0.1:0 that decodes every export with the
/// `opentelemetry-proto` types and keeps the spans with their resource's `service.name`.
pub struct Collector {
    /// Where it listens: `OTEL_EXPORTER_OTLP_ENDPOINT=http://{addr}`.
    pub addr: SocketAddr,
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

/// Reads one HTTP/1.1 request head; its header lines (lowercased names), or `None` at EOF.
pub fn read_head(reader: &mut impl BufRead) -> Option<Vec<(String, String)>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Some(lines);
        }
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        lines.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
}

impl Collector {
    /// Starts it on a thread of its own; it runs until the process ends.
    pub fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let kept = kept.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(&stream);
                    while let Some(head) = read_head(&mut reader) {
                        let length: usize = head
                            .iter()
                            .find(|(n, _)| n == "content-length")
                            .and_then(|(_, v)| v.parse().ok())
                            .unwrap_or(0);
                        let mut body = vec![0; length];
                        if reader.read_exact(&mut body).is_err() {
                            return;
                        }
                        let request =
                            <ExportTraceServiceRequest as prost::Message>::decode(&body[..])
                                .expect("an OTLP trace export");
                        for resource_spans in request.resource_spans {
                            let service = resource_spans
                                .resource
                                .iter()
                                .flat_map(|r| &r.attributes)
                                .find(|a| a.key == "service.name")
                                .and_then(|a| a.value.as_ref())
                                .map(|v| format!("{:?}", v.value))
                                .unwrap_or_default();
                            for scope in resource_spans.scope_spans {
                                for span in scope.spans {
                                    kept.lock().unwrap().push((service.clone(), span));
                                }
                            }
                        }
                        let _ =
                            (&stream).write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                    }
                });
            }
        });
        Collector { addr, spans }
    }

    /// Waits up to 20 s for spans that `found` accepts; returns them all.
    pub fn wait_for(&self, found: impl Fn(&[(String, Span)]) -> bool) -> Vec<(String, Span)> {
        let started = Instant::now();
        loop {
            let spans = self.spans.lock().unwrap().clone();
            if found(&spans) {
                return spans;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the spans never arrived; got {:#?}",
                spans
                    .iter()
                    .map(|(_, s)| (&s.name, hex(&s.trace_id)))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Lowercase hex, as trace and span ids are written in `traceparent`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
