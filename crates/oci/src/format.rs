//! Conversion between Wisp's [`LockedApp`] and the Spin-style locked app stored in the
//! registry, safe file paths, and the archive layer.

use crate::cache::Cache;
use crate::{OciError, Reference, Result, io_error};
use base64::Engine as _;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use wisp_app::{LOCKED_APP_VERSION, LockedApp};

/// Spin's encoding of inline content: standard alphabet, no `=` padding.
const INLINE_WRITE: base64::engine::GeneralPurpose =
    base64::engine::general_purpose::STANDARD_NO_PAD;

/// Reads inline content padded or not: Spin writes it unpadded; Wisp wrote it padded
/// before it followed Spin.
const INLINE_READ: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// Wisp's per-route body limits, kept in the app metadata: Spin refuses unknown fields in an
/// HTTP trigger's configuration but ignores unknown metadata.
const BODY_LIMITS_KEY: &str = "wisp_max_request_body_size";

/// Most bytes unpacked from one archive layer (guards against decompression bombs).
pub(crate) const MAX_ARCHIVE_UNPACKED: u64 = 8 * 1024 * 1024 * 1024;

/// A file as referenced from the registry's locked app.
#[derive(Debug, Clone)]
pub(crate) struct FileRef {
    /// Guest path relative to `/` (`static/index.html`).
    pub rel_path: String,
    /// `sha256:` digest of the content.
    pub digest: String,
    /// The content itself, for small files.
    pub inline: Option<Vec<u8>>,
}

/// Normalizes a path from an artifact (or a Wisp guest path with its leading `/` removed)
/// into `a/b/c`: empty and `.` segments are dropped; `..`, absolute paths, backslashes and
/// NULs are refused.
pub(crate) fn normalize_rel_path(path: &str) -> Result<String> {
    let unsafe_path = |message: &str| OciError::UnsafePath {
        path: path.to_owned(),
        message: message.to_owned(),
    };
    if path.starts_with('/') {
        return Err(unsafe_path("absolute paths are not allowed"));
    }
    if path.contains('\\') || path.contains('\0') {
        return Err(unsafe_path("backslashes and NUL bytes are not allowed"));
    }
    let mut parts = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err(unsafe_path("`..` is not allowed")),
            s if s.len() >= 2 && s.as_bytes()[1] == b':' => {
                return Err(unsafe_path("drive prefixes are not allowed"));
            }
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        return Err(unsafe_path("the path names no file"));
    }
    Ok(parts.join("/"))
}

/// The guest path of a Wisp file relative to `/` (`/static/a.txt` → `static/a.txt`).
pub(crate) fn guest_rel_path(guest_path: &str) -> Result<String> {
    normalize_rel_path(guest_path.trim_start_matches('/'))
}

