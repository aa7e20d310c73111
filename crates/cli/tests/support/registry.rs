//! A real registry for tests: Debian's `docker-registry` (distribution v2) with htpasswd
//! basic auth on a free loopback port.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str =
    "install it with `apt-get install -y docker-registry apache2-utils` (.ci/run does this)";

/// A `docker-registry serve` process on 127.0.0.1 with basic auth, killed on drop.
pub struct Registry {
    child: Child,
    pub host: String,
    _dirs: [tempfile::TempDir; 2],
}

impl Registry {
    pub fn start(user: &str, password: &str) -> Registry {
        let storage = tempfile::tempdir().unwrap();
        let config_dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let host = format!("127.0.0.1:{port}");
        let htpasswd = Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .unwrap_or_else(|e| panic!("cannot run `htpasswd` ({e}); {INSTALL_HINT}"));
        assert!(htpasswd.status.success(), "htpasswd failed: {htpasswd:?}");
        let htpasswd_path = config_dir.path().join("htpasswd");
        std::fs::write(&htpasswd_path, &htpasswd.stdout).unwrap();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\nauth:\n  htpasswd:\n    realm: wisp-test\n    path: {}\n",
            storage.path().display(),
            htpasswd_path.display()
        );
        let config_path = config_dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `docker-registry` ({e}); {INSTALL_HINT}"));
        let registry = Registry {
            child,
            host,
            _dirs: [storage, config_dir],
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !registry.answers() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer /v2/ on {} within 30s",
                registry.host
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

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
            && answer.starts_with("HTTP/1.1 401")
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}
