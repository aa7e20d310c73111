//! Serde types mirroring the text of a `spin.toml` v2.
//!
//! These types only describe the *shape* of the file: every table denies
//! unknown fields, and values that later checks must point at are kept as
//! [`Spanned`]. The rules that relate fields to each other live in
//! [`crate::validate`].
//!
//! Values that may be written in more than one form (`source` as a string or
//! a table, `command` as a string or an array, ...) get small hand-written
//! visitors instead of `#[serde(untagged)]`: untagged enums buffer the value
//! and lose both the positions and the precise error messages.

use std::fmt;
use std::marker::PhantomData;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

/// The version fields only, read leniently before anything else so that a
/// manifest of another version gets a version error rather than a pile of
/// unknown fields.
#[derive(Deserialize)]
pub(crate) struct VersionProbe {
    pub spin_manifest_version: Option<Spanned<toml::Value>>,
    pub spin_version: Option<Spanned<toml::Value>>,
}

/// The whole file.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a spin.toml document")]
#[schemars(
    rename = "SpinManifest",
    title = "spin.toml",
    description = "A Spin application manifest (spin_manifest_version = 2) as Wisp reads it."
)]
pub(crate) struct RawManifest {
    /// Checked by [`VersionProbe`].
    #[serde(rename = "spin_manifest_version")]
    #[schemars(with = "ManifestVersion")]
    pub _version: IgnoredAny,
    #[schemars(with = "Option<RawApplication>")]
    pub application: Option<Spanned<RawApplication>>,
    #[serde(default)]
    #[schemars(with = "IndexMap<String, RawVariable>")]
    pub variables: IndexMap<Spanned<String>, Spanned<RawVariable>>,
    #[serde(default)]
    pub trigger: RawTriggers,
    #[serde(default)]
    #[schemars(with = "IndexMap<String, RawComponent>")]
    pub component: IndexMap<Spanned<String>, RawComponent>,
}

/// `[application]`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "the [application] table")]
#[schemars(rename = "Application")]
pub(crate) struct RawApplication {
    #[schemars(with = "Option<String>")]
    pub name: Option<Spanned<String>>,
    pub version: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub authors: Vec<String>,
    #[serde(default)]
    pub trigger: RawAppTriggers,
    /// Spin's deployment environments the components must suit (`["spin-up:3.3"]`), which
    /// `spin build` checks; accepted and ignored, as `spin up` ignores them.
    #[serde(default, rename = "targets")]
    #[schemars(with = "Vec<serde_json::Value>")]
    pub _targets: Vec<toml::Value>,
    /// Tool-specific metadata; accepted and ignored.
    #[serde(default, rename = "tool")]
    #[schemars(with = "IndexMap<String, serde_json::Map<String, serde_json::Value>>")]
    pub _tool: IndexMap<String, toml::Table>,
}

/// `[application.trigger.<type>]` tables.
#[derive(Default)]
pub(crate) struct RawAppTriggers {
    pub http: Option<RawAppHttpConfig>,
    pub redis: Option<RawAppRedisConfig>,
    /// Keys of trigger types without app-level settings, in file order.
    pub unsupported: Vec<Spanned<String>>,
}

/// `[application.trigger.http]`.
#[derive(Deserialize, JsonSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "the [application.trigger.http] table"
)]
#[schemars(rename = "AppHttpConfig")]
pub(crate) struct RawAppHttpConfig {
    #[schemars(with = "Option<String>")]
    pub base: Option<Spanned<String>>,
}

/// `[application.trigger.redis]`.
#[derive(Deserialize, JsonSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "the [application.trigger.redis] table"
)]
#[schemars(rename = "AppRedisConfig")]
pub(crate) struct RawAppRedisConfig {
    #[schemars(with = "Option<String>")]
    pub address: Option<Spanned<String>>,
}

/// `[variables]` entries.
#[derive(Deserialize, JsonSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "a variable table such as `{ default = \"...\" }` or `{ required = true }`"
)]
#[schemars(rename = "Variable")]
pub(crate) struct RawVariable {
    #[schemars(with = "Option<String>")]
    pub default: Option<Spanned<String>>,
    #[schemars(with = "Option<bool>")]
    pub required: Option<Spanned<bool>>,
    #[serde(default)]
    pub secret: bool,
}

/// The `[[trigger.<type>]]` arrays.
#[derive(Default)]
pub(crate) struct RawTriggers {
    pub http: Vec<Spanned<RawHttpTrigger>>,
    pub redis: Vec<Spanned<RawRedisTrigger>>,
    pub cron: Vec<Spanned<RawCronTrigger>>,
    /// Keys of trigger types other than `http`, `redis` and `cron`, in file order.
    pub unsupported: Vec<Spanned<String>>,
}

