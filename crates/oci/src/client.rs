//! [`RegistryClient`]: the registry operations push and pull need, on top of `oci-client`,
//! with credentials resolved per registry and errors that say what to do.

use crate::auth::CredentialSource;
use crate::cache::Cache;
use crate::{OciError, Reference, Result, io_error};
use bytes::Bytes;
use futures::StreamExt as _;
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Media types accepted when fetching a manifest.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Size of each chunk read from disk and sent to the registry.
const UPLOAD_CHUNK: usize = 4 * 1024 * 1024;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// How a [`RegistryClient`] connects.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Talk plain HTTP instead of HTTPS (for local registries).
    pub insecure: bool,
    /// Where credentials come from.
    pub credentials: CredentialSource,
}

/// A client for OCI registries, shared by [`crate::push`] and [`crate::pull`].
pub struct RegistryClient {
    oci: Client,
    http: reqwest::Client,
    options: ClientOptions,
    auths: tokio::sync::Mutex<HashMap<String, RegistryAuth>>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("insecure", &self.options.insecure)
            .finish_non_exhaustive()
    }
}

/// Installs the process-wide rustls crypto provider (ring) if none is installed yet.
fn ensure_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whether the system's certificate authorities load; checked once. `oci-client` builds a
/// default HTTP client inside every client it makes (plain-HTTP ones too), and that one
/// panics where the system has no CA bundle, so [`RegistryClient::new`] refuses first.
fn system_roots_usable() -> std::result::Result<(), &'static String> {
    static CHECKED: std::sync::OnceLock<std::result::Result<(), String>> =
        std::sync::OnceLock::new();
    CHECKED
        .get_or_init(|| {
            ensure_crypto_provider();
            reqwest::Client::builder().build().map(drop).map_err(|e| {
                format!(
                    "{}: registry access needs the system's certificate authorities; install the ca-certificates package, or set SSL_CERT_FILE to a PEM bundle",
                    error_chain(&e)
                )
            })
        })
        .as_ref()
        .map(|_| ())
}

/// A plain reqwest client with Wisp's timeouts (for requests `oci-client` does not expose,
/// and components fetched by URL), trusting the system's certificate authorities, or the
/// bundled Mozilla roots where the system has none (a container image without a CA bundle).
pub(crate) fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    ensure_crypto_provider();
    let builder = || {
        reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("wisp/", env!("CARGO_PKG_VERSION")))
    };
    if system_roots_usable().is_ok() {
        return builder().build();
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    builder().tls_backend_preconfigured(tls).build()
}

/// An error and its sources on one line, joined with `: `, skipping a source whose text
/// its parent already includes.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

