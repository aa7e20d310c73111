//! Manifest → LockedApp.

use crate::source::{DEFAULT_MAX_SOURCE_BYTES, SourceError, source_digest};
use crate::{
    AppMetadata, ComponentMetadata, LOCKED_APP_VERSION, LockedApp, LockedComponent,
    LockedDependency, LockedFile, LockedSource, LockedTrigger, LockedVariable, absolutize,
};
use indexmap::IndexMap;
use std::path::{Component as PathComponent, Path, PathBuf};
use wisp_manifest::{ComponentSource, FileMount, HttpRoute, Manifest};

/// Errors turning a manifest into a LockedApp. Each names the component and path at fault.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// A component's Wasm file could not be read, or is not a usable file.
    #[error("component `{component}`: {}", source_message(.source))]
    Source {
        /// Component id.
        component: String,
        /// Why the source was refused.
        #[source]
        source: SourceError,
    },
    /// A dependency's Wasm file could not be read, or is not a usable file.
    #[error("component `{component}`: dependency `{dependency}`: {}", dependency_message(.source))]
    Dependency {
        /// Component id.
        component: String,
        /// The dependency's name.
        dependency: String,
        /// Why the file was refused.
        #[source]
        source: SourceError,
    },
    /// A `files` pattern was malformed.
    #[error("component `{component}`: invalid files pattern `{pattern}`: {message}")]
    Pattern {
        /// Component id.
        component: String,
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        message: String,
    },
    /// A `files` entry points outside the app directory or cannot be read.
    #[error("component `{component}`: files entry {path}: {message}")]
    File {
        /// Component id.
        component: String,
        /// Path at fault.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A `source = { url, digest }` was not downloaded before resolving.
    #[error(
        "component `{component}`: its source {url} has not been downloaded; fetch url sources into the content cache before resolving (as `wisp up` does)"
    )]
    UrlSourceNotFetched {
        /// Component id.
        component: String,
        /// The source's URL.
        url: String,
    },
}

/// What to do about a dependency's unreadable file (the error follows as the cause).
fn dependency_message(error: &SourceError) -> &'static str {
    match error {
        SourceError::Io { .. } => "cannot read its file; build it first or fix its `path`",
        _ => "unusable file; fix its `path`",
    }
}

/// What to do about a source error (the error itself follows as the cause): a file that
/// cannot be read most likely belongs to a component not built yet.
fn source_message(error: &SourceError) -> &'static str {
    match error {
        SourceError::Io { .. } => {
            "cannot read source; build the component first (its `build.command`) or fix `source`"
        }
        _ => "unusable source; fix `source`",
    }
}

/// Limits applied while resolving an app.
#[derive(Debug, Clone)]
pub struct ResolveOptions {
    /// Largest component source read, in bytes.
    pub max_source_bytes: u64,
    /// A directory where the digests of local sources are remembered while the files are
    /// unchanged (none: every source is read and hashed each time).
    pub digest_memo: Option<PathBuf>,
    /// The manifest profile to put in place before resolving (`--profile`), if any.
    pub profile: Option<String>,
}

impl Default for ResolveOptions {
    fn default() -> Self {
        Self {
            max_source_bytes: DEFAULT_MAX_SOURCE_BYTES,
            digest_memo: None,
            profile: None,
        }
    }
}

/// Resolves a parsed manifest located at `manifest_path` into a LockedApp: sources become
/// absolute with sha256 digests, file globs are expanded to individual files.
pub fn resolve(manifest: &Manifest, manifest_path: &Path) -> Result<LockedApp, ResolveError> {
    resolve_with(manifest, manifest_path, &ResolveOptions::default())
}

