//! `sandbox`: reports what the sandbox lets a guest do.
//!
//! Answers `200 text/plain` with one `probe=result` line per probe:
//!
//! ```text
//! env GREETING=<value or "unset">
//! env count=<number of environment variables>
//! file /static/hello.txt=<contents, trimmed, or "error: <msg>">
//! write /static/new.txt=<"ok" or "denied">
//! read /etc/passwd=<"ok" or "denied">
//! dir /=<sorted, comma-separated entries of the root preopen, or "error">
//! tcp 127.0.0.1:1=<"ok" or "denied">
//! ```

use std::fmt::Write as _;

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Sandbox;

fn ok_or_denied<T, E>(result: Result<T, E>) -> &'static str {
    if result.is_ok() { "ok" } else { "denied" }
}

fn root_entries() -> Result<String, std::io::Error> {
    let mut names = std::fs::read_dir("/")?
        .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<Vec<_>, _>>()?;
    names.sort();
    Ok(names.join(","))
}

impl Guest for Sandbox {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let mut report = String::new();

        let greeting = std::env::var("GREETING").unwrap_or_else(|_| "unset".into());
        let _ = writeln!(report, "env GREETING={greeting}");
        let _ = writeln!(report, "env count={}", std::env::vars_os().count());

        let file = match std::fs::read_to_string("/static/hello.txt") {
            Ok(contents) => contents.trim().to_string(),
            Err(e) => format!("error: {e}"),
        };
        let _ = writeln!(report, "file /static/hello.txt={file}");

        let write = ok_or_denied(std::fs::write("/static/new.txt", b"written by the guest\n"));
        let _ = writeln!(report, "write /static/new.txt={write}");

        let passwd = ok_or_denied(std::fs::read("/etc/passwd"));
        let _ = writeln!(report, "read /etc/passwd={passwd}");

        let dir = root_entries().unwrap_or_else(|_| "error".into());
        let _ = writeln!(report, "dir /={dir}");

        let tcp = ok_or_denied(std::net::TcpStream::connect("127.0.0.1:1"));
        let _ = writeln!(report, "tcp 127.0.0.1:1={tcp}");

        guest_common::ok_text(out, report);
    }
}

wasip2::http::proxy::export!(Sandbox);
