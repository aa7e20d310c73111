//! Push: LockedApp → layers, config and manifest in Spin's layout → registry.

use crate::client::RegistryClient;
use crate::format::{FileRef, build_archive, guest_rel_path, to_registry_json};
use crate::{
    ARCHIVE_LAYER_MEDIA_TYPE, DATA_LAYER_MEDIA_TYPE, INLINE_MAX_SIZE, LOCKED_APP_DIGEST_LABEL,
    MAX_LAYER_COUNT, OCI_CONFIG_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE, OciError, Reference, Result,
    SPIN_APPLICATION_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE, file_digest, io_error,
};
use futures::{StreamExt as _, TryStreamExt as _};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use wisp_app::LockedApp;

/// How many blobs are checked and uploaded at once.
const UPLOAD_CONCURRENCY: usize = 4;

/// What [`push`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushResult {
    /// Digest of the pushed manifest (`sha256:…`): pull `<repository>@<digest>` to get exactly
    /// this app back.
    pub digest: String,
    /// Blobs (layers and config) uploaded.
    pub uploaded_blobs: usize,
    /// Blobs the registry already had, so not uploaded.
    pub skipped_blobs: usize,
}

/// Progress of blob transfers during a push, for progress bars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressEvent {
    /// The registry already has this blob; it is not uploaded.
    Skipped {
        /// Blob digest.
        digest: String,
        /// Blob size in bytes.
        size: u64,
    },
    /// Upload of a blob started.
    Started {
        /// Blob digest.
        digest: String,
        /// Layer media type.
        media_type: String,
        /// Blob size in bytes.
        size: u64,
    },
    /// Bytes of a blob sent so far.
    Progress {
        /// Blob digest.
        digest: String,
        /// Bytes sent.
        sent: u64,
        /// Blob size in bytes.
        size: u64,
    },
    /// A blob finished uploading.
    Finished {
        /// Blob digest.
        digest: String,
        /// Blob size in bytes.
        size: u64,
    },
}

enum BlobData {
    File(PathBuf),
    Temp(tempfile::TempPath),
    Bytes(Vec<u8>),
}

struct Blob {
    media_type: String,
    digest: String,
    size: u64,
    data: BlobData,
}

impl Blob {
    fn descriptor(&self) -> OciDescriptor {
        OciDescriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size as i64,
            ..Default::default()
        }
    }
}

/// Pushes `locked` to `reference` (see the crate docs for the layout).
pub async fn push(
    client: &RegistryClient,
    locked: &LockedApp,
    reference: &Reference,
) -> Result<PushResult> {
    push_with_progress(client, locked, reference, &|_| {}).await
}

/// [`push`], reporting blob transfers to `progress`.
pub async fn push_with_progress(
    client: &RegistryClient,
    locked: &LockedApp,
    reference: &Reference,
    progress: &(dyn Fn(ProgressEvent) + Send + Sync),
) -> Result<PushResult> {
    push_annotated(client, locked, reference, &BTreeMap::new(), progress).await
}

/// [`push_with_progress`] with extra manifest annotations, which win over the ones derived
/// from the app metadata (as `spin registry push --annotation` does).
pub async fn push_annotated(
    client: &RegistryClient,
    locked: &LockedApp,
    reference: &Reference,
    extra_annotations: &BTreeMap<String, String>,
    progress: &(dyn Fn(ProgressEvent) + Send + Sync),
) -> Result<PushResult> {
    locked.check().map_err(|e| OciError::InvalidLockedApp {
        reference: reference.to_string(),
        message: e.to_string(),
    })?;
    let artifact = assemble(locked, extra_annotations).await?;
    if let Some(pinned) = reference.digest()
        && pinned != artifact.manifest_digest
    {
        return Err(OciError::InvalidReference {
            reference: reference.to_string(),
            message: format!(
                "the app's manifest digest is {}, not the pinned one; push to a tag instead",
                artifact.manifest_digest
            ),
        });
    }

    let outcomes: Vec<bool> = futures::stream::iter(artifact.blobs.iter())
        .map(|blob| upload_blob(client, reference, blob, progress))
        .buffer_unordered(UPLOAD_CONCURRENCY)
        .try_collect()
        .await?;
    let uploaded_blobs = outcomes.iter().filter(|uploaded| **uploaded).count();
    client.put_manifest(reference, artifact.manifest).await?;
    Ok(PushResult {
        digest: artifact.manifest_digest,
        uploaded_blobs,
        skipped_blobs: outcomes.len() - uploaded_blobs,
    })
}

