//! Test support: spawn the real `wisp` binary on port 0 and talk HTTP/1.1 to it.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `wisp` command that ignores the developer's `WISP_MANIFEST` (tests say which app
/// they mean).
pub fn wisp_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wisp"));
    command.env_remove("WISP_MANIFEST");
    command
}

/// Runs `wisp <args>` to completion (in `dir`, if given).
pub fn run_wisp(args: &[&str], dir: Option<&Path>) -> std::process::Output {
    let mut command = wisp_command();
    command.args(args);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    command.output().expect("run wisp")
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay as they are).
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A name no other test (or earlier run) uses: `<prefix>-<pid>-<nanoseconds>`.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Compiled code shared by all tests, so each guest is compiled once per test run.
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("wisp-compile-cache")
}

/// A running `wisp up`, stopped (SIGTERM) on drop.
pub struct Wisp {
    child: Option<Child>,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
}

fn pipe_to(reader: impl Read + Send + 'static, sink: Arc<Mutex<String>>) {
    pipe_lines_to(BufReader::new(reader), sink);
}

/// Like [`pipe_to`] for a reader that may already hold buffered lines (they are kept).
fn pipe_lines_to(reader: impl BufRead + Send + 'static, sink: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            sink.lock().unwrap().push_str(&format!("{line}\n"));
        }
    });
}

impl Wisp {
    /// `wisp up <args> --listen 127.0.0.1:0`, waiting until it listens.
    pub fn up(args: &[&str]) -> Wisp {
        Self::try_up(args).unwrap_or_else(|(status, stderr)| {
            panic!("wisp up {args:?} exited with {status}:\n{stderr}")
        })
    }

    /// Like [`Wisp::up`], but returns the exit status and stderr if it stops before listening.
    pub fn try_up(args: &[&str]) -> Result<Wisp, (ExitStatus, String)> {
        let mut command = wisp_command();
        command.arg("up").args(args);
        Self::spawn(command)
    }

    /// Spawns a prepared `wisp up` command (possibly behind a wrapper such as `sh -c`).
    #[expect(
        clippy::zombie_processes,
        reason = "the child moves into `Wisp`, whose Drop kills and waits for it"
    )]
    pub fn spawn(mut command: Command) -> Result<Wisp, (ExitStatus, String)> {
        // The developer's log level must not change what tests see, unless the test
        // itself asks for one.
        if !command.get_envs().any(|(name, _)| name == "WISP_LOG") {
            command.env_remove("WISP_LOG");
        }
        // Likewise the shared compile cache, unless the test brings its own.
        if !command.get_envs().any(|(name, _)| name == "WISP_CACHE_DIR") {
            command.env("WISP_CACHE_DIR", cache_dir());
        }
        command
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn wisp");
        let stdout = Arc::new(Mutex::new(String::new()));
        pipe_to(child.stdout.take().unwrap(), stdout.clone());
        let mut stderr_lines = BufReader::new(child.stderr.take().unwrap());
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut line = String::new();
        loop {
            line.clear();
            let read = stderr_lines.read_line(&mut line).expect("read wisp stderr");
            if read == 0 {
                let status = child.wait().expect("wait for wisp");
                return Err((status, stderr.lock().unwrap().clone()));
            }
            stderr.lock().unwrap().push_str(&line);
            let listening = line.trim().strip_prefix("Listening on http://");
            let listening = listening.or_else(|| line.trim().strip_prefix("Listening on https://"));
            let ready = match listening {
                Some(addr) => Some(addr.parse().expect("listening address")),
                // An app without HTTP triggers listens on nothing.
                None if line.starts_with("Running (no HTTP triggers)") => {
                    Some(SocketAddr::from(([0, 0, 0, 0], 0)))
                }
                None => None,
            };
            if let Some(addr) = ready {
                // The reader keeps what it already buffered past the ready line.
                pipe_lines_to(stderr_lines, stderr.clone());
                return Ok(Wisp {
                    child: Some(child),
                    addr,
                    stderr,
                    stdout,
                });
            }
        }
    }

    pub fn get(&self, path: &str) -> HttpResponse {
        request(self.addr, "GET", path, &[], b"")
    }

    /// Everything wisp wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until stderr (or stdout) contains `needle`.
    pub fn wait_for_output(&self, needle: &str) -> bool {
        self.wait_for_output_within(needle, Duration::from_secs(10))
    }

    /// Waits up to `timeout` until stderr (or stdout) contains `needle`.
    pub fn wait_for_output_within(&self, needle: &str, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.stderr().contains(needle) || self.stdout().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Sends SIGTERM and waits for exit.
    pub fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        terminate(&child);
        wait_timeout(&mut child, Duration::from_secs(20)).expect("wisp did not stop after SIGTERM")
    }

    /// Sends SIGTERM and asserts that wisp drained and exited 0; on failure the message
    /// has the exit status and everything wisp wrote. Returns its stderr.
    pub fn stop_cleanly(mut self) -> String {
        let mut child = self.child.take().unwrap();
        terminate(&child);
        let status = wait_timeout(&mut child, Duration::from_secs(20))
            .expect("wisp did not stop after SIGTERM");
        // The reader threads finish once the pipes close with the process.
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            status.success(),
            "wisp exited with {status} after SIGTERM\nstderr:\n{}\nstdout:\n{}",
            self.stderr(),
            self.stdout()
        );
        self.stderr()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Waits for an exit already asked for (e.g. by [`terminate_pid`]).
    pub fn stop_waiting(mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        wait_timeout(&mut child, timeout).expect("wisp did not exit in time")
    }
}

