//! The multiple-choice set tied to the corpus, in the MMLU (hendrycks) layout.
//!
//! | subject | learnable only from | questions |
//! |---|---|---|
//! | `arithmetic` | Arithmetic | level 1-2 problems in their canonical wording |
//! | `encyclopedia_facts` | Encyclopedia | birth city/year, occupation, employer of *held-out* people |
//! | `code_output` | Toy Code | what a 2-5 statement program prints |
//!
//! Every question keeps its ground truth ([`Truth`]); the correct choice is computed from it,
//! never from text. Distractors have the answer's type and format. For `arithmetic` and
//! `code_output` they are the answers of sibling questions (same level and operator; programs of
//! the same length), drawn so that the four options are exchangeable: a rule that does not read
//! the question, such as preferring the numbers most often seen as answers, scores 25% in
//! expectation, so accuracy above chance means the question was understood. For
//! `encyclopedia_facts`: cities of the same country, other occupations, other organisations,
//! and birth years in a progression around the answer at a uniformly random rank. The correct
//! letter is balanced: each of A-D is correct for a quarter of the test rows (up to one row).

use std::collections::HashSet;
use std::path::Path;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::arithmetic::{self, Problem};
use super::code::{self, Program};
use super::knowledge::{Attribute, FactQuestion, KnowledgeBase};
use super::{DomainKind, MultipleChoiceConfig, stream};
use crate::error::{DataError, Result};

/// The four answer letters.
pub const LETTERS: [char; 4] = ['A', 'B', 'C', 'D'];

/// What a question is about, from which its answer follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Truth {
    /// An arithmetic problem.
    Arithmetic(Problem),
    /// A fact of the knowledge base.
    Fact(FactQuestion),
    /// A program whose (single) printed value is asked for.
    CodeOutput(Program),
}

/// One multiple-choice question with its ground truth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct McQuestion {
    /// The question text (may span several lines).
    pub question: String,
    /// Choices A-D.
    pub choices: [String; 4],
    /// Index of the correct choice.
    pub answer: usize,
    /// The ground truth the answer was computed from.
    pub truth: Truth,
}

impl McQuestion {
    /// The correct letter, `A`-`D`.
    pub fn answer_letter(&self) -> char {
        LETTERS[self.answer]
    }
}

/// A subject: few-shot rows (dev, val) and test rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct McSubject {
    /// File-name stem (`arithmetic` → `arithmetic_dev.csv`).
    pub name: String,
    /// The domain the subject can be learned from.
    pub domain: DomainKind,
    /// Few-shot examples (`data/dev/<name>_dev.csv`), the first k in file order (harness protocol).
    pub dev: Vec<McQuestion>,
    /// The pool lm-evaluation-harness 0.3.0 (the paper protocol) draws few-shot examples from
    /// (`data/val/<name>_val.csv`).
    pub val: Vec<McQuestion>,
    /// Test questions (`data/test/<name>_test.csv`).
    pub test: Vec<McQuestion>,
}

/// Correct positions for `n` rows: as many of each letter as possible, in random order.
fn balanced_positions(rng: &mut ChaCha8Rng, n: usize) -> Vec<usize> {
    let mut extra = [0, 1, 2, 3];
    shuffle(rng, &mut extra);
    let mut pos: Vec<usize> = (0..n)
        .map(|i| if i < n - n % 4 { i % 4 } else { extra[i % 4] })
        .collect();
    shuffle(rng, &mut pos);
    pos
}

fn shuffle<T>(rng: &mut ChaCha8Rng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        items.swap(i, rng.random_range(0..=i));
    }
}

/// Puts `correct` at `position` and the distractors, shuffled, in the other slots.
fn arrange(
    rng: &mut ChaCha8Rng,
    correct: String,
    mut distractors: Vec<String>,
    position: usize,
) -> [String; 4] {
    shuffle(rng, &mut distractors);
    let mut it = distractors.into_iter();
    std::array::from_fn(|i| {
        if i == position {
            correct.clone()
        } else {
            it.next().expect("three distractors")
        }
    })
}

/// The three other members of the progression of step `d` in which `answer` has rank `rank`
/// (0 = smallest of the four).
fn progression(answer: i64, d: i64, rank: i64) -> Vec<i64> {
    (0..4)
        .filter(|&j| j != rank)
        .map(|j| answer + (j - rank) * d)
        .collect()
}

/// Distractors in a progression around `answer` with a step from `steps`, `answer` at a
/// uniformly random rank; with `non_negative`, only steps that keep every value ≥ 0 (if none
/// does, the smallest step and a lower rank).
pub(crate) fn numeric_distractors(
    rng: &mut ChaCha8Rng,
    answer: i64,
    steps: &[i64],
    non_negative: bool,
) -> Vec<i64> {
    let rank = rng.random_range(0..4i64);
    let feasible: Vec<i64> = steps
        .iter()
        .copied()
        .filter(|&d| !non_negative || answer - rank * d >= 0)
        .collect();
    if feasible.is_empty() {
        let d = steps.iter().copied().min().expect("at least one step");
        return progression(answer, d, rank.min(answer / d));
    }
    progression(answer, feasible[rng.random_range(0..feasible.len())], rank)
}