/// Wisp's LockedApp as the registry stores it: sources, dependency sources and files become
/// Spin content references by digest (no local path is written), `metadata.origin` is
/// dropped. `files[i]` are component `i`'s files.
pub(crate) fn to_registry_json(locked: &LockedApp, files: &[Vec<FileRef>]) -> Vec<u8> {
    let mut value = serde_json::to_value(locked).expect("a LockedApp always serializes");
    // Middleware, as Spin writes it: a host requirement of the component, which hosts
    // without middleware must refuse to run.
    let middleware = locked.components.iter().any(|c| !c.middleware().is_empty());
    if middleware
        && !locked
            .must_understand
            .iter()
            .any(|f| f == "component_host_requirements")
    {
        value["must_understand"] = json!(
            (locked.must_understand.iter().map(String::as_str))
                .chain(["component_host_requirements"])
                .collect::<Vec<_>>()
        );
    }
    // Spin writes version 0 for an app without host requirements, and reads 0 and 1.
    if locked.must_understand.is_empty() && !middleware {
        value["spin_lock_version"] = json!(0);
    }
    // Spin requires `route` on every HTTP trigger and writes a private one as
    // `{"private": true}`; Wisp's LockedApp leaves it out.
    let mut body_limits = Map::new();
    if let Some(triggers) = value.get_mut("triggers").and_then(Value::as_array_mut) {
        for trigger in triggers {
            let id = trigger.get("id").and_then(Value::as_str).map(str::to_owned);
            if trigger.get("trigger_type").and_then(Value::as_str) == Some("http")
                && let Some(config) = trigger
                    .get_mut("trigger_config")
                    .and_then(Value::as_object_mut)
            {
                if !config.contains_key("route") {
                    config.insert("route".to_owned(), json!({ "private": true }));
                }
                if let (Some(limit), Some(id)) = (config.remove("max_request_body_size"), id) {
                    body_limits.insert(id, limit);
                }
            }
        }
    }
    if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("origin");
        // Spin's triggers look up their global options here (and fail without them): none
        // under `triggers`, and the one trigger type under `trigger`, as Spin writes.
        metadata.insert("triggers".to_owned(), json!({}));
        let mut types: Vec<&str> = locked
            .triggers
            .iter()
            .map(|t| t.trigger_type.as_str())
            .collect();
        types.sort_unstable();
        types.dedup();
        if let [only] = types[..] {
            metadata.insert("trigger".to_owned(), json!({ "type": only }));
        }
        if !body_limits.is_empty() {
            metadata.insert(BODY_LIMITS_KEY.to_owned(), Value::Object(body_limits));
        }
    }
    if let Some(components) = value.get_mut("components").and_then(Value::as_array_mut) {
        for ((component, locked), files) in components.iter_mut().zip(&locked.components).zip(files)
        {
            let component = component.as_object_mut().expect("components are objects");
            component.insert(
                "source".to_owned(),
                json!({
                    "content_type": locked.source.content_type,
                    "digest": locked.source.digest,
                }),
            );
            if locked.dependencies.is_empty() {
                component.remove("dependencies");
            } else {
                let dependencies = locked.dependencies.iter().map(|(name, dependency)| {
                    (name.clone(), Value::Object(registry_dependency(dependency)))
                });
                component.insert(
                    "dependencies".to_owned(),
                    Value::Object(dependencies.collect()),
                );
            }
            if !locked.middleware().is_empty() {
                let chain = locked.middleware().iter().map(registry_dependency);
                component.insert(
                    "trigger_dependencies".to_owned(),
                    json!({ wisp_app::MIDDLEWARE: chain.map(Value::Object).collect::<Vec<_>>() }),
                );
                let requirements = component
                    .entry("host_requirements")
                    .or_insert_with(|| json!({}));
                requirements[wisp_app::MIDDLEWARE] = json!("required");
                // Spin's executor composes the dependencies with this trigger type's composer.
                let metadata = component.entry("metadata").or_insert_with(|| json!({}));
                metadata["resolve-trigger-dependencies-using"] = json!("http");
            }
            if files.is_empty() {
                component.remove("files");
            } else {
                let files = files
                    .iter()
                    .map(|f| {
                        let mut entry = Map::new();
                        entry.insert("digest".to_owned(), json!(f.digest));
                        if let Some(inline) = &f.inline {
                            entry.insert("inline".to_owned(), json!(INLINE_WRITE.encode(inline)));
                        }
                        entry.insert("path".to_owned(), json!(f.rel_path));
                        Value::Object(entry)
                    })
                    .collect();
                component.insert("files".to_owned(), Value::Array(files));
            }
        }
    }
    serde_json::to_vec(&value).expect("JSON values serialize")
}

/// A dependency (or middleware) as Spin writes it in an artifact: `source` is
/// `{"content_type", "digest"}` (its Wasm is a layer), `export` is always written (`null`
/// when absent) and `inherit` only when something is inherited.
fn registry_dependency(dependency: &wisp_app::LockedDependency) -> Map<String, Value> {
    let mut entry = Map::new();
    entry.insert(
        "source".to_owned(),
        json!({
            "content_type": dependency.source.content_type,
            "digest": dependency.source.digest,
        }),
    );
    entry.insert("export".to_owned(), json!(dependency.export));
    if !dependency.inherit.is_none() {
        entry.insert(
            "inherit".to_owned(),
            serde_json::to_value(&dependency.inherit).expect("inherit serializes"),
        );
    }
    entry
}

