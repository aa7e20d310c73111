//! Registry credentials: Wisp's own store (written by [`login`]), Docker's config and
//! credential helpers, and the `/v2/` round trip that verifies a login.

use crate::{OciError, Result, io_error};
use base64::Engine as _;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable overriding where [`login`] stores credentials.
pub const AUTH_FILE_ENV: &str = "WISP_REGISTRY_AUTH_FILE";

/// How long a Docker credential helper may take to answer.
const HELPER_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a [`crate::RegistryClient`] gets credentials for each registry it talks to.
#[derive(Debug, Clone)]
pub enum CredentialSource {
    /// Look each registry up in Wisp's store, then in Docker's config; anonymous if neither
    /// has it. The default.
    Stores(CredentialStores),
    /// Use these credentials for every registry.
    Basic {
        /// User name.
        username: String,
        /// Password or token.
        password: String,
    },
    /// Never send credentials.
    Anonymous,
}

impl Default for CredentialSource {
    fn default() -> Self {
        CredentialSource::Stores(CredentialStores::from_env())
    }
}

/// The credential stores consulted, in order, by [`CredentialSource::Stores`].
#[derive(Debug, Clone)]
pub struct CredentialStores {
    /// Wisp's own store, written by [`login`].
    pub wisp: AuthStore,
    /// Docker's `config.json` (`auths`, `credHelpers`, `credsStore`), if any.
    pub docker_config: Option<PathBuf>,
}

impl CredentialStores {
    /// Wisp's store at its default path and Docker's config at `$DOCKER_CONFIG/config.json`
    /// or `~/.docker/config.json`.
    pub fn from_env() -> Self {
        let docker_config = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| home_dir().map(|h| h.join(".docker")))
            .map(|dir| dir.join("config.json"));
        CredentialStores {
            wisp: AuthStore::from_env(),
            docker_config,
        }
    }

    /// Only Wisp's store at `path` (no Docker config): what tests use.
    pub fn wisp_only(path: impl Into<PathBuf>) -> Self {
        CredentialStores {
            wisp: AuthStore::new(path),
            docker_config: None,
        }
    }

    /// Credentials for `registry` (`host[:port]`), if any store has them.
    pub async fn lookup(&self, registry: &str) -> Result<Option<(String, String)>> {
        let key = registry_key(registry);
        if let Some(found) = self.wisp.get(&key)? {
            return Ok(Some(found));
        }
        match &self.docker_config {
            Some(path) => docker_lookup(path, &key).await,
            None => Ok(None),
        }
    }
}

/// Wisp's credential store: a JSON file in Docker's `{"auths": {"<registry>": {"auth":
/// "<base64 user:pass>"}}}` shape, written with mode 0600.
#[derive(Debug, Clone)]
pub struct AuthStore {
    path: PathBuf,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct AuthEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identitytoken: Option<String>,
}

impl AuthStore {
    /// A store at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        AuthStore { path: path.into() }
    }

    /// The store at `$WISP_REGISTRY_AUTH_FILE`, else `$XDG_CONFIG_HOME/wisp/registry-auth.json`,
    /// else `~/.config/wisp/registry-auth.json`.
    pub fn from_env() -> Self {
        if let Some(path) = std::env::var_os(AUTH_FILE_ENV).filter(|p| !p.is_empty()) {
            return AuthStore::new(path);
        }
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| home_dir().map(|h| h.join(".config")))
            .unwrap_or_else(|| PathBuf::from("."));
        AuthStore::new(config.join("wisp").join("registry-auth.json"))
    }

    /// Path of the store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<AuthFile> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| OciError::Credentials {
                path: self.path.display().to_string(),
                message: format!("{e}; fix or delete the file and run `wisp registry login` again"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AuthFile::default()),
            Err(e) => Err(io_error("read", &self.path)(e)),
        }
    }

    /// Stored credentials for `registry`.
    pub fn get(&self, registry: &str) -> Result<Option<(String, String)>> {
        let file = self.read()?;
        let key = registry_key(registry);
        let Some(entry) = file.auths.iter().find(|(k, _)| registry_key(k) == key) else {
            return Ok(None);
        };
        match &entry.1.auth {
            Some(auth) => decode_basic(auth)
                .map(Some)
                .ok_or_else(|| OciError::Credentials {
                    path: self.path.display().to_string(),
                    message: format!(
                        "the entry for {key} is not base64 `user:password`; run `wisp registry login {key}` again"
                    ),
                }),
            None => Ok(None),
        }
    }

    /// Stores credentials for `registry`, replacing any previous ones (file mode 0600).
    pub fn insert(&self, registry: &str, username: &str, password: &str) -> Result<()> {
        let mut file = self.read()?;
        let key = registry_key(registry);
        file.auths.retain(|k, _| registry_key(k) != key);
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        file.auths.insert(
            key,
            AuthEntry {
                auth: Some(auth),
                identitytoken: None,
            },
        );
        self.write(&file)
    }

    /// Removes the credentials for `registry`; returns whether there were any.
    pub fn remove(&self, registry: &str) -> Result<bool> {
        let mut file = self.read()?;
        let key = registry_key(registry);
        let before = file.auths.len();
        file.auths.retain(|k, _| registry_key(k) != key);
        if file.auths.len() == before {
            return Ok(false);
        }
        self.write(&file)?;
        Ok(true)
    }

    fn write(&self, file: &AuthFile) -> Result<()> {
        use std::io::Write as _;
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        create_private_dir(dir)?;
        // NamedTempFile is created with mode 0600 and renamed over the store atomically.
        let mut tmp =
            tempfile::NamedTempFile::new_in(dir).map_err(io_error("create a file in", dir))?;
        let json = serde_json::to_vec_pretty(file).expect("auth file serializes");
        tmp.write_all(&json)
            .map_err(io_error("write", tmp.path().to_path_buf()))?;
        set_private(tmp.path())?;
        tmp.persist(&self.path)
            .map_err(|e| io_error("write", &self.path)(e.error))?;
        Ok(())
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_error("create directory", dir))
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir).map_err(io_error("create directory", dir))
    }
}

