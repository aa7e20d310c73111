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
