//! Spin 4's newer manifest features: HTTP middleware on triggers, profiles, `targets`
//! and the deprecated `allowed_http_hosts` of version 2.

use super::*;

/// `dependencies.middleware` goes to the trigger's component; a component other triggers
/// also call is copied for the trigger with middleware, as Spin does.
#[test]
fn trigger_middleware_goes_to_its_component_or_a_copy_of_it() {
    let single = parse(
        r#"spin_manifest_version = 2
[application]
name = "mw"
[[trigger.http]]
route = "/..."
component = "hello"
dependencies.middleware = [{ path = "a.wasm" }, { component = "mw", inherit_configuration = ["variables"] }]
[component.hello]
source = "app.wasm"
[component.mw]
source = "mw.wasm"
"#,
    );
    let chain = &single.components["hello"].middleware;
    assert_eq!(chain.len(), 2, "{chain:?}");
    assert_eq!(chain[0].source, ComponentSource::Local("a.wasm".into()));
    assert_eq!(chain[0].inherit, InheritConfiguration::default());
    assert_eq!(chain[1].source, ComponentSource::Local("mw.wasm".into()));
    assert_eq!(
        chain[1].inherit,
        InheritConfiguration::Some(vec!["variables".to_owned()])
    );
    assert!(single.components["mw"].middleware.is_empty());

    let shared = parse(
        r#"spin_manifest_version = 2
[application]
name = "mw"
[[trigger.http]]
id = "wrapped"
route = "/a/..."
component = "hello"
dependencies.middleware = [{ path = "a.wasm" }]
[[trigger.http]]
route = "/b/..."
component = "hello"
dependencies.middleware = [{ path = "b.wasm" }]
[[trigger.http]]
route = "/plain/..."
component = "hello"
[component.hello]
source = "app.wasm"
"#,
    );
    let called: Vec<&str> = shared
        .http_triggers
        .iter()
        .map(|t| t.component.as_deref().unwrap())
        .collect();
    assert_eq!(
        called,
        ["hello-for-wrapped", "hello-for-hello-http-trigger", "hello"]
    );
    // The trigger keeps the id the copy is named after; the others are unchanged.
    let ids: Vec<Option<&str>> = shared
        .http_triggers
        .iter()
        .map(|t| t.id.as_deref())
        .collect();
    assert_eq!(ids, [Some("wrapped"), Some("hello-http-trigger"), None]);
    assert!(shared.components["hello"].middleware.is_empty());
    let copy = &shared.components["hello-for-hello-http-trigger"];
    assert_eq!(copy.source, ComponentSource::Local("app.wasm".into()));
    assert_eq!(
        copy.middleware[0].source,
        ComponentSource::Local("b.wasm".into())
    );
}

