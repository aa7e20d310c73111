//! Pull: registry → verified blobs in the [`Cache`] → Wisp [`LockedApp`].

use crate::cache::Cache;
use crate::client::RegistryClient;
use crate::format::{RegistryLockedApp, unpack_archive};
use crate::{
    ARCHIVE_LAYER_MEDIA_TYPE, DATA_LAYER_MEDIA_TYPE, MAX_LOCKED_APP_SIZE, OciError, Reference,
    Result, SPIN_APPLICATION_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE, WKG_WASM_MEDIA_TYPE, io_error,
};
use futures::{StreamExt as _, TryStreamExt as _};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use std::collections::HashMap;
use std::path::PathBuf;
use wisp_app::LockedApp;

/// How many layers are downloaded at once.
const DOWNLOAD_CONCURRENCY: usize = 4;

/// An app pulled from a registry.
#[derive(Debug, Clone, PartialEq)]
pub struct PulledApp {
    /// Digest of the manifest pulled (`sha256:…`).
    pub digest: String,
    /// The app, with every source and file pointing into the [`Cache`]; already checked with
    /// [`LockedApp::check`].
    pub locked: LockedApp,
}

/// Pulls `reference` into `cache` and returns the app.
///
/// A `@sha256:` reference already in the cache is served without contacting the registry;
/// a tag always asks the registry for its current manifest.
pub async fn pull(
    client: &RegistryClient,
    reference: &Reference,
    cache: &Cache,
) -> Result<PulledApp> {
    if reference.digest().is_some()
        && let Some(app) = cache.lookup(reference).await?
    {
        return Ok(app);
    }
    let (body, media_type, digest) = client.fetch_manifest(reference).await?;
    let manifest = parse_manifest(&body, media_type.as_deref(), reference)?;
    let locked = assemble(&manifest, reference, cache, Some(client))
        .await?
        .expect("online assembly always answers");
    cache.store_manifest(reference, &digest, &body).await?;
    Ok(PulledApp { digest, locked })
}

/// Rebuilds a pulled app from the cache alone; `None` if any blob is missing.
pub(crate) async fn assemble_cached(
    cache: &Cache,
    reference: &Reference,
    digest: &str,
    body: &[u8],
) -> Result<Option<PulledApp>> {
    let manifest = parse_manifest(body, None, reference)?;
    Ok(assemble(&manifest, reference, cache, None)
        .await?
        .map(|locked| PulledApp {
            digest: digest.to_owned(),
            locked,
        }))
}

pub(crate) fn parse_manifest(
    body: &[u8],
    header_type: Option<&str>,
    reference: &Reference,
) -> Result<OciImageManifest> {
    let unsupported = |message: String| OciError::UnsupportedArtifact {
        reference: reference.to_string(),
        message,
    };
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| unsupported(format!("the manifest is not JSON: {e}")))?;
    let media_type = value
        .get("mediaType")
        .and_then(|v| v.as_str())
        .or(header_type)
        .unwrap_or_default();
    if media_type.contains("index")
        || media_type.contains("manifest.list")
        || value.get("manifests").is_some()
    {
        return Err(unsupported(
            "it is an image index (a multi-platform image), not an app; pull an app pushed by `wisp registry push` or `spin registry push`".to_owned(),
        ));
    }
    if value.get("schemaVersion").and_then(|v| v.as_u64()) != Some(2) {
        return Err(unsupported(
            "the manifest is not schema version 2".to_owned(),
        ));
    }
    let manifest: OciImageManifest = serde_json::from_value(value)
        .map_err(|e| unsupported(format!("invalid image manifest: {e}")))?;
    // Bound what one pull may write before anything is downloaded: the layer count (a
    // push never makes more than MAX_LAYER_COUNT content layers plus the locked app),
    // each blob, and the whole artifact, all as the manifest declares them (a blob
    // longer than declared is refused while it streams).
    if manifest.layers.len() > crate::MAX_LAYER_COUNT + 1 {
        return Err(unsupported(format!(
            "it has {} layers; an app has at most {}",
            manifest.layers.len(),
            crate::MAX_LAYER_COUNT + 1
        )));
    }
    let mut total: u64 = 0;
    for layer in &manifest.layers {
        let size = u64::try_from(layer.size).unwrap_or(u64::MAX);
        if size > MAX_BLOB_BYTES {
            return Err(unsupported(format!(
                "layer {} declares {size} bytes, more than the {MAX_BLOB_BYTES}-byte limit of one layer",
                layer.digest
            )));
        }
        total = total.saturating_add(size);
    }
    if total > MAX_PULL_BYTES {
        return Err(unsupported(format!(
            "its layers add up to {total} bytes, more than the {MAX_PULL_BYTES}-byte limit of one app"
        )));
    }
    Ok(manifest)
}

