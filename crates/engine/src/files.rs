//! A component's files on the host: its `files` staged into a directory of their own
//! (mounted read-only at `/`), and its `--log-dir` output files.

use crate::EngineError;
use std::path::{Component as PathComponent, Path, PathBuf};
use std::sync::Arc;
use wisp_app::LockedComponent;

/// `<dir>/<id>_stdout.txt` and `<dir>/<id>_stderr.txt`, opened for appending (the
/// directory is created).
pub(crate) fn open_log_files(
    dir: &Path,
    id: &str,
) -> Result<(crate::host::LogFile, crate::host::LogFile), EngineError> {
    let open = |name: String| {
        let path = dir.join(name);
        std::fs::create_dir_all(dir)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
            })
            .map(|file| Arc::new(std::sync::Mutex::new(file)))
            .map_err(|source| EngineError::Files {
                component: id.to_owned(),
                path,
                source,
            })
    };
    Ok((
        open(format!("{id}_stdout.txt"))?,
        open(format!("{id}_stderr.txt"))?,
    ))
}

/// Copies a component's files into its own directory so the guest sees exactly its
/// `files` and nothing else, mounted read-only.
pub(crate) fn stage_files(
    locked: &LockedComponent,
    files_root: &Path,
) -> Result<Option<PathBuf>, EngineError> {
    if locked.files.is_empty() {
        return Ok(None);
    }
    let files_error = |path: &Path, source: std::io::Error| EngineError::Files {
        component: locked.id.clone(),
        path: path.to_path_buf(),
        source,
    };
    // The id names a directory that is emptied and refilled: it must be one plain path
    // segment (LockedApp::check enforces kebab-case; this guards the filesystem anyway).
    if Path::new(&locked.id).components().count() != 1
        || !matches!(
            Path::new(&locked.id).components().next(),
            Some(PathComponent::Normal(_))
        )
    {
        return Err(files_error(
            Path::new(&locked.id),
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a component id must be a single path segment",
            ),
        ));
    }
    // Each set of contents is staged in a directory of its own, named by a hash of the
    // files' guest paths, sources, sizes and modification times: a reload never rewrites
    // files that instances of the previous version still read (they keep their
    // directory), and loading unchanged files again (the node's lazy load) copies
    // nothing.
    let component_dir = files_root.join(&locked.id);
    let key = files_key(locked);
    let root = component_dir.join(&key);
    let done = component_dir.join(format!("{key}.done"));
    if done.is_file() && root.is_dir() {
        return Ok(Some(root));
    }
    if root.exists() {
        std::fs::remove_dir_all(&root).map_err(|e| files_error(&root, e))?;
    }
    std::fs::create_dir_all(&root).map_err(|e| files_error(&root, e))?;
    for file in &locked.files {
        let rel: PathBuf = Path::new(&file.path)
            .components()
            .filter_map(|c| match c {
                PathComponent::Normal(p) => Some(Ok(p)),
                PathComponent::RootDir | PathComponent::CurDir => None,
                _ => Some(Err(())),
            })
            .collect::<Result<_, ()>>()
            .map_err(|()| {
                files_error(
                    Path::new(&file.path),
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "guest paths may not contain `..`",
                    ),
                )
            })?;
        let dest = root.join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| files_error(parent, e))?;
        }
        // The LockedApp records real paths (resolution follows and checks links), so a
        // symlink here appeared afterwards: refuse it rather than follow it out of the app.
        let mut source = wisp_app::open_regular_file(&file.source, false).map_err(|source| {
            EngineError::FileRefused {
                component: locked.id.clone(),
                source,
            }
        })?;
        let mut out = std::fs::File::create(&dest).map_err(|e| files_error(&dest, e))?;
        std::io::copy(&mut source, &mut out).map_err(|e| files_error(&file.source, e))?;
    }
    std::fs::write(&done, b"").map_err(|e| files_error(&done, e))?;
    remove_older_stagings(&component_dir, &key);
    Ok(Some(root))
}

/// Names a component's staged files by what they are: guest path, source path, size and
/// modification time of each (content-addressed sources make this their content).
fn files_key(locked: &LockedComponent) -> String {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    for file in &locked.files {
        let (len, modified) = std::fs::metadata(&file.source)
            .map(|m| (m.len(), m.modified().ok()))
            .unwrap_or((0, None));
        let modified = modified
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        hasher.update(file.path.as_bytes());
        hasher.update([0]);
        hasher.update(file.source.as_os_str().as_encoded_bytes());
        hasher.update([0]);
        hasher.update(len.to_le_bytes());
        hasher.update(modified.to_le_bytes());
    }
    hex::encode(&hasher.finalize()[..8])
}

/// Keeps the staging `key` and the newest other one (a previous version may still serve
/// requests from it); removes the rest. Best effort: a failure only leaves files behind.
fn remove_older_stagings(component_dir: &Path, key: &str) {
    let Ok(entries) = std::fs::read_dir(component_dir) else {
        return;
    };
    let mut others: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.path().is_dir() && e.file_name() != key)
        .map(|e| {
            let modified = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (modified, e.path())
        })
        .collect();
    others.sort();
    others.pop();
    for (_, dir) in others {
        let _ = std::fs::remove_file(dir.with_extension("done"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
