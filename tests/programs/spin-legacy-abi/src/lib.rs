//! `spin-legacy-abi`: an HTTP handler written against Spin's pre-component ABI by hand,
//! with no wit-bindgen, as the wit-bindgen 0.2 C bindings of Spin's TinyGo-based Go SDK
//! (`spin-go-sdk` v2) lay it out. Built for wasm32-wasip1 only: a core module exporting
//! `handle-http-request` (ten flat parameters, a pointer to the response's return area),
//! `canonical_abi_realloc` and `canonical_abi_free`, and importing `spin-config`,
//! `wasi-outbound-http` and `key-value` as modules of their own.
//!
//! Routes (the path of the request's `uri`):
//! - `/hello`: `legacy abi: <method index> <uri>`, then one line per request header whose
//!   name starts with `x-`, then `body: <n> bytes`, then `started: <yes|no>` (whether
//!   `_start` ran first); response headers `x-legacy: yes` and
//!   `content-type: text/plain`;
//! - `/config?<key>`: `get-config(key)`, or 404 with `error <case>: <message>`;
//! - `/outbound?<url>`: `request(GET url)`, `<status> <body>` or `http-error <case>`;
//! - `/kv`: `open("default")`, `set("k", "v1")`, `get("k")`, then `get("missing")` and
//!   `open("other")`, one line each;
//! - anything else: 404 with no headers and no body.
//!
//! It also exports `handle-redis-message`, as a Go app importing the SDK's `redis` package
//! does: it prints `legacy got <payload>` to stdout, and answers the payload `fail` with
//! the `error` case.

use std::alloc::{Layout, alloc, dealloc, realloc};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by `_start`: a TinyGo command (built without `-buildmode=c-shared`) registers its
/// handlers in `init` functions, which its `_start` runs before any export is called.
static STARTED: AtomicBool = AtomicBool::new(false);

/// The command's entry point, as TinyGo exports it (Rust's cdylib exports none).
#[unsafe(export_name = "_start")]
pub extern "C" fn start() {
    STARTED.store(true, Ordering::Relaxed);
}

#[link(wasm_import_module = "spin-config")]
unsafe extern "C" {
    #[link_name = "get-config"]
    fn get_config(key: *const u8, key_len: usize, ret: *mut u8);
}

#[link(wasm_import_module = "wasi-outbound-http")]
unsafe extern "C" {
    #[link_name = "request"]
    #[allow(clippy::too_many_arguments)]
    fn outbound_request(
        method: i32,
        uri: *const u8,
        uri_len: usize,
        headers: *const u8,
        headers_len: usize,
        params: *const u8,
        params_len: usize,
        body_is_some: i32,
        body: *const u8,
        body_len: usize,
        ret: *mut u8,
    );
}

#[link(wasm_import_module = "key-value")]
unsafe extern "C" {
    #[link_name = "open"]
    fn kv_open(name: *const u8, name_len: usize, ret: *mut u8);
    #[link_name = "set"]
    fn kv_set(
        store: u32,
        key: *const u8,
        key_len: usize,
        value: *const u8,
        value_len: usize,
        ret: *mut u8,
    );
    #[link_name = "get"]
    fn kv_get(store: u32, key: *const u8, key_len: usize, ret: *mut u8);
}

/// The old ABI's allocator export: the host allocates arguments and results with it.
///
/// # Safety
/// Called by the host with a pointer it got from here (or null) and that block's size.
#[unsafe(export_name = "canonical_abi_realloc")]
pub unsafe extern "C" fn canonical_abi_realloc(
    ptr: *mut u8,
    old_size: usize,
    align: usize,
    new_size: usize,
) -> *mut u8 {
    if new_size == 0 {
        return align as *mut u8;
    }
    let grown = unsafe {
        match ptr.is_null() || old_size == 0 {
            true => alloc(Layout::from_size_align_unchecked(new_size, align)),
            false => realloc(
                ptr,
                Layout::from_size_align_unchecked(old_size, align),
                new_size,
            ),
        }
    };
    if grown.is_null() {
        std::process::abort();
    }
    grown
}

/// The old ABI's free export (the new ABI never calls it; kept as the SDKs export it).
///
/// # Safety
/// `ptr` came from `canonical_abi_realloc` with this size and alignment.
#[unsafe(export_name = "canonical_abi_free")]
pub unsafe extern "C" fn canonical_abi_free(ptr: *mut u8, size: usize, align: usize) {
    if size != 0 {
        unsafe { dealloc(ptr, Layout::from_size_align_unchecked(size, align)) }
    }
}

