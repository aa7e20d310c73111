//! The admin API: JSON over HTTP on its own listener, every call authenticated with a
//! bearer token compared in constant time. Paths and bodies are in `docs/node-api.json`.

use crate::api::{API_PREFIX, ApiError, DeployRequest};
use crate::{Node, NodeError};
use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use sha2::Digest as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime_wasi_http::WasiBody;
use wisp_trigger_http::{Peer, RequestHandler, ServerConfig};

/// Largest JSON body (a deploy with its runtime config and variables).
const MAX_JSON_BODY: usize = 4 << 20;

/// The admin API's bearer token. Only its SHA-256 is kept, and a presented token is
/// hashed and compared in constant time, so neither its length nor its bytes leak
/// through timing.
#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// A token with this text (surrounding whitespace ignored).
    pub fn new(token: &str) -> Result<Self, NodeError> {
        let token = token.trim();
        if token.len() < 16 {
            return Err(NodeError::BadRequest(
                "the admin token is too short: use at least 16 characters (a generated one has 64)"
                    .to_owned(),
            ));
        }
        Ok(Self {
            digest: sha2::Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// Reads the token from `path`.
    pub fn from_file(path: &Path) -> Result<Self, NodeError> {
        let text = std::fs::read_to_string(path).map_err(|source| NodeError::Io {
            action: "read the admin token from",
            path: path.to_path_buf(),
            source,
        })?;
        Self::new(&text)
    }

    /// The token in `<state_dir>/admin-token`, generated there (mode 0600, 32 random
    /// bytes in hex) if the file does not exist. Returns the token and its file.
    pub fn load_or_generate(state_dir: &Path) -> Result<(Self, PathBuf), NodeError> {
        let path = state_dir.join("admin-token");
        if path.exists() {
            return Ok((Self::from_file(&path)?, path));
        }
        let io = |action, source| NodeError::Io {
            action,
            path: path.clone(),
            source,
        };
        let token = random_hex().map_err(|e| io("read random bytes for", e))?;
        std::fs::create_dir_all(state_dir).map_err(|e| io("create the directory of", e))?;
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| io("create", e))?
        };
        file.write_all(token.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(|e| io("write", e))?;
        Ok((Self::new(&token)?, path))
    }

    /// Whether `presented` is the token.
    pub(crate) fn matches(&self, presented: &[u8]) -> bool {
        let presented: [u8; 32] = sha2::Sha256::digest(presented).into();
        let difference = presented
            .iter()
            .zip(self.digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(difference) == 0
    }
}

/// Serves the admin API for `node` on `listener` until `shutdown` resolves, over TLS
/// with `tls`.
pub async fn serve_admin(
    node: Node,
    token: AdminToken,
    listener: tokio::net::TcpListener,
    tls: Option<wisp_trigger_http::TlsConfig>,
    shutdown: impl Future<Output = ()>,
) {
    let config = ServerConfig {
        max_connections: 256,
        tls,
        ..node.config().server.clone()
    };
    wisp_trigger_http::serve(Arc::new(Admin { node, token }), listener, config, shutdown).await;
}

struct Admin {
    node: Node,
    token: AdminToken,
}

impl RequestHandler for Admin {
    fn handle_request(
        self: Arc<Self>,
        request: Request<hyper::body::Incoming>,
        peer: Peer,
    ) -> BoxFuture<'static, Response<WasiBody>> {
        Box::pin(async move {
            let method = request.method().clone();
            let path = request.uri().path().to_owned();
            let response = self.answer(request).await;
            let status = response.status().as_u16();
            if status == 401 {
                tracing::warn!(target: "wisp::admin", "{method} {path} from {}: refused with 401 (no or a wrong token)", peer.client);
            } else {
                tracing::info!(target: "wisp::admin", "{method} {path} {status}");
            }
            response
        })
    }
}

impl Admin {
    async fn answer(&self, request: Request<hyper::body::Incoming>) -> Response<WasiBody> {
        // The dashboard's page, script and style hold no data (its script fetches the
        // metrics and apps with the token), and a browser cannot send a bearer token when
        // it opens a page: they are the only answers without one.
        if let Some(file) = wisp_metrics::dashboard_response(&request) {
            return file.map(body);
        }
        let presented = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !presented.is_some_and(|t| self.token.matches(t.as_bytes())) {
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong admin token: send `Authorization: Bearer <token>` (the node's --admin-token-file, WISP_ADMIN_TOKEN, or <state-dir>/admin-token)",
            );
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        if path == "/metrics" {
            // Prometheus' conventional path, beside the API; the same token guards it.
            // With the worker process's, whose samples carry `process="worker"`.
            let worker = match request.method() {
                &Method::GET | &Method::HEAD => self.node.worker_metrics().await,
                _ => None,
            };
            let other = worker.as_deref().map(|text| ("worker", text));
            return wisp_metrics::metrics_response_with(self.node.metrics(), other, &request)
                .map(body);
        }
        let Some(rest) = path.strip_prefix(API_PREFIX) else {
            return error(
                StatusCode::NOT_FOUND,
                "unknown path: the API lives under /v1",
            );
        };
        let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        match (&method, segments.as_slice()) {
            (&Method::GET, ["status"]) => json(StatusCode::OK, &self.node.status()),
            (&Method::GET, ["apps"]) => json(StatusCode::OK, &self.node.list().await),
            (&Method::GET, ["apps", name]) => match self.node.get(name).await {
                Ok(info) => json(StatusCode::OK, &info),
                Err(e) => node_error(&e),
            },
            (&Method::PUT, ["apps", name]) => {
                let name = name.to_string();
                let body = match read_json::<DeployRequest>(request).await {
                    Ok(body) => body,
                    Err(response) => return response,
                };
                match self.node.deploy(&name, body).await {
                    Ok((info, true)) => json(StatusCode::CREATED, &info),
                    Ok((info, false)) => json(StatusCode::OK, &info),
                    Err(e) => {
                        tracing::warn!(target: "wisp::admin", app = %name, "refused the deploy of `{name}`: {e}");
                        node_error(&e)
                    }
                }
            }
            (&Method::DELETE, ["apps", name]) => match self.node.remove(name).await {
                Ok(()) => empty(StatusCode::NO_CONTENT),
                Err(e) => node_error(&e),
            },
            (&Method::HEAD, ["blobs", digest]) => match self.node.has_blob(digest) {
                true => empty(StatusCode::OK),
                false => empty(StatusCode::NOT_FOUND),
            },
            (&Method::PUT, ["blobs", digest]) => {
                let digest = digest.to_string();
                let body = request.into_body().into_data_stream();
                match self.node.put_blob(&digest, body).await {
                    Ok(()) => empty(StatusCode::CREATED),
                    Err(e) => node_error(&e),
                }
            }
            (_, ["status"] | ["apps"] | ["apps", _] | ["blobs", _]) => error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this path (see docs/node-api.json)",
            ),
            _ => error(
                StatusCode::NOT_FOUND,
                "unknown path (see docs/node-api.json)",
            ),
        }
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(
    request: Request<hyper::body::Incoming>,
) -> Result<T, Response<WasiBody>> {
    let bytes = Limited::new(request.into_body(), MAX_JSON_BODY)
        .collect()
        .await
        .map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the request body (at most {MAX_JSON_BODY} bytes): {e}"),
            )
        })?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            &format!("the request body is not a valid deploy request: {e}"),
        )
    })
}

