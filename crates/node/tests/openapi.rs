//! `docs/node-api.json` is the OpenAPI description the node's types and routes generate:
//! this test fails when they drift apart. `WISP_UPDATE_OPENAPI=1 cargo test -p wisp-node
//! --test openapi` rewrites the file.

use std::path::Path;

#[test]
fn the_checked_in_openapi_document_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/node-api.json");
    let generated = serde_json::to_string_pretty(&wisp_node::api::openapi()).unwrap() + "\n";
    if std::env::var_os("WISP_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{} is out of date; run `WISP_UPDATE_OPENAPI=1 cargo test -p wisp-node --test openapi` and commit it",
        path.display()
    );
    // Every path the document names is one the admin API routes.
    let document: serde_json::Value = serde_json::from_str(&checked_in).unwrap();
    let paths: Vec<&str> = document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        paths,
        [
            "/metrics",
            "/v1/apps",
            "/v1/apps/{name}",
            "/v1/blobs/{digest}",
            "/v1/status"
        ]
    );
    for (name, schema) in document["components"]["schemas"].as_object().unwrap() {
        assert!(schema.is_object(), "schema {name}");
    }
    for name in [
        "DeployRequest",
        "AppInfo",
        "NodeStatus",
        "ApiError",
        "DeploySource",
        "AppLimitsSpec",
        "AppState",
    ] {
        assert!(
            document["components"]["schemas"].get(name).is_some(),
            "schema {name} is missing"
        );
    }
}
