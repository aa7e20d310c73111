//! A CGI program for Wisp's wagi executor: it reads the request from its environment,
//! arguments and stdin, and writes CGI headers, an empty line and the body to stdout.
//! One behaviour per `PATH_INFO`:
//!
//! - `/env`: `200 text/plain`: `args=<arg>|<arg>|...`, then one `NAME=value` line per
//!   environment variable, sorted.
//! - `/echo`: `200` with the request body, typed as the request's `CONTENT_TYPE`.
//! - `/status`: `418` with a `Status` header and a body.
//! - `/redirect`: only `Location: /moved` (so `302`).
//! - `/silent`: writes nothing.
//! - `/exit`: writes a whole response, then exits with code 3.
//! - `/panic`: panics (a trap).
//! - `/stderr`: writes `wagi wrote to stderr` to stderr, then answers `200`.
//! - anything else: `200 text/plain`, `Hello from wagi\n`.

use std::io::{Read, Write};

fn main() {
    let path = std::env::var("PATH_INFO").unwrap_or_default();
    let mut out = std::io::stdout().lock();
    match path.as_str() {
        "/env" => {
            let args: Vec<String> = std::env::args().collect();
            let mut vars: Vec<(String, String)> = std::env::vars().collect();
            vars.sort();
            let mut body = format!("args={}\n", args.join("|"));
            for (name, value) in vars {
                body.push_str(&format!("{name}={value}\n"));
            }
            write!(out, "Content-Type: text/plain\n\n{body}").unwrap();
        }
        "/echo" => {
            let mut body = Vec::new();
            std::io::stdin().read_to_end(&mut body).unwrap();
            let content_type = std::env::var("CONTENT_TYPE")
                .ok()
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "application/octet-stream".to_owned());
            write!(out, "Content-Type: {content_type}\r\n\r\n").unwrap();
            out.write_all(&body).unwrap();
        }
        "/status" => write!(
            out,
            "Status: 418 I'm a teapot\nContent-Type: text/plain\nX-Wagi: yes\n\nshort and stout\n"
        )
        .unwrap(),
        "/redirect" => write!(out, "Location: /moved\n\n").unwrap(),
        "/silent" => {}
        "/exit" => {
            write!(out, "Content-Type: text/plain\n\nabout to fail\n").unwrap();
            out.flush().unwrap();
            std::process::exit(3);
        }
        "/panic" => panic!("wagi guest asked to panic"),
        "/stderr" => {
            eprintln!("wagi wrote to stderr");
            write!(out, "Content-Type: text/plain\n\nlogged\n").unwrap();
        }
        _ => write!(out, "Content-Type: text/plain\n\nHello from wagi\n").unwrap(),
    }
}
