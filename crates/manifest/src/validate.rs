//! From the text to a [`Manifest`]: the version check, the strict serde pass
//! over [`crate::raw`], then the checks that relate fields to each other
//! (references, routes, templates).
//!
//! The first problem found is returned; checks run in file-section order
//! (`[application]`, `[variables]`, `[component.*]`, `[[trigger.*]]`).

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use toml::Spanned;

use crate::DependencyName;
use crate::error::{ManifestError, Source};
use crate::model::{
    Application, CAPABILITY_SETS, Component, ComponentBuild, ComponentSource, CronTrigger,
    Dependency, FileMount, HttpRoute, HttpTrigger, InheritConfiguration, Manifest, RedisTrigger,
    StaticResponse, Variable,
};
use crate::raw::{
    RawApplication, RawComponent, RawComponentRef, RawCronTrigger, RawDependency, RawExecutor,
    RawFileMount, RawHttpTrigger, RawInherit, RawManifest, RawRedisTrigger, RawRemoteSource,
    RawRoute, RawSource, RawStaticResponse, RawTriggers, RawVariable, VersionProbe,
};
use crate::rules::{self, TemplateError};

/// Warning for `[application.trigger.http] base = ...`.
const BASE_WARNING: &str =
    "`application.trigger.http.base` is deprecated and ignored; routes are always relative to `/`";

/// Parses and validates manifest text.
pub(crate) fn parse(text: &str, file: &Path) -> Result<Manifest, ManifestError> {
    let src = Source { text, file };
    let probe: VersionProbe = toml::from_str(text).map_err(|e| src.syntax_error(&e))?;
    check_version(&src, &probe)?;
    let raw: RawManifest = toml::from_str(text).map_err(|e| src.schema_error(&e))?;
    Validator {
        src: &src,
        warnings: Vec::new(),
        redis_address: None,
        component_dependencies: Vec::new(),
    }
    .manifest(raw)
}

fn check_version(src: &Source<'_>, probe: &VersionProbe) -> Result<(), ManifestError> {
    let version_one = |span: Range<usize>| {
        src.error(
            span,
            "manifest version 1 is not supported; migrate with `spin doctor` or rewrite as version 2",
            "version 2 has `spin_manifest_version = 2`, an [application] table, \
             [component.<id>] tables and [[trigger.http]] tables that name a component",
        )
    };
    match (&probe.spin_manifest_version, &probe.spin_version) {
        (Some(version), _) => match version.get_ref() {
            toml::Value::Integer(2) => Ok(()),
            toml::Value::Integer(1) => Err(version_one(version.span())),
            toml::Value::String(s) if s == "1" => Err(version_one(version.span())),
            other => Err(src.error(
                version.span(),
                format!("unsupported manifest version `{other}`"),
                "set `spin_manifest_version = 2` (an integer); that is the version this tool reads",
            )),
        },
        (None, Some(version)) => Err(version_one(version.span())),
        (None, None) => Err(src.error(
            0..0,
            "the manifest has no `spin_manifest_version`",
            "add `spin_manifest_version = 2` as the first line",
        )),
    }
}

struct Validator<'a> {
    src: &'a Source<'a>,
    warnings: Vec<String>,
    /// `[application.trigger.redis] address`, the default for `[[trigger.redis]]`.
    redis_address: Option<Spanned<String>>,
    /// `{ component = "other" }` dependencies, resolved after every component is read.
    component_dependencies: Vec<ComponentDependency>,
}

/// A dependency on another component of the manifest.
struct ComponentDependency {
    component: String,
    dependency: String,
    target: String,
    span: Range<usize>,
}

