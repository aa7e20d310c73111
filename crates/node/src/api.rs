//! The admin API's JSON types, shared by the node and the `wisp node` client, and the
//! OpenAPI description generated from them (checked in as `docs/node-api.json`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The API's version prefix: every path starts with it.
pub const API_PREFIX: &str = "/v1";

/// Body of `PUT /v1/apps/{name}`: deploy an app, or replace the one of that name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// Where the app comes from.
    pub source: DeploySource,
    /// Host names the app answers (`shop.example.com`, or `*.shop.example.com` for every
    /// name under it). Default: `<name>.<the node's --domain>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Values of the app's variables, ahead of any provider in `runtime_config`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// A `runtime-config.toml` for this app (stores, databases, variable providers,
    /// outbound networking). Relative paths in it are relative to the app's state
    /// directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_config: Option<String>,
    /// The app's own limits; unset ones take the node's defaults.
    #[serde(default)]
    pub limits: AppLimitsSpec,
    /// What the app was deployed from, for people reading `ls` (a path, a reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// Where a deployed app comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DeploySource {
    /// An artifact whose blobs (and manifest, as a blob) were uploaded with
    /// `PUT /v1/blobs/{digest}` first: the manifest's digest.
    Uploaded {
        /// `sha256:…` of the OCI image manifest.
        manifest: String,
    },
    /// An app in an OCI registry, pulled by the node.
    Registry {
        /// `registry/repository:tag` or `…@sha256:<digest>`.
        reference: String,
        /// Talk plain HTTP to the registry (local registries only).
        #[serde(default)]
        insecure: bool,
    },
}

/// Limits of one app.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppLimitsSpec {
    /// Linear-memory cap per instance, in MiB (at most the node's `--memory-limit-mb`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_mb: Option<u64>,
    /// Deadline of one request or event, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout_secs: Option<f64>,
    /// Most instances of the app alive at once (more requests queue on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instances: Option<u32>,
}

/// Whether an app's code is in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AppState {
    /// Deployed, nothing compiled in memory: the next request loads it.
    Idle,
    /// Being loaded for a request.
    Loading,
    /// In memory and serving.
    Loaded,
}

/// One deployed app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AppInfo {
    /// The app's name.
    pub name: String,
    /// How many times this name was deployed (1 for the first deploy).
    pub version: u64,
    /// The app's own version, from its manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    /// `sha256:…` of the app's artifact manifest: equal digests are the same app.
    pub digest: String,
    /// What it was deployed from.
    pub origin: String,
    /// Host names it answers.
    pub hosts: Vec<String>,
    /// Idle, loading or loaded.
    pub state: AppState,
    /// Requests answered by this version since the node started.
    pub requests: u64,
    /// Seconds since the last request to it, if it had one since the node started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_seconds: Option<f64>,
    /// When this version was deployed, in seconds since the Unix epoch.
    pub deployed_at: u64,
    /// The app's components.
    pub components: Vec<String>,
    /// Its trigger types (an app with event triggers stays loaded).
    pub trigger_types: Vec<String>,
    /// The app's own limits, as deployed.
    pub limits: AppLimitsSpec,
    /// The variables it was given (names only: values may be secrets).
    pub variables: Vec<String>,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeStatus {
    /// Wisp's version.
    pub wisp_version: String,
    /// Apps deployed.
    pub apps: usize,
    /// Apps in memory.
    pub loaded: usize,
    /// Where apps are served.
    pub listen: String,
    /// The domain default host names hang off.
    pub domain: String,
    /// Seconds since the node started.
    pub uptime_seconds: f64,
    /// Seconds without traffic before an app is unloaded.
    pub idle_unload_seconds: f64,
    /// The node's worker process, where an app with more requests in flight than CPUs
    /// runs while other apps are being served (absent if the node has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerStatus>,
}

/// The node's worker process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorkerStatus {
    /// Its process id while it runs (it starts on first need).
    pub pid: Option<u32>,
    /// Requests the node has forwarded to it.
    pub forwarded_requests: u64,
    /// Client connections the node handed over to it after a forwarded request (plain
    /// HTTP/1 ones): the worker serves them directly from then on.
    pub handed_off_connections: u64,
    /// Of those, how many it handed back for a request to another app (an ingress's
    /// connection carries requests for many apps).
    pub returned_connections: u64,
    /// Client connections it holds now. While it holds one of an app's, all the app's
    /// requests go to it, so the app's instances are in one process, under its cap.
    pub held_connections: u64,
    /// How many times it was started.
    pub starts: u64,
}

