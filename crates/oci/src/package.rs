//! Wasm packages from a registry, for `"ns:pkg" = "^1.0"` component dependencies and
//! `source = { registry, package, version }`, resolved the way `wkg` and Spin resolve them:
//!
//! 1. the registry is the one written in the manifest, else the `wasm-pkg` configuration's
//!    override for the package, its namespace's registry, or its default registry
//!    (`$XDG_CONFIG_HOME/wasm-pkg/config.toml`, default `~/.config/wasm-pkg/config.toml`);
//! 2. the registry's `/.well-known/wasm-pkg/registry.json` may point at an OCI registry
//!    and a namespace prefix; without it the registry itself is the OCI registry;
//! 3. the package `ns:name` is the repository `<prefix>ns/name`, its versions are the tags
//!    that parse as semantic versions, and the highest one the requirement accepts is taken;
//! 4. the package is that tag's first layer, cached by digest like any downloaded source.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cache::Cache;
use crate::client::RegistryClient;
use crate::reference::Reference;
use crate::{OciError, Result};

/// Where to find a package: its name, the versions accepted, and the registry if the
/// manifest names one.
#[derive(Debug, Clone)]
pub struct PackageRequest<'a> {
    /// `namespace:name`.
    pub package: &'a str,
    /// A semantic-version requirement (`1.2.3` means `^1.2.3`; `=1.2.3` one exact version).
    pub version: &'a str,
    /// The registry written in the manifest, if any.
    pub registry: Option<&'a str>,
}

/// Downloads (or finds in `cache`) the newest version of a package that `request` accepts
/// and returns its cached file. Refuses a package larger than `limit` bytes.
pub async fn fetch_package(
    client: &RegistryClient,
    cache: &Cache,
    request: &PackageRequest<'_>,
    limit: u64,
) -> Result<PathBuf> {
    let failed = |message: String| OciError::Package {
        package: request.package.to_owned(),
        message,
    };
    let requirement = semver::VersionReq::parse(request.version).map_err(|e| {
        failed(format!(
            "`{}` is not a version requirement ({e}); write e.g. \"1.2.3\" or \"=1.2.3\"",
            request.version
        ))
    })?;
    let Some((namespace, name)) = request.package.split_once(':') else {
        return Err(failed("is not a package name `namespace:name`".to_owned()));
    };
    let registry = match request.registry {
        Some(registry) => registry.to_owned(),
        None => configured_registry(&config_path(), request.package, namespace)?.ok_or_else(|| {
            failed(format!(
                "no registry is known for it; write `registry = \"…\"` beside its version, or set \
                 `default_registry` (or `[namespace_registries] {namespace} = \"…\"`) in {}",
                config_path().display()
            ))
        })?,
    };
    let oci = oci_location(client, &registry).await;
    let repository = format!("{}/{}{namespace}/{name}", oci.registry, oci.prefix);
    let unversioned: Reference = format!("{repository}:latest").parse()?;
    let tags = client.list_tags(&unversioned).await?;
    let version = tags
        .iter()
        .filter_map(|tag| semver::Version::parse(tag).ok())
        .filter(|version| requirement.matches(version))
        .max()
        .ok_or_else(|| {
            failed(format!(
                "{repository} has no version matching `{}` (its tags: {})",
                request.version,
                if tags.is_empty() {
                    "none".to_owned()
                } else {
                    tags.join(", ")
                }
            ))
        })?;
    let reference: Reference = format!("{repository}:{version}").parse()?;
    let (body, _, _) = client.fetch_manifest(&reference).await?;
    let manifest: oci_client::manifest::OciImageManifest = serde_json::from_slice(&body)
        .map_err(|e| failed(format!("{reference} has no image manifest: {e}")))?;
    let layer = manifest
        .layers
        .first()
        .ok_or_else(|| failed(format!("{reference} has no layers")))?;
    if !matches!(
        layer.media_type.as_str(),
        crate::WKG_WASM_MEDIA_TYPE | crate::WASM_LAYER_MEDIA_TYPE
    ) {
        return Err(failed(format!(
            "the first layer of {reference} is `{}`, not a Wasm component",
            layer.media_type
        )));
    }
    let size = u64::try_from(layer.size).unwrap_or(u64::MAX);
    if size > limit {
        return Err(OciError::TooLarge {
            what: "package",
            digest: layer.digest.clone(),
            size,
            limit,
        });
    }
    tracing::info!("using {} {version} from {reference}", request.package);
    client.download_blob(&reference, layer, cache).await
}

/// The `wasm-pkg` configuration file.
fn config_path() -> PathBuf {
    crate::cache::xdg_dir("XDG_CONFIG_HOME", ".config")
        .unwrap_or_default()
        .join("wasm-pkg")
        .join("config.toml")
}