impl Drop for Wisp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A child process that is killed and reaped when dropped, so a failing test leaves no
/// server running behind it.
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn terminate(child: &Child) {
    terminate_pid(child.id());
}

/// Sends SIGTERM to `pid`.
pub fn terminate_pid(pid: u32) {
    signal(pid, "-TERM");
}

/// Sends the signal `kill` names `signal` (`-HUP`, `-TERM`) to `pid`.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lowercased, in wire order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the body ended as the head announced (the last chunk, or `content-length`
    /// bytes): a server killed mid-response leaves a 200 with a cut-off body.
    pub complete: bool,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        names
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    try_request(addr, method, path, headers, body).unwrap_or_else(|e| panic!("{e}"))
}

/// Like [`request`], but a refused connection, a reset or a truncated response is an
/// `Err` describing it (for tests that count failures under load).
#[allow(dead_code)]
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect to wisp: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    // A test that sends its own Host (the node routes by it) replaces the default one.
    let mut head = match headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        true => format!("{method} {path} HTTP/1.1\r\nconnection: close\r\n"),
        false => format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n"),
    };
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .map_err(|e| format!("send to wisp: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read response: {e}"))?;
    if !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        return Err(format!(
            "incomplete response: {:?}",
            String::from_utf8_lossy(&raw)
        ));
    }
    Ok(parse_response(&raw))
}

fn parse_response(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..split]).expect("utf-8 head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header line");
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let (body, complete) = if chunked {
        dechunk(rest)
    } else {
        let announced = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok());
        (
            rest.to_vec(),
            announced.is_none_or(|length| rest.len() == length),
        )
    };
    HttpResponse {
        status,
        headers,
        body,
        complete,
    }
}

/// The body of a chunked message, and whether its last chunk arrived.
fn dechunk(mut data: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return (out, false);
        };
        let size_text = std::str::from_utf8(&data[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .expect("chunk size");
        data = &data[line_end + 2..];
        if size == 0 {
            return (out, true);
        }
        let Some(chunk) = data.get(..size) else {
            out.extend_from_slice(data);
            return (out, false);
        };
        out.extend_from_slice(chunk);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

/// Writes `spin.toml` (and any extra files) into a fresh temp dir.
pub fn app_dir(manifest: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("spin.toml"), manifest).unwrap();
    dir
}

/// A TOML string literal for a path.
pub fn toml_path(path: &str) -> String {
    format!("{path:?}")
}

/// A manifest with one component `id` (from `source`) on `route`; `extra` lines go into the
/// component's table.
pub fn manifest_one(route: &str, id: &str, source: &str, extra: &str) -> String {
    format!(
        r#"spin_manifest_version = 2
[application]
name = "test-app"

[[trigger.http]]
route = "{route}"
component = "{id}"

[component.{id}]
source = {source}
{extra}
"#,
        source = toml_path(source)
    )
}

/// Builds `examples/<name>` (its own Cargo workspace) for wasm32-wasip2 in release, as
/// its README says, and returns the example's directory.
pub fn build_example(name: &str) -> PathBuf {
    let example = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(example.join("Cargo.toml"))
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .unwrap_or_else(|e| panic!("run cargo to build examples/{name}: {e}"));
    assert!(
        status.success(),
        "building examples/{name} failed; run `rustup target add wasm32-wasip2`"
    );
    example
}

/// A virtualenv with the Python Spin SDK and componentize-py at pinned versions,
/// created once under the target directory (PyPI is one of this project's registries).
#[allow(dead_code)]
pub fn python_sdk_venv() -> PathBuf {
    python_venv(
        "python-sdk-venv",
        &["spin-sdk==3.4.1", "componentize-py==0.17.2"],
    )
}

/// A venv under the test target directory named `name` with `packages` installed from
/// the machine's Python package index (pip's own configuration), made once.
pub fn python_venv(name: &str, packages: &[&str]) -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let ready = venv.join(format!(".wisp-ready-{}", packages.join("-")));
    if ready.exists() {
        return venv;
    }
    let run = |command: &mut Command, what: &str| {
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("{what}: {e}; install python3 with the venv module"));
        assert!(
            output.status.success(),
            "{what} failed (needs python3 -m venv and access to PyPI):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
    );
    run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(packages),
        "pip install",
    );
    std::fs::write(&ready, "").unwrap();
    venv
}

