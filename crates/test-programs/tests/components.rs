//! Every guest program exists and is a valid WebAssembly component exporting
//! the HTTP handler interface that Wisp serves.

use wasmparser::{Parser, Payload, Validator, WasmFeatures};

/// The component-model layer: version `0x0d` and layer `1` (a core module
/// has version `1`, layer `0`).
const COMPONENT_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Names of the component's top-level imports and exports.
fn imports_and_exports(wasm: &[u8]) -> (Vec<String>, Vec<String>) {
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    // Nested modules and components have their own import and export
    // sections; only depth 0 is the component's interface.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.expect("parsing the component") {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(section) if depth == 0 => {
                for import in section {
                    imports.push(import.expect("reading an import").name.name.to_string());
                }
            }
            Payload::ComponentExportSection(section) if depth == 0 => {
                for export in section {
                    exports.push(export.expect("reading an export").name.name.to_string());
                }
            }
            _ => {}
        }
    }
    (imports, exports)
}

/// The repository root.
fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Guests built only as core modules (`wasm32-wasip1`), each with a constant of its own
/// instead of a place in `ALL`.
const CORE_MODULE_ONLY: &[&str] = &["spin-legacy-abi"];

/// Every guest crate under `tests/programs` (a `cdylib`, or the `[[bin]]` of a WASI
/// command) is in `ALL`, once, but for [`CORE_MODULE_ONLY`].
#[test]
fn all_lists_every_guest_once() {
    let mut names: Vec<_> = wisp_test_programs::ALL.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    let listed = names.len();
    names.dedup();
    assert_eq!(names.len(), listed, "a guest is listed twice: {names:?}");
    let mut guests = Vec::new();
    for entry in std::fs::read_dir(repo().join("tests/programs")).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        if text.contains("cdylib") || text.contains("[[bin]]") {
            let name = text
                .lines()
                .find_map(|l| l.strip_prefix("name = "))
                .map(|n| n.trim_matches('"').to_owned())
                .unwrap_or_else(|| panic!("{} has no package name", manifest.display()));
            if !CORE_MODULE_ONLY.contains(&name.as_str()) {
                guests.push(name);
            }
        }
    }
    guests.sort_unstable();
    assert_eq!(
        guests, names,
        "every guest crate under tests/programs must be in GUESTS of crates/test-programs/build.rs"
    );
}

/// Every guest is used by a test or a bench: its constant (`HELLO` for `hello`) appears
/// in Rust code outside this crate, or its `.wasm` in a bench script.
#[test]
fn every_guest_is_used_by_a_test() {
    let mut sources = String::new();
    let mut stack = vec![repo().join("crates"), repo().join("benches")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("test-programs") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs" || e == "sh") {
                sources.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let unused: Vec<&str> = wisp_test_programs::ALL
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| {
            let constant = name.to_uppercase().replace('-', "_");
            let wasm = format!("{}.wasm", name.replace('-', "_"));
            !sources.contains(&format!("::{constant}")) && !sources.contains(&wasm)
        })
        .collect();
    assert!(
        unused.is_empty(),
        "guests no test or bench uses (use them, or remove them): {unused:?}"
    );
}

#[test]
fn every_guest_is_a_component() {
    for (name, path) in wisp_test_programs::ALL {
        assert!(
            std::path::Path::new(path).is_absolute(),
            "{name}: {path} is absolute"
        );
        let wasm = read(path);
        assert!(wasm.len() > 8, "{name}: {path} is too short");
        assert_eq!(&wasm[..4], b"\0asm", "{name}: {path} has the wasm magic");
        assert_eq!(
            wasm[..8],
            COMPONENT_HEADER,
            "{name}: {path} is a component, not a core module"
        );
    }
}

#[test]
fn every_guest_validates() {
    for (name, path) in wisp_test_programs::ALL {
        let wasm = read(path);
        Validator::new_with_features(WasmFeatures::all())
            .validate_all(&wasm)
            .unwrap_or_else(|e| panic!("{name}: {path} does not validate: {e}"));
    }
}

