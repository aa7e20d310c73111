//! Turning bytes into a compiled [`Component`], with an on-disk cache of compiled code.
//!
//! Cache entries are keyed by the source digest and the engine's
//! `precompile_compatibility_hash`. Each is wasmtime's serialized code as it is (so it can
//! be mapped rather than copied), beside a `.sum` file with the XXH3-128 of that code,
//! written by us after compiling. An entry that fails the check (truncated, bit-flipped,
//! written by someone else) is deleted and recompiled, never deserialized.
//!
//! The checksum guards against accidental damage (a crash mid-write, a full disk, a copied
//! cache of another build), not against someone who can write the cache directory: they
//! could write a matching checksum as well, whatever the hash. XXH3 checks a 36 MB entry
//! (a JavaScript runtime's code) in a few milliseconds where sha256 took about 20.

use crate::EngineError;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use wasmtime::component::Component;

/// Bytes of a `.sum` file: the code's XXH3-128, little-endian.
const CHECKSUM_LEN: usize = 16;

/// Compiles `bytes` (a component, or a core module that is componentized first), using the
/// cache under `cache_dir` when given.
pub(crate) fn compile(
    engine: &wasmtime::Engine,
    cache_dir: Option<&Path>,
    component_id: &str,
    digest: &str,
    bytes: &[u8],
) -> Result<Component, EngineError> {
    let invalid = invalid(component_id);
    refuse_precompiled(component_id, bytes)?;
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
                let _ = std::fs::remove_file(sum_path(path));
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
    let serialized = precompile_component(engine, &component_bytes).map_err(invalid)?;
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

/// `bytes` compiled by `engine` straight into memory, neither cached nor logged: the
/// baseline code a component serves with while [`compile`] makes its optimised code.
pub(crate) fn compile_uncached(
    engine: &wasmtime::Engine,
    component_id: &str,
    bytes: &[u8],
) -> Result<Component, EngineError> {
    let invalid = invalid(component_id);
    refuse_precompiled(component_id, bytes)?;
    let component_bytes = to_component(bytes).map_err(invalid)?;
    Component::new(engine, &component_bytes)
        .map_err(|e| invalid(format!("is not a valid component: {e:#}")))
}

/// Makes the error for component `component_id` that `message` describes.
fn invalid(component_id: &str) -> impl Fn(String) -> EngineError + Copy + '_ {
    move |message| EngineError::Invalid {
        component: component_id.to_owned(),
        message,
    }
}

/// Native code where WebAssembly is expected is refused: wisp compiles what it runs.
fn refuse_precompiled(component_id: &str, bytes: &[u8]) -> Result<(), EngineError> {
    match wasmtime::Engine::detect_precompiled(bytes) {
        Some(_) => Err(invalid(component_id)(
            "is precompiled native code; wisp only runs WebAssembly it compiles itself, so point `source` at the .wasm file".to_owned(),
        )),
        None => Ok(()),
    }
}

/// The cached compiled code for `digest`, if the cache holds a usable entry (a broken one
/// is left for [`compile`] to discard and replace).
pub(crate) fn cached(
    engine: &wasmtime::Engine,
    cache_dir: Option<&Path>,
    digest: &str,
) -> Option<Component> {
    let path = entry_path(engine, cache_dir?, digest);
    load_entry(engine, &path).ok().flatten()
}

