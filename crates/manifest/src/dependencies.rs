//! Component dependency names (Spin's `[component.<id>.dependencies]` keys) and the rules
//! that relate them: how a name is written, which imports it matches, and which pairs of
//! names would claim the same import.

use std::fmt;

/// The key of a `[component.<id>.dependencies]` entry: a plain import name (`my-dep`) or a
/// package name with an optional interface and version (`ns:pkg`, `ns:pkg@1.0.0`,
/// `ns:pkg/iface`, `ns:pkg/iface@1.0.0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DependencyName {
    /// A plain (kebab-case) import name.
    Plain(String),
    /// A package, optionally narrowed to one interface and one exact version.
    Package {
        /// `ns:pkg`.
        package: String,
        /// The interface, when the name has one.
        interface: Option<String>,
        /// The exact version, when the name has one.
        version: Option<semver::Version>,
    },
}

impl DependencyName {
    /// Parses a dependency name; the error says what is wrong with it.
    pub fn parse(name: &str) -> Result<Self, String> {
        if !name.contains([':', '/']) {
            return if is_kebab_id(name) {
                Ok(Self::Plain(name.to_owned()))
            } else {
                Err(format!(
                    "`{name}` is neither a kebab-case import name nor a package name"
                ))
            };
        }
        let (rest, version) = match name.split_once('@') {
            Some((rest, version)) => {
                let version = semver::Version::parse(version).map_err(|e| {
                    format!("`{name}` has version `{version}`, which is not a full semantic version ({e})")
                })?;
                (rest, Some(version))
            }
            None => (name, None),
        };
        let (package, interface) = match rest.split_once('/') {
            Some((package, interface)) => (package, Some(interface)),
            None => (rest, None),
        };
        let valid_package = package
            .split_once(':')
            .is_some_and(|(ns, pkg)| is_label(ns) && is_label(pkg));
        if !valid_package {
            return Err(format!(
                "`{name}` does not start with a package name `namespace:package` in lower-case kebab-case"
            ));
        }
        if let Some(interface) = interface
            && !is_kebab_id(interface)
        {
            return Err(format!(
                "`{name}` names interface `{interface}`, which is not a kebab-case name"
            ));
        }
        Ok(Self::Package {
            package: package.to_owned(),
            interface: interface.map(str::to_owned),
            version,
        })
    }

    /// Whether the name covers a whole package rather than one interface.
    pub fn is_package_wide(&self) -> bool {
        matches!(
            self,
            Self::Package {
                interface: None,
                ..
            }
        )
    }

    /// Whether a component import of this name is satisfied by the dependency. A version in
    /// the dependency name must equal the import's exactly (no semver ranges), as in Spin.
    pub fn matches_import(&self, import: &str) -> bool {
        match self {
            Self::Plain(name) => name == import,
            Self::Package {
                package,
                interface,
                version,
            } => {
                let Some((import_package, rest)) = import.split_once('/') else {
                    return false;
                };
                let (import_interface, import_version) = match rest.split_once('@') {
                    Some((interface, version)) => (interface, Some(version)),
                    None => (rest, None),
                };
                import_package == package
                    && interface.as_ref().is_none_or(|i| i == import_interface)
                    && version.as_ref().is_none_or(|v| {
                        import_version
                            .is_some_and(|iv| semver::Version::parse(iv).ok().as_ref() == Some(v))
                    })
            }
        }
    }

    /// Whether this name and `other` could both claim one import, which Spin forbids: two
    /// names of the same package conflict unless their versions are in different semver
    /// compatibility classes or they name different interfaces.
    pub fn conflicts_with(&self, other: &Self) -> bool {
        let (
            Self::Package {
                package: a,
                interface: ai,
                version: av,
            },
            Self::Package {
                package: b,
                interface: bi,
                version: bv,
            },
        ) = (self, other)
        else {
            return false;
        };
        if a != b {
            return false;
        }
        if let (Some(av), Some(bv)) = (av, bv)
            && compatibility_class(av) != compatibility_class(bv)
        {
            return false;
        }
        !matches!((ai, bi), (Some(ai), Some(bi)) if ai != bi)
    }
}

impl fmt::Display for DependencyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Plain(name) => f.write_str(name),
            Self::Package {
                package,
                interface,
                version,
            } => {
                f.write_str(package)?;
                if let Some(interface) = interface {
                    write!(f, "/{interface}")?;
                }
                if let Some(version) = version {
                    write!(f, "@{version}")?;
                }
                Ok(())
            }
        }
    }
}

