//! Spin-compatible OCI artifacts: push a [`LockedApp`] to a registry, pull one back.
//!
//! This crate sits beside the LockedApp in the data path: `wisp registry push` turns a
//! resolved app into an OCI artifact, and `wisp registry pull` / `wisp up --from` turn an
//! artifact back into a [`LockedApp`] whose sources are files in a local content-addressed
//! [`Cache`]. Everything downstream runs the pulled app exactly like a local one: the same
//! [`LockedApp::check`], the same grants, and the engine compiles the plain `.wasm` sources
//! itself (nothing precompiled is ever produced or consumed here).
//!
//! # The artifact format
//!
//! The layout is the one `spin registry push` writes (Spin's `crates/oci/src/client.rs`), so
//! Wisp and Spin can run each other's artifacts:
//!
//! - An OCI image manifest (`application/vnd.oci.image.manifest.v1+json`) with the
//!   annotations `org.opencontainers.image.title` / `.version` / `.description` / `.authors`
//!   taken from the app metadata.
//! - Its `config` is an OCI image config (`application/vnd.oci.image.config.v1+json`):
//!   `{"architecture":"wasm","os":"wasip1","config":{"Labels":{"com.fermyon.spin.lockedAppDigest":"sha256:…"}},"rootfs":{"type":"layers","diff_ids":[]}}`.
//!   The label carries the digest of the locked-app layer so that different apps never share
//!   an image id.
//! - One [`WASM_LAYER_MEDIA_TYPE`] layer per distinct component or dependency source.
//! - One [`DATA_LAYER_MEDIA_TYPE`] layer per distinct static file content. Files of at most
//!   [`INLINE_MAX_SIZE`] bytes are not uploaded: their bytes are inlined (base64) in the
//!   locked app instead.
//! - The locked app JSON as a [`SPIN_APPLICATION_MEDIA_TYPE`] layer, last. It is Wisp's
//!   [`LockedApp`] with Spin's content references: each component's
//!   `source` becomes `{"content_type":"application/wasm","digest":"sha256:…"}` and each file
//!   becomes `{"digest":"sha256:…","inline"?:"<base64>","path":"static/index.html"}` (the
//!   guest path relative to `/`, as Spin writes it). `metadata.origin` is dropped.
//! - When the app would need more than [`MAX_LAYER_COUNT`] layers, each component's files are
//!   packed into one deterministic [`ARCHIVE_LAYER_MEDIA_TYPE`] layer (a gzipped tar of the
//!   files at their guest paths) instead of one layer per file; the locked app still names
//!   every file by digest.
//!
//! Where we differ from Spin's writer (readers, Spin's included, do not look at these):
//! the config's `os` is `wasip1` (Spin's `oci-client` value `Os::Other("Wasip1")` serializes
//! capitalised); there is no `org.opencontainers.image.created` annotation, so pushing an
//! unchanged app twice yields the same manifest digest; the locked app keeps Wisp's
//! `spin_lock_version` 1 (Spin writes 0 unless it has host requirements and reads both).
//! On pull we accept Spin's forms: version 0, a private route written as
//! `{"private": true}`, a locked app carried as the manifest config (the oldest Spin
//! artifacts), and unknown fields. Component `dependencies` travel uncomposed, as Spin
//! pushes them without composition: each dependency's Wasm is a [`WASM_LAYER_MEDIA_TYPE`]
//! layer (deduplicated with the component sources), its locked-app `source` is
//! `{"content_type","digest"}` like a component's, and the engine composes at load.
//! `trigger_dependencies` (HTTP middleware) are refused.
//!
//! Pull also accepts an artifact with a single `application/wasm` (or
//! [`WASM_LAYER_MEDIA_TYPE`]) layer, as `wkg oci push` makes: it becomes a one-component app
//! routed at `/...`, like [`wisp_app::from_component_file`].
//!
//! # Safety
//!
//! Every blob is verified against its digest while it streams to disk and before it enters
//! the cache; manifests over [`MAX_MANIFEST_SIZE`] and locked apps over
//! [`MAX_LOCKED_APP_SIZE`] are refused; file paths from an artifact (locked-app `files[].path`
//! and archive entries) must be plain relative paths: `..`, absolute paths and archive links
//! are refused.

mod auth;
mod cache;
mod client;
mod format;
mod package;
mod pull;
mod push;
mod reference;
mod remote;

use std::path::PathBuf;

pub use auth::{AuthStore, CredentialSource, CredentialStores, login, login_with_store};
pub use cache::Cache;
pub use client::{ClientOptions, RegistryClient, error_chain};
pub use package::{PackageRequest, fetch_package};
pub use pull::{PulledApp, pull};
pub use push::{
    PackedApp, PackedBlob, ProgressEvent, PushResult, pack, push, push_annotated,
    push_with_progress,
};
pub use reference::Reference;
pub use remote::fetch_url_source;

