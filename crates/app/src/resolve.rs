//! Manifest → LockedApp.

use crate::{
    AppMetadata, ComponentMetadata, CronTriggerConfig, HttpTriggerConfig, LOCKED_APP_VERSION,
    LockedApp, LockedComponent, LockedFile, LockedSource, LockedTrigger, LockedVariable,
    RedisTriggerConfig, StaticResponse, absolutize, sha256_digest,
};
use indexmap::IndexMap;
use std::path::{Component as PathComponent, Path, PathBuf};
use wisp_manifest::{FileMount, HttpRoute, Manifest};

/// Errors turning a manifest into a LockedApp. Each names the component and path at fault.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// A component's Wasm file could not be read.
    #[error(
        "component `{component}`: cannot read source {path}: {source}; build the component first (its `build.command`) or fix `source`"
    )]
    Source {
        /// Component id.
        component: String,
        /// Path that failed.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
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
}

/// Resolves a parsed manifest located at `manifest_path` into a LockedApp: sources become
/// absolute with sha256 digests, file globs are expanded to individual files.
pub fn resolve(manifest: &Manifest, manifest_path: &Path) -> Result<LockedApp, ResolveError> {
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

    let mut triggers: Vec<LockedTrigger> = manifest
        .http_triggers
        .iter()
        .enumerate()
        .map(|(index, t)| {
            let config = HttpTriggerConfig {
                route: match &t.route {
                    HttpRoute::Path(p) => Some(p.clone()),
                    HttpRoute::Private => None,
                },
                component: t.component.clone(),
                static_response: t.static_response.as_ref().map(|s| StaticResponse {
                    status_code: s.status_code,
                    headers: s.headers.clone(),
                    body: s.body.clone(),
                }),
            };
            LockedTrigger {
                id: t
                    .id
                    .clone()
                    .unwrap_or_else(|| format!("http-trigger-{}", index + 1)),
                trigger_type: "http".to_owned(),
                trigger_config: serde_json::to_value(config).expect("trigger config serializes"),
            }
        })
        .collect();
    triggers.extend(
        manifest
            .redis_triggers
            .iter()
            .enumerate()
            .map(|(index, t)| {
                let config = RedisTriggerConfig {
                    component: t.component.clone(),
                    channel: t.channel.clone(),
                    address: t.address.clone(),
                };
                LockedTrigger {
                    id: t
                        .id
                        .clone()
                        .unwrap_or_else(|| format!("redis-trigger-{}", index + 1)),
                    trigger_type: "redis".to_owned(),
                    trigger_config: serde_json::to_value(config)
                        .expect("trigger config serializes"),
                }
            }),
    );
    triggers.extend(manifest.cron_triggers.iter().enumerate().map(|(index, t)| {
        let config = CronTriggerConfig {
            component: t.component.clone(),
            cron_expression: t.cron_expression.clone(),
            allow_overlap: t.allow_overlap,
        };
        LockedTrigger {
            id: t
                .id
                .clone()
                .unwrap_or_else(|| format!("cron-trigger-{}", index + 1)),
            trigger_type: "cron".to_owned(),
            trigger_config: serde_json::to_value(config).expect("trigger config serializes"),
        }
    }));

    let components = manifest
        .components
        .values()
        .map(|c| {
            let path = absolutize(&base, &c.source);
            let bytes = std::fs::read(&path).map_err(|source| ResolveError::Source {
                component: c.id.clone(),
                path: path.clone(),
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
                    digest: sha256_digest(&bytes),
                    path,
                },
                env: c.environment.clone(),
                files: resolve_files(&c.id, &base, &c.files, &c.exclude_files)?,
                config: c.variables.clone(),
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
    })
}

/// A LockedApp for a bare component file: one component, served on `/...`.
pub fn from_component_file(path: &Path) -> Result<LockedApp, ResolveError> {
    let path = std::path::absolute(path).unwrap_or(path.to_path_buf());
    let id = component_id_from_file_name(&path);
    let bytes = std::fs::read(&path).map_err(|source| ResolveError::Source {
        component: id.clone(),
        path: path.clone(),
        source,
    })?;
    let config = HttpTriggerConfig {
        route: Some("/...".to_owned()),
        component: Some(id.clone()),
        static_response: None,
    };
    Ok(LockedApp {
        spin_lock_version: LOCKED_APP_VERSION,
        must_understand: Vec::new(),
        metadata: AppMetadata {
            name: id.clone(),
            origin: Some(path.clone()),
            ..AppMetadata::default()
        },
        variables: IndexMap::new(),
        triggers: vec![LockedTrigger {
            id: "http-trigger-1".to_owned(),
            trigger_type: "http".to_owned(),
            trigger_config: serde_json::to_value(config).expect("trigger config serializes"),
        }],
        components: vec![LockedComponent {
            id,
            metadata: ComponentMetadata::default(),
            source: LockedSource {
                content_type: "application/wasm".to_owned(),
                digest: sha256_digest(&bytes),
                path,
            },
            env: IndexMap::new(),
            files: Vec::new(),
            config: IndexMap::new(),
        }],
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
    let excludes = exclude
        .iter()
        .map(|p| glob::Pattern::new(p).map_err(|e| pattern_error(p, e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let excluded = |rel: &Path| excludes.iter().any(|p| p.matches_path(rel));

    let mut files = Vec::new();
    for mount in mounts {
        match mount {
            FileMount::Pattern(pattern) => {
                check_relative(component, Path::new(pattern))?;
                let full = base.join(pattern);
                let entries = glob::glob(&full.to_string_lossy())
                    .map_err(|e| pattern_error(pattern, e.to_string()))?;
                for entry in entries {
                    let path = entry.map_err(|e| ResolveError::File {
                        component: component.to_owned(),
                        path: e.path().to_path_buf(),
                        message: e.error().to_string(),
                    })?;
                    if !path.is_file() {
                        continue;
                    }
                    let rel = path.strip_prefix(base).unwrap_or(&path).to_path_buf();
                    if excluded(&rel) {
                        continue;
                    }
                    files.push(LockedFile {
                        path: guest_path(Path::new("/"), &rel),
                        source: path,
                    });
                }
            }
            FileMount::Placement {
                source,
                destination,
            } => {
                check_relative(component, source)?;
                let full = base.join(source);
                if full.is_file() {
                    files.push(LockedFile {
                        source: full,
                        path: destination.clone(),
                    });
                    continue;
                }
                if !full.is_dir() {
                    return Err(ResolveError::File {
                        component: component.to_owned(),
                        path: full,
                        message: "no such file or directory; fix `source` in the files entry"
                            .to_owned(),
                    });
                }
                for entry in walkdir::WalkDir::new(&full).sort_by_file_name() {
                    let entry = entry.map_err(|e| ResolveError::File {
                        component: component.to_owned(),
                        path: full.clone(),
                        message: e.to_string(),
                    })?;
                    if !entry.file_type().is_file() {
                        continue;
                    }
                    let rel_to_base = entry.path().strip_prefix(base).unwrap_or(entry.path());
                    if excluded(rel_to_base) {
                        continue;
                    }
                    let rel = entry.path().strip_prefix(&full).unwrap_or(entry.path());
                    files.push(LockedFile {
                        path: guest_path(Path::new(destination), rel),
                        source: entry.path().to_path_buf(),
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
