//! Manifest version 1 (`spin_manifest_version = "1"`, or the older `spin_version = "1"`):
//! the manifests of Spin 1.x apps, read as Spin 4 reads them, by converting them to
//! version 2 and validating that.
//!
//! The conversion: the top-level `name`, `version`, `description` and `authors` become
//! `[application]`; the app's `trigger = { type = T, ... }` gives the trigger type of
//! every component and, without its `type`, `[application.trigger.T]` (`base`,
//! `address`); each `[[component]]` becomes `[component.<id>]` (its `config` becoming
//! `variables`) and one `[[trigger.T]]` with `id = "trigger-<id>"`, `component = "<id>"` and
//! the component's own `[component.trigger]` table. `allowed_http_hosts` becomes
//! `allowed_outbound_hosts` entries (both `http://` and `https://` for a host, as version 1
//! allowed either; `insecure:allow-all` every HTTP host and the app itself), and a
//! component without `allowed_outbound_hosts` may reach any Redis, MySQL and PostgreSQL
//! server, as version 1 allowed before that field existed.
//!
//! Errors point into the version 1 text: its shape is checked on the text itself, and an
//! error the version 2 rules find in the converted manifest is placed at the version 1
//! table it came from.

use std::ops::Range;

use serde::Deserialize;
use serde::de::IgnoredAny;
use toml::Spanned;

use crate::Manifest;
use crate::error::{ManifestError, Source};

/// What an `allowed_http_hosts` of `insecure:allow-all` allowed.
const ALLOW_ALL: &str = "insecure:allow-all";

