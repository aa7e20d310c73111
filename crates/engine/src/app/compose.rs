//! What a component's code is made from: its source, its dependencies plugged in and its
//! HTTP middleware chained in front (`wisp-compose`), read with their digests checked, and
//! the digest the compiled result is cached under.

use crate::{EngineError, WispEngine};
use std::path::Path;
use wisp_app::{LockedApp, LockedComponent, sha256_digest};

/// Components no trigger calls whose source another component chains in as middleware:
/// they run only inside that composition (a middleware imports `wasi:http/handler`, which
/// only the next handler of its chain provides), so they are not loaded alone. As in
/// Spin, which loads only the components triggers call.
pub fn middleware_only_components(locked: &LockedApp) -> std::collections::HashSet<&str> {
    let called: std::collections::HashSet<&str> = locked
        .triggers
        .iter()
        .filter_map(|t| t.trigger_config.get("component")?.as_str())
        .collect();
    let middleware: std::collections::HashSet<&str> = locked
        .components
        .iter()
        .flat_map(|c| c.middleware())
        .map(|m| m.source.digest.as_str())
        .collect();
    locked
        .components
        .iter()
        .filter(|c| !called.contains(c.id.as_str()))
        .filter(|c| middleware.contains(c.source.digest.as_str()))
        .map(|c| c.id.as_str())
        .collect()
}

/// The key of a component's compiled code: its source digest, or for a component with
/// dependencies a digest over everything composition reads.
pub(super) fn code_digest(locked: &LockedComponent) -> String {
    if locked.dependencies.is_empty() && locked.middleware().is_empty() {
        return locked.source.digest.clone();
    }
    let mut key = format!(
        "{}\n{}\n",
        wisp_compose::COMPOSER_VERSION,
        locked.source.digest
    );
    for (name, dependency) in &locked.dependencies {
        key.push_str(&format!(
            "{name}\n{}\n{:?}\n{:?}\n",
            dependency.source.digest, dependency.export, dependency.inherit
        ));
    }
    for middleware in locked.middleware() {
        key.push_str(&format!(
            "middleware\n{}\n{:?}\n",
            middleware.source.digest, middleware.inherit
        ));
    }
    sha256_digest(key.as_bytes())
}

/// A source file's bytes, refused unless they have the digest the app was resolved with.
pub(super) fn read_checked(
    engine: &WispEngine,
    component: &str,
    path: &Path,
    expected: &str,
    dependency: Option<&str>,
) -> Result<Vec<u8>, EngineError> {
    let bytes =
        wisp_app::read_source(path, engine.config().max_component_bytes).map_err(|source| {
            match dependency {
                None => EngineError::Read {
                    component: component.to_owned(),
                    source,
                },
                Some(dependency) => EngineError::Invalid {
                    component: component.to_owned(),
                    message: format!(
                        "cannot read dependency `{dependency}` ({}): {source}",
                        path.display()
                    ),
                },
            }
        })?;
    let digest = sha256_digest(&bytes);
    if digest != expected {
        return Err(match dependency {
            None => EngineError::DigestMismatch {
                component: component.to_owned(),
                path: path.to_path_buf(),
                found: digest,
                expected: expected.to_owned(),
            },
            Some(dependency) => EngineError::Invalid {
                component: component.to_owned(),
                message: format!(
                    "dependency `{dependency}` ({}) has digest {digest}, not the {expected} it was resolved with; resolve the app again",
                    path.display()
                ),
            },
        });
    }
    Ok(bytes)
}

/// The component with its dependencies plugged in and its middleware chained in front
/// (core modules become components first); `main` as it is without either.
pub(super) fn compose_dependencies(
    engine: &WispEngine,
    locked: &LockedComponent,
    main: Vec<u8>,
) -> Result<Vec<u8>, EngineError> {
    if locked.dependencies.is_empty() && locked.middleware().is_empty() {
        return Ok(main);
    }
    let id = locked.id.as_str();
    let invalid = |message: String| EngineError::Invalid {
        component: id.to_owned(),
        message,
    };
    let as_component = |bytes: Vec<u8>, what: &str| -> Result<Vec<u8>, EngineError> {
        if wasmparser::Parser::is_core_wasm(&bytes) {
            crate::cache::to_component(&bytes)
                .map(|c| c.into_owned())
                .map_err(|reason| invalid(format!("{what} {reason}")))
        } else {
            Ok(bytes)
        }
    };
    let main = as_component(main, "its source")?;
    let mut dependencies = Vec::with_capacity(locked.dependencies.len());
    for (name, dependency) in &locked.dependencies {
        let bytes = read_checked(
            engine,
            id,
            &dependency.source.path,
            &dependency.source.digest,
            Some(name),
        )?;
        dependencies.push(wisp_compose::Dependency {
            name,
            bytes: as_component(bytes, &format!("dependency `{name}`"))?,
            export: dependency.export.as_deref(),
            inherit: &dependency.inherit,
        });
    }
    let started = std::time::Instant::now();
    let mut composed = match dependencies.is_empty() {
        true => main,
        false => wisp_compose::compose(main, dependencies)
            .map_err(|e| invalid(format!("cannot compose its dependencies: {e}")))?,
    };
    if !locked.middleware().is_empty() {
        let mut middleware = Vec::with_capacity(locked.middleware().len());
        for (index, layer) in locked.middleware().iter().enumerate() {
            let what = format!("middleware {}", index + 1);
            let bytes = read_checked(
                engine,
                id,
                &layer.source.path,
                &layer.source.digest,
                Some(&what),
            )?;
            middleware.push(wisp_compose::Middleware {
                bytes: as_component(bytes, &what)?,
                inherit: &layer.inherit,
            });
        }
        composed = wisp_compose::compose_middleware(composed, middleware)
            .map_err(|e| invalid(format!("cannot chain its middleware: {e}")))?;
    }
    tracing::debug!(
        "composed component `{id}` with {} dependencies and {} middleware in {:.1?}",
        locked.dependencies.len(),
        locked.middleware().len(),
        started.elapsed()
    );
    Ok(composed)
}