impl RegistryClient {
    /// A client with the given options.
    pub fn new(options: ClientOptions) -> Result<Self> {
        ensure_crypto_provider();
        let protocol = if options.insecure {
            oci_client::client::ClientProtocol::Http
        } else {
            oci_client::client::ClientProtocol::Https
        };
        system_roots_usable().map_err(|message| OciError::ClientSetup {
            message: message.clone(),
        })?;
        let oci = Client::new(oci_client::client::ClientConfig {
            protocol,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            // A registry answering with an index gets a clear error from us instead.
            platform_resolver: None,
            ..Default::default()
        });
        let http = http_client().map_err(|e| OciError::ClientSetup {
            message: error_chain(&e),
        })?;
        Ok(RegistryClient {
            oci,
            http,
            options,
            auths: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Whether this client talks plain HTTP.
    pub fn insecure(&self) -> bool {
        self.options.insecure
    }

    /// Resolves (once per registry) and registers the credentials for `reference`.
    async fn prepare(&self, reference: &Reference) -> Result<RegistryAuth> {
        let registry = reference.resolve_registry().to_owned();
        let mut auths = self.auths.lock().await;
        if let Some(auth) = auths.get(&registry) {
            return Ok(auth.clone());
        }
        let auth = match &self.options.credentials {
            CredentialSource::Anonymous => RegistryAuth::Anonymous,
            CredentialSource::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            CredentialSource::Stores(stores) => match stores.lookup(&registry).await? {
                Some((user, pass)) => RegistryAuth::Basic(user, pass),
                None => RegistryAuth::Anonymous,
            },
        };
        self.oci.store_auth_if_needed(&registry, &auth).await;
        auths.insert(registry, auth.clone());
        Ok(auth)
    }

    /// Maps an `oci-client` error to ours, recognising authorization and not-found answers.
    fn map_error(
        &self,
        error: OciDistributionError,
        reference: &Reference,
        operation: &'static str,
    ) -> OciError {
        let unauthorized = || OciError::Unauthorized {
            registry: reference.registry().to_owned(),
            reference: reference.to_string(),
        };
        match &error {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => return unauthorized(),
            OciDistributionError::RegistryError { envelope, .. } => {
                if envelope
                    .errors
                    .iter()
                    .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    return unauthorized();
                }
                if envelope.errors.iter().any(|e| {
                    matches!(
                        e.code,
                        OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown
                    )
                }) && operation == "manifest pull"
                {
                    return OciError::NotFound {
                        reference: reference.to_string(),
                    };
                }
            }
            OciDistributionError::ServerError {
                code: 401 | 403, ..
            } => return unauthorized(),
            OciDistributionError::RequestError(e)
                if matches!(e.status().map(|s| s.as_u16()), Some(401 | 403)) =>
            {
                return unauthorized();
            }
            _ => {}
        }
        self.registry_error(&error, reference, operation)
    }

    fn registry_error(
        &self,
        error: &dyn std::error::Error,
        reference: &Reference,
        operation: &'static str,
    ) -> OciError {
        let mut message = error_chain(error);
        let lower = message.to_ascii_lowercase();
        if ["connect", "sending request", "dns", "timed out"]
            .iter()
            .any(|hint| lower.contains(hint))
        {
            message.push_str("; check that the registry is running and reachable");
            if !self.options.insecure {
                message.push_str(" (for a plain-HTTP registry pass --insecure)");
            }
        }
        OciError::Registry {
            reference: reference.to_string(),
            operation,
            message,
        }
    }

    /// Whether the registry already has the blob `digest` in `reference`'s repository.
    pub(crate) async fn blob_exists(&self, reference: &Reference, digest: &str) -> Result<bool> {
        self.prepare(reference).await?;
        self.oci
            .blob_exists(reference.as_oci(), digest)
            .await
            .map_err(|e| self.map_error(e, reference, "blob check"))
    }

    /// Uploads in-memory bytes as the blob `digest`.
    pub(crate) async fn upload_bytes(
        &self,
        reference: &Reference,
        data: Vec<u8>,
        digest: &str,
    ) -> Result<()> {
        self.prepare(reference).await?;
        self.oci
            .push_blob(reference.as_oci(), data, digest)
            .await
            .map_err(|e| self.map_error(e, reference, "blob upload"))?;
        Ok(())
    }

    /// Streams the file at `path` to the registry as the blob `digest`, calling `sent` with
    /// the running byte count after each chunk.
    pub(crate) async fn upload_file(
        &self,
        reference: &Reference,
        path: &Path,
        digest: &str,
        sent: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<()> {
        self.prepare(reference).await?;
        let file = tokio::fs::File::open(path)
            .await
            .map_err(io_error("open", path))?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let stream =
            futures::stream::unfold((file, 0u64, tx), |(mut file, total, tx)| async move {
                use tokio::io::AsyncReadExt as _;
                let mut buf = bytes::BytesMut::with_capacity(UPLOAD_CHUNK);
                while buf.len() < UPLOAD_CHUNK {
                    match file.read_buf(&mut buf).await {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) => {
                            return Some((
                                Err(OciDistributionError::IoError(e)),
                                (file, total, tx),
                            ));
                        }
                    }
                }
                if buf.is_empty() {
                    return None;
                }
                let total = total + buf.len() as u64;
                let _ = tx.send(total);
                Some((Ok::<Bytes, _>(buf.freeze()), (file, total, tx)))
            });
        let upload = self
            .oci
            .push_blob_stream(reference.as_oci(), stream, digest, None);
        let report = async {
            while let Some(total) = rx.recv().await {
                sent(total);
            }
        };
        let (result, ()) = tokio::join!(upload, report);
        result.map_err(|e| self.map_error(e, reference, "blob upload"))?;
        Ok(())
    }

    /// Puts an image manifest under `reference`'s tag (or digest).
    pub(crate) async fn put_manifest(&self, reference: &Reference, body: Vec<u8>) -> Result<()> {
        self.prepare(reference).await?;
        let content_type =
            reqwest::header::HeaderValue::from_static(crate::OCI_MANIFEST_MEDIA_TYPE);
        self.oci
            .push_manifest_raw(reference.as_oci(), body, content_type)
            .await
            .map_err(|e| self.map_error(e, reference, "manifest upload"))?;
        Ok(())
    }

    /// Fetches the manifest for `reference`, refusing more than [`crate::MAX_MANIFEST_SIZE`]
    /// bytes. Returns the body, its media type and its digest (checked against a pinned one).
    pub(crate) async fn fetch_manifest(
        &self,
        reference: &Reference,
    ) -> Result<(Vec<u8>, Option<String>, String)> {
        let auth = self.prepare(reference).await?;
        let token = self
            .oci
            .auth(reference.as_oci(), &auth, RegistryOperation::Pull)
            .await
            .map_err(|e| self.map_error(e, reference, "manifest pull"))?;
        let scheme = if self.options.insecure {
            "http"
        } else {
            "https"
        };
        let target = reference.digest().or(reference.tag()).unwrap_or("latest");
        let url = format!(
            "{scheme}://{}/v2/{}/manifests/{target}",
            reference.resolve_registry(),
            reference.repository()
        );
        let mut request = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, MANIFEST_ACCEPT);
        request = match (&token, &auth) {
            (Some(token), _) => request.bearer_auth(token),
            (None, RegistryAuth::Basic(user, pass)) => request.basic_auth(user, Some(pass)),
            (None, RegistryAuth::Bearer(token)) => request.bearer_auth(token),
            (None, RegistryAuth::Anonymous) => request,
        };
        let mut response = request
            .send()
            .await
            .map_err(|e| self.registry_error(&e, reference, "manifest pull"))?;
        match response.status().as_u16() {
            200 => {}
            401 | 403 => {
                return Err(OciError::Unauthorized {
                    registry: reference.registry().to_owned(),
                    reference: reference.to_string(),
                });
            }
            404 => {
                return Err(OciError::NotFound {
                    reference: reference.to_string(),
                });
            }
            status => {
                let body = response.text().await.unwrap_or_default();
                return Err(OciError::Registry {
                    reference: reference.to_string(),
                    operation: "manifest pull",
                    message: format!(
                        "HTTP {status}: {}",
                        body.chars().take(500).collect::<String>()
                    ),
                });
            }
        }
        let too_large = |size: u64| OciError::TooLarge {
            what: "manifest",
            digest: reference.to_string(),
            size,
            limit: crate::MAX_MANIFEST_SIZE,
        };
        if let Some(len) = response.content_length()
            && len > crate::MAX_MANIFEST_SIZE
        {
            return Err(too_large(len));
        }
        let media_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.registry_error(&e, reference, "manifest pull"))?
        {
            body.extend_from_slice(&chunk);
            if body.len() as u64 > crate::MAX_MANIFEST_SIZE {
                return Err(too_large(body.len() as u64));
            }
        }
        let digest = wisp_app::sha256_digest(&body);
        if let Some(pinned) = reference.digest()
            && pinned != digest
        {
            return Err(OciError::DigestMismatch {
                what: "manifest",
                digest: pinned.to_owned(),
                actual: digest,
            });
        }
        Ok((body, media_type, digest))
    }