/// Outbound grants a version 1 component had without `allowed_outbound_hosts`.
const DATABASE_DEFAULTS: [&str; 3] = ["redis://*:*", "mysql://*:*", "postgres://*:*"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a spin.toml version 1 document")]
struct ManifestV1 {
    /// Checked by the version probe.
    #[serde(alias = "spin_version")]
    #[allow(dead_code)]
    spin_manifest_version: IgnoredAny,
    name: Spanned<String>,
    version: Option<String>,
    description: Option<String>,
    authors: Option<Vec<String>>,
    trigger: Spanned<toml::Table>,
    #[serde(default)]
    variables: Option<Spanned<toml::Table>>,
    #[serde(default, rename = "component")]
    components: Vec<ComponentV1>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[component]] table")]
struct ComponentV1 {
    id: Spanned<String>,
    source: toml::Value,
    trigger: Spanned<toml::Table>,
    description: Option<String>,
    config: Option<toml::Table>,
    environment: Option<toml::Table>,
    files: Option<toml::Value>,
    exclude_files: Option<toml::Value>,
    #[serde(default)]
    allowed_http_hosts: Vec<Spanned<String>>,
    allowed_outbound_hosts: Option<Vec<toml::Value>>,
    key_value_stores: Option<toml::Value>,
    sqlite_databases: Option<toml::Value>,
    ai_models: Option<toml::Value>,
    build: Option<toml::Value>,
}

/// The version 2 text of a version 1 manifest, with where each part of it came from.
pub(crate) struct Converted {
    pub text: String,
    /// `(byte range in text, span in the version 1 text)`, in text order.
    origins: Vec<(Range<usize>, Range<usize>)>,
}

impl Converted {
    /// Where line `line` of the converted text came from in the version 1 text `src`:
    /// the line and column of the table it was made of, `(0, 0)` if it has none.
    fn origin(&self, src: &Source<'_>, line: usize) -> (usize, usize) {
        let converted = Source {
            text: &self.text,
            file: src.file,
        };
        let origin = self.origins.iter().find(|(range, _)| {
            let (first, _) = converted.line_column(range.start);
            let (last, _) = converted.line_column(range.end.saturating_sub(1));
            line > 0 && (first..=last).contains(&line)
        });
        origin.map_or((0, 0), |(_, span)| src.line_column(span.start))
    }

    /// `manifest`, parsed from the converted text, with its trigger lines placed in the
    /// version 1 text `src` (at each component's `[component.trigger]`).
    pub(crate) fn placed(&self, src: &Source<'_>, mut manifest: Manifest) -> Manifest {
        for trigger in &mut manifest.http_triggers {
            trigger.line = self.origin(src, trigger.line).0;
        }
        for trigger in &mut manifest.redis_triggers {
            trigger.line = self.origin(src, trigger.line).0;
        }
        for trigger in &mut manifest.cron_triggers {
            trigger.line = self.origin(src, trigger.line).0;
        }
        manifest
    }

    /// `error`, found in the converted text, placed at the version 1 table it came from.
    pub(crate) fn place(&self, src: &Source<'_>, error: ManifestError) -> ManifestError {
        let (line, column) = self.origin(src, error.line);
        let hint = match error.hint {
            Some(hint) => {
                format!("{hint} (this version 1 manifest is read as version 2, as Spin does)")
            }
            None => "this version 1 manifest is read as version 2, as Spin does".to_owned(),
        };
        ManifestError {
            file: error.file,
            line,
            column,
            message: error.message,
            hint: Some(hint),
        }
    }
}

/// Converts the version 1 manifest `src` to version 2 text.
pub(crate) fn convert(src: &Source<'_>) -> Result<Converted, ManifestError> {
    let v1: ManifestV1 = toml::from_str(src.text).map_err(|e| src.schema_error(&e))?;
    let mut out = Converted {
        text: "spin_manifest_version = 2\n\n".to_owned(),
        origins: Vec::new(),
    };

    let trigger_span = v1.trigger.span();
    let mut app_trigger = v1.trigger.into_inner();
    let trigger_type = match app_trigger.remove("type") {
        Some(toml::Value::String(t)) => t,
        _ => {
            return Err(src.error(
                trigger_span,
                "the app's `trigger` has no `type`",
                "write the trigger type every component uses, e.g. `trigger = { type = \"http\", base = \"/\" }`",
            ));
        }
    };
    // `/`, the default, is what version 1 manifests write; any other base is kept, for
    // version 2's warning that it is ignored.
    if app_trigger.get("base").and_then(toml::Value::as_str) == Some("/") {
        app_trigger.remove("base");
    }
    let mut application = toml::Table::new();
    let name_span = v1.name.span();
    application.insert("name".into(), v1.name.into_inner().into());
    if let Some(version) = v1.version {
        application.insert("version".into(), version.into());
    }
    if let Some(description) = v1.description {
        application.insert("description".into(), description.into());
    }
    if let Some(authors) = v1.authors {
        application.insert("authors".into(), authors.into());
    }
    out.push(src, table("application", application), name_span)?;
    if !app_trigger.is_empty() {
        // `[application.trigger.<type>]`, placed at the version 1 `trigger`.
        let mut of_type = toml::Table::new();
        of_type.insert(trigger_type.clone(), app_trigger.into());
        let document = table("application", table("trigger", of_type));
        out.push(src, document, trigger_span)?;
    }

    if let Some(variables) = v1.variables {
        let span = variables.span();
        let mut document = toml::Table::new();
        document.insert("variables".into(), variables.into_inner().into());
        out.push(src, document, span)?;
    }

    for component in v1.components {
        let id_span = component.id.span();
        let id = component.id.get_ref().clone();
        let trigger_span = component.trigger.span();
        let mut converted = toml::Table::new();
        converted.insert("source".into(), component.source);
        let optional = [
            ("description", component.description.map(toml::Value::from)),
            ("variables", component.config.map(toml::Value::from)),
            ("environment", component.environment.map(toml::Value::from)),
            ("files", component.files),
            ("exclude_files", component.exclude_files),
            ("key_value_stores", component.key_value_stores),
            ("sqlite_databases", component.sqlite_databases),
            ("ai_models", component.ai_models),
            ("build", component.build),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                converted.insert(key.into(), value);
            }
        }
        let mut hosts: Vec<toml::Value> = match component.allowed_outbound_hosts {
            Some(hosts) => hosts,
            None => DATABASE_DEFAULTS.iter().map(|h| (*h).into()).collect(),
        };
        hosts.extend(
            http_hosts(src, &component.allowed_http_hosts)?
                .into_iter()
                .map(toml::Value::from),
        );
        converted.insert("allowed_outbound_hosts".into(), hosts.into());
        let mut components = toml::Table::new();
        components.insert(id.clone(), converted.into());
        out.push(src, table("component", components), id_span)?;

        let mut trigger = toml::Table::new();
        trigger.insert("id".into(), format!("trigger-{id}").into());
        trigger.insert("component".into(), id.into());
        trigger.extend(component.trigger.into_inner());
        let mut of_type = toml::Table::new();
        of_type.insert(
            trigger_type.clone(),
            toml::Value::Array(vec![trigger.into()]),
        );
        out.push(src, table("trigger", of_type), trigger_span)?;
    }
    Ok(out)
}

