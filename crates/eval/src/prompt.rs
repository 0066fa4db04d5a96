//! Prompt text of the two multiple-choice protocols, byte for byte.
//!
//! **`harness`**, current lm-evaluation-harness (`lm_eval/tasks/mmlu/default/`):
//!
//! ```text
//! The following are multiple choice questions (with answers) about abstract algebra.\n\n
//! <question.strip()>\nA. <A>\nB. <B>\nC. <C>\nD. <D>\nAnswer: <letter>\n\n      (x k, first k dev rows)
//! <question.strip()>\nA. <A>\nB. <B>\nC. <C>\nD. <D>\nAnswer:
//! ```
//! scored on the continuations `" A"`, `" B"`, `" C"`, `" D"`.
//!
//! **`paper`**, lm-evaluation-harness 0.3.0 (`lm_eval/tasks/hendrycks_test.py`), what ODM ran:
//!
//! ```text
//! Question: <question>\nChoices:\nA. <A>\nB. <B>\nC. <C>\nD. <D>\nAnswer: <answer text>\n\n   (x k)
//! Question: <question>\nChoices:\nA. <A>\nB. <B>\nC. <C>\nD. <D>\nAnswer:
//! ```
//! with no header, scored on the continuations `" " + option text`.
//!
//! **`continuation`**, current lm-evaluation-harness's `mmlu_continuation` (the cloze form: no
//! options in the prompt, so a model that has never seen lettered exam questions can still
//! answer; the OLMES paper's "cloze formulation", the usual choice for small models):
//!
//! ```text
//! The following are questions (with answers) about abstract algebra.\n\n
//! Question: <question.strip()>\nAnswer: <answer text>\n\n     (x k, first k dev rows)
//! Question: <question.strip()>\nAnswer:
//! ```
//! scored on the continuations `" " + option text` (acc, and acc_norm per character).

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::dataset::{CHOICE_LETTERS, McQuestion, NUM_CHOICES};
use crate::error::EvalError;

/// Which lm-evaluation-harness generation to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Current lm-evaluation-harness: subject header, the first dev rows as examples, answer
    /// letters as continuations; comparable with published MMLU numbers.
    Harness,
    /// lm-evaluation-harness 0.3.0 as the ODM paper ran it: no header, seeded random examples from
    /// val, full answer texts as continuations, `acc` and `acc_norm`.
    Paper,
    /// Current lm-evaluation-harness's `mmlu_continuation` (cloze): the question without its
    /// options, the first dev rows as examples, answer texts as continuations, `acc` and
    /// `acc_norm`. Measures knowledge without the lettered-exam format.
    Continuation,
}

impl Protocol {
    /// Every protocol, in report order.
    pub const ALL: [Protocol; 3] = [Protocol::Harness, Protocol::Paper, Protocol::Continuation];

    /// Whether `acc_norm` (log-likelihood per character of the option text) is reported: the
    /// protocols that score option texts rather than letters.
    pub fn scores_option_text(self) -> bool {
        !matches!(self, Protocol::Harness)
    }

    /// The window, in tokens, that prompts are scored with for a model that reads `context`
    /// tokens per pass.
    ///
    /// `paper`: half of it, as ODM's evaluation did: `scripts/evaluate.sh` ran lm-evaluation-harness
    /// 0.3.0 through GPT-NeoX's `eval_tasks/eval_adapter.py`, whose `max_length` is
    /// `max_position_embeddings // 2` (512 for the paper's 1B model); a longer prompt loses tokens
    /// at the front and keeps all its worked examples. `harness` and `continuation`: the whole
    /// context, and worked examples are dropped from the end until the prompt fits.
    pub fn window(self, context: usize) -> usize {
        match self {
            Protocol::Paper => (context / 2).max(1),
            Protocol::Harness | Protocol::Continuation => context,
        }
    }

    /// Whether a prompt that does not fit the window drops worked examples (from the end of its
    /// list, as `evaluate.py`'s `k -= 1` and today's harness) rather than losing tokens at the
    /// front with all its examples kept (`paper`, as GPT-NeoX's evaluation adapter).
    pub fn drops_examples(self) -> bool {
        !matches!(self, Protocol::Paper)
    }

    /// The name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Harness => "harness",
            Protocol::Paper => "paper",
            Protocol::Continuation => "continuation",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = EvalError;