/// A component (with WASI 0.3 release-candidate names aliased, see [`alias_wasi_rc`]); a
/// core module (wasm32-wasip1, or wasm32-unknown-unknown with wit-bindgen metadata) wrapped
/// with the WASI preview1 adapter.
pub(crate) fn to_component(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, String> {
    if wasmparser::Parser::is_component(bytes) {
        return alias_wasi_rc(bytes).map_err(|e| format!("is not a valid component: {e}"));
    }
    if !wasmparser::Parser::is_core_wasm(bytes) {
        return Err(
            "is not a WebAssembly file (bad magic number); point `source` at a .wasm component"
                .to_owned(),
        );
    }
    // Read to the end first: wit-component slices a section by its declared size, and
    // panics on a module cut short inside its code section.
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        payload.map_err(|e| format!("is not a valid core wasm module ({e}); rebuild it"))?;
    }
    use wasi_preview1_component_adapter_provider as adapter;
    let shape = ModuleShape::of(bytes);
    // Spin's pre-component ABI: renamed onto the Spin 1.x interfaces first.
    let legacy = match shape.old_spin_abi && !shape.bindgen {
        true => Some(crate::legacy_abi::adapt(bytes)?),
        false => None,
    };
    let bytes = legacy.as_deref().unwrap_or(bytes);
    // A module with `main` and no wit-bindgen exports is a WASI command (a wagi handler):
    // the command adapter exports its `_start` as `wasi:cli/run`.
    let wrapper = match shape.start && !shape.bindgen && legacy.is_none() {
        true => adapter::WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
        false => adapter::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
    };
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(bytes)
        .and_then(|e| e.adapter(adapter::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, wrapper))
        .and_then(|mut e| e.encode())
        .map(Into::into)
        .map_err(|e| match legacy {
            Some(_) => format!(
                "is a core module built for Spin's pre-component ABI (wit-bindgen 0.2) whose \
                 imports or exports do not match Spin's interfaces ({e:#}); rebuild it with a \
                 current Spin SDK"
            ),
            None => format!(
                "is a core wasm module that cannot be turned into a component ({e:#}); build it for wasm32-wasip2, or for wasm32-wasip1 with wit-bindgen exports"
            ),
        })
}

/// What a core module's exports and custom sections say about how it was built.
#[derive(Debug, Default)]
struct ModuleShape {
    /// It exports `_start` (a WASI preview1 command, unless it has wit-bindgen metadata).
    start: bool,
    /// It carries wit-bindgen metadata (a `component-type` custom section).
    bindgen: bool,
    /// It exports what Spin's pre-component SDKs (wit-bindgen 0.2) export: a
    /// `handle-http-request` or `handle-redis-message` handler, or `canonical_abi_realloc`.
    old_spin_abi: bool,
}

impl ModuleShape {
    fn of(bytes: &[u8]) -> Self {
        use wasmparser::Payload;
        let mut shape = Self::default();
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            match payload {
                Ok(Payload::ExportSection(exports)) => {
                    for export in exports.into_iter().flatten() {
                        match export.name {
                            "_start" => shape.start = true,
                            name if crate::legacy_abi::is_legacy_export(name) => {
                                shape.old_spin_abi = true
                            }
                            _ => {}
                        }
                    }
                }
                Ok(Payload::CustomSection(section))
                    if section.name().starts_with("component-type") =>
                {
                    shape.bindgen = true;
                }
                Ok(_) => {}
                // Left for the encoder's validation to report.
                Err(_) => return Self::default(),
            }
        }
        shape
    }
}

/// The one WASI release candidate that differs from 0.3.0 only in documentation (and an
/// `@unstable` gate on `exit-with-code`): components built for Spin 4.0 (spin-sdk 4.x and
/// 5.x for Python, componentize-py 0.22 and later) import and export it.
const WASI_RC: &str = "@0.3.0-rc-2026-03-15";

/// Renames the component's own imports and exports `…@0.3.0-rc-2026-03-15` to
/// `…@0.3.0+rc-2026-03-15`. Wasmtime's linker matches semver-compatible versions but never
/// prereleases; build metadata is ignored, so the renamed imports resolve to the host's
/// `@0.3.0` definitions (still type-checked at link time). One byte per name, so nothing
/// else moves, and the names stay distinct from `@0.3.0` ones the component may also have.
/// Earlier release candidates differ in their types and are left alone (refused at link).
fn alias_wasi_rc(
    bytes: &[u8],
) -> Result<std::borrow::Cow<'_, [u8]>, wasmparser::BinaryReaderError> {
    use wasmparser::Payload;
    let base = bytes.as_ptr() as usize;
    let mut offsets = Vec::new();
    let mut note = |name: &str| {
        if name.ends_with(WASI_RC) {
            // The `-` after `@0.3.0`.
            offsets
                .push(name.as_ptr() as usize - base + name.len() - WASI_RC.len() + "@0.3.0".len());
        }
    };
    // Nested modules and components come inline, each closed by its own `End`; their
    // names are internal wiring, not what the host links.
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    note(import?.name.name);
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    note(export?.name.name);
                }
            }
            _ => {}
        }
    }
    if offsets.is_empty() {
        return Ok(bytes.into());
    }
    let mut renamed = bytes.to_vec();
    for offset in offsets {
        debug_assert_eq!(renamed[offset], b'-');
        renamed[offset] = b'+';
    }
    Ok(renamed.into())
}

