//! Component dependencies: `[component.<id>.dependencies]` as Spin checks them.

use std::ops::Range;
use std::path::PathBuf;

use indexmap::IndexMap;
use toml::Spanned;

use crate::DependencyName;
use crate::error::ManifestError;
use crate::model::{CAPABILITY_SETS, Component, ComponentSource, Dependency, InheritConfiguration};
use crate::raw::{RawDependency, RawInherit, RawRemoteSource};

use super::Validator;

/// A dependency on another component of the manifest.
pub(super) struct ComponentDependency {
    component: String,
    dependency: String,
    target: String,
    span: Range<usize>,
}

impl Validator<'_> {
    /// `[component.<id>.dependencies]` and `dependencies_inherit_configuration`, checked as
    /// Spin checks them. `{ component = "other" }` entries are recorded in
    /// `self.component_dependencies` and given their source once every component is known.
    pub(super) fn dependencies(
        &mut self,
        id: &str,
        raw: IndexMap<Spanned<String>, Spanned<RawDependency>>,
        inherit_all: Option<Spanned<bool>>,
    ) -> Result<IndexMap<String, Dependency>, ManifestError> {
        let mut names: Vec<(DependencyName, Range<usize>)> = Vec::new();
        let mut dependencies = IndexMap::new();
        for (key, value) in raw {
            let key_span = key.span();
            let name = DependencyName::parse(key.get_ref()).map_err(|problem| {
                self.error(
                    key_span.clone(),
                    format!("dependency of component `{id}`: {problem}"),
                    "name the import the dependency satisfies: `\"ns:pkg/interface@1.0.0\"`, a \
                     whole package `\"ns:pkg\"`, or a plain import name `\"my-dep\"`",
                )
            })?;
            if let Some((other, _)) = names.iter().find(|(other, _)| other.conflicts_with(&name)) {
                return Err(self.error(
                    key_span,
                    format!("dependency `{name}` of component `{id}` conflicts with `{other}`"),
                    "two names of one package may not claim the same import; name different \
                     interfaces or versions of different major (0.x: minor) releases",
                ));
            }
            let value_span = value.span();
            let registry_source = |package: Option<String>,
                                   version: String,
                                   registry: Option<String>|
             -> Result<ComponentSource, ManifestError> {
                let package = match (package, &name) {
                    (Some(package), _) => package,
                    (None, DependencyName::Package { package, .. }) => package.clone(),
                    (None, DependencyName::Plain(_)) => {
                        return Err(self.error(
                            value_span.clone(),
                            format!(
                                "dependency `{name}` of component `{id}` must specify a package name"
                            ),
                            "a plain name says nothing about the package: add `package = \"ns:name\"`, \
                             or key the dependency by the package's import name",
                        ));
                    }
                };
                if let Err(problem) = crate::dependencies::check_package_name(&package) {
                    return Err(self.error(
                        value_span.clone(),
                        format!("dependency `{name}` of component `{id}`: {problem}"),
                        "write the package as `namespace:name`",
                    ));
                }
                if let Err(e) = semver::VersionReq::parse(&version) {
                    return Err(self.error(
                        value_span.clone(),
                        format!(
                            "dependency `{name}` of component `{id}` asks for version `{version}`, which is not a version requirement ({e})"
                        ),
                        "write e.g. \"1.2.3\" (that version or a compatible newer one) or \"=1.2.3\"",
                    ));
                }
                Ok(ComponentSource::Registry {
                    registry,
                    package,
                    version,
                })
            };
            let table = match value.into_inner() {
                RawDependency::Version(version) => {
                    let inherit = match &inherit_all {
                        Some(all) if *all.get_ref() => InheritConfiguration::All,
                        _ => InheritConfiguration::default(),
                    };
                    let dependency = Dependency {
                        source: registry_source(None, version, None)?,
                        export: None,
                        inherit,
                    };
                    dependencies.insert(name.to_string(), dependency);
                    names.push((name, key_span));
                    continue;
                }
                RawDependency::Table(table) => *table,
            };
            let field_error =
                |message: String, hint: &str| self.error(value_span.clone(), message, hint);
            let registry_fields =
                table.version.is_some() || table.registry.is_some() || table.package.is_some();
            if registry_fields && table.version.is_none() {
                return Err(field_error(
                    format!(
                        "dependency `{name}` of component `{id}` has registry fields but no `version`"
                    ),
                    "add `version = \"1.2.3\"`, or use `path`, `url` or `component` instead",
                ));
            }
            let sources = [
                table.version.is_some(),
                table.path.is_some(),
                table.url.is_some() || table.digest.is_some(),
                table.component.is_some(),
            ];
            if sources.iter().filter(|set| **set).count() != 1 {
                return Err(field_error(
                    format!("dependency `{name}` of component `{id}` needs exactly one source"),
                    "write one of `{ path = \"dep.wasm\" }`, `{ url = \"https://…\", digest = \"sha256:…\" }`, \
                     `{ component = \"other-component\" }` or `{ version = \"1.2.3\" }`",
                ));
            }
            if table.export.is_some() && name.is_package_wide() {
                return Err(field_error(
                    format!(
                        "dependency `{name}` of component `{id}` names a whole package, so it cannot take an `export`"
                    ),
                    "name the interface the export satisfies, e.g. `\"ns:pkg/interface@1.0.0\" = { …, export = \"…\" }`",
                ));
            }
            let inherit = match (&inherit_all, table.inherit_configuration) {
                (Some(_), Some(per_entry)) => {
                    return Err(self.error(
                        per_entry.span(),
                        format!(
                            "component `{id}` sets both `dependencies_inherit_configuration` and \
                             `inherit_configuration` on dependency `{name}`"
                        ),
                        "they are mutually exclusive; keep one of them",
                    ));
                }
                (Some(all), None) if *all.get_ref() => InheritConfiguration::All,
                (_, Some(per_entry)) => {
                    let span = per_entry.span();
                    match per_entry.into_inner() {
                        RawInherit::All(true) => InheritConfiguration::All,
                        RawInherit::All(false) => InheritConfiguration::default(),
                        RawInherit::Some(sets) => {
                            if let Some(unknown) = sets
                                .iter()
                                .find(|set| !CAPABILITY_SETS.contains(&set.as_str()))
                            {
                                return Err(self.error(
                                    span,
                                    format!("dependency `{name}` of component `{id}` inherits `{unknown}`, which is not a capability set"),
                                    format!("the capability sets are {}", CAPABILITY_SETS.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")),
                                ));
                            }
                            InheritConfiguration::Some(sets)
                        }
                    }
                }
                _ => InheritConfiguration::default(),
            };
            let source = if let Some(version) = table.version {
                registry_source(table.package, version, table.registry)?
            } else if let Some(path) = table.path {
                if path.trim().is_empty() {
                    return Err(field_error(
                        format!("dependency `{name}` of component `{id}` has an empty `path`"),
                        "point `path` at the dependency's .wasm file, relative to the manifest",
                    ));
                }
                ComponentSource::Local(PathBuf::from(path))
            } else if let Some(component) = table.component {
                self.component_dependencies.push(ComponentDependency {
                    component: id.to_owned(),
                    dependency: name.to_string(),
                    target: component,
                    span: value_span.clone(),
                });
                // Replaced by the target's source once every component is read.
                ComponentSource::Local(PathBuf::new())
            } else {
                self.remote_source(
                    id,
                    value_span.clone(),
                    RawRemoteSource {
                        url: table.url,
                        digest: table.digest,
                        registry: None,
                        package: None,
                        version: None,
                    },
                )?
            };
            dependencies.insert(
                name.to_string(),
                Dependency {
                    source,
                    export: table.export,
                    inherit,
                },
            );
            names.push((name, key_span));
        }
        Ok(dependencies)
    }

    /// Gives `{ component = "other" }` dependencies the other component's source; Spin
    /// refuses a target that has grants or dependencies of its own.
    pub(super) fn resolve_component_dependencies(
        &mut self,
        components: &mut IndexMap<String, Component>,
    ) -> Result<(), ManifestError> {
        for reference in std::mem::take(&mut self.component_dependencies) {
            let Some(target) = components.get(&reference.target) else {
                let defined = components
                    .keys()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(self.error(
                    reference.span,
                    format!(
                        "dependency `{}` of component `{}` names component `{}`, which is not defined",
                        reference.dependency, reference.component, reference.target
                    ),
                    format!("defined components: {defined}"),
                ));
            };
            let grants = [
                ("ai_models", !target.ai_models.is_empty()),
                (
                    "allowed_outbound_hosts",
                    !target.allowed_outbound_hosts.is_empty(),
                ),
                ("dependencies", !target.dependencies.is_empty()),
                ("environment", !target.environment.is_empty()),
                ("files", !target.files.is_empty()),
                ("key_value_stores", !target.key_value_stores.is_empty()),
                ("sqlite_databases", !target.sqlite_databases.is_empty()),
                ("variables", !target.variables.is_empty()),
            ];
            let specified: Vec<&str> = grants
                .iter()
                .filter(|(_, set)| *set)
                .map(|(name, _)| *name)
                .collect();
            if !specified.is_empty() {
                return Err(self.error(
                    reference.span,
                    format!(
                        "component `{}` cannot be used as a dependency of `{}` because it specifies: {}",
                        reference.target,
                        reference.component,
                        specified.join(", ")
                    ),
                    "dependencies may not have their own grants or dependencies; point the \
                     dependency at a component without them, or at its .wasm with `path`",
                ));
            }
            let source = target.source.clone();
            if let Some(dependency) = components
                .get_mut(&reference.component)
                .and_then(|c| c.dependencies.get_mut(&reference.dependency))
            {
                dependency.source = source;
            }
        }
        Ok(())
    }
}
