//! The local content cache: verified blobs by digest, and the manifests pulled per reference.

use crate::pull::PulledApp;
use crate::{OciError, Reference, Result, io_error};
use sha2::Digest as _;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt as _;

/// `$<variable>` if it is an absolute path, else `$HOME/<under_home>` (the XDG rule).
pub(crate) fn xdg_dir(variable: &str, under_home: &str) -> Option<PathBuf> {
    std::env::var_os(variable)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(under_home))
        })
}

/// A content-addressed cache of pulled artifacts.
///
/// Layout: `<root>/blobs/sha256/<hex>` holds every verified blob (component Wasm, files, the
/// locked app, and the files unpacked from archive layers); `<root>/manifests/<registry>/
/// <repository>/<tag or digest>/manifest.json` holds the manifest last pulled for a reference.
/// Blobs only enter the cache after their digest has been checked.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// Whether `digest` is `sha256:` followed by 64 lowercase hex digits.
pub(crate) fn is_sha256_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

impl Cache {
    /// A cache rooted at `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Cache { root: root.into() }
    }

    /// `$XDG_CACHE_HOME/wisp/oci`, else `~/.cache/wisp/oci`.
    pub fn default_root() -> PathBuf {
        xdg_dir("XDG_CACHE_HOME", ".cache")
            .unwrap_or_else(std::env::temp_dir)
            .join("wisp")
            .join("oci")
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `digest` lives (whether or not it is cached).
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|_| is_sha256_digest(digest))
            .ok_or_else(|| OciError::UnsupportedArtifact {
                reference: digest.to_owned(),
                message: "digests must be `sha256:` and 64 lowercase hex digits".to_owned(),
            })?;
        Ok(self.root.join("blobs").join("sha256").join(hex))
    }

    /// Whether the blob `digest` is cached.
    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|p| p.is_file())
    }

    /// Removes everything in the cache.
    pub fn clear(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.root) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("remove", &self.root)(e)),
        }
    }

    /// The app pulled earlier for a `@sha256:` reference, rebuilt from the cache alone (no
    /// network). `None` for a tag (tags always ask the registry) or when anything is missing.
    pub async fn lookup(&self, reference: &Reference) -> Result<Option<PulledApp>> {
        let Some(digest) = reference.digest() else {
            return Ok(None);
        };
        let path = self.manifest_path(reference, digest);
        let body = match tokio::fs::read(&path).await {
            Ok(body) => body,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("read", &path)(e)),
        };
        if wisp_app::sha256_digest(&body) != digest {
            // A damaged entry is not an answer; pull again.
            tracing::warn!("cached manifest {} is damaged; ignoring it", path.display());
            return Ok(None);
        }
        crate::pull::assemble_cached(self, reference, digest, &body).await
    }

    /// Streams a blob handed over by someone else (an upload to a node) into the cache. It
    /// is kept only if it matches `digest` and is at most `limit` bytes; otherwise nothing
    /// is stored and the error says which.
    pub async fn insert_stream<S, B, E>(
        &self,
        digest: &str,
        stream: S,
        limit: u64,
    ) -> Result<PathBuf>
    where
        S: futures::Stream<Item = std::result::Result<B, E>>,
        B: AsRef<[u8]>,
        E: std::fmt::Display,
    {
        use futures::StreamExt as _;
        let mut writer = self.blob_writer(digest).await?;
        let mut stream = std::pin::pin!(stream);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                io_error("receive", PathBuf::from(digest))(std::io::Error::other(e.to_string()))
            })?;
            writer.write(chunk.as_ref()).await?;
            if writer.len() > limit {
                return Err(OciError::TooLarge {
                    what: "blob",
                    digest: digest.to_owned(),
                    size: writer.len(),
                    limit,
                });
            }
        }
        writer.finish().await
    }

    /// Records `manifest` (an artifact whose blobs were all put in this cache, e.g. by
    /// [`Cache::insert_stream`]) under `reference` and its digest, and rebuilds its app
    /// from the cache alone. A missing blob is an error naming the manifest.
    pub async fn import(&self, reference: &Reference, manifest: &[u8]) -> Result<PulledApp> {
        let digest = wisp_app::sha256_digest(manifest);
        let pulled = crate::pull::assemble_cached(self, reference, &digest, manifest)
            .await?
            .ok_or_else(|| OciError::UnsupportedArtifact {
                reference: reference.to_string(),
                message: format!(
                    "some blobs of manifest {digest} are not in the store; upload every blob before the manifest"
                ),
            })?;
        self.store_manifest(&reference.with_digest(&digest), &digest, manifest)
            .await?;
        Ok(pulled)
    }

    pub(crate) fn manifest_path(&self, reference: &Reference, tag_or_digest: &str) -> PathBuf {
        let mut path = self.root.join("manifests").join(reference.registry());
        for segment in reference.repository().split('/') {
            path.push(segment);
        }
        path.join(tag_or_digest).join("manifest.json")
    }

    /// Records a pulled manifest under its digest and, for a tag reference, its tag.
    pub(crate) async fn store_manifest(
        &self,
        reference: &Reference,
        digest: &str,
        body: &[u8],
    ) -> Result<()> {
        let mut names = vec![digest.to_owned()];
        if reference.digest().is_none()
            && let Some(tag) = reference.tag()
        {
            names.push(tag.to_owned());
        }
        for name in names {
            let path = self.manifest_path(reference, &name);
            let dir = path.parent().expect("manifest path has a parent");
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(io_error("create directory", dir))?;
            let tmp = self.temp_file()?;
            tokio::fs::write(&tmp, body)
                .await
                .map_err(io_error("write", tmp.to_path_buf()))?;
            tmp.persist(&path)
                .map_err(|e| io_error("write", &path)(e.error))?;
        }
        Ok(())
    }

    fn temp_dir(&self) -> Result<PathBuf> {
        let dir = self.root.join("tmp");
        std::fs::create_dir_all(&dir).map_err(io_error("create directory", &dir))?;
        Ok(dir)
    }

    fn temp_file(&self) -> Result<tempfile::TempPath> {
        let dir = self.temp_dir()?;
        Ok(tempfile::NamedTempFile::new_in(&dir)
            .map_err(io_error("create a file in", &dir))?
            .into_temp_path())
    }

    fn blob_dir(&self) -> Result<PathBuf> {
        let dir = self.root.join("blobs").join("sha256");
        std::fs::create_dir_all(&dir).map_err(io_error("create directory", &dir))?;
        Ok(dir)
    }

    /// A writer that streams a blob into the cache and verifies it on [`BlobWriter::finish`].
    pub(crate) async fn blob_writer(&self, digest: &str) -> Result<BlobWriter> {
        let dest = self.blob_path(digest)?;
        self.blob_dir()?;
        let dir = self.temp_dir()?;
        let (file, tmp) = tempfile::NamedTempFile::new_in(&dir)
            .map_err(io_error("create a file in", &dir))?
            .into_parts();
        Ok(BlobWriter {
            file: tokio::fs::File::from_std(file),
            tmp,
            hasher: sha2::Sha256::new(),
            len: 0,
            digest: digest.to_owned(),
            dest,
        })
    }

    /// Stores `bytes` (checked against `digest`, when one is given) and returns their digest
    /// and cached path.
    pub(crate) async fn insert_bytes(
        &self,
        digest: Option<&str>,
        bytes: &[u8],
        what: &'static str,
    ) -> Result<(String, PathBuf)> {
        let actual = wisp_app::sha256_digest(bytes);
        if let Some(expected) = digest
            && expected != actual
        {
            return Err(OciError::DigestMismatch {
                what,
                digest: expected.to_owned(),
                actual,
            });
        }
        let mut writer = self.blob_writer(&actual).await?;
        if writer.dest.is_file() {
            return Ok((actual, writer.dest.clone()));
        }
        writer.write(bytes).await?;
        let path = writer.finish().await?;
        Ok((actual, path))
    }

    /// Reads a cached blob of at most `limit` bytes, re-checking its digest.
    pub(crate) async fn read_small_blob(
        &self,
        path: &Path,
        digest: &str,
        what: &'static str,
        limit: u64,
    ) -> Result<Vec<u8>> {
        let len = tokio::fs::metadata(path)
            .await
            .map_err(io_error("read", path))?
            .len();
        if len > limit {
            return Err(OciError::TooLarge {
                what,
                digest: digest.to_owned(),
                size: len,
                limit,
            });
        }
        let bytes = tokio::fs::read(path)
            .await
            .map_err(io_error("read", path))?;
        let actual = wisp_app::sha256_digest(&bytes);
        if actual != digest {
            return Err(OciError::DigestMismatch {
                what,
                digest: digest.to_owned(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Copies `reader` into the cache (blocking), naming the blob by the digest of what was
    /// read; stops with an error past `limit` bytes. Returns `(digest, size)`.
    pub(crate) fn insert_reader_blocking(
        &self,
        reader: &mut dyn Read,
        limit: u64,
        name: &str,
    ) -> Result<(String, u64)> {
        let dir = self.temp_dir()?;
        self.blob_dir()?;
        let mut tmp =
            tempfile::NamedTempFile::new_in(&dir).map_err(io_error("create a file in", &dir))?;
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut len = 0u64;
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(io_error("unpack", PathBuf::from(name)))?;
            if n == 0 {
                break;
            }
            len += n as u64;
            if len > limit {
                return Err(OciError::TooLarge {
                    what: "archive entry",
                    digest: name.to_owned(),
                    size: len,
                    limit,
                });
            }
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n])
                .map_err(io_error("write", tmp.path().to_path_buf()))?;
        }
        let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
        let dest = self.blob_path(&digest)?;
        if !dest.is_file() {
            tmp.persist(&dest)
                .map_err(|e| io_error("write", &dest)(e.error))?;
        }
        Ok((digest, len))
    }

    /// Marker recording that an archive blob's entries were unpacked into the cache.
    pub(crate) fn unpacked_marker(&self, digest: &str) -> Result<PathBuf> {
        let path = self.blob_path(digest)?;
        let hex = path.file_name().expect("blob path has a name").to_owned();
        Ok(self.root.join("unpacked").join(hex))
    }
}

/// Streams one blob into the cache's temporary directory while hashing it.
pub(crate) struct BlobWriter {
    file: tokio::fs::File,
    tmp: tempfile::TempPath,
    hasher: sha2::Sha256,
    len: u64,
    digest: String,
    dest: PathBuf,
}

impl BlobWriter {
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        self.file
            .write_all(bytes)
            .await
            .map_err(io_error("write", self.tmp.to_path_buf()))
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn digest_so_far(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }

    /// Verifies the digest and moves the blob into place; on mismatch nothing is cached.
    pub(crate) async fn finish(mut self) -> Result<PathBuf> {
        let actual = self.digest_so_far();
        if actual != self.digest {
            return Err(OciError::DigestMismatch {
                what: "layer",
                digest: self.digest,
                actual,
            });
        }
        self.file
            .flush()
            .await
            .map_err(io_error("write", self.tmp.to_path_buf()))?;
        // On disk before it gets its final name: a crash must not leave a short file
        // under a digest that is trusted from then on.
        self.file
            .sync_all()
            .await
            .map_err(io_error("write", self.tmp.to_path_buf()))?;
        drop(self.file);
        let dest = self.dest;
        self.tmp
            .persist(&dest)
            .map_err(|e| io_error("write", &dest)(e.error))?;
        Ok(dest)
    }
}