pub use wisp_app::LockedApp;

/// Entry points for the fuzz targets in `fuzz/` (built with `--cfg fuzzing`): the readers
/// of what a registry sends, without a registry.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    use std::collections::HashMap;
    use std::path::PathBuf;

    use crate::{LockedApp, Reference, Result};

    fn reference() -> Reference {
        "localhost:5000/fuzz/app:v1"
            .parse()
            .expect("a valid reference")
    }

    /// Reads an image manifest as a pull does, with its bounds.
    pub fn image_manifest(body: &[u8], header_type: Option<&str>) -> Result<usize> {
        crate::pull::parse_manifest(body, header_type, &reference()).map(|m| m.layers.len())
    }

    /// Reads a registry's locked-app config layer and turns it into Wisp's LockedApp,
    /// every content reference resolved to a placeholder file.
    pub fn registry_locked_app(bytes: &[u8]) -> Result<LockedApp> {
        let reference = reference();
        let app = crate::format::RegistryLockedApp::parse(bytes, &reference)?;
        let paths: HashMap<String, PathBuf> = app
            .content_refs()
            .map(|content| (content.key(), PathBuf::from("/nonexistent/fuzz")))
            .collect();
        app.into_locked(&paths, &reference)
    }

    /// Normalizes a path from an artifact, refusing escapes.
    pub fn artifact_path(path: &str) -> Result<String> {
        crate::format::normalize_rel_path(path)
    }
}

/// Media type of the layer holding the locked app JSON.
pub const SPIN_APPLICATION_MEDIA_TYPE: &str = "application/vnd.fermyon.spin.application.v1+config";
/// Media type of a component's Wasm layer.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// Media type of a single-component artifact as pushed by `wkg oci push`.
pub const WKG_WASM_MEDIA_TYPE: &str = "application/wasm";
/// Media type of a static-file layer.
pub const DATA_LAYER_MEDIA_TYPE: &str = "application/vnd.wasm.content.layer.v1+data";
/// Media type of a gzipped tar of static files (the fallback for apps with many files).
pub const ARCHIVE_LAYER_MEDIA_TYPE: &str = "application/vnd.wasm.content.bundle.v1.tar+gzip";
/// Media type of the OCI image manifest we write.
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of the OCI image config we write.
pub const OCI_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Label in the image config naming the locked-app layer's digest.
pub const LOCKED_APP_DIGEST_LABEL: &str = "com.fermyon.spin.lockedAppDigest";

/// Files of at most this many bytes are inlined in the locked app (Spin's threshold).
pub const INLINE_MAX_SIZE: u64 = 128;
/// Most layers an artifact may have (the lowest limit among well-known registries).
pub const MAX_LAYER_COUNT: usize = 500;
/// Largest manifest accepted from a registry.
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;
/// Largest locked-app layer accepted from a registry.
pub const MAX_LOCKED_APP_SIZE: u64 = 16 * 1024 * 1024;

