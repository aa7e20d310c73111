//! Push and pull against a real registry: Debian's `docker-registry` (distribution v2),
//! started on loopback by each test, with htpasswd basic auth where a test needs it.
//!
//! Needs `docker-registry` and `apache2-utils` (`htpasswd`):
//! `apt-get install -y docker-registry apache2-utils`. A missing binary fails the test.

use serde_json::{Value, json};
use std::process::Command;
use wisp_oci::{
    AuthStore, Cache, ClientOptions, CredentialSource, CredentialStores, OciError, Reference,
    RegistryClient, login_with_store, pull, push,
};
use wisp_test_registry::{INSTALL_HINT, Registry};

/// A reference to `repo_and_tag` in a test registry.
trait ReferenceIn {
    fn reference(&self, repo_and_tag: &str) -> Reference;
}

impl ReferenceIn for Registry {
    fn reference(&self, repo_and_tag: &str) -> Reference {
        format!("{}/{repo_and_tag}", self.host).parse().unwrap()
    }
}

fn anonymous_client() -> RegistryClient {
    RegistryClient::new(ClientOptions {
        insecure: true,
        credentials: CredentialSource::Anonymous,
    })
    .unwrap()
}

/// An app with three components, two sharing `hello.wasm`, and static files: one large
/// (a data layer) and one small (inlined), mounted into two components.
struct TestApp {
    _dir: tempfile::TempDir,
    locked: wisp_app::LockedApp,
}

const BIG_FILE_LEN: usize = 1000;

fn test_app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(wisp_test_programs::HELLO, dir.path().join("hello.wasm")).unwrap();
    std::fs::copy(wisp_test_programs::ECHO, dir.path().join("echo.wasm")).unwrap();
    std::fs::create_dir(dir.path().join("static")).unwrap();
    std::fs::write(dir.path().join("static/big.txt"), big_content()).unwrap();
    // 5 bytes: base64 needs padding, which Spin leaves out.
    std::fs::write(dir.path().join("static/small.txt"), "small").unwrap();
    let manifest = r#"
spin_manifest_version = 2
[application]
name = "oci-demo"
version = "1.2.3"
authors = ["Wisp Tests"]
description = "pushed by the wisp-oci tests"
[variables]
greeting = { default = "hi" }
[[trigger.http]]
route = "/hello"
component = "hello"
[[trigger.http]]
route = "/again"
component = "hello-again"
[[trigger.http]]
route = "/echo/..."
component = "echo"
max_request_body_size = 1024
[component.hello]
source = "hello.wasm"
[component.hello-again]
source = "hello.wasm"
files = ["static/*"]
[component.echo]
source = "echo.wasm"
files = [{ source = "static", destination = "/assets" }]
environment = { MODE = "test" }
allowed_outbound_hosts = ["https://example.com"]
variables = { message = "{{ greeting }} there" }
"#;
    let path = dir.path().join("spin.toml");
    std::fs::write(&path, manifest).unwrap();
    let manifest = wisp_manifest::parse_file(&path).unwrap();
    let locked = wisp_app::resolve(&manifest, &path).unwrap();
    TestApp { _dir: dir, locked }
}

