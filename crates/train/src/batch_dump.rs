//! `--dump-batches`: the token ids of every micro-batch of every step, in training order, so
//! that another implementation (`benches/pytorch_reference.py`) can replay the exact run.
//!
//! The file is one NumPy `.npy` array (format 1.0), dtype little-endian `uint32`, shape
//! `[steps, micro_batches, micro_batch_size, seq_len + 1]`: row `r` of micro-batch `m` of step
//! `s` (0-based) holds the inputs `[:-1]` and the shifted targets `[1:]` of one sequence, the
//! micro-batches in the order the loop runs them. `numpy.load(path)` reads it.
//!
//! The header has a fixed size with room for the step count to grow, and it is rewritten after
//! every step, so the file is a valid array of the steps written so far at any moment (a
//! stopped run's dump can be read). Before each checkpoint the file is synced, so a resume
//! finds at least the checkpoint's steps; it cuts the file back to them and goes on.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Result, TrainError};

/// Bytes before the data: magic, version, header length and the padded header dictionary
/// (room for four 20-digit dimensions, a multiple of 64 as NumPy aligns its data).
const HEADER_BYTES: usize = 192;
/// NumPy's magic string and format version 1.0.
const MAGIC: &[u8; 8] = b"\x93NUMPY\x01\x00";
/// The dtype the dump is written in.
const DESCR: &str = "<u4";

/// An open batch dump.
pub struct BatchDump {
    file: File,
    path: PathBuf,
    /// `[micro_batches, micro_batch_size, seq_len + 1]`.
    tail: [usize; 3],
    /// Steps in the file.
    steps: u64,
}