/// Uploads one blob unless the registry has it; returns whether it was uploaded.
async fn upload_blob(
    client: &RegistryClient,
    reference: &Reference,
    blob: &Blob,
    progress: &(dyn Fn(ProgressEvent) + Send + Sync),
) -> Result<bool> {
    if client.blob_exists(reference, &blob.digest).await? {
        progress(ProgressEvent::Skipped {
            digest: blob.digest.clone(),
            size: blob.size,
        });
        return Ok(false);
    }
    progress(ProgressEvent::Started {
        digest: blob.digest.clone(),
        media_type: blob.media_type.clone(),
        size: blob.size,
    });
    let sent = |sent: u64| {
        progress(ProgressEvent::Progress {
            digest: blob.digest.clone(),
            sent,
            size: blob.size,
        })
    };
    match &blob.data {
        BlobData::File(path) => {
            client
                .upload_file(reference, path, &blob.digest, &sent)
                .await?
        }
        BlobData::Temp(path) => {
            client
                .upload_file(reference, path, &blob.digest, &sent)
                .await?
        }
        BlobData::Bytes(bytes) => {
            client
                .upload_bytes(reference, bytes.clone(), &blob.digest)
                .await?;
            sent(blob.size);
        }
    }
    progress(ProgressEvent::Finished {
        digest: blob.digest.clone(),
        size: blob.size,
    });
    Ok(true)
}

/// An app in the artifact layout, not uploaded anywhere: what [`pack`] returns, for
/// copying an app into another content store (a node) blob by blob.
pub struct PackedApp {
    artifact: Artifact,
}

impl std::fmt::Debug for PackedApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedApp")
            .field("digest", &self.artifact.manifest_digest)
            .field("blobs", &self.artifact.blobs.len())
            .finish()
    }
}

/// One blob of a [`PackedApp`].
#[derive(Debug, Clone, Copy)]
pub struct PackedBlob<'a> {
    /// `sha256:…`.
    pub digest: &'a str,
    /// Size in bytes.
    pub size: u64,
    /// Layer or config media type.
    pub media_type: &'a str,
}

impl PackedApp {
    /// The image manifest (upload it after every blob).
    pub fn manifest(&self) -> &[u8] {
        &self.artifact.manifest
    }

    /// The manifest's digest.
    pub fn digest(&self) -> &str {
        &self.artifact.manifest_digest
    }

