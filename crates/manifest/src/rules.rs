//! The lexical rules of the manifest: ids, variable names, routes and
//! variable templates. Pure functions on strings, so they can be tested (and
//! reused) without any TOML around them.

/// Whether `id` is a valid component id: kebab-case, i.e. lowercase ASCII
/// letters and digits in words separated by single `-`, starting with a
/// letter (`hello`, `my-api-2`).
pub fn is_kebab_id(id: &str) -> bool {
    id.starts_with(|c: char| c.is_ascii_lowercase())
        && id.split('-').all(|word| {
            !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

/// Whether `name` is a valid variable name: lowercase ASCII letters, digits
/// and underscores, starting with a letter (`api_key`, `db2`).
pub fn is_variable_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A route problem: message and hint.
pub(crate) type RouteError = (String, String);

/// Checks an HTTP route and returns its collision key: the route with every
/// `:param` renamed to `:`, empty segments (so trailing slashes) dropped.
/// Two routes with the same key match the same requests.
pub(crate) fn route_key(route: &str) -> Result<String, RouteError> {
    let Some(rest) = route.strip_prefix('/') else {
        return Err((
            format!("route `{route}` does not start with `/`"),
            format!("write it as `/{route}`; routes are absolute paths"),
        ));
    };
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let mut key = String::new();
    for (i, segment) in segments.iter().enumerate() {
        key.push('/');
        if *segment == "..." {
            if i + 1 != segments.len() {
                return Err((
                    format!("the wildcard `...` in route `{route}` is not the last segment"),
                    "a wildcard matches the rest of the path, so it may only end a route, \
                     e.g. `/static/...`"
                        .to_owned(),
                ));
            }
            key.push_str("...");
        } else if let Some(name) = segment.strip_prefix(':') {
            if name.is_empty() {
                return Err((
                    format!("route `{route}` has a parameter without a name"),
                    "name each parameter after the `:`, e.g. `/users/:id`".to_owned(),
                ));
            }
            key.push(':');
        } else {
            key.push_str(segment);
        }
    }
    if key.is_empty() {
        key.push('/');
    }
    Ok(key)
}

/// A template problem.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TemplateError {
    /// A `{{` without a matching `}}`.
    Unterminated,
    /// `{{ ... }}` whose content is not a variable name.
    BadName(String),
}

/// The variable names referenced by a template such as
/// `"{{ greeting }}, {{name}}!"`, in order.
pub(crate) fn template_references(template: &str) -> Result<Vec<&str>, TemplateError> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(TemplateError::Unterminated)?;
        let name = after[..end].trim();
        if !is_variable_name(name) {
            return Err(TemplateError::BadName(name.to_owned()));
        }
        names.push(name);
        rest = &after[end + 2..];
    }
    Ok(names)
}

/// Checks a `cron_expression`: six fields (seconds first) or seven (with years), in
/// the syntax of the `cron` crate that Spin's cron trigger also accepts.
pub(crate) fn check_cron_expression(expression: &str) -> Result<(), String> {
    let fields = expression.split_whitespace().count();
    if !(6..=7).contains(&fields) {
        return Err(format!(
            "it has {fields} field{}, expected 6 or 7 (the first is seconds)",
            if fields == 1 { "" } else { "s" }
        ));
    }
    expression
        .parse::<cron::Schedule>()
        .map(|_| ())
        // The crate's message repeats the expression with a caret line; keep the reason.
        .map_err(|e| {
            let message = e.to_string();
            message
                .lines()
                .rev()
                .find(|line| !line.trim().is_empty())
                .unwrap_or("not a valid schedule")
                .trim()
                .to_owned()
        })
}

/// The id a trigger gets in the locked app: `id` when it has one, else the one Spin's
/// normaliser generates, `<component>-<type>-trigger` when unused, else `<type>-trigger<N>`.
/// `taken` holds the ids given so far, in trigger order, and gets this one.
pub fn trigger_id(
    id: Option<&str>,
    trigger_type: &str,
    component: Option<&str>,
    taken: &mut std::collections::HashSet<String>,
) -> String {
    let id = match (id, component) {
        (Some(id), _) => id.to_owned(),
        (None, Some(component))
            if !taken.contains(&format!("{component}-{trigger_type}-trigger")) =>
        {
            format!("{component}-{trigger_type}-trigger")
        }
        (None, _) => (1..)
            .map(|n| format!("{trigger_type}-trigger{n}"))
            .find(|id| !taken.contains(id))
            .expect("an unused counter exists"),
    };
    taken.insert(id.clone());
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kebab_ids() {
        for good in ["hello", "my-api-2", "a", "a1-b2", "x-1"] {
            assert!(is_kebab_id(good), "{good}");
        }
        for bad in [
            "", "My_Comp", "my_comp", "-a", "a-", "a--b", "1abc", "Hello", "a.b", "é",
        ] {
            assert!(!is_kebab_id(bad), "{bad}");
        }
    }

    #[test]
    fn variable_names() {
        for good in ["a", "api_key", "db2", "a__b", "x_"] {
            assert!(is_variable_name(good), "{good}");
        }
        for bad in ["", "Api", "_a", "1a", "a-b", "a b"] {
            assert!(!is_variable_name(bad), "{bad}");
        }
    }

    #[test]
    fn route_keys_normalize_params_and_trailing_slashes() {
        assert_eq!(route_key("/").unwrap(), "/");
        assert_eq!(route_key("/...").unwrap(), "/...");
        assert_eq!(route_key("/a").unwrap(), "/a");
        assert_eq!(route_key("/a/").unwrap(), "/a");
        assert_eq!(route_key("/a/:x").unwrap(), route_key("/a/:y").unwrap());
        assert_eq!(route_key("/a/:x/b/...").unwrap(), "/a/:/b/...");
        assert_ne!(route_key("/a/...").unwrap(), route_key("/a").unwrap());
        assert_ne!(route_key("/a/...").unwrap(), route_key("/a/:x").unwrap());
    }

    #[test]
    fn bad_routes() {
        assert!(
            route_key("hello")
                .unwrap_err()
                .0
                .contains("does not start with `/`")
        );
        assert!(route_key("").is_err());
        assert!(
            route_key("/a/.../b")
                .unwrap_err()
                .0
                .contains("not the last")
        );
        assert!(
            route_key("/a/:/b")
                .unwrap_err()
                .0
                .contains("without a name")
        );
    }

    #[test]
    fn templates() {
        assert_eq!(template_references("plain").unwrap(), Vec::<&str>::new());
        assert_eq!(
            template_references("{{ greeting }}, {{name}}!").unwrap(),
            ["greeting", "name"]
        );
        assert_eq!(
            template_references("{{ a").unwrap_err(),
            TemplateError::Unterminated
        );
        assert_eq!(
            template_references("{{ Not-A-Name }}").unwrap_err(),
            TemplateError::BadName("Not-A-Name".to_owned())
        );
        assert_eq!(
            template_references("{{}}").unwrap_err(),
            TemplateError::BadName(String::new())
        );
    }
}