fn node_error(e: &NodeError) -> Response<WasiBody> {
    let status = match e {
        NodeError::BadRequest(_) | NodeError::InvalidApp(_) => StatusCode::BAD_REQUEST,
        NodeError::NotFound(_) => StatusCode::NOT_FOUND,
        NodeError::HostTaken { .. } => StatusCode::CONFLICT,
        NodeError::Registry(_) => StatusCode::BAD_GATEWAY,
        NodeError::Store { .. } | NodeError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, &e.to_string())
}

pub(crate) fn body(bytes: impl Into<Bytes>) -> WasiBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<WasiBody> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("API types serialize");
    bytes.push(b'\n');
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body(bytes))
        .expect("static response parts are valid")
}

fn error(status: StatusCode, message: &str) -> Response<WasiBody> {
    json(
        status,
        &ApiError {
            error: message.to_owned(),
        },
    )
}

fn empty(status: StatusCode) -> Response<WasiBody> {
    Response::builder()
        .status(status)
        .body(body(Bytes::new()))
        .expect("static response parts are valid")
}

/// 32 random bytes in hex: a secret.
pub(crate) fn random_hex() -> std::io::Result<String> {
    let mut random = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut random))?;
    Ok(hex::encode(random))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_themselves() {
        let token = AdminToken::new("0123456789abcdef0123").unwrap();
        assert!(token.matches(b"0123456789abcdef0123"));
        assert!(!token.matches(b"0123456789abcdef0124"));
        assert!(!token.matches(b"0123456789abcdef012"));
        assert!(!token.matches(b""));
        assert!(AdminToken::new("short").is_err());
    }

    #[test]
    fn a_generated_token_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let (first, path) = AdminToken::load_or_generate(dir.path()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 64);
        assert!(first.matches(text.trim().as_bytes()));
        let (again, _) = AdminToken::load_or_generate(dir.path()).unwrap();
        assert_eq!(again.digest, first.digest);
    }
}
