//! End-to-end tests of `wisp registry login/push/pull` and `wisp up --from <reference>`
//! against a real registry: Debian's `docker-registry` (distribution v2) with htpasswd
//! basic auth, started on loopback by the test (`apt-get install -y docker-registry
//! apache2-utils`; .ci/run does this). A missing binary fails the test.

mod support;

use std::io::Write as _;
use std::path::Path;
use std::process::{Output, Stdio};

use support::{Wisp, app_dir, toml_path};
use wisp_test_programs as programs;
use wisp_test_registry::Registry;

/// `wisp <args>` with the credential store and OCI cache of this test.
fn wisp(args: &[&str], auth_file: &Path, stdin: Option<&str>) -> Output {
    let mut command = support::wisp_command();
    command
        .args(args)
        .env("WISP_REGISTRY_AUTH_FILE", auth_file)
        .env("DOCKER_CONFIG", auth_file.with_extension("docker"))
        .env_remove("WISP_REGISTRY_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("run wisp");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn push_pull_and_run_from_a_registry_with_basic_auth() {
    let mut registry = Registry::start_with_auth("ci", "s3cret-pass");
    let host = registry.host.clone();
    let state = tempfile::tempdir().unwrap();
    let auth_file = state.path().join("registry-auth.json");
    let oci_cache = state.path().join("oci-cache");
    let oci_cache = oci_cache.to_str().unwrap();
    let app = app_dir(&format!(
        r#"spin_manifest_version = 2
[application]
name = "hello"
version = "1.0.0"

[[trigger.http]]
route = "/hello"
component = "hello"

[component.hello]
source = {}
"#,
        toml_path(programs::HELLO)
    ));
    let manifest = app.path().join("spin.toml");
    let manifest = manifest.to_str().unwrap();
    let reference = format!("{host}/apps/hello:v1");

    // Without credentials the registry refuses, and wisp says what to do.
    let denied = wisp(
        &["registry", "push", &reference, "-f", manifest, "--insecure"],
        &auth_file,
        None,
    );
    assert!(!denied.status.success());
    let stderr = text(&denied.stderr);
    assert!(stderr.contains("wisp registry login"), "{stderr}");

    // A wrong password is refused and nothing is stored.
    let wrong = wisp(
        &[
            "registry",
            "login",
            &host,
            "-u",
            "ci",
            "--password-stdin",
            "--insecure",
        ],
        &auth_file,
        Some("nope\n"),
    );
    assert!(!wrong.status.success(), "{}", text(&wrong.stderr));
    assert!(!auth_file.exists());

    let login = wisp(
        &[
            "registry",
            "login",
            &host,
            "-u",
            "ci",
            "--password-stdin",
            "--insecure",
        ],
        &auth_file,
        Some("s3cret-pass\n"),
    );
    assert!(login.status.success(), "{}", text(&login.stderr));
    assert!(auth_file.exists());

    // Push prints the digest; a second push of the same app uploads nothing.
    let push = wisp(
        &[
            "registry",
            "push",
            &reference,
            "-f",
            manifest,
            "--insecure",
            "--json",
        ],
        &auth_file,
        None,
    );
    assert!(push.status.success(), "{}", text(&push.stderr));
    let pushed: serde_json::Value = serde_json::from_slice(&push.stdout).unwrap();
    let digest = pushed["digest"].as_str().unwrap().to_owned();
    assert!(digest.starts_with("sha256:"), "{pushed}");
    assert!(pushed["uploaded_blobs"].as_u64().unwrap() >= 3, "{pushed}");
    let again = wisp(
        &[
            "registry",
            "push",
            &reference,
            "-f",
            manifest,
            "--insecure",
            "--json",
        ],
        &auth_file,
        None,
    );
    assert!(again.status.success(), "{}", text(&again.stderr));
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["uploaded_blobs"], 0, "{again}");
    assert_eq!(again["digest"], digest.as_str());

    // Spin's spelling: `--from`, `-k`, `--build`, `--annotation` (which changes the
    // manifest, so the digest).
    let annotated = wisp(
        &[
            "registry",
            "push",
            &format!("{host}/apps/hello:annotated"),
            "--from",
            manifest,
            "-k",
            "--build",
            "--annotation",
            "org.opencontainers.image.source=https://example.com/hello",
            "--json",
        ],
        &auth_file,
        None,
    );
    assert!(annotated.status.success(), "{}", text(&annotated.stderr));
    let annotated: serde_json::Value = serde_json::from_slice(&annotated.stdout).unwrap();
    assert_eq!(annotated["uploaded_blobs"], 0, "{annotated}");
    assert_ne!(annotated["digest"], digest.as_str(), "{annotated}");

    // Pull by tag reports the same digest.
    let pull = wisp(
        &[
            "registry",
            "pull",
            &reference,
            "--insecure",
            "--oci-cache-dir",
            oci_cache,
        ],
        &auth_file,
        None,
    );
    assert!(pull.status.success(), "{}", text(&pull.stderr));
    assert_eq!(text(&pull.stdout).trim(), digest);

    // `wisp up --from <reference>` serves it on a clean state directory.
    let up = |from: &str, state_dir: &Path| {
        let mut command = support::wisp_command();
        command
            // `spin up -f <reference> -k`, as Spin users type it.
            .args(["up", "-f", from, "-k", "--oci-cache-dir", oci_cache])
            .arg("--state-dir")
            .arg(state_dir)
            .env("WISP_REGISTRY_AUTH_FILE", &auth_file);
        Wisp::spawn(command).unwrap_or_else(|(status, stderr)| panic!("{status}: {stderr}"))
    };
    let clean = tempfile::tempdir().unwrap();
    let served = up(&reference, clean.path());
    let response = served.get("/hello");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "Hello from Wisp\n");
    drop(served);

    // By digest, the cached app runs with the registry gone.
    registry.stop();
    let pinned = format!("{host}/apps/hello@{digest}");
    let clean = tempfile::tempdir().unwrap();
    let served = up(&pinned, clean.path());
    assert_eq!(served.get("/hello").text(), "Hello from Wisp\n");
}