/// Fields of Spin 4's version 2 that `spin up` reads or ignores: `targets` (for `spin
/// build`), build profiles (for `--profile`), and the deprecated `allowed_http_hosts`,
/// converted and added to `allowed_outbound_hosts` with a warning, as Spin does.
#[test]
fn targets_profiles_and_deprecated_http_hosts_are_read_as_spin_reads_them() {
    let m = parse(
        r#"spin_manifest_version = 2
[application]
name = "app"
targets = ["spin-up:3.3", { registry = "example.com", package = "ns:env", version = "1.0.0" }]
[[trigger.http]]
route = "/..."
component = "web"
[component.web]
source = "web.wasm"
targets = ["spinkube:0.4"]
allowed_outbound_hosts = ["https://api.example.com"]
allowed_http_hosts = ["example.com:8080", "self"]
[component.web.profile.debug]
source = "debug/web.wasm"
environment = { LOG = "debug" }
build.command = "cargo build"
"#,
    );
    let web = &m.components["web"];
    assert_eq!(
        web.allowed_outbound_hosts,
        strings(&[
            "https://api.example.com",
            "http://example.com:8080",
            "https://example.com:8080",
            "http://self",
        ])
    );
    // Without a profile asked for, the default one applies; the profile is known by name.
    assert_eq!(web.source, ComponentSource::Local("web.wasm".into()));
    assert_eq!(web.profiles, ["debug"]);
    assert!(web.environment.is_empty());
    assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
    assert!(
        m.warnings[0].contains("`allowed_http_hosts`")
            && m.warnings[0].contains(r#"allowed_outbound_hosts = ["http://example.com:8080", "https://example.com:8080", "http://self"]"#),
        "{:?}",
        m.warnings
    );
}

/// `--profile <name>`: each component defining the profile takes its source, environment
/// (over its own), dependencies (by name, over its own) and build commands; the others
/// stay; a profile no component defines is an error naming the ones defined.
#[test]
fn a_profile_puts_its_overrides_in_place() {
    let text = r#"spin_manifest_version = 2
[application]
name = "app"
[[trigger.http]]
route = "/..."
component = "web"
[[trigger.http]]
route = "/other/..."
component = "other"
[component.web]
source = "web.wasm"
environment = { MODE = "prod", KEEP = "yes" }
[component.web.dependencies]
"test:calc" = { path = "calc.wasm" }
"test:log" = { path = "log.wasm" }
[component.web.profile.debug]
source = "debug/web.wasm"
environment = { MODE = "debug" }
dependencies = { "test:calc" = { component = "calc-debug" } }
build.command = ["make debug", "make check"]
[component.other]
source = "other.wasm"
[component.other.build]
command = "make"
workdir = "other"
[component.calc-debug]
source = "calc-debug.wasm"
"#;
    let untouched = parse(text);
    let m = parse_str_with_profile(text, Path::new("spin.toml"), Some("debug")).unwrap();
    let web = &m.components["web"];
    assert_eq!(web.source, ComponentSource::Local("debug/web.wasm".into()));
    assert_eq!(web.environment, map(&[("MODE", "debug"), ("KEEP", "yes")]));
    assert_eq!(
        web.dependencies["test:calc"].source,
        ComponentSource::Local("calc-debug.wasm".into())
    );
    assert_eq!(
        web.dependencies["test:log"].source,
        ComponentSource::Local("log.wasm".into())
    );
    let build = web.build.as_ref().unwrap();
    assert_eq!(build.commands, strings(&["make debug", "make check"]));
    assert_eq!(build.workdir, None);
    assert_eq!(m.components["other"], untouched.components["other"]);
    // Without the profile, the component's own fields.
    assert_eq!(
        untouched.components["web"].source,
        ComponentSource::Local("web.wasm".into())
    );
    assert_eq!(
        untouched.components["web"].dependencies["test:calc"].source,
        ComponentSource::Local("calc.wasm".into())
    );

    let err = parse_str_with_profile(text, Path::new("spin.toml"), Some("relase"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`relase`") && err.contains("`debug`"), "{err}");
}

/// A middleware given as `{ component = "..." }` takes that component's source with the
/// profile in place (Spin applies the profile before it resolves references); and a
/// middleware component with grants of its own is refused, as Spin refuses it.
#[test]
fn middleware_by_component_follows_the_profile_and_has_no_grants_of_its_own() {
    let text = r#"spin_manifest_version = 2
[application]
name = "app"
[[trigger.http]]
route = "/..."
component = "web"
dependencies.middleware = [{ component = "mw" }]
[component.web]
source = "web.wasm"
[component.mw]
source = "mw.wasm"
[component.mw.profile.debug]
source = "debug/mw.wasm"
"#;
    let m = parse_str_with_profile(text, Path::new("spin.toml"), Some("debug")).unwrap();
    assert_eq!(
        m.components["web"].middleware[0].source,
        ComponentSource::Local("debug/mw.wasm".into())
    );
    let err = parse_str(
        &text.replace(
            "source = \"mw.wasm\"",
            "source = \"mw.wasm\"\nallowed_outbound_hosts = [\"https://example.com\"]",
        ),
        Path::new("spin.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("component `mw` cannot be used as middleware of `web`")
            && err.contains("allowed_outbound_hosts"),
        "{err}"
    );
}

/// A component copied for its trigger's middleware keeps the sources of its
/// `{ component = "..." }` dependencies, resolved after the copy was made.
#[test]
fn a_middleware_copy_keeps_its_component_dependencies() {
    let m = parse(
        r#"spin_manifest_version = 2
[application]
name = "app"
[[trigger.http]]
route = "/a/..."
component = "web"
dependencies.middleware = [{ path = "mw.wasm" }]
[[trigger.http]]
route = "/b/..."
component = "web"
[component.web]
source = "web.wasm"
dependencies = { "test:calc" = { component = "calc" } }
[component.calc]
source = "calc.wasm"
"#,
    );
    for id in ["web", "web-for-web-http-trigger"] {
        assert_eq!(
            m.components[id].dependencies["test:calc"].source,
            ComponentSource::Local("calc.wasm".into()),
            "{id}"
        );
    }
}

/// The trigger a middleware copy is named after takes the id the locked app would give
/// it, which never repeats an explicit id written on a later trigger; the copy says
/// which component it copies (so it builds as that one).
#[test]
fn a_middleware_copy_is_named_clear_of_explicit_trigger_ids() {
    let m = parse(
        r#"spin_manifest_version = 2
[application]
name = "app"
[[trigger.http]]
route = "/a/..."
component = "hello"
dependencies.middleware = [{ path = "mw.wasm" }]
[[trigger.http]]
id = "hello-http-trigger"
route = "/b/..."
component = "hello"
[component.hello]
source = "hello.wasm"
"#,
    );
    let ids: Vec<Option<&str>> = m.http_triggers.iter().map(|t| t.id.as_deref()).collect();
    assert_eq!(ids, [Some("http-trigger1"), Some("hello-http-trigger")]);
    let copy = &m.components["hello-for-http-trigger1"];
    assert_eq!(copy.copy_of.as_deref(), Some("hello"));
    assert_eq!(m.components["hello"].copy_of, None);
}
