//! Streaming documents out of JSON-lines corpora (`*.jsonl`, `*.jsonl.zst`), the Pile's format.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// A dataset split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training data.
    Train,
    /// Validation data (the Pile's `val.jsonl.zst`).
    Val,
    /// Test data (the Pile's `test.jsonl.zst`).
    Test,
}

impl Split {
    /// All splits in their canonical order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// The split's directory and manifest name.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Split {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "train" => Ok(Split::Train),
            "val" | "validation" => Ok(Split::Val),
            "test" => Ok(Split::Test),
            other => Err(DataError::config(
                "split",
                format!("unknown split `{other}` (expected train, val or test)"),
            )),
        }
    }
}

/// What to do with a line that is not a valid document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BadLinePolicy {
    /// Stop with an error naming the file and line (the default: silent data loss is worse).
    #[default]
    Error,
    /// Skip the line and count it; the count lands in the manifest.
    Skip,
}

impl std::str::FromStr for BadLinePolicy {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "error" => Ok(BadLinePolicy::Error),
            "skip" => Ok(BadLinePolicy::Skip),
            other => Err(DataError::config(
                "on_bad_line",
                format!("`{other}` is neither `error` nor `skip`"),
            )),
        }
    }
}

/// The corpus files of each split.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputLayout {
    /// Training files, in reading order.
    pub train: Vec<PathBuf>,
    /// Validation files; empty when the corpus has none (a hash-based hold-out is used then).
    pub val: Vec<PathBuf>,
    /// Test files; empty when the corpus has none.
    pub test: Vec<PathBuf>,
}

fn is_corpus_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".jsonl") || name.ends_with(".jsonl.zst")
}

fn corpus_files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        if path.is_file() && is_corpus_file(&path) {
            files.push(path);
        }
    }
    // Sorted so that `train/00` .. `train/29` are read in order on every file system.
    files.sort();
    Ok(files)
}

fn split_file(dir: &Path, stem: &str) -> Option<PathBuf> {
    [".jsonl.zst", ".jsonl"]
        .iter()
        .map(|ext| dir.join(format!("{stem}{ext}")))
        .find(|p| p.is_file())
}

impl InputLayout {
    /// Works out the splits from the paths a user gave.
    ///
    /// - One directory laid out like the Pile (`train/*.jsonl[.zst]`, `val.jsonl[.zst]`,
    ///   `test.jsonl[.zst]`): the corpus's own splits.
    /// - A directory of `*.jsonl[.zst]` files, or a list of files: everything is training data, and
    ///   validation and test are held out by hash (see [`crate::prepare`]).
    pub fn discover(inputs: &[PathBuf]) -> Result<Self> {
        if inputs.is_empty() {
            return Err(DataError::BadInput {
                path: PathBuf::new(),
                reason: "no input files or directories given".into(),
            });
        }
        let mut layout = InputLayout::default();
        for input in inputs {
            if input.is_dir() {
                let train_dir = input.join("train");
                if train_dir.is_dir() {
                    layout.train.extend(corpus_files_in(&train_dir)?);
                    layout.val.extend(
                        split_file(input, "val").or_else(|| split_file(input, "validation")),
                    );
                    layout.test.extend(split_file(input, "test"));
                } else {
                    layout.train.extend(corpus_files_in(input)?);
                }
            } else if input.is_file() {
                if !is_corpus_file(input) {
                    return Err(DataError::BadInput {
                        path: input.clone(),
                        reason: "not a .jsonl or .jsonl.zst file".into(),
                    });
                }
                layout.train.push(input.clone());
            } else {
                return Err(DataError::BadInput {
                    path: input.clone(),
                    reason: "no such file or directory".into(),
                });
            }
        }
        if layout.train.is_empty() {
            return Err(DataError::BadInput {
                path: inputs[0].clone(),
                reason: "no training files (*.jsonl or *.jsonl.zst) found".into(),
            });
        }
        Ok(layout)
    }

    /// True when the corpus brings its own validation and test files.
    pub fn has_own_holdout(&self) -> bool {
        !self.val.is_empty() && !self.test.is_empty()
    }
}

/// One document of a corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The document's text.
    pub text: String,
    /// Its domain (by default `meta.pile_set_name`).
    pub domain: String,
}

/// Where in a JSON line the text and the domain are found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldPointers {
    /// JSON pointer (RFC 6901) of the document text; `/text` in the Pile.
    pub text: String,
    /// JSON pointer of the domain name; `/meta/pile_set_name` in the Pile.
    pub domain: String,
}

