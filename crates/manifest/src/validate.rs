//! From the text to a [`Manifest`]: the version check, the strict serde pass
//! over [`crate::raw`], then the checks that relate fields to each other
//! (references, routes, templates).
//!
//! The first problem found is returned; checks run in file-section order
//! (`[application]`, `[variables]`, `[component.*]`, `[[trigger.*]]`).

use std::ops::Range;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use toml::Spanned;

use crate::error::{ManifestError, Source};
use crate::model::{
    Application, Component, ComponentBuild, ComponentProfile, ComponentSource, FileMount, Manifest,
    Variable,
};
use crate::raw::{
    RawApplication, RawComponent, RawFileMount, RawManifest, RawRemoteSource, RawSource,
    RawVariable, VersionProbe,
};
use crate::rules::{self, TemplateError};

mod dependencies;
mod triggers;

use dependencies::ComponentDependency;

/// Warning for `[application.trigger.http] base = ...`.
const BASE_WARNING: &str =
    "`application.trigger.http.base` is deprecated and ignored; routes are always relative to `/`";

/// Parses and validates manifest text.
/// Parses and validates manifest text, with `profile` in place if given.
pub(crate) fn parse(
    text: &str,
    file: &Path,
    profile: Option<&str>,
) -> Result<Manifest, ManifestError> {
    let src = Source { text, file };
    let probe: VersionProbe = toml::from_str(text).map_err(|e| src.syntax_error(&e))?;
    if check_version(&src, &probe)? == Version::One {
        let converted = crate::v1::convert(&src)?;
        return parse_v2(&converted.text, file, profile)
            .map(|manifest| converted.placed(&src, manifest))
            .map_err(|e| converted.place(&src, e));
    }
    parse_v2(text, file, profile)
}

/// Parses and validates the text of a version 2 manifest.
fn parse_v2(text: &str, file: &Path, profile: Option<&str>) -> Result<Manifest, ManifestError> {
    let src = Source { text, file };
    let raw: RawManifest = toml::from_str(text).map_err(|e| src.schema_error(&e))?;
    Validator {
        src: &src,
        warnings: Vec::new(),
        redis_address: None,
        component_dependencies: Vec::new(),
        profile,
    }
    .manifest(raw)
}

/// The manifest versions this crate reads.
#[derive(Debug, PartialEq, Eq)]
enum Version {
    /// Spin 1.x's, read by converting it (see [`crate::v1`]).
    One,
    Two,
}