/// Space for one result written by the host (the largest is `request`'s, 32 bytes).
#[repr(C, align(8))]
pub struct ReturnArea([u8; 32]);

/// The response's return area: status (u16) at 0, headers option at 4 (tag, pointer,
/// length), body option at 16.
static mut RESPONSE: ReturnArea = ReturnArea([0; 32]);

/// Reads a `(pointer, length)` pair at `offset` of `area`.
fn pair(area: &ReturnArea, offset: usize) -> (*const u8, usize) {
    let word = |at: usize| u32::from_le_bytes(area.0[at..at + 4].try_into().unwrap()) as usize;
    (word(offset) as *const u8, word(offset + 4))
}

/// The bytes at `(ptr, len)`, which the host or this module allocated.
fn bytes<'a>((ptr, len): (*const u8, usize)) -> &'a [u8] {
    match len {
        0 => &[],
        _ => unsafe { std::slice::from_raw_parts(ptr, len) },
    }
}

fn string((ptr, len): (*const u8, usize)) -> String {
    String::from_utf8_lossy(bytes((ptr, len))).into_owned()
}

/// A list of `tuple<string, string>` (16 bytes each).
fn tuples((ptr, len): (*const u8, usize)) -> Vec<(String, String)> {
    let raw = bytes((ptr, len * 16));
    raw.chunks(16)
        .map(|t| {
            let word = |at: usize| u32::from_le_bytes(t[at..at + 4].try_into().unwrap()) as usize;
            (
                string((word(0) as *const u8, word(4))),
                string((word(8) as *const u8, word(12))),
            )
        })
        .collect()
}

/// Leaks `value` for the host to read after the call returns (each instance serves one
/// request, so nothing needs freeing).
fn leak<T>(value: Vec<T>) -> (u32, u32) {
    let leaked = value.leak();
    (leaked.as_ptr() as u32, leaked.len() as u32)
}

/// The HTTP handler, as `spin-http.c` exports it: the request record flattened (method,
/// uri, headers, params, option<body>), the response returned through a pointer.
#[unsafe(export_name = "handle-http-request")]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn handle_http_request(
    method: i32,
    uri: *const u8,
    uri_len: usize,
    headers: *const u8,
    headers_len: usize,
    _params: *const u8,
    _params_len: usize,
    body_is_some: i32,
    body: *const u8,
    body_len: usize,
) -> *const ReturnArea {
    let uri = string((uri, uri_len));
    let headers = tuples((headers, headers_len));
    let body = match body_is_some {
        0 => &[][..],
        _ => bytes((body, body_len)),
    };
    let (path, query) = uri.split_once('?').unwrap_or((&uri, ""));
    let (status, text, extra_headers) = match path {
        "/hello" => {
            let mut text = format!("legacy abi: {method} {uri}\n");
            let mut custom: Vec<_> = headers
                .iter()
                .filter(|(n, _)| n.starts_with("x-"))
                .collect();
            custom.sort();
            for (name, value) in custom {
                text.push_str(&format!("{name}: {value}\n"));
            }
            text.push_str(&format!("body: {} bytes\n", body.len()));
            let started = STARTED.load(Ordering::Relaxed);
            text.push_str(if started {
                "started: yes\n"
            } else {
                "started: no\n"
            });
            (200, Some(text), vec![("x-legacy", "yes")])
        }
        "/config" => match config(query) {
            Ok(value) => (200, Some(value), vec![]),
            Err(error) => (404, Some(error), vec![]),
        },
        "/outbound" => (200, Some(outbound(query)), vec![]),
        "/kv" => (200, Some(key_value()), vec![]),
        _ => (404, None, vec![]),
    };
    respond(status, text, extra_headers)
}

/// The Redis handler's return area: `result<_, error>`, the enum right after the tag.
static mut REDIS_RESULT: [u8; 2] = [0; 2];

/// The Redis handler, as `spin-redis.c` exports it.
#[unsafe(export_name = "handle-redis-message")]
pub extern "C" fn handle_redis_message(payload: *const u8, payload_len: usize) -> *const u8 {
    let payload = string((payload, payload_len));
    println!("legacy got {payload}");
    let result = match payload.as_str() {
        "fail" => [1, 1],
        _ => [0, 0],
    };
    unsafe {
        *std::ptr::addr_of_mut!(REDIS_RESULT) = result;
        std::ptr::addr_of!(REDIS_RESULT).cast()
    }
}