impl Default for FieldPointers {
    fn default() -> Self {
        FieldPointers {
            text: "/text".into(),
            domain: "/meta/pile_set_name".into(),
        }
    }
}

/// A bad line that was skipped, kept for the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedLine {
    /// The file it is in.
    pub file: String,
    /// 1-based line number.
    pub line: u64,
    /// Why it was skipped.
    pub reason: String,
}

/// Streams the documents of a list of files, in order, line by line with bounded memory.
pub struct CorpusReader {
    files: std::vec::IntoIter<PathBuf>,
    current: Option<(PathBuf, Box<dyn BufRead + Send>, u64)>,
    opener: Opener,
    pointers: FieldPointers,
    policy: BadLinePolicy,
    buf: Vec<u8>,
    /// Number of lines skipped under [`BadLinePolicy::Skip`].
    pub skipped: u64,
    /// The first few skipped lines, with their reasons.
    pub skipped_examples: Vec<SkippedLine>,
    /// Bytes of (decompressed) input consumed so far.
    pub bytes_read: u64,
}

const MAX_SKIPPED_EXAMPLES: usize = 20;

/// Opens a corpus file, decompressing `.zst` on the fly.
pub fn open_corpus_file(path: &Path) -> Result<Box<dyn BufRead + Send>> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    wrap_reader(path, Box::new(file))
}

/// Buffers a raw reader of `path`, decompressing when the name ends in `.zst`.
pub fn wrap_reader(path: &Path, raw: Box<dyn Read + Send>) -> Result<Box<dyn BufRead + Send>> {
    let name = path.to_string_lossy();
    let reader: Box<dyn Read + Send> = if name.ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::new(raw).map_err(|e| DataError::io(path, e))?)
    } else {
        raw
    };
    Ok(Box::new(BufReader::with_capacity(1 << 20, reader)))
}

/// Opens one corpus file for reading (lets callers count or throttle the raw bytes).
pub type Opener = Box<dyn Fn(&Path) -> Result<Box<dyn BufRead + Send>> + Send>;

impl CorpusReader {
    /// A reader over `files` that extracts fields with `pointers` and treats bad lines by `policy`.
    pub fn new(files: Vec<PathBuf>, pointers: FieldPointers, policy: BadLinePolicy) -> Self {
        Self::with_opener(files, pointers, policy, open_corpus_file)
    }

    /// Like [`CorpusReader::new`], opening files with `opener`.
    pub fn with_opener(
        files: Vec<PathBuf>,
        pointers: FieldPointers,
        policy: BadLinePolicy,
        opener: impl Fn(&Path) -> Result<Box<dyn BufRead + Send>> + Send + 'static,
    ) -> Self {
        CorpusReader {
            files: files.into_iter(),
            current: None,
            opener: Box::new(opener),
            pointers,
            policy,
            buf: Vec::new(),
            skipped: 0,
            skipped_examples: Vec::new(),
            bytes_read: 0,
        }
    }

