//! The shim under a real containerd (Debian's), started by the test with a private root,
//! state and socket: images built here with umoci and imported with `ctr`, run with
//! `ctr run --runtime io.containerd.wisp.v1 --net-host`, served over loopback, stopped with
//! SIGTERM; a runc container runs beside them in the same containerd. One test makes
//! kubelet's CRI calls to containerd's CRI plugin for a pod with the runtime handler `wisp`.
//!
//! Needs root and the packages `scripts/test-services.sh` installs (containerd, runc,
//! umoci, busybox-static).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-wisp-v1");
const NAMESPACE: &str = "wisp-test";

fn require(tool: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .map(|dir| dir.join(tool))
            .find(|path| path.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("{tool} is missing: run scripts/test-services.sh (it installs containerd, runc, umoci and busybox-static)")
    })
}

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A containerd of the test's own, stopped (with its tasks) when dropped.
struct Containerd {
    dir: tempfile::TempDir,
    daemon: Child,
    /// Where its `ctr` is (the client must match the daemon).
    ctr: PathBuf,
}

/// Debian trixie's containerd 1.7 (`scripts/install-containerd.sh`): bookworm's 1.6.20
/// refuses images whose layers are raw wasm blobs.
fn trixie_containerd() -> PathBuf {
    let dir = match std::env::var_os("WISP_TOOLS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/wisp/tools")
        }
    }
    .join("containerd-trixie/usr/bin");
    assert!(
        dir.join("containerd").is_file(),
        "{} is missing: run scripts/install-containerd.sh (scripts/test.sh does)",
        dir.join("containerd").display()
    );
    dir
}

impl Containerd {
    /// The system's containerd (Debian bookworm's 1.6).
    fn start() -> Self {
        Self::start_from(None)
    }

    /// The containerd in `bin` (with its own `ctr` and runc shim first on its PATH), or the
    /// system's.
    fn start_from(bin: Option<PathBuf>) -> Self {
        Self::start_with(bin, None)
    }

