//! Writing a whole output directory or file atomically: mixlab-atomic's writer (unique
//! temporaries, fsync of the data and of the directory, rename) with this crate's errors and its
//! `--overwrite` rule.

use std::path::Path;

use crate::error::{DataError, Result};

impl From<mixlab_atomic::WriteError> for DataError {
    fn from(e: mixlab_atomic::WriteError) -> Self {
        DataError::io(e.path, e.source)
    }
}

/// Runs `write` on a hidden temporary sibling directory and renames it to `out` only when `write`
/// succeeds; on failure (or a panic) the temporary is removed. An interrupted run therefore never
/// leaves anything that looks finished at `out`. `out` must not exist unless `overwrite`, and an
/// existing `out` is replaced only once the new one is complete.
pub fn write_dir_atomically<T>(
    out: &Path,
    overwrite: bool,
    write: impl FnOnce(&Path) -> Result<T>,
) -> Result<T> {
    if out.exists() && !overwrite {
        return Err(DataError::BadInput {
            path: out.to_path_buf(),
            reason: "output already exists (pass --overwrite to replace it)".into(),
        });
    }
    mixlab_atomic::write_dir(out, write)
}

/// Writes `text` to `path` through a synced temporary sibling and a rename, so `path` holds either
/// its old content or the whole new text, never a torn write.
pub fn write_file_atomically(path: &Path, text: &str) -> Result<()> {
    Ok(mixlab_atomic::write_file(path, text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_replaced_whole_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.json");
        write_file_atomically(&path, "one").expect("write");
        write_file_atomically(&path, "two").expect("replace");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "two");
        let names: Vec<_> = std::fs::read_dir(dir.path()).expect("list").collect();
        assert_eq!(names.len(), 1, "only the file itself remains");
        let missing_dir = dir.path().join("nope").join("b.json");
        let err = write_file_atomically(&missing_dir, "x").expect_err("no directory");
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