/// Changes whenever [`to_component`] starts turning the same bytes into a different
/// component, so entries compiled before are not reused.
const LOAD_REWRITES: &str = "wasi-0.3.0-rc-2026-03-15-as-0.3.0";

/// Changes with the layout of an entry, so entries of an older layout are never read as
/// this one (they stay on disk, unused). Version 1 put a sha256 before the code.
const ENTRY_LAYOUT: &str = "code-and-xxh3-sum";

/// What compiled code must match to be used by `engine`: its compatibility hash, the
/// load-time rewrites and the entry layout.
pub(crate) fn entry_key(engine: &wasmtime::Engine) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    LOAD_REWRITES.hash(&mut hasher);
    ENTRY_LAYOUT.hash(&mut hasher);
    hasher.finish()
}

fn entry_path(engine: &wasmtime::Engine, dir: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    dir.join("components")
        .join(format!("{hex}-{:016x}.cwasm", entry_key(engine)))
}

/// Compiles a component (already through [`to_component`]).
fn precompile_component(engine: &wasmtime::Engine, component: &[u8]) -> Result<Vec<u8>, String> {
    engine
        .precompile_component(component)
        .map_err(|e| format!("is not a valid component: {e:#}"))
}

/// The start of a precompiled package: compiled code packed with its source for storage
/// outside the compile cache (a containerd content store), see [`package`].
const PACKAGE_MAGIC: &[u8; 8] = b"WISPPKG1";

/// Packs `wasm` with its compiled code: `PACKAGE_MAGIC`, the engine's entry key (u64 LE),
/// the source's length (u64 LE) and bytes, the code's XXH3-128, then the code. The source
/// travels along so the package can always be checked against the digest it stands for
/// and recompiled when its code does not fit.
pub(crate) fn package(
    engine: &wasmtime::Engine,
    component_id: &str,
    wasm: &[u8],
) -> Result<Vec<u8>, EngineError> {
    let invalid = invalid(component_id);
    if wasmtime::Engine::detect_precompiled(wasm).is_some() {
        return Err(invalid(
            "is precompiled native code, not WebAssembly".to_owned(),
        ));
    }
    let component = to_component(wasm).map_err(invalid)?;
    let code = precompile_component(engine, &component).map_err(invalid)?;
    let sum = checksum_of(code.as_slice()).expect("reading memory cannot fail");
    let mut package =
        Vec::with_capacity(PACKAGE_MAGIC.len() + 16 + wasm.len() + CHECKSUM_LEN + code.len());
    package.extend_from_slice(PACKAGE_MAGIC);
    package.extend_from_slice(&entry_key(engine).to_le_bytes());
    package.extend_from_slice(&(wasm.len() as u64).to_le_bytes());
    package.extend_from_slice(wasm);
    package.extend_from_slice(&sum);
    package.extend_from_slice(&code);
    Ok(package)
}

/// What became of a precompiled package's code (`WispEngine::unpack_precompiled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unpacked {
    /// The code fits this engine and passed its checksum; it is now the cache entry for the
    /// source's digest.
    Cached,
    /// The code was compiled by another engine or build: only the source is used.
    Foreign,
    /// The code failed its checksum: only the source is used.
    Damaged,
    /// No cache to put the code in: only the source is used.
    NoCache,
}