/// Checks a registry package name, `namespace:name` in lower-case kebab-case.
pub(crate) fn check_package_name(package: &str) -> Result<(), String> {
    let valid = package
        .split_once(':')
        .is_some_and(|(namespace, name)| is_label(namespace) && is_label(name));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{package}` is not a package name `namespace:name` in lower-case kebab-case"
        ))
    }
}

/// The versions a semver-compatible range shares: `major.0.0` above 0, `0.minor.0`, then
/// `0.0.patch`; a pre-release stands alone.
fn compatibility_class(version: &semver::Version) -> (u64, u64, u64, String) {
    let pre = version.pre.to_string();
    if !pre.is_empty() {
        return (version.major, version.minor, version.patch, pre);
    }
    match (version.major, version.minor) {
        (0, 0) => (0, 0, version.patch, pre),
        (0, minor) => (0, minor, 0, pre),
        (major, _) => (major, 0, 0, pre),
    }
}

/// Lower-case words of letters and digits joined by single `-`, each starting with a letter.
fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.split('-').all(|word| {
            word.starts_with(|c: char| c.is_ascii_lowercase())
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

/// Words joined by single `-`, each starting with a letter and all lower or all upper case.
fn is_kebab_id(s: &str) -> bool {
    !s.is_empty()
        && s.split('-').all(|word| {
            word.starts_with(|c: char| c.is_ascii_alphabetic())
                && (word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                    || word
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()))
        })
}

#[cfg(test)]
mod tests {
    use super::DependencyName;

    fn name(s: &str) -> DependencyName {
        DependencyName::parse(s).unwrap()
    }

    #[test]
    fn names_parse_and_print_back() {
        for ok in [
            "my-dep",
            "aws:client",
            "aws:client@1.0.0",
            "aws:client/s3",
            "test:calc/adder@0.1.0",
            "foo:bar/baz@0.1.0-rc.1",
        ] {
            assert_eq!(name(ok).to_string(), ok);
        }
        for bad in [
            "Foo:bar",
            "foo:bar@1.0",
            "foo/bar",
            "foo_bar",
            "foo:bar/Baz_x",
            "",
            "foo:",
        ] {
            assert!(DependencyName::parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn names_match_imports_as_spin_does() {
        let cases = [
            ("foo:bar/baz@0.1.0", "foo:bar/baz@0.1.0", true),
            ("foo:bar/baz@0.1.0", "foo:bar/baz", false),
            ("foo:bar/baz", "foo:bar/baz@0.1.0", true),
            ("foo:bar/baz", "foo:bar/baz", true),
            ("foo:bar/baz", "foo:bar/bub@0.1.0", false),
            ("foo:bar/baz", "foo:bar/baz-bub", false),
            ("foo:bar/baz", "foo-bar", false),
            ("foo:bar", "foo:bar/baz@0.1.0", true),
            ("foo:bar", "foo:bub/bib", false),
            ("foo:bar@0.1.0", "foo:bar/baz@0.1.0", true),
            ("foo:bar@0.1.0", "foo:bar/baz", false),
            ("foo-bar", "foo-bar", true),
        ];
        for (dep, import, expected) in cases {
            assert_eq!(
                name(dep).matches_import(import),
                expected,
                "{dep} vs {import}"
            );
        }
    }

    #[test]
    fn overlapping_names_conflict() {
        for (a, b) in [
            ("foo:bar", "foo:bar@0.1.0"),
            ("foo:bar", "foo:bar/baz"),
            ("foo:bar/baz", "foo:bar@0.1.0"),
            ("foo:bar/baz@0.1.0", "foo:bar@0.1.0"),
            ("foo:bar@0.1.0", "foo:bar@0.1.1"),
            ("foo:bar@0.1.0-pre", "foo:bar@0.1.0-pre"),
        ] {
            assert!(name(a).conflicts_with(&name(b)), "{a} / {b}");
        }
        for (a, b) in [
            ("foo:bar@0.1.0", "foo:bar@0.2.0"),
            ("foo:bar@1.0.0", "foo:bar@2.0.0"),
            ("foo:bar/baz", "foo:bar/bub"),
            ("foo:bar/baz@0.1.0", "foo:bar@0.2.0"),
            ("foo:bar/baz@0.1.0-alpha", "foo:bar/baz@0.1.0-beta"),
            ("foo:bar", "foo:baz"),
            ("my-dep", "foo:bar"),
        ] {
            assert!(!name(a).conflicts_with(&name(b)), "{a} / {b}");
        }
    }
}