    /// Every blob the manifest names (layers, the locked app, the config), each once.
    pub fn blobs(&self) -> impl Iterator<Item = PackedBlob<'_>> {
        self.artifact.blobs.iter().map(|blob| PackedBlob {
            digest: &blob.digest,
            size: blob.size,
            media_type: &blob.media_type,
        })
    }

    /// The bytes of the blob `digest` (read from its file for layers).
    pub async fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let Some(blob) = self.artifact.blobs.iter().find(|b| b.digest == digest) else {
            return Err(OciError::UnsupportedArtifact {
                reference: self.artifact.manifest_digest.clone(),
                message: format!("it has no blob {digest}"),
            });
        };
        let path = match &blob.data {
            BlobData::Bytes(bytes) => return Ok(bytes.clone()),
            BlobData::File(path) => path.as_path(),
            BlobData::Temp(path) => path,
        };
        let bytes = tokio::fs::read(path)
            .await
            .map_err(io_error("read", path))?;
        let actual = wisp_app::sha256_digest(&bytes);
        if actual != blob.digest {
            return Err(OciError::DigestMismatch {
                what: "layer",
                digest: blob.digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }
}

/// Packs `locked` in the artifact layout [`push`] writes, without a registry: the same
/// checks, layers and manifest.
pub async fn pack(locked: &LockedApp) -> Result<PackedApp> {
    locked.check().map_err(|e| OciError::InvalidLockedApp {
        reference: locked.metadata.name.clone(),
        message: e.to_string(),
    })?;
    Ok(PackedApp {
        artifact: assemble(locked, &BTreeMap::new()).await?,
    })
}

/// Everything a push uploads, with the manifest last.
struct Artifact {
    /// Layers, then the locked app, then the config; each digest once.
    blobs: Vec<Blob>,
    manifest: Vec<u8>,
    manifest_digest: String,
}

/// Digests each distinct file once.
#[derive(Default)]
struct Digests(HashMap<PathBuf, (String, u64)>);

impl Digests {
    async fn of(&mut self, path: &Path) -> Result<(String, u64)> {
        if let Some(found) = self.0.get(path) {
            return Ok(found.clone());
        }
        let found = file_digest(path).await?;
        self.0.insert(path.to_path_buf(), found.clone());
        Ok(found)
    }
}

async fn assemble(
    locked: &LockedApp,
    extra_annotations: &BTreeMap<String, String>,
) -> Result<Artifact> {
    let mut digests = Digests::default();
    let mut wasm_layers = Vec::new();
    // Per component: (file refs for the locked app, data layers, (rel path, source) for archives).
    let mut file_refs: Vec<Vec<FileRef>> = Vec::new();
    let mut data_layers: Vec<Vec<Blob>> = Vec::new();
    let mut archive_inputs: Vec<Vec<(String, PathBuf)>> = Vec::new();

    for component in &locked.components {
        let source = &component.source.path;
        crate::ensure_wasm(&component.id, source).await?;
        let (digest, size) = digests.of(source).await?;
        if digest != component.source.digest {
            return Err(OciError::SourceChanged {
                component: component.id.clone(),
                path: source.clone(),
                locked: component.source.digest.clone(),
                actual: digest,
            });
        }
        wasm_layers.push(Blob {
            media_type: WASM_LAYER_MEDIA_TYPE.to_owned(),
            digest,
            size,
            data: BlobData::File(source.clone()),
        });
        // Each dependency's Wasm is a layer of its own, as `spin registry push` writes it
        // without composing: composing here would bake in Wisp's `wisp-deny-*` imports,
        // which only Wisp's host answers.
        let middleware = component
            .middleware()
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                // Errors read "component `<id>` middleware <n>: …".
                (
                    format!("{}` middleware `{}", component.id, index + 1),
                    entry,
                )
            });
        let dependencies = (component.dependencies.iter())
            // Errors read "component `<id>` dependency `<name>`: …".
            .map(|(name, entry)| (format!("{}` dependency `{name}", component.id), entry))
            .chain(middleware);
        for (what, dependency) in dependencies {
            let path = &dependency.source.path;
            crate::ensure_wasm(&what, path).await?;
            let (digest, size) = digests.of(path).await?;
            if digest != dependency.source.digest {
                return Err(OciError::SourceChanged {
                    component: what,
                    path: path.clone(),
                    locked: dependency.source.digest.clone(),
                    actual: digest,
                });
            }
            wasm_layers.push(Blob {
                media_type: WASM_LAYER_MEDIA_TYPE.to_owned(),
                digest,
                size,
                data: BlobData::File(path.clone()),
            });
        }

        let mut refs = Vec::new();
        let mut layers = Vec::new();
        let mut inputs = Vec::new();
        for file in &component.files {
            let rel_path = guest_rel_path(&file.path)?;
            let (digest, size) = digests.of(&file.source).await?;
            let inline = if size <= INLINE_MAX_SIZE {
                let bytes = tokio::fs::read(&file.source)
                    .await
                    .map_err(io_error("read", &file.source))?;
                let actual = wisp_app::sha256_digest(&bytes);
                if actual != digest {
                    // The file changed between hashing and reading.
                    return Err(OciError::SourceChanged {
                        component: component.id.clone(),
                        path: file.source.clone(),
                        locked: digest,
                        actual,
                    });
                }
                Some(bytes)
            } else {
                layers.push(Blob {
                    media_type: DATA_LAYER_MEDIA_TYPE.to_owned(),
                    digest: digest.clone(),
                    size,
                    data: BlobData::File(file.source.clone()),
                });
                None
            };
            inputs.push((rel_path.clone(), file.source.clone()));
            refs.push(FileRef {
                rel_path,
                digest,
                inline,
            });
        }
        file_refs.push(refs);
        data_layers.push(layers);
        archive_inputs.push(inputs);
    }

    // One layer per distinct component or dependency source and file, unless that is too many for
    // registries: then one archive layer per component's files (Spin's fallback).
    let simple: Vec<Blob> = wasm_layers
        .iter()
        .map(clone_file_blob)
        .chain(data_layers.into_iter().flatten())
        .collect();
    let mut layers = dedup(simple);
    if layers.len() > MAX_LAYER_COUNT - 1 {
        let mut archived: Vec<Blob> = wasm_layers;
        for inputs in archive_inputs.into_iter().filter(|i| !i.is_empty()) {
            archived.push(archive_blob(inputs).await?);
        }
        layers = dedup(archived);
        if layers.len() > MAX_LAYER_COUNT - 1 {
            return Err(OciError::TooManyLayers {
                count: layers.len() + 1,
            });
        }
    }

    let locked_json = to_registry_json(locked, &file_refs);
    let locked_blob = Blob {
        media_type: SPIN_APPLICATION_MEDIA_TYPE.to_owned(),
        digest: wisp_app::sha256_digest(&locked_json),
        size: locked_json.len() as u64,
        data: BlobData::Bytes(locked_json),
    };
    layers.push(locked_blob);

    let config = image_config(&layers.last().expect("locked app layer").digest);
    let config_blob = Blob {
        media_type: OCI_CONFIG_MEDIA_TYPE.to_owned(),
        digest: wisp_app::sha256_digest(&config),
        size: config.len() as u64,
        data: BlobData::Bytes(config),
    };

    let manifest = OciImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST_MEDIA_TYPE.to_owned()),
        config: config_blob.descriptor(),
        layers: layers.iter().map(Blob::descriptor).collect(),
        subject: None,
        artifact_type: None,
        annotations: {
            let mut all = annotations(locked);
            all.extend(extra_annotations.clone());
            Some(all)
        },
    };
    let manifest = serde_json::to_vec(&manifest).expect("manifests serialize");
    let manifest_digest = wisp_app::sha256_digest(&manifest);
    layers.push(config_blob);
    Ok(Artifact {
        blobs: layers,
        manifest,
        manifest_digest,
    })
}