    /// With `cri`, containerd's CRI plugin (what kubelet talks to) is on, with the runtime
    /// handler `wisp` registered, `localhost/pause:latest` as the sandbox image, and plain
    /// HTTP to the registry at that `host:port`.
    fn start_with(bin: Option<PathBuf>, cri: Option<&str>) -> Self {
        assert!(
            rustix::process::geteuid().is_root(),
            "the containerd tests run as root (containerd and its shims need it)"
        );
        let containerd = match &bin {
            Some(bin) => bin.join("containerd"),
            None => require("containerd"),
        };
        let ctr = match &bin {
            Some(bin) => bin.join("ctr"),
            None => require("ctr"),
        };
        require("runc");
        // Short: unix socket paths are limited to 107 bytes.
        let dir = tempfile::Builder::new()
            .prefix("wc")
            .tempdir_in("/tmp")
            .unwrap();
        let root = dir.path();
        let plugins = match cri {
            None => r#"disabled_plugins = ["io.containerd.grpc.v1.cri"]"#.to_owned(),
            Some(registry) => format!(
                r#"[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:latest"
  # This machine forbids lowering a process's oom_score_adj (the -998 CRI gives a pod's
  # sandbox), as kind nodes do: keep it in the allowed range.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{root}/cni/bin"
    conf_dir = "{root}/cni/conf"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.wisp]
      runtime_type = "io.containerd.wisp.v1"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."{registry}"]
    endpoint = ["http://{registry}"]"#,
                root = root.display()
            ),
        };
        let config = format!(
            r#"version = 2
root = "{root}/root"
state = "{root}/state"
{plugins}
[grpc]
  address = "{root}/c.sock"
[ttrpc]
  address = "{root}/t.sock"
[debug]
  address = "{root}/d.sock"
"#,
            root = root.display()
        );
        std::fs::write(root.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(root.join("containerd.log")).unwrap();
        // The shim is found on containerd's PATH by its name.
        let shim_dir = Path::new(SHIM).parent().unwrap();
        let path = format!(
            "{}:{}{}:/usr/sbin:/sbin",
            shim_dir.display(),
            bin.as_ref()
                .map(|b| format!("{}:", b.display()))
                .unwrap_or_default(),
            std::env::var("PATH").unwrap_or_default()
        );
        let daemon = Command::new(containerd)
            .arg("--config")
            .arg(root.join("config.toml"))
            .env("PATH", path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start containerd");
        let this = Self { dir, daemon, ctr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !this.ctr_status(&["version"]).success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not come up: {}",
                this.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        this
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn ctr_command(&self, args: &[&str]) -> Command {
        self.ctr_command_in(NAMESPACE, args)
    }

    fn ctr_command_in(&self, namespace: &str, args: &[&str]) -> Command {
        let mut command = Command::new(&self.ctr);
        command
            .arg("--address")
            .arg(self.socket())
            .arg("--namespace")
            .arg(namespace)
            .args(args);
        command
    }

    fn ctr(&self, args: &[&str]) -> Output {
        run(&mut self.ctr_command(args))
    }

    fn ctr_status(&self, args: &[&str]) -> std::process::ExitStatus {
        self.ctr_command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
    }

    /// Builds an image whose only layer holds `files` (path in the image, content) and
    /// imports it as `localhost/<name>:latest`.
    fn import_image(
        &self,
        name: &str,
        files: &[(&str, &[u8], u32)],
        entrypoint: &[&str],
    ) -> String {
        self.import_image_in(NAMESPACE, name, files, entrypoint)
    }

    /// [`Containerd::import_image`] into containerd namespace `namespace`.
    fn import_image_in(
        &self,
        namespace: &str,
        name: &str,
        files: &[(&str, &[u8], u32)],
        entrypoint: &[&str],
    ) -> String {
        require("umoci");
        let work = self.dir.path().join(format!("image-{name}"));
        let layout = work.join("oci");
        let image = format!("{}:latest", layout.display());
        let bundle = work.join("bundle");
        std::fs::create_dir_all(&work).unwrap();
        run(Command::new("umoci")
            .arg("init")
            .arg("--layout")
            .arg(&layout));
        run(Command::new("umoci").args(["new", "--image", &image]));
        run(Command::new("umoci")
            .args(["unpack", "--image", &image])
            .arg(&bundle));
        for (path, content, mode) in files {
            let dest = bundle.join("rootfs").join(path.trim_start_matches('/'));
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::write(&dest, content).unwrap();
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(*mode)).unwrap();
        }
        run(Command::new("umoci")
            .args(["repack", "--image", &image])
            .arg(&bundle));
        let mut config = Command::new("umoci");
        config.args(["config", "--image", &image]);
        for arg in entrypoint {
            config.arg(format!("--config.entrypoint={arg}"));
        }
        run(&mut config);
        let tar = work.join("image.tar");
        run(Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(&tar)
            .arg("."));
        let base = format!("localhost/{name}");
        run(&mut self.ctr_command_in(
            namespace,
            &[
                "images",
                "import",
                "--base-name",
                &base,
                tar.to_str().unwrap(),
            ],
        ));
        format!("{base}:latest")
    }

    /// Imports an OCI image layout holding `manifest` and `blobs` as
    /// `localhost/<name>:latest`: how images whose layers are not tar files (wasm
    /// components, Spin artifacts) reach containerd without a registry.
    fn import_artifact(&self, name: &str, manifest: &[u8], blobs: &[(String, Vec<u8>)]) -> String {
        let layout = self.dir.path().join(format!("layout-{name}"));
        let blob_dir = layout.join("blobs/sha256");
        std::fs::create_dir_all(&blob_dir).unwrap();
        std::fs::write(
            layout.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let mut all: Vec<(String, &[u8])> = blobs
            .iter()
            .map(|(d, b)| (d.clone(), b.as_slice()))
            .collect();
        let manifest_digest = wisp_app::sha256_digest(manifest);
        all.push((manifest_digest.clone(), manifest));
        for (digest, bytes) in all {
            std::fs::write(blob_dir.join(digest.trim_start_matches("sha256:")), bytes).unwrap();
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest.len(),
                "annotations": { "org.opencontainers.image.ref.name": "latest" },
            }],
        });
        std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
        let tar = self.dir.path().join(format!("{name}.tar"));
        run(Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(&tar)
            .arg("."));
        let base = format!("localhost/{name}");
        self.ctr(&[
            "images",
            "import",
            "--base-name",
            &base,
            tar.to_str().unwrap(),
        ]);
        format!("{base}:latest")
    }

    /// `ctr run` of `image` as container `id` under the wisp shim, in the foreground: its
    /// output is the container's (the app's log and its guests' output).
    fn run_wisp(&self, image: &str, id: &str, env: &[String]) -> RunningTask {
        self.run_wisp_with_args(image, id, env, &[])
    }

    /// [`Containerd::run_wisp`] with arguments after the container id.
    fn run_wisp_with_args(
        &self,
        image: &str,
        id: &str,
        env: &[String],
        args: &[&str],
    ) -> RunningTask {
        self.run_wisp_with(image, id, env, args, &[])
    }

    /// [`Containerd::run_wisp_with_args`] with more `ctr run` options (limits).
    fn run_wisp_with(
        &self,
        image: &str,
        id: &str,
        env: &[String],
        args: &[&str],
        options: &[&str],
    ) -> RunningTask {
        let mut command = self.ctr_command(&[
            "run",
            "--rm",
            "--net-host",
            "--runtime",
            "io.containerd.wisp.v1",
        ]);
        command.args(options);
        for entry in env {
            command.arg("--env").arg(entry);
        }
        command.args([image, id]);
        command.args(args);
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (lines, receiver) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if lines.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        RunningTask {
            id: id.to_owned(),
            child,
            lines: receiver,
            seen: Vec::new(),
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Tasks first: their shims outlive containerd otherwise.
        for namespace in [NAMESPACE, "k8s.io"] {
            let Ok(output) = self
                .ctr_command_in(namespace, &["tasks", "ls", "-q"])
                .output()
            else {
                continue;
            };
            for id in String::from_utf8_lossy(&output.stdout).lines() {
                let quiet = |args: &[&str]| {
                    let _ = self
                        .ctr_command_in(namespace, args)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                };
                quiet(&["tasks", "kill", "-s", "SIGKILL", id]);
                std::thread::sleep(Duration::from_millis(200));
                quiet(&["tasks", "delete", "-f", id]);
                quiet(&["containers", "delete", id]);
            }
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// A container started by `ctr run` in the foreground.
struct RunningTask {
    id: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl RunningTask {
    /// Waits for an output line containing `needle`.
    fn wait_for(&mut self, needle: &str, containerd: &Containerd) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "container {} never printed {needle:?}; it printed:\n{}\ncontainerd's log:\n{}",
                    self.id,
                    self.seen.join("\n"),
                    containerd.log()
                ),
            }
        }
    }

    /// Waits for `ctr run` to end; its exit status is the task's.
    fn wait(mut self) -> (i32, Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "container {} did not exit",
                self.id
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        (status.code().unwrap_or(-1), self.seen)
    }
}

