//! Component dependencies (Spin's `[component.<id>.dependencies]`): when a component loads,
//! the engine hands its bytes and its dependencies' bytes to [`compose`], which plugs each
//! dependency's exports into the imports its name matches and returns one component.
//!
//! A dependency acts with the grants of the component that depends on it only where it
//! inherits them (`dependencies_inherit_configuration`, `inherit_configuration`). Every
//! other capability import of the dependency (outbound HTTP and sockets, key-value, SQLite,
//! variables, environment, preopened files, LLM, the database and messaging clients) is
//! re-imported under a name starting with [`DENIED_IMPORT_PREFIX`], which the host answers
//! with refusals. Spin plugs a prebuilt "deny adapter" component in there instead; renaming
//! lets the host refuse every function of every version of an interface, including ones
//! added later, without a second guest to keep in step, and a mismatch fails the load
//! instead of leaving an import open.

use std::collections::HashSet;
use std::fmt::Write as _;

use wac_graph::types::{ItemKind, Package};
use wac_graph::{CompositionGraph, EncodeOptions, NodeId};
use wisp_app::InheritConfiguration;
use wisp_manifest::DependencyName;

/// The prefix of a composed component's imports that the host must answer with refusals:
/// `wisp-deny-wasi:http/outgoing-handler@0.2.6` is a dependency's outbound HTTP import,
/// not granted.
pub const DENIED_IMPORT_PREFIX: &str = "wisp-deny-";

/// Changes whenever composition changes what it produces, so cached compiled code of an
/// older composition is never reused.
pub const COMPOSER_VERSION: &str = "wisp-compose-1";

/// The interfaces each capability set covers (`ns:pkg/iface` without a version, or `ns:pkg/*`
/// for a whole package). A dependency that does not inherit a set loses these imports.
const CAPABILITY_INTERFACES: &[(&str, &[&str])] = &[
    ("ai_models", &["fermyon:spin/llm", "spin:llm/*"]),
    (
        "allowed_outbound_hosts",
        &[
            "fermyon:spin/http",
            "fermyon:spin/mqtt",
            "fermyon:spin/mysql",
            "fermyon:spin/postgres",
            "fermyon:spin/redis",
            "spin:mqtt/*",
            "spin:mysql/*",
            "spin:postgres/*",
            "spin:redis/*",
            "wasi:http/outgoing-handler",
            "wasi:http/client",
            "wasi:sockets/ip-name-lookup",
            "wasi:sockets/tcp",
            "wasi:sockets/tcp-create-socket",
            "wasi:sockets/udp",
            "wasi:sockets/udp-create-socket",
            // WASI 0.3 creates sockets here.
            "wasi:sockets/types",
        ],
    ),
    ("environment", &["wasi:cli/environment"]),
    ("files", &["wasi:filesystem/preopens"]),
    (
        "key_value_stores",
        &[
            "fermyon:spin/key-value",
            "spin:key-value/*",
            "wasi:keyvalue/*",
        ],
    ),
    (
        "sqlite_databases",
        &["fermyon:spin/sqlite", "spin:sqlite/*"],
    ),
    (
        "variables",
        &[
            "fermyon:spin/config",
            "fermyon:spin/variables",
            "spin:variables/*",
            "wasi:config/*",
        ],
    ),
];

/// The capability set an import belongs to, if it is a capability at all.
pub fn capability_set(import: &str) -> Option<&'static str> {
    let unversioned = import.split('@').next().unwrap_or(import);
    let package = unversioned.split('/').next().unwrap_or(unversioned);
    CAPABILITY_INTERFACES
        .iter()
        .find(|(_, interfaces)| {
            interfaces
                .iter()
                .any(|pattern| match pattern.strip_suffix("/*") {
                    Some(whole) => whole == package,
                    None => *pattern == unversioned,
                })
        })
        .map(|(set, _)| *set)
}

/// The interface a denied import stands for (`wasi:cli/environment@0.2.6` for
/// `wisp-deny-wasi:cli/environment@0.2.6`), or `None` for any other import.
pub fn denied_interface(import: &str) -> Option<&str> {
    import.strip_prefix(DENIED_IMPORT_PREFIX)
}