/// An app whose component has a dependency (Spin's `[component.<id>.dependencies]`) goes
/// through the registry uncomposed, as `spin registry push` writes it: the dependency's
/// Wasm is a layer of its own and the locked app names it by digest, never by local path.
/// Pulled from an empty cache, Wisp composes it at load and the dependency still gets
/// none of the component's environment (deny by default).
#[test]
fn an_app_with_dependencies_round_trips_uncomposed() {
    const ADDER: &str = "test:calc/adder@0.1.0";
    let registry = Registry::start();
    let host = registry.host.clone();
    let state = tempfile::tempdir().unwrap();
    let auth_file = state.path().join("registry-auth.json");
    let app = app_dir(&format!(
        r#"spin_manifest_version = 2
[application]
name = "deps"
version = "1.0.0"

[[trigger.http]]
route = "/..."
component = "main"

[component.main]
source = "main.wasm"
environment = {{ MODE = "prod" }}

[component.main.dependencies]
"{ADDER}" = {{ path = "adder.wasm" }}
"#
    ));
    std::fs::copy(programs::DEP_MAIN, app.path().join("main.wasm")).unwrap();
    std::fs::copy(programs::DEP_ADDER, app.path().join("adder.wasm")).unwrap();
    let manifest = app.path().join("spin.toml");
    let reference = format!("{host}/apps/deps:v1");

    let push = wisp(
        &[
            "registry",
            "push",
            &reference,
            "-f",
            manifest.to_str().unwrap(),
            "--insecure",
            "--json",
        ],
        &auth_file,
        None,
    );
    assert!(push.status.success(), "{}", text(&push.stderr));
    let pushed: serde_json::Value = serde_json::from_slice(&push.stdout).unwrap();
    let digest = pushed["digest"].as_str().unwrap();

    // The registry's own copy of the manifest: one Wasm layer for the component, one for
    // its dependency, then the locked app.
    let read_blob = |digest: &str| std::fs::read(registry.blob_data(digest)).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&read_blob(digest)).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    let wasm_layer = "application/vnd.wasm.content.layer.v1+wasm";
    let main_digest = wisp_app::sha256_digest(&std::fs::read(programs::DEP_MAIN).unwrap());
    let adder_digest = wisp_app::sha256_digest(&std::fs::read(programs::DEP_ADDER).unwrap());
    for wanted in [&main_digest, &adder_digest] {
        assert!(
            layers
                .iter()
                .any(|l| l["digest"] == wanted.as_str() && l["mediaType"] == wasm_layer),
            "no {wasm_layer} layer {wanted} in {manifest:#}"
        );
    }
    let locked_layer = layers
        .iter()
        .find(|l| l["mediaType"] == "application/vnd.fermyon.spin.application.v1+config")
        .unwrap_or_else(|| panic!("no locked-app layer in {manifest:#}"));
    let locked_bytes = read_blob(locked_layer["digest"].as_str().unwrap());
    let locked_text = text(&locked_bytes);
    let app_path = app.path().to_str().unwrap();
    assert!(
        !locked_text.contains(app_path),
        "the locked app names the local directory {app_path}: {locked_text}"
    );
    let locked: serde_json::Value = serde_json::from_slice(&locked_bytes).unwrap();
    assert_eq!(
        locked["components"][0]["dependencies"],
        serde_json::json!({
            ADDER: {
                "source": { "content_type": "application/wasm", "digest": adder_digest },
                "export": null
            }
        }),
        "{locked:#}"
    );

    // `wisp up --from <reference>` on an empty cache pulls, composes and serves it.
    let oci_cache = state.path().join("oci-cache");
    let mut command = support::wisp_command();
    command
        .args(["up", "--from", &reference, "-k"])
        .arg("--oci-cache-dir")
        .arg(&oci_cache)
        .arg("--state-dir")
        .arg(state.path().join("state"))
        .env("WISP_REGISTRY_AUTH_FILE", &auth_file);
    let served =
        Wisp::spawn(command).unwrap_or_else(|(status, stderr)| panic!("{status}: {stderr}"));
    for (path, expected) in [("/sum", "sum=5"), ("/env/MODE", "main=prod dep=none")] {
        let response = served.get(path);
        assert_eq!(
            (response.status, response.text().as_str()),
            (200, expected),
            "GET {path}\nwisp stderr:\n{}",
            served.stderr()
        );
    }
    served.stop_cleanly();
}