/// [`resolve`] with explicit limits.
pub fn resolve_with(
    manifest: &Manifest,
    manifest_path: &Path,
    options: &ResolveOptions,
) -> Result<LockedApp, ResolveError> {
    let manifest_path = std::path::absolute(manifest_path).unwrap_or(manifest_path.to_path_buf());
    let base = manifest_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();

    let variables = manifest
        .variables
        .iter()
        .map(|(name, v)| {
            (
                name.clone(),
                LockedVariable {
                    default: v.default.clone(),
                    secret: v.secret,
                },
            )
        })
        .collect();

    // Each trigger table becomes `{ trigger_type, trigger_config }`; the trigger type's
    // crate reads the configuration (its `<Type>TriggerConfig`).
    let mut triggers: Vec<LockedTrigger> = Vec::new();
    // Explicit ids first: a generated id never takes one the manifest gives later.
    let mut taken: std::collections::HashSet<String> = manifest
        .http_triggers
        .iter()
        .map(|t| t.id.clone())
        .chain(manifest.redis_triggers.iter().map(|t| t.id.clone()))
        .chain(manifest.cron_triggers.iter().map(|t| t.id.clone()))
        .flatten()
        .collect();
    for t in &manifest.http_triggers {
        let mut config = serde_json::Map::new();
        if let HttpRoute::Path(route) = &t.route {
            config.insert("route".into(), route.clone().into());
        }
        if let Some(component) = &t.component {
            config.insert("component".into(), component.clone().into());
        }
        if let Some(response) = &t.static_response {
            let mut fields = serde_json::Map::new();
            fields.insert("status_code".into(), response.status_code.into());
            if !response.headers.is_empty() {
                fields.insert("headers".into(), serde_json::json!(response.headers));
            }
            if let Some(body) = &response.body {
                fields.insert("body".into(), body.clone().into());
            }
            config.insert("static_response".into(), fields.into());
        }
        if let Some(size) = t.max_request_body_size {
            config.insert("max_request_body_size".into(), size.into());
        }
        // Spin's lock-file form: `{"type": "wagi", "argv": ...}`; the default executor is
        // written as no `executor` at all.
        if let (Some(_), wisp_manifest::HttpExecutor::Wagi { argv }) = (&t.component, &t.executor) {
            config.insert(
                "executor".into(),
                serde_json::json!({ "type": "wagi", "argv": argv }),
            );
        }
        triggers.push(locked_trigger(
            t.id.as_ref(),
            "http",
            t.component.as_deref(),
            &mut taken,
            config,
        ));
    }
    for t in &manifest.redis_triggers {
        let config = serde_json::json!({
            "component": t.component,
            "channel": t.channel,
            "address": t.address,
        });
        triggers.push(locked_trigger(
            t.id.as_ref(),
            "redis",
            Some(&t.component),
            &mut taken,
            object(config),
        ));
    }
    for t in &manifest.cron_triggers {
        let mut config = object(serde_json::json!({
            "component": t.component,
            "cron_expression": t.cron_expression,
        }));
        if t.allow_overlap {
            config.insert("allow_overlap".into(), true.into());
        }
        triggers.push(locked_trigger(
            t.id.as_ref(),
            "cron",
            Some(&t.component),
            &mut taken,
            config,
        ));
    }

    let components = manifest
        .components
        .values()
        .map(|c| {
            let path = local_path(&c.id, &base, &c.source)?;
            let digest = source_digest(
                &path,
                options.max_source_bytes,
                options.digest_memo.as_deref(),
            )
            .map_err(|source| ResolveError::Source {
                component: c.id.clone(),
                source,
            })?;
            Ok(LockedComponent {
                id: c.id.clone(),
                metadata: ComponentMetadata {
                    description: c.description.clone(),
                    allowed_outbound_hosts: c.allowed_outbound_hosts.clone(),
                    key_value_stores: c.key_value_stores.clone(),
                    databases: c.sqlite_databases.clone(),
                    ai_models: c.ai_models.clone(),
                },
                source: LockedSource {
                    content_type: "application/wasm".to_owned(),
                    digest,
                    path,
                },
                env: c.environment.clone(),
                files: resolve_files(&c.id, &base, &c.files, &c.exclude_files)?,
                config: c.variables.clone(),
                dependencies: resolve_dependencies(c, &base, options)?,
                trigger_dependencies: resolve_middleware(c, &base, options)?,
                host_requirements: IndexMap::new(),
            })
        })
        .collect::<Result<_, ResolveError>>()?;

    Ok(LockedApp {
        spin_lock_version: LOCKED_APP_VERSION,
        must_understand: Vec::new(),
        metadata: AppMetadata {
            name: manifest.application.name.clone(),
            version: manifest.application.version.clone(),
            description: manifest.application.description.clone(),
            authors: manifest.application.authors.clone(),
            origin: Some(manifest_path),
        },
        variables,
        triggers,
        components,
        host_requirements: IndexMap::new(),
    })
}