fn clone_file_blob(blob: &Blob) -> Blob {
    let BlobData::File(path) = &blob.data else {
        unreachable!("component layers are files")
    };
    Blob {
        media_type: blob.media_type.clone(),
        digest: blob.digest.clone(),
        size: blob.size,
        data: BlobData::File(path.clone()),
    }
}

fn dedup(blobs: Vec<Blob>) -> Vec<Blob> {
    let mut seen = HashSet::new();
    blobs
        .into_iter()
        .filter(|b| seen.insert(b.digest.clone()))
        .collect()
}

async fn archive_blob(inputs: Vec<(String, PathBuf)>) -> Result<Blob> {
    let tmp = tempfile::Builder::new()
        .prefix("wisp-oci-archive")
        .suffix(".tar.gz")
        .tempfile()
        .map_err(io_error("create a temporary file in", std::env::temp_dir()))?
        .into_temp_path();
    let out = tmp.to_path_buf();
    tokio::task::spawn_blocking(move || build_archive(&inputs, &out))
        .await
        .expect("archive task does not panic")?;
    let (digest, size) = file_digest(&tmp).await?;
    Ok(Blob {
        media_type: ARCHIVE_LAYER_MEDIA_TYPE.to_owned(),
        digest,
        size,
        data: BlobData::Temp(tmp),
    })
}

