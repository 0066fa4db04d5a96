//! A multiple-choice report as Markdown: settings, overall and per-category accuracy, one row
//! per subject.

use std::fmt::Write as _;

use super::*;

fn percent(value: f64) -> String {
    format!("{:.2}%", 100.0 * value)
}

impl McReport {
    /// The report as a Markdown document: settings, overall and per-category accuracy, then one
    /// row per subject.
    pub fn to_markdown(&self) -> String {
        let with_norm = self.protocol.scores_option_text();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# {}-shot multiple choice, protocol `{}`\n",
            self.num_fewshot, self.protocol
        );
        let protocol_line = match self.protocol {
            Protocol::Harness => {
                "current lm-evaluation-harness: subject header, first dev rows as examples, \
                 scored on \" A\"..\" D\""
            }
            Protocol::Paper => {
                "lm-evaluation-harness 0.3.0 (what ODM ran): no header, seeded examples, \
                 scored on \" \" + answer text, acc and acc_norm (per character)"
            }
            Protocol::Continuation => {
                "lm-evaluation-harness mmlu_continuation (cloze): subject header, first dev rows \
                 as examples, questions without their options, scored on \" \" + answer text, \
                 acc and acc_norm (per character)"
            }
        };
        let _ = writeln!(out, "- Protocol: {protocol_line}.");
        let _ = writeln!(out, "- Data: `{}`.", self.data_dir.display());
        let mut sources: Vec<FewshotSource> = Vec::new();
        for subject in &self.subjects {
            if !sources.contains(&subject.fewshot_source) {
                sources.push(subject.fewshot_source);
            }
        }
        let sources: Vec<&str> = sources.iter().map(|s| s.describe()).collect();
        let seed = self
            .seed
            .map(|seed| format!(", with CPython `random.Random({seed})`"))
            .unwrap_or_default();
        let _ = writeln!(out, "- Worked examples: {}{seed}.", sources.join("; "));
        let questions = self.overall.questions;
        if self.protocol.drops_examples() {
            let _ = writeln!(
                out,
                "- Cropping to the model's {}-token window: {} of {questions} prompts lost examples \
                 ({} examples dropped); {} did not fit even without examples and were cut at the front.",
                self.max_input_tokens,
                self.prompts_cropped,
                self.examples_dropped,
                self.prompts_truncated
            );
        } else {
            let _ = writeln!(
                out,
                "- Window: {} tokens, half the model's context, as GPT-NeoX's evaluation adapter \
                 (`max_position_embeddings // 2`); every prompt keeps its examples, and {} of \
                 {questions} were longer and lost tokens at the front.",
                self.max_input_tokens, self.prompts_truncated
            );
        }
        if let Some(limit) = self.limit_per_subject {
            let _ = writeln!(out, "- At most {limit} test questions per subject.");
        }
        let _ = writeln!(out, "- Chance level is 25%.\n");

        let header = if with_norm {
            "| scope | questions | acc | acc_norm |\n|---|---:|---:|---:|"
        } else {
            "| scope | questions | acc |\n|---|---:|---:|"
        };
        let _ = writeln!(out, "{header}");
        let row =
            |out: &mut String, scope: &str, count: String, acc: f64, acc_norm: Option<f64>| {
                let _ = match (with_norm, acc_norm) {
                    (true, Some(norm)) => writeln!(
                        out,
                        "| {scope} | {count} | {} | {} |",
                        percent(acc),
                        percent(norm)
                    ),
                    (true, None) => writeln!(out, "| {scope} | {count} | {} | |", percent(acc)),
                    (false, _) => writeln!(out, "| {scope} | {count} | {} |", percent(acc)),
                };
            };
        row(
            &mut out,
            "**overall** (micro average)",
            questions.to_string(),
            self.overall.acc,
            self.overall.acc_norm,
        );
        row(
            &mut out,
            "mean over subjects",
            format!("{} subjects", self.subjects.len()),
            self.subject_mean_acc,
            self.subject_mean_acc_norm,
        );
        for category in &self.categories {
            row(
                &mut out,
                category.category.label(),
                category.accuracy.questions.to_string(),
                category.accuracy.acc,
                category.accuracy.acc_norm,
            );
        }

        let _ = writeln!(out, "\n## Subjects\n");
        if with_norm {
            let _ = writeln!(
                out,
                "| subject | category | questions | acc | acc_norm | shots (mean) | cropped | truncated |\n\
                 |---|---|---:|---:|---:|---:|---:|---:|"
            );
        } else {
            let _ = writeln!(
                out,
                "| subject | category | questions | acc | shots (mean) | cropped | truncated |\n\
                 |---|---|---:|---:|---:|---:|---:|"
            );
        }
        for subject in &self.subjects {
            let category = subject.category.map_or("(not MMLU)", Category::label);
            let norm = match subject.accuracy.acc_norm {
                Some(norm) if with_norm => format!(" {} |", percent(norm)),
                _ if with_norm => " |".to_owned(),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "| {} | {category} | {} | {} |{norm} {:.2} | {} | {} |",
                subject.subject,
                subject.accuracy.questions,
                percent(subject.accuracy.acc),
                subject.mean_shots,
                subject.cropped,
                subject.truncated
            );
        }
        out
    }

    /// Writes the report as pretty JSON to `path`, whole or not at all.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|source| EvalError::Json {
            path: path.to_owned(),
            source,
        })?;
        Ok(mixlab_atomic::write_file(path, text + "\n")?)
    }

    /// Writes [`McReport::to_markdown`] to `path`, whole or not at all.
    pub fn write_markdown(&self, path: &Path) -> Result<()> {
        Ok(mixlab_atomic::write_file(path, self.to_markdown())?)
    }
}
