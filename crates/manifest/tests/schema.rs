//! The JSON schema of spin.toml (`wisp schema`) is generated from the parser's own
//! types; the checked-in copy `schema/spin-manifest.schema.json` must match it
//! (`WISP_BLESS=1` rewrites it).

use std::path::Path;

fn checked_in() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema/spin-manifest.schema.json")
}

#[test]
fn checked_in_schema_is_current() {
    let generated = wisp_manifest::json_schema();
    if std::env::var_os("WISP_BLESS").is_some() {
        std::fs::write(checked_in(), &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(checked_in()).unwrap_or_default();
    assert!(
        on_disk == generated,
        "schema/spin-manifest.schema.json is stale; run WISP_BLESS=1 cargo test -p wisp-manifest --test schema"
    );
}

#[test]
fn schema_describes_every_table_the_examples_use() {
    let schema: serde_json::Value = serde_json::from_str(&wisp_manifest::json_schema()).unwrap();
    let defs = &schema["$defs"];
    let properties = |def: &serde_json::Value| -> Vec<String> {
        def["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(defs["ManifestVersion"]["const"], 2);
    let top = properties(&schema);
    let component = properties(&defs["Component"]);
    let triggers = properties(&defs["Triggers"]);
    for trigger in ["http", "redis", "cron"] {
        assert!(triggers.contains(&trigger.to_owned()), "{triggers:?}");
    }
    assert!(properties(&defs["CronTrigger"]).contains(&"cron_expression".to_owned()));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut checked = 0;
    for dir in ["examples/hello", "examples/kv-counter", "tests/python-sdk"] {
        let text = std::fs::read_to_string(root.join(dir).join("spin.toml")).unwrap();
        // Every example parses, so the schema must know all of its keys.
        wisp_manifest::parse_str(&text, Path::new("spin.toml")).unwrap();
        let value: toml::Value = toml::from_str(&text).unwrap();
        for key in value.as_table().unwrap().keys() {
            assert!(
                top.contains(key),
                "{dir}: top-level `{key}` not in the schema"
            );
        }
        if let Some(components) = value.get("component").and_then(|c| c.as_table()) {
            for table in components.values() {
                for key in table.as_table().unwrap().keys() {
                    assert!(
                        component.contains(key),
                        "{dir}: component key `{key}` not in the schema"
                    );
                }
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 3);
}