fn big_content() -> Vec<u8> {
    (0..BIG_FILE_LEN).map(|i| b'a' + (i % 26) as u8).collect()
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn get_manifest(registry: &Registry, repo: &str, tag: &str) -> Value {
    let url = format!("http://{}/v2/{repo}/manifests/{tag}", registry.host);
    let response = http()
        .get(url)
        .header("accept", wisp_oci::OCI_MANIFEST_MEDIA_TYPE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn get_blob(registry: &Registry, repo: &str, digest: &str) -> Vec<u8> {
    let url = format!("http://{}/v2/{repo}/blobs/{digest}", registry.host);
    let response = http().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap().to_vec()
}

/// Uploads a blob with plain HTTP (monolithic upload), returning its digest.
async fn put_blob(registry: &Registry, repo: &str, bytes: &[u8]) -> String {
    let digest = wisp_app::sha256_digest(bytes);
    let client = http();
    let response = client
        .post(format!("http://{}/v2/{repo}/blobs/uploads/", registry.host))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let location = if location.starts_with('/') {
        format!("http://{}{location}", registry.host)
    } else {
        location
    };
    let separator = if location.contains('?') { '&' } else { '?' };
    let response = client
        .put(format!("{location}{separator}digest={digest}"))
        .header("content-type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    digest
}

async fn put_manifest(registry: &Registry, repo: &str, tag: &str, manifest: &Value) -> String {
    let body = serde_json::to_vec(manifest).unwrap();
    let response = http()
        .put(format!(
            "http://{}/v2/{repo}/manifests/{tag}",
            registry.host
        ))
        .header("content-type", wisp_oci::OCI_MANIFEST_MEDIA_TYPE)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    wisp_app::sha256_digest(&body)
}

fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({
        "mediaType": media_type,
        "digest": wisp_app::sha256_digest(bytes),
        "size": bytes.len(),
    })
}

/// Builds and uploads, by hand, an artifact in Spin's layout: `layers` (media type, bytes)
/// plus the locked app JSON and an image config labelled with its digest.
async fn push_by_hand(
    registry: &Registry,
    repo: &str,
    tag: &str,
    layers: &[(&str, Vec<u8>)],
    locked: &Value,
) -> String {
    let locked = serde_json::to_vec(locked).unwrap();
    let locked_digest = put_blob(registry, repo, &locked).await;
    let config = serde_json::to_vec(&json!({
        "architecture": "wasm",
        "os": "wasip1",
        "config": { "Labels": { "com.fermyon.spin.lockedAppDigest": locked_digest } },
        "rootfs": { "type": "layers", "diff_ids": [] },
    }))
    .unwrap();
    put_blob(registry, repo, &config).await;
    let mut descriptors = Vec::new();
    for (media_type, bytes) in layers {
        put_blob(registry, repo, bytes).await;
        descriptors.push(descriptor(media_type, bytes));
    }
    descriptors.push(descriptor(wisp_oci::SPIN_APPLICATION_MEDIA_TYPE, &locked));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": wisp_oci::OCI_MANIFEST_MEDIA_TYPE,
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": descriptors,
    });
    put_manifest(registry, repo, tag, &manifest).await
}

fn assert_same_app(pulled: &wisp_app::LockedApp, original: &wisp_app::LockedApp, cache: &Cache) {
    assert_eq!(pulled.metadata.name, original.metadata.name);
    assert_eq!(pulled.metadata.version, original.metadata.version);
    assert_eq!(pulled.metadata.authors, original.metadata.authors);
    assert_eq!(pulled.metadata.origin, None);
    assert_eq!(pulled.variables, original.variables);
    assert_eq!(pulled.triggers, original.triggers);
    assert_eq!(pulled.components.len(), original.components.len());
    for (p, o) in pulled.components.iter().zip(&original.components) {
        assert_eq!(p.id, o.id);
        assert_eq!(p.metadata, o.metadata);
        assert_eq!(p.env, o.env);
        assert_eq!(p.config, o.config);
        assert_eq!(p.source.digest, o.source.digest);
        assert!(
            p.source.path.starts_with(cache.root()),
            "{:?}",
            p.source.path
        );
        assert_eq!(
            std::fs::read(&p.source.path).unwrap(),
            std::fs::read(&o.source.path).unwrap(),
            "component {} source differs",
            p.id
        );
        let paths = |c: &wisp_app::LockedComponent| {
            c.files.iter().map(|f| f.path.clone()).collect::<Vec<_>>()
        };
        assert_eq!(paths(p), paths(o), "component {} files differ", p.id);
        for (pf, of) in p.files.iter().zip(&o.files) {
            assert!(pf.source.starts_with(cache.root()), "{:?}", pf.source);
            assert_eq!(
                std::fs::read(&pf.source).unwrap(),
                std::fs::read(&of.source).unwrap(),
                "file {} differs",
                pf.path
            );
        }
    }
}

#[tokio::test]
async fn push_then_pull_round_trips_in_spins_layout() {
    let registry = Registry::start();
    let app = test_app();
    let client = anonymous_client();
    let reference = registry.reference("demo:v1");

    let pushed = push(&client, &app.locked, &reference).await.unwrap();
    // hello.wasm (shared by two components), echo.wasm, big.txt, the locked app, the config.
    assert_eq!(pushed.uploaded_blobs, 5, "{pushed:?}");
    assert_eq!(pushed.skipped_blobs, 0);

    let manifest = get_manifest(&registry, "demo", "v1").await;
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], wisp_oci::OCI_MANIFEST_MEDIA_TYPE);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.title"],
        "oci-demo"
    );
    let layers = manifest["layers"].as_array().unwrap();
    let types: Vec<&str> = layers
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            wisp_oci::WASM_LAYER_MEDIA_TYPE,
            wisp_oci::WASM_LAYER_MEDIA_TYPE,
            wisp_oci::DATA_LAYER_MEDIA_TYPE,
            wisp_oci::SPIN_APPLICATION_MEDIA_TYPE,
        ],
        "{manifest:#}"
    );
    let hello_digest = wisp_app::sha256_digest(&std::fs::read(wisp_test_programs::HELLO).unwrap());
    let echo_digest = wisp_app::sha256_digest(&std::fs::read(wisp_test_programs::ECHO).unwrap());
    let big_digest = wisp_app::sha256_digest(&big_content());
    assert_eq!(layers[0]["digest"], hello_digest.as_str());
    assert_eq!(layers[1]["digest"], echo_digest.as_str());
    assert_eq!(layers[2]["digest"], big_digest.as_str());
    let locked_digest = layers[3]["digest"].as_str().unwrap();

    let config: Value = serde_json::from_slice(
        &get_blob(
            &registry,
            "demo",
            manifest["config"]["digest"].as_str().unwrap(),
        )
        .await,
    )
    .unwrap();
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(config["os"], "wasip1");
    assert_eq!(
        config["config"]["Labels"]["com.fermyon.spin.lockedAppDigest"],
        locked_digest
    );
    assert_eq!(config["rootfs"]["type"], "layers");

    let locked: Value =
        serde_json::from_slice(&get_blob(&registry, "demo", locked_digest).await).unwrap();
    assert_eq!(
        locked["components"][0]["source"],
        json!({ "content_type": "application/wasm", "digest": hello_digest })
    );
    assert!(locked["metadata"].get("origin").is_none(), "{locked:#}");
    let echo_files = locked["components"][2]["files"].as_array().unwrap();
    assert_eq!(
        echo_files[0],
        json!({ "digest": big_digest, "path": "assets/big.txt" })
    );
    assert_eq!(echo_files[1]["path"], "assets/small.txt");
    assert_eq!(echo_files[1]["inline"], "c21hbGw"); // "small", unpadded as Spin writes it
    // What Spin needs to run the artifact: lock version 0, its trigger options in the
    // metadata, Spin's trigger ids, and nothing it does not know in an HTTP trigger.
    assert_eq!(locked["spin_lock_version"], 0, "{locked:#}");
    assert_eq!(locked["metadata"]["triggers"], json!({}), "{locked:#}");
    assert_eq!(locked["metadata"]["trigger"], json!({ "type": "http" }));
    let ids: Vec<&str> = locked["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "hello-http-trigger",
            "hello-again-http-trigger",
            "echo-http-trigger"
        ]
    );
    assert_eq!(
        locked["triggers"][2]["trigger_config"],
        json!({ "route": "/echo/...", "component": "echo" })
    );
    assert_eq!(
        locked["metadata"]["wisp_max_request_body_size"],
        json!({ "echo-http-trigger": 1024 })
    );

    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_dir.path());
    let pulled = pull(&client, &reference, &cache).await.unwrap();
    assert_eq!(pulled.digest, pushed.digest);
    assert_same_app(&pulled.locked, &app.locked, &cache);
    assert!(cache.has_blob(&hello_digest));

    // Pinned by digest, the same app comes back.
    let pinned = registry.reference(&format!("demo@{}", pushed.digest));
    let again = pull(
        &client,
        &pinned,
        &Cache::new(cache_dir.path().join("other")),
    )
    .await
    .unwrap();
    assert_eq!(again.digest, pushed.digest);
    assert_eq!(again.locked.components.len(), 3);
}