#[test]
fn wasi_p2_guests_export_incoming_handler() {
    // The Spin SDK guests and the component-dependency guests have their own tests
    // below; the capability and network guests import Spin interfaces and are covered
    // by crates/cli/tests.
    let others = [
        wisp_test_programs::P3_HELLO,
        wisp_test_programs::CAPS_V5,
        wisp_test_programs::CAPS_V7,
        wisp_test_programs::NET_V5,
        wisp_test_programs::NET_V7,
        wisp_test_programs::RDBMS_V5,
        wisp_test_programs::RDBMS_V7,
        wisp_test_programs::SPIN_SDK_V5,
        wisp_test_programs::SPIN_SDK_V7,
        wisp_test_programs::REDIS_HANDLER,
        wisp_test_programs::REDIS_SUBSCRIBER_V7,
        wisp_test_programs::CRON_TICK,
        wisp_test_programs::DEP_ADDER,
        wisp_test_programs::DEP_MAIN,
        wisp_test_programs::WAGI,
        wisp_test_programs::SPIN1_HTTP,
        wisp_test_programs::MIDDLEWARE_A,
        wisp_test_programs::MIDDLEWARE_B,
    ];
    for (name, path) in wisp_test_programs::ALL {
        if others.contains(path) {
            continue;
        }
        let (imports, exports) = imports_and_exports(&read(path));
        assert_eq!(
            exports,
            ["wasi:http/incoming-handler@0.2.12"],
            "{name} exports"
        );
        assert_only_wasi_02_imports(name, &imports, &[]);
    }
}

#[test]
fn the_wagi_guest_is_a_command() {
    let (imports, exports) = imports_and_exports(&read(wisp_test_programs::WAGI));
    assert!(
        exports.len() == 1 && exports[0].starts_with("wasi:cli/run@0.2."),
        "exports {exports:?}"
    );
    assert_only_wasi_02_imports("wagi", &imports, &[]);
    // Its wasm32-wasip1 build is a core module whose `_start` is its `main`.
    let module = read(wisp_test_programs::WAGI_WASIP1);
    assert!(
        Parser::is_core_wasm(&module),
        "the wasip1 build is a core module"
    );
    let mut exports = Vec::new();
    for payload in Parser::new(0).parse_all(&module) {
        if let Payload::ExportSection(section) = payload.unwrap() {
            exports.extend(section.into_iter().map(|e| e.unwrap().name.to_owned()));
        }
    }
    assert!(exports.iter().any(|e| e == "_start"), "exports {exports:?}");
}

#[test]
fn the_spin1_guest_has_the_spin_1_world() {
    let (imports, exports) = imports_and_exports(&read(wisp_test_programs::SPIN1_HTTP));
    assert_eq!(exports, ["fermyon:spin/inbound-http"], "exports");
    for wanted in [
        "fermyon:spin/config",
        "fermyon:spin/http",
        "fermyon:spin/key-value",
        "fermyon:spin/sqlite",
        "fermyon:spin/redis",
        "fermyon:spin/postgres",
        "fermyon:spin/mysql",
        "fermyon:spin/llm",
    ] {
        assert!(
            imports.iter().any(|i| i == wanted),
            "imports {wanted}: {imports:?}"
        );
    }
    // Its wasm32-wasip1 build is a core module carrying the world as wit-bindgen
    // metadata, as spin-sdk 1.x apps are.
    let module = read(wisp_test_programs::SPIN1_HTTP_WASIP1);
    assert!(
        Parser::is_core_wasm(&module),
        "the wasip1 build is a core module"
    );
    let metadata = Parser::new(0).parse_all(&module).any(|payload| {
        matches!(payload, Ok(Payload::CustomSection(c)) if c.name().starts_with("component-type"))
    });
    assert!(metadata, "the wasip1 build carries component-type metadata");
}

