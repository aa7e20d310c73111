//! Remembered digests of local component sources, so an unchanged source is not read and
//! hashed again at every start: a JavaScript or Python runtime is 12 to 40 MB, and its
//! sha256 alone took about 20 ms of a warm `wisp up`.
//!
//! A record holds the file's identity on disk (device, inode, size, modification and
//! change times in nanoseconds) and its digest, and is used only while the file's identity
//! is exactly that. Any write to the file moves its change time (which no user call can set
//! back), so a record cannot outlive the contents it describes, with one exception handled
//! here: the kernel stamps times from a clock that ticks every few milliseconds, so a write
//! in the same tick as the read could leave the identity unchanged. A record is therefore
//! only written for a file that had not changed for [`SETTLED`] before it was read (as git
//! treats "racily clean" index entries); a source written just before a start is hashed
//! again at the next one.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How long a file must have been unchanged before it was read for its digest to be kept.
const SETTLED: Duration = Duration::from_secs(2);

/// First word of a record: changes with the record's layout.
const LAYOUT: &str = "wisp-digest-v1";

/// A file's identity on disk: changes whenever its contents may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    device: u64,
    inode: u64,
    size: u64,
    modified_ns: i128,
    changed_ns: i128,
}

impl Identity {
    /// The identity of the regular file at `path` (symlinks followed), if it is one. Read
    /// from the opened file, not the path: opening makes a network filesystem (NFS)
    /// revalidate the attributes it caches, which a `stat` of the path may serve stale.
    pub(crate) fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = crate::source::open_regular_file(path, true)
            .ok()?
            .metadata()
            .ok()?;
        let ns = |secs: i64, nanos: i64| i128::from(secs) * 1_000_000_000 + i128::from(nanos);
        Some(Self {
            device: meta.dev(),
            inode: meta.ino(),
            size: meta.size(),
            modified_ns: ns(meta.mtime(), meta.mtime_nsec()),
            changed_ns: ns(meta.ctime(), meta.ctime_nsec()),
        })
    }

    /// Whether the file had been unchanged for [`SETTLED`] at `read_at`.
    fn settled_at(&self, read_at: SystemTime) -> bool {
        let Ok(since_epoch) = read_at.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let limit = since_epoch.saturating_sub(SETTLED).as_nanos() as i128;
        self.modified_ns < limit && self.changed_ns < limit
    }

    fn to_record(self, digest: &str) -> String {
        format!(
            "{LAYOUT} {} {} {} {} {} {digest}\n",
            self.device, self.inode, self.size, self.modified_ns, self.changed_ns
        )
    }

    fn from_record(text: &str) -> Option<(Self, &str)> {
        let mut words = text.split_ascii_whitespace();
        if words.next()? != LAYOUT {
            return None;
        }
        let identity = Self {
            device: words.next()?.parse().ok()?,
            inode: words.next()?.parse().ok()?,
            size: words.next()?.parse().ok()?,
            modified_ns: words.next()?.parse().ok()?,
            changed_ns: words.next()?.parse().ok()?,
        };
        let digest = words.next()?;
        let is_digest = digest.len() == "sha256:".len() + 64
            && digest.starts_with("sha256:")
            && digest["sha256:".len()..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        (is_digest && words.next().is_none()).then_some((identity, digest))
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }
}

/// Where the record of `path` lives in `dir`: named by a hash of the path.
fn record_path(dir: &Path, path: &Path) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let name = crate::sha256_digest(path.as_os_str().as_bytes());
    dir.join(&name["sha256:".len()..])
}

/// The digest remembered in `dir` for the file at `path`, if the file is exactly as it was
/// when that digest was computed (`identity`: its identity now).
pub(crate) fn remembered(dir: &Path, path: &Path, identity: Identity) -> Option<String> {
    let text = std::fs::read_to_string(record_path(dir, path)).ok()?;
    let (recorded, digest) = Identity::from_record(&text)?;
    (recorded == identity).then(|| digest.to_owned())
}

/// Remembers `digest` for the file at `path`, read at `read_at` while its identity was
/// `before`, if it had settled by then and is still the same file. Best effort: a cache
/// that cannot be written only costs the next start a read.
pub(crate) fn remember(
    dir: &Path,
    path: &Path,
    before: Identity,
    read_at: SystemTime,
    digest: &str,
) {
    if !before.settled_at(read_at) || Identity::of(path) != Some(before) {
        return;
    }
    let record = record_path(dir, path);
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        record.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&temp, before.to_record(digest)))
        .and_then(|()| std::fs::rename(&temp, &record));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets a file's modification time `age` into the past (its change time becomes now).
    fn age(path: &Path, age: Duration) {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
    }

    #[test]
    fn a_settled_unchanged_file_is_remembered_and_any_change_forgets_it() {
        let dir = tempfile::tempdir().unwrap();
        let memo = dir.path().join("digests");
        let source = dir.path().join("app.wasm");
        std::fs::write(&source, b"first contents").unwrap();
        age(&source, Duration::from_secs(60));
        let digest = crate::sha256_digest(b"first contents");

        // Just written (its change time is now): not settled, nothing kept.
        let before = Identity::of(&source).unwrap();
        remember(&memo, &source, before, SystemTime::now(), &digest);
        assert_eq!(remembered(&memo, &source, before), None);

        // Read long enough after its last change: kept, and found while unchanged.
        let later = SystemTime::now() + SETTLED + Duration::from_secs(1);
        remember(&memo, &source, before, later, &digest);
        let now = Identity::of(&source).unwrap();
        assert_eq!(remembered(&memo, &source, now), Some(digest.clone()));

        // Rewritten with contents of the same size, and its modification time put back:
        // the change time still moved, so the record no longer applies.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&source, b"other contents").unwrap();
        age(&source, Duration::from_secs(60));
        let changed = Identity::of(&source).unwrap();
        assert_eq!(changed.size(), before.size());
        assert_ne!(changed, before);
        assert_eq!(remembered(&memo, &source, changed), None);

        // Replaced by another file (a build writing a new one and renaming it over).
        let replacement = dir.path().join("new.wasm");
        std::fs::write(&replacement, b"first contents").unwrap();
        std::fs::rename(&replacement, &source).unwrap();
        assert_eq!(
            remembered(&memo, &source, Identity::of(&source).unwrap()),
            None
        );

        // A file that changed between the read and the record is not remembered.
        let moved = Identity::of(&source).unwrap();
        std::fs::write(&source, b"third contents, longer").unwrap();
        remember(&memo, &source, moved, later, &digest);
        assert_eq!(
            remembered(&memo, &source, Identity::of(&source).unwrap()),
            None
        );
    }

    #[test]
    fn damaged_records_are_ignored() {
        let identity = Identity {
            device: 1,
            inode: 2,
            size: 3,
            modified_ns: 4,
            changed_ns: 5,
        };
        let digest = crate::sha256_digest(b"x");
        let record = identity.to_record(&digest);
        assert_eq!(
            Identity::from_record(&record),
            Some((identity, digest.as_str()))
        );
        for damaged in [
            record.replace(LAYOUT, "wisp-digest-v0"),
            record.replace("sha256:", "sha512:"),
            record.replace(&digest, &digest[..20]),
            record.replace(
                &digest,
                &digest.to_uppercase().replace("SHA256:", "sha256:"),
            ),
            format!("{} extra\n", record.trim_end()),
            record[..record.len() / 2].to_owned(),
            String::new(),
        ] {
            assert_eq!(Identity::from_record(&damaged), None, "{damaged:?}");
        }
    }
}
