//! End-to-end tests of the developer commands: `wisp build`, `wisp up --build` and
//! `wisp completions`.

mod support;

use std::process::Command;

use support::{Wisp, app_dir, toml_path};
use wisp_test_programs as programs;

fn wisp(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wisp"))
        .args(args)
        .env_remove("WISP_MANIFEST")
        .output()
        .expect("run wisp")
}

const TWO_COMPONENTS: &str = r#"spin_manifest_version = 2
[application]
name = "built"

[[trigger.http]]
route = "/a"
component = "a"

[[trigger.http]]
route = "/b"
component = "b"

[component.a]
source = "sub/out/a.wasm"
[component.a.build]
command = ["echo one", "mkdir -p out && echo built > out/a.txt", "echo two >&2"]
workdir = "sub"

[component.b]
source = "b.wasm"
"#;

#[test]
fn build_runs_each_command_in_the_workdir_with_prefixed_output() {
    let dir = app_dir(TWO_COMPONENTS);
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let output = wisp(&["build", "-f", dir.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("[a] one\n"), "{stdout}");
    assert!(stderr.contains("[a] two\n"), "{stderr}");
    assert!(stderr.contains("b: no build command, skipped"), "{stderr}");
    assert!(stderr.contains("Built 1 component."), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("sub/out/a.txt")).unwrap(),
        "built\n"
    );
}

#[test]
fn build_names_the_component_and_command_that_failed() {
    let dir = app_dir(&TWO_COMPONENTS.replace(
        r#"command = ["echo one", "mkdir -p out && echo built > out/a.txt", "echo two >&2"]"#,
        r#"command = ["echo oops >&2; exit 3", "echo never"]"#,
    ));
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let output = wisp(&["build", "-f", dir.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("[a] oops"), "{stderr}");
    assert!(
        stderr.contains(
            "component `a`: build command `echo oops >&2; exit 3` failed with exit code 3"
        ),
        "{stderr}"
    );
    assert!(
        !stdout.contains("never"),
        "stops at the first failure: {stdout}"
    );

    let output = wisp(&["build", "-f", dir.path().to_str().unwrap(), "-c", "nope"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the app has no component `nope`; its components are `a`, `b`"),
        "{stderr}"
    );
    let output = wisp(&["build", "-f", dir.path().to_str().unwrap(), "-c", "b"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("component `b` has no [component.b.build] table"),
        "{stderr}"
    );
}

#[test]
fn up_build_builds_then_serves() {
    // The build produces the component the manifest names; without --build it is missing.
    let manifest = format!(
        r#"spin_manifest_version = 2
[application]
name = "up-build"

[[trigger.http]]
route = "/hello"
component = "hello"

[component.hello]
source = "out/hello.wasm"
[component.hello.build]
command = "mkdir -p out && cp {hello} out/hello.wasm"
"#,
        hello = toml_path(programs::HELLO).trim_matches('"')
    );
    let dir = app_dir(&manifest);
    let manifest_path = dir.path().join("spin.toml");
    let mut command = Command::new(env!("CARGO_BIN_EXE_wisp"));
    command.arg("up").arg("-f").arg(&manifest_path);
    let missing = Wisp::spawn(command)
        .err()
        .expect("no component before building");
    assert!(missing.1.contains("out/hello.wasm"), "{}", missing.1);

    let mut command = Command::new(env!("CARGO_BIN_EXE_wisp"));
    command
        .arg("up")
        .arg("--build")
        .arg("-f")
        .arg(&manifest_path);
    let wisp = Wisp::spawn(command).unwrap_or_else(|(status, stderr)| {
        panic!("wisp up --build exited with {status}:\n{stderr}")
    });
    let response = wisp.get("/hello");
    assert_eq!(response.status, 200, "{}", wisp.stderr());
    assert!(
        wisp.stderr().contains("hello: running `mkdir -p out"),
        "{}",
        wisp.stderr()
    );
}

#[test]
fn completions_cover_every_command() {
    let output = wisp(&["completions", "bash"]);
    assert!(output.status.success());
    let script = String::from_utf8_lossy(&output.stdout);
    for word in [
        "up",
        "build",
        "registry",
        "completions",
        "--runtime-config-file",
    ] {
        assert!(script.contains(word), "bash completion lacks {word}");
    }
    let output = wisp(&["completions", "fish"]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("complete -c wisp"));
    let output = wisp(&["completions", "tcsh"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}