    fn from_str(name: &str) -> Result<Self, EvalError> {
        match name {
            "harness" => Ok(Protocol::Harness),
            "paper" => Ok(Protocol::Paper),
            "continuation" => Ok(Protocol::Continuation),
            other => Err(EvalError::InvalidConfig {
                field: "protocol",
                reason: format!("`{other}` is not `harness`, `paper` or `continuation`"),
            }),
        }
    }
}

/// The subject as prose: underscores become spaces (`abstract_algebra` → `abstract algebra`).
pub fn format_subject(subject: &str) -> String {
    subject.replace('_', " ")
}

/// Python's `str.strip()` with no argument: removes leading and trailing characters for which
/// `str.isspace()` is true, which are Unicode White_Space plus the separators U+001C..U+001F.
pub fn python_strip(text: &str) -> &str {
    text.trim_matches(is_python_space)
}

/// Python's `str.isspace()` for one character.
pub(crate) fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The `harness` description line, with its two newlines.
pub fn harness_description(subject: &str) -> String {
    format!(
        "The following are multiple choice questions (with answers) about {}.\n\n",
        format_subject(subject)
    )
}

/// `harness` `doc_to_text`: the stripped question, the lettered options, `Answer:`.
pub fn harness_question_text(question: &McQuestion) -> String {
    let mut text = python_strip(&question.question).to_owned();
    for (letter, choice) in CHOICE_LETTERS.iter().zip(&question.choices) {
        text.push('\n');
        text.push_str(letter);
        text.push_str(". ");
        text.push_str(choice);
    }
    text.push_str("\nAnswer:");
    text
}

/// The `continuation` description line, with its two newlines.
pub fn continuation_description(subject: &str) -> String {
    format!(
        "The following are questions (with answers) about {}.\n\n",
        format_subject(subject)
    )
}

/// `continuation` `doc_to_text`: `Question: `, the stripped question, `\nAnswer:`.
pub fn continuation_question_text(question: &McQuestion) -> String {
    format!("Question: {}\nAnswer:", python_strip(&question.question))
}

/// `paper` `format_example`: `Question: `, the unstripped question, `Choices:`, the lettered
/// options each followed by a newline, `Answer:`.
pub fn paper_question_text(question: &McQuestion) -> String {
    let mut text = format!("Question: {}\nChoices:\n", question.question);
    for (letter, choice) in CHOICE_LETTERS.iter().zip(&question.choices) {
        text.push_str(letter);
        text.push_str(". ");
        text.push_str(choice);
        text.push('\n');
    }
    text.push_str("Answer:");
    text
}

/// The text of a question without its answer, as the protocol formats it.
pub fn question_text(protocol: Protocol, question: &McQuestion) -> String {
    match protocol {
        Protocol::Harness => harness_question_text(question),
        Protocol::Paper => paper_question_text(question),
        Protocol::Continuation => continuation_question_text(question),
    }
}

/// The continuation scored for option `index` of `question`: `" A"` (harness) or `" " + text`
/// (paper, continuation). A worked example's answer is written the same way.
pub fn continuation(protocol: Protocol, question: &McQuestion, index: usize) -> String {
    match protocol {
        Protocol::Harness => format!(" {}", CHOICE_LETTERS[index]),
        Protocol::Paper | Protocol::Continuation => format!(" {}", question.choices[index]),
    }
}

/// The four continuations of `question`, in option order.
pub fn continuations(protocol: Protocol, question: &McQuestion) -> [String; NUM_CHOICES] {
    [0, 1, 2, 3].map(|index| continuation(protocol, question, index))
}

/// The full context for `question` with `examples` as worked examples, in the given order.
///
/// Every protocol joins each example's text and answer with `"\n\n"` after it, then the
/// question; `harness` and `continuation` put their description line first (and keep it when
/// there are no examples).
pub fn build_context(
    protocol: Protocol,
    subject: &str,
    examples: &[&McQuestion],
    question: &McQuestion,
) -> String {
    let mut context = match protocol {
        Protocol::Harness => harness_description(subject),
        Protocol::Paper => String::new(),
        Protocol::Continuation => continuation_description(subject),
    };
    for example in examples {
        context.push_str(&question_text(protocol, example));
        context.push_str(&continuation(protocol, example, example.answer));
        context.push_str("\n\n");
    }
    context.push_str(&question_text(protocol, question));
    context
}