/// Draws `n` distinct items with `make`, skipping questions already used (dev and test never
/// share a question).
fn distinct<F>(
    n: usize,
    used: &mut HashSet<String>,
    mut make: F,
) -> Vec<(String, String, Vec<String>, Truth)>
where
    F: FnMut() -> Option<(String, String, Vec<String>, Truth)>,
{
    let mut out = Vec::with_capacity(n);
    // A subject whose pool is exhausted stops short rather than loop forever.
    let mut misses = 0;
    while out.len() < n && misses < 10_000 {
        match make() {
            Some(item) if used.insert(item.0.clone()) => {
                out.push(item);
                misses = 0;
            }
            _ => misses += 1,
        }
    }
    out
}

fn finish(
    rng: &mut ChaCha8Rng,
    items: Vec<(String, String, Vec<String>, Truth)>,
) -> Vec<McQuestion> {
    let positions = balanced_positions(rng, items.len());
    items
        .into_iter()
        .zip(positions)
        .map(
            |((question, correct, distractors, truth), answer)| McQuestion {
                question,
                choices: arrange(rng, correct, distractors, answer),
                answer,
                truth,
            },
        )
        .collect()
}

/// Builds a subject with `make(rng, few_shot)`; `few_shot` is true for dev and val rows.
fn subject<F>(
    name: &str,
    domain: DomainKind,
    seed: u64,
    rows: &MultipleChoiceConfig,
    mut make: F,
) -> McSubject
where
    F: FnMut(&mut ChaCha8Rng, bool) -> Option<(String, String, Vec<String>, Truth)>,
{
    let mut used = HashSet::new();
    let mut split = |split: &str, n: usize, few_shot: bool| {
        let mut rng = stream(seed, &format!("mc/{name}/{split}"));
        let items = distinct(n, &mut used, || make(&mut rng, few_shot));
        finish(&mut rng, items)
    };
    let dev = split("dev", rows.dev_rows, true);
    let val = split("val", rows.val_rows, true);
    let test = split("test", rows.test_rows, false);
    McSubject {
        name: name.to_string(),
        domain,
        dev,
        val,
        test,
    }
}

fn numbers(v: Vec<i64>) -> Vec<String> {
    v.into_iter().map(|x| x.to_string()).collect()
}

pub(crate) fn arithmetic_subject(seed: u64, rows: &MultipleChoiceConfig) -> McSubject {
    subject(
        "arithmetic",
        DomainKind::Arithmetic,
        seed,
        rows,
        |rng, _| {
            let level = rng.random_range(1..=2);
            let p = arithmetic::problem(rng, level);
            let answer = p.answer();
            let shape = p.shape();
            let distractors = sibling_values(answer, || {
                loop {
                    let sibling = arithmetic::problem(rng, level);
                    if sibling.shape() == shape {
                        return Some(sibling.answer());
                    }
                }
            })?;
            Some((
                p.canonical_question(),
                answer.to_string(),
                numbers(distractors),
                Truth::Arithmetic(p),
            ))
        },
    )
}

/// Three distractors that are the answers of sibling questions (`draw` makes one), or `None`
/// when any of the four values repeats, so the caller draws a new question. Rejecting the
/// question together with its siblings keeps the four values i.i.d. given that they differ,
/// hence exchangeable: a rule that never reads the question (prefer small numbers, round
/// numbers, the answers seen most often in training) is right for a quarter of the questions
/// in expectation. Near misses (answer ± 1) would let such answer-string preferences beat 25%.
fn sibling_values(answer: i64, mut draw: impl FnMut() -> Option<i64>) -> Option<Vec<i64>> {
    let mut values = vec![answer];
    for _ in 0..3 {
        let v = draw()?;
        if values.contains(&v) {
            return None;
        }
        values.push(v);
    }
    values.remove(0);
    Some(values)
}

pub(crate) fn code_subject(seed: u64, rows: &MultipleChoiceConfig) -> McSubject {
    subject("code_output", DomainKind::ToyCode, seed, rows, |rng, _| {
        let statements = rng.random_range(2..=5);
        let p = code::program(rng, statements, 0);
        let answer = *p.run().ok()?.output.last()?;
        // The outputs of other programs of the same length: the answer's own distribution, so
        // the options are exchangeable (see `sibling_values`).
        let distractors = sibling_values(answer, || {
            for _ in 0..1000 {
                let sibling = code::program(rng, statements, 0);
                if let Some(v) = sibling.run().ok().and_then(|e| e.output.last().copied()) {
                    return Some(v);
                }
            }
            None
        })?;
        let question = format!("What does this program print?\n{}", p.render().trim_end());
        Some((
            question,
            answer.to_string(),
            numbers(distractors),
            Truth::CodeOutput(p),
        ))
    })
}