/// Largest layer a pull accepts (a big interpreted-language component is ~50 MiB).
const MAX_BLOB_BYTES: u64 = 1 << 30;
/// Largest sum of layer sizes a pull accepts.
const MAX_PULL_BYTES: u64 = 4 << 30;

/// Where blobs come from: the registry (downloading what the cache lacks) or the cache only.
struct Blobs<'a> {
    client: Option<&'a RegistryClient>,
    reference: &'a Reference,
    cache: &'a Cache,
}

impl Blobs<'_> {
    /// The cached path of `desc`, downloading it when online; `None` when offline and missing.
    async fn get(&self, desc: &OciDescriptor) -> Result<Option<PathBuf>> {
        match self.client {
            Some(client) => client
                .download_blob(self.reference, desc, self.cache)
                .await
                .map(Some),
            None => {
                let path = self.cache.blob_path(&desc.digest)?;
                Ok(path.is_file().then_some(path))
            }
        }
    }
}

/// Builds the LockedApp from a manifest. Returns `None` only when offline and a blob is
/// missing from the cache.
async fn assemble(
    manifest: &OciImageManifest,
    reference: &Reference,
    cache: &Cache,
    client: Option<&RegistryClient>,
) -> Result<Option<LockedApp>> {
    let blobs = Blobs {
        client,
        reference,
        cache,
    };
    // Newer Spin apps carry the locked app as a layer; the oldest ones as the config.
    let locked_desc = manifest
        .layers
        .iter()
        .find(|l| l.media_type == SPIN_APPLICATION_MEDIA_TYPE)
        .or_else(|| {
            (manifest.config.media_type == SPIN_APPLICATION_MEDIA_TYPE).then_some(&manifest.config)
        });
    match locked_desc {
        Some(desc) => assemble_app(manifest, desc, &blobs).await,
        None => assemble_component(manifest, &blobs).await,
    }
}

async fn assemble_app(
    manifest: &OciImageManifest,
    locked_desc: &OciDescriptor,
    blobs: &Blobs<'_>,
) -> Result<Option<LockedApp>> {
    let (reference, cache) = (blobs.reference, blobs.cache);
    if u64::try_from(locked_desc.size).unwrap_or(u64::MAX) > MAX_LOCKED_APP_SIZE {
        return Err(OciError::TooLarge {
            what: "locked app",
            digest: locked_desc.digest.clone(),
            size: locked_desc.size.max(0) as u64,
            limit: MAX_LOCKED_APP_SIZE,
        });
    }
    let Some(path) = blobs.get(locked_desc).await? else {
        return Ok(None);
    };
    let bytes = cache
        .read_small_blob(
            &path,
            &locked_desc.digest,
            "locked app",
            MAX_LOCKED_APP_SIZE,
        )
        .await?;
    // Parse (and check every file path) before downloading anything else.
    let app = RegistryLockedApp::parse(&bytes, reference)?;

    let content_layers: Vec<&OciDescriptor> = manifest
        .layers
        .iter()
        .filter(|l| {
            [
                WASM_LAYER_MEDIA_TYPE,
                WKG_WASM_MEDIA_TYPE,
                DATA_LAYER_MEDIA_TYPE,
                ARCHIVE_LAYER_MEDIA_TYPE,
            ]
            .contains(&l.media_type.as_str())
        })
        .collect();
    // Owned descriptors: a closure taking `&OciDescriptor` makes this future impossible to
    // prove `Send` (a higher-ranked lifetime), and a node spawns it.
    let owned: Vec<OciDescriptor> = content_layers.iter().map(|desc| (*desc).clone()).collect();
    let fetched: Vec<Option<PathBuf>> = futures::stream::iter(owned)
        .map(|desc| async move { blobs.get(&desc).await })
        .buffered(DOWNLOAD_CONCURRENCY)
        .try_collect()
        .await?;
    if fetched.iter().any(Option::is_none) {
        return Ok(None);
    }
    for (desc, path) in content_layers.iter().zip(&fetched) {
        if desc.media_type == ARCHIVE_LAYER_MEDIA_TYPE {
            unpack_once(cache, path.as_ref().expect("checked above"), &desc.digest).await?;
        }
    }

    let mut paths = HashMap::new();
    for content in app.content_refs() {
        let key = content.key();
        if paths.contains_key(&key) {
            continue;
        }
        let path = match &content.inline {
            Some(bytes) => {
                cache
                    .insert_bytes(content.digest.as_deref(), bytes, "inline file")
                    .await?
                    .1
            }
            None => {
                let path = cache.blob_path(&key)?;
                if !path.is_file() {
                    if blobs.client.is_none() {
                        return Ok(None);
                    }
                    // Reported by `into_locked`, naming the digest.
                    continue;
                }
                path
            }
        };
        paths.insert(key, path);
    }
    let locked = app.into_locked(&paths, reference)?;
    for component in &locked.components {
        crate::ensure_wasm(&component.id, &component.source.path).await?;
        for (name, dependency) in &component.dependencies {
            let what = format!("{}` dependency `{name}", component.id);
            crate::ensure_wasm(&what, &dependency.source.path).await?;
        }
        for (index, middleware) in component.middleware().iter().enumerate() {
            let what = format!("{}` middleware `{}", component.id, index + 1);
            crate::ensure_wasm(&what, &middleware.source.path).await?;
        }
    }
    Ok(Some(locked))
}