/// Writes the response record into its return area.
fn respond(status: u16, text: Option<String>, extra: Vec<(&str, &str)>) -> *const ReturnArea {
    let area = unsafe { &mut *std::ptr::addr_of_mut!(RESPONSE) };
    area.0 = [0; 32];
    area.0[0..2].copy_from_slice(&status.to_le_bytes());
    let mut put = |at: usize, (ptr, len): (u32, u32)| {
        area.0[at] = 1;
        area.0[at + 4..at + 8].copy_from_slice(&ptr.to_le_bytes());
        area.0[at + 8..at + 12].copy_from_slice(&len.to_le_bytes());
    };
    if let Some(text) = text {
        let mut headers: Vec<(&str, &str)> = vec![("content-type", "text/plain")];
        headers.extend(extra);
        let flat: Vec<u32> = headers
            .iter()
            .flat_map(|(name, value)| {
                [
                    name.as_ptr() as u32,
                    name.len() as u32,
                    value.as_ptr() as u32,
                    value.len() as u32,
                ]
            })
            .collect();
        put(4, (leak(flat).0, headers.len() as u32));
        put(16, leak(text.into_bytes()));
    }
    std::ptr::addr_of!(RESPONSE)
}

/// `get-config(key)`: `result<string, error>`, the error a variant of four string cases.
fn config(key: &str) -> Result<String, String> {
    let mut ret = ReturnArea([0; 32]);
    unsafe { get_config(key.as_ptr(), key.len(), ret.0.as_mut_ptr()) };
    match ret.0[0] {
        0 => Ok(string(pair(&ret, 4))),
        _ => Err(format!("error {}: {}", ret.0[4], string(pair(&ret, 8)))),
    }
}

/// `request(GET url)`: `result<response, http-error>`, the response at offset 4.
fn outbound(url: &str) -> String {
    let mut ret = ReturnArea([0; 32]);
    unsafe {
        outbound_request(
            0,
            url.as_ptr(),
            url.len(),
            std::ptr::null(),
            0,
            std::ptr::null(),
            0,
            0,
            std::ptr::null(),
            0,
            ret.0.as_mut_ptr(),
        )
    };
    if ret.0[0] != 0 {
        return format!("http-error {}", ret.0[4]);
    }
    let status = u16::from_le_bytes([ret.0[4], ret.0[5]]);
    let body = match ret.0[20] {
        0 => String::new(),
        _ => string(pair(&ret, 24)),
    };
    format!("{status} {body}")
}

/// Key-value through `u32` handles: `result<store, error>`, `result<_, error>`,
/// `result<list<u8>, error>`; the error a variant whose last case carries a string.
fn key_value() -> String {
    let error = |ret: &ReturnArea| match ret.0[4] {
        5 => format!("error io: {}", string(pair(ret, 8))),
        case => format!("error {case}"),
    };
    let open = |name: &str| {
        let mut ret = ReturnArea([0; 32]);
        unsafe { kv_open(name.as_ptr(), name.len(), ret.0.as_mut_ptr()) };
        match ret.0[0] {
            0 => Ok(u32::from_le_bytes(ret.0[4..8].try_into().unwrap())),
            _ => Err(error(&ret)),
        }
    };
    let get = |store: u32, key: &str| {
        let mut ret = ReturnArea([0; 32]);
        unsafe { kv_get(store, key.as_ptr(), key.len(), ret.0.as_mut_ptr()) };
        match ret.0[0] {
            0 => format!("ok {}", string(pair(&ret, 4))),
            _ => error(&ret),
        }
    };
    let store = match open("default") {
        Ok(store) => store,
        Err(error) => return format!("open: {error}\n"),
    };
    let mut ret = ReturnArea([0; 32]);
    let (key, value) = ("k", "v1");
    unsafe {
        kv_set(
            store,
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
            ret.0.as_mut_ptr(),
        )
    };
    let set = match ret.0[0] {
        0 => "ok".to_owned(),
        _ => error(&ret),
    };
    format!(
        "set: {set}\nget: {}\nget missing: {}\nopen other: {}\n",
        get(store, "k"),
        get(store, "missing"),
        open("other").map_or_else(|e| e, |s| format!("ok {s}")),
    )
}
