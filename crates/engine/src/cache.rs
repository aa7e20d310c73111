//! Turning bytes into a compiled [`Component`], with an on-disk cache of compiled code.
//!
//! Cache entries are keyed by the source digest and the engine's
//! `precompile_compatibility_hash`, and start with a sha256 of their own contents, written
//! by us after compiling. An entry that fails the check (truncated, bit-flipped, written by
//! someone else) is deleted and recompiled, never deserialized.

use crate::EngineError;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::component::Component;

const CHECKSUM_LEN: usize = 32;

/// Compiles `bytes` (a component, or a core module that is componentized first), using the
/// cache under `cache_dir` when given.
pub(crate) fn compile(
    engine: &wasmtime::Engine,
    cache_dir: Option<&Path>,
    component_id: &str,
    digest: &str,
    bytes: &[u8],
) -> Result<Component, EngineError> {
    let invalid = |message: String| EngineError::Invalid {
        component: component_id.to_owned(),
        message,
    };
    if wasmtime::Engine::detect_precompiled(bytes).is_some() {
        return Err(invalid(
            "is precompiled native code; wisp only runs WebAssembly it compiles itself, so point `source` at the .wasm file".to_owned(),
        ));
    }
    let entry = cache_dir.map(|dir| entry_path(engine, dir, digest));
    if let Some(path) = &entry {
        match load_entry(engine, path) {
            Ok(Some(component)) => return Ok(component),
            Ok(None) => {}
            Err(reason) => {
                tracing::warn!(
                    "discarding compile cache entry {} ({reason}); recompiling",
                    path.display()
                );
                let _ = std::fs::remove_file(path);
            }
        }
    }

    let component_bytes = to_component(bytes).map_err(invalid)?;
    // Compiling a large component (a JS or Python runtime) takes seconds: say so, once;
    // later starts load the cached native code.
    let started = std::time::Instant::now();
    tracing::info!(
        "compiling component `{component_id}` ({:.1} MiB of wasm) to native code",
        component_bytes.len() as f64 / (1024.0 * 1024.0)
    );
    let serialized = engine
        .precompile_component(&component_bytes)
        .map_err(|e| invalid(format!("is not a valid component: {e:#}")))?;
    tracing::info!(
        "compiled component `{component_id}` in {:.1?}{}",
        started.elapsed(),
        if entry.is_some() {
            "; cached for later starts"
        } else {
            ""
        }
    );
    if let Some(path) = &entry
        && let Err(err) = store_entry(path, &serialized)
    {
        tracing::warn!("cannot write compile cache {}: {err}", path.display());
    }
    deserialize(engine, &serialized)
        .map_err(|e| invalid(format!("cannot load compiled code: {e:#}")))
}

