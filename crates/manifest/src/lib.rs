//! Parsing and validation of Spin's application manifest, `spin.toml`
//! (`spin_manifest_version = 2`; Spin 1.x's version 1 is converted to version 2 first, as
//! Spin does).
//!
//! This crate is the first step of Wisp's data path:
//!
//! ```text
//! spin.toml ──parse/validate (this crate)──▶ Manifest ──resolve (wisp-app)──▶ LockedApp ──▶ runtime
//! ```
//!
//! [`parse_file`] and [`parse_str`] turn the text into a [`Manifest`]. Nothing
//! here touches the file system beyond reading the manifest itself: sources
//! and file mounts are kept as written, relative to the manifest directory,
//! and are resolved (made absolute, hashed) by `wisp-app`.
//!
//! The parser is strict. Unknown fields are errors, ids and variable names
//! are checked, every trigger must reach a defined component or carry a
//! static response, routes must not collide, and component variable
//! templates may only name declared application variables. Features Wisp
//! does not run yet (other trigger types) are rejected with a message saying
//! so,
//! rather than silently ignored. Every [`ManifestError`] names the file,
//! line and column of the offending key or value and carries a hint on how
//! to fix it:
//!
//! ```text
//! spin.toml:12:13: component `helo` is not defined
//!   hint: defined components: `hello`; fix the name or add a [component.helo] table
//! ```
//!
//! Non-fatal remarks (such as the deprecated `application.trigger.http.base`)
//! are collected in [`Manifest::warnings`].
//!
//! # Example
//!
//! ```
//! use std::path::Path;
//!
//! let manifest = wisp_manifest::parse_str(
//!     r#"
//!     spin_manifest_version = 2
//!
//!     [application]
//!     name = "hello"
//!
//!     [[trigger.http]]
//!     route = "/hello"
//!     component = "hello"
//!
//!     [component.hello]
//!     source = "hello.wasm"
//!     "#,
//!     Path::new("spin.toml"),
//! )
//! .unwrap();
//! assert_eq!(manifest.application.name, "hello");
//! assert_eq!(manifest.http_triggers[0].component.as_deref(), Some("hello"));
//! ```

mod dependencies;
mod error;
mod model;
mod raw;
mod rules;
mod v1;
mod validate;

use std::path::Path;

pub use dependencies::DependencyName;
pub use error::ManifestError;
pub use model::{
    Application, CAPABILITY_SETS, Component, ComponentBuild, ComponentSource, CronTrigger,
    Dependency, FileMount, HttpExecutor, HttpRoute, HttpTrigger, InheritConfiguration, Manifest,
    RedisTrigger, StaticResponse, Variable, WAGI_DEFAULT_ARGV,
};
pub use rules::{is_kebab_id, is_variable_name, trigger_id};

/// The JSON schema of `spin.toml` (manifest version 2) as Wisp reads it, derived from the
/// same types the parser uses, pretty-printed (what `wisp schema` prints).
pub fn json_schema() -> String {
    raw::schema_json()
}

/// Reads, parses and validates the manifest at `path`.
///
/// An unreadable file gives an error with line and column 0 whose message
/// starts with `cannot read manifest`.
pub fn parse_file(path: &Path) -> Result<Manifest, ManifestError> {
    parse_file_with_profile(path, None)
}

/// [`parse_file`] with the components' profile `profile` in place (`--profile`): each
/// component that defines it takes its source, environment, dependencies and build
/// commands. A profile no component defines is an error.
pub fn parse_file_with_profile(
    path: &Path,
    profile: Option<&str>,
) -> Result<Manifest, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|e| ManifestError::unreadable(path, &e))?;
    validate::parse(&text, path, profile)
}

/// Parses and validates manifest text. `file` is only used in error
/// messages.
pub fn parse_str(text: &str, file: &Path) -> Result<Manifest, ManifestError> {
    validate::parse(text, file, None)
}

/// [`parse_str`] with a profile in place (see [`parse_file_with_profile`]).
pub fn parse_str_with_profile(
    text: &str,
    file: &Path,
    profile: Option<&str>,
) -> Result<Manifest, ManifestError> {
    validate::parse(text, file, profile)
}

#[cfg(test)]
mod tests;