/// Builds the Python app in `app_dir` (its `app.py`) into `app.wasm` with the venv's
/// componentize-py for `world`, as a Python SDK user's `spin build` does.
pub fn componentize_python(venv: &Path, world: &str, app_dir: &Path) {
    let site_packages = std::fs::read_dir(venv.join("lib"))
        .unwrap()
        .map(|entry| entry.unwrap().path().join("site-packages"))
        .find(|path| path.is_dir())
        .expect("the venv has a site-packages directory");
    let output = Command::new(venv.join("bin/componentize-py"))
        .args(["-w", world, "componentize", "app", "-p", "."])
        .arg("-p")
        .arg(&site_packages)
        .args(["-o", "app.wasm"])
        .current_dir(app_dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "componentize-py failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The directory holding `go` (1.25+) and `wasm-tools` for the http-go template, as
/// `scripts/install-go.sh` installs them (`$WISP_TOOLS_DIR`, default ~/.cache/wisp/tools).
pub fn go_tools_bin() -> PathBuf {
    let root = std::env::var_os("WISP_TOOLS_DIR").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/wisp/tools"),
        PathBuf::from,
    );
    let bin = root.join("bin");
    assert!(
        bin.join("go").is_file() && bin.join("wasm-tools").is_file(),
        "no Go toolchain and wasm-tools under {}; run scripts/install-go.sh",
        bin.display()
    );
    bin
}

/// A CA and certificates it signs, made with the `openssl` command in `dir`.
pub struct TestCa {
    pub dir: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path) -> TestCa {
        let ca = TestCa {
            dir: dir.to_path_buf(),
        };
        ca.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=wisp-test-ca",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        ca
    }

    fn openssl(&self, args: &[&str]) {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("openssl runs (scripts/test.sh installs it)");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `<name>.pem` and `<name>-key.pem`, for `localhost`, with extended key usage
    /// `usage` (`serverAuth` or `clientAuth`).
    pub fn issue(&self, name: &str, usage: &str) -> (PathBuf, PathBuf) {
        let ext = format!("{name}.ext");
        std::fs::write(
            self.dir.join(&ext),
            format!("subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n"),
        )
        .unwrap();
        let (key, csr, cert) = (
            format!("{name}-key.pem"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &key,
            "-out",
            &csr,
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &cert,
            "-extfile",
            &ext,
        ]);
        (self.dir.join(cert), self.dir.join(key))
    }
}

/// The CA that signed the certificate of `scripts/test-services.sh`'s TLS listeners
/// (PostgreSQL, Redis on :6380), issued for `localhost` only.
pub fn services_ca() -> PathBuf {
    let dir = std::env::var("WISP_TEST_SERVICES_DIR")
        .unwrap_or_else(|_| "/tmp/wisp-test-services".to_owned());
    let ca = Path::new(&dir).join("tls/ca.pem");
    assert!(
        ca.is_file(),
        "no test CA at {}: run scripts/test-services.sh",
        ca.display()
    );
    ca
}

/// What [`Upstream`] answers a path with: status line, extra header lines (each ending in
/// `\r\n`) and body.
pub type Answer = (&'static str, String, Vec<u8>);

/// A tiny HTTP/1.1 server on 127.0.0.1:0 that counts connections and answers each
/// request with `answer(path)`, then closes the connection.
pub struct Upstream {
    pub addr: SocketAddr,
    accepts: Arc<std::sync::atomic::AtomicUsize>,
}

impl Upstream {
    pub fn start(answer: fn(&str) -> Answer) -> Upstream {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepts.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                counter.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || Self::serve(stream, answer));
            }
        });
        Upstream { addr, accepts }
    }

    fn serve(stream: TcpStream, answer: fn(&str) -> Answer) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let mut reader = BufReader::new(&stream);
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).is_err() {
            return;
        }
        // Skip the headers; the requests sent here have no body.
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" || line == "\n" => break,
                Ok(_) => {}
            }
        }
        let (status, headers, body) = answer(request_line.split(' ').nth(1).unwrap_or("/"));
        let head = format!(
            "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = (&stream)
            .write_all(head.as_bytes())
            .and_then(|()| (&stream).write_all(&body));
    }

    /// `http://127.0.0.1:<port>`, as `allowed_outbound_hosts` lists it.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    /// The connections accepted so far.
    pub fn accepts(&self) -> usize {
        self.accepts.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A minimal RESP client: one connection to the Redis at `url`
/// (`redis://[:password@]host:port[/db]`).
pub struct Redis {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Redis {
    pub fn connect(url: &str) -> Result<Redis, String> {
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| format!("{url} is not a redis:// URL"))?;
        let (credentials, rest) = match rest.rsplit_once('@') {
            Some((credentials, rest)) => (Some(credentials), rest),
            None => (None, rest),
        };
        let (host_port, db) = rest.split_once('/').unwrap_or((rest, "0"));
        let host_port = if host_port.contains(':') {
            host_port.to_owned()
        } else {
            format!("{host_port}:6379")
        };
        let addr: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(&host_port)
            .map_err(|e| format!("resolving {host_port}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host_port} has no address"))?;
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut redis = Redis {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        if let Some(credentials) = credentials {
            let password = credentials.rsplit(':').next().unwrap_or(credentials);
            redis.command(&["AUTH", password])?;
        }
        let db = if db.is_empty() { "0" } else { db };
        redis.command(&["SELECT", db])?;
        Ok(redis)
    }

    /// Sends one command; returns a bulk string's bytes (`None` for nil), or
    /// the text of a simple-string or integer reply.
    pub fn command(&mut self, args: &[&str]) -> Result<Option<Vec<u8>>, String> {
        let mut out = format!("*{}\r\n", args.len());
        for arg in args {
            out.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        self.writer
            .write_all(out.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let line = line.trim_end();
        match line.split_at(1.min(line.len())) {
            ("+" | ":", text) => Ok(Some(text.as_bytes().to_vec())),
            ("-", error) => Err(format!("redis {args:?}: {error}")),
            ("$", "-1") => Ok(None),
            ("$", len) => {
                let len: usize = len.parse().map_err(|_| format!("bad reply {line:?}"))?;
                let mut data = vec![0; len + 2];
                self.reader
                    .read_exact(&mut data)
                    .map_err(|e| e.to_string())?;
                data.truncate(len);
                Ok(Some(data))
            }
            _ => Err(format!("unexpected reply {line:?}")),
        }
    }
}

/// Headless Chromium (Debian's `chromium`, installed by `scripts/test-services.sh`) run
/// on `url` with `args` (`--dump-dom`, `--screenshot=…`), its JavaScript given `budget_ms`
/// of virtual time; returns what it printed. Its profile lives in a temporary directory.
#[allow(dead_code)]
pub fn chromium(url: &str, budget_ms: u32, args: &[&str]) -> String {
    let binary = installed(&["chromium", "/usr/bin/chromium"], "chromium");
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new(binary)
        .args([
            "--headless",
            // Tests run as root here, where Chromium's sandbox cannot start.
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--virtual-time-budget={budget_ms}"),
        ])
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("run chromium");
    assert!(
        output.status.success(),
        "chromium {url} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The `<tr>` start tags of the rendered page whose attributes include `needle`.
#[allow(dead_code)]
pub fn rows_with<'a>(dom: &'a str, needle: &str) -> Vec<&'a str> {
    dom.split("<tr ")
        .skip(1)
        .filter(|row| {
            row.split('>')
                .next()
                .is_some_and(|tag| tag.contains(needle))
        })
        .collect()
}

/// The first of `candidates` that runs `--version`; fails naming the Debian `package`
/// that `scripts/test-services.sh` installs.
#[allow(dead_code)]
pub fn installed(candidates: &[&str], package: &str) -> String {
    candidates
        .iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|b| (*b).to_owned())
        .unwrap_or_else(|| {
            panic!("{package} is not installed; run scripts/test-services.sh (Debian package `{package}`)")
        })
}