/// A component as is; a core module (wasm32-wasip1, or wasm32-unknown-unknown with
/// wit-bindgen metadata) wrapped with the WASI preview1 adapter.
fn to_component(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, String> {
    if wasmparser::Parser::is_component(bytes) {
        return Ok(bytes.into());
    }
    if !wasmparser::Parser::is_core_wasm(bytes) {
        return Err(
            "is not a WebAssembly file (bad magic number); point `source` at a .wasm component"
                .to_owned(),
        );
    }
    use wasi_preview1_component_adapter_provider as adapter;
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(bytes)
        .and_then(|e| {
            e.adapter(
                adapter::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
                adapter::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
            )
        })
        .and_then(|mut e| e.encode())
        .map(Into::into)
        .map_err(|e| {
            format!(
                "is a core wasm module that cannot be turned into a component ({e:#}); build it for wasm32-wasip2, or for wasm32-wasip1 with wit-bindgen exports"
            )
        })
}

fn entry_path(engine: &wasmtime::Engine, dir: &Path, digest: &str) -> PathBuf {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    dir.join("components")
        .join(format!("{hex}-{:016x}.cwasm", hasher.finish()))
}

/// `Ok(None)`: no entry. `Err`: an entry exists but must not be used.
fn load_entry(engine: &wasmtime::Engine, path: &Path) -> Result<Option<Component>, String> {
    let data = match std::fs::read(path) {
        Ok(data) => data,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if data.len() < CHECKSUM_LEN {
        return Err("truncated".to_owned());
    }
    let (checksum, code) = data.split_at(CHECKSUM_LEN);
    if Sha256::digest(code).as_slice() != checksum {
        return Err("checksum mismatch".to_owned());
    }
    deserialize(engine, code)
        .map(Some)
        .map_err(|e| format!("{e:#}"))
}

fn store_entry(path: &Path, code: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("cache entries live in a directory");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let mut data = Vec::with_capacity(CHECKSUM_LEN + code.len());
    data.extend_from_slice(&Sha256::digest(code));
    data.extend_from_slice(code);
    std::fs::write(&tmp, &data)?;
    // Rename is atomic: readers see either no entry or a complete one.
    std::fs::rename(&tmp, path)
}

#[expect(
    unsafe_code,
    reason = "deserializing compiled code is unsafe in wasmtime's API"
)]
fn deserialize(engine: &wasmtime::Engine, code: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `code` is either what `precompile_component` just returned in this process,
    // or a cache entry whose sha256 matches the checksum we wrote beside it after compiling
    // it ourselves, under a key that includes this engine's compatibility hash; wasmtime
    // additionally checks the header and engine settings.
    unsafe { Component::deserialize(engine, code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> wasmtime::Engine {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        wasmtime::Engine::new(&config).unwrap()
    }

    #[test]
    fn cache_hit_corruption_and_foreign_entries() {
        let engine = engine();
        let dir = tempfile::tempdir().unwrap();
        let wasm = std::fs::read(wisp_test_programs::HELLO).unwrap();
        let digest = wisp_app::sha256_digest(&wasm);
        compile(&engine, Some(dir.path()), "hello", &digest, &wasm).unwrap();
        let path = entry_path(&engine, dir.path(), &digest);
        let first = std::fs::read(&path).unwrap();
        assert!(first.len() > CHECKSUM_LEN);

        // A hit loads without rewriting.
        assert!(load_entry(&engine, &path).unwrap().is_some());

        // A flipped byte in the code is detected and the entry replaced.
        let mut corrupt = first.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        std::fs::write(&path, &corrupt).unwrap();
        assert!(load_entry(&engine, &path).is_err());
        compile(&engine, Some(dir.path()), "hello", &digest, &wasm).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), first);

        // A foreign file with a correct-looking checksum but garbage code is refused by
        // wasmtime's own header check.
        let garbage = b"not compiled code".to_vec();
        let mut foreign = Sha256::digest(&garbage).to_vec();
        foreign.extend_from_slice(&garbage);
        std::fs::write(&path, &foreign).unwrap();
        assert!(load_entry(&engine, &path).is_err());

        // Truncated.
        std::fs::write(&path, b"short").unwrap();
        assert!(load_entry(&engine, &path).is_err());
    }

    #[test]
    fn refuses_non_wasm_and_precompiled() {
        let engine = engine();
        let err = compile(&engine, None, "x", "sha256:00", b"hello world").unwrap_err();
        assert!(err.to_string().contains("bad magic"), "{err}");
        let wasm = std::fs::read(wisp_test_programs::HELLO).unwrap();
        let native = engine.precompile_component(&wasm).unwrap();
        let err = compile(&engine, None, "x", "sha256:00", &native).unwrap_err();
        assert!(err.to_string().contains("precompiled native code"), "{err}");
    }

    #[test]
    fn core_module_is_componentized() {
        // A core module with no imports or exports componentizes to an empty component;
        // the HTTP-export check happens later, at link time.
        let engine = engine();
        let module = b"\0asm\x01\0\0\0".to_vec();
        compile(&engine, None, "core", "sha256:01", &module).unwrap();
    }
}

/// Compiled components in memory by source digest, while any loaded app uses them: a
/// second app (or a reload) with the same component takes the same code instead of
/// reading, checking and deserializing its cache entry again, and the code is in memory
/// once however many apps use it.
#[derive(Default)]
pub(crate) struct SharedCode {
    entries: std::sync::Mutex<std::collections::HashMap<String, std::sync::Weak<Component>>>,
}

impl SharedCode {
    /// The code of `digest`, if an app still holds it.
    pub(crate) fn get(&self, digest: &str) -> Option<std::sync::Arc<Component>> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(digest)
            .and_then(std::sync::Weak::upgrade)
    }

    /// Shares `component` as the code of `digest`; returns what holders keep alive.
    pub(crate) fn insert(&self, digest: &str, component: Component) -> std::sync::Arc<Component> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = entries.get(digest).and_then(std::sync::Weak::upgrade) {
            return existing;
        }
        // Forget code nobody holds any more, now and then, so the map stays small.
        if entries.len() >= 64 && entries.len().is_power_of_two() {
            entries.retain(|_, code| code.strong_count() > 0);
        }
        let shared = std::sync::Arc::new(component);
        entries.insert(digest.to_owned(), std::sync::Arc::downgrade(&shared));
        shared
    }
}
