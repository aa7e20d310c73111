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
    ///
    /// Parsing a reference compiles `oci-spec`'s reference grammar into a regex the process
    /// keeps for good: measured at about 7 MiB resident in a shim container, more than the
    /// app it serves. A process that never parses one (the shim) never pays that.
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
        let inner: oci_client::Reference =
            s.parse()
                .map_err(|e: oci_client::ParseError| OciError::InvalidReference {
                    reference: s.to_owned(),
                    message: e.to_string(),
                })?;
        if let Some(digest) = inner.digest()
            && !crate::cache::is_sha256_digest(digest)
        {
            return Err(OciError::InvalidReference {
                reference: s.to_owned(),
                message: format!("only sha256 digests are supported, got `{digest}`"),
            });
        }
        Ok(Reference(inner))
    }
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
