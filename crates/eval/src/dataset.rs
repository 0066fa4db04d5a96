//! Multiple-choice benchmarks in the hendrycks/test layout (MMLU and anything shaped like it).
//!
//! ```text
//! <dir>/dev/<subject>_dev.csv      few-shot examples (5 per subject in MMLU)
//! <dir>/val/<subject>_val.csv      optional; lm-evaluation-harness 0.3.0 draws few-shot examples here
//! <dir>/test/<subject>_test.csv    the questions that are scored
//! ```
//!
//! Each file is CSV without a header, six columns `question,A,B,C,D,answer`, the answer a letter
//! A-D, with RFC 4180 quoting (fields may hold commas, doubled quotes and line breaks). `<dir>` may
//! also be the parent of such a `data/` directory, as in the original repository.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};

/// Number of answer options of every question.
pub const NUM_CHOICES: usize = 4;

/// The letters that label the options, in order.
pub const CHOICE_LETTERS: [&str; NUM_CHOICES] = ["A", "B", "C", "D"];

/// One four-option question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct McQuestion {
    /// The question text, exactly as stored (no trimming).
    pub question: String,
    /// The four options A-D, exactly as stored.
    pub choices: [String; NUM_CHOICES],
    /// Index of the correct option: 0 for A ... 3 for D.
    pub answer: usize,
}

impl McQuestion {
    /// The letter of the correct option.
    pub fn answer_letter(&self) -> &'static str {
        CHOICE_LETTERS[self.answer]
    }
}

/// Reads one hendrycks-layout CSV file.
///
/// A record with other than six fields, an answer that is not one of `A`-`D`, or bytes that are
/// not UTF-8 is an error naming the file and the line the record starts on.
pub fn read_questions(path: &Path) -> Result<Vec<McQuestion>> {
    let file = std::fs::File::open(path).map_err(|source| EvalError::io(path, source))?;
    read_questions_from(file, path)
}

/// Reads hendrycks-layout CSV from `reader`; `path` only labels errors.
pub fn read_questions_from(reader: impl std::io::Read, path: &Path) -> Result<Vec<McQuestion>> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        // Field counts are checked here so that the error names the line and the count.
        .flexible(true)
        .from_reader(reader);
    let mut questions = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(error) => {
                let line = error.position().map_or(0, csv::Position::line);
                return Err(EvalError::Csv {
                    path: path.to_owned(),
                    line,
                    reason: error.to_string(),
                });
            }
        }
        let line = record.position().map_or(0, csv::Position::line);
        let malformed = |reason: String| EvalError::Csv {
            path: path.to_owned(),
            line,
            reason,
        };
        if record.len() != 2 + NUM_CHOICES {
            return Err(malformed(format!(
                "expected 6 fields (question, A, B, C, D, answer), found {}",
                record.len()
            )));
        }
        let letter = record[5].trim();
        let answer = CHOICE_LETTERS
            .iter()
            .position(|candidate| *candidate == letter)
            .ok_or_else(|| {
                malformed(format!("answer `{}` is not one of A, B, C, D", &record[5]))
            })?;
        questions.push(McQuestion {
            question: record[0].to_owned(),
            choices: [1, 2, 3, 4].map(|field| record[field].to_owned()),
            answer,
        });
    }
    Ok(questions)
}

/// The splits of a hendrycks-layout benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum McSplit {
    /// Few-shot examples (`dev/<subject>_dev.csv`).
    Dev,
    /// Validation questions (`val/<subject>_val.csv`), absent from some copies.
    Val,
    /// Test questions (`test/<subject>_test.csv`).
    Test,
}

impl McSplit {
    /// The directory name and file suffix of the split.
    pub fn as_str(self) -> &'static str {
        match self {
            McSplit::Dev => "dev",
            McSplit::Val => "val",
            McSplit::Test => "test",
        }
    }
}

impl std::fmt::Display for McSplit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// All splits of one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectData {
    /// The subject, as in the file names (e.g. `abstract_algebra`).
    pub name: String,
    /// The dev split.
    pub dev: Vec<McQuestion>,
    /// The val split, when the benchmark directory has one for this subject.
    pub val: Option<Vec<McQuestion>>,
    /// The test split.
    pub test: Vec<McQuestion>,
}

/// A benchmark directory in the hendrycks layout.
#[derive(Debug, Clone)]
pub struct McDataset {
    root: PathBuf,
    subjects: Vec<String>,
}

impl McDataset {
    /// Opens `dir` (the directory holding `dev/` and `test/`, or its parent holding `data/`) and
    /// lists the subjects that have a test file, sorted by name.
    pub fn open(dir: &Path) -> Result<Self> {
        let root = if dir.join("data").join("test").is_dir() {
            dir.join("data")
        } else {
            dir.to_owned()
        };
        let test_dir = root.join(McSplit::Test.as_str());
        let entries =
            std::fs::read_dir(&test_dir).map_err(|source| EvalError::io(&test_dir, source))?;
        let mut subjects = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| EvalError::io(&test_dir, source))?;
            let name = entry.file_name();
            if let Some(subject) = name
                .to_str()
                .and_then(|name| name.strip_suffix("_test.csv"))
            {
                subjects.push(subject.to_owned());
            }
        }
        if subjects.is_empty() {
            return Err(EvalError::NoSubjects {
                path: dir.to_owned(),
            });
        }
        subjects.sort();
        Ok(Self { root, subjects })
    }

    /// The directory holding `dev/`, `test/` and maybe `val/`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The subjects, sorted by name.
    pub fn subjects(&self) -> &[String] {
        &self.subjects
    }

    /// The path of one split's file of one subject (whether or not it exists).
    pub fn split_path(&self, subject: &str, split: McSplit) -> PathBuf {
        self.root
            .join(split.as_str())
            .join(format!("{subject}_{split}.csv"))
    }

    /// Checks that every name in `wanted` is a subject of this benchmark and returns them in the
    /// benchmark's order, without duplicates.
    pub fn select_subjects(&self, wanted: &[String]) -> Result<Vec<String>> {
        for subject in wanted {
            if !self.subjects.contains(subject) {
                return Err(EvalError::UnknownSubject {
                    subject: subject.clone(),
                    available: self.subjects.join(", "),
                });
            }
        }
        Ok(self
            .subjects
            .iter()
            .filter(|subject| wanted.contains(subject))
            .cloned()
            .collect())
    }

    /// Reads all splits of `subject`; dev and test must exist, val may not.
    pub fn load_subject(&self, subject: &str) -> Result<SubjectData> {
        if !self.subjects.iter().any(|known| known == subject) {
            return Err(EvalError::UnknownSubject {
                subject: subject.to_owned(),
                available: self.subjects.join(", "),
            });
        }
        let val_path = self.split_path(subject, McSplit::Val);
        Ok(SubjectData {
            name: subject.to_owned(),
            dev: read_questions(&self.split_path(subject, McSplit::Dev))?,
            val: if val_path.is_file() {
                Some(read_questions(&val_path)?)
            } else {
                None
            },
            test: read_questions(&self.split_path(subject, McSplit::Test))?,
        })
    }
}