/// Errors pushing, pulling or logging in. Each names the reference, digest or path at fault
/// and says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The reference did not parse.
    #[error(
        "invalid registry reference `{reference}`: {message}; write registry/repository:tag or registry/repository@sha256:<digest>"
    )]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        message: String,
    },
    /// The registry refused our credentials (or we had none).
    #[error(
        "unauthorized for {reference} at registry {registry}; run `wisp registry login {registry}` (or `docker login {registry}`) with an account that may access it"
    )]
    Unauthorized {
        /// Registry host.
        registry: String,
        /// Reference being accessed.
        reference: String,
    },
    /// `login` could not verify the credentials.
    #[error("cannot log in to registry {registry} as `{username}`: {message}")]
    LoginFailed {
        /// Registry host.
        registry: String,
        /// User name tried.
        username: String,
        /// What went wrong, with a hint.
        message: String,
    },
    /// The reference does not exist in the registry.
    #[error("{reference} was not found in the registry; check the repository name and tag")]
    NotFound {
        /// Reference pulled.
        reference: String,
    },
    /// No registry client could be made (e.g. the system's CA bundle is unusable).
    #[error("cannot set up a registry client: {message}")]
    ClientSetup {
        /// What failed, with how to fix it.
        message: String,
    },
    /// Any other registry or network failure.
    #[error("registry {operation} for {reference} failed: {message}")]
    Registry {
        /// Reference being accessed.
        reference: String,
        /// What we were doing (`manifest pull`, `blob upload`, …).
        operation: &'static str,
        /// Underlying error, with a hint where we have one.
        message: String,
    },
    /// Downloaded content does not hash to the digest that names it.
    #[error(
        "{what} {digest} failed verification: its content hashes to {actual}; the registry or the network corrupted it, so it was refused (nothing was cached)"
    )]
    DigestMismatch {
        /// `layer`, `manifest` or `inline file`.
        what: &'static str,
        /// Digest the manifest (or reference) promised.
        digest: String,
        /// Digest of what was received.
        actual: String,
    },
    /// A registry package (a dependency or a registry source) could not be found or used.
    #[error("package `{package}`: {message}")]
    Package {
        /// `namespace:name`.
        package: String,
        /// What went wrong, and how to fix it.
        message: String,
    },
    /// A component's `source = { url, digest }` could not be downloaded.
    #[error("cannot download {url}: {message}")]
    Download {
        /// The source's URL.
        url: String,
        /// What went wrong, with a hint.
        message: String,
    },
    /// A component downloaded from a URL is not the one the manifest names.
    #[error(
        "{url} hashes to {actual}, not to the manifest's digest {expected}; it was refused and nothing was cached (fix `digest` if the component changed on purpose)"
    )]
    UrlDigestMismatch {
        /// The source's URL.
        url: String,
        /// The digest in the manifest.
        expected: String,
        /// The digest of what was downloaded.
        actual: String,
    },
    /// A manifest, locked app or blob is larger than we accept.
    #[error("{what} {digest} is {size} bytes, over the {limit}-byte limit; refusing it")]
    TooLarge {
        /// `manifest`, `locked app` or `layer`.
        what: &'static str,
        /// Its digest or reference.
        digest: String,
        /// Size announced or received.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The artifact is not a Spin app nor a single Wasm component.
    #[error("{reference} is not a Spin app or Wasm component artifact: {message}")]
    UnsupportedArtifact {
        /// Reference pulled.
        reference: String,
        /// What was found instead.
        message: String,
    },
    /// The locked app in the artifact is malformed or not runnable by this Wisp.
    #[error("the locked app in {reference} is invalid: {message}")]
    InvalidLockedApp {
        /// Reference pulled.
        reference: String,
        /// What is wrong.
        message: String,
    },
    /// A file path from the artifact tries to escape its mount.
    #[error(
        "unsafe file path `{path}` in the artifact ({message}); only plain relative paths are allowed, so the artifact was refused"
    )]
    UnsafePath {
        /// The path as found in the artifact.
        path: String,
        /// Why it is refused.
        message: String,
    },
    /// The app needs more layers than registries accept, even with archive layers.
    #[error(
        "the app needs {count} layers, over the {MAX_LAYER_COUNT}-layer limit of registries; reduce the number of components"
    )]
    TooManyLayers {
        /// Layers needed.
        count: usize,
    },
    /// A component source changed after the app was locked.
    #[error(
        "component `{component}`: {path} changed since the app was resolved (locked digest {locked}, now {actual}); resolve the app again before pushing"
    )]
    SourceChanged {
        /// Component id.
        component: String,
        /// Source path.
        path: PathBuf,
        /// Digest in the LockedApp.
        locked: String,
        /// Digest of the file now.
        actual: String,
    },
    /// A component source is not a Wasm binary.
    #[error(
        "component `{component}`: {path} is not a Wasm binary (it does not start with `\\0asm`); only Wasm components are pushed or run, never precompiled code"
    )]
    NotWasm {
        /// Component id.
        component: String,
        /// Source path.
        path: PathBuf,
    },
    /// A filesystem operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What we tried (`read`, `write`, `create directory`, …).
        action: &'static str,
        /// Path involved.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The credential store or Docker config is unreadable.
    #[error("cannot use credentials from {path}: {message}")]
    Credentials {
        /// Store or helper involved.
        path: String,
        /// What is wrong, with a hint.
        message: String,
    },
}

/// Result alias for this crate.
pub type Result<T, E = OciError> = std::result::Result<T, E>;

pub(crate) fn io_error(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> OciError {
    let path = path.into();
    move |source| OciError::Io {
        action,
        path,
        source,
    }
}

/// Refuses a component source that is not a Wasm binary (`\0asm`): in particular a
/// precompiled native artifact is never pushed or loaded; Wisp compiles what it pulls.
pub(crate) async fn ensure_wasm(component: &str, path: &std::path::Path) -> Result<()> {
    use tokio::io::AsyncReadExt;
    let mut magic = [0u8; 4];
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(io_error("open", path))?;
    let n = file
        .read(&mut magic)
        .await
        .map_err(io_error("read", path))?;
    if n < 4 || &magic != b"\0asm" {
        return Err(OciError::NotWasm {
            component: component.to_owned(),
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Streaming sha256 of a file: `(digest, size)`.
pub(crate) async fn file_digest(path: &std::path::Path) -> Result<(String, u64)> {
    use sha2::Digest;
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(io_error("open", path))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).await.map_err(io_error("read", path))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((format!("sha256:{}", hex::encode(hasher.finalize())), size))
}
