//! Registry references (`registry/repo:tag`, `registry/repo@sha256:…`).

use crate::OciError;
use std::fmt;
use std::str::FromStr;

/// A registry reference: `registry/repository:tag` or `registry/repository@sha256:<hex>`.
///
/// Parsing follows Docker's rules (through `oci-client`): the first path segment is the
/// registry when it contains a `.` or `:` or is `localhost`; a reference without tag or
/// digest means `:latest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference(oci_client::Reference);

impl Reference {
    /// The registry host (with port), as written.
    pub fn registry(&self) -> &str {
        self.0.registry()
    }

    /// The registry host actually contacted (`docker.io` becomes `index.docker.io`).
    pub fn resolve_registry(&self) -> &str {
        self.0.resolve_registry()
    }

    /// The repository path.
    pub fn repository(&self) -> &str {
        self.0.repository()
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.0.tag()
    }

    /// The `sha256:<hex>` digest, if the reference pins one.
    pub fn digest(&self) -> Option<&str> {
        self.0.digest()
    }

    /// `registry/repository:tag` from its parts, as given: nothing is parsed or checked, so
    /// the parts must already be valid (a reference the program itself names).
    pub fn with_tag(registry: &str, repository: &str, tag: &str) -> Reference {
        Reference(oci_client::Reference::with_tag(
            registry.to_owned(),
            repository.to_owned(),
            tag.to_owned(),
        ))
    }

    /// The same repository pinned to `digest`.
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference(oci_client::Reference::with_digest(
            self.registry().to_owned(),
            self.repository().to_owned(),
            digest.to_owned(),
        ))
    }

    /// The underlying `oci-client` reference.
    pub fn as_oci(&self) -> &oci_client::Reference {
        &self.0
    }
}

impl FromStr for Reference {
    type Err = OciError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |message: &str| OciError::InvalidReference {
            reference: s.to_owned(),
            message: message.to_owned(),
        };
        let parts = parse(s).map_err(invalid)?;
        if let Some(digest) = &parts.digest
            && !crate::cache::is_sha256_digest(digest)
        {
            return Err(invalid(&format!(
                "only sha256 digests are supported, got `{digest}`"
            )));
        }
        Ok(Reference(match (parts.tag, parts.digest) {
            (Some(tag), Some(digest)) => oci_client::Reference::with_tag_and_digest(
                parts.registry,
                parts.repository,
                tag,
                digest,
            ),
            (None, Some(digest)) => {
                oci_client::Reference::with_digest(parts.registry, parts.repository, digest)
            }
            (tag, None) => oci_client::Reference::with_tag(
                parts.registry,
                parts.repository,
                tag.unwrap_or_else(|| "latest".to_owned()),
            ),
        }))
    }
}

