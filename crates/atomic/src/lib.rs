//! Whole-or-nothing writes, used by every mixlab writer (datasets, run files, checkpoints,
//! reports, figures, weight tables).
//!
//! A reader, or a process that was killed or lost power, sees at `path` either what was there
//! before or the complete new content, never a prefix:
//!
//! 1. the content goes to a temporary sibling with a unique name (`.<name>.<random>.partial`;
//!    hidden, in the same directory so that the rename stays on one filesystem; unique across the
//!    threads and processes of `reproduce --jobs`);
//! 2. the file (for a directory: every file and directory in it) is fsynced, so the data is on
//!    disk before its name is;
//! 3. it is renamed over `path`, and the parent directory is fsynced, so the new name survives a
//!    crash too.
//!
//! On any failure (or a panic while a directory is being filled) the temporary is removed and
//! the error names the path and keeps the OS error (e.g. "No space left on device").

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A write that did not complete; `path` is the file or directory concerned.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct WriteError {
    /// What was being written (the target, or the temporary or parent directory that failed).
    pub path: PathBuf,
    /// The operating system's error.
    #[source]
    pub source: io::Error,
}

impl WriteError {
    fn new(path: &Path, source: io::Error) -> WriteError {
        WriteError {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The directory holding `path` (`.` for a bare file name), and `path`'s final component.
fn split(path: &Path) -> Result<(PathBuf, String), WriteError> {
    let name = path
        .file_name()
        .ok_or_else(|| {
            WriteError::new(
                path,
                io::Error::new(io::ErrorKind::InvalidInput, "not a file or directory name"),
            )
        })?
        .to_string_lossy()
        .into_owned();
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name))
}

/// The hidden prefix of a temporary sibling of `name`; tempfile appends random characters and
/// the `.partial` suffix.
fn temp_prefix(name: &str) -> String {
    format!(".{name}.")
}

/// A uniquely named temporary file in `path`'s directory (removed when dropped), and that
/// directory.
fn temp_file_beside(path: &Path) -> Result<(PathBuf, tempfile::NamedTempFile), WriteError> {
    let (parent, name) = split(path)?;
    let prefix = temp_prefix(&name);
    let temp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".partial")
        .tempfile_in(&parent)
        .map_err(|e| WriteError::new(&parent, e))?;
    Ok((parent, temp))
}

/// Writes `bytes` to `path` whole or not at all (see the crate documentation). The parent
/// directory must exist.
pub fn write_file(path: &Path, bytes: impl AsRef<[u8]>) -> Result<(), WriteError> {
    let (parent, mut temp) = temp_file_beside(path)?;
    temp.write_all(bytes.as_ref())
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| WriteError::new(path, e))?;
    // On failure `persist` hands the temporary back, and dropping it removes the file.
    temp.persist(path)
        .map_err(|e| WriteError::new(path, e.error))?;
    sync_dir(&parent)
}

/// Like [`write_file`] for writers that need a path rather than bytes (a library that serialises
/// straight to a file, so a large file is never held in memory twice): `fill` writes the whole
/// content to the temporary path it is given; then the file is synced and renamed over `path`.
/// `fill`'s errors pass through unchanged, and the temporary is removed on any failure.
pub fn write_file_with<E: From<WriteError>>(
    path: &Path,
    fill: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    let (parent, temp) = temp_file_beside(path)?;
    fill(temp.path())?;
    // fsync works on the file, whichever descriptor wrote it.
    temp.as_file()
        .sync_all()
        .map_err(|e| WriteError::new(path, e))?;
    temp.persist(path)
        .map_err(|e| WriteError::new(path, e.error))?;
    Ok(sync_dir(&parent)?)
}

/// Creates `path` (truncating it) with `bytes` and fsyncs it: for files inside a directory that
/// is being filled by [`write_dir`] or that is renamed into place by its caller.
pub fn write_synced(path: &Path, bytes: impl AsRef<[u8]>) -> Result<(), WriteError> {
    let write = || -> io::Result<()> {
        let mut file = File::create(path)?;
        file.write_all(bytes.as_ref())?;
        file.sync_all()
    };
    write().map_err(|e| WriteError::new(path, e))
}

/// fsyncs a directory, so that the names created, renamed or removed in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), WriteError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WriteError::new(dir, e))
}

/// fsyncs every file and directory under `dir`, `dir` included.
pub fn sync_tree(dir: &Path) -> Result<(), WriteError> {
    for entry in std::fs::read_dir(dir).map_err(|e| WriteError::new(dir, e))? {
        let entry = entry.map_err(|e| WriteError::new(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| WriteError::new(&path, e))?;
        if kind.is_dir() {
            sync_tree(&path)?;
        } else if kind.is_file() {
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| WriteError::new(&path, e))?;
        }
    }
    sync_dir(dir)
}

/// Fills a new directory through `fill` and puts it at `out` whole or not at all (see the crate
/// documentation). `fill` receives the temporary directory to write into. An existing `out` is
/// replaced only once the new one is complete; callers that must not replace check first.
///
/// `E` is the caller's error type: `fill`'s errors pass through unchanged, and this function's
/// own I/O errors are converted from [`WriteError`].
pub fn write_dir<T, E: From<WriteError>>(
    out: &Path,
    fill: impl FnOnce(&Path) -> Result<T, E>,
) -> Result<T, E> {
    let (parent, name) = split(out)?;
    std::fs::create_dir_all(&parent).map_err(|e| WriteError::new(&parent, e))?;
    // Removed when dropped: on `fill`'s error, on a panic, and on any failure below.
    let prefix = temp_prefix(&name);
    let temp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".partial")
        .tempdir_in(&parent)
        .map_err(|e| WriteError::new(&parent, e))?;
    let value = fill(temp.path())?;
    sync_tree(temp.path())?;
    if out.exists() {
        // Move the old one aside first: a rename cannot replace a non-empty directory.
        let old = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".old")
            .tempdir_in(&parent)
            .map_err(|e| WriteError::new(&parent, e))?;
        let old_path = old.path().to_path_buf();
        std::fs::rename(out, &old_path).map_err(|e| WriteError::new(out, e))?;
        if let Err(e) = std::fs::rename(temp.path(), out) {
            // Put the old directory back; the new one is removed with `temp`.
            let _ = std::fs::rename(&old_path, out);
            return Err(WriteError::new(out, e).into());
        }
        // `old` now holds the replaced directory, and dropping it removes it.
        drop(old);
    } else {
        std::fs::rename(temp.path(), out).map_err(|e| WriteError::new(out, e))?;
    }
    // The temporary's name is gone; keep `TempDir` from trying to remove it.
    let _ = temp.keep();
    sync_dir(&parent)?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_name_writes_into_the_current_directory_parent() {
        let (parent, name) = split(Path::new("report.md")).unwrap();
        assert_eq!(parent, PathBuf::from("."));
        assert_eq!(name, "report.md");
        let err = split(Path::new("/")).unwrap_err();
        assert!(
            err.to_string().contains("not a file or directory name"),
            "{err}"
        );
    }
}
