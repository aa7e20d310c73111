//! Counts visits per path in the `default` key-value store and answers with the
//! `greeting` variable: `GET /anything` → `Hello, visitor 3 of /anything`.
//! `DELETE /anything` resets that path's count.

use spin_sdk::http::{IntoResponse, Method, Request, Response};
use spin_sdk::http_component;
use spin_sdk::key_value::Store;

#[http_component]
fn handle(request: Request) -> anyhow::Result<impl IntoResponse> {
    let store = Store::open_default()?;
    let path = request.path().to_owned();
    let key = format!("visits:{path}");
    if *request.method() == Method::Delete {
        store.delete(&key)?;
        return Ok(Response::new(200, format!("reset {path}\n")));
    }
    // Read-modify-write is fine for a demo; use `wasi:keyvalue/atomics` increment
    // when concurrent requests must not lose counts.
    let visits = match store.get(&key)? {
        Some(bytes) => String::from_utf8(bytes)?.parse::<u64>()? + 1,
        None => 1,
    };
    store.set(&key, visits.to_string().as_bytes())?;
    let greeting = spin_sdk::variables::get("greeting")?;
    Ok(Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body(format!("{greeting}, visitor {visits} of {path}\n"))
        .build())
}