/// The legacy-ABI guest is what Spin's pre-component SDKs build: a core module with no
/// component metadata, exporting the old handlers and realloc, importing the old modules.
#[test]
fn the_legacy_abi_guest_is_a_core_module_of_spins_pre_component_abi() {
    let module = read(wisp_test_programs::SPIN_LEGACY_ABI_WASIP1);
    assert!(Parser::is_core_wasm(&module), "a core module");
    let (mut imports, mut exports, mut metadata) = (Vec::new(), Vec::new(), false);
    for payload in Parser::new(0).parse_all(&module) {
        match payload.unwrap() {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    imports.push(import.unwrap().module.to_owned());
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    exports.push(export.unwrap().name.to_owned());
                }
            }
            Payload::CustomSection(c) if c.name().starts_with("component-type") => {
                metadata = true;
            }
            _ => {}
        }
    }
    assert!(!metadata, "no component-type metadata");
    for wanted in [
        "handle-http-request",
        "handle-redis-message",
        "canonical_abi_realloc",
        "_start",
    ] {
        assert!(
            exports.iter().any(|e| e == wanted),
            "exports {wanted}: {exports:?}"
        );
    }
    for wanted in ["spin-config", "wasi-outbound-http", "key-value"] {
        assert!(
            imports.iter().any(|i| i == wanted),
            "imports {wanted}: {imports:?}"
        );
    }
}

#[test]
fn network_guests_import_mqtt_and_sockets() {
    let (imports, _) = imports_and_exports(&read(wisp_test_programs::NET_V5));
    for wanted in ["fermyon:spin/mqtt@2.0.0", "wasi:sockets/tcp@0.2"] {
        assert!(
            imports.iter().any(|i| i.starts_with(wanted)),
            "net-v5 imports {wanted}: {imports:?}"
        );
    }
    let (imports, _) = imports_and_exports(&read(wisp_test_programs::NET_V7));
    for wanted in ["spin:mqtt/mqtt@3.0.0", "wasi:sockets/types@0.3.0"] {
        assert!(
            imports.iter().any(|i| i == wanted),
            "net-v7 imports {wanted}: {imports:?}"
        );
    }
}

#[test]
fn p3_hello_exports_the_wasi_0_3_handler() {
    let (imports, exports) = imports_and_exports(&read(wisp_test_programs::P3_HELLO));
    // Exactly the package version that wasmtime-wasi-http 48 implements.
    assert_eq!(exports, ["wasi:http/handler@0.3.0"]);
    assert!(
        imports.iter().any(|i| i == "wasi:http/types@0.3.0"),
        "p3-hello imports wasi:http/types@0.3.0: {imports:?}"
    );
    // Rust's std on wasm32-wasip2 itself imports WASI 0.2 interfaces.
    assert_only_wasi_02_imports("p3-hello", &imports, &["wasi:http/types@0.3.0"]);
}

#[test]
fn spin_sdk_v5_exports_incoming_handler_and_imports_only_wasi_0_2() {
    let (imports, exports) = imports_and_exports(&read(wisp_test_programs::SPIN_SDK_V5));
    // spin-sdk 5.2's `#[http_component]` exports the handler from the 0.2.0
    // WIT inside `spin-macro` and imports through the SDK's own 0.2.6 WIT;
    // both are semver-compatible with the 0.2.12 that wasmtime-wasi(-http) 48
    // implements.
    assert_eq!(exports, ["wasi:http/incoming-handler@0.2.0"]);
    assert!(
        imports
            .iter()
            .any(|i| i.starts_with("wasi:http/types@0.2.")),
        "spin-sdk-v5 imports wasi:http/types@0.2.x: {imports:?}"
    );
    // In particular no `fermyon:spin/*` or `spin:*` host interface.
    assert_only_wasi_02_imports("spin-sdk-v5", &imports, &[]);
}

#[test]
fn spin_sdk_v7_exports_the_wasi_0_3_handler_and_imports_only_wasi() {
    let (imports, exports) = imports_and_exports(&read(wisp_test_programs::SPIN_SDK_V7));
    // spin-sdk 7.0 binds WASI 0.3 through `wasip3` 0.7.1+wasi-0.3.0, whose WIT
    // is identical to wasmtime-wasi-http 48.0.8's `wasi:http@0.3.0`.
    assert_eq!(exports, ["wasi:http/handler@0.3.0"]);
    assert!(
        imports.iter().any(|i| i == "wasi:http/types@0.3.0"),
        "spin-sdk-v7 imports wasi:http/types@0.3.0: {imports:?}"
    );
    // In particular no `fermyon:spin/*` or `spin:*` host interface.
    assert_only_wasi_02_imports("spin-sdk-v7", &imports, &["wasi:http/types@0.3.0"]);
}