impl Validator<'_> {
    fn error(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> ManifestError {
        self.src.error(span, message, hint)
    }

    fn manifest(mut self, raw: RawManifest) -> Result<Manifest, ManifestError> {
        let Some(application) = raw.application else {
            return Err(self.error(
                0..0,
                "the manifest has no [application] table",
                "add an [application] table with `name = \"my-app\"`",
            ));
        };
        let application = self.application(application)?;
        let variables = self.variables(raw.variables)?;

        let mut components = IndexMap::new();
        for (id, component) in raw.component {
            if !rules::is_kebab_id(id.get_ref()) {
                return Err(self.error(
                    id.span(),
                    format!("invalid component id `{}`", id.get_ref()),
                    "component ids are kebab-case, e.g. `my-component`: lowercase letters and \
                     digits in words separated by single `-`, starting with a letter",
                ));
            }
            let id = id.into_inner();
            let component = self.component(id.clone(), component, &variables)?;
            components.insert(id, component);
        }

        let triggers = self.triggers(raw.trigger, &mut components, &variables)?;
        self.resolve_component_dependencies(&mut components)?;

        Ok(Manifest {
            application,
            variables,
            http_triggers: triggers.http,
            redis_triggers: triggers.redis,
            cron_triggers: triggers.cron,
            components,
            warnings: self.warnings,
        })
    }

    fn application(&mut self, app: Spanned<RawApplication>) -> Result<Application, ManifestError> {
        let span = app.span();
        let app = app.into_inner();
        let name = match app.name {
            None => {
                return Err(self.error(
                    span,
                    "the application has no name",
                    "add `name = \"my-app\"` to the [application] table",
                ));
            }
            Some(name) if name.get_ref().trim().is_empty() => {
                return Err(self.error(
                    name.span(),
                    "the application name is empty",
                    "give the application a name, e.g. `name = \"my-app\"`",
                ));
            }
            Some(name) => name.into_inner(),
        };
        if let Some(kind) = app.trigger.unsupported.first() {
            return Err(self.unsupported_trigger(kind, "[application.trigger.{}]"));
        }
        if app.trigger.http.is_some_and(|http| http.base.is_some()) {
            self.warnings.push(BASE_WARNING.to_owned());
        }
        self.redis_address = app.trigger.redis.and_then(|redis| redis.address);
        Ok(Application {
            name,
            version: app.version,
            description: app.description,
            authors: app.authors,
        })
    }

    /// The error for a trigger type other than `http`; `table` is the
    /// table header with `{}` standing for the type.
    fn unsupported_trigger(&self, kind: &Spanned<String>, table: &str) -> ManifestError {
        let table = table.replace("{}", kind.get_ref());
        self.error(
            kind.span(),
            format!("trigger type `{}` is not supported yet", kind.get_ref()),
            format!(
                "Wisp runs http, redis and cron triggers ([[trigger.http]], [[trigger.redis]], \
                 [[trigger.cron]]); remove {table}"
            ),
        )
    }

    fn variables(
        &self,
        raw: IndexMap<Spanned<String>, Spanned<RawVariable>>,
    ) -> Result<IndexMap<String, Variable>, ManifestError> {
        let mut variables = IndexMap::new();
        for (name, variable) in raw {
            let name_span = name.span();
            let name = name.into_inner();
            if !rules::is_variable_name(&name) {
                return Err(self.error(
                    name_span,
                    format!("invalid variable name `{name}`"),
                    "variable names use lowercase letters, digits and underscores and start \
                     with a letter, e.g. `api_key`",
                ));
            }
            let variable = variable.into_inner();
            let required = variable.required.as_ref().is_some_and(|r| *r.get_ref());
            match (&variable.required, &variable.default) {
                (Some(req), Some(_)) if required => {
                    return Err(self.error(
                        req.span(),
                        format!("variable `{name}` is required and also has a default"),
                        "remove `default` if a value must always be provided, or remove \
                         `required = true` to fall back to the default",
                    ));
                }
                (_, None) if !required => {
                    return Err(self.error(
                        name_span,
                        format!("variable `{name}` has neither a default nor `required = true`"),
                        "add `default = \"...\"`, or `required = true` if the value must come \
                         from a variables provider",
                    ));
                }
                _ => {}
            }
            variables.insert(
                name,
                Variable {
                    default: variable.default.map(Spanned::into_inner),
                    required,
                    secret: variable.secret,
                },
            );
        }
        Ok(variables)
    }

    /// `source = { url = ..., digest = ... }`: both present, an http(s) URL, a sha256 digest.
    fn remote_source(
        &self,
        id: &str,
        span: Range<usize>,
        remote: RawRemoteSource,
    ) -> Result<ComponentSource, ManifestError> {
        let example = "write `source = { url = \"https://example.com/app.wasm\", digest = \"sha256:<64 hex digits>\" }`";
        if remote.registry.is_some() || remote.package.is_some() || remote.version.is_some() {
            return Err(self.error(
                span,
                format!("component `{id}` mixes a url source with registry fields"),
                format!("use either `url` and `digest`, or `registry`, `package` and `version`; {example}"),
            ));
        }
        let (Some(url), Some(digest)) = (remote.url, remote.digest) else {
            return Err(self.error(
                span,
                format!("component `{id}`: a url source needs both `url` and `digest`"),
                format!("{example} (`sha256sum app.wasm` gives the digest)"),
            ));
        };
        let host = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default());
        if host.is_none_or(|h| h.is_empty() || h.contains(char::is_whitespace)) {
            return Err(self.error(
                span,
                format!("component `{id}`: source url `{url}` is not an http or https URL"),
                example,
            ));
        }
        let valid_digest = digest.strip_prefix("sha256:").is_some_and(|hex| {
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if !valid_digest {
            return Err(self.error(
                span,
                format!("component `{id}`: source digest `{digest}` is not `sha256:` and 64 lower-case hex digits"),
                "write the digest as `sha256:<hex>` (`sha256sum app.wasm` prints the hex)",
            ));
        }
        Ok(ComponentSource::Remote { url, digest })
    }

    fn component(
        &mut self,
        id: String,
        raw: RawComponent,
        variables: &IndexMap<String, Variable>,
    ) -> Result<Component, ManifestError> {
        let source_span = raw.source.span();
        let source = match raw.source.into_inner() {
            RawSource::Local(path) if path.trim().is_empty() => {
                return Err(self.error(
                    source_span,
                    format!("component `{id}` has an empty `source`"),
                    "point `source` at the component's .wasm file, relative to the manifest",
                ));
            }
            RawSource::Local(path) => ComponentSource::Local(PathBuf::from(path)),
            RawSource::Remote(remote) if remote.url.is_some() || remote.digest.is_some() => {
                self.remote_source(&id, source_span, remote)?
            }
            RawSource::Remote(remote) => {
                let example = "write `source = { registry = \"registry.example.com\", package = \"ns:name\", version = \"1.2.3\" }`";
                let (Some(package), Some(version)) = (remote.package, remote.version) else {
                    return Err(self.error(
                        source_span,
                        format!(
                            "component `{id}`: a registry source needs `package` and `version`"
                        ),
                        example,
                    ));
                };
                if let Err(problem) = crate::dependencies::check_package_name(&package) {
                    return Err(self.error(
                        source_span,
                        format!("component `{id}`: {problem}"),
                        example,
                    ));
                }
                if let Err(e) = semver::Version::parse(&version) {
                    return Err(self.error(
                        source_span,
                        format!(
                            "component `{id}`: source version `{version}` is not an exact semantic version ({e})"
                        ),
                        example,
                    ));
                }
                ComponentSource::Registry {
                    registry: remote.registry,
                    package,
                    version: format!("={version}"),
                }
            }
        };

        let dependencies = self.dependencies(
            &id,
            raw.dependencies,
            raw.dependencies_inherit_configuration,
        )?;

        let mut files = Vec::with_capacity(raw.files.len());
        for file in raw.files {
            files.push(match file {
                RawFileMount::Pattern(pattern) => FileMount::Pattern(pattern),
                RawFileMount::Placement(placement) => {
                    let destination = placement.destination;
                    if !destination.get_ref().starts_with('/') {
                        return Err(self.error(
                            destination.span(),
                            format!(
                                "file destination `{}` is not an absolute path",
                                destination.get_ref()
                            ),
                            format!(
                                "guest paths start with `/`, e.g. `destination = \"/{}\"`",
                                destination.get_ref()
                            ),
                        ));
                    }
                    FileMount::Placement {
                        source: PathBuf::from(placement.source),
                        destination: destination.into_inner(),
                    }
                }
            });
        }

        let mut component_variables = IndexMap::new();
        for (name, template) in raw.variables {
            if !rules::is_variable_name(name.get_ref()) {
                return Err(self.error(
                    name.span(),
                    format!("invalid variable name `{}`", name.get_ref()),
                    "variable names use lowercase letters, digits and underscores and start \
                     with a letter, e.g. `api_key`",
                ));
            }
            let name = name.into_inner();
            self.check_template(&id, &name, &template, variables)?;
            component_variables.insert(name, template.into_inner());
        }

        Ok(Component {
            id,
            source,
            description: raw.description,
            environment: raw.environment,
            files,
            exclude_files: raw.exclude_files,
            allowed_outbound_hosts: raw.allowed_outbound_hosts,
            key_value_stores: raw.key_value_stores,
            sqlite_databases: raw.sqlite_databases,
            ai_models: raw.ai_models,
            variables: component_variables,
            build: raw.build.map(|build| ComponentBuild {
                commands: build.command.0,
                workdir: build.workdir,
                watch: build.watch,
            }),
            dependencies,
        })
    }

    /// `[component.<id>.dependencies]` and `dependencies_inherit_configuration`, checked as
    /// Spin checks them. `{ component = "other" }` entries are recorded in
    /// `self.component_dependencies` and given their source once every component is known.
    fn dependencies(
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
    fn resolve_component_dependencies(
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

    fn check_template(
        &self,
        component: &str,
        name: &str,
        template: &Spanned<String>,
        variables: &IndexMap<String, Variable>,
    ) -> Result<(), ManifestError> {
        let references = match rules::template_references(template.get_ref()) {
            Ok(references) => references,
            Err(TemplateError::Unterminated) => {
                return Err(self.error(
                    template.span(),
                    format!("variable `{name}` of component `{component}` has a `{{{{` without a closing `}}}}`"),
                    "write references to application variables as `{{ name }}`",
                ));
            }
            Err(TemplateError::BadName(bad)) => {
                return Err(self.error(
                    template.span(),
                    format!(
                        "variable `{name}` of component `{component}` refers to `{bad}`, which is not a variable name"
                    ),
                    "write references to application variables as `{{ name }}`, with a \
                     lowercase name declared under [variables]",
                ));
            }
        };
        for reference in references {
            if !variables.contains_key(reference) {
                return Err(self.error(
                    template.span(),
                    format!(
                        "variable `{name}` of component `{component}` refers to undeclared variable `{reference}`"
                    ),
                    format!(
                        "declare it under [variables], e.g. `{reference} = {{ default = \"...\" }}`"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn triggers(
        &mut self,
        raw: RawTriggers,
        components: &mut IndexMap<String, Component>,
        variables: &IndexMap<String, Variable>,
    ) -> Result<Triggers, ManifestError> {
        if let Some(kind) = raw.unsupported.first() {
            return Err(self.unsupported_trigger(kind, "the [[trigger.{}]] tables"));
        }
        if raw.http.is_empty() && raw.redis.is_empty() && raw.cron.is_empty() {
            return Err(self.error(
                0..0,
                "the app has no triggers; add a [[trigger.http]] table so that requests reach a component",
                "for example `[[trigger.http]]` with `route = \"/...\"` and `component = \"<component id>\"` \
                 (or a [[trigger.redis]] or [[trigger.cron]] table)",
            ));
        }

        let named: Vec<String> = components.keys().cloned().collect();
        let mut state = TriggerState::default();
        let mut triggers = Triggers::default();
        for trigger in raw.http {
            let trigger = self.http_trigger(trigger, &named, components, variables, &mut state)?;
            triggers.http.push(trigger);
        }
        for trigger in raw.redis {
            let trigger = self.redis_trigger(trigger, &named, components, variables, &mut state)?;
            triggers.redis.push(trigger);
        }
        for trigger in raw.cron {
            let trigger = self.cron_trigger(trigger, &named, components, variables, &mut state)?;
            triggers.cron.push(trigger);
        }
        Ok(triggers)
    }

    fn unique_trigger_id(
        &self,
        id: Option<&Spanned<String>>,
        state: &mut TriggerState,
    ) -> Result<(), ManifestError> {
        if let Some(id) = id
            && !state.ids.insert(id.get_ref().clone())
        {
            return Err(self.error(
                id.span(),
                format!("duplicate trigger id `{}`", id.get_ref()),
                "trigger ids must be unique; rename or remove one of them",
            ));
        }
        Ok(())
    }

    /// The `component` of a non-HTTP trigger, which is required.
    #[allow(clippy::too_many_arguments)]
    fn required_component(
        &mut self,
        component: Option<Spanned<RawComponentRef>>,
        trigger_span: Range<usize>,
        table: &str,
        trigger_id: Option<&Spanned<String>>,
        named: &[String],
        components: &mut IndexMap<String, Component>,
        variables: &IndexMap<String, Variable>,
        state: &mut TriggerState,
    ) -> Result<String, ManifestError> {
        match component {
            Some(component) => {
                self.component_ref(component, trigger_id, named, components, variables, state)
            }
            None => Err(self.error(
                trigger_span,
                format!("this {table} has no `component`"),
                "add `component = \"<component id>\"` naming a [component.<id>] table",
            )),
        }
    }

    fn redis_trigger(
        &mut self,
        trigger: Spanned<RawRedisTrigger>,
        named: &[String],
        components: &mut IndexMap<String, Component>,
        variables: &IndexMap<String, Variable>,
        state: &mut TriggerState,
    ) -> Result<RedisTrigger, ManifestError> {
        let trigger_span = trigger.span();
        let trigger = trigger.into_inner();
        self.unique_trigger_id(trigger.id.as_ref(), state)?;
        if let Some(executor) = &trigger.executor {
            self.executor(executor)?;
        }
        let component = self.required_component(
            trigger.component,
            trigger_span.clone(),
            "[[trigger.redis]]",
            trigger.id.as_ref(),
            named,
            components,
            variables,
            state,
        )?;
        let channel = match trigger.channel {
            Some(channel) if !channel.get_ref().trim().is_empty() => channel,
            Some(channel) => {
                return Err(self.error(
                    channel.span(),
                    "the redis trigger's `channel` is empty",
                    "write the channel to subscribe to, e.g. `channel = \"messages\"`",
                ));
            }
            None => {
                return Err(self.error(
                    trigger_span,
                    "this [[trigger.redis]] has no `channel`",
                    "add `channel = \"<channel name>\"`, the Redis pub/sub channel whose messages run the component",
                ));
            }
        };
        self.check_references("channel", &channel, variables)?;
        let line = self.src.line(channel.span().start);
        let address = match trigger.address.as_ref().or(self.redis_address.as_ref()) {
            Some(address) => address,
            None => {
                return Err(self.error(
                    trigger_span,
                    "this [[trigger.redis]] has no server address",
                    "add `address = \"redis://host:6379\"` to the trigger, or to an \
                     [application.trigger.redis] table for every redis trigger",
                ));
            }
        };
        self.check_address_template(address, variables)?;
        Ok(RedisTrigger {
            id: trigger.id.map(Spanned::into_inner),
            component,
            channel: channel.into_inner(),
            address: address.get_ref().clone(),
            line,
        })
    }

    /// `{{ variable }}` references in a redis trigger field name declared variables;
    /// returns how many there are.
    fn check_references(
        &self,
        field: &str,
        value: &Spanned<String>,
        variables: &IndexMap<String, Variable>,
    ) -> Result<usize, ManifestError> {
        let references = rules::template_references(value.get_ref()).map_err(|_| {
            self.error(
                value.span(),
                format!("the redis {field} has a malformed `{{{{ variable }}}}` reference"),
                "write references to application variables as `{{ name }}`",
            )
        })?;
        if let Some(undeclared) = references.iter().find(|r| !variables.contains_key(**r)) {
            return Err(self.error(
                value.span(),
                format!("the redis {field} refers to undeclared variable `{undeclared}`"),
                format!(
                    "declare it under [variables], e.g. `{undeclared} = {{ default = \"...\" }}`"
                ),
            ));
        }
        Ok(references.len())
    }

    /// A redis `address`: `redis://...` or `rediss://...`, possibly with `{{ variable }}` references.
    fn check_address_template(
        &self,
        address: &Spanned<String>,
        variables: &IndexMap<String, Variable>,
    ) -> Result<(), ManifestError> {
        let text = address.get_ref();
        let references = self.check_references("address", address, variables)?;
        if references == 0 && !text.starts_with("redis://") && !text.starts_with("rediss://") {
            return Err(self.error(
                address.span(),
                format!("`{text}` is not a redis address"),
                "write it as `redis://[user:password@]host[:port][/db]` (`rediss://` for TLS)",
            ));
        }
        Ok(())
    }

    fn cron_trigger(
        &mut self,
        trigger: Spanned<RawCronTrigger>,
        named: &[String],
        components: &mut IndexMap<String, Component>,
        variables: &IndexMap<String, Variable>,
        state: &mut TriggerState,
    ) -> Result<CronTrigger, ManifestError> {
        let trigger_span = trigger.span();
        let trigger = trigger.into_inner();
        self.unique_trigger_id(trigger.id.as_ref(), state)?;
        let component = self.required_component(
            trigger.component,
            trigger_span.clone(),
            "[[trigger.cron]]",
            trigger.id.as_ref(),
            named,
            components,
            variables,
            state,
        )?;
        let Some(expression) = trigger.cron_expression else {
            return Err(self.error(
                trigger_span,
                "this [[trigger.cron]] has no `cron_expression`",
                "add a schedule such as `cron_expression = \"0 */5 * * * *\"` (every five minutes)",
            ));
        };
        if let Err(reason) = rules::check_cron_expression(expression.get_ref()) {
            return Err(self.error(
                expression.span(),
                format!(
                    "invalid cron_expression `{}`: {reason}",
                    expression.get_ref()
                ),
                "write six or seven fields: seconds minutes hours day-of-month month \
                 day-of-week [year], e.g. `\"*/10 * * * * *\"` for every ten seconds",
            ));
        }
        let line = self.src.line(expression.span().start);
        Ok(CronTrigger {
            id: trigger.id.map(Spanned::into_inner),
            component,
            cron_expression: expression.into_inner(),
            allow_overlap: trigger.allow_overlap.unwrap_or(false),
            line,
        })
    }

    fn http_trigger(
        &mut self,
        trigger: Spanned<RawHttpTrigger>,
        named: &[String],
        components: &mut IndexMap<String, Component>,
        variables: &IndexMap<String, Variable>,
        state: &mut TriggerState,
    ) -> Result<HttpTrigger, ManifestError> {
        let trigger_span = trigger.span();
        let trigger = trigger.into_inner();
        self.unique_trigger_id(trigger.id.as_ref(), state)?;

        let route_span = trigger.route.span();
        let line = self.src.line(route_span.start);
        let route = self.route(trigger.route, line, &mut state.routes)?;

        if let Some(executor) = &trigger.executor {
            self.executor(executor)?;
        }

        let (component, static_response) = match (trigger.component, trigger.static_response) {
            (Some(_), Some(response)) => {
                return Err(self.error(
                    response.span(),
                    "a trigger cannot have both `component` and `static_response`",
                    "remove `static_response` to run the component, or remove `component` to \
                     always send the static response",
                ));
            }
            (None, None) => {
                return Err(self.error(
                    trigger_span,
                    "this trigger has neither `component` nor `static_response`",
                    "add `component = \"<component id>\"` naming a [component.<id>] table, or \
                     `static_response = { status_code = 200, body = \"...\" }`",
                ));
            }
            (Some(component), None) => {
                let id = self.component_ref(
                    component,
                    trigger.id.as_ref(),
                    named,
                    components,
                    variables,
                    state,
                )?;
                (Some(id), None)
            }
            (None, Some(response)) => (None, Some(self.static_response(response)?)),
        };

        if let Some(size) = &trigger.max_request_body_size
            && *size.get_ref() == 0
        {
            return Err(self.error(
                size.span(),
                "`max_request_body_size` must be at least 1 byte",
                "give the largest body this route accepts in bytes, e.g. \
                 `max_request_body_size = 1048576` for 1 MiB, or remove it for the server's default",
            ));
        }

        Ok(HttpTrigger {
            id: trigger.id.map(Spanned::into_inner),
            route,
            component,
            static_response,
            max_request_body_size: trigger.max_request_body_size.map(Spanned::into_inner),
            line,
        })
    }

    fn route(
        &self,
        route: Spanned<RawRoute>,
        line: usize,
        seen: &mut HashMap<String, (String, usize)>,
    ) -> Result<HttpRoute, ManifestError> {
        let span = route.span();
        match route.into_inner() {
            RawRoute::Private(private) => {
                if !private.private {
                    return Err(self.error(
                        span,
                        "`route = { private = false }` is not a route",
                        "use `route = { private = true }` for a component reached only through \
                         service chaining, or a path such as `route = \"/api/...\"`",
                    ));
                }
                Ok(HttpRoute::Private)
            }
            RawRoute::Path(path) => {
                let key = rules::route_key(&path)
                    .map_err(|(message, hint)| self.error(span.clone(), message, hint))?;
                if let Some((first, first_line)) = seen.get(&key) {
                    return Err(self.error(
                        span,
                        format!(
                            "route `{path}` collides with route `{first}` of the trigger on line {first_line}"
                        ),
                        "each route may be served by one trigger only (parameter names and \
                         trailing slashes do not make routes distinct); change or remove one of them",
                    ));
                }
                seen.insert(key, (path.clone(), line));
                Ok(HttpRoute::Path(path))
            }
        }
    }

    fn executor(&self, executor: &RawExecutor) -> Result<(), ManifestError> {
        match executor.kind.get_ref().as_str() {
            "spin" => {
                let wagi_field = [("argv", &executor.argv), ("entrypoint", &executor.entrypoint)]
                    .into_iter()
                    .find_map(|(name, value)| value.as_ref().map(|v| (name, v.span())));
                match wagi_field {
                    Some((name, span)) => Err(self.error(
                        span,
                        format!("`{name}` only applies to the wagi executor"),
                        format!("remove `{name}` from `executor`"),
                    )),
                    None => Ok(()),
                }
            }
            "wagi" => Err(self.error(
                executor.kind.span(),
                "the wagi executor is not supported yet; use the default spin executor (remove `executor`)",
                "wagi modules read requests from stdin; rebuild the component with a Spin SDK \
                 so that it exports `wasi:http/incoming-handler`",
            )),
            other => Err(self.error(
                executor.kind.span(),
                format!("unknown executor type `{other}`"),
                "remove `executor` to use the default, or write `executor = { type = \"spin\" }`",
            )),
        }
    }

    fn component_ref(
        &mut self,
        component: Spanned<RawComponentRef>,
        trigger_id: Option<&Spanned<String>>,
        named: &[String],
        components: &mut IndexMap<String, Component>,
        variables: &IndexMap<String, Variable>,
        state: &mut TriggerState,
    ) -> Result<String, ManifestError> {
        let span = component.span();
        match component.into_inner() {
            RawComponentRef::Id(id) => {
                if named.contains(&id) {
                    return Ok(id);
                }
                let hint = if named.is_empty() {
                    format!(
                        "no components are defined; add a [component.{id}] table with `source = \"...\"`"
                    )
                } else {
                    let list: Vec<String> = named.iter().map(|id| format!("`{id}`")).collect();
                    format!(
                        "defined components: {}; fix the name or add a [component.{id}] table",
                        list.join(", ")
                    )
                };
                Err(self.error(span, format!("component `{id}` is not defined"), hint))
            }
            RawComponentRef::Inline(raw) => {
                let (id, id_span) = match trigger_id {
                    Some(trigger_id) => {
                        if !rules::is_kebab_id(trigger_id.get_ref()) {
                            return Err(self.error(
                                trigger_id.span(),
                                format!(
                                    "trigger id `{}` is not a valid component id",
                                    trigger_id.get_ref()
                                ),
                                "an inline component takes its trigger's `id` as component id, \
                                 and component ids are kebab-case, e.g. `my-component`",
                            ));
                        }
                        (trigger_id.get_ref().clone(), trigger_id.span())
                    }
                    None => {
                        state.generated += 1;
                        (format!("inline-component-{}", state.generated), span)
                    }
                };
                if components.contains_key(&id) {
                    let other = if named.contains(&id) {
                        format!("[component.{id}]")
                    } else {
                        "the inline component of another trigger".to_owned()
                    };
                    let hint = if trigger_id.is_some() {
                        format!(
                            "an inline component takes its trigger's `id` as component id; \
                             rename the trigger or {other}"
                        )
                    } else {
                        format!(
                            "set an `id` on this trigger to name its inline component, or \
                             rename {other}"
                        )
                    };
                    return Err(self.error(
                        id_span,
                        format!("inline component id `{id}` clashes with {other}"),
                        hint,
                    ));
                }
                let component = self.component(id.clone(), *raw, variables)?;
                components.insert(id.clone(), component);
                Ok(id)
            }
        }
    }

    fn static_response(
        &self,
        response: Spanned<RawStaticResponse>,
    ) -> Result<StaticResponse, ManifestError> {
        let response = response.into_inner();
        let status_code = match response.status_code {
            None => 200,
            Some(code) if (100..=599).contains(code.get_ref()) => code.into_inner(),
            Some(code) => {
                return Err(self.error(
                    code.span(),
                    format!("status code {} is out of range", code.get_ref()),
                    "use an HTTP status code between 100 and 599",
                ));
            }
        };
        Ok(StaticResponse {
            status_code,
            headers: response.headers,
            body: response.body,
        })
    }
}

/// The validated triggers of each type.
#[derive(Default)]
struct Triggers {
    http: Vec<HttpTrigger>,
    redis: Vec<RedisTrigger>,
    cron: Vec<CronTrigger>,
}

/// What the trigger checks remember across triggers.
#[derive(Default)]
struct TriggerState {
    /// Trigger ids seen so far.
    ids: HashSet<String>,
    /// Route collision key → (route as written, line).
    routes: HashMap<String, (String, usize)>,
    /// Number of generated inline component ids so far.
    generated: usize,
}