/// The source in `package` (see [`package`]), and, when its code fits `engine` and passes
/// its checksum, that code stored in the cache under `cache_dir` as the entry for the
/// source's digest, so loading the source finds it there. The caller checks the source
/// against the digest it expects. `Err`: not a package, or cut short.
pub(crate) fn unpackage<'a>(
    engine: &wasmtime::Engine,
    cache_dir: Option<&Path>,
    package: &'a [u8],
) -> Result<(&'a [u8], Unpacked), String> {
    let rest = package
        .strip_prefix(PACKAGE_MAGIC.as_slice())
        .ok_or("is not a package of precompiled code (wrong magic)")?;
    let cut_short = || "is cut short".to_owned();
    let (key, rest) = rest.split_first_chunk::<8>().ok_or_else(cut_short)?;
    let (length, rest) = rest.split_first_chunk::<8>().ok_or_else(cut_short)?;
    let length = usize::try_from(u64::from_le_bytes(*length)).map_err(|_| cut_short())?;
    if rest.len() < length {
        return Err(cut_short());
    }
    let (wasm, rest) = rest.split_at(length);
    let (sum, code) = rest
        .split_first_chunk::<CHECKSUM_LEN>()
        .ok_or_else(cut_short)?;
    if u64::from_le_bytes(*key) != entry_key(engine) {
        return Ok((wasm, Unpacked::Foreign));
    }
    if checksum_of(code).expect("reading memory cannot fail") != *sum {
        return Ok((wasm, Unpacked::Damaged));
    }
    let Some(dir) = cache_dir else {
        return Ok((wasm, Unpacked::NoCache));
    };
    let path = entry_path(engine, dir, &wisp_app::sha256_digest(wasm));
    if let Err(err) = store_entry(&path, code) {
        tracing::warn!("cannot write compile cache {}: {err}", path.display());
        return Ok((wasm, Unpacked::NoCache));
    }
    Ok((wasm, Unpacked::Cached))
}

/// The checksum file beside the entry at `path`.
fn sum_path(path: &Path) -> PathBuf {
    let mut sum = path.as_os_str().to_owned();
    sum.push(".sum");
    PathBuf::from(sum)
}