/// Spin's `ContentRef`: content by digest, inline bytes, or (refused here) a URL.
#[derive(Debug, Clone)]
pub(crate) struct ContentRef {
    pub digest: Option<String>,
    pub inline: Option<Vec<u8>>,
}

impl ContentRef {
    fn parse(value: &Value, what: &str, reference: &Reference) -> Result<Self> {
        let invalid = |message: String| OciError::InvalidLockedApp {
            reference: reference.to_string(),
            message: format!("{what}: {message}"),
        };
        let obj = value
            .as_object()
            .ok_or_else(|| invalid("expected an object".to_owned()))?;
        let digest = match obj.get("digest") {
            None | Some(Value::Null) => None,
            Some(Value::String(d)) if crate::cache::is_sha256_digest(d) => Some(d.clone()),
            Some(other) => {
                return Err(invalid(format!(
                    "unsupported digest {other}; only sha256 is supported"
                )));
            }
        };
        let inline = match obj.get("inline") {
            None | Some(Value::Null) => None,
            Some(Value::String(b64)) => Some(
                INLINE_READ
                    .decode(b64)
                    .map_err(|e| invalid(format!("inline content is not base64: {e}")))?,
            ),
            Some(_) => return Err(invalid("inline content must be a base64 string".to_owned())),
        };
        if digest.is_none() && inline.is_none() {
            return Err(invalid(
                "content has neither a digest nor inline bytes (a registry app may not refer to files outside the artifact)".to_owned(),
            ));
        }
        Ok(ContentRef { digest, inline })
    }

    /// The digest the content is known by.
    pub(crate) fn key(&self) -> String {
        match (&self.digest, &self.inline) {
            (Some(d), _) => d.clone(),
            (None, Some(bytes)) => wisp_app::sha256_digest(bytes),
            (None, None) => unreachable!("checked in parse"),
        }
    }
}

/// A locked app read from the registry, checked for shape and safe paths, whose content
/// references still need resolving to cached files.
#[derive(Debug)]
pub(crate) struct RegistryLockedApp {
    value: Value,
    sources: Vec<ContentRef>,
    /// Per component: its dependencies' sources, by dependency name.
    dependencies: Vec<Vec<(String, ContentRef)>>,
    /// Per component: its middleware's sources, outermost first.
    middleware: Vec<Vec<ContentRef>>,
    files: Vec<Vec<(String, ContentRef)>>,
}

