//! Tests of the conversion between Wisp's LockedApp and the registry's locked app.

use super::*;

#[test]
fn spins_app_level_redis_address_reaches_its_triggers() {
    let digest = wisp_app::sha256_digest(b"\0asm");
    let locked = json!({
        "spin_lock_version": 0,
        "metadata": {
            "name": "subscriber",
            "triggers": { "redis": { "address": "redis://127.0.0.1:6379" } }
        },
        "triggers": [
            { "id": "a", "trigger_type": "redis",
              "trigger_config": { "channel": "one", "component": "sub" } },
            { "id": "b", "trigger_type": "redis",
              "trigger_config": { "channel": "two", "component": "sub",
                                  "address": "redis://127.0.0.2:6379" } }
        ],
        "components": [
            { "id": "sub", "source": { "content_type": "application/wasm", "digest": digest } }
        ]
    });
    let reference: Reference = "localhost:5000/subscriber:v1".parse().unwrap();
    let app = RegistryLockedApp::parse(&serde_json::to_vec(&locked).unwrap(), &reference).unwrap();
    let paths = HashMap::from([(digest, PathBuf::from("/cache/sub.wasm"))]);
    let app = app.into_locked(&paths, &reference).unwrap();
    let addresses: Vec<&str> = app
        .triggers
        .iter()
        .map(|t| t.trigger_config["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        addresses,
        ["redis://127.0.0.1:6379", "redis://127.0.0.2:6379"]
    );
}

/// A locked app as `spin registry push` writes it for a component with dependencies
/// (uncomposed): `export` written as `null` when absent, `inherit` left out, `"All"` or
/// `{"Some": [...]}`.
#[test]
fn spin_written_dependencies_resolve_to_cached_layers() {
    let main = wisp_app::sha256_digest(b"\0asm main");
    let adder = wisp_app::sha256_digest(b"\0asm adder");
    let log = wisp_app::sha256_digest(b"\0asm log");
    let wasm = |digest: &str| json!({ "content_type": "application/wasm", "digest": digest });
    let locked = json!({
        "spin_lock_version": 0,
        "metadata": { "name": "deps" },
        "triggers": [
            { "id": "t", "trigger_type": "http",
              "trigger_config": { "route": "/...", "component": "main" } }
        ],
        "components": [{
            "id": "main",
            "source": wasm(&main),
            "env": { "MODE": "prod" },
            "dependencies": {
                "test:calc/adder@0.1.0": { "source": wasm(&adder), "export": null },
                "test:log": { "source": wasm(&log), "export": null, "inherit": "All" },
                "helper": {
                    "source": wasm(&adder),
                    "export": "test:calc/adder@0.1.0",
                    "inherit": { "Some": ["environment"] }
                }
            }
        }]
    });
    let reference: Reference = "localhost:5000/deps:v1".parse().unwrap();
    let app = RegistryLockedApp::parse(&serde_json::to_vec(&locked).unwrap(), &reference).unwrap();
    let mut wanted: Vec<String> = app.content_refs().map(ContentRef::key).collect();
    wanted.sort();
    wanted.dedup();
    let mut expected = vec![main.clone(), adder.clone(), log.clone()];
    expected.sort();
    assert_eq!(wanted, expected, "every dependency digest is fetched");

    let path = |digest: &str| PathBuf::from(format!("/cache/{}", &digest[7..15]));
    let paths: HashMap<String, PathBuf> = [&main, &adder, &log]
        .into_iter()
        .map(|d| (d.clone(), path(d)))
        .collect();
    let app = app.into_locked(&paths, &reference).unwrap();
    let dependencies = &app.components[0].dependencies;
    let names: Vec<&str> = dependencies.keys().map(String::as_str).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["helper", "test:calc/adder@0.1.0", "test:log"]);

    let calc = &dependencies["test:calc/adder@0.1.0"];
    assert_eq!(calc.source.path, path(&adder));
    assert_eq!(calc.source.digest, adder);
    assert_eq!(calc.source.content_type, "application/wasm");
    assert_eq!(calc.export, None);
    assert!(calc.inherit.is_none(), "{:?}", calc.inherit);

    let log_dep = &dependencies["test:log"];
    assert_eq!(log_dep.source.path, path(&log));
    assert_eq!(log_dep.inherit, wisp_app::InheritConfiguration::All);

    let helper = &dependencies["helper"];
    assert_eq!(helper.source.path, path(&adder));
    assert_eq!(helper.export.as_deref(), Some("test:calc/adder@0.1.0"));
    assert_eq!(
        helper.inherit,
        wisp_app::InheritConfiguration::Some(vec!["environment".to_owned()])
    );
}