/// One dependency to compose.
#[derive(Debug)]
pub struct Dependency<'a> {
    /// Its name in the manifest: the import(s) it satisfies.
    pub name: &'a str,
    /// Its component bytes.
    pub bytes: Vec<u8>,
    /// The export to use instead of one named like the import.
    pub export: Option<&'a str>,
    /// The grants it shares with the depending component.
    pub inherit: &'a InheritConfiguration,
}

/// Why a component and its dependencies could not be composed. Each names the dependency
/// and the import or export at fault.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// The dependency's name matches none of the component's imports.
    #[error(
        "dependency `{dependency}` matches no import of the component; name one of its imports ({imports})"
    )]
    Unmatched {
        /// The dependency's name.
        dependency: String,
        /// The component's imports, for the hint.
        imports: String,
    },
    /// Two dependencies match the same import.
    #[error(
        "import `{import}` is matched by dependencies `{first}` and `{second}`; narrow one of the names"
    )]
    Conflict {
        /// The import.
        import: String,
        /// The first dependency matching it.
        first: String,
        /// The second.
        second: String,
    },
    /// The dependency has no export of the name the import needs.
    #[error(
        "dependency `{dependency}` has no export `{export}` for import `{import}`; it exports {exports} (pick one with `export = \"…\"`)"
    )]
    MissingExport {
        /// The dependency's name.
        dependency: String,
        /// The export looked for.
        export: String,
        /// The import it would satisfy.
        import: String,
        /// What the dependency exports.
        exports: String,
    },
    /// A component was unusable, or the export's type does not fit the import.
    #[error("dependency `{dependency}`: {message}")]
    Dependency {
        /// The dependency's name.
        dependency: String,
        /// What went wrong.
        message: String,
    },
    /// The depending component itself could not be read, or the result not encoded.
    #[error("{0}")]
    Component(String),
    /// A middleware component (numbered from 1, outermost first) is unusable.
    #[error("middleware {index}: {message}")]
    Middleware {
        /// Its position in the chain, from 1.
        index: usize,
        /// What went wrong.
        message: String,
    },
}

/// One HTTP middleware component to chain in front of a component.
#[derive(Debug)]
pub struct Middleware<'a> {
    /// Its component bytes.
    pub bytes: Vec<u8>,
    /// The grants it shares with the component it wraps.
    pub inherit: &'a InheritConfiguration,
}

/// The WASI 0.3 interface middleware is chained through: each middleware exports it and
/// imports it to call the next handler (Spin's HTTP middleware).
const HANDLER_INTERFACE: &str = "wasi:http/handler@0.3";