impl RegistryLockedApp {
    pub(crate) fn parse(bytes: &[u8], reference: &Reference) -> Result<Self> {
        let invalid = |message: String| OciError::InvalidLockedApp {
            reference: reference.to_string(),
            message,
        };
        let mut value: Value =
            serde_json::from_slice(bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
        let obj = value
            .as_object_mut()
            .ok_or_else(|| invalid("expected a JSON object".to_owned()))?;
        // Spin writes version 0 when the app has no host requirements; 0 and 1 mean the same.
        match obj.get("spin_lock_version").and_then(Value::as_u64) {
            Some(0) => {
                obj.insert("spin_lock_version".to_owned(), json!(LOCKED_APP_VERSION));
            }
            Some(_) => {}
            None => return Err(invalid("missing `spin_lock_version`".to_owned())),
        }
        // Spin's loader moves a trigger's dependencies onto the component it calls before
        // it writes the locked app; one left on a trigger would be skipped: refused.
        let has_trigger_dependencies = |owner: &Value| {
            owner.get("trigger_dependencies").is_some_and(|deps| {
                !deps.is_null() && deps.as_object().is_none_or(|m| !m.is_empty())
            })
        };
        if let Some(triggers) = obj.get("triggers").and_then(Value::as_array) {
            for trigger in triggers {
                if has_trigger_dependencies(trigger) {
                    let id = trigger.get("id").and_then(Value::as_str).unwrap_or("?");
                    return Err(invalid(format!(
                        "trigger `{id}` has `trigger_dependencies`; they belong on the component it calls (push the app again with Spin 4 or Wisp)"
                    )));
                }
            }
        }
        let components = obj
            .get("components")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("missing `components`".to_owned()))?;
        let mut sources = Vec::new();
        let mut dependencies = Vec::new();
        let mut middleware = Vec::new();
        let mut files = Vec::new();
        for component in components {
            let id = component.get("id").and_then(Value::as_str).unwrap_or("?");
            let mut chain = Vec::new();
            match component.get("trigger_dependencies") {
                None | Some(Value::Null) => {}
                Some(Value::Object(kinds)) => {
                    for (kind, entries) in kinds {
                        if kind != wisp_app::MIDDLEWARE {
                            return Err(invalid(format!(
                                "component `{id}` has trigger dependencies of kind `{kind}`, which wisp does not run; only `middleware`"
                            )));
                        }
                        let entries = entries.as_array().ok_or_else(|| {
                            invalid(format!("component `{id}`: `middleware` must be a list"))
                        })?;
                        for (index, entry) in entries.iter().enumerate() {
                            let what = format!("component `{id}` middleware {} source", index + 1);
                            let source = entry
                                .get("source")
                                .ok_or_else(|| invalid(format!("{what} is missing")))?;
                            chain.push(ContentRef::parse(source, &what, reference)?);
                        }
                    }
                }
                Some(_) => {
                    return Err(invalid(format!(
                        "component `{id}`: `trigger_dependencies` must be an object"
                    )));
                }
            }
            middleware.push(chain);
            let source = component
                .get("source")
                .ok_or_else(|| invalid(format!("component `{id}` has no `source`")))?;
            sources.push(ContentRef::parse(
                source,
                &format!("component `{id}` source"),
                reference,
            )?);
            // Each dependency's Wasm is a layer named by digest, like the component's source;
            // the names, exports and inheritance are checked with the rest of the app.
            let mut component_dependencies = Vec::new();
            match component.get("dependencies") {
                None | Some(Value::Null) => {}
                Some(Value::Object(map)) => {
                    for (name, dependency) in map {
                        let source = dependency.get("source").ok_or_else(|| {
                            invalid(format!(
                                "component `{id}`: dependency `{name}` has no `source`"
                            ))
                        })?;
                        let content = ContentRef::parse(
                            source,
                            &format!("component `{id}` dependency `{name}` source"),
                            reference,
                        )?;
                        component_dependencies.push((name.clone(), content));
                    }
                }
                Some(_) => {
                    return Err(invalid(format!(
                        "component `{id}`: `dependencies` must be an object"
                    )));
                }
            }
            dependencies.push(component_dependencies);
            let mut component_files = Vec::new();
            if let Some(list) = component.get("files") {
                let list = list
                    .as_array()
                    .ok_or_else(|| invalid(format!("component `{id}`: `files` must be a list")))?;
                for file in list {
                    let raw_path = file.get("path").and_then(Value::as_str).ok_or_else(|| {
                        invalid(format!("component `{id}`: a file has no `path`"))
                    })?;
                    let path = normalize_rel_path(raw_path)?;
                    let content = ContentRef::parse(
                        file,
                        &format!("component `{id}` file `{raw_path}`"),
                        reference,
                    )?;
                    component_files.push((path, content));
                }
            }
            files.push(component_files);
        }
        Ok(RegistryLockedApp {
            value,
            sources,
            dependencies,
            middleware,
            files,
        })
    }

    /// Every content reference (sources, then dependency sources, then files).
    pub(crate) fn content_refs(&self) -> impl Iterator<Item = &ContentRef> {
        self.sources
            .iter()
            .chain(self.dependencies.iter().flatten().map(|(_, c)| c))
            .chain(self.middleware.iter().flatten())
            .chain(self.files.iter().flatten().map(|(_, c)| c))
    }