/// The parts of a reference, normalized as Docker does (`docker.io`, `library/`).
#[derive(Debug, PartialEq, Eq)]
struct Parts {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// Docker's reference grammar (distribution's `reference` package), read by hand.
///
/// `oci-spec` reads it with one regex whose Unicode `\w{0,127}` for tags compiles to an
/// automaton the process then keeps: about 7 MiB resident and milliseconds of compiling
/// at the first parse (measured in a shim container). This reads the same grammar except
/// that tags are ASCII, as the OCI distribution spec defines them; a test checks it
/// against `oci-spec` on generated references.
fn parse(s: &str) -> Result<Parts, &'static str> {
    if s.is_empty() {
        return Err("repository name must have at least one component");
    }
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => {
            if !is_digest(digest) {
                return Err("invalid reference format");
            }
            (rest, Some(digest))
        }
        None => (s, None),
    };
    // A `:` after the last `/` starts the tag; one before it is a registry's port.
    let tag_start = rest
        .rfind(':')
        .filter(|&colon| rest.rfind('/').is_none_or(|slash| colon > slash));
    let (name, tag) = match tag_start {
        Some(colon) => (&rest[..colon], Some(&rest[colon + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag
        && !is_tag(tag)
    {
        return Err("invalid reference format");
    }
    let path_ok = |path: &str| path.split('/').all(is_path_component);
    let valid_name = path_ok(name)
        || name
            .split_once('/')
            .is_some_and(|(domain, path)| is_domain(domain) && path_ok(path));
    if !valid_name {
        return Err("invalid reference format");
    }
    let (registry, repository) = split_domain(name);
    if repository.len() > 255 {
        return Err("repository name must not be more than 255 characters");
    }
    if let Some((algorithm, hex)) = digest.and_then(|d| d.split_once(':')) {
        let expected = match algorithm {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            _ => return Err("unsupported digest algorithm"),
        };
        if hex.len() != expected {
            return Err("invalid checksum digest length");
        }
    }
    Ok(Parts {
        registry,
        repository,
        tag: match (tag, digest) {
            (None, None) => Some("latest".to_owned()),
            (tag, _) => tag.map(str::to_owned),
        },
        digest: digest.map(str::to_owned),
    })
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or any number of `-`.
fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().is_some_and(|&b| alnum(b)) || !bytes.last().is_some_and(|&b| alnum(b)) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        match &component[start..i] {
            "." | "_" | "__" => {}
            separator if separator.bytes().all(|b| b == b'-') => {}
            _ => return false,
        }
    }
    true
}

/// A host name (labels of letters, digits and inner `-`, joined by `.`) with an
/// optional `:port`.
fn is_domain(domain: &str) -> bool {
    let (host, port) = match domain.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    let label = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    host.split('.').all(label)
        && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn is_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    tag.len() <= 128
        && tag.as_bytes().first().is_some_and(|&b| word(b))
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-')
}

/// `algorithm:hex`, the algorithm's parts letters and digits joined by `-_+.`, at least
/// 32 hex digits.
fn is_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let part = |p: &str| {
        p.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
            && p.bytes().all(|b| b.is_ascii_alphanumeric())
    };
    algorithm.split(['-', '_', '+', '.']).all(part)
        && hex.len() >= 32
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Docker's normalization: a first segment that is no host (no `.` or `:`, not
/// `localhost`) means Docker Hub, whose one-segment names live under `library/`.
fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_owned(), rest.to_owned())
        }
        _ => ("docker.io".to_owned(), name.to_owned()),
    };
    if domain == "index.docker.io" {
        domain = "docker.io".to_owned();
    }
    if domain == "docker.io" && !remainder.contains('/') {
        remainder = format!("library/{remainder}");
    }
    (domain, remainder)
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tags_and_digests() {
        let r: Reference = "localhost:5000/hello:v1".parse().unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "hello");
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.digest(), None);

        let digest = format!("sha256:{}", "ab".repeat(32));
        let r: Reference = format!("127.0.0.1:5000/a/b@{digest}").parse().unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "a/b");
        assert_eq!(r.digest(), Some(digest.as_str()));

        let r: Reference = "localhost:5000/hello".parse().unwrap();
        assert_eq!(r.tag(), Some("latest"));
    }

    #[test]
    fn a_reference_from_parts_is_the_parsed_one() {
        let parsed: Reference = "localhost/containerd/app:latest".parse().unwrap();
        let built = Reference::with_tag("localhost", "containerd/app", "latest");
        assert_eq!(built, parsed);
        assert_eq!(built.to_string(), parsed.to_string());
    }

    /// The hand-written reader against `oci-spec`'s regex on known cases and generated
    /// references: the same verdict and, when both accept, the same parts.
    #[test]
    fn reads_references_as_oci_spec_does() {
        fn theirs(s: &str) -> Option<Parts> {
            let r: oci_client::Reference = s.parse().ok()?;
            Some(Parts {
                registry: r.registry().to_owned(),
                repository: r.repository().to_owned(),
                tag: r.tag().map(str::to_owned),
                digest: r.digest().map(str::to_owned),
            })
        }
        let hex64 = "ab".repeat(32);
        let mut cases: Vec<String> = [
            "busybox",
            "test.com:tag",
            "test.com:5000",
            "test.com/repo:tag",
            "test:5000/repo",
            "test:5000/repo:tag",
            "lowercase:Uppercase",
            "Uppercase:tag",
            "foo_bar.com:8080",
            "foo/foo_bar.com:8080",
            "localhost/a",
            "localhost:5000/a/b/c:v1",
            "index.docker.io/x",
            "docker.io/library/x",
            "a..b",
            "a__b",
            "a___b",
            "a--b",
            "a-",
            "-a",
            "a/",
            "/a",
            "a//b",
            "a:",
            ":a",
            "a@",
            "a:b:c",
            "[::1]:5000/a",
            "127.0.0.1:5000/a:v1.2_3-rc",
            "a:.tag",
            "a:_tag",
            "a:-tag",
            "UPPER.com/a",
            "up-.com/a",
            "a.-b.com/c",
            "ex.com:/a",
            "ex.com:50a/b",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        cases.push(format!("a@sha256:{hex64}"));
        cases.push(format!("ex.com/a:v1@sha256:{hex64}"));
        cases.push(format!("a@sha256:{}", "ab".repeat(31)));
        cases.push(format!("a@sha512:{hex64}"));
        cases.push(format!("a@md5:{hex64}"));
        cases.push(format!("a@sha256+b64:{hex64}"));
        cases.push(format!("a:{}", "t".repeat(128)));
        cases.push(format!("a:{}", "t".repeat(129)));
        cases.push(format!("ex.com/{}", "a".repeat(256)));
        // Generated: random strings over the grammar's characters.
        let alphabet = b"aaaabb00Z.-_:/@";
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..40_000 {
            let mut next = || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            let len = 1 + next() % 14;
            let s: String = (0..len)
                .map(|_| char::from(alphabet[(next() % alphabet.len() as u64) as usize]))
                .collect();
            cases.push(s);
        }
        let mut accepted = 0;
        for case in &cases {
            let ours = parse(case).ok();
            accepted += usize::from(ours.is_some());
            assert_eq!(ours, theirs(case), "`{case}`");
        }
        // Both verdicts are well represented, so agreement means something.
        assert!(
            accepted > 3_000 && cases.len() - accepted > 3_000,
            "{accepted} of {} accepted",
            cases.len()
        );
        // Tags are ASCII, as the distribution spec says (oci-spec takes any Unicode word).
        assert!(parse("a:vé").is_err());
    }

    #[test]
    fn bad_references_are_refused() {
        let err = "localhost:5000/Hello:v1".parse::<Reference>().unwrap_err();
        assert!(err.to_string().contains("Hello"), "{err}");
        let err = format!("localhost:5000/a@sha512:{}", "ab".repeat(64))
            .parse::<Reference>()
            .unwrap_err();
        assert!(err.to_string().contains("sha256"), "{err}");
    }
}