/// The absolute path of a local source; a url or registry source must have been downloaded
/// (and replaced by its cached file) before resolving.
fn local_path(
    component: &str,
    base: &Path,
    source: &ComponentSource,
) -> Result<PathBuf, ResolveError> {
    let url = match source {
        ComponentSource::Local(path) => return Ok(absolutize(base, path)),
        ComponentSource::Remote { url, .. } => url.clone(),
        ComponentSource::Registry {
            package, version, ..
        } => format!("(package {package} {version})"),
    };
    Err(ResolveError::UrlSourceNotFetched {
        component: component.to_owned(),
        url,
    })
}

/// Each dependency's file, read (with the same limits as component sources) and digested.
fn resolve_dependencies(
    component: &wisp_manifest::Component,
    base: &Path,
    options: &ResolveOptions,
) -> Result<IndexMap<String, LockedDependency>, ResolveError> {
    let mut dependencies = IndexMap::new();
    for (name, dependency) in &component.dependencies {
        let locked = locked_dependency(component, name, dependency, base, options)?;
        dependencies.insert(name.clone(), locked);
    }
    Ok(dependencies)
}

/// The component's middleware as [`LockedComponent::trigger_dependencies`], each file read
/// (with the same limits as component sources) and digested.
fn resolve_middleware(
    component: &wisp_manifest::Component,
    base: &Path,
    options: &ResolveOptions,
) -> Result<IndexMap<String, Vec<LockedDependency>>, ResolveError> {
    if component.middleware.is_empty() {
        return Ok(IndexMap::new());
    }
    let chain = (component.middleware.iter().enumerate())
        .map(|(index, middleware)| {
            let name = format!("middleware {}", index + 1);
            locked_dependency(component, &name, middleware, base, options)
        })
        .collect::<Result<_, _>>()?;
    Ok(IndexMap::from([(crate::MIDDLEWARE.to_owned(), chain)]))
}

/// One dependency (or middleware, `name`d for errors) of `component` with its file's digest.
fn locked_dependency(
    component: &wisp_manifest::Component,
    name: &str,
    dependency: &wisp_manifest::Dependency,
    base: &Path,
    options: &ResolveOptions,
) -> Result<LockedDependency, ResolveError> {
    let path = local_path(&component.id, base, &dependency.source)?;
    let digest = source_digest(
        &path,
        options.max_source_bytes,
        options.digest_memo.as_deref(),
    )
    .map_err(|source| ResolveError::Dependency {
        component: component.id.clone(),
        dependency: name.to_owned(),
        source,
    })?;
    Ok(LockedDependency {
        source: LockedSource {
            content_type: "application/wasm".to_owned(),
            digest,
            path,
        },
        export: dependency.export.clone(),
        inherit: dependency.inherit.clone(),
    })
}

/// A LockedApp trigger with its id: the manifest's, else Spin's generated one
/// ([`wisp_manifest::trigger_id`]), so logs and the locked app name triggers as Spin does.
fn locked_trigger(
    id: Option<&String>,
    trigger_type: &str,
    component: Option<&str>,
    taken: &mut std::collections::HashSet<String>,
    config: serde_json::Map<String, serde_json::Value>,
) -> LockedTrigger {
    let id = wisp_manifest::trigger_id(id.map(String::as_str), trigger_type, component, taken);
    LockedTrigger {
        id,
        trigger_type: trigger_type.to_owned(),
        trigger_config: config.into(),
    }
}