/// Chains `middleware` (outermost first) in front of `main`: each one's `wasi:http/handler`
/// import is the next one's export, the last one's is `main`'s, and the result exports the
/// outermost one's handler (and nothing else, as in Spin). Capabilities a middleware does
/// not inherit are re-imported under [`DENIED_IMPORT_PREFIX`], as for dependencies.
pub fn compose_middleware(
    main: Vec<u8>,
    middleware: Vec<Middleware<'_>>,
) -> Result<Vec<u8>, ComposeError> {
    let mut graph = CompositionGraph::new();
    let package = Package::from_bytes("wisp:main", None, main, graph.types_mut()).map_err(|e| {
        ComposeError::Component(format!("cannot read the component: {}", chain(&*e)))
    })?;
    let main_world = package.ty();
    let exports = &graph.types()[main_world].exports;
    let Some(handler) = exports
        .keys()
        .find(|name| name.starts_with(HANDLER_INTERFACE))
        .cloned()
    else {
        return Err(ComposeError::Component(format!(
            "middleware wraps a component that exports `wasi:http/handler@0.3.0` (WASI 0.3), but this one exports {}; build it with spin-sdk 7's `#[http_service]` or remove the trigger's middleware",
            list(exports.keys())
        )));
    };
    let main_package = graph
        .register_package(package)
        .map_err(|e| ComposeError::Component(chain(&e)))?;
    let main_instance = graph.instantiate(main_package);
    let mut next = graph
        .alias_instance_export(main_instance, &handler)
        .map_err(|e| ComposeError::Component(chain(&e)))?;
    let count = middleware.len();
    // Innermost first: each is instantiated with the handler it calls.
    for (position, layer) in middleware.into_iter().enumerate().rev() {
        let index = position + 1;
        let error = |message: String| ComposeError::Middleware { index, message };
        let internal = format!("wisp-middleware{index}:component");
        let package = Package::from_bytes(&internal, None, layer.bytes, graph.types_mut())
            .map_err(|e| error(format!("cannot read it as a component: {}", chain(&*e))))?;
        let world = package.ty();
        let types = graph.types();
        let imports_handler = types[world].imports.contains_key(&handler);
        let exports_handler = types[world].exports.contains_key(&handler);
        if !imports_handler || !exports_handler {
            let of = |names: Vec<&String>| match names.is_empty() {
                true => "no version of it".to_owned(),
                false => list(names.into_iter()),
            };
            let imported = types[world]
                .imports
                .keys()
                .filter(|n| n.starts_with("wasi:http/handler"));
            let exported = types[world]
                .exports
                .keys()
                .filter(|n| n.starts_with("wasi:http/handler"));
            return Err(error(format!(
                "a middleware imports and exports `{handler}` (the interface the component it wraps exports); this one imports {} and exports {}; build it with spin-sdk 7's `http-middleware` feature",
                of(imported.collect()),
                of(exported.collect()),
            )));
        }
        let package = graph
            .register_package(package)
            .map_err(|e| error(chain(&e)))?;
        let instance = graph.instantiate(package);
        deny_capabilities(&mut graph, instance, world, layer.inherit).map_err(&error)?;
        graph
            .set_instantiation_argument(instance, &handler, next)
            .map_err(|e| {
                error(format!(
                    "its `{handler}` import does not fit the next handler's export: {}",
                    chain(&e)
                ))
            })?;
        next = graph
            .alias_instance_export(instance, &handler)
            .map_err(|e| error(chain(&e)))?;
    }
    graph
        .export(next, handler)
        .map_err(|e| ComposeError::Component(chain(&e)))?;
    graph.encode(EncodeOptions::default()).map_err(|e| {
        ComposeError::Component(format!(
            "cannot encode the component with its {count} middleware: {}",
            chain(&e)
        ))
    })
}