/// A locked app as Spin 4 writes it for HTTP middleware (its loader's shape: the chain
/// under the component's `trigger_dependencies`, a `host_requirements` entry and
/// `must_understand`) reads back with each middleware at its cached layer; and what
/// push writes for middleware is that shape again, without local paths.
#[test]
fn spin_written_middleware_resolves_to_cached_layers_and_is_written_back_in_its_shape() {
    let main = wisp_app::sha256_digest(b"\0asm main");
    let outer = wisp_app::sha256_digest(b"\0asm outer");
    let inner = wisp_app::sha256_digest(b"\0asm inner");
    let wasm = |digest: &str| json!({ "content_type": "application/wasm", "digest": digest });
    let spin_written = json!({
        "spin_lock_version": 1,
        "must_understand": ["component_host_requirements"],
        "metadata": { "name": "mw", "trigger": { "type": "http" }, "triggers": {} },
        "triggers": [
            { "id": "hello-http-trigger", "trigger_type": "http",
              "trigger_config": { "route": "/...", "component": "hello" } }
        ],
        "components": [{
            "id": "hello",
            "metadata": { "resolve-trigger-dependencies-using": "http" },
            "source": wasm(&main),
            "trigger_dependencies": { "middleware": [
                { "source": wasm(&outer), "export": null,
                  "inherit": { "Some": ["allowed_outbound_hosts"] } },
                { "source": wasm(&inner), "export": null }
            ] },
            "host_requirements": { "middleware": "required" }
        }]
    });
    let reference: Reference = "localhost:5000/mw:v1".parse().unwrap();
    let app =
        RegistryLockedApp::parse(&serde_json::to_vec(&spin_written).unwrap(), &reference).unwrap();
    let mut wanted: Vec<String> = app.content_refs().map(ContentRef::key).collect();
    wanted.sort();
    let mut expected = vec![main.clone(), outer.clone(), inner.clone()];
    expected.sort();
    assert_eq!(wanted, expected, "every middleware digest is fetched");
    let path = |digest: &str| PathBuf::from(format!("/cache/{}", &digest[7..15]));
    let paths: HashMap<String, PathBuf> = [&main, &outer, &inner]
        .into_iter()
        .map(|d| (d.clone(), path(d)))
        .collect();
    let locked = app.into_locked(&paths, &reference).unwrap();
    let chain = locked.components[0].middleware();
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[0].source.path, path(&outer));
    assert_eq!(chain[0].source.digest, outer);
    assert_eq!(
        chain[0].inherit,
        wisp_app::InheritConfiguration::Some(vec!["allowed_outbound_hosts".to_owned()])
    );
    assert_eq!(chain[1].source.path, path(&inner));
    assert!(chain[1].inherit.is_none());

    let written: Value = serde_json::from_slice(&to_registry_json(&locked, &[Vec::new()])).unwrap();
    assert_eq!(written["spin_lock_version"], json!(1));
    assert_eq!(
        written["must_understand"],
        json!(["component_host_requirements"])
    );
    let component = &written["components"][0];
    assert_eq!(
        component["trigger_dependencies"],
        spin_written["components"][0]["trigger_dependencies"]
    );
    assert_eq!(
        component["host_requirements"],
        json!({ "middleware": "required" })
    );
    assert_eq!(
        component["metadata"]["resolve-trigger-dependencies-using"],
        json!("http")
    );
    assert!(!written.to_string().contains("/cache/"), "{written}");
}

/// Trigger dependencies of another kind, or left on a trigger, are refused by name.
#[test]
fn trigger_dependencies_wisp_cannot_run_are_refused() {
    let digest = wisp_app::sha256_digest(b"\0asm");
    let wasm = json!({ "content_type": "application/wasm", "digest": digest });
    let reference: Reference = "localhost:5000/mw:v1".parse().unwrap();
    let component = |deps: Value| {
        json!({
            "spin_lock_version": 1,
            "metadata": { "name": "mw" },
            "triggers": [],
            "components": [{ "id": "hello", "source": wasm, "trigger_dependencies": deps }]
        })
    };
    let err = RegistryLockedApp::parse(
        &serde_json::to_vec(&component(json!({ "filters": [{ "source": wasm }] }))).unwrap(),
        &reference,
    )
    .unwrap_err();
    assert!(err.to_string().contains("`filters`"), "{err}");
    let on_trigger = json!({
        "spin_lock_version": 1,
        "metadata": { "name": "mw" },
        "triggers": [{ "id": "t", "trigger_type": "http",
                       "trigger_config": { "route": "/", "component": "hello" },
                       "trigger_dependencies": { "middleware": [{ "source": wasm }] } }],
        "components": [{ "id": "hello", "source": wasm }]
    });
    let err = RegistryLockedApp::parse(&serde_json::to_vec(&on_trigger).unwrap(), &reference)
        .unwrap_err();
    assert!(err.to_string().contains("trigger `t`"), "{err}");
}

