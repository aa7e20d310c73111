//! Core modules built for Spin's pre-component ABI (wit-bindgen 0.2): the TinyGo-based Go
//! SDK (`spin-go-sdk` v2, Spin's `http-go` template until 2026) and spin-sdk for Rust
//! before 1.5.
//!
//! Such a module carries no component-type metadata. It exports `handle-http-request` or
//! `handle-redis-message` (or both) and `canonical_abi_realloc`, and imports each Spin interface as a module of its own
//! (`spin-config`, `wasi-outbound-http`, `key-value`, ...). Their WIT is the Spin 1.x
//! `fermyon:spin` package under other names, and wit-bindgen 0.2 lays out values as the
//! canonical ABI does (the same flattening, return areas and realloc signature). So the
//! module is renamed onto the Spin 1.x interfaces Wisp already hosts and given the metadata
//! of exactly the interfaces it uses; the WASI preview1 reactor adapter then wraps it like
//! any other core module. Nothing runs in between: the guest's own code lowers and lifts
//! every value, and a function whose core signature differs from the Spin 1.x one is
//! refused by wit-component's validation.

use std::borrow::Cow;
use wasm_encoder::reencode::{Reencode, RoundtripReencoder};

/// The unversioned `fermyon:spin` package, as the host links it.
const SPIN1_WIT: &[(&str, &str)] = &[
    (
        "config.wit",
        include_str!("../../../wit/spin1/deps/fermyon-spin-unversioned/config.wit"),
    ),
    (
        "http-types.wit",
        include_str!("../../../wit/spin1/deps/fermyon-spin-unversioned/http-types.wit"),
    ),
    (
        "http.wit",
        include_str!("../../../wit/spin1/deps/fermyon-spin-unversioned/http.wit"),
    ),
    (
        "inbound-http.wit",
        include_str!("../../../wit/spin1/deps/fermyon-spin-unversioned/inbound-http.wit"),
    ),
    (
        "key-value.wit",
        include_str!("../../../wit/spin1/deps/fermyon-spin-unversioned/key-value.wit"),
    ),
    (
        "llm.wit",
        include_str!("../../../wit/spin1/deps/fermyon-spin-unversioned/llm.wit"),
    ),
    (
        "mysql.wit",
        include_str!("../../../wit/spin1/deps/fermyon-spin-unversioned/mysql.wit"),
    ),
    (
        "postgres.wit",
        include_str!("../../../wit/spin1/deps/fermyon-spin-unversioned/postgres.wit"),
    ),
    (
        "rdbms-types.wit",
        include_str!("../../../wit/spin1/deps/fermyon-spin-unversioned/rdbms-types.wit"),
    ),
    (
        "redis.wit",
        include_str!("../../../wit/spin1/deps/fermyon-spin-unversioned/redis.wit"),
    ),
    (
        "sqlite.wit",
        include_str!("../../../wit/spin1/deps/fermyon-spin-unversioned/sqlite.wit"),
    ),
];

/// The Spin 1.x Redis handler's interface, which the Redis trigger calls (its WIT is in
/// `wit/triggers`, beside a second copy of `redis-types`, which `redis.wit` above defines).
const INBOUND_REDIS_WIT: &str = "package fermyon:spin;

interface inbound-redis {
  use redis-types.{payload, error};

  handle-message: func(message: payload) -> result<_, error>;
}
";

/// The old ABI's import modules and the `fermyon:spin` interfaces they are.
const IMPORTS: &[(&str, &str)] = &[
    ("spin-config", "config"),
    ("wasi-outbound-http", "http"),
    ("outbound-redis", "redis"),
    ("key-value", "key-value"),
    ("sqlite", "sqlite"),
    ("outbound-pg", "postgres"),
    ("outbound-mysql", "mysql"),
    ("llm", "llm"),
];

/// Functions whose names changed between the old interfaces and Spin 1.x's.
const RENAMED_FUNCTIONS: &[(&str, &str, &str)] =
    &[("wasi-outbound-http", "request", "send-request")];

/// The HTTP handler's export, before and after.
const HTTP_HANDLER: (&str, &str) = (
    "handle-http-request",
    "fermyon:spin/inbound-http#handle-request",
);

/// The Redis handler's export, before and after.
const REDIS_HANDLER: (&str, &str) = (
    "handle-redis-message",
    "fermyon:spin/inbound-redis#handle-message",
);

/// The preview1 imports, which the adapter provides.
const WASI_PREVIEW1: &str = "wasi_snapshot_preview1";

/// Whether a core module's export of this name is one of Spin's pre-component ABI.
pub(crate) fn is_legacy_export(name: &str) -> bool {
    matches!(
        name,
        "handle-http-request" | "handle-redis-message" | "canonical_abi_realloc"
    )
}