/// Every error answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiError {
    /// What went wrong and how to fix it (the same message `wisp up` gives).
    pub error: String,
}

/// The admin API as an OpenAPI 3.1 document, from the types above and the node's route
/// table: `docs/node-api.json` is this, and a test keeps it so.
pub fn openapi() -> serde_json::Value {
    use serde_json::json;
    // OpenAPI 3.1 schemas are JSON Schema 2020-12.
    let mut generator = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    // Each is a reference into the definitions, which hold every type they use.
    generator.subschema_for::<DeployRequest>();
    generator.subschema_for::<AppInfo>();
    generator.subschema_for::<NodeStatus>();
    generator.subschema_for::<ApiError>();
    let schemas: BTreeMap<String, serde_json::Value> =
        generator.take_definitions(true).into_iter().collect();
    let reference = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let error = |description: &str| json!({"description": description, "content": {"application/json": {"schema": reference("ApiError")}}});
    let ok = |description: &str, body: serde_json::Value| json!({"description": description, "content": {"application/json": {"schema": body}}});
    let name_param = json!([{
        "name": "name", "in": "path", "required": true,
        "description": "The app's name: lowercase letters, digits and `-`, at most 63 characters, starting with a letter or digit.",
        "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"}
    }]);
    let digest_param = json!([{
        "name": "digest", "in": "path", "required": true,
        "description": "`sha256:` and 64 lowercase hex digits.",
        "schema": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"}
    }]);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Wisp node admin API",
            "version": "1",
            "description": "Deploy, list, replace and remove the apps of a `wisp node`. Every call needs `Authorization: Bearer <token>` (see docs/node.md)."
        },
        "security": [{"bearer": []}],
        "paths": {
            "/metrics": {"get": {
                "operationId": "metrics", "summary": "Prometheus metrics of every app and the process, with the worker process's labelled process=\"worker\" (docs/observability.md).",
                "responses": {
                    "200": {"description": "The metrics.", "content": {"application/openmetrics-text; version=1.0.0; charset=utf-8": {"schema": {"type": "string"}}}},
                    "401": error("No or a wrong token.")
                }
            }},
            "/v1/status": {"get": {
                "operationId": "status", "summary": "The node's state.",
                "responses": {"200": ok("The node.", reference("NodeStatus")), "401": error("No or a wrong token.")}
            }},
            "/v1/apps": {"get": {
                "operationId": "listApps", "summary": "Every deployed app, by name.",
                "responses": {"200": ok("The apps.", json!({"type": "array", "items": reference("AppInfo")})), "401": error("No or a wrong token.")}
            }},
            "/v1/apps/{name}": {
                "get": {
                    "operationId": "getApp", "summary": "One app.", "parameters": name_param,
                    "responses": {"200": ok("The app.", reference("AppInfo")), "401": error("No or a wrong token."), "404": error("No app has that name.")}
                },
                "put": {
                    "operationId": "deployApp",
                    "summary": "Deploys an app, or replaces the one of that name atomically. Answers once the app is loaded, checked and serving; a refused app leaves the previous version serving.",
                    "parameters": name_param,
                    "requestBody": {"required": true, "content": {"application/json": {"schema": reference("DeployRequest")}}},
                    "responses": {
                        "200": ok("Replaced.", reference("AppInfo")),
                        "201": ok("Deployed.", reference("AppInfo")),
                        "400": error("The request or the app is invalid (the message is `wisp up`'s)."),
                        "401": error("No or a wrong token."),
                        "409": error("A host name belongs to another app."),
                        "502": error("The registry could not be reached or refused the pull.")
                    }
                },
                "delete": {
                    "operationId": "removeApp", "summary": "Stops and removes an app and its state.", "parameters": name_param,
                    "responses": {"204": {"description": "Removed."}, "401": error("No or a wrong token."), "404": error("No app has that name.")}
                }
            },
            "/v1/blobs/{digest}": {
                "head": {
                    "operationId": "hasBlob", "summary": "Whether the node's content store has a blob.", "parameters": digest_param,
                    "responses": {"200": {"description": "It has."}, "401": error("No or a wrong token."), "404": {"description": "It has not."}}
                },
                "put": {
                    "operationId": "putBlob", "summary": "Uploads a blob (a layer, a config or a manifest); kept only if its content matches the digest.", "parameters": digest_param,
                    "requestBody": {"required": true, "content": {"application/octet-stream": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}},
                    "responses": {"201": {"description": "Stored."}, "400": error("The content does not match the digest, or is too large."), "401": error("No or a wrong token.")}
                }
            }
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas
        }
    })
}