fn object(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match value {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

/// A LockedApp for a bare component file: one component, served on `/...`.
pub fn from_component_file(path: &Path) -> Result<LockedApp, ResolveError> {
    from_component_file_with(path, &ResolveOptions::default())
}

/// [`from_component_file`] with explicit limits.
pub fn from_component_file_with(
    path: &Path,
    options: &ResolveOptions,
) -> Result<LockedApp, ResolveError> {
    let path = std::path::absolute(path).unwrap_or(path.to_path_buf());
    let id = component_id_from_file_name(&path);
    let digest = source_digest(
        &path,
        options.max_source_bytes,
        options.digest_memo.as_deref(),
    )
    .map_err(|source| ResolveError::Source {
        component: id.clone(),
        source,
    })?;
    let config = object(serde_json::json!({ "route": "/...", "component": id }));
    Ok(LockedApp {
        spin_lock_version: LOCKED_APP_VERSION,
        must_understand: Vec::new(),
        metadata: AppMetadata {
            name: id.clone(),
            origin: Some(path.clone()),
            ..AppMetadata::default()
        },
        variables: IndexMap::new(),
        triggers: vec![locked_trigger(
            None,
            "http",
            Some(&id),
            &mut Default::default(),
            config,
        )],
        components: vec![LockedComponent {
            id,
            metadata: ComponentMetadata::default(),
            source: LockedSource {
                content_type: "application/wasm".to_owned(),
                digest,
                path,
            },
            env: IndexMap::new(),
            files: Vec::new(),
            config: IndexMap::new(),
            dependencies: IndexMap::new(),
            trigger_dependencies: IndexMap::new(),
            host_requirements: IndexMap::new(),
        }],
        host_requirements: IndexMap::new(),
    })
}

/// `My_Handler.wasm` → `my-handler`; falls back to `main` when nothing usable remains.
fn component_id_from_file_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    component_id_from_name(&stem)
}

/// A valid component id (kebab-case) made from any name: `My_Handler` → `my-handler`,
/// a leading digit gets a `c` in front, and `main` when nothing usable remains.
pub fn component_id_from_name(name: &str) -> String {
    let mut id = String::new();
    for ch in name.chars() {
        if ch.is_ascii_alphanumeric() {
            if id.is_empty() && ch.is_ascii_digit() {
                id.push('c');
            }
            id.push(ch.to_ascii_lowercase());
        } else if !id.is_empty() && !id.ends_with('-') {
            id.push('-');
        }
    }
    let id = id.trim_end_matches('-').to_owned();
    if id.is_empty() { "main".to_owned() } else { id }
}

fn resolve_files(
    component: &str,
    base: &Path,
    mounts: &[FileMount],
    exclude: &[String],
) -> Result<Vec<LockedFile>, ResolveError> {
    let pattern_error = |pattern: &str, message: String| ResolveError::Pattern {
        component: component.to_owned(),
        pattern: pattern.to_owned(),
        message,
    };
    let file_error = |path: &Path, message: String| ResolveError::File {
        component: component.to_owned(),
        path: path.to_path_buf(),
        message,
    };
    let excludes = exclude
        .iter()
        .map(|p| glob::Pattern::new(p).map_err(|e| pattern_error(p, e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let excluded = |rel: &Path| excludes.iter().any(|p| p.matches_path(rel));
    if mounts.is_empty() {
        return Ok(Vec::new());
    }
    // Containment is checked on real paths: the text of a path says nothing about where a
    // symlink inside the app directory leads.
    let real_base = std::fs::canonicalize(base)
        .map_err(|e| file_error(base, format!("cannot resolve the app directory: {e}")))?;
    let inside = |path: &Path| -> Result<PathBuf, ResolveError> {
        let real = std::fs::canonicalize(path)
            .map_err(|e| file_error(path, format!("cannot resolve: {e}")))?;
        if !real.starts_with(&real_base) {
            return Err(file_error(
                path,
                format!(
                    "leads to {} through a symlink, outside the app directory {}; files must be inside the app directory (copy the file in instead of linking to it)",
                    real.display(),
                    real_base.display()
                ),
            ));
        }
        Ok(real)
    };

    let mut files = Vec::new();
    for mount in mounts {
        match mount {
            FileMount::Pattern(pattern) => {
                check_relative(component, Path::new(pattern))?;
                let full = base.join(pattern);
                let entries = glob::glob(&full.to_string_lossy())
                    .map_err(|e| pattern_error(pattern, e.to_string()))?;
                for entry in entries {
                    let path = entry.map_err(|e| file_error(e.path(), e.error().to_string()))?;
                    let rel = path.strip_prefix(base).unwrap_or(&path).to_path_buf();
                    if excluded(&rel) {
                        continue;
                    }
                    // A matched directory contributes nothing itself (its files match
                    // their own patterns), wherever it leads.
                    if path.is_dir() {
                        continue;
                    }
                    let real = inside(&path)?;
                    if !real.is_file() {
                        return Err(file_error(
                            &path,
                            "is not a regular file (a FIFO, device or socket); remove it or exclude it with `exclude_files`".to_owned(),
                        ));
                    }
                    files.push(LockedFile {
                        path: guest_path(Path::new("/"), &rel),
                        source: real,
                    });
                }
            }
            FileMount::Placement {
                source,
                destination,
            } => {
                check_relative(component, source)?;
                let full = base.join(source);
                if !full.exists() {
                    return Err(file_error(
                        &full,
                        "no such file or directory; fix `source` in the files entry".to_owned(),
                    ));
                }
                let real = inside(&full)?;
                if real.is_file() {
                    files.push(LockedFile {
                        source: real,
                        path: destination.clone(),
                    });
                    continue;
                }
                if !real.is_dir() {
                    return Err(file_error(
                        &full,
                        "is not a regular file or directory; fix `source` in the files entry"
                            .to_owned(),
                    ));
                }
                // Links inside the directory are followed, so each one is checked below
                // like any other file (walkdir reports a loop as an error).
                for entry in walkdir::WalkDir::new(&full)
                    .follow_links(true)
                    .sort_by_file_name()
                {
                    let entry = entry.map_err(|e| file_error(&full, e.to_string()))?;
                    if entry.file_type().is_dir() {
                        continue;
                    }
                    let rel_to_base = entry.path().strip_prefix(base).unwrap_or(entry.path());
                    if excluded(rel_to_base) {
                        continue;
                    }
                    let real = inside(entry.path())?;
                    if !real.is_file() {
                        return Err(file_error(
                            entry.path(),
                            "is not a regular file (a FIFO, device or socket); remove it or exclude it with `exclude_files`".to_owned(),
                        ));
                    }
                    let rel = entry.path().strip_prefix(&full).unwrap_or(entry.path());
                    files.push(LockedFile {
                        path: guest_path(Path::new(destination), rel),
                        source: real,
                    });
                }
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files.dedup_by(|a, b| a.path == b.path);
    Ok(files)
}

/// Files must come from inside the app directory: no absolute paths, no `..`.
fn check_relative(component: &str, path: &Path) -> Result<(), ResolveError> {
    let escapes = path.components().any(|c| {
        matches!(
            c,
            PathComponent::ParentDir | PathComponent::RootDir | PathComponent::Prefix(_)
        )
    });
    if escapes {
        return Err(ResolveError::File {
            component: component.to_owned(),
            path: path.to_path_buf(),
            message: "files must be inside the app directory (no absolute paths or `..`); copy them under the manifest's directory".to_owned(),
        });
    }
    Ok(())
}

fn guest_path(destination: &Path, rel: &Path) -> String {
    let mut out = destination
        .to_string_lossy()
        .trim_end_matches('/')
        .to_owned();
    for part in rel.components() {
        if let PathComponent::Normal(p) = part {
            out.push('/');
            out.push_str(&p.to_string_lossy());
        }
    }
    if out.is_empty() { "/".to_owned() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_ids_from_file_names() {
        assert_eq!(
            component_id_from_file_name(Path::new("/x/My_Handler.wasm")),
            "my-handler"
        );
        assert_eq!(
            component_id_from_file_name(Path::new("/x/9lives.wasm")),
            "c9lives"
        );
        assert_eq!(component_id_from_file_name(Path::new("/x/__.wasm")), "main");
    }

    #[test]
    fn guest_paths_join_cleanly() {
        assert_eq!(
            guest_path(Path::new("/"), Path::new("static/a.txt")),
            "/static/a.txt"
        );
        assert_eq!(
            guest_path(Path::new("/assets/"), Path::new("b/c.css")),
            "/assets/b/c.css"
        );
    }

    #[test]
    fn files_resolve_globs_placements_and_excludes() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::fs::create_dir_all(base.join("static/sub")).unwrap();
        std::fs::write(base.join("static/a.txt"), "a").unwrap();
        std::fs::write(base.join("static/sub/b.txt"), "b").unwrap();
        std::fs::write(base.join("static/skip.bak"), "x").unwrap();
        let mounts = vec![
            FileMount::Pattern("static/**/*".to_owned()),
            FileMount::Placement {
                source: PathBuf::from("static/sub"),
                destination: "/assets".to_owned(),
            },
        ];
        let files = resolve_files("c", base, &mounts, &["**/*.bak".to_owned()]).unwrap();
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            ["/assets/b.txt", "/static/a.txt", "/static/sub/b.txt"]
        );
        assert!(files.iter().all(|f| f.source.is_absolute()));
    }

    /// A symlink inside the app directory must not hand the guest a file from outside
    /// it, whether it is matched by a glob, named by a placement or found in a directory.
    #[test]
    fn symlinks_leading_outside_the_app_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "operator's secret").unwrap();
        std::fs::create_dir(outside.path().join("dir")).unwrap();
        std::fs::write(outside.path().join("dir/key"), "key").unwrap();
        let app = tempfile::tempdir().unwrap();
        let base = app.path();
        std::fs::create_dir_all(base.join("static")).unwrap();
        std::fs::create_dir_all(base.join("assets")).unwrap();
        std::fs::write(base.join("static/ok.txt"), "ok").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), base.join("static/leak.txt"))
            .unwrap();
        std::os::unix::fs::symlink(outside.path().join("dir"), base.join("assets/linked")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), base.join("secret.txt")).unwrap();
        let cases = [
            FileMount::Pattern("static/*".to_owned()),
            FileMount::Placement {
                source: PathBuf::from("secret.txt"),
                destination: "/s.txt".to_owned(),
            },
            FileMount::Placement {
                source: PathBuf::from("assets"),
                destination: "/assets".to_owned(),
            },
            FileMount::Placement {
                source: PathBuf::from("assets/linked"),
                destination: "/linked".to_owned(),
            },
        ];
        for mount in cases {
            let err = resolve_files("c", base, std::slice::from_ref(&mount), &[]).unwrap_err();
            let message = err.to_string();
            assert!(
                message.contains("outside the app directory") && message.contains("symlink"),
                "{mount:?}: {message}"
            );
        }
    }

    /// Links that stay inside the app directory are fine, and the real file is what the
    /// LockedApp records (so staging copies exactly the file that was checked).
    #[test]
    fn symlinks_inside_the_app_are_followed() {
        let app = tempfile::tempdir().unwrap();
        let base = app.path();
        std::fs::create_dir_all(base.join("real")).unwrap();
        std::fs::write(base.join("real/a.txt"), "a").unwrap();
        std::fs::create_dir_all(base.join("static")).unwrap();
        std::os::unix::fs::symlink(base.join("real/a.txt"), base.join("static/a.txt")).unwrap();
        std::os::unix::fs::symlink(base.join("real"), base.join("linked")).unwrap();
        let files = resolve_files(
            "c",
            base,
            &[
                FileMount::Pattern("static/*".to_owned()),
                FileMount::Placement {
                    source: PathBuf::from("linked"),
                    destination: "/l".to_owned(),
                },
            ],
            &[],
        )
        .unwrap();
        let real = std::fs::canonicalize(base.join("real/a.txt")).unwrap();
        let paths: Vec<(&str, &Path)> = files
            .iter()
            .map(|f| (f.path.as_str(), f.source.as_path()))
            .collect();
        assert_eq!(
            paths,
            [
                ("/l/a.txt", real.as_path()),
                ("/static/a.txt", real.as_path())
            ]
        );
    }

    #[test]
    fn sources_that_are_not_files_are_refused() {
        let app = tempfile::tempdir().unwrap();
        let manifest_path = app.path().join("spin.toml");
        std::fs::write(
            &manifest_path,
            "spin_manifest_version = 2\n[application]\nname = \"z\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"z\"\n[component.z]\nsource = \"/dev/zero\"\n",
        )
        .unwrap();
        let manifest = wisp_manifest::parse_file(&manifest_path).unwrap();
        let err = resolve(&manifest, &manifest_path).unwrap_err();
        assert!(err.to_string().contains("component `z`"), "{err}");
        let cause = std::error::Error::source(&err).map(ToString::to_string);
        assert!(
            cause
                .as_deref()
                .is_some_and(|c| c.contains("/dev/zero is a character device")),
            "{cause:?}"
        );
    }

    #[test]
    fn files_outside_the_app_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve_files(
            "c",
            dir.path(),
            &[FileMount::Pattern("../secret/*".to_owned())],
            &[],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("inside the app directory"),
            "{err}"
        );
    }
}
