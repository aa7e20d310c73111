//! The validated manifest: what the rest of Wisp reads from a `spin.toml`.

use std::path::PathBuf;

use indexmap::IndexMap;

/// A parsed and validated `spin.toml` (manifest version 2).
///
/// Every component reference is resolved: each [`HttpTrigger::component`]
/// names an entry of [`Manifest::components`], and every template in a
/// component's `variables` names an entry of [`Manifest::variables`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The `[application]` table.
    pub application: Application,
    /// The `[variables]` table, in file order.
    pub variables: IndexMap<String, Variable>,
    /// The `[[trigger.http]]` tables, in file order.
    pub http_triggers: Vec<HttpTrigger>,
    /// The `[[trigger.redis]]` tables, in file order.
    pub redis_triggers: Vec<RedisTrigger>,
    /// The `[[trigger.cron]]` tables, in file order.
    pub cron_triggers: Vec<CronTrigger>,
    /// The `[component.<id>]` tables in file order, followed by the inline
    /// components of triggers (in trigger order) under their generated ids.
    pub components: IndexMap<String, Component>,
    /// Non-fatal remarks about the manifest (deprecated fields and the like),
    /// as lowercase phrases ready to show to the user.
    pub warnings: Vec<String>,
}

impl Manifest {
    /// Every trigger's type and the component it calls (static responses call none), in
    /// file order per type.
    pub fn trigger_components(&self) -> Vec<(&'static str, &str)> {
        let http = self
            .http_triggers
            .iter()
            .filter_map(|t| t.component.as_deref())
            .map(|c| ("http", c));
        let redis = self
            .redis_triggers
            .iter()
            .map(|t| ("redis", t.component.as_str()));
        let cron = self
            .cron_triggers
            .iter()
            .map(|t| ("cron", t.component.as_str()));
        http.chain(redis).chain(cron).collect()
    }
}

/// The `[application]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    /// `name = "..."` (required, non-empty).
    pub name: String,
    /// `version = "..."`.
    pub version: Option<String>,
    /// `description = "..."`.
    pub description: Option<String>,
    /// `authors = [...]`.
    pub authors: Vec<String>,
}

/// An application variable, declared under `[variables]`.
///
/// Exactly one of `default` and `required` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// The value used when no provider supplies one.
    pub default: Option<String>,
    /// Whether a provider must supply a value (there is no default).
    pub required: bool,
    /// Whether the value must be kept out of logs and error messages.
    pub secret: bool,
}

/// One `[[trigger.http]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTrigger {
    /// `id = "..."`, if given.
    pub id: Option<String>,
    /// Where the trigger is mounted.
    pub route: HttpRoute,
    /// The id of the component that handles requests; for an inline component
    /// this is its generated id. `None` exactly when `static_response` is set.
    pub component: Option<String>,
    /// A fixed response served without running any component.
    pub static_response: Option<StaticResponse>,
    /// How the component is called.
    pub executor: HttpExecutor,
    /// Largest request body this route accepts, in bytes (Wisp extension
    /// `max_request_body_size`); `None`: the server's default.
    pub max_request_body_size: Option<u64>,
    /// 1-based line of this trigger's `route` value, for later messages.
    pub line: usize,
}

/// One `[[trigger.redis]]` table: messages on `channel` run `component`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTrigger {
    /// `id = "..."`, if given.
    pub id: Option<String>,
    /// The id of the component that handles messages.
    pub component: String,
    /// The channel to subscribe to.
    pub channel: String,
    /// The server: the trigger's `address`, else `[application.trigger.redis] address`.
    /// May contain `{{ variable }}` references to application variables.
    pub address: String,
    /// 1-based line of this trigger's `channel` value.
    pub line: usize,
}

/// One `[[trigger.cron]]` table: `component` runs on the `cron_expression` schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronTrigger {
    /// `id = "..."`, if given.
    pub id: Option<String>,
    /// The id of the component that handles the events.
    pub component: String,
    /// Six or seven fields: seconds, minutes, hours, day of month, month, day of
    /// week and optionally year (checked to parse).
    pub cron_expression: String,
    /// Whether a run may start while the previous run of this trigger is still going
    /// (Wisp extension `allow_overlap = true`; default false: the tick is skipped).
    pub allow_overlap: bool,
    /// 1-based line of this trigger's `cron_expression` value.
    pub line: usize,
}

