//! What an `http` trigger says in a LockedApp (`trigger_config`), as Spin's lock files
//! write it: the route, the component or a static response, the executor.

use crate::{full, text};
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use wasmtime_wasi_http::WasiBody;

/// Configuration of an `http` trigger, as stored in a LockedApp's `trigger_config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpTriggerConfig {
    /// Route pattern (`/exact`, `/users/:id`, `/static/...`), or `None` for a private component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Component that handles requests, unless this trigger has a static response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// A fixed response served without any component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_response: Option<StaticResponse>,
    /// Largest request body this route accepts, in bytes; `None`: the server's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_body_size: Option<u64>,
    /// How the component is called; `None`: through its `wasi:http` export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<HttpExecutor>,
}

/// How an HTTP trigger calls its component, as Spin's lock files write it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum HttpExecutor {
    /// Through its `wasi:http` export (the default; Spin's manifests call it `spin`).
    #[serde(alias = "spin")]
    Http,
    /// As a WASI command run once per request, CGI style.
    Wagi(WagiConfig),
}

/// The wagi executor's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WagiConfig {
    /// The command line, with `${SCRIPT_NAME}` and `${ARGS}` substituted per request.
    #[serde(default = "default_argv")]
    pub argv: String,
    /// Deprecated; only `_start` is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
}

/// The default command line of a wagi component: the request path, then the query's
/// `name=value` pairs.
pub const WAGI_DEFAULT_ARGV: &str = "${SCRIPT_NAME} ${ARGS}";

fn default_argv() -> String {
    WAGI_DEFAULT_ARGV.to_owned()
}

/// A response served by the host without instantiating a component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StaticResponse {
    /// HTTP status code.
    pub status_code: u16,
    /// Response headers.
    #[serde(default, skip_serializing_if = "indexmap::IndexMap::is_empty")]
    pub headers: indexmap::IndexMap<String, String>,
    /// Response body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

pub(crate) fn static_response(config: &StaticResponse) -> Response<WasiBody> {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(config.status_code).unwrap_or(StatusCode::OK));
    for (name, value) in &config.headers {
        builder = builder.header(name, value);
    }
    builder
        .body(full(config.body.clone().unwrap_or_default()))
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The executor forms of Spin's lock files (and of Wisp's own) are read.
    #[test]
    fn executors_read_as_spin_writes_them() {
        let executor = |json: serde_json::Value| {
            serde_json::from_value::<HttpTriggerConfig>(
                serde_json::json!({ "route": "/...", "component": "c", "executor": json }),
            )
            .map(|config| config.executor)
        };
        assert_eq!(
            executor(serde_json::json!({ "type": "http" })).unwrap(),
            Some(HttpExecutor::Http)
        );
        assert_eq!(
            executor(serde_json::json!({ "type": "spin" })).unwrap(),
            Some(HttpExecutor::Http)
        );
        assert_eq!(
            executor(serde_json::json!({ "type": "wagi" })).unwrap(),
            Some(HttpExecutor::Wagi(WagiConfig {
                argv: WAGI_DEFAULT_ARGV.to_owned(),
                entrypoint: None
            }))
        );
        assert_eq!(
            executor(serde_json::json!({ "type": "wagi", "argv": "${SCRIPT_NAME} x" })).unwrap(),
            Some(HttpExecutor::Wagi(WagiConfig {
                argv: "${SCRIPT_NAME} x".to_owned(),
                entrypoint: None
            }))
        );
        assert!(executor(serde_json::json!({ "type": "cgi" })).is_err());
    }
}