    fn parse_line(&self, line: &[u8]) -> std::result::Result<Document, String> {
        let value: serde_json::Value =
            serde_json::from_slice(line).map_err(|e| format!("malformed JSON: {e}"))?;
        let text = match value.pointer(&self.pointers.text) {
            None => return Err(format!("missing field `{}`", self.pointers.text)),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(format!(
                    "field `{}` is not a string but {}",
                    self.pointers.text,
                    json_kind(other)
                ));
            }
        };
        let domain = match value.pointer(&self.pointers.domain) {
            None => return Err(format!("missing field `{}`", self.pointers.domain)),
            Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
            Some(serde_json::Value::String(_)) => {
                return Err(format!("field `{}` is empty", self.pointers.domain));
            }
            Some(other) => {
                return Err(format!(
                    "field `{}` is not a string but {}",
                    self.pointers.domain,
                    json_kind(other)
                ));
            }
        };
        Ok(Document { text, domain })
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

impl Iterator for CorpusReader {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.current.is_none() {
                let path = self.files.next()?;
                match (self.opener)(&path) {
                    Ok(reader) => self.current = Some((path, reader, 0)),
                    Err(e) => return Some(Err(e)),
                }
            }
            let (path, reader, line_no) = self.current.as_mut().expect("set above");
            self.buf.clear();
            let n = match reader.read_until(b'\n', &mut self.buf) {
                Ok(n) => n,
                Err(e) => return Some(Err(DataError::io(path.clone(), e))),
            };
            if n == 0 {
                self.current = None;
                continue;
            }
            *line_no += 1;
            let line_no = *line_no;
            let path = path.clone();
            self.bytes_read += n as u64;
            // Blank lines (e.g. a trailing newline pair) carry no document and are not errors.
            if self.buf.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            match self.parse_line(&self.buf) {
                Ok(doc) => return Some(Ok(doc)),
                Err(reason) => match self.policy {
                    BadLinePolicy::Error => {
                        return Some(Err(DataError::BadLine {
                            path,
                            line: line_no,
                            reason,
                        }));
                    }
                    BadLinePolicy::Skip => {
                        self.skipped += 1;
                        if self.skipped_examples.len() < MAX_SKIPPED_EXAMPLES {
                            self.skipped_examples.push(SkippedLine {
                                file: path.display().to_string(),
                                line: line_no,
                                reason,
                            });
                        }
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::File::create(&p)
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        p
    }

    #[test]
    fn routes_documents_by_pile_set_name() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            "a.jsonl",
            "{\"text\":\"x\",\"meta\":{\"pile_set_name\":\"Github\"}}\n\n{\"text\":\"y\",\"meta\":{\"pile_set_name\":\"ArXiv\"}}\n",
        );
        let docs: Vec<_> =
            CorpusReader::new(vec![f], FieldPointers::default(), BadLinePolicy::Error)
                .collect::<Result<_>>()
                .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].domain, "Github");
        assert_eq!(docs[1].domain, "ArXiv");
        assert_eq!(docs[1].text, "y");
    }

    #[test]
    fn custom_pointer_selects_domain() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "a.jsonl", "{\"body\":\"x\",\"src\":\"web\"}\n");
        let pointers = FieldPointers {
            text: "/body".into(),
            domain: "/src".into(),
        };
        let doc = CorpusReader::new(vec![f], pointers, BadLinePolicy::Error)
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(doc.domain, "web");
    }

    #[test]
    fn bad_lines_error_names_file_and_line_or_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let body = "{\"text\":\"ok\",\"meta\":{\"pile_set_name\":\"A\"}}\n{not json\n{\"text\":5,\"meta\":{\"pile_set_name\":\"A\"}}\n{\"text\":\"t\"}\n";
        let f = write(dir.path(), "bad.jsonl", body);
        let err = CorpusReader::new(
            vec![f.clone()],
            FieldPointers::default(),
            BadLinePolicy::Error,
        )
        .nth(1)
        .unwrap()
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("bad.jsonl:2:"), "{msg}");
        assert!(msg.contains("malformed JSON"), "{msg}");

        let mut reader = CorpusReader::new(vec![f], FieldPointers::default(), BadLinePolicy::Skip);
        let docs: Vec<_> = (&mut reader).collect::<Result<_>>().unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!(reader.skipped, 3);
        assert!(reader.skipped_examples[1].reason.contains("not a string"));
        assert!(
            reader.skipped_examples[2]
                .reason
                .contains("missing field `/meta/pile_set_name`")
        );
        assert_eq!(reader.skipped_examples[2].line, 4);
    }

    #[test]
    fn reads_zstd_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.jsonl.zst");
        let data = "{\"text\":\"z\",\"meta\":{\"pile_set_name\":\"Q\"}}\n";
        std::fs::write(&p, zstd::encode_all(data.as_bytes(), 3).unwrap()).unwrap();
        let doc = CorpusReader::new(vec![p], FieldPointers::default(), BadLinePolicy::Error)
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(doc.text, "z");
    }

    #[test]
    fn discovers_pile_layout() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("train")).unwrap();
        write(&dir.path().join("train"), "01.jsonl", "");
        write(&dir.path().join("train"), "00.jsonl.zst", "");
        write(dir.path(), "val.jsonl.zst", "");
        write(dir.path(), "test.jsonl", "");
        let layout = InputLayout::discover(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(layout.train.len(), 2);
        assert!(layout.train[0].ends_with("00.jsonl.zst"));
        assert!(layout.has_own_holdout());
        let flat = InputLayout::discover(&[dir.path().join("train")]).unwrap();
        assert!(!flat.has_own_holdout());
        assert!(InputLayout::discover(&[dir.path().join("nope")]).is_err());
    }
}