/// What push writes for a dependency: Spin's `{content_type, digest}` source, never the
/// local path; `export` always, `inherit` only when something is inherited. It reads
/// back to the same dependencies.
#[test]
fn dependencies_are_written_by_digest_without_their_path() {
    let main = wisp_app::sha256_digest(b"\0asm main");
    let adder = wisp_app::sha256_digest(b"\0asm adder");
    let local = |name: &str| format!("/home/someone/private-project/{name}");
    let locked = json!({
        "spin_lock_version": 1,
        "metadata": { "name": "deps", "origin": local("spin.toml") },
        "triggers": [
            { "id": "t", "trigger_type": "http",
              "trigger_config": { "route": "/...", "component": "main" } }
        ],
        "components": [{
            "id": "main",
            "source": { "content_type": "application/wasm", "path": local("main.wasm"),
                        "digest": main },
            "dependencies": {
                "test:calc/adder@0.1.0": {
                    "source": { "content_type": "application/wasm",
                                "path": local("adder.wasm"), "digest": adder },
                },
                "helper": {
                    "source": { "content_type": "application/wasm",
                                "path": local("adder.wasm"), "digest": adder },
                    "export": "test:calc/adder@0.1.0",
                    "inherit": { "Some": ["environment"] }
                }
            }
        }]
    });
    let locked = LockedApp::from_json(&serde_json::to_vec(&locked).unwrap()).unwrap();
    let written = to_registry_json(&locked, &[Vec::new()]);
    let text = String::from_utf8(written.clone()).unwrap();
    assert!(
        !text.contains("private-project"),
        "a local path leaked: {text}"
    );
    let value: Value = serde_json::from_slice(&written).unwrap();
    let source = json!({ "content_type": "application/wasm", "digest": adder });
    assert_eq!(
        value["components"][0]["dependencies"],
        json!({
            "test:calc/adder@0.1.0": { "source": source, "export": null },
            "helper": {
                "source": source,
                "export": "test:calc/adder@0.1.0",
                "inherit": { "Some": ["environment"] }
            }
        })
    );

    let reference: Reference = "localhost:5000/deps:v1".parse().unwrap();
    let paths = HashMap::from([
        (main.clone(), PathBuf::from("/cache/main")),
        (adder.clone(), PathBuf::from("/cache/adder")),
    ]);
    let back = RegistryLockedApp::parse(&written, &reference)
        .unwrap()
        .into_locked(&paths, &reference)
        .unwrap();
    let mut expected = locked.components[0].dependencies.clone();
    for dependency in expected.values_mut() {
        dependency.source.path = PathBuf::from("/cache/adder");
    }
    assert_eq!(back.components[0].dependencies, expected);
}

#[test]
fn paths_are_normalized_and_escapes_refused() {
    assert_eq!(normalize_rel_path("static/a.txt").unwrap(), "static/a.txt");
    assert_eq!(
        normalize_rel_path("./static//a.txt").unwrap(),
        "static/a.txt"
    );
    for bad in [
        "../../etc/x",
        "a/../../b",
        "/etc/passwd",
        "a\\..\\b",
        "",
        ".",
        "C:/x",
    ] {
        let err = normalize_rel_path(bad).unwrap_err();
        assert!(matches!(err, OciError::UnsafePath { .. }), "{bad}: {err}");
    }
    assert_eq!(guest_rel_path("/static/a.txt").unwrap(), "static/a.txt");
}

#[test]
fn archives_are_deterministic_and_unpack_by_digest() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    std::fs::write(&a, "alpha").unwrap();
    std::fs::write(&b, "beta").unwrap();
    let files = vec![
        ("z/b.txt".to_owned(), b.clone()),
        ("a.txt".to_owned(), a.clone()),
    ];
    let out1 = dir.path().join("1.tar.gz");
    let out2 = dir.path().join("2.tar.gz");
    build_archive(&files, &out1).unwrap();
    build_archive(&files, &out2).unwrap();
    assert_eq!(std::fs::read(&out1).unwrap(), std::fs::read(&out2).unwrap());

    let cache = Cache::new(dir.path().join("cache"));
    let digest = wisp_app::sha256_digest(&std::fs::read(&out1).unwrap());
    unpack_archive(&cache, &out1, &digest).unwrap();
    assert!(cache.has_blob(&wisp_app::sha256_digest(b"alpha")));
    assert!(cache.has_blob(&wisp_app::sha256_digest(b"beta")));
}

#[test]
fn archive_links_and_traversal_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().join("cache"));

    let link = dir.path().join("link.tar.gz");
    {
        let file = std::fs::File::create(&link).unwrap();
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            file,
            flate2::Compression::default(),
        ));
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        builder
            .append_link(&mut header, "evil", "/etc/passwd")
            .unwrap();
        builder.into_inner().unwrap().finish().unwrap();
    }
    let err = unpack_archive(&cache, &link, "sha256:x").unwrap_err();
    assert!(err.to_string().contains("link"), "{err}");

    let traversal = dir.path().join("traversal.tar.gz");
    {
        let file = std::fs::File::create(&traversal).unwrap();
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            file,
            flate2::Compression::default(),
        ));
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(1);
        // Write the name directly: the tar crate refuses `..` in `set_path`.
        header.as_old_mut().name[..8].copy_from_slice(b"../evil\0");
        header.set_cksum();
        builder.append(&header, &b"x"[..]).unwrap();
        builder.into_inner().unwrap().finish().unwrap();
    }
    let err = unpack_archive(&cache, &traversal, "sha256:x").unwrap_err();
    assert!(err.to_string().contains(".."), "{err}");
}
