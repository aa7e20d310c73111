//! Component dependencies: `[component.<id>.dependencies]` as Spin checks them.

use std::ops::Range;
use std::path::PathBuf;

use indexmap::IndexMap;
use toml::Spanned;

use crate::DependencyName;
use crate::error::ManifestError;
use crate::model::{CAPABILITY_SETS, Component, ComponentSource, Dependency, InheritConfiguration};
use crate::raw::{RawDependency, RawDependencyTable, RawInherit, RawRemoteSource};

use super::Validator;

/// A dependency on another component of the manifest.
pub(super) struct ComponentDependency {
    component: String,
    /// Whether it is in a profile other than the one in place: checked, never applied.
    unselected_profile: bool,
    dependency: String,
    target: String,
    span: Range<usize>,
}

impl ComponentDependency {
    /// Whether this is a reference of component `id`'s own dependencies under one of
    /// `names`, which a profile replaces.
    pub(super) fn replaces(&self, id: &str, names: &[String]) -> bool {
        self.component == id && !self.unselected_profile && names.contains(&self.dependency)
    }
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
        unselected_profile: bool,
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
                self.package_source(
                    &format!("dependency `{name}` of component `{id}`"),
                    value_span.clone(),
                    package,
                    version,
                    registry,
                )
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
            if sources_given(&table) != 1 {
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
                (_, Some(per_entry)) => self.inherit(
                    &format!("dependency `{name}` of component `{id}`"),
                    per_entry,
                )?,
                _ => InheritConfiguration::default(),
            };
            let source = if let Some(version) = table.version {
                registry_source(table.package, version, table.registry)?
            } else if let Some(path) = table.path {
                let what = format!("dependency `{name}` of component `{id}`");
                self.path_source(&what, "dependency", value_span.clone(), path)?
            } else if let Some(component) = table.component {
                self.component_dependencies.push(ComponentDependency {
                    component: id.to_owned(),
                    unselected_profile,
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

    /// `{ path = "..." }` of `what`, a `kind` (dependency, middleware).
    fn path_source(
        &self,
        what: &str,
        kind: &str,
        span: Range<usize>,
        path: String,
    ) -> Result<ComponentSource, ManifestError> {
        if path.trim().is_empty() {
            return Err(self.error(
                span,
                format!("{what} has an empty `path`"),
                format!("point `path` at the {kind}'s .wasm file, relative to the manifest"),
            ));
        }
        Ok(ComponentSource::Local(PathBuf::from(path)))
    }

    /// A registry source of `what`, with its package name and version requirement checked.
    fn package_source(
        &self,
        what: &str,
        span: Range<usize>,
        package: String,
        version: String,
        registry: Option<String>,
    ) -> Result<ComponentSource, ManifestError> {
        if let Err(problem) = crate::dependencies::check_package_name(&package) {
            return Err(self.error(
                span,
                format!("{what}: {problem}"),
                "write the package as `namespace:name`",
            ));
        }
        if let Err(e) = semver::VersionReq::parse(&version) {
            return Err(self.error(
                span,
                format!(
                    "{what} asks for version `{version}`, which is not a version requirement ({e})"
                ),
                "write e.g. \"1.2.3\" (that version or a compatible newer one) or \"=1.2.3\"",
            ));
        }
        Ok(ComponentSource::Registry {
            registry,
            package,
            version,
        })
    }

    /// `inherit_configuration = true | false | [sets]` of `what` (a dependency, a middleware).
    fn inherit(
        &self,
        what: &str,
        per_entry: Spanned<RawInherit>,
    ) -> Result<InheritConfiguration, ManifestError> {
        let span = per_entry.span();
        Ok(match per_entry.into_inner() {
            RawInherit::All(true) => InheritConfiguration::All,
            RawInherit::All(false) => InheritConfiguration::default(),
            RawInherit::Some(sets) => {
                if let Some(unknown) = sets
                    .iter()
                    .find(|set| !CAPABILITY_SETS.contains(&set.as_str()))
                {
                    return Err(self.error(
                        span,
                        format!("{what} inherits `{unknown}`, which is not a capability set"),
                        format!(
                            "the capability sets are {}",
                            CAPABILITY_SETS
                                .iter()
                                .map(|s| format!("`{s}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
                InheritConfiguration::Some(sets)
            }
        })
    }

    /// A trigger's `dependencies` table (Spin's trigger dependencies): only `middleware`, a
    /// list of components composed in front of `component` (the trigger's), outermost
    /// first. Each entry takes one source as a component dependency does, but no `export`;
    /// `{ component = "id" }` takes that component's source and none of its grants (a
    /// middleware acts with the trigger's component's grants it inherits).
    pub(super) fn trigger_middleware(
        &mut self,
        component: &str,
        raw: IndexMap<Spanned<String>, Spanned<Vec<Spanned<RawDependencyTable>>>>,
        components: &IndexMap<String, Component>,
    ) -> Result<Vec<Dependency>, ManifestError> {
        let mut middleware = Vec::new();
        for (kind, entries) in raw {
            if kind.get_ref() != "middleware" {
                return Err(self.error(
                    kind.span(),
                    format!(
                        "an HTTP trigger has no `{}` dependencies; `middleware` is the only kind",
                        kind.get_ref()
                    ),
                    "write `dependencies.middleware = [{ component = \"<middleware component id>\" }]`",
                ));
            }
            for (index, entry) in entries.into_inner().into_iter().enumerate() {
                let span = entry.span();
                let table = entry.into_inner();
                let what = format!("middleware {} of the trigger for `{component}`", index + 1);
                let field_error =
                    |message: String, hint: &str| self.error(span.clone(), message, hint);
                if table.export.is_some() {
                    return Err(field_error(
                        format!("{what} has an `export`"),
                        "middleware is chained through `wasi:http/handler@0.3.0`; remove `export`",
                    ));
                }
                if sources_given(&table) != 1 {
                    return Err(field_error(
                        format!("{what} needs exactly one source"),
                        "write one of `{ component = \"other-component\" }`, `{ path = \"mw.wasm\" }`, \
                         `{ url = \"https://…\", digest = \"sha256:…\" }` or \
                         `{ package = \"ns:name\", version = \"1.2.3\" }`",
                    ));
                }
                let inherit = match table.inherit_configuration {
                    Some(per_entry) => self.inherit(&what, per_entry)?,
                    None => InheritConfiguration::default(),
                };
                let source = if let Some(target) = table.component {
                    match components.get(&target) {
                        Some(target) => {
                            let own = own_settings(target);
                            if !own.is_empty() {
                                return Err(field_error(
                                    format!(
                                        "component `{}` cannot be used as middleware of `{component}` because it specifies: {}",
                                        target.id,
                                        own.join(", ")
                                    ),
                                    "middleware acts with the grants of the component it wraps: grant them on that component and list them in the entry's `inherit_configuration`",
                                ));
                            }
                            target.source.clone()
                        }
                        None => {
                            let defined = components
                                .keys()
                                .map(|k| format!("`{k}`"))
                                .collect::<Vec<_>>()
                                .join(", ");
                            return Err(field_error(
                                format!("{what} names component `{target}`, which is not defined"),
                                &format!("defined components: {defined}"),
                            ));
                        }
                    }
                } else if let Some(path) = table.path {
                    self.path_source(&what, "middleware", span.clone(), path)?
                } else if table.url.is_some() || table.digest.is_some() {
                    self.remote_source(
                        component,
                        span.clone(),
                        RawRemoteSource {
                            url: table.url,
                            digest: table.digest,
                            registry: None,
                            package: None,
                            version: None,
                        },
                    )?
                } else {
                    let (Some(package), Some(version)) = (table.package, table.version) else {
                        return Err(field_error(
                            format!(
                                "{what} needs both `package` and `version` to come from a registry"
                            ),
                            "write `{ package = \"ns:name\", version = \"1.2.3\" }`",
                        ));
                    };
                    self.package_source(&what, span.clone(), package, version, table.registry)?
                };
                middleware.push(Dependency {
                    source,
                    export: None,
                    inherit,
                });
            }
        }
        Ok(middleware)
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
            let specified = own_settings(target);
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
            if reference.unselected_profile {
                continue;
            }
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

/// The grants and dependencies `component` specifies itself, by manifest field name: what
/// does not carry over when it is used as another component's dependency or middleware.
fn own_settings(component: &Component) -> Vec<&'static str> {
    [
        ("ai_models", !component.ai_models.is_empty()),
        (
            "allowed_outbound_hosts",
            !component.allowed_outbound_hosts.is_empty(),
        ),
        ("dependencies", !component.dependencies.is_empty()),
        ("environment", !component.environment.is_empty()),
        ("files", !component.files.is_empty()),
        ("key_value_stores", !component.key_value_stores.is_empty()),
        ("sqlite_databases", !component.sqlite_databases.is_empty()),
        ("variables", !component.variables.is_empty()),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .map(|(name, _)| name)
    .collect()
}

/// How many kinds of source a dependency or middleware entry names: a registry package
/// (`version`, `registry`, `package`), a `path`, a `url` (with `digest`), a `component`.
fn sources_given(table: &RawDependencyTable) -> usize {
    [
        table.version.is_some() || table.registry.is_some() || table.package.is_some(),
        table.path.is_some(),
        table.url.is_some() || table.digest.is_some(),
        table.component.is_some(),
    ]
    .into_iter()
    .filter(|given| *given)
    .count()
}
