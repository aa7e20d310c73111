//! Manifest profiles (`[component.<id>.profile.<name>]`) through the real CLI: `wisp up
//! --profile`, `wisp build --profile`, and the error for a profile the app lacks.

mod support;

use support::Wisp;
use wisp_test_programs as programs;

/// An app whose `web` component serves `hello.wasm` by default and `echo.wasm` (with
/// `MODE = "debug"`) in profile `debug`; each build writes which commands ran.
fn app() -> tempfile::TempDir {
    let dir = support::app_dir(
        r#"spin_manifest_version = 2
[application]
name = "profiles"

[[trigger.http]]
route = "/..."
component = "web"

[component.web]
source = "hello.wasm"
environment = { MODE = "default" }
[component.web.build]
command = "echo default > built.txt"
[component.web.profile.debug]
source = "echo.wasm"
environment = { MODE = "debug" }
build.command = "echo debug > built.txt"
"#,
    );
    std::fs::copy(programs::HELLO, dir.path().join("hello.wasm")).unwrap();
    std::fs::copy(programs::ECHO, dir.path().join("echo.wasm")).unwrap();
    dir
}

fn up(dir: &tempfile::TempDir, extra: &[&str]) -> Result<Wisp, (std::process::ExitStatus, String)> {
    let mut command = support::wisp_command();
    command
        .arg("up")
        .arg("-f")
        .arg(dir.path().join("spin.toml"))
        .args(extra)
        .env_remove("WISP_STATE_DIR");
    Wisp::spawn(command)
}

#[test]
fn up_and_build_put_the_profile_in_place_and_refuse_one_the_app_lacks() {
    let dir = app();

    let wisp = up(&dir, &[]).unwrap_or_else(|(s, e)| panic!("{s}: {e}"));
    assert_eq!(wisp.get("/").text(), "Hello from Wisp\n");
    wisp.stop_cleanly();

    // The profile's source answers (echo), with the profile's build run first.
    let wisp =
        up(&dir, &["--profile", "debug", "--build"]).unwrap_or_else(|(s, e)| panic!("{s}: {e}"));
    let text = wisp.get("/p").text();
    assert!(text.starts_with("GET /p\n"), "{text}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("built.txt")).unwrap(),
        "debug\n"
    );
    wisp.stop_cleanly();

    let build = support::run_wisp(&["build", "-f", dir.path().to_str().unwrap()], None);
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("built.txt")).unwrap(),
        "default\n"
    );

    let stderr = match up(&dir, &["--profile", "relase"]) {
        Ok(wisp) => panic!(
            "wisp up served with an undefined profile:\n{}",
            wisp.stderr()
        ),
        Err((_, stderr)) => stderr,
    };
    assert!(
        stderr.contains("profile `relase` is not defined") && stderr.contains("`debug`"),
        "{stderr}"
    );
}