/// One `[[trigger.http]]` table.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a [[trigger.http]] table")]
#[schemars(rename = "HttpTrigger")]
pub(crate) struct RawHttpTrigger {
    #[schemars(with = "Option<String>")]
    pub id: Option<Spanned<String>>,
    #[schemars(with = "RawRoute")]
    pub route: Spanned<RawRoute>,
    #[schemars(with = "Option<RawComponentRef>")]
    pub component: Option<Spanned<RawComponentRef>>,
    pub executor: Option<RawExecutor>,
    #[schemars(with = "Option<RawStaticResponse>")]
    pub static_response: Option<Spanned<RawStaticResponse>>,
    /// Wisp extension: the largest request body this route accepts, in bytes (larger
    /// requests get 413); default the server's `--max-request-body-mb`.
    #[schemars(with = "Option<u64>")]
    pub max_request_body_size: Option<Spanned<u64>>,
    /// `dependencies.middleware = [{ component = "id" }, ...]`: HTTP middleware composed in
    /// front of the component, outermost first (Spin's trigger dependencies).
    #[serde(default)]
    #[schemars(with = "std::collections::BTreeMap<String, Vec<RawDependencyTable>>")]
    pub dependencies: IndexMap<Spanned<String>, Spanned<Vec<Spanned<RawDependencyTable>>>>,
}

/// One `[[trigger.redis]]` table.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a [[trigger.redis]] table")]
#[schemars(rename = "RedisTrigger")]
pub(crate) struct RawRedisTrigger {
    #[schemars(with = "Option<String>")]
    pub id: Option<Spanned<String>>,
    #[schemars(with = "Option<RawComponentRef>")]
    pub component: Option<Spanned<RawComponentRef>>,
    #[schemars(with = "Option<String>")]
    pub channel: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub address: Option<Spanned<String>>,
    pub executor: Option<RawExecutor>,
}

/// One `[[trigger.cron]]` table.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a [[trigger.cron]] table")]
#[schemars(rename = "CronTrigger")]
pub(crate) struct RawCronTrigger {
    #[schemars(with = "Option<String>")]
    pub id: Option<Spanned<String>>,
    #[schemars(with = "Option<RawComponentRef>")]
    pub component: Option<Spanned<RawComponentRef>>,
    #[schemars(with = "Option<String>")]
    pub cron_expression: Option<Spanned<String>>,
    /// Wisp extension: start a run even while the previous one is still running.
    pub allow_overlap: Option<bool>,
}

/// `route = "/path"` or `route = { private = true }`.
pub(crate) enum RawRoute {
    Path(String),
    Private(RawPrivateRoute),
}

/// `{ private = true }`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "`{ private = true }`")]
#[schemars(rename = "PrivateRoute")]
pub(crate) struct RawPrivateRoute {
    pub private: bool,
}

/// `component = "id"` or `component = { source = ..., ... }`.
pub(crate) enum RawComponentRef {
    Id(String),
    Inline(Box<RawComponent>),
}

/// `executor = { type = "..." }`.
#[derive(Deserialize, JsonSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "an executor table such as `{ type = \"spin\" }`"
)]
#[schemars(rename = "Executor")]
pub(crate) struct RawExecutor {
    #[serde(rename = "type")]
    #[schemars(with = "String")]
    pub kind: Spanned<String>,
    /// Wagi only: the command line, with `${SCRIPT_NAME}` and `${ARGS}` substituted per
    /// request; default `"${SCRIPT_NAME} ${ARGS}"`.
    #[schemars(with = "Option<String>")]
    pub argv: Option<Spanned<String>>,
    /// Wagi only, deprecated: must be `_start` if given.
    #[schemars(with = "Option<String>")]
    pub entrypoint: Option<Spanned<String>>,
}

/// `static_response = { ... }`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a static response table")]
#[schemars(rename = "StaticResponse")]
pub(crate) struct RawStaticResponse {
    #[schemars(with = "Option<u16>")]
    pub status_code: Option<Spanned<u16>>,
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    pub body: Option<String>,
}