#[tokio::test]
async fn a_second_push_of_an_unchanged_app_uploads_nothing() {
    let registry = Registry::start();
    let app = test_app();
    let client = anonymous_client();
    let first = push(&client, &app.locked, &registry.reference("demo:v1"))
        .await
        .unwrap();
    let second = push(&client, &app.locked, &registry.reference("demo:v2"))
        .await
        .unwrap();
    assert_eq!(second.uploaded_blobs, 0, "{second:?}");
    assert_eq!(second.skipped_blobs, first.uploaded_blobs);
    assert_eq!(second.digest, first.digest, "pushes are reproducible");

    // Progress events report each skipped blob.
    let events = std::sync::Mutex::new(Vec::new());
    let third =
        wisp_oci::push_with_progress(&client, &app.locked, &registry.reference("demo:v3"), &|e| {
            events.lock().unwrap().push(e)
        })
        .await
        .unwrap();
    assert_eq!(third.uploaded_blobs, 0);
    let events = events.into_inner().unwrap();
    assert_eq!(events.len(), 5, "{events:?}");
    assert!(
        events
            .iter()
            .all(|e| matches!(e, wisp_oci::ProgressEvent::Skipped { .. }))
    );
}

#[tokio::test]
async fn basic_auth_needs_a_login() {
    let registry = Registry::start_with_auth("wisp", "s3cret");
    let app = test_app();
    let store_dir = tempfile::tempdir().unwrap();
    let store_path = store_dir.path().join("registry-auth.json");
    let client_with_stores = || {
        RegistryClient::new(ClientOptions {
            insecure: true,
            credentials: CredentialSource::Stores(CredentialStores::wisp_only(&store_path)),
        })
        .unwrap()
    };
    let reference = registry.reference("private/app:v1");

    let err = push(&client_with_stores(), &app.locked, &reference)
        .await
        .unwrap_err();
    assert!(matches!(err, OciError::Unauthorized { .. }), "{err:?}");
    eprintln!("push without credentials: {err}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("run `wisp registry login {}`", registry.host)),
        "{message}"
    );

    let store = AuthStore::new(&store_path);
    let err = login_with_store(&store, &registry.host, "wisp", "wrong", true)
        .await
        .unwrap_err();
    assert!(matches!(err, OciError::LoginFailed { .. }), "{err:?}");
    eprintln!("login with a wrong password: {err}");
    assert!(err.to_string().contains("user name or password"), "{err}");
    assert!(!store_path.exists(), "a failed login stores nothing");

    login_with_store(&store, &registry.host, "wisp", "s3cret", true)
        .await
        .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&store_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let client = client_with_stores();
    let pushed = push(&client, &app.locked, &reference).await.unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let pulled = pull(&client, &reference, &Cache::new(cache_dir.path()))
        .await
        .unwrap();
    assert_eq!(pulled.digest, pushed.digest);

    // Explicit credentials work too; anonymous pulls are refused.
    let err = pull(
        &anonymous_client(),
        &reference,
        &Cache::new(cache_dir.path().join("anon")),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, OciError::Unauthorized { .. }), "{err:?}");
    let basic = RegistryClient::new(ClientOptions {
        insecure: true,
        credentials: CredentialSource::Basic {
            username: "wisp".to_owned(),
            password: "s3cret".to_owned(),
        },
    })
    .unwrap();
    pull(
        &basic,
        &reference,
        &Cache::new(cache_dir.path().join("basic")),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_tampered_blob_is_refused_naming_the_layer() {
    let registry = Registry::start();
    let app = test_app();
    let client = anonymous_client();
    let reference = registry.reference("demo:v1");
    push(&client, &app.locked, &reference).await.unwrap();

    // Flip bytes of echo.wasm inside the registry's storage, keeping its length.
    let echo_digest = wisp_app::sha256_digest(&std::fs::read(wisp_test_programs::ECHO).unwrap());
    let data = registry.blob_data(&echo_digest);
    let mut bytes = std::fs::read(&data).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    bytes[last / 2] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();

    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_dir.path());
    let err = pull(&client, &reference, &cache).await.unwrap_err();
    assert!(matches!(err, OciError::DigestMismatch { .. }), "{err:?}");
    eprintln!("tampered blob: {err}");
    assert!(err.to_string().contains(&echo_digest), "{err}");
    assert!(
        !cache.has_blob(&echo_digest),
        "a tampered blob is never cached"
    );
}