/// Unpacks an archive layer's files into the cache, once per archive digest.
async fn unpack_once(cache: &Cache, path: &std::path::Path, digest: &str) -> Result<()> {
    let marker = cache.unpacked_marker(digest)?;
    if marker.is_file() {
        return Ok(());
    }
    let (cache2, path2, digest2) = (cache.clone(), path.to_path_buf(), digest.to_owned());
    tokio::task::spawn_blocking(move || unpack_archive(&cache2, &path2, &digest2))
        .await
        .expect("unpack task does not panic")?;
    let dir = marker.parent().expect("marker has a parent");
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(io_error("create directory", dir))?;
    tokio::fs::write(&marker, b"")
        .await
        .map_err(io_error("write", &marker))?;
    Ok(())
}

/// A single-layer Wasm component artifact (as `wkg oci push` makes) → one component on `/...`.
async fn assemble_component(
    manifest: &OciImageManifest,
    blobs: &Blobs<'_>,
) -> Result<Option<LockedApp>> {
    let reference = blobs.reference;
    let layer = match manifest.layers.as_slice() {
        [layer]
            if [WKG_WASM_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE]
                .contains(&layer.media_type.as_str()) =>
        {
            layer
        }
        layers => {
            let types: Vec<&str> = layers.iter().map(|l| l.media_type.as_str()).collect();
            return Err(OciError::UnsupportedArtifact {
                reference: reference.to_string(),
                message: format!(
                    "expected a `{SPIN_APPLICATION_MEDIA_TYPE}` layer or a single `{WKG_WASM_MEDIA_TYPE}` layer, found layers [{}] with config `{}`",
                    types.join(", "),
                    manifest.config.media_type
                ),
            });
        }
    };
    let Some(path) = blobs.get(layer).await? else {
        return Ok(None);
    };
    let mut locked =
        wisp_app::from_component_file(&path).map_err(|e| OciError::InvalidLockedApp {
            reference: reference.to_string(),
            message: e.to_string(),
        })?;
    let id = component_id(reference.repository());
    crate::ensure_wasm(&id, &path).await?;
    locked.metadata.name = id.clone();
    locked.metadata.origin = None;
    for trigger in &mut locked.triggers {
        if let Some(config) = trigger.trigger_config.as_object_mut() {
            config.insert("component".to_owned(), serde_json::json!(id));
        }
    }
    for component in &mut locked.components {
        component.id = id.clone();
    }
    locked.check().map_err(|e| OciError::InvalidLockedApp {
        reference: reference.to_string(),
        message: e.to_string(),
    })?;
    Ok(Some(locked))
}

/// A component id (kebab-case) from the last segment of a repository path.
fn component_id(repository: &str) -> String {
    wisp_app::component_id_from_name(repository.rsplit('/').next().unwrap_or(repository))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_ids_come_from_the_repository() {
        assert_eq!(component_id("team/my_app.v2"), "my-app-v2");
        assert_eq!(component_id("9lives"), "c9lives");
        assert_eq!(component_id("__"), "main");
    }

    #[test]
    fn indexes_are_refused() {
        let reference: Reference = "localhost:5000/a:b".parse().unwrap();
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        let err = parse_manifest(index, None, &reference).unwrap_err();
        assert!(err.to_string().contains("image index"), "{err}");
    }
}