    /// Wisp's LockedApp with each content reference replaced by its cached file.
    pub(crate) fn into_locked(
        mut self,
        paths: &HashMap<String, PathBuf>,
        reference: &Reference,
    ) -> Result<LockedApp> {
        let invalid = |message: String| OciError::InvalidLockedApp {
            reference: reference.to_string(),
            message,
        };
        let path_of = |content: &ContentRef| -> Result<PathBuf> {
            let key = content.key();
            paths.get(&key).cloned().ok_or_else(|| {
                invalid(format!(
                    "it references {key}, which no layer of the artifact provides"
                ))
            })
        };
        let obj = self.value.as_object_mut().expect("checked in parse");
        let metadata = obj.entry("metadata").or_insert_with(|| json!({}));
        let mut body_limits = Map::new();
        let mut redis_address = None;
        if let Some(metadata) = metadata.as_object_mut() {
            metadata.remove("origin");
            // Spin's app-level trigger options (`[application.trigger.<type>]`): of these
            // Wisp's triggers take only Redis's default `address`, which goes into every
            // Redis trigger that names none, as Spin applies it.
            let options = match metadata.remove("triggers") {
                Some(Value::Object(options)) => options.get("redis").cloned(),
                _ => None,
            };
            let legacy = metadata.remove("trigger").filter(|t| t["type"] == "redis");
            redis_address = options
                .or(legacy)
                .and_then(|redis| redis.get("address").cloned())
                .filter(Value::is_string);
            if let Some(Value::Object(limits)) = metadata.remove(BODY_LIMITS_KEY) {
                body_limits = limits;
            }
            if !metadata.get("name").is_some_and(Value::is_string) {
                let name = reference
                    .repository()
                    .rsplit('/')
                    .next()
                    .unwrap_or("app")
                    .to_owned();
                metadata.insert("name".to_owned(), json!(name));
            }
        }
        if let Some(triggers) = obj.get_mut("triggers").and_then(Value::as_array_mut) {
            for trigger in triggers {
                let limit = trigger
                    .get("id")
                    .and_then(Value::as_str)
                    .and_then(|id| body_limits.get(id))
                    .cloned();
                let Some(config) = trigger
                    .get_mut("trigger_config")
                    .and_then(Value::as_object_mut)
                else {
                    continue;
                };
                // Spin writes a private route as `{"private": true}`; Wisp as no route.
                if config.get("route").is_some_and(Value::is_object) {
                    config.remove("route");
                }
                if let Some(limit) = limit {
                    config.insert("max_request_body_size".to_owned(), limit);
                }
                if let Some(address) = &redis_address
                    && !config.contains_key("address")
                    && config.contains_key("channel")
                {
                    config.insert("address".to_owned(), address.clone());
                }
            }
        }
        let components = obj
            .get_mut("components")
            .and_then(Value::as_array_mut)
            .expect("checked in parse");
        for (i, component) in components.iter_mut().enumerate() {
            let component = component
                .as_object_mut()
                .ok_or_else(|| invalid("components must be objects".to_owned()))?;
            let source = &self.sources[i];
            let content_type = component
                .get("source")
                .and_then(|s| s.get("content_type"))
                .and_then(Value::as_str)
                .unwrap_or("application/wasm")
                .to_owned();
            component.insert(
                "source".to_owned(),
                json!({
                    "content_type": content_type,
                    "path": path_of(source)?,
                    "digest": source.key(),
                }),
            );
            if !self.dependencies[i].is_empty() {
                let dependencies = component
                    .get_mut("dependencies")
                    .and_then(Value::as_object_mut)
                    .expect("checked in parse");
                for (name, content) in &self.dependencies[i] {
                    let dependency = dependencies
                        .get_mut(name)
                        .and_then(Value::as_object_mut)
                        .ok_or_else(|| invalid(format!("dependency `{name}` must be an object")))?;
                    let content_type = dependency
                        .get("source")
                        .and_then(|s| s.get("content_type"))
                        .and_then(Value::as_str)
                        .unwrap_or("application/wasm")
                        .to_owned();
                    dependency.insert(
                        "source".to_owned(),
                        json!({
                            "content_type": content_type,
                            "path": path_of(content)?,
                            "digest": content.key(),
                        }),
                    );
                }
            }
            if !self.middleware[i].is_empty() {
                let chain = component
                    .get_mut("trigger_dependencies")
                    .and_then(|kinds| kinds.get_mut(wisp_app::MIDDLEWARE))
                    .and_then(Value::as_array_mut)
                    .expect("checked in parse");
                for (entry, content) in chain.iter_mut().zip(&self.middleware[i]) {
                    let entry = entry.as_object_mut().ok_or_else(|| {
                        invalid("a middleware entry must be an object".to_owned())
                    })?;
                    let content_type = entry
                        .get("source")
                        .and_then(|s| s.get("content_type"))
                        .and_then(Value::as_str)
                        .unwrap_or("application/wasm")
                        .to_owned();
                    entry.insert(
                        "source".to_owned(),
                        json!({
                            "content_type": content_type,
                            "path": path_of(content)?,
                            "digest": content.key(),
                        }),
                    );
                }
            }
            let files = self.files[i]
                .iter()
                .map(|(path, content)| {
                    Ok(json!({
                        "source": path_of(content)?,
                        "path": format!("/{path}"),
                    }))
                })
                .collect::<Result<Vec<_>>>()?;
            component.insert("files".to_owned(), Value::Array(files));
        }
        let locked: LockedApp =
            serde_json::from_value(self.value).map_err(|e| invalid(format!("{e}")))?;
        locked.check().map_err(|e| invalid(e.to_string()))?;
        Ok(locked)
    }
}