#[tokio::test]
async fn a_hand_built_spin_artifact_pulls_and_runs() {
    let registry = Registry::start();
    let wasm = std::fs::read(wisp_test_programs::HELLO).unwrap();
    let data = vec![b'd'; 300];
    let tiny = b"tiny".to_vec();
    // As `spin registry push` writes it: version 0, relative file paths, inline small files,
    // a private route as an object, fields Wisp does not know.
    let locked = json!({
        "spin_lock_version": 0,
        "metadata": { "name": "handmade", "version": "0.1.0", "trigger": { "type": "http" }, "triggers": {} },
        "variables": { "who": { "default": "world", "description": "who to greet" } },
        "triggers": [
            { "id": "trigger-hello", "trigger_type": "http",
              "trigger_config": { "route": "/...", "component": "hello" } },
            { "id": "trigger-hidden", "trigger_type": "http",
              "trigger_config": { "route": { "private": true }, "component": "hidden" } }
        ],
        "components": [
            {
                "id": "hello",
                "metadata": { "allowed_outbound_hosts": [], "key_value_stores": ["default"] },
                "source": { "content_type": "application/wasm", "digest": wisp_app::sha256_digest(&wasm) },
                "env": { "GREETING": "hi" },
                "files": [
                    { "digest": wisp_app::sha256_digest(&data), "path": "static/data.txt" },
                    { "digest": wisp_app::sha256_digest(&tiny), "inline": "dGlueQ", "path": "tiny.txt" },
                    // Padded, as Wisp wrote it before: still read.
                    { "digest": wisp_app::sha256_digest(b"ab"), "inline": "YWI=", "path": "ab.txt" }
                ],
                "config": { "who": "{{ who }}" }
            },
            {
                "id": "hidden",
                "source": { "content_type": "application/wasm", "digest": wisp_app::sha256_digest(&wasm) }
            }
        ]
    });
    let digest = push_by_hand(
        &registry,
        "handmade",
        "v1",
        &[
            (wisp_oci::WASM_LAYER_MEDIA_TYPE, wasm.clone()),
            (wisp_oci::DATA_LAYER_MEDIA_TYPE, data.clone()),
        ],
        &locked,
    )
    .await;

    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_dir.path());
    let pulled = pull(
        &anonymous_client(),
        &registry.reference("handmade:v1"),
        &cache,
    )
    .await
    .unwrap();
    assert_eq!(pulled.digest, digest);
    let app = pulled.locked;
    assert_eq!(app.spin_lock_version, wisp_app::LOCKED_APP_VERSION);
    assert_eq!(app.metadata.name, "handmade");
    assert_eq!(app.variables["who"].default.as_deref(), Some("world"));
    let http = app
        .triggers_of::<wisp_trigger_http::HttpTriggerConfig>("http")
        .unwrap();
    assert_eq!(http[0].1.route.as_deref(), Some("/..."));
    assert_eq!(http[1].1.route, None, "private route");
    let hello = app.component("hello").unwrap();
    assert_eq!(hello.metadata.key_value_stores, ["default"]);
    assert_eq!(hello.env["GREETING"], "hi");
    assert_eq!(hello.config["who"], "{{ who }}");
    assert_eq!(std::fs::read(&hello.source.path).unwrap(), wasm);
    let files: Vec<(&str, Vec<u8>)> = hello
        .files
        .iter()
        .map(|f| (f.path.as_str(), std::fs::read(&f.source).unwrap()))
        .collect();
    assert_eq!(
        files,
        [
            ("/static/data.txt", data),
            ("/tiny.txt", tiny),
            ("/ab.txt", b"ab".to_vec())
        ]
    );
    assert_eq!(
        app.component("hidden").unwrap().source.path,
        hello.source.path
    );

    // And it runs: the pulled app goes through the same load path as a local one.
    let response = serve_once(app, "/hello").await;
    assert_eq!(response, (200, "Hello from Wisp\n".to_owned()));
}

