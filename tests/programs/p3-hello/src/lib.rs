//! `p3-hello`: a WASI 0.3 HTTP component.
//!
//! Exports `wasi:http/handler@0.3.0`, generated with `wit-bindgen` from the
//! WIT that wasmtime-wasi-http 48 implements (vendored in `wit/`). Answers
//! `200`, `content-type: text/plain`, body `Hello from WASI 0.3 <path>\n`
//! where `<path>` is the request's path-with-query.

wit_bindgen::generate!({
    path: "wit",
    world: "wasi:http/service@0.3.0",
    generate_all,
});

use exports::wasi::http::handler::Guest;
use wasi::http::types::{ErrorCode, Fields, Request, Response};

struct P3Hello;

impl Guest for P3Hello {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query().unwrap_or_default();
        let body = format!("Hello from WASI 0.3 {path}\n").into_bytes();

        let headers = Fields::from_list(&[("content-type".into(), b"text/plain".to_vec())])
            .map_err(|e| ErrorCode::InternalError(Some(format!("building headers: {e:?}"))))?;
        let (mut body_tx, body_rx) = wit_stream::new();
        let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
        let (response, _sent) = Response::new(headers, Some(body_rx), trailers_rx);
        // Dropping the writer completes the trailers future with its default
        // value: no trailers.
        drop(trailers_tx);

        // The host reads the body only after `handle` returns the response,
        // so the body is written by a task that outlives this call.
        wit_bindgen::spawn_local(async move {
            let rest = body_tx.write_all(body).await;
            debug_assert!(rest.is_empty(), "the host stopped reading the body");
        });
        Ok(response)
    }
}

export!(P3Hello);
