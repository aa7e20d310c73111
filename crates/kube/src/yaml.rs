//! A small YAML writer for Kubernetes objects held as JSON values.
//!
//! Block style, two-space indents, one `---`-separated document per object. A string is
//! written plain only when no YAML 1.1 or 1.2 reader could take it for anything but that
//! string; every other string is double-quoted with JSON escapes, which YAML's
//! double-quoted style reads the same way. So a variable value such as `yes`, `0x10`,
//! `a: b` or `#x` stays the string it was.

use serde_json::{Map, Value};

/// Writes `objects` as a multi-document YAML stream (`---` before each document).
pub fn to_yaml(objects: &[Value]) -> String {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        match object {
            Value::Object(map) if !map.is_empty() => write_mapping(map, 0, &mut out),
            Value::Array(items) if !items.is_empty() => write_sequence(items, 0, &mut out),
            other => {
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
    out
}

/// Keys written first, in this order, where present; the rest sorted (as `kubectl get -o
/// yaml` writes them).
const LEADING_KEYS: [&str; 4] = ["apiVersion", "kind", "metadata", "name"];

fn ordered(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by_key(|(key, _)| {
        let rank = LEADING_KEYS
            .iter()
            .position(|leading| leading == key)
            .unwrap_or(LEADING_KEYS.len());
        (rank, key.as_str())
    });
    entries
}

fn is_block(value: &Value) -> bool {
    match value {
        Value::Object(map) => !map.is_empty(),
        Value::Array(items) => !items.is_empty(),
        _ => false,
    }
}

fn write_mapping(map: &Map<String, Value>, indent: usize, out: &mut String) {
    for (index, (key, value)) in ordered(map).into_iter().enumerate() {
        // The first entry of a mapping inside a sequence item follows its `- `.
        if index > 0 || !out.ends_with("- ") {
            push_indent(indent, out);
        }
        out.push_str(&string(key));
        out.push(':');
        write_value_after_key(value, indent, out);
    }
}

fn write_value_after_key(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_mapping(map, indent + 2, out);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_sequence(items, indent, out);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn write_sequence(items: &[Value], indent: usize, out: &mut String) {
    for item in items {
        push_indent(indent, out);
        out.push_str("- ");
        match item {
            Value::Object(map) if !map.is_empty() => write_mapping(map, indent + 2, out),
            Value::Array(inner) if !inner.is_empty() => {
                out.truncate(out.len() - 1);
                out.push('\n');
                write_sequence(inner, indent + 2, out);
            }
            other => {
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn push_indent(indent: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', indent));
}

fn scalar(value: &Value) -> String {
    debug_assert!(!is_block(value));
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
    }
}

/// Words some YAML reader takes for a boolean or null.
const RESERVED: [&str; 12] = [
    "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~", "nan", "inf",
];

fn string(s: &str) -> String {
    let plain = s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && !RESERVED.contains(&s.to_ascii_lowercase().as_str());
    match plain {
        true => s.to_owned(),
        false => serde_json::to_string(s).expect("a string always serializes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_nested_blocks_and_quotes_what_is_not_plainly_a_string() {
        let yaml = to_yaml(&[
            json!({
                "kind": "Thing",
                "apiVersion": "v1",
                "spec": {
                    "list": [{ "b": 1, "name": "x" }, "yes", [1, 2], {}],
                    "empty": [],
                    "text": "a: b # c\n\"d\"",
                    "port": "80",
                    "path": "/runtime-config.toml",
                },
            }),
            json!({ "kind": "Other" }),
        ]);
        assert_eq!(
            yaml,
            r#"---
apiVersion: v1
kind: Thing
spec:
  empty: []
  list:
  - name: x
    b: 1
  - "yes"
  -
    - 1
    - 2
  - {}
  path: /runtime-config.toml
  port: "80"
  text: "a: b # c\n\"d\""
---
kind: Other
"#
        );
    }
}