impl Converted {
    /// Appends `document` as TOML, remembering `origin` as where it came from.
    fn push(
        &mut self,
        src: &Source<'_>,
        document: toml::Table,
        origin: Range<usize>,
    ) -> Result<(), ManifestError> {
        let start = self.text.len();
        let text = toml::to_string(&document).map_err(|e| {
            src.error(
                origin.clone(),
                format!("this table cannot be read as version 2: {e}"),
                "rewrite the manifest as version 2 (`spin_manifest_version = 2`)",
            )
        })?;
        self.text.push_str(&text);
        self.text.push('\n');
        self.origins.push((start..self.text.len(), origin));
        Ok(())
    }
}

/// `{ key = value }` as a document.
fn table(key: &str, value: toml::Table) -> toml::Table {
    let mut document = toml::Table::new();
    document.insert(key.into(), value.into());
    document
}

/// The `allowed_outbound_hosts` entries of a version 1 `allowed_http_hosts` list (also
/// accepted, deprecated, in version 2).
pub(crate) fn http_hosts(
    src: &Source<'_>,
    hosts: &[Spanned<String>],
) -> Result<Vec<String>, ManifestError> {
    if hosts.iter().any(|h| h.get_ref() == ALLOW_ALL) {
        return Ok(vec![
            "http://*:*".to_owned(),
            "https://*:*".to_owned(),
            "http://self".to_owned(),
        ]);
    }
    let mut out = Vec::new();
    for host in hosts {
        let (name, port) = http_host(host.get_ref()).map_err(|why| {
            src.error(
                host.span(),
                format!("invalid `allowed_http_hosts` entry `{}`: {why}", host.get_ref()),
                "write a host name with an optional port (`example.com`, `example.com:8080`), an http(s) URL without a path, or `insecure:allow-all`",
            )
        })?;
        if name == "self" {
            out.push("http://self".to_owned());
            continue;
        }
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        out.push(format!("http://{name}{port}"));
        out.push(format!("https://{name}{port}"));
    }
    Ok(out)
}

/// The host and port of an `allowed_http_hosts` entry: `host[:port]`, or an `http://` or
/// `https://` URL with no path but `/`.
fn http_host(entry: &str) -> Result<(String, Option<u16>), String> {
    let rest = match entry.split_once("://") {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
        {
            rest
        }
        Some((scheme, _)) => return Err(format!("`{scheme}` is not an HTTP scheme")),
        None => entry,
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if !path.is_empty() && path != "/" {
        return Err("it has a path; give the host and port only".to_owned());
    }
    if authority.contains('@') {
        return Err("it has user information; give the host and port only".to_owned());
    }
    let (host, port) = match authority.rsplit_once(':') {
        // An IPv6 literal's colons are inside its brackets.
        Some((host, port)) if !port.contains(']') => {
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("`{port}` is not a port number"))?;
            (host, Some(port))
        }
        _ => (authority, None),
    };
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '[' | ']' | ':'));
    if !valid {
        return Err("it has no valid host name".to_owned());
    }
    Ok((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::http_host;

    #[test]
    fn allowed_http_host_entries_are_hosts_with_optional_ports() {
        let ok = |entry: &str| http_host(entry).unwrap();
        assert_eq!(ok("example.com"), ("example.com".to_owned(), None));
        assert_eq!(
            ok("Example.com:8080"),
            ("example.com".to_owned(), Some(8080))
        );
        assert_eq!(
            ok("https://api.example.com"),
            ("api.example.com".to_owned(), None)
        );
        assert_eq!(
            ok("http://localhost:3000/"),
            ("localhost".to_owned(), Some(3000))
        );
        assert_eq!(ok("[::1]:8080"), ("[::1]".to_owned(), Some(8080)));
        assert_eq!(ok("self"), ("self".to_owned(), None));
        for bad in [
            "https://example.com/path",
            "ftp://example.com",
            "example.com:port",
            "user@example.com",
            "",
            "exa mple.com",
        ] {
            assert!(http_host(bad).is_err(), "{bad} accepted");
        }
    }
}