fn set_private(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(io_error("set permissions on", path))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// The key a registry is stored under: host[:port], lowercase, without scheme or path;
/// `docker.io` is `index.docker.io` (where Docker Hub's API lives).
pub(crate) fn registry_key(input: &str) -> String {
    let s = input.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or(s).to_ascii_lowercase();
    match host.as_str() {
        "docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "index.docker.io".to_owned()
        }
        _ => host,
    }
}

fn decode_basic(auth: &str) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

#[derive(Debug, Default, serde::Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

async fn docker_lookup(path: &Path, key: &str) -> Result<Option<(String, String)>> {
    let bytes = match tokio::fs::read(path).await {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("read", path)(e)),
    };
    let config: DockerConfig =
        serde_json::from_slice(&bytes).map_err(|e| OciError::Credentials {
            path: path.display().to_string(),
            message: format!(
                "{e}; fix the Docker config or set DOCKER_CONFIG to another directory"
            ),
        })?;
    let server_url = |k: &str| {
        if key == "index.docker.io" {
            "https://index.docker.io/v1/".to_owned()
        } else {
            k.to_owned()
        }
    };
    if let Some((_, helper)) = config
        .cred_helpers
        .iter()
        .find(|(k, _)| registry_key(k) == key)
    {
        return Ok(run_helper(helper, &server_url(key)).await);
    }
    if let Some((_, entry)) = config.auths.iter().find(|(k, _)| registry_key(k) == key)
        && let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty())
    {
        return Ok(decode_basic(auth));
    }
    if let Some(helper) = config.creds_store.as_deref().filter(|h| !h.is_empty()) {
        return Ok(run_helper(helper, &server_url(key)).await);
    }
    Ok(None)
}

/// Runs `docker-credential-<helper> get`; any failure means "no credentials" (with a warning),
/// as Docker itself falls back to anonymous access.
async fn run_helper(helper: &str, server: &str) -> Option<(String, String)> {
    use tokio::io::AsyncWriteExt as _;
    if !helper
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        tracing::warn!(
            helper,
            "ignoring Docker credential helper with an invalid name"
        );
        return None;
    }
    let program = format!("docker-credential-{helper}");
    let mut child = match tokio::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            tracing::warn!(
                "cannot run {program} (named in the Docker config): {e}; continuing without credentials"
            );
            return None;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes()).await;
    }
    let output = match tokio::time::timeout(HELPER_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => {
            tracing::warn!("{program} failed: {e}; continuing without credentials");
            return None;
        }
        Err(_) => {
            tracing::warn!(
                "{program} did not answer within {HELPER_TIMEOUT:?}; continuing without credentials"
            );
            return None;
        }
    };
    if !output.status.success() {
        tracing::debug!(
            "{program} found no credentials for {server}: {}",
            String::from_utf8_lossy(&output.stdout).trim()
        );
        return None;
    }
    #[derive(serde::Deserialize)]
    struct HelperAnswer {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let answer: HelperAnswer = serde_json::from_slice(&output.stdout).ok()?;
    if answer.username == "<token>" {
        tracing::warn!(
            "{program} returned an identity token for {server}, which wisp cannot use; run `wisp registry login`"
        );
        return None;
    }
    Some((answer.username, answer.secret))
}

/// Verifies `username`/`password` against `registry` with a `/v2/` authentication round trip,
/// then stores them in Wisp's store ([`AuthStore::from_env`]).
pub async fn login(registry: &str, username: &str, password: &str, insecure: bool) -> Result<()> {
    login_with_store(
        &AuthStore::from_env(),
        registry,
        username,
        password,
        insecure,
    )
    .await
}