/// Writes a deterministic gzipped tar of `files` (`(guest path relative to /, source)`) to
/// `out`: sorted entries, mode 0644, owner 0, mtime 0, so an unchanged app archives to the
/// same digest.
pub(crate) fn build_archive(files: &[(String, PathBuf)], out: &Path) -> Result<()> {
    let file = std::fs::File::create(out).map_err(io_error("create", out))?;
    let encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(file, flate2::Compression::default());
    let mut builder = tar::Builder::new(encoder);
    builder.mode(tar::HeaderMode::Deterministic);
    let mut sorted: Vec<&(String, PathBuf)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted.dedup_by(|a, b| a.0 == b.0);
    for (rel, source) in sorted {
        let mut input = std::fs::File::open(source).map_err(io_error("open", source))?;
        let size = input.metadata().map_err(io_error("read", source))?.len();
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        builder
            .append_data(&mut header, rel, &mut input)
            .map_err(io_error("archive", source))?;
    }
    let encoder = builder.into_inner().map_err(io_error("write", out))?;
    encoder
        .finish()
        .map_err(io_error("write", out))?
        .sync_all()
        .map_err(io_error("write", out))?;
    Ok(())
}

/// Unpacks an archive layer's regular files into the cache by content digest (blocking).
/// Entries must have safe relative paths; links and special files are refused.
pub(crate) fn unpack_archive(cache: &Cache, archive: &Path, digest: &str) -> Result<()> {
    let file = std::fs::File::open(archive).map_err(io_error("open", archive))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let bad_archive = |e: std::io::Error| OciError::UnsupportedArtifact {
        reference: digest.to_owned(),
        message: format!("archive layer {digest} is not a valid tar.gz: {e}"),
    };
    let mut remaining = MAX_ARCHIVE_UNPACKED;
    for entry in tar.entries().map_err(bad_archive)? {
        let mut entry = entry.map_err(bad_archive)?;
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Directory => continue,
            tar::EntryType::XHeader | tar::EntryType::XGlobalHeader => continue,
            tar::EntryType::Symlink | tar::EntryType::Link => {
                return Err(OciError::UnsafePath {
                    path: raw_path,
                    message: format!("archive layer {digest} contains a link"),
                });
            }
            other => {
                return Err(OciError::UnsafePath {
                    path: raw_path,
                    message: format!("archive layer {digest} contains a {other:?} entry"),
                });
            }
        }
        normalize_rel_path(&raw_path)?;
        let (_, size) = cache.insert_reader_blocking(&mut entry, remaining, &raw_path)?;
        remaining -= size;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