/// Asks `method path` with `body` and expects `200` with `expected`.
fn expect_ok(port: u16, method: &str, path: &str, body: &str, expected: &str) {
    assert_eq!(
        request(port, method, path, body),
        (200, expected.to_owned()),
        "{method} {path}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.0 request (so the body is not chunked); the status and body.
fn request(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

const MANIFEST: &str = r#"spin_manifest_version = 2

[application]
name = "shim-test"

[variables]
greeting = { default = "unset" }
region = { default = "unset" }

[[trigger.http]]
route = "/hello"
component = "hello"

[[trigger.http]]
route = "/..."
component = "caps"

[[trigger.http]]
route = "/log"
component = "log"

[component.hello]
source = "hello.wasm"

[component.caps]
source = "caps.wasm"
key_value_stores = ["default"]
[component.caps.variables]
greeting = "{{ greeting }}"
region = "{{ region }}"

[component.log]
source = "log.wasm"
"#;

/// [`MANIFEST`]'s app as a plain image named `name`: the manifest and its components at the
/// root (`caps` for `caps.wasm`), and `/` as its argument, as SpinKube's images carry it
/// (no executable, so the shim serves the app).
fn import_manifest_image(containerd: &Containerd, name: &str, caps: &str) -> String {
    let hello = std::fs::read(wisp_test_programs::HELLO).unwrap();
    let caps = std::fs::read(caps).unwrap();
    let log = std::fs::read(wisp_test_programs::STDIO_LOG).unwrap();
    containerd.import_image(
        name,
        &[
            ("/spin.toml", MANIFEST.as_bytes(), 0o644),
            ("/hello.wasm", &hello, 0o644),
            ("/caps.wasm", &caps, 0o644),
            ("/log.wasm", &log, 0o644),
        ],
        &["/"],
    )
}

#[test]
fn a_plain_image_is_served_beside_a_runc_container_and_stops_on_sigterm() {
    let containerd = Containerd::start();
    let image = import_manifest_image(&containerd, "wisp-plain", wisp_test_programs::CAPS_V5);

    // A container pod beside the wasm one, in the same containerd.
    let busybox = std::fs::read(require("busybox")).unwrap();
    let linux = containerd.import_image(
        "busybox",
        &[("/bin/busybox", &busybox, 0o755)],
        &["/bin/busybox"],
    );
    containerd.ctr(&[
        "run",
        "-d",
        "--runtime",
        "io.containerd.runc.v2",
        &linux,
        "beside",
        "/bin/busybox",
        "sleep",
        "300",
    ]);

    let port = free_port();
    let mut task = containerd.run_wisp_with(
        &image,
        "plain",
        &[
            format!("SPIN_HTTP_LISTEN_ADDR=127.0.0.1:{port}"),
            "SPIN_VARIABLE_GREETING=hello from the pod".to_owned(),
            // SpinKube's shim also reads a variable under its plain upper-case name.
            "REGION=eu-west".to_owned(),
        ],
        &[],
        // A pod's memory limit applies to the container's cgroup, whose processes are the
        // app's (the instances' memory counts against it).
        &["--memory-limit", &(512u64 << 20).to_string()],
    );
    task.wait_for("Listening on", &containerd);

    expect_ok(port, "GET", "/hello", "", "Hello from Wisp\n");
    expect_ok(port, "GET", "/var?name=greeting", "", "hello from the pod");
    expect_ok(port, "GET", "/var?name=region", "", "eu-west");
    // The app's `default` store lives in the container's state directory.
    expect_ok(port, "PUT", "/kv/set?store=default&key=k", "v1", "stored");
    expect_ok(port, "GET", "/kv/get?store=default&key=k", "", "v1");
    // A guest's output goes to the container's log.
    expect_ok(port, "GET", "/log", "", "logged\n");
    task.wait_for("hello stdout", &containerd);
    task.wait_for("hello stderr", &containerd);

    // containerd reads the pod's usage from its cgroup (what kubelet's stats come from).
    let metrics = String::from_utf8(containerd.ctr(&["tasks", "metrics", "plain"]).stdout).unwrap();
    let usage = metrics
        .lines()
        .find_map(|l| l.strip_prefix("memory.usage_in_bytes"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no memory usage in `ctr tasks metrics`: {metrics}"));
    assert!(usage > 1 << 20, "{metrics}");
    let tasks = String::from_utf8(containerd.ctr(&["tasks", "ls"]).stdout).unwrap();
    let running: Vec<&str> = tasks.lines().filter(|l| l.contains("RUNNING")).collect();
    assert_eq!(running.len(), 2, "both containers run: {tasks}");

    containerd.ctr(&["tasks", "kill", "-s", "SIGTERM", "plain"]);
    let (code, output) = task.wait();
    assert_eq!(
        code,
        0,
        "a drained app exits 0; it printed:\n{}",
        output.join("\n")
    );
    assert!(
        output.iter().any(|l| l.contains("Stopped.")),
        "{}",
        output.join("\n")
    );
    eprintln!("the container printed:\n{}", output.join("\n"));
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the port is closed"
    );
    // The runc container is untouched.
    let tasks = String::from_utf8(containerd.ctr(&["tasks", "ls"]).stdout).unwrap();
    assert!(
        tasks
            .lines()
            .any(|l| l.starts_with("beside") && l.contains("RUNNING")),
        "{tasks}"
    );
}

#[test]
fn a_bad_app_exits_non_zero_with_the_reason_in_its_log() {
    let containerd = Containerd::start();
    let image = containerd.import_image(
        "wisp-bad",
        &[(
            "/spin.toml",
            b"spin_manifest_version = 2\n[application]\nname = \"bad\"\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"missing\"\n",
            0o644,
        )],
        &["/"],
    );
    let task = containerd.run_wisp(
        &image,
        "bad",
        &[format!("SPIN_HTTP_LISTEN_ADDR=127.0.0.1:{}", free_port())],
    );
    let (code, output) = task.wait();
    assert_eq!(code, 1, "{}", output.join("\n"));
    let text = output.join("\n");
    assert!(
        text.contains("/spin.toml"),
        "the log names the manifest: {text}"
    );
    assert!(
        text.contains("missing"),
        "the log names what is wrong: {text}"
    );

    // Selective deployment: an id that is not a component is refused with the app's ids.
    let hello = std::fs::read(wisp_test_programs::HELLO).unwrap();
    let image = containerd.import_image(
        "wisp-retain",
        &[
            ("/spin.toml", MANIFEST.as_bytes(), 0o644),
            ("/hello.wasm", &hello, 0o644),
            ("/caps.wasm", &hello, 0o644),
            ("/log.wasm", &hello, 0o644),
        ],
        &["/"],
    );
    let task = containerd.run_wisp(
        &image,
        "retain",
        &["SPIN_COMPONENTS_TO_RETAIN=hello,nope".to_owned()],
    );
    let (code, output) = task.wait();
    assert_eq!(code, 1);
    let text = output.join("\n");
    assert!(
        text.contains("SPIN_COMPONENTS_TO_RETAIN")
            && text.contains("nope")
            && text.contains("hello, caps, log"),
        "{text}"
    );

    // A setting the shim cannot use stops the container with the variable named.
    let task = containerd.run_wisp(
        &image,
        "bad-env",
        &["SPIN_HTTP_LISTEN_ADDR=eighty".to_owned()],
    );
    let (code, output) = task.wait();
    assert_eq!(code, 1);
    let text = output.join("\n");
    assert!(
        text.contains("SPIN_HTTP_LISTEN_ADDR=\"eighty\"") && text.contains("host:port"),
        "{text}"
    );
}

#[test]
fn selective_deployment_serves_only_the_retained_components() {
    let containerd = Containerd::start();
    let image = import_manifest_image(&containerd, "wisp-select", wisp_test_programs::HELLO);
    let port = free_port();
    let mut task = containerd.run_wisp(
        &image,
        "select",
        &[
            format!("SPIN_HTTP_LISTEN_ADDR=127.0.0.1:{port}"),
            "SPIN_COMPONENTS_TO_RETAIN=hello,log".to_owned(),
        ],
    );
    task.wait_for("Listening on", &containerd);
    expect_ok(port, "GET", "/hello", "", "Hello from Wisp\n");
    expect_ok(port, "GET", "/log", "", "logged\n");
    // caps (on `/...`) is gone with its trigger.
    assert_eq!(request(port, "GET", "/var?name=greeting", "").0, 404);
    containerd.ctr(&["tasks", "kill", "-s", "SIGTERM", "select"]);
    let (code, _) = task.wait();
    assert_eq!(code, 0);
}

/// `OTEL_EXPORTER_OTLP_*` in the container's environment (as SpinKube's operator sets them
/// from a `SpinAppExecutor`'s `otel` settings) sends the app's traces to the collector, and
/// a request's `traceparent` continues the caller's trace.
#[test]
fn traces_reach_an_otlp_collector_from_the_container() {
    let collector = wisp_test_programs::otlp::Collector::start();
    let containerd = Containerd::start();
    let image = import_manifest_image(&containerd, "wisp-traced", wisp_test_programs::HELLO);
    let port = free_port();
    let mut task = containerd.run_wisp(
        &image,
        "traced",
        &[
            format!("SPIN_HTTP_LISTEN_ADDR=127.0.0.1:{port}"),
            format!("OTEL_EXPORTER_OTLP_ENDPOINT=http://{}", collector.addr),
            "OTEL_SERVICE_NAME=shim-traced".to_owned(),
        ],
    );
    task.wait_for("Listening on", &containerd);

    let (caller_trace, caller_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET /hello HTTP/1.1\r\nhost: traced\r\ntraceparent: 00-{caller_trace}-{caller_span}-01\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("Hello from Wisp\n"), "{response}");

    let hex = wisp_test_programs::otlp::hex;
    let spans = collector.wait_for(|spans| {
        spans
            .iter()
            .any(|(_, span)| hex(&span.trace_id) == caller_trace && span.kind == 2)
    });
    let (service, server) = spans
        .iter()
        .find(|(_, span)| hex(&span.trace_id) == caller_trace && span.kind == 2)
        .unwrap();
    assert!(service.contains("shim-traced"), "service.name: {service}");
    assert_eq!(server.name, "GET /hello");
    assert_eq!(
        hex(&server.parent_span_id),
        caller_span,
        "the caller's span is the parent"
    );
    containerd.ctr(&["tasks", "kill", "-s", "SIGTERM", "traced"]);
    let (code, output) = task.wait();
    assert_eq!(code, 0, "{}", output.join("\n"));
}

/// [`MANIFEST`]'s app resolved from a temp directory (kept alive by the first value), as
/// `wisp registry push` reads it.
fn locked_test_app() -> (tempfile::TempDir, wisp_app::LockedApp) {
    let app = tempfile::tempdir().unwrap();
    std::fs::write(app.path().join("spin.toml"), MANIFEST).unwrap();
    for (file, program) in [
        ("hello.wasm", wisp_test_programs::HELLO),
        ("caps.wasm", wisp_test_programs::CAPS_V5),
        ("log.wasm", wisp_test_programs::STDIO_LOG),
    ] {
        std::fs::copy(program, app.path().join(file)).unwrap();
    }
    let manifest = wisp_manifest::parse_file(&app.path().join("spin.toml")).unwrap();
    let locked = wisp_app::resolve(&manifest, &app.path().join("spin.toml")).unwrap();
    (app, locked)
}

/// Runs `image` as container `id` (argument `/`, listening on a free port, with `env`),
/// asks `path` once and expects `200` with `body`, stops it with SIGTERM, expects exit 0,
/// and returns what it printed.
fn serve_once(
    containerd: &Containerd,
    image: &str,
    id: &str,
    env: &[String],
    path: &str,
    body: &str,
) -> String {
    let port = free_port();
    let mut env = env.to_vec();
    env.push(format!("SPIN_HTTP_LISTEN_ADDR=127.0.0.1:{port}"));
    let mut task = containerd.run_wisp_with_args(image, id, &env, &["/"]);
    task.wait_for("Listening on", containerd);
    expect_ok(port, "GET", path, "", body);
    containerd.ctr(&["tasks", "kill", "-s", "SIGTERM", id]);
    let (code, output) = task.wait();
    let text = output.join("\n");
    assert_eq!(code, 0, "{text}");
    text
}

/// A single `application/wasm` layer and a Spin artifact (as `wisp registry push` writes
/// it), on containerd 1.7: the shim gets their layers from containerd, not a filesystem.
#[test]
fn wasm_layer_images_and_spin_artifacts_are_served() {
    let containerd = Containerd::start_from(Some(trixie_containerd()));

    // A single component, served on `/...`.
    let hello = std::fs::read(wisp_test_programs::HELLO).unwrap();
    let config = br#"{"architecture":"wasm","os":"wasip2"}"#.to_vec();
    let (hello_digest, config_digest) = (
        wisp_app::sha256_digest(&hello),
        wisp_app::sha256_digest(&config),
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len() },
        "layers": [{ "mediaType": "application/wasm", "digest": hello_digest, "size": hello.len() }],
    })
    .to_string();
    let hello_layer = hello_digest.clone();
    let image = containerd.import_artifact(
        "wasm-hello",
        manifest.as_bytes(),
        &[(hello_digest, hello.clone()), (config_digest, config)],
    );
    let component_image = image.clone();
    // containerd had the shim precompile the layer when the container was created; the
    // container got the code and compiled nothing.
    let text = serve_once(
        &containerd,
        &image,
        "component",
        &[],
        "/any/path",
        "Hello from Wisp\n",
    );
    assert!(
        text.contains("using the code containerd precompiled"),
        "{text}"
    );
    assert!(!text.contains("compiling component"), "{text}");

    // A second container of the image: the code comes from containerd's content store,
    // nothing is compiled anywhere.
    let text = serve_once(
        &containerd,
        &image,
        "component-again",
        &[],
        "/",
        "Hello from Wisp\n",
    );
    assert!(
        text.contains("using the code containerd precompiled"),
        "{text}"
    );
    assert!(!text.contains("compiling component"), "{text}");
    // One compile (the shim logs it to containerd), one package in the content store.
    let precompiled = containerd
        .log()
        .matches("precompiling layer sha256:")
        .count();
    assert_eq!(
        precompiled,
        1,
        "the layer was compiled once: {}",
        containerd.log()
    );
    let content = String::from_utf8(containerd.ctr(&["content", "ls"]).stdout).unwrap();
    let packages = content
        .lines()
        .filter(|l| l.contains("runwasi.io/precompiled/wisp/") && l.contains("/original="))
        .count();
    assert_eq!(packages, 1, "{content}");

    // A Spin artifact: the locked app and a wasm layer per component.
    let (_app, locked) = locked_test_app();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (manifest, blobs) = runtime.block_on(async {
        let packed = wisp_oci::pack(&locked).await.unwrap();
        let mut blobs = Vec::new();
        for blob in packed.blobs() {
            blobs.push((
                blob.digest.to_owned(),
                packed.read_blob(blob.digest).await.unwrap(),
            ));
        }
        (packed.manifest().to_vec(), blobs)
    });
    let image = containerd.import_artifact("spin-app", &manifest, &blobs);
    let text = serve_once(
        &containerd,
        &image,
        "artifact",
        &["SPIN_VARIABLE_GREETING=from the artifact's pod".to_owned()],
        "/var?name=greeting",
        "from the artifact's pod",
    );
    // Every component layer came precompiled (the locked app is no wasm).
    assert_eq!(
        text.matches("using the code containerd precompiled")
            .count(),
        3,
        "{text}"
    );
    assert!(!text.contains("compiling component"), "{text}");

    // Damaged precompiled code (a flipped byte in containerd's blob) is not trusted: the
    // container compiles the layer's wasm, which the package carries, and serves.
    let content = String::from_utf8(containerd.ctr(&["content", "ls"]).stdout).unwrap();
    let package = content
        .lines()
        .find(|l| l.contains(&format!("/original={hello_layer}")))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();
    let blob = containerd
        .dir
        .path()
        .join("root/io.containerd.content.v1.content/blobs/sha256")
        .join(package);
    let mut bytes = std::fs::read(&blob).unwrap();
    *bytes.last_mut().unwrap() ^= 0x55;
    std::fs::write(&blob, bytes).unwrap();
    let text = serve_once(
        &containerd,
        &component_image,
        "component-damaged",
        &[],
        "/",
        "Hello from Wisp\n",
    );
    assert!(text.contains("failed its checksum; compiling"), "{text}");
    assert!(text.contains("compiling component"), "{text}");
}

/// SIGTERM (what kubelet sends first) stops new connections and lets requests in flight
/// finish: a long streamed response is read to its end after the signal, a spinning guest
/// gets its own deadline's 504, and the container then exits 0.
#[test]
fn sigterm_drains_requests_in_flight() {
    let containerd = Containerd::start();
    let faults = std::fs::read(wisp_test_programs::FAULTS).unwrap();
    let manifest = "spin_manifest_version = 2\n[application]\nname = \"drain\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"faults\"\n[component.faults]\nsource = \"faults.wasm\"\n";
    let image = containerd.import_image(
        "wisp-drain",
        &[
            ("/spin.toml", manifest.as_bytes(), 0o644),
            ("/faults.wasm", &faults, 0o644),
        ],
        &["/"],
    );
    let port = free_port();
    let mut task = containerd.run_wisp(
        &image,
        "drain",
        &[
            format!("SPIN_HTTP_LISTEN_ADDR=127.0.0.1:{port}"),
            "WISP_REQUEST_TIMEOUT=3".to_owned(),
        ],
    );
    task.wait_for("Listening on", &containerd);

    const MIB: usize = 1 << 20;
    let (headers_read, headers_seen) = mpsc::channel();
    let streamed = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        write!(
            stream,
            "GET /huge?mib=32 HTTP/1.0\r\nHost: localhost\r\n\r\n"
        )
        .unwrap();
        let mut first = vec![0; 4096];
        let n = stream.read(&mut first).unwrap();
        headers_read.send(()).unwrap();
        // Most of the body is still on the server's side of the socket when SIGTERM comes.
        std::thread::sleep(Duration::from_millis(1500));
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).unwrap();
        let mut response = first[..n].to_vec();
        response.extend(rest);
        response
    });
    let spinning = std::thread::spawn(move || request(port, "GET", "/loop", ""));
    headers_seen.recv_timeout(Duration::from_secs(30)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    containerd.ctr(&["tasks", "kill", "-s", "SIGTERM", "drain"]);

    let response = streamed.join().unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(response.starts_with(b"HTTP/1.0 200") || response.starts_with(b"HTTP/1.1 200"));
    assert_eq!(
        response.len() - split,
        32 * MIB,
        "the whole body arrived after SIGTERM"
    );
    assert_eq!(
        spinning.join().unwrap().0,
        504,
        "the spinning request got its deadline's answer"
    );
    let (code, output) = task.wait();
    assert_eq!(code, 0, "{}", output.join("\n"));
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the port is closed"
    );
}