/// Composes `main` with `dependencies`: each dependency is instantiated once, its exports
/// satisfy the imports its name matches, capabilities it does not inherit are re-imported
/// under [`DENIED_IMPORT_PREFIX`], and the result exports exactly what `main` exports.
pub fn compose(main: Vec<u8>, dependencies: Vec<Dependency<'_>>) -> Result<Vec<u8>, ComposeError> {
    let mut graph = CompositionGraph::new();
    let package = Package::from_bytes("wisp:main", None, main, graph.types_mut()).map_err(|e| {
        ComposeError::Component(format!("cannot read the component: {}", chain(&*e)))
    })?;
    let main_world = package.ty();
    let main_package = graph
        .register_package(package)
        .map_err(|e| ComposeError::Component(chain(&e)))?;
    let main_instance = graph.instantiate(main_package);
    let imports: Vec<String> = graph.types()[main_world].imports.keys().cloned().collect();

    let mut claimed: Vec<(String, String)> = Vec::new();
    for (index, dependency) in dependencies.into_iter().enumerate() {
        let dependency_error = |message: String| ComposeError::Dependency {
            dependency: dependency.name.to_owned(),
            message,
        };
        let name = DependencyName::parse(dependency.name).map_err(&dependency_error)?;
        let matched: Vec<&String> = imports.iter().filter(|i| name.matches_import(i)).collect();
        if matched.is_empty() {
            return Err(ComposeError::Unmatched {
                dependency: dependency.name.to_owned(),
                imports: list(imports.iter()),
            });
        }
        // Unique package names: two dependencies may come from one package. The name is
        // internal, so messages say "the dependency" instead.
        let internal = format!("wisp-dependency{index}:component");
        let package = Package::from_bytes(&internal, None, dependency.bytes, graph.types_mut())
            .map_err(|e| {
                dependency_error(format!("cannot read it as a component: {}", chain(&*e)))
            })?;
        let world = package.ty();
        let package = graph
            .register_package(package)
            .map_err(|e| dependency_error(chain(&e)))?;
        let instance = graph.instantiate(package);
        deny_capabilities(&mut graph, instance, world, dependency.inherit)
            .map_err(&dependency_error)?;

        for import in matched {
            if let Some((_, first)) = claimed.iter().find(|(claimed, _)| claimed == import) {
                return Err(ComposeError::Conflict {
                    import: import.clone(),
                    first: first.clone(),
                    second: dependency.name.to_owned(),
                });
            }
            claimed.push((import.clone(), dependency.name.to_owned()));
            let export = dependency.export.unwrap_or(import);
            let exports = &graph.types()[world].exports;
            if !exports.contains_key(export) {
                return Err(ComposeError::MissingExport {
                    dependency: dependency.name.to_owned(),
                    export: export.to_owned(),
                    import: import.clone(),
                    exports: list(exports.keys()),
                });
            }
            let node = graph
                .alias_instance_export(instance, export)
                .map_err(|e| dependency_error(chain(&e)))?;
            graph
                .set_instantiation_argument(main_instance, import, node)
                .map_err(|e| {
                    dependency_error(format!(
                        "its export `{export}` does not fit import `{import}`: {}",
                        chain(&e)
                    ))
                })?;
        }
    }

    let exports: Vec<String> = graph.types()[main_world].exports.keys().cloned().collect();
    for export in exports {
        let node = graph
            .alias_instance_export(main_instance, &export)
            .map_err(|e| ComposeError::Component(chain(&e)))?;
        graph
            .export(node, export)
            .map_err(|e| ComposeError::Component(chain(&e)))?;
    }
    graph.encode(EncodeOptions::default()).map_err(|e| {
        ComposeError::Component(format!("cannot encode the composition: {}", chain(&e)))
    })
}

/// Re-imports the dependency's capability imports it does not inherit under
/// [`DENIED_IMPORT_PREFIX`], together with every import that uses their types (a resource
/// must come from one place).
fn deny_capabilities(
    graph: &mut CompositionGraph,
    instance: NodeId,
    world: wac_graph::types::WorldId,
    inherit: &InheritConfiguration,
) -> Result<(), String> {
    let imports: Vec<(String, ItemKind)> = graph.types()[world]
        .imports
        .iter()
        .map(|(name, kind)| (name.clone(), *kind))
        .collect();
    let mut denied: HashSet<String> = imports
        .iter()
        .filter(|(name, _)| capability_set(name).is_some_and(|set| !inherit.includes(set)))
        .map(|(name, _)| name.clone())
        .collect();
    loop {
        let types = graph.types();
        let users: Vec<String> = imports
            .iter()
            .filter(|(name, _)| !denied.contains(name))
            .filter(|(_, kind)| match kind {
                ItemKind::Instance(interface) => types[*interface].uses.values().any(|used| {
                    types[used.interface]
                        .id
                        .as_ref()
                        .is_some_and(|id| denied.contains(id))
                }),
                _ => false,
            })
            .map(|(name, _)| name.clone())
            .collect();
        if users.is_empty() {
            break;
        }
        denied.extend(users);
    }
    for (name, kind) in imports {
        if !denied.contains(&name) {
            continue;
        }
        let ItemKind::Instance(interface) = kind else {
            return Err(format!(
                "cannot refuse its import `{name}`, which is not an interface"
            ));
        };
        let renamed = format!("{DENIED_IMPORT_PREFIX}{name}");
        let existing = graph
            .imports()
            .find(|(import, _, _)| *import == renamed)
            .and_then(|(_, _, node)| node);
        let node = match existing {
            Some(node) => node,
            None => {
                // A copy of the interface under the new name: the encoder shares imports by
                // interface id, and would otherwise hand the dependency the real one.
                let mut copy = graph.types()[interface].clone();
                copy.id = Some(renamed.clone());
                let copy = graph.types_mut().add_interface(copy);
                graph
                    .import(renamed.clone(), ItemKind::Instance(copy))
                    .map_err(|e| format!("cannot refuse its import `{name}`: {}", chain(&e)))?
            }
        };
        graph
            .set_instantiation_argument(instance, &name, node)
            .map_err(|e| format!("cannot refuse its import `{name}`: {}", chain(&e)))?;
    }
    Ok(())
}