/// The header of a dump of `steps` steps of `tail`-shaped blocks.
fn header(steps: u64, tail: [usize; 3]) -> Vec<u8> {
    let dict = format!(
        "{{'descr': '{DESCR}', 'fortran_order': False, 'shape': ({steps}, {}, {}, {}), }}",
        tail[0], tail[1], tail[2]
    );
    let mut out = MAGIC.to_vec();
    let dict_len = HEADER_BYTES - MAGIC.len() - 2;
    out.extend_from_slice(&(dict_len as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    debug_assert!(
        out.len() < HEADER_BYTES,
        "the shape fits the reserved header"
    );
    // NumPy pads the dictionary with spaces and ends it with a newline, so the data starts at
    // a multiple of 64 bytes.
    out.resize(HEADER_BYTES - 1, b' ');
    out.push(b'\n');
    out
}

/// The step count and block shape of a header this module wrote, `None` for anything else.
fn parse_header(bytes: &[u8]) -> Option<(u64, [usize; 3])> {
    if bytes.len() != HEADER_BYTES || &bytes[..MAGIC.len()] != MAGIC {
        return None;
    }
    let dict_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    if dict_len != HEADER_BYTES - MAGIC.len() - 2 {
        return None;
    }
    let dict = std::str::from_utf8(&bytes[10..]).ok()?;
    if !dict.contains(&format!("'descr': '{DESCR}'")) || !dict.contains("'fortran_order': False") {
        return None;
    }
    let shape = dict.split("'shape': (").nth(1)?.split(')').next()?;
    let dims: Vec<u64> = shape
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse().ok())
        .collect::<Option<_>>()?;
    match dims.as_slice() {
        [steps, m, b, w] => Some((
            *steps,
            [
                usize::try_from(*m).ok()?,
                usize::try_from(*b).ok()?,
                usize::try_from(*w).ok()?,
            ],
        )),
        _ => None,
    }
}

impl BatchDump {
    fn block_bytes(&self) -> u64 {
        (self.tail.iter().product::<usize>() * 4) as u64
    }

    fn error(&self, reason: impl Into<String>) -> TrainError {
        TrainError::config(
            "dump_batches",
            format!("{}: {}", self.path.display(), reason.into()),
        )
    }

    /// Starts a dump of blocks shaped `[micro_batches, micro_batch_size, seq_len + 1]`;
    /// an existing file is refused, never overwritten.
    pub fn create(path: &Path, tail: [usize; 3]) -> Result<Self> {
        let mut file = OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .open(path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    TrainError::config(
                        "dump_batches",
                        format!(
                            "{} already exists: remove it or choose another file (a fresh run does not overwrite a dump)",
                            path.display()
                        ),
                    )
                } else {
                    TrainError::io(path, e)
                }
            })?;
        file.write_all(&header(0, tail))
            .map_err(|e| TrainError::io(path, e))?;
        Ok(Self {
            file,
            path: path.to_owned(),
            tail,
            steps: 0,
        })
    }

    /// Reopens the dump of a run resumed after `step`: the file must be one this module wrote
    /// for blocks of `tail` and hold at least `step` steps; the steps after `step` (trained
    /// after the checkpoint, and trained again now) are cut off.
    pub fn resume(path: &Path, tail: [usize; 3], step: u64) -> Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .read(true)
            .open(path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    TrainError::config(
                        "dump_batches",
                        format!(
                            "{} does not exist, and the run resumes after step {step}: a dump starts with its run, so steps 1 to {step} could not be in it",
                            path.display()
                        ),
                    )
                } else {
                    TrainError::io(path, e)
                }
            })?;
        let mut bytes = vec![0u8; HEADER_BYTES];
        let mut dump = Self {
            file,
            path: path.to_owned(),
            tail,
            steps: 0,
        };
        let read = dump
            .file
            .read(&mut bytes)
            .map_err(|e| TrainError::io(path, e))?;
        let Some((steps, found_tail)) = parse_header(&bytes[..read]) else {
            return Err(
                dump.error("is not a batch dump written by mixlab (its .npy header differs)")
            );
        };
        if found_tail != tail {
            return Err(dump.error(format!(
                "holds blocks of {found_tail:?} (micro-batches, sequences, tokens + 1), this run makes {tail:?}"
            )));
        }
        let needed = HEADER_BYTES as u64 + steps * dump.block_bytes();
        let len = dump
            .file
            .metadata()
            .map_err(|e| TrainError::io(path, e))?
            .len();
        if len < needed {
            return Err(dump.error(format!(
                "is truncated: its header counts {steps} steps ({needed} bytes), the file has {len} bytes"
            )));
        }
        if steps < step {
            return Err(dump.error(format!(
                "holds {steps} steps, but the run resumes after step {step}: steps {} to {step} would be missing",
                steps + 1
            )));
        }
        dump.steps = step;
        dump.file
            .set_len(HEADER_BYTES as u64 + step * dump.block_bytes())
            .map_err(|e| TrainError::io(path, e))?;
        dump.write_header()?;
        Ok(dump)
    }

    fn write_header(&mut self) -> Result<()> {
        self.file
            .seek(SeekFrom::Start(0))
            .and_then(|_| self.file.write_all(&header(self.steps, self.tail)))
            .map_err(|e| TrainError::io(&self.path, e))
    }

    /// Appends one step's token ids (`micro_batches × micro_batch_size × (seq_len + 1)` of
    /// them, in plan order), then counts it in the header.
    pub fn append(&mut self, tokens: &[u32]) -> Result<()> {
        if (tokens.len() * 4) as u64 != self.block_bytes() {
            return Err(self.error(format!(
                "a step of {} tokens does not fill a block of {:?}",
                tokens.len(),
                self.tail
            )));
        }
        let bytes: Vec<u8> = tokens.iter().flat_map(|t| t.to_le_bytes()).collect();
        let at = HEADER_BYTES as u64 + self.steps * self.block_bytes();
        self.file
            .seek(SeekFrom::Start(at))
            .and_then(|_| self.file.write_all(&bytes))
            .map_err(|e| TrainError::io(&self.path, e))?;
        self.steps += 1;
        self.write_header()
    }

    /// Flushes the file to disk (before a checkpoint, so a resume finds its steps).
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| TrainError::io(&self.path, e))
    }

    /// Steps in the file.
    pub fn steps(&self) -> u64 {
        self.steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_back(path: &Path) -> (u64, [usize; 3], Vec<u32>) {
        let bytes = std::fs::read(path).unwrap();
        let (steps, tail) = parse_header(&bytes[..HEADER_BYTES]).unwrap();
        let data = bytes[HEADER_BYTES..]
            .chunks(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        (steps, tail, data)
    }

    #[test]
    fn the_header_is_numpys_format_and_grows_in_place() {
        let h = header(0, [4, 2, 17]);
        assert_eq!(h.len(), 192);
        assert_eq!(&h[..8], b"\x93NUMPY\x01\x00");
        // 182 = 192 - 10: the dictionary's length, little-endian.
        assert_eq!(&h[8..10], &[182, 0]);
        assert_eq!(
            std::str::from_utf8(&h[10..]).unwrap().trim_end(),
            "{'descr': '<u4', 'fortran_order': False, 'shape': (0, 4, 2, 17), }"
        );
        assert_eq!(h[191], b'\n');
        let big = header(u64::MAX, [usize::MAX; 3]);
        assert_eq!(big.len(), 192, "the largest counts still fit the header");
        assert_eq!(parse_header(&big), Some((u64::MAX, [usize::MAX; 3])));
    }

    #[test]
    fn appends_steps_and_resume_cuts_back_to_the_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("batches.npy");
        let tail = [2, 1, 3];
        let mut dump = BatchDump::create(&path, tail).unwrap();
        for step in 0..5u32 {
            dump.append(&[step; 6]).unwrap();
        }
        drop(dump);
        let (steps, found, data) = read_back(&path);
        assert_eq!((steps, found, data.len()), (5, tail, 30));
        assert_eq!(&data[24..], &[4; 6]);

        let err = BatchDump::create(&path, tail).err().unwrap().to_string();
        assert!(err.contains("already exists"), "{err}");

        // The run resumes after step 3: steps 4 and 5 are trained again.
        let mut dump = BatchDump::resume(&path, tail, 3).unwrap();
        assert_eq!(dump.steps(), 3);
        dump.append(&[9; 6]).unwrap();
        drop(dump);
        let (steps, _, data) = read_back(&path);
        assert_eq!((steps, data.len()), (4, 24));
        assert_eq!(&data[12..18], &[2; 6]);
        assert_eq!(&data[18..], &[9; 6]);
    }

    #[test]
    fn resume_refuses_what_it_cannot_continue() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("batches.npy");
        let missing = BatchDump::resume(&path, [1, 1, 2], 3).err().unwrap();
        assert!(missing.to_string().contains("does not exist"), "{missing}");

        let mut dump = BatchDump::create(&path, [1, 1, 2]).unwrap();
        dump.append(&[1, 2]).unwrap();
        let short = dump.append(&[1]).err().unwrap().to_string();
        assert!(short.contains("does not fill"), "{short}");
        drop(dump);
        let behind = BatchDump::resume(&path, [1, 1, 2], 3).err().unwrap();
        assert!(
            behind.to_string().contains("steps 2 to 3 would be missing"),
            "{behind}"
        );
        let shape = BatchDump::resume(&path, [1, 2, 2], 1).err().unwrap();
        assert!(
            shape.to_string().contains("holds blocks of [1, 1, 2]"),
            "{shape}"
        );

        // Cut inside the data: the header counts more than the file holds.
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        let cut = BatchDump::resume(&path, [1, 1, 2], 1).err().unwrap();
        assert!(cut.to_string().contains("is truncated"), "{cut}");

        std::fs::write(&path, b"not a dump").unwrap();
        let other = BatchDump::resume(&path, [1, 1, 2], 1).err().unwrap();
        assert!(other.to_string().contains("not a batch dump"), "{other}");
    }
}