/// What kubelet does for a pod with `runtimeClassName: wisp`, as CRI calls to containerd's
/// CRI plugin: pull the image (a Spin artifact in a registry), run the pod sandbox with
/// the handler `wisp` and host networking, create and start the app's container, read its
/// status, stop it (SIGTERM, drained), remove it, stop and remove the sandbox.
///
/// The pod is the one `wisp kube scaffold --plain` writes for the image (variables, a
/// runtime config in a Secret, a memory limit), turned into CRI calls as kubelet turns a
/// Deployment's pod template into them: command, environment (with the downward-API
/// memory budget resolved), the Secret mounted as a file, the memory limit, the
/// RuntimeClass's handler. Two things differ from a cluster: the listen address is a
/// loopback port (the test pod shares the host's network), and the runtime config's store
/// lives in a host directory the test mounts at `/data`, so it can look at it.
#[test]
fn kubelets_cri_calls_run_a_spin_app_pod() {
    use k8s_cri::v1 as cri;
    let registry = wisp_test_registry::Registry::start();
    let containerd = Containerd::start_with(Some(trixie_containerd()), Some(&registry.host));
    // The sandbox ("pause") container: a static busybox that sleeps.
    let busybox = std::fs::read(require("busybox")).unwrap();
    containerd.import_image_in(
        "k8s.io",
        "pause",
        &[("/bin/busybox", &busybox, 0o755)],
        &["/bin/busybox", "sleep", "2147483647"],
    );

    // The app, pushed to the registry as `wisp registry push` does.
    let (_app, locked) = locked_test_app();
    let image = format!("{}/shim-test/app:v1", registry.host);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let port = free_port();
    runtime.block_on(async {
        let client = wisp_oci::RegistryClient::new(wisp_oci::ClientOptions {
            insecure: true,
            ..Default::default()
        })
        .unwrap();
        wisp_oci::push(&client, &locked, &image.parse().unwrap())
            .await
            .unwrap();

        let socket = containerd.socket();
        let channel = tonic::transport::Endpoint::try_from("http://[::]:50051")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let socket = socket.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(socket).await?,
                    ))
                }
            }))
            .await
            .unwrap();
        let mut images = cri::image_service_client::ImageServiceClient::new(channel.clone());
        let mut pods = cri::runtime_service_client::RuntimeServiceClient::new(channel);

        let pulled = images
            .pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: image.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(pulled.image_ref.starts_with("sha256:"), "{pulled:?}");

        let pod = ScaffoldedPod::new(&image);
        let logs = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let sandbox_config = cri::PodSandboxConfig {
            log_directory: logs.path().to_str().unwrap().to_owned(),
            metadata: Some(cri::PodSandboxMetadata {
                name: "hello".to_owned(),
                uid: "hello-uid".to_owned(),
                namespace: "default".to_owned(),
                attempt: 0,
            }),
            hostname: "hello".to_owned(),
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Node as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let sandbox = pods
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(sandbox_config.clone()),
                runtime_handler: pod.runtime_handler.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", containerd.log()))
            .into_inner()
            .pod_sandbox_id;
        let container = pods
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox.clone(),
                config: Some(cri::ContainerConfig {
                    metadata: Some(cri::ContainerMetadata {
                        name: "app".to_owned(),
                        attempt: 0,
                    }),
                    image: Some(cri::ImageSpec {
                        image: pulled.image_ref.clone(),
                        ..Default::default()
                    }),
                    command: pod.command.clone(),
                    envs: pod
                        .env
                        .iter()
                        .map(|(key, value)| cri::KeyValue {
                            key: key.clone(),
                            value: match key.as_str() {
                                "SPIN_HTTP_LISTEN_ADDR" => format!("127.0.0.1:{port}"),
                                _ => value.clone(),
                            },
                        })
                        .collect(),
                    mounts: pod
                        .files
                        .iter()
                        .map(|(container_path, host_path)| cri::Mount {
                            container_path: container_path.clone(),
                            host_path: host_path.to_str().unwrap().to_owned(),
                            readonly: true,
                            ..Default::default()
                        })
                        .chain([cri::Mount {
                            container_path: "/data".to_owned(),
                            host_path: data.path().to_str().unwrap().to_owned(),
                            ..Default::default()
                        }])
                        .collect(),
                    linux: Some(cri::LinuxContainerConfig {
                        resources: Some(cri::LinuxContainerResources {
                            memory_limit_in_bytes: pod.memory_limit,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    log_path: "app.log".to_owned(),
                    ..Default::default()
                }),
                sandbox_config: Some(sandbox_config),
            })
            .await
            .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", containerd.log()))
            .into_inner()
            .container_id;
        pods.start_container(cri::StartContainerRequest {
            container_id: container.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("StartContainer: {e}\n{}", containerd.log()));

        let status = |pods: &mut cri::runtime_service_client::RuntimeServiceClient<_>| {
            let request = cri::ContainerStatusRequest {
                container_id: container.clone(),
                verbose: false,
            };
            let mut pods = pods.clone();
            async move {
                pods.container_status(request)
                    .await
                    .unwrap()
                    .into_inner()
                    .status
                    .unwrap()
            }
        };
        assert_eq!(
            status(&mut pods).await.state,
            cri::ContainerState::ContainerRunning as i32
        );
        let served = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "the pod never listened");
                std::thread::sleep(Duration::from_millis(50));
            }
            (
                request(port, "GET", "/hello", ""),
                request(port, "GET", "/var?name=greeting", ""),
                request(port, "PUT", "/kv/set?store=default&key=k", "v1"),
                request(port, "GET", "/kv/get?store=default&key=k", ""),
            )
        })
        .await
        .unwrap();
        assert_eq!(served.0, (200, "Hello from Wisp\n".to_owned()));
        assert_eq!(served.1, (200, "a greeting: yes".to_owned()));
        assert_eq!(served.2, (200, "stored".to_owned()));
        assert_eq!(served.3, (200, "v1".to_owned()));
        // The runtime config came from the Secret: the default store is where it says.
        assert!(
            data.path().join("kv.db").exists(),
            "no store in the mounted /data"
        );
        // The downward-API budget: half of the 256 MiB limit.
        let log = std::fs::read_to_string(logs.path().join("app.log")).unwrap();
        assert!(
            log.contains("128 MiB memory budget for all (WISP_MEMORY_BUDGET_MB)"),
            "{log}"
        );

        pods.stop_container(cri::StopContainerRequest {
            container_id: container.clone(),
            timeout: 10,
        })
        .await
        .unwrap();
        let stopped = status(&mut pods).await;
        assert_eq!(stopped.state, cri::ContainerState::ContainerExited as i32);
        assert_eq!(stopped.exit_code, 0, "drained and exited 0: {stopped:?}");
        pods.remove_container(cri::RemoveContainerRequest {
            container_id: container.clone(),
        })
        .await
        .unwrap();
        pods.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .unwrap();
        pods.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox,
        })
        .await
        .unwrap();
    });
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the port is closed"
    );
}