    /// Every tag of `reference`'s repository (the registry's first page of up to 1,000).
    pub(crate) async fn list_tags(&self, reference: &Reference) -> Result<Vec<String>> {
        let auth = self.prepare(reference).await?;
        let response = self
            .oci
            .list_tags(reference.as_oci(), &auth, Some(1000), None)
            .await
            .map_err(|e| self.map_error(e, reference, "tag list"))?;
        Ok(response.tags)
    }

    /// Downloads the blob `desc` into `cache`, verifying its digest while it streams to disk.
    /// Returns the cached path; a blob already cached is not downloaded again.
    pub(crate) async fn download_blob(
        &self,
        reference: &Reference,
        desc: &OciDescriptor,
        cache: &Cache,
    ) -> Result<PathBuf> {
        let path = cache.blob_path(&desc.digest)?;
        match std::fs::metadata(&path) {
            // A cached blob was verified when it was stored; one of the wrong length was
            // damaged since, so fetch it again.
            Ok(meta) if meta.is_file() && i64::try_from(meta.len()).ok() == Some(desc.size) => {
                return Ok(path);
            }
            Ok(_) => {
                tracing::warn!(
                    "cached blob {} has the wrong size; fetching it again",
                    desc.digest
                );
                let _ = std::fs::remove_file(&path);
            }
            Err(_) => {}
        }
        self.prepare(reference).await?;
        let declared = u64::try_from(desc.size).unwrap_or(0);
        // Only the registry is asked for blobs: a descriptor's `urls` (which oci-client
        // would fetch on a registry error) could point anywhere.
        let mut desc = desc.clone();
        desc.urls = None;
        let mut stream = self
            .oci
            .pull_blob_stream(reference.as_oci(), &desc)
            .await
            .map_err(|e| self.map_error(e, reference, "blob pull"))?;
        let mut writer = cache.blob_writer(&desc.digest).await?;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => {
                    writer.write(&chunk).await?;
                    if writer.len() > declared {
                        return Err(OciError::TooLarge {
                            what: "layer",
                            digest: desc.digest.clone(),
                            size: writer.len(),
                            limit: declared,
                        });
                    }
                }
                Err(e) => {
                    // oci-client verifies too and reports a mismatch at the end of the stream;
                    // report it as ours, naming the layer.
                    let is_digest_error = e
                        .get_ref()
                        .is_some_and(|inner| inner.is::<oci_client::errors::DigestError>());
                    if is_digest_error {
                        return Err(OciError::DigestMismatch {
                            what: "layer",
                            digest: desc.digest.clone(),
                            actual: writer.digest_so_far(),
                        });
                    }
                    return Err(self.registry_error(&e, reference, "blob pull"));
                }
            }
        }
        writer.finish().await
    }
}
