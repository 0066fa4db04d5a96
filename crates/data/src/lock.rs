//! One writer per directory: an exclusive advisory lock held for a writer's whole life.
//!
//! A run directory (or a `reproduce` results directory) written by two processes at once ends
//! up with interleaved metrics and checkpoints of two runs and no trace of it. So a writer
//! takes [`DirLock`] first, and a second writer is refused at once with the holder's PID and
//! command line. The lock is the kernel's (`flock` through `std::fs::File::try_lock`), tied to
//! the open file: it is released when its holder exits in any way, `kill -9` included, so the
//! lock *file* left behind never blocks anyone. Readers (reports, evaluation) never take it.
//!
//! One subtlety: `std::process::Command` forks, and until the child's `exec` closes them it
//! holds copies of all of this process's open files, lock files included; `flock` stays taken
//! while any copy is open. So a directory this process has just released can look taken for a
//! moment when another of its threads is spawning a process (a trainer asks `git` for the
//! commit). This process keeps a registry of the directories it holds: a refusal that names
//! this process as the holder while no [`DirLock`] of ours is alive is such a leftover copy,
//! and the acquire retries for a bounded time instead of failing.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

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
    /// The directory's canonical path, this lock's entry in [`held`].
    key: PathBuf,
}

/// The directories this process holds locks on, by canonical path.
fn held() -> MutexGuard<'static, BTreeSet<PathBuf>> {
    static HELD: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());
    // A set of paths cannot be left inconsistent by a panic elsewhere.
    HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How long an acquire waits out copies of a released lock held by this process's forked
/// children: a child closes them at its `exec`, within milliseconds.
const FORK_GRACE: Duration = Duration::from_secs(5);

impl DirLock {
    /// Locks `dir` (created if missing) for this process, or fails with
    /// [`DataError::Locked`] naming the holder when another process (or another live
    /// `DirLock` in this one) has it.
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        let key = dir.canonicalize().map_err(|e| DataError::io(dir, e))?;
        let path = dir.join(LOCK_FILE);
        // Not truncated on open: the holder's details must survive a refused second writer.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| DataError::io(&path, e))?;
        let pid_line = format!("pid {}", std::process::id());
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.seek(SeekFrom::Start(0));
                    let _ = file.read_to_string(&mut holder);
                    let holder = holder.trim();
                    let leftover_copy = holder.lines().next() == Some(pid_line.as_str())
                        && !held().contains(&key)
                        && started.elapsed() < FORK_GRACE;
                    if leftover_copy {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
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
        }
        // Registered before anything else can fail, so that Drop's removal always matches.
        held().insert(key.clone());
        let lock = DirLock {
            _file: file,
            dir: dir.to_path_buf(),
            key,
        };
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let details = format!(
            "{pid_line}\ncommand: {}\nsince: {since} (seconds since 1970)\n",
            std::env::args().collect::<Vec<_>>().join(" ")
        );
        let mut file = &lock._file;
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(details.as_bytes()))
            .and_then(|()| file.sync_all())
            .map_err(|e| DataError::io(&path, e))?;
        Ok(lock)
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // The file closes after this (fields drop after `drop`), so for a moment the registry
        // says "not held" while the lock still is: an acquire in that window sees our PID,
        // finds no entry and retries, which is right.
        held().remove(&self.key);
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

    /// `std::process::Command` forks: for a moment before its `exec`, the child holds copies of
    /// every open file of this process, our lock files included, and `flock` stays taken while
    /// any copy is open. So a directory released by one thread can look taken to the next
    /// acquire when another thread is spawning a process. That is not a second writer.
    #[test]
    fn a_released_lock_is_free_again_while_other_threads_spawn_processes() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        let _ = std::process::Command::new("true").status();
                    }
                });
            }
            let outcome = (0..500).try_for_each(|i| {
                DirLock::acquire(&dir)
                    .map(drop)
                    .map_err(|e| format!("acquire {i}: {e}"))
            });
            stop.store(true, Ordering::Relaxed);
            outcome.unwrap();
        });
    }
}