/// `[component.<id>]` or an inline component.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a component table")]
#[schemars(rename = "Component")]
pub(crate) struct RawComponent {
    #[schemars(with = "RawSource")]
    pub source: Spanned<RawSource>,
    pub description: Option<String>,
    #[serde(default)]
    pub environment: IndexMap<String, String>,
    #[serde(default)]
    pub files: Vec<RawFileMount>,
    #[serde(default)]
    pub exclude_files: Vec<String>,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    #[serde(default)]
    pub sqlite_databases: Vec<String>,
    #[serde(default)]
    pub ai_models: Vec<String>,
    #[serde(default)]
    #[schemars(with = "IndexMap<String, String>")]
    pub variables: IndexMap<Spanned<String>, Spanned<String>>,
    pub build: Option<RawBuild>,
    #[serde(default)]
    #[schemars(with = "IndexMap<String, RawDependency>")]
    pub dependencies: IndexMap<Spanned<String>, Spanned<RawDependency>>,
    #[schemars(with = "Option<bool>")]
    pub dependencies_inherit_configuration: Option<Spanned<bool>>,
    /// Deprecated in version 2, converted as Spin converts it: HTTP hosts as version 1
    /// wrote them (`example.com`, `insecure:allow-all`).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub allowed_http_hosts: Vec<Spanned<String>>,
    /// The component's own deployment environments; accepted and ignored (see
    /// [`RawApplication::_targets`]).
    #[serde(default, rename = "targets")]
    #[schemars(with = "Option<Vec<serde_json::Value>>")]
    pub _targets: Option<Vec<toml::Value>>,
    /// Named profiles (`[component.<id>.profile.<name>]`): `source`, `environment`,
    /// `dependencies` and `build.command` that `--profile <name>` puts in place.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, RawProfile>")]
    pub profile: IndexMap<Spanned<String>, RawProfile>,
    /// Tool-specific metadata; accepted and ignored.
    #[serde(default, rename = "tool")]
    #[schemars(with = "IndexMap<String, serde_json::Map<String, serde_json::Value>>")]
    pub _tool: IndexMap<String, toml::Table>,
}

/// `[component.<id>.profile.<name>]`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a component profile table")]
#[schemars(rename = "ComponentProfile")]
pub(crate) struct RawProfile {
    #[schemars(with = "Option<RawSource>")]
    pub source: Option<Spanned<RawSource>>,
    #[serde(default)]
    pub environment: IndexMap<String, String>,
    #[serde(default)]
    #[schemars(with = "IndexMap<String, RawDependency>")]
    pub dependencies: IndexMap<Spanned<String>, Spanned<RawDependency>>,
    pub build: Option<RawProfileBuild>,
}

/// `build = { command = ... }` of a profile.
#[derive(Deserialize, JsonSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "a profile build table such as `{ command = \"make\" }`"
)]
#[schemars(rename = "ComponentProfileBuild")]
pub(crate) struct RawProfileBuild {
    pub command: RawCommands,
}

/// `source = "path.wasm"` or a remote source table.
pub(crate) enum RawSource {
    Local(String),
    Remote(RawRemoteSource),
}

/// `source = { url = ..., digest = ... }` or
/// `source = { registry = ..., package = ..., version = ... }`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a source table")]
#[schemars(rename = "RemoteSource")]
pub(crate) struct RawRemoteSource {
    pub url: Option<String>,
    pub digest: Option<String>,
    pub registry: Option<String>,
    pub package: Option<String>,
    pub version: Option<String>,
}

/// A value of `[component.<id>.dependencies]`: a registry version requirement or a table.
pub(crate) enum RawDependency {
    Version(String),
    Table(Box<RawDependencyTable>),
}

/// `{ path = ... }`, `{ url = ..., digest = ... }`, `{ component = ... }` or
/// `{ version = ..., registry = ..., package = ... }`, each with optional `export` and
/// `inherit_configuration`.
#[derive(Deserialize, JsonSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "a dependency table such as `{ path = \"dep.wasm\" }`"
)]
#[schemars(rename = "Dependency")]
pub(crate) struct RawDependencyTable {
    pub path: Option<String>,
    pub url: Option<String>,
    pub digest: Option<String>,
    pub component: Option<String>,
    pub version: Option<String>,
    pub registry: Option<String>,
    pub package: Option<String>,
    pub export: Option<String>,
    #[schemars(with = "Option<serde_json::Value>")]
    pub inherit_configuration: Option<Spanned<RawInherit>>,
}

/// `inherit_configuration = true | false | ["capability-set", ...]`.
pub(crate) enum RawInherit {
    All(bool),
    Some(Vec<String>),
}

/// An entry of `files`.
pub(crate) enum RawFileMount {
    Pattern(String),
    Placement(RawPlacement),
}

/// `{ source = "dir", destination = "/dir" }`.
#[derive(Deserialize, JsonSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "a table such as `{ source = \"assets\", destination = \"/assets\" }`"
)]
#[schemars(rename = "Placement")]
pub(crate) struct RawPlacement {
    pub source: String,
    #[schemars(with = "String")]
    pub destination: Spanned<String>,
}