/// How an HTTP trigger calls its component (`executor = { type = "..." }`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HttpExecutor {
    /// The component exports a `wasi:http` handler (Spin's default, `type = "spin"`).
    #[default]
    Http,
    /// `type = "wagi"`: the component is a WASI command run once per request, CGI
    /// style: the request in environment variables and on stdin, the response (CGI
    /// headers, an empty line, the body) on stdout.
    Wagi {
        /// The command line, split on spaces after `${SCRIPT_NAME}` (the request path)
        /// and `${ARGS}` (the query string with `&` as spaces) are substituted.
        argv: String,
    },
}

/// The default command line of a wagi component.
pub const WAGI_DEFAULT_ARGV: &str = "${SCRIPT_NAME} ${ARGS}";

/// The `route` of an HTTP trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpRoute {
    /// A path pattern such as `/hello`, `/users/:id` or `/static/...`,
    /// as written.
    Path(String),
    /// `route = { private = true }`: reachable only through service chaining.
    Private,
}

/// `static_response = { ... }` of an HTTP trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticResponse {
    /// The status code (100–599); 200 when not given.
    pub status_code: u16,
    /// Response headers, in file order.
    pub headers: IndexMap<String, String>,
    /// The response body, if any.
    pub body: Option<String>,
}

/// A component: a `[component.<id>]` table or an inline component of a
/// trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// The component id (kebab-case); generated for inline components.
    pub id: String,
    /// Where the component's `.wasm` comes from.
    pub source: ComponentSource,
    /// `description = "..."`.
    pub description: Option<String>,
    /// Environment variables of the guest, in file order.
    pub environment: IndexMap<String, String>,
    /// Files made available to the guest.
    pub files: Vec<FileMount>,
    /// Glob patterns of files to leave out of `files`.
    pub exclude_files: Vec<String>,
    /// Hosts the component may connect to (`https://example.com`, ...).
    pub allowed_outbound_hosts: Vec<String>,
    /// Labels of the key-value stores the component may open.
    pub key_value_stores: Vec<String>,
    /// Labels of the SQLite databases the component may open.
    pub sqlite_databases: Vec<String>,
    /// Names of the AI models the component may use.
    pub ai_models: Vec<String>,
    /// Component variables and their templates (`"{{ app_var }} world"`),
    /// in file order.
    pub variables: IndexMap<String, String>,
    /// The `build` table, used by `wisp build`.
    pub build: Option<ComponentBuild>,
    /// `[component.<id>.dependencies]`: components composed into this one at load time,
    /// keyed by the normalised dependency name, in file order.
    pub dependencies: IndexMap<String, Dependency>,
    /// The names of its profiles (`[component.<id>.profile.<name>]`). The one the manifest
    /// was parsed with ([`crate::parse_file_with_profile`]) is in place in the fields above.
    pub profiles: Vec<String>,
    /// For a component copied for one trigger's middleware (`<id>-for-<trigger id>`): the
    /// component it is a copy of, which builds and is watched in its place.
    pub copy_of: Option<String>,
    /// HTTP middleware composed in front of this component, outermost first: the
    /// `dependencies.middleware` of the one trigger that calls it (a component several
    /// triggers call with different middleware is copied per trigger, as Spin does).
    pub middleware: Vec<Dependency>,
}

/// What a named profile changes in its component: the source, environment variables
/// (added to or replacing the component's), dependencies (likewise, by name) and the build
/// commands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ComponentProfile {
    /// The source to use instead of the component's.
    pub(crate) source: Option<ComponentSource>,
    /// Environment variables set over the component's.
    pub(crate) environment: IndexMap<String, String>,
    /// Dependencies set over the component's, by name.
    pub(crate) dependencies: IndexMap<String, Dependency>,
    /// The build commands to run instead of the component's (a component without a build
    /// gets one, run in the manifest's directory).
    pub(crate) build_commands: Option<Vec<String>>,
}

