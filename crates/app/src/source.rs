//! Reading files an app names (component sources, `files` entries) without trusting them:
//! only regular files, opened without blocking, read up to a size cap.
//!
//! A manifest is user input, often from a cloned repository: `source = "/dev/zero"` must not
//! grow the process without bound, a FIFO must not hang start-up, and a symlink must not
//! smuggle a file from outside the app directory into a guest.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Default cap on the size of one component's Wasm source (256 MiB: the largest real
/// components, interpreters with their standard library, are well under 100 MiB).
pub const DEFAULT_MAX_SOURCE_BYTES: u64 = 256 << 20;

/// Why a file an app names could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file could not be opened or read.
    #[error("cannot read {path}")]
    Io {
        /// Path that failed.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The path names a directory, device, FIFO or socket.
    #[error("{path} is {kind}, not a regular file; point it at a file")]
    NotRegular {
        /// Path at fault.
        path: PathBuf,
        /// What it is instead ("a directory", "a FIFO", ...).
        kind: &'static str,
    },
    /// The path is a symlink where none is allowed.
    #[error("{path} is a symlink; refusing to follow it (copy the file in its place)")]
    Symlink {
        /// Path at fault.
        path: PathBuf,
    },
    /// The file is larger than the cap.
    #[error(
        "{path} is larger than the {limit_mib} MiB limit for a component source; raise --max-component-size-mb if the file is genuine"
    )]
    TooLarge {
        /// Path at fault.
        path: PathBuf,
        /// The cap, in MiB.
        limit_mib: u64,
    },
}

/// What a file type is, in words, for errors.
fn kind_of(file_type: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_symlink() {
        "a symlink"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for reading if it is a regular file. The open never blocks (a FIFO would
/// wait for a writer) and the type is checked on the opened file, so a file swapped after
/// a check cannot slip through. With `follow_symlinks = false` a symlink at the last
/// component is refused.
pub fn open_regular_file(path: &Path, follow_symlinks: bool) -> Result<std::fs::File, SourceError> {
    let io = |source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut flags = rustix::fs::OFlags::NONBLOCK.bits();
    if !follow_symlinks {
        flags |= rustix::fs::OFlags::NOFOLLOW.bits();
    }
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags as i32)
        .open(path)
    {
        Ok(file) => file,
        // O_NOFOLLOW on a symlink fails with ELOOP.
        Err(err)
            if !follow_symlinks
                && err.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) =>
        {
            return Err(SourceError::Symlink {
                path: path.to_path_buf(),
            });
        }
        Err(err) => return Err(io(err)),
    };
    let file_type = file.metadata().map_err(io)?.file_type();
    if !file_type.is_file() {
        return Err(SourceError::NotRegular {
            path: path.to_path_buf(),
            kind: kind_of(file_type),
        });
    }
    Ok(file)
}

/// The `sha256:` digest of the component source at `path` (a regular file of at most
/// `max_bytes`, symlinks followed): remembered in `memo` (a directory) while the file is
/// unchanged, so a large unchanged source is not read and hashed at every start.
pub(crate) fn source_digest(
    path: &Path,
    max_bytes: u64,
    memo: Option<&Path>,
) -> Result<String, SourceError> {
    #[cfg(unix)]
    if let Some(dir) = memo
        && let Some(identity) = crate::digest_memo::Identity::of(path)
        && identity.size() <= max_bytes
    {
        if let Some(digest) = crate::digest_memo::remembered(dir, path, identity) {
            return Ok(digest);
        }
        let read_at = std::time::SystemTime::now();
        let digest = crate::sha256_digest(&read_source(path, max_bytes)?);
        crate::digest_memo::remember(dir, path, identity, read_at, &digest);
        return Ok(digest);
    }
    #[cfg(not(unix))]
    let _ = memo;
    Ok(crate::sha256_digest(&read_source(path, max_bytes)?))
}

/// Reads a regular file of at most `max_bytes` bytes (symlinks followed: a component's
/// source may live anywhere the user points it).
pub fn read_source(path: &Path, max_bytes: u64) -> Result<Vec<u8>, SourceError> {
    let file = open_regular_file(path, true)?;
    let mut bytes = Vec::new();
    // Read one byte past the cap to tell "exactly at the cap" from "over it"; the file may
    // grow after its metadata was read, so the cap is enforced on the read itself.
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| SourceError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > max_bytes {
        return Err(SourceError::TooLarge {
            path: path.to_path_buf(),
            limit_mib: max_bytes >> 20,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_and_directories_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        )
        .unwrap();
        for (path, kind) in [
            (Path::new("/dev/zero"), "a character device"),
            (fifo.as_path(), "a FIFO"),
            (dir.path(), "a directory"),
        ] {
            match read_source(path, 1 << 20) {
                Err(SourceError::NotRegular { kind: found, .. }) => assert_eq!(found, kind),
                other => panic!("{}: {other:?}", path.display()),
            }
        }
    }

    #[test]
    fn sizes_are_capped_on_the_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.wasm");
        std::fs::write(&path, vec![7u8; 4096]).unwrap();
        assert_eq!(read_source(&path, 4096).unwrap().len(), 4096);
        let err = read_source(&path, 4095).unwrap_err();
        assert!(matches!(err, SourceError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("--max-component-size-mb"), "{err}");
    }

    #[test]
    fn symlinks_are_refused_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.txt");
        std::fs::write(&target, "x").unwrap();
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(open_regular_file(&link, true).is_ok());
        assert!(matches!(
            open_regular_file(&link, false),
            Err(SourceError::Symlink { .. })
        ));
    }
}