/// The app container of the pod `wisp kube scaffold --plain` writes for an image, as
/// kubelet would hand it to the CRI.
struct ScaffoldedPod {
    runtime_handler: String,
    command: Vec<String>,
    env: Vec<(String, String)>,
    /// `(path in the container, host file)`: the Secret's keys written out, as kubelet's
    /// secret volumes do.
    files: Vec<(String, PathBuf)>,
    memory_limit: i64,
    _secrets: tempfile::TempDir,
}

impl ScaffoldedPod {
    const RUNTIME_CONFIG: &str =
        "[key_value_store.default]\ntype = \"spin\"\npath = \"/data/kv.db\"\n";

    fn new(image: &str) -> ScaffoldedPod {
        use base64::Engine as _;
        let objects = wisp_kube::scaffold(&wisp_kube::ScaffoldOptions {
            image: image.to_owned(),
            name: Some("hello".to_owned()),
            replicas: 1,
            autoscaling: None,
            resources: wisp_kube::Resources {
                memory_limit: Some("256Mi".to_owned()),
                ..Default::default()
            },
            variables: vec![("greeting".to_owned(), "a greeting: yes".to_owned())],
            components: Vec::new(),
            image_pull_secrets: Vec::new(),
            runtime_config: Some(Self::RUNTIME_CONFIG.to_owned()),
            runtime_class: "wisp".to_owned(),
            shape: wisp_kube::Shape::Plain,
        })
        .unwrap();
        // Through the YAML users apply, not the values behind it.
        let yaml = wisp_kube::to_yaml(&objects);
        let objects: Vec<serde_json::Value> = serde_norway::Deserializer::from_str(&yaml)
            .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
            .collect();
        let find = |kind: &str| {
            objects
                .iter()
                .find(|o| o["kind"] == kind)
                .unwrap_or_else(|| panic!("no {kind} in:\n{yaml}"))
        };
        let pod = &find("Deployment")["spec"]["template"]["spec"];
        let runtime_class = find("RuntimeClass");
        assert_eq!(pod["runtimeClassName"], runtime_class["metadata"]["name"]);
        let container = &pod["containers"][0];
        let strings = |value: &serde_json::Value| -> Vec<String> {
            value
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect()
        };
        let mebibytes = |quantity: &str| -> u64 {
            quantity
                .strip_suffix("Mi")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("the test reads only `<n>Mi`, got {quantity}"))
        };
        let memory_limit = mebibytes(container["resources"]["limits"]["memory"].as_str().unwrap());
        let env = container["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|var| {
                let name = var["name"].as_str().unwrap().to_owned();
                if let Some(value) = var["value"].as_str() {
                    return (name, value.to_owned());
                }
                let field = &var["valueFrom"]["resourceFieldRef"];
                assert_eq!(field["resource"], "limits.memory", "{var}");
                assert_eq!(field["containerName"], container["name"]);
                let divisor = mebibytes(field["divisor"].as_str().unwrap());
                // Kubelet rounds the quotient up.
                (name, memory_limit.div_ceil(divisor).to_string())
            })
            .collect();

        let secrets = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for mount in container["volumeMounts"].as_array().unwrap() {
            let volume = pod["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == mount["name"])
                .unwrap();
            let secret = objects
                .iter()
                .find(|o| {
                    o["kind"] == "Secret" && o["metadata"]["name"] == volume["secret"]["secretName"]
                })
                .unwrap();
            let key = mount["subPath"].as_str().unwrap();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(secret["data"][key].as_str().unwrap())
                .unwrap();
            let host = secrets.path().join(key);
            std::fs::write(&host, bytes).unwrap();
            files.push((mount["mountPath"].as_str().unwrap().to_owned(), host));
        }
        ScaffoldedPod {
            runtime_handler: runtime_class["handler"].as_str().unwrap().to_owned(),
            command: strings(&container["command"]),
            env,
            files,
            memory_limit: i64::try_from(memory_limit << 20).unwrap(),
            _secrets: secrets,
        }
    }
}