/// Loads `app` into a fresh engine and answers one GET of `path` in-process.
async fn serve_once(app: wisp_app::LockedApp, path: &str) -> (u16, String) {
    use http_body_util::BodyExt;
    let engine = wisp_engine::WispEngine::new(wisp_engine::EngineConfig {
        max_instances: 4,
        cache_dir: None,
        ..wisp_engine::EngineConfig::default()
    })
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let settings = wisp_runtime::AppSettings {
        runtime_config: wisp_host::RuntimeConfig::default(),
        paths: wisp_host::AppPaths {
            state_dir: state.path().to_path_buf(),
            app_dir: None,
            files_dir: None,
        },
        limits: Default::default(),
    };
    let generation = wisp_runtime::Runtime::new(engine)
        .load(app, &settings)
        .await
        .unwrap();
    let trigger = generation.http().expect("the app serves HTTP");
    let request = http::Request::builder()
        .uri(format!("http://localhost{path}"))
        .body(
            http_body_util::Empty::new()
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .unwrap();
    let response = trigger
        .handle(request, "127.0.0.1:1".parse().unwrap())
        .await;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_single_wasm_layer_artifact_is_a_one_component_app() {
    let registry = Registry::start();
    let wasm = std::fs::read(wisp_test_programs::HELLO).unwrap();
    // As `wkg oci push` writes it.
    let config = serde_json::to_vec(&json!({
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [wisp_app::sha256_digest(&wasm)],
    }))
    .unwrap();
    put_blob(&registry, "tools/hello-wkg", &config).await;
    put_blob(&registry, "tools/hello-wkg", &wasm).await;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": wisp_oci::OCI_MANIFEST_MEDIA_TYPE,
        "config": descriptor("application/vnd.wasm.config.v0+json", &config),
        "layers": [descriptor("application/wasm", &wasm)],
    });
    put_manifest(&registry, "tools/hello-wkg", "1.0.0", &manifest).await;

    let cache_dir = tempfile::tempdir().unwrap();
    let pulled = pull(
        &anonymous_client(),
        &registry.reference("tools/hello-wkg:1.0.0"),
        &Cache::new(cache_dir.path()),
    )
    .await
    .unwrap();
    let app = pulled.locked;
    assert_eq!(app.components.len(), 1);
    let component = &app.components[0];
    assert_eq!(component.id, "hello-wkg");
    assert_eq!(std::fs::read(&component.source.path).unwrap(), wasm);
    let http = app
        .triggers_of::<wisp_trigger_http::HttpTriggerConfig>("http")
        .unwrap();
    assert_eq!(http.len(), 1);
    assert_eq!(http[0].1.route.as_deref(), Some("/..."));
    assert_eq!(http[0].1.component.as_deref(), Some("hello-wkg"));
}