/// The OCI image config: `wasm`/`wasip1`, labelled with the locked app's digest.
fn image_config(locked_digest: &str) -> Vec<u8> {
    let mut labels = std::collections::HashMap::new();
    labels.insert(LOCKED_APP_DIGEST_LABEL.to_owned(), locked_digest.to_owned());
    let config = oci_client::config::ConfigFile {
        architecture: oci_client::config::Architecture::Wasm,
        os: oci_client::config::Os::Other("wasip1".to_owned()),
        config: Some(oci_client::config::Config {
            labels: Some(labels),
            ..Default::default()
        }),
        ..Default::default()
    };
    serde_json::to_vec(&config).expect("image configs serialize")
}

/// Standard OCI annotations from the app metadata (no `created`: pushes are reproducible).
fn annotations(locked: &LockedApp) -> BTreeMap<String, String> {
    use oci_client::annotations::{
        ORG_OPENCONTAINERS_IMAGE_AUTHORS, ORG_OPENCONTAINERS_IMAGE_DESCRIPTION,
        ORG_OPENCONTAINERS_IMAGE_TITLE, ORG_OPENCONTAINERS_IMAGE_VERSION,
    };
    let meta = &locked.metadata;
    let mut out = BTreeMap::new();
    out.insert(ORG_OPENCONTAINERS_IMAGE_TITLE.to_owned(), meta.name.clone());
    if let Some(version) = &meta.version {
        out.insert(ORG_OPENCONTAINERS_IMAGE_VERSION.to_owned(), version.clone());
    }
    if let Some(description) = &meta.description {
        out.insert(
            ORG_OPENCONTAINERS_IMAGE_DESCRIPTION.to_owned(),
            description.clone(),
        );
    }
    if !meta.authors.is_empty() {
        out.insert(
            ORG_OPENCONTAINERS_IMAGE_AUTHORS.to_owned(),
            meta.authors.join(", "),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component `main` (source `main.wasm`) with the dependency `adder.wasm`, both
    /// locked with the digests of their bytes now.
    fn app_with_a_dependency(dir: &Path) -> LockedApp {
        let main = dir.join("main.wasm");
        let adder = dir.join("adder.wasm");
        std::fs::write(&main, b"\0asm main").unwrap();
        std::fs::write(&adder, b"\0asm adder").unwrap();
        let locked = serde_json::json!({
            "spin_lock_version": 1,
            "metadata": { "name": "deps" },
            "triggers": [{ "id": "t", "trigger_type": "http",
                           "trigger_config": { "route": "/...", "component": "main" } }],
            "components": [{
                "id": "main",
                "source": { "content_type": "application/wasm", "path": main,
                            "digest": wisp_app::sha256_digest(b"\0asm main") },
                "dependencies": { "test:calc/adder@0.1.0": {
                    "source": { "content_type": "application/wasm", "path": adder,
                                "digest": wisp_app::sha256_digest(b"\0asm adder") }
                } }
            }]
        });
        LockedApp::from_json(&serde_json::to_vec(&locked).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_dependency_is_a_wasm_layer_checked_against_its_locked_digest() {
        let dir = tempfile::tempdir().unwrap();
        let locked = app_with_a_dependency(dir.path());
        let packed = pack(&locked).await.unwrap();
        let adder = wisp_app::sha256_digest(b"\0asm adder");
        assert!(
            packed
                .blobs()
                .any(|b| b.digest == adder && b.media_type == WASM_LAYER_MEDIA_TYPE),
            "{packed:?}"
        );

        std::fs::write(dir.path().join("adder.wasm"), b"\0asm changed").unwrap();
        let err = pack(&locked).await.unwrap_err().to_string();
        assert!(
            err.contains("component `main` dependency `test:calc/adder@0.1.0`")
                && err.contains("changed since the app was resolved"),
            "{err}"
        );

        std::fs::write(dir.path().join("adder.wasm"), b"ELF").unwrap();
        let err = pack(&locked).await.unwrap_err().to_string();
        assert!(
            err.contains("dependency `test:calc/adder@0.1.0`") && err.contains("not a Wasm binary"),
            "{err}"
        );
    }
}