/// `module` renamed onto the Spin 1.x interfaces and carrying their component-type
/// metadata, ready for the preview1 reactor adapter. Errors say what the module uses that
/// has no Spin 1.x counterpart.
pub(crate) fn adapt(module: &[u8]) -> Result<Vec<u8>, String> {
    let mut adapted = wasm_encoder::Module::new();
    let mut used = std::collections::BTreeSet::new();
    let mut exports_http = false;
    let mut exports_redis = false;
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        let payload = payload.map_err(|e| format!("is not a valid core module: {e}"))?;
        match payload {
            wasmparser::Payload::ImportSection(reader) => {
                let mut imports = wasm_encoder::ImportSection::new();
                for import in reader.into_imports() {
                    let import = import.map_err(|e| format!("is not a valid core module: {e}"))?;
                    let (module_name, name) = rename_import(import.module, import.name)?;
                    if let Some(interface) = module_name.strip_prefix("fermyon:spin/") {
                        used.insert(interface.to_owned());
                    }
                    let ty = RoundtripReencoder
                        .entity_type(import.ty)
                        .map_err(|e| format!("is not a valid core module: {e}"))?;
                    imports.import(&module_name, &name, ty);
                }
                adapted.section(&imports);
            }
            wasmparser::Payload::ExportSection(reader) => {
                let mut exports = wasm_encoder::ExportSection::new();
                let mut names = Vec::new();
                for export in reader {
                    let export = export.map_err(|e| format!("is not a valid core module: {e}"))?;
                    names.push((export.name, export.kind, export.index));
                }
                let has = |wanted: &str| names.iter().any(|(name, ..)| *name == wanted);
                let (has_initialize, has_cabi_realloc) = (has("_initialize"), has("cabi_realloc"));
                for (name, kind, index) in &names {
                    let kind = RoundtripReencoder
                        .export_kind(*kind)
                        .map_err(|e| format!("is not a valid core module: {e}"))?;
                    match *name {
                        name if name == HTTP_HANDLER.0 => {
                            exports_http = true;
                            exports.export(HTTP_HANDLER.1, kind, *index);
                        }
                        name if name == REDIS_HANDLER.0 => {
                            exports_redis = true;
                            exports.export(REDIS_HANDLER.1, kind, *index);
                        }
                        // The realloc the host allocates arguments and results with.
                        "canonical_abi_realloc" if !has_cabi_realloc => {
                            exports.export(name, kind, *index);
                            exports.export("cabi_realloc", kind, *index);
                        }
                        // A TinyGo command (built without `-buildmode=c-shared`) sets up its
                        // runtime and runs `init` functions, which register the handler, in
                        // `_start`; it returns once an empty `main` has. The adapter runs
                        // `_initialize` once, before the first call.
                        "_start" if !has_initialize => {
                            exports.export("_initialize", kind, *index);
                        }
                        name => {
                            exports.export(name, kind, *index);
                        }
                    }
                }
                adapted.section(&exports);
            }
            payload => {
                if let Some((id, range)) = payload.as_section() {
                    adapted.section(&wasm_encoder::RawSection {
                        id,
                        data: &module[range],
                    });
                }
            }
        }
    }
    if !exports_http && !exports_redis {
        return Err(
            "is a core module built for Spin's pre-component ABI (wit-bindgen 0.2) \
                    that exports neither `handle-http-request` nor `handle-redis-message`; \
                    rebuild it with a current Spin SDK"
                .to_owned(),
        );
    }
    let mut bytes = adapted.finish();
    let (resolve, world) = world(&used, exports_http, exports_redis)?;
    wit_component::embed_component_metadata(
        &mut bytes,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .map_err(|e| format!("cannot describe its Spin interfaces: {e:#}"))?;
    Ok(bytes)
}

/// The Spin 1.x name of an old ABI import; preview1 imports stay as they are.
fn rename_import<'a>(
    module: &'a str,
    name: &'a str,
) -> Result<(Cow<'a, str>, Cow<'a, str>), String> {
    if module == WASI_PREVIEW1 {
        return Ok((module.into(), name.into()));
    }
    let Some((_, interface)) = IMPORTS.iter().find(|(old, _)| *old == module) else {
        return Err(format!(
            "is a core module built for Spin's pre-component ABI (wit-bindgen 0.2) that imports \
             `{module}::{name}`, an interface Wisp does not know; rebuild it with a current Spin SDK"
        ));
    };
    let name = RENAMED_FUNCTIONS
        .iter()
        .find(|(old_module, old, _)| *old_module == module && *old == name)
        .map_or(name, |(_, _, new)| new);
    Ok((format!("fermyon:spin/{interface}").into(), name.into()))
}

/// A world importing the `used` Spin 1.x interfaces and exporting the handlers there are.
fn world(
    used: &std::collections::BTreeSet<String>,
    http: bool,
    redis: bool,
) -> Result<(wit_parser::Resolve, wit_parser::WorldId), String> {
    // The WIT is Wisp's own, so these fail only if it was edited wrongly.
    fn internal(e: impl std::fmt::Display) -> String {
        format!("cannot describe its Spin interfaces: {e:#}")
    }
    let mut resolve = wit_parser::Resolve::default();
    let mut spin = wit_parser::SourceMap::default();
    for (path, contents) in SPIN1_WIT {
        spin.push_str(path, *contents);
    }
    spin.push_str("inbound-redis.wit", INBOUND_REDIS_WIT);
    let group = spin.parse().map_err(|(_, e)| internal(e))?;
    resolve.push_group(group).map_err(internal)?;
    let mut source = String::from("package wisp:legacy-spin-abi;\nworld module {\n");
    for interface in used {
        source.push_str(&format!("  import fermyon:spin/{interface};\n"));
    }
    if http {
        source.push_str("  export fermyon:spin/inbound-http;\n");
    }
    if redis {
        source.push_str("  export fermyon:spin/inbound-redis;\n");
    }
    source.push_str("}\n");
    let package = resolve
        .push_source("legacy-spin-abi.wit", &source)
        .map_err(internal)?;
    let world = resolve
        .select_world(&[package], Some("module"))
        .map_err(internal)?;
    Ok((resolve, world))
}

#[cfg(test)]
mod tests {
    /// The Redis handler's interface here is the one the Redis trigger binds.
    #[test]
    fn inbound_redis_matches_the_triggers_copy() {
        let trigger =
            include_str!("../../../wit/triggers/deps/fermyon-spin-unversioned/inbound-redis.wit");
        let interface = |wit: &str| {
            let start = wit
                .find("interface inbound-redis {")
                .expect("inbound-redis");
            wit[start..].split_whitespace().collect::<String>()
        };
        assert_eq!(interface(super::INBOUND_REDIS_WIT), interface(trigger));
    }
}