pub(crate) fn fact_subject(
    kb: &KnowledgeBase,
    seed: u64,
    rows: &MultipleChoiceConfig,
) -> McSubject {
    // Few-shot rows (dev, val) come from quizzed people, test rows from held-out people only;
    // each pool is walked in a random order without repeats.
    let mut rng = stream(seed, "mc/encyclopedia_facts/pools");
    let mut pool = |quizzed: bool| {
        let mut v: Vec<FactQuestion> = (0..kb.people.len())
            .filter(|&i| kb.people[i].quizzed == quizzed)
            .flat_map(|person| Attribute::ALL.map(|attribute| FactQuestion { person, attribute }))
            .collect();
        shuffle(&mut rng, &mut v);
        v
    };
    let (mut few_shot_pool, mut test_pool) = (pool(true), pool(false));
    subject(
        "encyclopedia_facts",
        DomainKind::Encyclopedia,
        seed,
        rows,
        |rng, few_shot| {
            let fact = if few_shot {
                few_shot_pool.pop()?
            } else {
                test_pool.pop()?
            };
            let FactQuestion { person, attribute } = fact;
            let answer = kb.answer(person, attribute);
            let distractors = if attribute == Attribute::BirthYear {
                numbers(numeric_distractors(
                    rng,
                    kb.people[person].birth_year as i64,
                    &[1, 2, 5, 10],
                    true,
                ))
            } else {
                let mut pool: Vec<String> = kb
                    .candidates(person, attribute)
                    .into_iter()
                    .filter(|c| *c != answer)
                    .collect();
                shuffle(rng, &mut pool);
                pool.truncate(3);
                pool
            };
            let question = attribute.question(&kb.people[person].name);
            Some((question, answer, distractors, Truth::Fact(fact)))
        },
    )
}

/// Writes `rows` as a hendrycks CSV: no header; question, A, B, C, D, answer letter; quoted
/// where needed (RFC 4180), `\n` line ends.
pub(crate) fn write_csv(path: &Path, rows: &[McQuestion]) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| DataError::io(path, e))?;
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(std::io::BufWriter::new(file));
    for q in rows {
        let letter = q.answer_letter().to_string();
        let record = [
            q.question.as_str(),
            &q.choices[0],
            &q.choices[1],
            &q.choices[2],
            &q.choices[3],
            &letter,
        ];
        w.write_record(record)
            .map_err(|e| DataError::io(path, e.into()))?;
    }
    w.flush().map_err(|e| DataError::io(path, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn positions_are_balanced() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for n in [0, 1, 5, 150, 151] {
            let pos = balanced_positions(&mut rng, n);
            let mut counts = [0usize; 4];
            for p in pos {
                counts[p] += 1;
            }
            let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            assert!(hi - lo <= 1, "{n}: {counts:?}");
        }
    }

    #[test]
    fn csv_quotes_commas_quotes_and_newlines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t_test.csv");
        let q = McQuestion {
            question: "Say \"hi\", then\nprint(x);".into(),
            choices: ["1, 2".into(), "a\"b".into(), "plain".into(), "-3".into()],
            answer: 2,
            truth: Truth::Arithmetic(arithmetic::problem(&mut ChaCha8Rng::seed_from_u64(0), 1)),
        };
        write_csv(&path, std::slice::from_ref(&q)).unwrap();
        let raw = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            raw,
            "\"Say \"\"hi\"\", then\nprint(x);\",\"1, 2\",\"a\"\"b\",plain,-3,C\n"
        );
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_path(&path)
            .unwrap();
        let rec = r.records().next().unwrap().unwrap();
        assert_eq!(&rec[0], q.question);
        assert_eq!(&rec[1], "1, 2");
        assert_eq!(&rec[2], "a\"b");
        assert_eq!(&rec[5], "C");
    }

    #[test]
    fn numeric_distractors_put_the_answer_at_every_rank() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut ranks = [0usize; 4];
        for _ in 0..4000 {
            let d = numeric_distractors(&mut rng, 5, &[1, 2, 10], true);
            assert_eq!(d.len(), 3);
            assert!(!d.contains(&5) && d.iter().all(|&x| x >= 0));
            ranks[d.iter().filter(|&&x| x < 5).count()] += 1;
        }
        assert!(ranks.iter().all(|&c| (850..1150).contains(&c)), "{ranks:?}");
        // At 0 the rank drops to 0 instead of the values going negative.
        for _ in 0..100 {
            assert!(
                numeric_distractors(&mut rng, 0, &[2], true)
                    .iter()
                    .all(|&x| x > 0)
            );
        }
    }

    #[test]
    fn sibling_values_are_distinct_or_rejected() {
        let mut draws = [7, 3, 9].into_iter();
        assert_eq!(sibling_values(5, || draws.next()), Some(vec![7, 3, 9]));
        // A repeat of the answer or of another distractor rejects the whole question.
        let mut draws = [7, 5, 9].into_iter();
        assert_eq!(sibling_values(5, || draws.next()), None);
        let mut draws = [7, 7, 9].into_iter();
        assert_eq!(sibling_values(5, || draws.next()), None);
        assert_eq!(sibling_values(5, || None), None);
    }
}