impl ComponentProfile {
    /// Puts this profile's overrides on a component's fields, as Spin does: the source,
    /// environment variables and dependencies (by name) over the component's, and the
    /// build commands (a component without a build gets one, run in the manifest's
    /// directory).
    pub(crate) fn apply(
        &self,
        source: &mut ComponentSource,
        environment: &mut IndexMap<String, String>,
        dependencies: &mut IndexMap<String, Dependency>,
        build: &mut Option<ComponentBuild>,
    ) {
        if let Some(profile_source) = &self.source {
            *source = profile_source.clone();
        }
        environment.extend(self.environment.clone());
        dependencies.extend(self.dependencies.clone());
        if let Some(commands) = &self.build_commands {
            match build {
                Some(build) => build.commands = commands.clone(),
                None => {
                    *build = Some(ComponentBuild {
                        commands: commands.clone(),
                        workdir: None,
                        watch: Vec::new(),
                    })
                }
            }
        }
    }
}

/// One entry of `[component.<id>.dependencies]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// Where the dependency's `.wasm` comes from (`{ component = "id" }` is already replaced
    /// by that component's source).
    pub source: ComponentSource,
    /// The dependency's export that satisfies the matched imports, when its name differs
    /// from the import's.
    pub export: Option<String>,
    /// Which of the main component's grants the dependency shares.
    pub inherit: InheritConfiguration,
}

/// The grants a dependency shares with the component that depends on it: `All` for
/// `dependencies_inherit_configuration = true` or `inherit_configuration = true`, otherwise
/// the named capability sets ([`CAPABILITY_SETS`]); none by default. In a locked app it is
/// written as Spin writes it: `"All"` or `{"Some": ["environment", …]}`, left out for none.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum InheritConfiguration {
    /// Every grant.
    All,
    /// Only these capability sets (empty: none).
    Some(Vec<String>),
}

impl Default for InheritConfiguration {
    fn default() -> Self {
        Self::Some(Vec::new())
    }
}

impl InheritConfiguration {
    /// Whether nothing is inherited.
    pub fn is_none(&self) -> bool {
        matches!(self, Self::Some(sets) if sets.is_empty())
    }

    /// Whether the capability set `set` is inherited.
    pub fn includes(&self, set: &str) -> bool {
        match self {
            Self::All => true,
            Self::Some(sets) => sets.iter().any(|s| s == set),
        }
    }
}

/// The capability-set names `inherit_configuration` may list (Spin 4's names).
pub const CAPABILITY_SETS: &[&str] = &[
    "ai_models",
    "allowed_outbound_hosts",
    "environment",
    "files",
    "key_value_stores",
    "sqlite_databases",
    "variables",
];

/// A component's `source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentSource {
    /// A `.wasm` file, as written (relative to the manifest directory unless absolute).
    Local(PathBuf),
    /// `{ url = "http(s)://…", digest = "sha256:<hex>" }`: downloaded once into the content
    /// cache and used only if its bytes have that digest.
    Remote {
        /// Where to download it (`http` or `https`).
        url: String,
        /// `sha256:` and 64 lower-case hex digits.
        digest: String,
    },
    /// A package from a registry (`{ registry, package, version }`, or a dependency's
    /// `"ns:pkg" = "^1.0"`): the newest version the requirement accepts, downloaded once
    /// into the content cache.
    Registry {
        /// The registry written in the manifest; otherwise the `wasm-pkg` configuration's.
        registry: Option<String>,
        /// `namespace:name`.
        package: String,
        /// A semantic-version requirement (`=1.2.3` for a component's own source).
        version: String,
    },
}

impl ComponentSource {
    /// The local file, for a local source.
    pub fn local(&self) -> Option<&std::path::Path> {
        match self {
            ComponentSource::Local(path) => Some(path),
            ComponentSource::Remote { .. } | ComponentSource::Registry { .. } => None,
        }
    }
}

/// One entry of a component's `files`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileMount {
    /// A glob pattern relative to the manifest directory; matching files are
    /// mounted at the same relative path under `/`.
    Pattern(String),
    /// A file or directory mounted at an absolute guest path.
    Placement {
        /// The file or directory, relative to the manifest directory.
        source: PathBuf,
        /// The absolute guest path (starts with `/`).
        destination: String,
    },
}

/// The `[component.<id>.build]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentBuild {
    /// The build commands, run in order (`command` as a string or an array).
    pub commands: Vec<String>,
    /// The directory to run the commands in, relative to the manifest
    /// directory.
    pub workdir: Option<String>,
    /// Glob patterns of files whose changes trigger a rebuild.
    pub watch: Vec<String>,
}
