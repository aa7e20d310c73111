//! Where a container's app comes from, in the three shapes SpinKube's shim accepts: a Spin
//! OCI artifact (the locked app plus wasm, data and archive layers, as `wisp registry push`
//! and `spin registry push` write it), a single wasm component layer, or a plain image
//! whose filesystem holds `/spin.toml` and the files it names.

use std::path::Path;
use wisp_app::{LockedApp, ResolveOptions};
use wisp_oci::{
    ARCHIVE_LAYER_MEDIA_TYPE, Cache, DATA_LAYER_MEDIA_TYPE, OCI_CONFIG_MEDIA_TYPE,
    OCI_MANIFEST_MEDIA_TYPE, SPIN_APPLICATION_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE,
    WKG_WASM_MEDIA_TYPE,
};

/// What `wkg` (wasm-pkg-tools) pushes for a component.
const WKG_COMPONENT_MEDIA_TYPE: &str =
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm";

/// The layer media types containerd hands the shim (runwasi passes only these; an image
/// with none of them is a plain image, read from its filesystem).
pub const LAYER_MEDIA_TYPES: &[&str] = &[
    SPIN_APPLICATION_MEDIA_TYPE,
    WASM_LAYER_MEDIA_TYPE,
    WKG_WASM_MEDIA_TYPE,
    DATA_LAYER_MEDIA_TYPE,
    ARCHIVE_LAYER_MEDIA_TYPE,
    WKG_COMPONENT_MEDIA_TYPE,
];

/// Whether a layer of this media type is a component (or core module) to compile.
pub fn is_component_media_type(media_type: &str) -> bool {
    [
        WASM_LAYER_MEDIA_TYPE,
        WKG_WASM_MEDIA_TYPE,
        WKG_COMPONENT_MEDIA_TYPE,
    ]
    .contains(&media_type)
}

/// One layer of the container's image, as containerd gave it.
#[derive(Debug, Clone)]
pub struct Layer<'a> {
    /// Its media type.
    pub media_type: String,
    /// Its digest (`sha256:…`), checked again when it is stored.
    pub digest: String,
    /// Its content.
    pub bytes: &'a [u8],
}

/// Why the app could not be found or read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// No layers, and no manifest in the image's filesystem.
    #[error(
        "the image has no wasm layers and no {0}; build it with `wisp registry push` or `spin registry push`, push a single wasm component, or put spin.toml (and the files it names) at the image's root"
    )]
    NoApp(String),
    /// The manifest in the image is invalid.
    #[error("{0}")]
    Manifest(String),
    /// The layers do not make an app.
    #[error("the image's layers do not make an app")]
    Layers(#[source] wisp_oci::OciError),
    /// A layer could not be stored.
    #[error("cannot store layer {digest}")]
    Store {
        /// The layer.
        digest: String,
        /// Why.
        #[source]
        source: wisp_oci::OciError,
    },
}

/// The app in `layers`, or, with none, the manifest at `manifest` (`/spin.toml` in a
/// container). Layers are stored (digest-checked) in `cache` first, where the app's
/// sources then point.
pub async fn locked_app(
    layers: &[Layer<'_>],
    manifest: &Path,
    cache: &Cache,
    options: &ResolveOptions,
) -> Result<LockedApp, SourceError> {
    if layers.is_empty() {
        return from_manifest(manifest, options);
    }
    from_layers(layers, cache).await
}

fn from_manifest(path: &Path, options: &ResolveOptions) -> Result<LockedApp, SourceError> {
    if !path.is_file() {
        return Err(SourceError::NoApp(path.display().to_string()));
    }
    let manifest =
        wisp_manifest::parse_file(path).map_err(|e| SourceError::Manifest(e.to_string()))?;
    for warning in &manifest.warnings {
        tracing::warn!("{}: {warning}", path.display());
    }
    wisp_app::resolve_with(&manifest, path, options)
        .map_err(|e| SourceError::Manifest(format!("{e:#}")))
}

/// Stores every layer, then reads them back as the registry artifact they came from: the
/// same code assembles an app pulled by `wisp up --from` and one uploaded to the node.
async fn from_layers(layers: &[Layer<'_>], cache: &Cache) -> Result<LockedApp, SourceError> {
    let mut descriptors = Vec::with_capacity(layers.len());
    for layer in layers {
        let stored = cache
            .insert_stream(
                &layer.digest,
                futures::stream::once(async { Ok::<_, std::convert::Infallible>(layer.bytes) }),
                layer.bytes.len() as u64,
            )
            .await;
        stored.map_err(|source| SourceError::Store {
            digest: layer.digest.clone(),
            source,
        })?;
        descriptors.push(serde_json::json!({
            "mediaType": layer.media_type,
            "digest": layer.digest,
            "size": layer.bytes.len(),
        }));
    }
    // The image's own config is not handed over (and not needed): an empty one stands in.
    let config = b"{}";
    let config_digest = wisp_app::sha256_digest(config);
    cache
        .insert_stream(
            &config_digest,
            futures::stream::once(async { Ok::<_, std::convert::Infallible>(&config[..]) }),
            config.len() as u64,
        )
        .await
        .map_err(|source| SourceError::Store {
            digest: config_digest.clone(),
            source,
        })?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": OCI_CONFIG_MEDIA_TYPE,
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": descriptors,
    });
    let manifest = serde_json::to_vec(&manifest).expect("a JSON value serializes");
    // The repository's last segment names a single component's id.
    let reference = wisp_oci::Reference::with_tag("localhost", "containerd/app", "latest");
    let pulled = cache
        .import(&reference, &manifest)
        .await
        .map_err(SourceError::Layers)?;
    Ok(pulled.locked)
}