/// XXH3-128 of everything `reader` yields, read in 1 MiB pieces (no copy of the whole).
fn checksum_of(mut reader: impl Read) -> std::io::Result<[u8; CHECKSUM_LEN]> {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => return Ok(hasher.digest128().to_le_bytes()),
            Ok(n) => hasher.update(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// `Ok(None)`: no entry. `Err`: an entry exists but must not be used.
fn load_entry(engine: &wasmtime::Engine, path: &Path) -> Result<Option<Component>, String> {
    let expected = match std::fs::read(sum_path(path)) {
        Ok(sum) => sum,
        // Code without its checksum is never used; the next compile replaces both.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read its checksum: {e}")),
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let actual = checksum_of(&file).map_err(|e| e.to_string())?;
    if expected != actual {
        return Err("checksum mismatch".to_owned());
    }
    let mapped = match deserialize_checked_file(engine, path, &file) {
        Ok(component) => return Ok(Some(component)),
        Err(e) => e,
    };
    // Mapping fails where the code cannot be made executable in place (a cache directory
    // on a `noexec` mount) or without `/proc`: copy it into memory as before mapping
    // existed, from the same open file, checked again. Only if that fails too is the
    // entry broken.
    let mut code = Vec::new();
    use std::io::Seek as _;
    (&file)
        .seek(std::io::SeekFrom::Start(0))
        .and_then(|_| (&file).read_to_end(&mut code))
        .map_err(|e| e.to_string())?;
    if checksum_of(code.as_slice()).map_err(|e| e.to_string())? != actual {
        return Err("checksum mismatch".to_owned());
    }
    match deserialize(engine, &code) {
        Ok(component) => {
            tracing::debug!(
                "compile cache entry {} loaded by copy: it could not be mapped ({mapped:#})",
                path.display()
            );
            Ok(Some(component))
        }
        Err(e) => Err(format!("{e:#}")),
    }
}

/// Maps the code of the entry at `path` whose contents `file` (open on it) just passed
/// the checksum: wasmtime maps the file instead of copying it into fresh memory, so its
/// pages come from the page cache as they are used. Entries are only ever replaced by a
/// rename, never written in place; on Linux the code is mapped from the very file that
/// was checked (`/proc/self/fd`), so a concurrent replace cannot slip another file in.
#[expect(
    unsafe_code,
    reason = "deserializing compiled code is unsafe in wasmtime's API"
)]
fn deserialize_checked_file(
    engine: &wasmtime::Engine,
    path: &Path,
    file: &std::fs::File,
) -> wasmtime::Result<Component> {
    #[cfg(target_os = "linux")]
    let checked = {
        use std::os::fd::AsRawFd;
        let _ = path;
        PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
    };
    #[cfg(not(target_os = "linux"))]
    let checked = {
        let _ = file;
        path.to_owned()
    };
    // SAFETY: the file holds code we serialized ourselves after compiling it (its
    // checksum, written beside it then, matches), under a key that includes this engine's
    // compatibility hash; wasmtime additionally checks the header and engine settings.
    // Entries are never modified in place, so the mapped file does not change under us.
    unsafe { Component::deserialize_file(engine, &checked) }
}

fn store_entry(path: &Path, code: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("cache entries live in a directory");
    std::fs::create_dir_all(dir)?;
    let temp = |name: &Path| {
        dir.join(format!(
            ".{}.{}.tmp",
            name.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ))
    };
    let sum = sum_path(path);
    // The code first, then its checksum: a reader that finds the new checksum finds the
    // new code (renames are atomic), and code without a checksum is never used.
    let code_temp = temp(path);
    std::fs::write(&code_temp, code)?;
    std::fs::rename(&code_temp, path)?;
    let sum_temp = temp(&sum);
    std::fs::write(&sum_temp, checksum_of(code)?)?;
    std::fs::rename(&sum_temp, &sum)
}

#[expect(
    unsafe_code,
    reason = "deserializing compiled code is unsafe in wasmtime's API"
)]
fn deserialize(engine: &wasmtime::Engine, code: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `code` is what `precompile_component` just returned in this process, or a
    // cache entry's code read into memory after it passed its checksum (see
    // `deserialize_checked_file`); wasmtime additionally checks the header and settings.
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
    fn wasi_release_candidate_names_are_aliased_at_the_top_level_only() {
        let rc = "wasi:random/random@0.3.0-rc-2026-03-15";
        let text = format!(
            r#"(component
                (import "{rc}" (instance $rc (export "get-random-u64" (func (result u64)))))
                (import "wasi:random/random@0.3.0" (instance $final (export "get-random-u64" (func (result u64)))))
                (import "wasi:clocks/types@0.3.0-rc-2026-02-09" (instance))
                (component $inner
                    (import "{rc}" (instance (export "get-random-u64" (func (result u64))))))
                (instance (instantiate $inner (with "{rc}" (instance $rc))))
                (export "wasi:demo/thing@0.3.0-rc-2026-03-15" (instance $final)))"#
        );
        let bytes = wat::parse_str(&text).unwrap();
        let aliased = alias_wasi_rc(&bytes).unwrap();
        assert!(matches!(aliased, std::borrow::Cow::Owned(_)));
        let names = String::from_utf8_lossy(&aliased);
        // The top-level import and export, nothing else: the nested component's import
        // and the instantiation argument keep their names, as does an older candidate.
        assert_eq!(names.matches("@0.3.0+rc-2026-03-15").count(), 2, "{names}");
        assert_eq!(names.matches("@0.3.0-rc-2026-03-15").count(), 2, "{names}");
        assert_eq!(names.matches("@0.3.0-rc-2026-02-09").count(), 1, "{names}");
        assert_eq!(aliased.len(), bytes.len());
        wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
            .validate_all(&aliased)
            .unwrap();

        // Nothing to alias: the bytes as they are.
        let hello = std::fs::read(wisp_test_programs::HELLO).unwrap();
        assert!(matches!(
            alias_wasi_rc(&hello).unwrap(),
            std::borrow::Cow::Borrowed(_)
        ));
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
        // The entry is wasmtime's serialized code as it is, its checksum beside it.
        assert!(wasmtime::Engine::detect_precompiled(&first).is_some());
        let sum = std::fs::read(sum_path(&path)).unwrap();
        assert_eq!(sum, checksum_of(first.as_slice()).unwrap());

        // A hit loads without rewriting, and the mapped code links.
        let component = load_entry(&engine, &path).unwrap().unwrap();
        let mut linker = wasmtime::component::Linker::<()>::new(&engine);
        linker.define_unknown_imports_as_traps(&component).unwrap();
        linker.instantiate_pre(&component).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), first);

        // A flipped byte in the code is detected and the entry replaced.
        let mut corrupt = first.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        std::fs::write(&path, &corrupt).unwrap();
        assert_eq!(load_entry(&engine, &path).unwrap_err(), "checksum mismatch");
        compile(&engine, Some(dir.path()), "hello", &digest, &wasm).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), first);
        assert!(load_entry(&engine, &path).unwrap().is_some());

        // A foreign file with a matching checksum but garbage code is refused by
        // wasmtime's own header check.
        let garbage = b"not compiled code".to_vec();
        std::fs::write(&path, &garbage).unwrap();
        std::fs::write(sum_path(&path), checksum_of(garbage.as_slice()).unwrap()).unwrap();
        assert!(load_entry(&engine, &path).is_err());

        // Truncated code, and a damaged checksum file.
        std::fs::write(&path, &first[..first.len() / 2]).unwrap();
        std::fs::write(sum_path(&path), &sum).unwrap();
        assert!(load_entry(&engine, &path).is_err());
        std::fs::write(&path, &first).unwrap();
        std::fs::write(sum_path(&path), b"short").unwrap();
        assert!(load_entry(&engine, &path).is_err());

        // Code without a checksum is no entry (never used); so is a checksum without code.
        std::fs::remove_file(sum_path(&path)).unwrap();
        assert!(load_entry(&engine, &path).unwrap().is_none());
        std::fs::write(sum_path(&path), &sum).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(load_entry(&engine, &path).unwrap().is_none());
    }

    #[test]
    fn packages_fill_the_cache_only_when_their_code_fits_and_is_intact() {
        let engine = engine();
        let wasm = std::fs::read(wisp_test_programs::HELLO).unwrap();
        let digest = wisp_app::sha256_digest(&wasm);
        let package = package(&engine, "hello", &wasm).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let (source, unpacked) = unpackage(&engine, Some(dir.path()), &package).unwrap();
        assert_eq!((source, unpacked), (wasm.as_slice(), Unpacked::Cached));
        // The entry is what compiling would have cached: a hit, no compile.
        assert!(cached(&engine, Some(dir.path()), &digest).is_some());

        // Damaged code is not cached; the source still comes out whole.
        let dir = tempfile::tempdir().unwrap();
        let mut damaged = package.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        let (source, unpacked) = unpackage(&engine, Some(dir.path()), &damaged).unwrap();
        assert_eq!((source, unpacked), (wasm.as_slice(), Unpacked::Damaged));
        assert!(cached(&engine, Some(dir.path()), &digest).is_none());

        // Code from an engine with other settings is not used.
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            .cranelift_opt_level(wasmtime::OptLevel::None);
        let other = wasmtime::Engine::new(&config).unwrap();
        let foreign = super::package(&other, "hello", &wasm).unwrap();
        let (source, unpacked) = unpackage(&engine, Some(dir.path()), &foreign).unwrap();
        assert_eq!((source, unpacked), (wasm.as_slice(), Unpacked::Foreign));
        assert!(cached(&engine, Some(dir.path()), &digest).is_none());

        // Not a package, or one cut short, is an error.
        assert!(
            unpackage(&engine, None, &wasm)
                .unwrap_err()
                .contains("wrong magic")
        );
        assert!(
            unpackage(&engine, None, &package[..20])
                .unwrap_err()
                .contains("cut short")
        );
        let (_, unpacked) = unpackage(&engine, None, &package).unwrap();
        assert_eq!(unpacked, Unpacked::NoCache);
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

    /// A module in Spin's pre-component ABI, exporting `exports` and importing `imports`.
    fn legacy_module(imports: &str, exports: &str) -> Vec<u8> {
        wat::parse_str(format!(
            r#"(module
                {imports}
                (memory (export "memory") 1)
                (func (export "canonical_abi_realloc") (param i32 i32 i32 i32) (result i32) i32.const 8)
                {exports})"#
        ))
        .unwrap()
    }

    const LEGACY_HANDLER: &str = r#"(func (export "handle-http-request")
        (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32) i32.const 16)"#;

    #[test]
    fn modules_of_spins_pre_component_abi_are_renamed_onto_spin1_interfaces() {
        let engine = engine();
        // A TinyGo command's `_start` becomes the initializer; the config import becomes
        // `fermyon:spin/config`, the handler `fermyon:spin/inbound-http`.
        let module = legacy_module(
            r#"(import "spin-config" "get-config" (func (param i32 i32 i32)))
               (import "wasi-outbound-http" "request" (func (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))"#,
            &format!(r#"{LEGACY_HANDLER} (func (export "_start"))"#),
        );
        let component = compile(&engine, None, "old", "sha256:02", &module).unwrap();
        let ty = component.component_type();
        let exports: Vec<_> = ty.exports(&engine).map(|(name, _)| name).collect();
        let imports: Vec<_> = ty.imports(&engine).map(|(name, _)| name).collect();
        assert_eq!(exports, ["fermyon:spin/inbound-http"]);
        assert!(imports.contains(&"fermyon:spin/config"), "{imports:?}");
        assert!(imports.contains(&"fermyon:spin/http"), "{imports:?}");

        // A Redis handler alone is the Spin 1.x Redis export.
        let redis = legacy_module(
            "",
            r#"(func (export "handle-redis-message") (param i32 i32) (result i32) i32.const 0)"#,
        );
        let component = compile(&engine, None, "old", "sha256:04", &redis).unwrap();
        let ty = component.component_type();
        let exports: Vec<_> = ty.exports(&engine).map(|(name, _)| name).collect();
        assert_eq!(exports, ["fermyon:spin/inbound-redis"]);
    }

    #[test]
    fn modules_of_spins_pre_component_abi_that_cannot_run_are_refused_with_the_reason() {
        let engine = engine();
        let refused = |module: Vec<u8>| {
            compile(&engine, None, "old", "sha256:03", &module)
                .unwrap_err()
                .to_string()
        };
        let neither = refused(legacy_module("", ""));
        assert!(
            neither.contains("component `old`")
                && neither.contains("neither `handle-http-request` nor `handle-redis-message`")
                && neither.contains("rebuild it with a current Spin SDK"),
            "{neither}"
        );
        let unknown = refused(legacy_module(
            r#"(import "spin-future" "call" (func))"#,
            LEGACY_HANDLER,
        ));
        assert!(unknown.contains("`spin-future::call`"), "{unknown}");
        // A handler whose core signature is not the Spin 1.x one.
        let mismatched = refused(legacy_module(
            "",
            r#"(func (export "handle-http-request") (param i32))"#,
        ));
        assert!(
            mismatched.contains("do not match Spin's interfaces"),
            "{mismatched}"
        );
    }

    /// Found by the hostile corpus: wit-component panicked on a core module cut short
    /// inside its code section.
    #[test]
    fn core_modules_cut_short_are_refused_not_panicked_on() {
        let engine = engine();
        for path in [
            wisp_test_programs::HELLO_WASIP1,
            wisp_test_programs::SPIN_LEGACY_ABI_WASIP1,
        ] {
            let module = std::fs::read(path).unwrap();
            for cut in [module.len() / 3, module.len() / 2, module.len() * 2 / 3] {
                let err = compile(&engine, None, "cut", "sha256:05", &module[..cut])
                    .unwrap_err()
                    .to_string();
                assert!(err.contains("is not a valid core wasm module"), "{err}");
            }
        }
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