/// The registry the `wasm-pkg` configuration gives a package: its override, its
/// namespace's registry, else the default. A missing file means none.
fn configured_registry(path: &Path, package: &str, namespace: &str) -> Result<Option<String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(OciError::Package {
                package: package.to_owned(),
                message: format!("cannot read {}: {e}", path.display()),
            });
        }
    };
    let config: toml::Table = toml::from_str(&text).map_err(|e| OciError::Package {
        package: package.to_owned(),
        message: format!("{} is not valid TOML: {e}", path.display()),
    })?;
    // A mapping is a registry name, or a table with one under `registry`.
    let registry_of = |value: Option<&toml::Value>| -> Option<String> {
        match value? {
            toml::Value::String(registry) => Some(registry.clone()),
            toml::Value::Table(table) => table.get("registry")?.as_str().map(str::to_owned),
            _ => None,
        }
    };
    let table = |key: &str| config.get(key).and_then(toml::Value::as_table);
    Ok(
        registry_of(table("package_registry_overrides").and_then(|t| t.get(package)))
            .or_else(|| registry_of(table("namespace_registries").and_then(|t| t.get(namespace))))
            .or_else(|| registry_of(config.get("default_registry"))),
    )
}

/// An OCI registry and the prefix of package repositories in it.
#[derive(Debug, PartialEq)]
struct OciLocation {
    registry: String,
    prefix: String,
}

/// `/.well-known/wasm-pkg/registry.json`, in its current and its older form.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RegistryMetadata {
    oci: Option<OciMetadata>,
    oci_registry: Option<String>,
    oci_namespace_prefix: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciMetadata {
    registry: Option<String>,
    namespace_prefix: Option<String>,
}

/// Where `registry` keeps its packages: what its metadata says, else the registry itself
/// with no prefix (a registry without metadata is a plain OCI registry).
async fn oci_location(client: &RegistryClient, registry: &str) -> OciLocation {
    let scheme = if client.insecure() { "http" } else { "https" };
    let url = format!("{scheme}://{registry}/.well-known/wasm-pkg/registry.json");
    let metadata = async {
        let response = crate::client::http_client()
            .ok()?
            .get(&url)
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let bytes = response.bytes().await.ok()?;
        serde_json::from_slice::<RegistryMetadata>(&bytes).ok()
    }
    .await;
    if metadata.is_none() {
        tracing::debug!("{url} gave no package metadata; using {registry} as an OCI registry");
    }
    location(registry, metadata.unwrap_or_default())
}

fn location(registry: &str, metadata: RegistryMetadata) -> OciLocation {
    let (oci_registry, prefix) = match metadata.oci {
        Some(oci) => (oci.registry, oci.namespace_prefix),
        None => (metadata.oci_registry, metadata.oci_namespace_prefix),
    };
    OciLocation {
        registry: oci_registry.unwrap_or_else(|| registry.to_owned()),
        prefix: prefix.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_picks_override_then_namespace_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        assert_eq!(configured_registry(&path, "a:b", "a").unwrap(), None);
        std::fs::write(
            &path,
            r#"
default_registry = "default.test"
[namespace_registries]
a = "namespace.test"
t = { registry = "table.test" }
[package_registry_overrides]
"a:special" = "override.test"
"#,
        )
        .unwrap();
        let registry = |package: &str, namespace: &str| {
            configured_registry(&path, package, namespace).unwrap()
        };
        assert_eq!(registry("a:special", "a").as_deref(), Some("override.test"));
        assert_eq!(registry("a:b", "a").as_deref(), Some("namespace.test"));
        assert_eq!(registry("t:b", "t").as_deref(), Some("table.test"));
        assert_eq!(registry("z:b", "z").as_deref(), Some("default.test"));
    }

    #[test]
    fn metadata_moves_packages_to_an_oci_registry_and_prefix() {
        let current: RegistryMetadata = serde_json::from_str(
            r#"{"preferredProtocol":"oci","oci":{"registry":"oci.test","namespacePrefix":"pkgs/"}}"#,
        )
        .unwrap();
        assert_eq!(
            location("packages.test", current),
            OciLocation {
                registry: "oci.test".to_owned(),
                prefix: "pkgs/".to_owned()
            }
        );
        let older: RegistryMetadata =
            serde_json::from_str(r#"{"ociRegistry":"old.test","ociNamespacePrefix":"x/"}"#)
                .unwrap();
        assert_eq!(location("packages.test", older).registry, "old.test");
        assert_eq!(
            location("127.0.0.1:5000", RegistryMetadata::default()),
            OciLocation {
                registry: "127.0.0.1:5000".to_owned(),
                prefix: String::new()
            }
        );
    }
}