/// `[component.<id>.build]`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a build table")]
#[schemars(rename = "Build")]
pub(crate) struct RawBuild {
    pub command: RawCommands,
    pub workdir: Option<String>,
    #[serde(default)]
    pub watch: Vec<String>,
}

/// `command = "..."` or `command = ["...", ...]`.
pub(crate) struct RawCommands(pub Vec<String>);

// ---------------------------------------------------------------------------
// Hand-written Deserialize impls.

/// A value written either as a string or as a table.
struct StrOrTable<M, T> {
    expecting: &'static str,
    from_str: fn(String) -> T,
    from_table: fn(M) -> T,
    _table: PhantomData<M>,
}

impl<M, T> StrOrTable<M, T> {
    fn deserialize<'de, D>(
        deserializer: D,
        expecting: &'static str,
        from_str: fn(String) -> T,
        from_table: fn(M) -> T,
    ) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        M: Deserialize<'de>,
    {
        deserializer.deserialize_any(StrOrTable {
            expecting,
            from_str,
            from_table,
            _table: PhantomData,
        })
    }
}

impl<'de, M: Deserialize<'de>, T> Visitor<'de> for StrOrTable<M, T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        Ok((self.from_str)(v.to_owned()))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        M::deserialize(MapAccessDeserializer::new(map)).map(self.from_table)
    }
}

impl<'de> Deserialize<'de> for RawRoute {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        StrOrTable::deserialize(
            d,
            "a route path such as \"/hello\" or `{ private = true }`",
            RawRoute::Path,
            RawRoute::Private,
        )
    }
}

impl<'de> Deserialize<'de> for RawComponentRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        StrOrTable::deserialize(
            d,
            "a component id or an inline component table",
            RawComponentRef::Id,
            |c: RawComponent| RawComponentRef::Inline(Box::new(c)),
        )
    }
}

impl<'de> Deserialize<'de> for RawSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        StrOrTable::deserialize(
            d,
            "the path of a .wasm file",
            RawSource::Local,
            RawSource::Remote,
        )
    }
}

impl<'de> Deserialize<'de> for RawDependency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        StrOrTable::deserialize(
            d,
            "a version requirement or a table such as `{ path = \"dep.wasm\" }`",
            RawDependency::Version,
            |table| RawDependency::Table(Box::new(table)),
        )
    }
}

impl<'de> Deserialize<'de> for RawInherit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct InheritVisitor;

        impl<'de> Visitor<'de> for InheritVisitor {
            type Value = RawInherit;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`true`, `false` or a list of capability-set names")
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawInherit, E> {
                Ok(RawInherit::All(v))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawInherit, A::Error> {
                Vec::deserialize(SeqAccessDeserializer::new(seq)).map(RawInherit::Some)
            }
        }

        d.deserialize_any(InheritVisitor)
    }
}

impl<'de> Deserialize<'de> for RawFileMount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        StrOrTable::deserialize(
            d,
            "a glob pattern or a `{ source = ..., destination = ... }` table",
            RawFileMount::Pattern,
            RawFileMount::Placement,
        )
    }
}

impl<'de> Deserialize<'de> for RawCommands {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CommandsVisitor;

        impl<'de> Visitor<'de> for CommandsVisitor {
            type Value = RawCommands;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a command string or an array of command strings")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawCommands, E> {
                Ok(RawCommands(vec![v.to_owned()]))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawCommands, A::Error> {
                Vec::deserialize(SeqAccessDeserializer::new(seq)).map(RawCommands)
            }
        }

        d.deserialize_any(CommandsVisitor)
    }
}

impl<'de> Deserialize<'de> for RawTriggers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TriggersVisitor;

        impl<'de> Visitor<'de> for TriggersVisitor {
            type Value = RawTriggers;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[[trigger.http]], [[trigger.redis]] or [[trigger.cron]] tables")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawTriggers, A::Error> {
                let mut triggers = RawTriggers::default();
                while let Some(kind) = map.next_key::<Spanned<String>>()? {
                    if kind.get_ref() == "http" {
                        triggers.http = map.next_value::<HttpTriggerList>()?.0;
                    } else if kind.get_ref() == "redis" {
                        triggers.redis = map.next_value()?;
                    } else if kind.get_ref() == "cron" {
                        triggers.cron = map.next_value()?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                        triggers.unsupported.push(kind);
                    }
                }
                Ok(triggers)
            }
        }

        d.deserialize_map(TriggersVisitor)
    }
}

