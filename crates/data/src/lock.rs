//! One writer per directory: an exclusive advisory lock held for a writer's whole life.
//!
//! A run directory (or a `reproduce` results directory) written by two processes at once ends
//! up with interleaved metrics and checkpoints of two runs and no trace of it. So a writer
//! takes [`DirLock`] first, and a second writer is refused at once with the holder's PID and
//! command line. The lock is the kernel's (`flock` through `std::fs::File::try_lock`), tied to
//! the open file: it is released when its holder exits in any way, `kill -9` included, so the
//! lock *file* left behind never blocks anyone. Readers (reports, evaluation) never take it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// The lock file inside a locked directory. It holds the current (or last) holder's PID,
/// command line and start time, for the message a second writer gets.
pub const LOCK_FILE: &str = ".writer.lock";

/// An exclusive lock on a directory, held until dropped (or the process ends).
#[derive(Debug)]
pub struct DirLock {
    /// Kept open: closing it releases the lock.
    _file: File,
    dir: PathBuf,
}

impl DirLock {
    /// Locks `dir` (created if missing) for this process, or fails with
    /// [`DataError::Locked`] naming the holder when another process has it.
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        let path = dir.join(LOCK_FILE);
        // Not truncated on open: the holder's details must survive a refused second writer.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| DataError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(DataError::Locked {
                    dir: dir.to_path_buf(),
                    holder: if holder.is_empty() {
                        "a process that has not written its details yet".into()
                    } else {
                        holder.replace('\n', ", ")
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(DataError::io(&path, e)),
        }
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let details = format!(
            "pid {}\ncommand: {}\nsince: {since} (seconds since 1970)\n",
            std::process::id(),
            std::env::args().collect::<Vec<_>>().join(" ")
        );
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(details.as_bytes()))
            .and_then(|()| file.sync_all())
            .map_err(|e| DataError::io(&path, e))?;
        Ok(DirLock {
            _file: file,
            dir: dir.to_path_buf(),
        })
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_with_the_holder_and_admitted_after_release() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let first = DirLock::acquire(&dir).unwrap();
        assert_eq!(first.dir(), dir);
        // A second open file description conflicts even within one process (flock semantics).
        let refused = DirLock::acquire(&dir).unwrap_err();
        let message = refused.to_string();
        assert!(
            message.contains(&dir.display().to_string())
                && message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        drop(first);
        // The lock file stays behind and does not block.
        assert!(dir.join(LOCK_FILE).is_file());
        let again = DirLock::acquire(&dir).unwrap();
        drop(again);
    }
}
