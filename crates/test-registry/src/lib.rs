//! A real registry for tests: Debian's `docker-registry` (distribution v2) on a free
//! loopback port, with htpasswd basic auth when a test asks for it. Used by the OCI
//! crate's and the CLI's test binaries.
//!
//! Needs `docker-registry` and `apache2-utils` (`htpasswd`):
//! `apt-get install -y docker-registry apache2-utils`. A missing binary fails the test.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to install what the registry needs, for failure messages.
pub const INSTALL_HINT: &str =
    "install it with `apt-get install -y docker-registry apache2-utils` (.ci/run does this)";

/// A `docker-registry serve` process on 127.0.0.1, killed on drop.
#[derive(Debug)]
pub struct Registry {
    child: Option<Child>,
    /// `127.0.0.1:<port>`.
    pub host: String,
    storage: tempfile::TempDir,
    _config: tempfile::TempDir,
}

impl Registry {
    /// A registry without authentication.
    pub fn start() -> Registry {
        Registry::start_with(None)
    }

    /// A registry that admits only `user` with `password` (basic auth).
    pub fn start_with_auth(user: &str, password: &str) -> Registry {
        Registry::start_with(Some((user, password)))
    }

    fn start_with(auth: Option<(&str, &str)>) -> Registry {
        let storage = tempfile::tempdir().unwrap();
        let config_dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let host = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
            storage.path().display()
        );
        if let Some((user, password)) = auth {
            let output = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .unwrap_or_else(|e| panic!("cannot run `htpasswd` ({e}); {INSTALL_HINT}"));
            assert!(output.status.success(), "htpasswd failed: {output:?}");
            let htpasswd = config_dir.path().join("htpasswd");
            std::fs::write(&htpasswd, &output.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: wisp-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = config_dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `docker-registry` ({e}); {INSTALL_HINT}"));
        let mut registry = Registry {
            child: Some(child),
            host,
            storage,
            _config: config_dir,
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let child = self.child.as_mut().unwrap();
            if let Some(status) = child.try_wait().unwrap() {
                let mut stderr = String::new();
                let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
                panic!("docker-registry exited with {status} before serving:\n{stderr}");
            }
            if self.answers() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer /v2/ on {} within 30s",
                self.host
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether `/v2/` answers (200, or 401 with auth).
    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(&self.host) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!(
            "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.host
        );
        let mut answer = String::new();
        stream.write_all(request.as_bytes()).is_ok()
            && stream.read_to_string(&mut answer).is_ok()
            && (answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.1 401"))
    }

    /// Where distribution's filesystem driver keeps a blob's bytes.
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.storage
            .path()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Stops the registry (its storage stays until drop).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}