fn check_version(src: &Source<'_>, probe: &VersionProbe) -> Result<Version, ManifestError> {
    match (&probe.spin_manifest_version, &probe.spin_version) {
        (Some(version), _) => match version.get_ref() {
            toml::Value::Integer(2) => Ok(Version::Two),
            toml::Value::String(s) if s == "1" => Ok(Version::One),
            other => Err(src.error(
                version.span(),
                format!("unsupported manifest version `{other}`"),
                "set `spin_manifest_version = 2` (an integer), or `\"1\"` (a string) for a Spin 1.x manifest",
            )),
        },
        (None, Some(version)) => match version.get_ref() {
            toml::Value::String(s) if s == "1" => Ok(Version::One),
            other => Err(src.error(
                version.span(),
                format!("unsupported manifest version `{other}`"),
                "set `spin_manifest_version = 2` (an integer); that is the version this tool reads",
            )),
        },
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
    /// The profile to put in place (`--profile`), as Spin does before it resolves
    /// `{ component = "..." }` references.
    profile: Option<&'a str>,
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
        if let Some(profile) = self.profile {
            self.check_profile(profile, &components)?;
        }
        self.resolve_component_dependencies(&mut components)?;
        // A component copied for its trigger's middleware was copied before its
        // `{ component = "..." }` dependencies had their sources.
        for (copy, original) in &triggers.copies {
            if let Some(original) = components.get(original).cloned()
                && let Some(copy) = components.get_mut(copy)
            {
                copy.dependencies = original.dependencies;
            }
        }

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
        let mut source = self.source(&id, raw.source)?;
        let mut dependencies = self.dependencies(
            &id,
            raw.dependencies,
            raw.dependencies_inherit_configuration.clone(),
            false,
        )?;
        let mut environment = raw.environment;
        let mut build = raw.build.map(|build| ComponentBuild {
            commands: build.command.0,
            workdir: build.workdir,
            watch: build.watch,
        });
        let mut profiles = Vec::new();
        for (name, profile) in raw.profile {
            let name = name.into_inner();
            let selected = self.profile == Some(name.as_str());
            let profile_source = match profile.source {
                Some(source) => Some(self.source(&id, source)?),
                None => None,
            };
            if selected {
                // What the profile's dependencies replace no longer takes a component's
                // source: drop those references before the profile's own are recorded.
                let replaced: Vec<String> = (profile.dependencies.keys())
                    .filter_map(|key| crate::DependencyName::parse(key.get_ref()).ok())
                    .map(|name| name.to_string())
                    .collect();
                self.component_dependencies
                    .retain(|reference| !reference.replaces(&id, &replaced));
            }
            let profile_dependencies = self.dependencies(
                &id,
                profile.dependencies,
                raw.dependencies_inherit_configuration.clone(),
                !selected,
            )?;
            let profile = ComponentProfile {
                source: profile_source,
                environment: profile.environment,
                dependencies: profile_dependencies,
                build_commands: profile.build.map(|build| build.command.0),
            };
            if selected {
                profile.apply(&mut source, &mut environment, &mut dependencies, &mut build);
            }
            profiles.push(name);
        }

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

        // Spin 4 still reads version 1's `allowed_http_hosts` in version 2 and adds its
        // conversion to `allowed_outbound_hosts`.
        let mut allowed_outbound_hosts = raw.allowed_outbound_hosts;
        if !raw.allowed_http_hosts.is_empty() {
            let converted = crate::v1::http_hosts(self.src, &raw.allowed_http_hosts)?;
            self.warnings.push(format!(
                "component `{id}` uses the deprecated field `allowed_http_hosts`; replace it with `allowed_outbound_hosts = {converted:?}`"
            ));
            for host in converted {
                if !allowed_outbound_hosts.contains(&host) {
                    allowed_outbound_hosts.push(host);
                }
            }
        }

        Ok(Component {
            id,
            source,
            description: raw.description,
            environment,
            files,
            exclude_files: raw.exclude_files,
            allowed_outbound_hosts,
            key_value_stores: raw.key_value_stores,
            sqlite_databases: raw.sqlite_databases,
            ai_models: raw.ai_models,
            variables: component_variables,
            build,
            dependencies,
            profiles,
            copy_of: None,
            middleware: Vec::new(),
        })
    }

    /// Refuses a profile no component defines (a typo would otherwise run the default
    /// profile unnoticed), naming the ones defined.
    fn check_profile(
        &self,
        profile: &str,
        components: &IndexMap<String, Component>,
    ) -> Result<(), ManifestError> {
        if components
            .values()
            .any(|c| c.profiles.iter().any(|p| p == profile))
        {
            return Ok(());
        }
        let mut defined: Vec<&str> = (components.values())
            .flat_map(|c| c.profiles.iter().map(String::as_str))
            .collect();
        defined.sort_unstable();
        defined.dedup();
        let hint = match defined.is_empty() {
            true => "no component of this app has a [component.<id>.profile.<name>] table; run without --profile".to_owned(),
            false => format!(
                "the app defines {}",
                defined.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
            ),
        };
        Err(self.error(
            0..0,
            format!("profile `{profile}` is not defined in this app"),
            hint,
        ))
    }

    /// A component's `source` (its own, or a profile's).
    fn source(&self, id: &str, raw: Spanned<RawSource>) -> Result<ComponentSource, ManifestError> {
        let source_span = raw.span();
        Ok(match raw.into_inner() {
            RawSource::Local(path) if path.trim().is_empty() => {
                return Err(self.error(
                    source_span,
                    format!("component `{id}` has an empty `source`"),
                    "point `source` at the component's .wasm file, relative to the manifest",
                ));
            }
            RawSource::Local(path) => ComponentSource::Local(PathBuf::from(path)),
            RawSource::Remote(remote) if remote.url.is_some() || remote.digest.is_some() => {
                self.remote_source(id, source_span, remote)?
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
        })
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
}