fn list<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    if names.is_empty() {
        "nothing".to_owned()
    } else {
        names.join(", ")
    }
}

/// An error and its causes on one line.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            let _ = write!(text, ": {cause_text}");
        }
        source = cause.source();
    }
    without_internal_names(&text)
}

/// `text` with the package names the composition gives its parts (`wisp:main`,
/// `wisp-dependency<N>:component`) replaced by what the user knows them as; the error
/// already names the dependency.
fn without_internal_names(text: &str) -> String {
    let mut out = text
        .replace("package `wisp:main`", "the component")
        .replace("`wisp:main`", "the component");
    for (internal, user_name) in [
        ("wisp-dependency", "the dependency"),
        ("wisp-middleware", "the middleware"),
    ] {
        out = replace_internal(out, internal, user_name);
    }
    out
}

/// `text` with each `<internal><N>:component` package name (quoted, after `package `)
/// replaced by `user_name`.
fn replace_internal(mut out: String, internal: &str, user_name: &str) -> String {
    while let Some(start) = out.find(internal) {
        let digits = out[start + internal.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .count();
        let mut end = start + internal.len() + digits;
        if out[end..].starts_with(":component") {
            end += ":component".len();
        }
        let mut start = start;
        if out[..start].ends_with('`') && out[end..].starts_with('`') {
            start -= 1;
            end += 1;
        }
        if out[..start].ends_with("package ") {
            start -= "package ".len();
        }
        out.replace_range(start..end, user_name);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_package_names_stay_out_of_messages() {
        assert_eq!(
            without_internal_names(
                "package `wisp-dependency12:component` is not a binary-encoded WebAssembly component"
            ),
            "the dependency is not a binary-encoded WebAssembly component"
        );
        assert_eq!(
            without_internal_names(
                "instance of `wisp-dependency0:component` and package `wisp:main`"
            ),
            "instance of the dependency and the component"
        );
    }

    #[test]
    fn capability_imports_map_to_their_sets() {
        for (import, set) in [
            ("wasi:cli/environment@0.2.6", Some("environment")),
            ("wasi:filesystem/preopens@0.2.0", Some("files")),
            ("wasi:filesystem/types@0.2.0", None),
            (
                "wasi:http/outgoing-handler@0.2.12",
                Some("allowed_outbound_hosts"),
            ),
            ("wasi:http/types@0.2.12", None),
            (
                "wasi:keyvalue/atomics@0.2.0-draft2",
                Some("key_value_stores"),
            ),
            ("spin:key-value/key-value@3.0.0", Some("key_value_stores")),
            ("fermyon:spin/key-value@2.0.0", Some("key_value_stores")),
            ("fermyon:spin/rdbms-types@2.0.0", None),
            (
                "spin:postgres/postgres@4.2.0",
                Some("allowed_outbound_hosts"),
            ),
            (
                "wasi:config/store@0.2.0-draft-2024-09-27",
                Some("variables"),
            ),
            ("wasi:io/streams@0.2.6", None),
            ("wasi:clocks/monotonic-clock@0.2.6", None),
            ("test:calc/adder@0.1.0", None),
        ] {
            assert_eq!(capability_set(import), set, "{import}");
        }
    }

    #[test]
    fn denied_imports_name_their_interface() {
        assert_eq!(
            denied_interface("wisp-deny-wasi:cli/environment@0.2.6"),
            Some("wasi:cli/environment@0.2.6")
        );
        assert_eq!(denied_interface("wasi:cli/environment@0.2.6"), None);
    }
}