#[tokio::test]
async fn path_traversal_in_an_artifact_is_refused() {
    let registry = Registry::start();
    let wasm = std::fs::read(wisp_test_programs::HELLO).unwrap();
    let data = vec![b'x'; 200];
    for (tag, path) in [("dotdot", "../../etc/x"), ("absolute", "/etc/x")] {
        let locked = json!({
            "spin_lock_version": 1,
            "metadata": { "name": "evil" },
            "triggers": [{ "id": "t", "trigger_type": "http",
                           "trigger_config": { "route": "/...", "component": "evil" } }],
            "components": [{
                "id": "evil",
                "source": { "content_type": "application/wasm", "digest": wisp_app::sha256_digest(&wasm) },
                "files": [{ "digest": wisp_app::sha256_digest(&data), "path": path }]
            }]
        });
        push_by_hand(
            &registry,
            "evil",
            tag,
            &[
                (wisp_oci::WASM_LAYER_MEDIA_TYPE, wasm.clone()),
                (wisp_oci::DATA_LAYER_MEDIA_TYPE, data.clone()),
            ],
            &locked,
        )
        .await;
        let cache_dir = tempfile::tempdir().unwrap();
        let err = pull(
            &anonymous_client(),
            &registry.reference(&format!("evil:{tag}")),
            &Cache::new(cache_dir.path()),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, OciError::UnsafePath { .. }), "{err:?}");
        eprintln!("traversal: {err}");
        assert!(err.to_string().contains(path), "{err}");
    }
}

#[tokio::test]
async fn component_ids_that_are_not_plain_names_are_refused() {
    // The engine stages a component's files in a directory named after its id: an
    // artifact must not be able to name `..` or an absolute path there.
    let registry = Registry::start();
    let wasm = std::fs::read(wisp_test_programs::HELLO).unwrap();
    let data = vec![b'x'; 200];
    for (tag, id) in [
        ("dotdot", "../../x"),
        ("absolute", "/tmp/wisp-evil"),
        ("upper", "Evil"),
    ] {
        let locked = json!({
            "spin_lock_version": 1,
            "metadata": { "name": "evil" },
            "triggers": [{ "id": "t", "trigger_type": "http",
                           "trigger_config": { "route": "/...", "component": id } }],
            "components": [{
                "id": id,
                "source": { "content_type": "application/wasm", "digest": wisp_app::sha256_digest(&wasm) },
                "files": [{ "digest": wisp_app::sha256_digest(&data), "path": "static/x.txt" }]
            }]
        });
        push_by_hand(
            &registry,
            "evil-id",
            tag,
            &[
                (wisp_oci::WASM_LAYER_MEDIA_TYPE, wasm.clone()),
                (wisp_oci::DATA_LAYER_MEDIA_TYPE, data.clone()),
            ],
            &locked,
        )
        .await;
        let cache_dir = tempfile::tempdir().unwrap();
        let err = pull(
            &anonymous_client(),
            &registry.reference(&format!("evil-id:{tag}")),
            &Cache::new(cache_dir.path()),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("kebab-case"), "{id}: {err}");
    }
}

#[tokio::test]
async fn a_private_component_is_written_the_way_spin_reads_it() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(wisp_test_programs::HELLO, dir.path().join("hello.wasm")).unwrap();
    let manifest_path = dir.path().join("spin.toml");
    std::fs::write(
        &manifest_path,
        "spin_manifest_version = 2\n[application]\nname = \"private\"\n[[trigger.http]]\nroute = { private = true }\ncomponent = \"hidden\"\n[component.hidden]\nsource = \"hello.wasm\"\n",
    )
    .unwrap();
    let manifest = wisp_manifest::parse_file(&manifest_path).unwrap();
    let locked = wisp_app::resolve(&manifest, &manifest_path).unwrap();
    let client = anonymous_client();
    push(&client, &locked, &registry.reference("private:v1"))
        .await
        .unwrap();
    // Spin requires `route` and writes a private one as `{"private": true}`.
    let manifest = get_manifest(&registry, "private", "v1").await;
    let locked_layer = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["mediaType"] == wisp_oci::SPIN_APPLICATION_MEDIA_TYPE)
        .unwrap();
    let locked_json = get_blob(
        &registry,
        "private",
        locked_layer["digest"].as_str().unwrap(),
    )
    .await;
    let locked_json: Value = serde_json::from_slice(&locked_json).unwrap();
    assert_eq!(
        locked_json["triggers"][0]["trigger_config"]["route"],
        json!({ "private": true }),
        "{locked_json}"
    );
    // And Wisp reads it back as private.
    let cache_dir = tempfile::tempdir().unwrap();
    let pulled = pull(
        &client,
        &registry.reference("private:v1"),
        &Cache::new(cache_dir.path()),
    )
    .await
    .unwrap();
    let triggers = pulled
        .locked
        .triggers_of::<wisp_trigger_http::HttpTriggerConfig>("http")
        .unwrap();
    assert_eq!(triggers[0].1.route, None);
}