/// The value of `trigger.http`: an array of tables.
struct HttpTriggerList(Vec<Spanned<RawHttpTrigger>>);

impl<'de> Deserialize<'de> for HttpTriggerList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ListVisitor;

        impl<'de> Visitor<'de> for ListVisitor {
            type Value = HttpTriggerList;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of [[trigger.http]] tables (note the double brackets)")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<HttpTriggerList, A::Error> {
                Vec::deserialize(SeqAccessDeserializer::new(seq)).map(HttpTriggerList)
            }
        }

        d.deserialize_seq(ListVisitor)
    }
}

impl<'de> Deserialize<'de> for RawAppTriggers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct AppTriggersVisitor;

        impl<'de> Visitor<'de> for AppTriggersVisitor {
            type Value = RawAppTriggers;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[application.trigger.http] or [application.trigger.redis] settings")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawAppTriggers, A::Error> {
                let mut triggers = RawAppTriggers::default();
                while let Some(kind) = map.next_key::<Spanned<String>>()? {
                    if kind.get_ref() == "http" {
                        triggers.http = Some(map.next_value()?);
                    } else if kind.get_ref() == "redis" {
                        triggers.redis = Some(map.next_value()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                        triggers.unsupported.push(kind);
                    }
                }
                Ok(triggers)
            }
        }

        d.deserialize_map(AppTriggersVisitor)
    }
}

// JSON schema (`wisp schema`) for the types above that deserialize by hand: each says
// in schema terms what its visitor accepts.

/// `spin_manifest_version = 2`.
pub(crate) struct ManifestVersion;

impl JsonSchema for ManifestVersion {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ManifestVersion".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "The manifest format version; Wisp reads version 2.",
            "const": 2
        })
    }
}

/// A string, or a table of type `T`.
fn string_or(
    generator: &mut schemars::SchemaGenerator,
    string: &str,
    table: schemars::Schema,
) -> schemars::Schema {
    let _ = generator;
    schemars::json_schema!({
        "anyOf": [
            { "type": "string", "description": string },
            table
        ]
    })
}

impl JsonSchema for RawRoute {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Route".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let table = generator.subschema_for::<RawPrivateRoute>();
        string_or(
            generator,
            "a route: `/exact`, `/users/:id` or `/prefix/...`",
            table,
        )
    }
}

impl JsonSchema for RawComponentRef {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ComponentRef".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let table = generator.subschema_for::<RawComponent>();
        string_or(generator, "the id of a [component.<id>] table", table)
    }
}

impl JsonSchema for RawSource {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Source".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let table = generator.subschema_for::<RawRemoteSource>();
        string_or(
            generator,
            "the path of a .wasm file, relative to the manifest",
            table,
        )
    }
}

impl JsonSchema for RawDependency {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DependencySource".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let table = generator.subschema_for::<RawDependencyTable>();
        string_or(
            generator,
            "a registry version requirement such as \"1.2.3\"",
            table,
        )
    }
}

impl JsonSchema for RawFileMount {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FileMount".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let table = generator.subschema_for::<RawPlacement>();
        string_or(
            generator,
            "a glob pattern relative to the manifest directory",
            table,
        )
    }
}

impl JsonSchema for RawCommands {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Commands".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "anyOf": [
                { "type": "string" },
                { "type": "array", "items": { "type": "string" } }
            ]
        })
    }
}

impl JsonSchema for RawTriggers {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Triggers".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let http = generator.subschema_for::<Vec<RawHttpTrigger>>();
        let redis = generator.subschema_for::<Vec<RawRedisTrigger>>();
        let cron = generator.subschema_for::<Vec<RawCronTrigger>>();
        schemars::json_schema!({
            "type": "object",
            "description": "The [[trigger.<type>]] tables: http, redis and cron.",
            "properties": { "http": http, "redis": redis, "cron": cron },
            "additionalProperties": false
        })
    }
}

impl JsonSchema for RawAppTriggers {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AppTriggers".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let http = generator.subschema_for::<RawAppHttpConfig>();
        let redis = generator.subschema_for::<RawAppRedisConfig>();
        schemars::json_schema!({
            "type": "object",
            "description": "App-level trigger settings: [application.trigger.http] and [application.trigger.redis].",
            "properties": { "http": http, "redis": redis },
            "additionalProperties": false
        })
    }
}

/// The JSON schema of `spin.toml` (manifest version 2, as Wisp reads it), pretty-printed.
pub(crate) fn schema_json() -> String {
    let schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<RawManifest>();
    serde_json::to_string_pretty(&schema).expect("a schema serializes") + "\n"
}