/// The middleware guests export the WASI 0.3 handler and import it (the next handler of
/// their chain), plus the variables interface they probe; built apart from the other
/// spin-sdk 7 guests, whose imports stay without the handler.
#[test]
fn middleware_guests_import_and_export_the_wasi_0_3_handler() {
    for (name, path) in [
        ("middleware-a", wisp_test_programs::MIDDLEWARE_A),
        ("middleware-b", wisp_test_programs::MIDDLEWARE_B),
    ] {
        let (imports, exports) = imports_and_exports(&read(path));
        assert_eq!(exports, ["wasi:http/handler@0.3.0"], "{name}");
        assert_only_wasi_02_imports(
            name,
            &imports,
            &[
                "wasi:http/types@0.3.0",
                "wasi:http/handler@0.3.0",
                "spin:variables/variables@3.0.0",
            ],
        );
        assert!(
            imports.iter().any(|i| i == "wasi:http/handler@0.3.0"),
            "{name}: {imports:?}"
        );
    }
}

/// Asserts every import is a WASI 0.2 interface, apart from the ones in `also_allowed`.
fn assert_only_wasi_02_imports(name: &str, imports: &[String], also_allowed: &[&str]) {
    for import in imports {
        assert!(
            also_allowed.contains(&import.as_str())
                || (import.starts_with("wasi:") && import.contains("@0.2.")),
            "{name} imports only WASI 0.2 interfaces and {also_allowed:?}, not {import}"
        );
    }
}

#[test]
fn rdbms_guests_import_the_database_interfaces_of_their_sdk() {
    let (imports, exports) = imports_and_exports(&read(wisp_test_programs::RDBMS_V5));
    assert_eq!(exports, ["wasi:http/incoming-handler@0.2.0"]);
    for interface in [
        "fermyon:spin/postgres@2.0.0",
        "fermyon:spin/mysql@2.0.0",
        "spin:postgres/postgres@3.0.0",
        "spin:postgres/postgres@4.0.0",
    ] {
        assert!(
            imports.iter().any(|i| i == interface),
            "rdbms-v5 imports {interface}: {imports:?}"
        );
    }
    let (imports, exports) = imports_and_exports(&read(wisp_test_programs::RDBMS_V7));
    assert_eq!(exports, ["wasi:http/handler@0.3.0"]);
    for interface in ["spin:postgres/postgres@4.2.0", "spin:mysql/mysql@3.0.0"] {
        assert!(
            imports.iter().any(|i| i == interface),
            "rdbms-v7 imports {interface}: {imports:?}"
        );
    }
}

#[test]
fn event_guests_export_their_trigger_handlers() {
    for (path, wanted) in [
        (
            wisp_test_programs::REDIS_HANDLER,
            "fermyon:spin/inbound-redis",
        ),
        (
            wisp_test_programs::REDIS_SUBSCRIBER_V7,
            "spin:redis/inbound-redis@3.0.0",
        ),
        (wisp_test_programs::CRON_TICK, "handle-cron-event"),
    ] {
        let (_, exports) = imports_and_exports(&read(path));
        assert_eq!(exports, [wanted], "{path}");
    }
}

#[test]
fn dependency_guests_export_and_import_test_calc_adder() {
    let (imports, exports) = imports_and_exports(&read(wisp_test_programs::DEP_ADDER));
    // A dependency, not an HTTP component: it only exports the interface.
    assert_eq!(
        exports,
        ["test:calc/adder@0.1.0", "offset-adder"],
        "dep-adder exports"
    );
    for wanted in [
        "fermyon:spin/key-value@2.0.0",
        "wasi:http/outgoing-handler@0.2.12",
        "wasi:cli/environment@0.2.12",
    ] {
        assert!(
            imports.iter().any(|i| i == wanted),
            "dep-adder imports {wanted}: {imports:?}"
        );
    }
    let (imports, exports) = imports_and_exports(&read(wisp_test_programs::DEP_MAIN));
    assert_eq!(
        exports,
        ["wasi:http/incoming-handler@0.2.12"],
        "dep-main exports"
    );
    assert_only_wasi_02_imports("dep-main", &imports, &["test:calc/adder@0.1.0"]);
    assert!(
        imports.iter().any(|i| i == "test:calc/adder@0.1.0"),
        "dep-main imports test:calc/adder@0.1.0: {imports:?}"
    );
}