#[tokio::test]
async fn a_damaged_cached_blob_is_fetched_again() {
    let registry = Registry::start();
    let app = test_app();
    let client = anonymous_client();
    push(&client, &app.locked, &registry.reference("damaged:v1"))
        .await
        .unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_dir.path());
    let first = pull(&client, &registry.reference("damaged:v1"), &cache)
        .await
        .unwrap();
    let source = &first.locked.components[0].source;
    let cached = cache.blob_path(&source.digest).unwrap();
    let good = std::fs::read(&cached).unwrap();
    // As if a crash had cut the file short.
    std::fs::write(&cached, &good[..good.len() / 2]).unwrap();
    let again = pull(&client, &registry.reference("damaged:v1"), &cache)
        .await
        .unwrap();
    assert_eq!(again.digest, first.digest);
    assert_eq!(std::fs::read(&cached).unwrap(), good);
}

#[tokio::test]
async fn a_pinned_digest_pulls_from_the_cache_without_the_registry() {
    let mut registry = Registry::start();
    let app = test_app();
    let client = anonymous_client();
    let pushed = push(&client, &app.locked, &registry.reference("demo:v1"))
        .await
        .unwrap();
    let pinned = registry.reference(&format!("demo@{}", pushed.digest));
    let tagged = registry.reference("demo:v1");
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_dir.path());
    let first = pull(&client, &pinned, &cache).await.unwrap();
    assert!(cache.lookup(&pinned).await.unwrap().is_some());
    assert!(
        cache.lookup(&tagged).await.unwrap().is_none(),
        "tags always ask the registry"
    );

    registry.stop();
    let second = pull(&client, &pinned, &cache).await.unwrap();
    assert_eq!(second, first);
    assert_same_app(&second.locked, &app.locked, &cache);

    let err = pull(&client, &tagged, &cache).await.unwrap_err();
    assert!(matches!(err, OciError::Registry { .. }), "{err:?}");
    eprintln!("tag with the registry stopped: {err}");
    assert!(err.to_string().contains("registry is running"), "{err}");
}

#[tokio::test]
async fn many_files_fall_back_to_an_archive_layer() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(wisp_test_programs::HELLO, dir.path().join("hello.wasm")).unwrap();
    std::fs::create_dir(dir.path().join("static")).unwrap();
    for i in 0..520 {
        // Distinct and over the inline threshold, so each would be its own layer.
        let content = format!("{i:04}{}", "-".repeat(200));
        std::fs::write(dir.path().join(format!("static/{i:04}.txt")), content).unwrap();
    }
    let manifest_path = dir.path().join("spin.toml");
    std::fs::write(
        &manifest_path,
        r#"
spin_manifest_version = 2
[application]
name = "many"
[[trigger.http]]
route = "/..."
component = "many"
[component.many]
source = "hello.wasm"
files = ["static/*"]
"#,
    )
    .unwrap();
    let locked = wisp_app::resolve(
        &wisp_manifest::parse_file(&manifest_path).unwrap(),
        &manifest_path,
    )
    .unwrap();
    assert_eq!(locked.components[0].files.len(), 520);

    let client = anonymous_client();
    let reference = registry.reference("many:v1");
    let pushed = push(&client, &locked, &reference).await.unwrap();
    let manifest = get_manifest(&registry, "many", "v1").await;
    let types: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            wisp_oci::WASM_LAYER_MEDIA_TYPE,
            wisp_oci::ARCHIVE_LAYER_MEDIA_TYPE,
            wisp_oci::SPIN_APPLICATION_MEDIA_TYPE,
        ]
    );
    let again = push(&client, &locked, &reference).await.unwrap();
    assert_eq!(again.uploaded_blobs, 0, "archives are reproducible");
    assert_eq!(again.digest, pushed.digest);

    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_dir.path());
    let pulled = pull(&client, &reference, &cache).await.unwrap();
    assert_same_app(&pulled.locked, &locked, &cache);
}

#[test]
fn registry_binaries_are_installed() {
    // A clear failure (never a skip) when the test registry cannot run.
    for (binary, arg) in [("docker-registry", "--version"), ("htpasswd", "-h")] {
        Command::new(binary)
            .arg(arg)
            .output()
            .unwrap_or_else(|e| panic!("cannot run `{binary}` ({e}); {INSTALL_HINT}"));
    }
}

