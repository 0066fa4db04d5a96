//! Writing a whole output directory atomically.

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// Runs `write` on a hidden sibling directory `.<name>.partial-<pid>` and renames it to `out` only
/// when `write` succeeds; on failure the partial directory is removed. An interrupted run therefore
/// never leaves anything that looks finished at `out`. `out` must not exist unless `overwrite`, and
/// an existing `out` is replaced only once the new one is complete.
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
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| DataError::io(&parent, e))?;
    let tmp = hidden_sibling(out, "out", "partial")?;
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    match write(&tmp) {
        Ok(value) => {
            if out.exists() {
                let old = hidden_sibling(out, "out", "old")?;
                std::fs::rename(out, &old).map_err(|e| DataError::io(out, e))?;
                std::fs::rename(&tmp, out).map_err(|e| DataError::io(out, e))?;
                std::fs::remove_dir_all(&old).map_err(|e| DataError::io(&old, e))?;
            } else {
                std::fs::rename(&tmp, out).map_err(|e| DataError::io(out, e))?;
            }
            Ok(value)
        }
        Err(e) => {
            // Best effort: the error that stopped us matters more than a failed cleanup.
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// Writes `text` to `path` through a sibling temporary file and a rename, so `path` holds either
/// its old content or the whole new text, never a torn write.
pub fn write_file_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = hidden_sibling(path, "path", "partial")?;
    let result = std::fs::write(&tmp, text)
        .map_err(|e| DataError::io(&tmp, e))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e)));
    if result.is_err() {
        // Best effort: the error that stopped us matters more than a failed cleanup.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `.<name>.<tag>-<pid>` beside `path`: hidden, and unique to this process. `field` names the
/// argument in the error when `path` has no final component.
fn hidden_sibling(path: &Path, field: &str, tag: &str) -> Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| DataError::config(field, "has no final component"))?
        .to_string_lossy();
    Ok(path.with_file_name(format!(".{name}.{tag}-{}", std::process::id())))
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
