//! Serves the files mounted at `/` (the manifest's `files`) under this component's
//! route, with a content type from the extension. `..`, absolute paths, backslashes
//! and NUL are refused before the filesystem is touched (the mount is read-only and
//! sandboxed anyway); a directory serves its `index.html`.

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;
use std::path::{Component, Path, PathBuf};

#[http_component]
fn serve(request: Request) -> anyhow::Result<impl IntoResponse> {
    // The path below the route, as the host matched it.
    let path_info = request
        .header("spin-path-info")
        .and_then(|h| h.as_str())
        .unwrap_or("/")
        .to_owned();
    let Some(relative) = safe_relative(&path_info) else {
        return Ok(text(400, "bad path\n"));
    };
    let mut file = Path::new("/").join(&relative);
    if file.is_dir() {
        file = file.join("index.html");
    }
    match std::fs::read(&file) {
        Ok(body) => Ok(Response::builder()
            .status(200)
            .header("content-type", content_type(&file))
            .body(body)
            .build()),
        Err(_) => Ok(text(404, "not found\n")),
    }
}

/// The request path as a relative path with only normal segments, or `None`.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(path)?;
    if decoded.contains('\\') || decoded.contains('\0') {
        return None;
    }
    let mut relative = PathBuf::new();
    for component in Path::new(decoded.trim_start_matches('/')).components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(relative)
}

fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn content_type(file: &Path) -> &'static str {
    let extension = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match extension.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

fn text(status: u16, body: &'static str) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(body)
        .build()
}