#[tokio::test]
async fn a_non_wasm_component_is_refused() {
    let registry = Registry::start();
    // What a precompiled (native) artifact looks like: never loaded from a registry.
    let native = b"\x7fELF\x02\x01\x01\0precompiled code".to_vec();
    let locked = json!({
        "spin_lock_version": 1,
        "metadata": { "name": "native" },
        "triggers": [{ "id": "t", "trigger_type": "http",
                       "trigger_config": { "route": "/...", "component": "native" } }],
        "components": [{
            "id": "native",
            "source": { "content_type": "application/wasm", "digest": wisp_app::sha256_digest(&native) }
        }]
    });
    push_by_hand(
        &registry,
        "native",
        "v1",
        &[(wisp_oci::WASM_LAYER_MEDIA_TYPE, native)],
        &locked,
    )
    .await;
    let cache_dir = tempfile::tempdir().unwrap();
    let err = pull(
        &anonymous_client(),
        &registry.reference("native:v1"),
        &Cache::new(cache_dir.path()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, OciError::NotWasm { .. }), "{err:?}");
    eprintln!("native component: {err}");
}

#[tokio::test]
async fn annotations_given_at_push_win_over_the_derived_ones() {
    let registry = Registry::start();
    let app = test_app();
    let reference = registry.reference("annotated:v1");
    let extra = std::collections::BTreeMap::from([
        (
            "org.opencontainers.image.title".to_owned(),
            "custom".to_owned(),
        ),
        ("com.example.team".to_owned(), "web".to_owned()),
    ]);
    wisp_oci::push_annotated(
        &anonymous_client(),
        &app.locked,
        &reference,
        &extra,
        &|_| {},
    )
    .await
    .unwrap();
    let manifest = get_manifest(&registry, "annotated", "v1").await;
    let annotations = &manifest["annotations"];
    assert_eq!(annotations["org.opencontainers.image.title"], "custom");
    assert_eq!(annotations["com.example.team"], "web");
    assert_eq!(annotations["org.opencontainers.image.version"], "1.2.3");
}

/// Uploads `wasm` as `wkg oci push` would publish package version `tag` in `repo`.
async fn put_package(registry: &Registry, repo: &str, tag: &str, wasm: &[u8]) {
    let config = serde_json::to_vec(&json!({
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [wisp_app::sha256_digest(wasm)],
    }))
    .unwrap();
    put_blob(registry, repo, &config).await;
    put_blob(registry, repo, wasm).await;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": wisp_oci::OCI_MANIFEST_MEDIA_TYPE,
        "config": descriptor("application/vnd.wasm.config.v0+json", &config),
        "layers": [descriptor("application/wasm", wasm)],
    });
    put_manifest(registry, repo, tag, &manifest).await;
}

#[tokio::test]
async fn a_package_resolves_to_the_newest_version_its_requirement_accepts() {
    let registry = Registry::start();
    let hello = std::fs::read(wisp_test_programs::HELLO).unwrap();
    let adder = std::fs::read(wisp_test_programs::DEP_ADDER).unwrap();
    for (tag, wasm) in [
        ("0.1.0", &hello),
        ("0.1.5", &adder),
        ("0.2.0", &hello),
        ("latest", &hello),
    ] {
        put_package(&registry, "test/calc", tag, wasm).await;
    }
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_dir.path());
    let client = anonymous_client();
    let fetch = |version: &'static str| {
        let request = wisp_oci::PackageRequest {
            package: "test:calc",
            version,
            registry: Some(&registry.host),
        };
        let (client, cache) = (&client, &cache);
        async move { wisp_oci::fetch_package(client, cache, &request, 1 << 30).await }
    };

    let newest_compatible = fetch("0.1").await.unwrap();
    assert_eq!(std::fs::read(&newest_compatible).unwrap(), adder);
    let exact = fetch("=0.1.0").await.unwrap();
    assert_eq!(std::fs::read(&exact).unwrap(), hello);

    let err = fetch("^0.3").await.unwrap_err().to_string();
    assert!(
        err.contains("test:calc") && err.contains("0.1.5") && err.contains("^0.3"),
        "the error names the package, the requirement and the versions there are: {err}"
    );
    let err = wisp_oci::fetch_package(
        &client,
        &cache,
        &wisp_oci::PackageRequest {
            package: "test:missing",
            version: "1",
            registry: Some(&registry.host),
        },
        1 << 30,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("test/missing"), "{err}");
    let err = fetch("0.1.5").await;
    assert!(err.is_ok(), "0.1.5 is cached and accepted: {err:?}");
    let too_small = wisp_oci::fetch_package(
        &client,
        &Cache::new(tempfile::tempdir().unwrap().path()),
        &wisp_oci::PackageRequest {
            package: "test:calc",
            version: "0.1",
            registry: Some(&registry.host),
        },
        10,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(too_small.contains("limit"), "{too_small}");
}