/// [`login`] into the given store.
pub async fn login_with_store(
    store: &AuthStore,
    registry: &str,
    username: &str,
    password: &str,
    insecure: bool,
) -> Result<()> {
    let key = registry_key(registry);
    verify_credentials(&key, username, password, insecure).await?;
    store.insert(&key, username, password)
}

async fn verify_credentials(
    registry: &str,
    username: &str,
    password: &str,
    insecure: bool,
) -> Result<()> {
    let failed = |message: String| OciError::LoginFailed {
        registry: registry.to_owned(),
        username: username.to_owned(),
        message,
    };
    let http = crate::client::http_client().map_err(|e| failed(e.to_string()))?;
    let scheme = if insecure { "http" } else { "https" };
    let url = format!("{scheme}://{registry}/v2/");
    let unreachable = |e: reqwest::Error| {
        failed(format!(
            "cannot reach {url}: {}; check that the registry is running{}",
            crate::client::error_chain(&e),
            if insecure {
                ""
            } else {
                " (for a plain-HTTP registry pass --insecure)"
            }
        ))
    };
    let response = http.get(&url).send().await.map_err(unreachable)?;
    match response.status().as_u16() {
        200 => return Ok(()),
        401 => {}
        status => {
            return Err(failed(format!(
                "{url} answered HTTP {status}; is this an OCI registry?"
            )));
        }
    }
    let challenge = response
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let wrong = || {
        failed(
            "the registry rejected the user name or password; check them and try again".to_owned(),
        )
    };
    let (scheme_name, params) = parse_challenge(&challenge);
    if scheme_name.eq_ignore_ascii_case("bearer") {
        let realm = params.get("realm").ok_or_else(|| {
            failed(format!(
                "the registry's bearer challenge has no realm: `{challenge}`"
            ))
        })?;
        let mut query = vec![("account", username.to_owned())];
        if let Some(service) = params.get("service") {
            query.push(("service", service.clone()));
        }
        let token_response = http
            .get(realm)
            .query(&query)
            .basic_auth(username, Some(password))
            .send()
            .await
            .map_err(unreachable)?;
        match token_response.status().as_u16() {
            200 => Ok(()),
            401 | 403 => Err(wrong()),
            status => Err(failed(format!(
                "the token service {realm} answered HTTP {status}"
            ))),
        }
    } else {
        let response = http
            .get(&url)
            .basic_auth(username, Some(password))
            .send()
            .await
            .map_err(unreachable)?;
        match response.status().as_u16() {
            200 => Ok(()),
            401 | 403 => Err(wrong()),
            status => Err(failed(format!("{url} answered HTTP {status}"))),
        }
    }
}

/// Splits a `WWW-Authenticate` value into its scheme and `key="value"` parameters.
fn parse_challenge(header: &str) -> (String, BTreeMap<String, String>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        params.insert(key, value.to_owned());
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    (scheme.to_owned(), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_keys_are_normalized() {
        assert_eq!(registry_key("https://ghcr.io/"), "ghcr.io");
        assert_eq!(registry_key("LocalHost:5000"), "localhost:5000");
        assert_eq!(registry_key("docker.io"), "index.docker.io");
        assert_eq!(
            registry_key("https://index.docker.io/v1/"),
            "index.docker.io"
        );
    }

    #[test]
    fn challenges_parse() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a:pull""#,
        );
        assert_eq!(scheme, "Bearer");
        assert_eq!(params["realm"], "https://auth.example/token");
        assert_eq!(params["service"], "registry.example");
        let (scheme, params) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(scheme, "Basic");
        assert_eq!(params["realm"], "Registry Realm");
    }

    #[test]
    fn store_round_trips_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let store = AuthStore::new(dir.path().join("sub/registry-auth.json"));
        assert_eq!(store.get("localhost:5000").unwrap(), None);
        store.insert("http://localhost:5000/", "me", "p:w").unwrap();
        assert_eq!(
            store.get("localhost:5000").unwrap(),
            Some(("me".to_owned(), "p:w".to_owned()))
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(store.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(store.remove("localhost:5000").unwrap());
        assert_eq!(store.get("localhost:5000").unwrap(), None);
    }

    #[tokio::test]
    async fn docker_config_auths_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("u:p");
        std::fs::write(
            &config,
            format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},"ghcr.io":{{}}}}}}"#),
        )
        .unwrap();
        let stores = CredentialStores {
            wisp: AuthStore::new(dir.path().join("none.json")),
            docker_config: Some(config),
        };
        assert_eq!(
            stores.lookup("docker.io").await.unwrap(),
            Some(("u".to_owned(), "p".to_owned()))
        );
        assert_eq!(stores.lookup("ghcr.io").await.unwrap(), None);
        assert_eq!(stores.lookup("quay.io").await.unwrap(), None);
    }
}
