//! Integration tests of mixlab-eval. One binary on purpose: each test binary links burn.
//!
//! Multiple-choice tests run on small fixture CSVs written here and a stub scorer whose
//! log-likelihoods are chosen by the test; model tests use a two-layer random model on the CPU.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use burn::tensor::{Int, Tensor, TensorData};
use mixlab_data::{
    DomainStore, OpenOptions, PrepareConfig, Split, TokenizerSource, prepare_dataset,
};
use mixlab_eval::dataset::read_questions_from;
use mixlab_eval::prompt::{continuations, harness_question_text, paper_question_text};
use mixlab_eval::{
    Category, EvalError, FewshotSource, LogLikelihood, LogLikelihoodRequest, LogLikelihoodScorer,
    MMLU_SUBJECTS, McConfig, McDataset, McQuestion, ModelScorer, PerplexityConfig, PromptDump,
    Protocol, build_context, category_of, evaluate_multiple_choice, evaluate_perplexity,
    read_questions, sequence_nll_sums,
};
use mixlab_model::{CpuBackend, GptNeoX, ModelConfig, cpu_device};

type B = CpuBackend;

// ---------------------------------------------------------------------------------------------
// Fixtures

fn write_file(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// `n` CSV rows `"<prefix> question {i}?",<a>{i},...,<letter>` with answers cycling A, B, C, D.
fn simple_rows(prefix: &str, letters: [&str; 4], n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{prefix} question {i}?,{}{i},{}{i},{}{i},{}{i},{}\n",
                letters[0],
                letters[1],
                letters[2],
                letters[3],
                ["A", "B", "C", "D"][i % 4]
            )
        })
        .collect()
}

/// A benchmark directory with `data/{dev,val,test}` for the given subjects.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("mmlu");
        Self { _dir: dir, root }
    }

    fn add(&self, subject: &str, split: &str, csv: &str) -> &Self {
        write_file(
            &self
                .root
                .join("data")
                .join(split)
                .join(format!("{subject}_{split}.csv")),
            csv,
        );
        self
    }

    fn dataset(&self) -> McDataset {
        McDataset::open(&self.root).unwrap()
    }
}

/// A scorer with one "token" per character, a fixed context length, and log-likelihoods from a
/// closure; it records the window of every `score` call.
struct StubScorer<F: Fn(&LogLikelihoodRequest) -> f64> {
    window: usize,
    log_likelihood: F,
    scored: Vec<LogLikelihoodRequest>,
    windows: Vec<usize>,
}

impl<F: Fn(&LogLikelihoodRequest) -> f64> StubScorer<F> {
    fn new(window: usize, log_likelihood: F) -> Self {
        Self {
            window,
            log_likelihood,
            scored: Vec::new(),
            windows: Vec::new(),
        }
    }
}

impl<F: Fn(&LogLikelihoodRequest) -> f64> LogLikelihoodScorer for StubScorer<F> {
    fn max_input_tokens(&self) -> usize {
        self.window
    }

    fn input_tokens(&mut self, request: &LogLikelihoodRequest) -> mixlab_eval::Result<usize> {
        Ok(request.context.chars().count() + request.continuation.chars().count() - 1)
    }

    fn score(
        &mut self,
        requests: &[LogLikelihoodRequest],
        window: usize,
    ) -> mixlab_eval::Result<Vec<LogLikelihood>> {
        assert!(
            window <= self.window,
            "window {window} > context {}",
            self.window
        );
        self.windows.push(window);
        let mut out = Vec::new();
        for request in requests {
            let truncated = self.input_tokens(request)? > window;
            out.push(LogLikelihood {
                log_likelihood: (self.log_likelihood)(request),
                is_greedy: None,
                continuation_tokens: request.continuation.chars().count(),
                truncated,
            });
            self.scored.push(request.clone());
        }
        Ok(out)
    }
}

fn read_dump(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// CSV

#[test]
fn quoting_with_commas_newlines_and_quotes_parses() {
    let csv = concat!(
        "\"Which, of these, holds?\",\"1, 2\",plain,\"say \"\"hi\"\"\",\"two\nlines\",C\n",
        "\"CRLF\r\ninside\",a,b,c,d,A\r\n",
        "last,\"\",b,c,d,D",
    );
    let questions = read_questions_from(csv.as_bytes(), Path::new("fixture.csv")).unwrap();
    assert_eq!(
        questions,
        vec![
            McQuestion {
                question: "Which, of these, holds?".into(),
                choices: [
                    "1, 2".into(),
                    "plain".into(),
                    "say \"hi\"".into(),
                    "two\nlines".into()
                ],
                answer: 2,
            },
            McQuestion {
                question: "CRLF\r\ninside".into(),
                choices: ["a".into(), "b".into(), "c".into(), "d".into()],
                answer: 0,
            },
            McQuestion {
                question: "last".into(),
                choices: ["".into(), "b".into(), "c".into(), "d".into()],
                answer: 3,
            },
        ]
    );
}

#[test]
fn malformed_rows_are_errors_naming_file_and_line() {
    // The first record spans lines 1-2, so the short record starts on line 3.
    let short = "\"two\nlines\",a,b,c,d,A\nq,a,b,c,D\n";
    let error = read_questions_from(short.as_bytes(), Path::new("dir/x_test.csv")).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, EvalError::Csv { line: 3, .. }), "{message}");
    assert!(message.starts_with("dir/x_test.csv:3:"), "{message}");
    assert!(message.contains("found 5"), "{message}");

    let bad_letter = "q,a,b,c,d,A\nq,a,b,c,d,E\n";
    let error = read_questions_from(bad_letter.as_bytes(), Path::new("y.csv")).unwrap_err();
    assert!(
        error.to_string().starts_with("y.csv:2: answer `E`"),
        "{error}"
    );

    let fixture = Fixture::new();
    let path = fixture.root.join("data/test/anatomy_test.csv");
    write_file(&path, "");
    std::fs::write(&path, b"q,a,b,c,d,A\nq,a,\xff,c,d,B\n").unwrap();
    let error = read_questions(&path).unwrap_err();
    assert!(error.to_string().contains("anatomy_test.csv:2:"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// Prompts, byte for byte

fn dev_rows() -> String {
    // Questions padded with spaces: `harness` strips them, `paper` keeps them.
    (0..5)
        .map(|i| {
            format!(
                "\" Dev question {i}? \",p{i},q{i},r{i},s{i},{}\n",
                ["A", "B", "C", "D"][i % 4]
            )
        })
        .collect()
}

const ALGEBRA_TEST: &str = concat!(
    "\"  Which, of these, is a group?\n\",\"Z, under +\",\"N, under +\",Neither,Both,A\n",
    "Second?,w,x,y,z,D\n",
);

#[test]
fn harness_prompt_matches_hand_written_string() {
    let fixture = Fixture::new();
    fixture.add("abstract_algebra", "dev", &dev_rows()).add(
        "abstract_algebra",
        "test",
        ALGEBRA_TEST,
    );
    let dump_path = fixture.root.join("dump.jsonl");
    let mut dump = PromptDump::create(&dump_path).unwrap();
    let mut scorer = StubScorer::new(100_000, |_| -1.0);
    let config = McConfig {
        protocol: Protocol::Harness,
        ..McConfig::default()
    };
    let report =
        evaluate_multiple_choice(&mut scorer, &fixture.dataset(), &config, Some(&mut dump))
            .unwrap();
    dump.finish().unwrap();

    let expected = concat!(
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n",
        "Dev question 0?\nA. p0\nB. q0\nC. r0\nD. s0\nAnswer: A\n\n",
        "Dev question 1?\nA. p1\nB. q1\nC. r1\nD. s1\nAnswer: B\n\n",
        "Dev question 2?\nA. p2\nB. q2\nC. r2\nD. s2\nAnswer: C\n\n",
        "Dev question 3?\nA. p3\nB. q3\nC. r3\nD. s3\nAnswer: D\n\n",
        "Dev question 4?\nA. p4\nB. q4\nC. r4\nD. s4\nAnswer: A\n\n",
        "Which, of these, is a group?\nA. Z, under +\nB. N, under +\nC. Neither\nD. Both\nAnswer:",
    );
    let lines = read_dump(&dump_path);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["context"].as_str().unwrap(), expected);
    assert_eq!(lines[0]["doc_index"], 0);
    assert_eq!(lines[0]["shots"], 5);
    assert_eq!(
        lines[0]["continuations"],
        serde_json::json!([" A", " B", " C", " D"])
    );
    // The scorer saw exactly these requests, four per question, in option order.
    assert_eq!(scorer.scored[0], LogLikelihoodRequest::new(expected, " A"));
    assert_eq!(scorer.scored[3], LogLikelihoodRequest::new(expected, " D"));
    assert_eq!(scorer.scored.len(), 8);
    assert!(
        lines[1]["context"]
            .as_str()
            .unwrap()
            .ends_with("Answer: A\n\nSecond?\nA. w\nB. x\nC. y\nD. z\nAnswer:")
    );
    assert_eq!(
        report.subjects[0].fewshot_source,
        FewshotSource::DevFirstRows
    );
    assert_eq!(report.overall.acc_norm, None);
}

#[test]
fn paper_prompt_matches_hand_written_string() {
    let question = McQuestion {
        question: " Spaced, kept? ".into(),
        choices: [
            "one".into(),
            "two, three".into(),
            "four".into(),
            "five".into(),
        ],
        answer: 1,
    };
    let example = McQuestion {
        question: "Example?".into(),
        choices: ["a".into(), "b".into(), "c".into(), "d".into()],
        answer: 3,
    };
    assert_eq!(
        build_context(Protocol::Paper, "anatomy", &[&example, &example], &question),
        concat!(
            "Question: Example?\nChoices:\nA. a\nB. b\nC. c\nD. d\nAnswer: d\n\n",
            "Question: Example?\nChoices:\nA. a\nB. b\nC. c\nD. d\nAnswer: d\n\n",
            "Question:  Spaced, kept? \nChoices:\nA. one\nB. two, three\nC. four\nD. five\nAnswer:",
        )
    );
    assert_eq!(
        build_context(Protocol::Paper, "anatomy", &[], &question),
        "Question:  Spaced, kept? \nChoices:\nA. one\nB. two, three\nC. four\nD. five\nAnswer:"
    );
    assert_eq!(
        continuations(Protocol::Paper, &question),
        [" one", " two, three", " four", " five"].map(String::from)
    );
    assert_eq!(
        paper_question_text(&example),
        "Question: Example?\nChoices:\nA. a\nB. b\nC. c\nD. d\nAnswer:"
    );
    assert_eq!(
        harness_question_text(&question),
        "Spaced, kept?\nA. one\nB. two, three\nC. four\nD. five\nAnswer:"
    );
    // With no examples the harness prompt keeps its description line.
    assert_eq!(
        build_context(Protocol::Harness, "high_school_us_history", &[], &example),
        "The following are multiple choice questions (with answers) about high school us history.\n\n\
         Example?\nA. a\nB. b\nC. c\nD. d\nAnswer:"
    );
    // lm-evaluation-harness mmlu_continuation: its description, `Question: {{question.strip()}}\nAnswer:`
    // without the options, " " + option text as the answer, examples joined by "\n\n".
    assert_eq!(
        build_context(Protocol::Continuation, "anatomy", &[&example], &question),
        concat!(
            "The following are questions (with answers) about anatomy.\n\n",
            "Question: Example?\nAnswer: d\n\n",
            "Question: Spaced, kept?\nAnswer:",
        )
    );
    assert_eq!(
        continuations(Protocol::Continuation, &question),
        [" one", " two, three", " four", " five"].map(String::from)
    );
    assert_eq!(
        "continuation".parse::<Protocol>().unwrap(),
        Protocol::Continuation
    );
    assert!(Protocol::Continuation.scores_option_text() && !Protocol::Harness.scores_option_text());
}

/// The paper protocol draws examples like lm-evaluation-harness 0.3.0. Indices from CPython:
///
/// ```text
/// rnd = random.Random(); rnd.seed(42); docs = list(range(3)); rnd.shuffle(docs)   # [1, 0, 2]
/// for d in docs: rnd.sample(list(range(8)), 6)
///   # 1: [0, 5, 2, 1, 4, 7]   0: [1, 5, 6, 4, 0, 2]   2: [6, 0, 7, 5, 1, 4]
/// ```
#[test]
fn paper_protocol_draws_examples_from_val_like_lm_eval_0_3_0() {
    let fixture = Fixture::new();
    let val = simple_rows("Val", ["a", "b", "c", "d"], 8);
    let test = concat!(
        "First?,w,x,y,z,A\n",
        "\"Which planet, of these, is largest?\",Mars,Jupiter,Venus,Mercury,B\n",
        "Third?,w,x,y,z,C\n",
    );
    fixture
        .add("astronomy", "dev", &dev_rows())
        .add("astronomy", "val", &val)
        .add("astronomy", "test", test);
    let dump_path = fixture.root.join("dump.jsonl");
    let mut dump = PromptDump::create(&dump_path).unwrap();
    let mut scorer = StubScorer::new(100_000, |_| -1.0);
    let config = McConfig {
        protocol: Protocol::Paper,
        ..McConfig::default()
    };
    let report =
        evaluate_multiple_choice(&mut scorer, &fixture.dataset(), &config, Some(&mut dump))
            .unwrap();
    dump.finish().unwrap();
    let lines = read_dump(&dump_path);
    let order: Vec<u64> = lines
        .iter()
        .map(|l| l["doc_index"].as_u64().unwrap())
        .collect();
    assert_eq!(order, [1, 0, 2]);
    assert_eq!(
        lines[0]["context"].as_str().unwrap(),
        concat!(
            "Question: Val question 0?\nChoices:\nA. a0\nB. b0\nC. c0\nD. d0\nAnswer: a0\n\n",
            "Question: Val question 5?\nChoices:\nA. a5\nB. b5\nC. c5\nD. d5\nAnswer: b5\n\n",
            "Question: Val question 2?\nChoices:\nA. a2\nB. b2\nC. c2\nD. d2\nAnswer: c2\n\n",
            "Question: Val question 1?\nChoices:\nA. a1\nB. b1\nC. c1\nD. d1\nAnswer: b1\n\n",
            "Question: Val question 4?\nChoices:\nA. a4\nB. b4\nC. c4\nD. d4\nAnswer: a4\n\n",
            "Question: Which planet, of these, is largest?\nChoices:\nA. Mars\nB. Jupiter\nC. Venus\nD. Mercury\nAnswer:",
        )
    );
    assert_eq!(
        lines[0]["continuations"],
        serde_json::json!([" Mars", " Jupiter", " Venus", " Mercury"])
    );
    let starts = |line: &serde_json::Value| -> Vec<String> {
        line["context"]
            .as_str()
            .unwrap()
            .split("\n\n")
            .map(|block| block.lines().next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        starts(&lines[1])[..5],
        ["1", "5", "6", "4", "0"].map(|i| format!("Question: Val question {i}?"))
    );
    assert_eq!(
        starts(&lines[2])[..5],
        ["6", "0", "7", "5", "1"].map(|i| format!("Question: Val question {i}?"))
    );
    assert_eq!(report.subjects[0].fewshot_source, FewshotSource::ValSample);
    assert!(!report.subjects[0].fewshot_pool_short);
    assert_eq!(report.seed, Some(42));
}

/// Without val, the paper protocol falls back to dev and says so. CPython, for the 5-row pool:
/// `rnd.shuffle(range(3))` → [1, 0, 2], then `rnd.sample(range(5), 5)` per doc →
/// [0, 2, 4, 3, 1], [0, 4, 2, 1, 3], [0, 4, 3, 2, 1].
#[test]
fn paper_protocol_without_val_draws_from_dev_and_says_so() {
    let fixture = Fixture::new();
    fixture.add("virology", "dev", &dev_rows()).add(
        "virology",
        "test",
        &simple_rows("Test", ["w", "x", "y", "z"], 3),
    );
    let dump_path = fixture.root.join("dump.jsonl");
    let mut dump = PromptDump::create(&dump_path).unwrap();
    let mut scorer = StubScorer::new(100_000, |_| -1.0);
    let config = McConfig {
        protocol: Protocol::Paper,
        ..McConfig::default()
    };
    let report =
        evaluate_multiple_choice(&mut scorer, &fixture.dataset(), &config, Some(&mut dump))
            .unwrap();
    dump.finish().unwrap();
    let subject = &report.subjects[0];
    assert_eq!(subject.fewshot_source, FewshotSource::DevSampleNoVal);
    assert!(subject.fewshot_pool_short);
    assert!(
        report
            .to_markdown()
            .contains("seeded random draws from dev (no val split)")
    );
    let lines = read_dump(&dump_path);
    let first_blocks: Vec<&str> = lines[0]["context"]
        .as_str()
        .unwrap()
        .split("\n\n")
        .collect();
    let expected: Vec<String> = [0, 2, 4, 3, 1]
        .iter()
        .map(|i| format!("Question:  Dev question {i}? \nChoices:"))
        .collect();
    for (block, prefix) in first_blocks.iter().zip(&expected) {
        assert!(
            block.starts_with(prefix.as_str()),
            "{block:?} vs {prefix:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Scoring and aggregation

/// Test questions say which option the stub favours ("pick B"); the answer column decides
/// whether that is right.
fn pick_rows(rows: &[(&str, &str)]) -> String {
    rows.iter()
        .map(|(pick, answer)| format!("pick {pick},a,b,c,d,{answer}\n"))
        .collect()
}

/// Log-likelihood -0.5 for the favoured letter, -2 (or -1 for the letter after it) otherwise.
fn favour_picked(request: &LogLikelihoodRequest) -> f64 {
    let last_block = request.context.rsplit("\n\n").next().unwrap();
    let pick = last_block
        .strip_prefix("pick ")
        .unwrap()
        .chars()
        .next()
        .unwrap();
    let letter = request.continuation.trim().chars().next().unwrap();
    if letter == pick {
        -0.5
    } else if letter as u32 == pick as u32 + 1 {
        -1.0
    } else {
        -2.0
    }
}

#[test]
fn scoring_picks_the_highest_log_likelihood_and_averages_by_question() {
    let fixture = Fixture::new();
    fixture
        .add("astronomy", "dev", &dev_rows())
        .add(
            "astronomy",
            "test",
            &pick_rows(&[("B", "B"), ("C", "C"), ("A", "A"), ("D", "A")]),
        )
        .add("philosophy", "dev", &dev_rows())
        .add("philosophy", "test", &pick_rows(&[("A", "B"), ("C", "D")]))
        .add("my_own_subject", "dev", &dev_rows())
        .add("my_own_subject", "test", &pick_rows(&[("D", "D")]));
    let mut scorer = StubScorer::new(100_000, favour_picked);
    let report =
        evaluate_multiple_choice(&mut scorer, &fixture.dataset(), &McConfig::default(), None)
            .unwrap();

    assert_eq!((report.overall.questions, report.overall.correct), (7, 4));
    assert!((report.overall.acc - 4.0 / 7.0).abs() < 1e-12);
    let subject = |name: &str| report.subjects.iter().find(|s| s.subject == name).unwrap();
    assert_eq!(subject("astronomy").accuracy.correct, 3);
    assert_eq!(subject("astronomy").category, Some(Category::Stem));
    assert_eq!(subject("philosophy").accuracy.correct, 0);
    assert_eq!(subject("my_own_subject").category, None);
    assert!((report.subject_mean_acc - (0.75 + 0.0 + 1.0) / 3.0).abs() < 1e-12);
    let categories: Vec<(Category, u64, u64)> = report
        .categories
        .iter()
        .map(|c| (c.category, c.accuracy.questions, c.accuracy.correct))
        .collect();
    assert_eq!(
        categories,
        [(Category::Stem, 4, 3), (Category::Humanities, 2, 0)]
    );
    assert_eq!(report.requests, 28);

    // Subject selection, and an unknown subject is an error that lists the known ones.
    let selected = McConfig {
        subjects: vec!["philosophy".into()],
        ..McConfig::default()
    };
    let report =
        evaluate_multiple_choice(&mut scorer, &fixture.dataset(), &selected, None).unwrap();
    assert_eq!(report.subjects.len(), 1);
    assert_eq!(report.overall.questions, 2);
    let unknown = McConfig {
        subjects: vec!["alchemy".into()],
        ..McConfig::default()
    };
    let error =
        evaluate_multiple_choice(&mut scorer, &fixture.dataset(), &unknown, None).unwrap_err();
    assert!(
        error.to_string().contains("unknown subject `alchemy`"),
        "{error}"
    );

    let markdown = report.to_markdown();
    assert!(
        markdown.contains("| philosophy | humanities | 2 | 0.00% |"),
        "{markdown}"
    );
}

#[test]
fn acc_norm_divides_by_character_length_of_the_option() {
    // Option B has 10 characters, option C 5 characters but 10 bytes.
    let fixture = Fixture::new();
    fixture.add("nutrition", "dev", &dev_rows()).add(
        "nutrition",
        "test",
        "Which?,a,bbbbbbbbbb,ééééé,dd,B\n",
    );
    // Summed log-likelihoods: A -3 (per char -3), B -10 (-1), C -5.5 (-1.1 per char, but -0.55
    // per byte), D -8 (-4). acc picks A; acc_norm per character picks B, the gold answer.
    let mut scorer = StubScorer::new(100_000, |request: &LogLikelihoodRequest| {
        match request.continuation.as_str() {
            " a" => -3.0,
            " bbbbbbbbbb" => -10.0,
            " ééééé" => -5.5,
            " dd" => -8.0,
            other => panic!("unexpected continuation {other:?}"),
        }
    });
    let config = McConfig {
        protocol: Protocol::Paper,
        ..McConfig::default()
    };
    let report = evaluate_multiple_choice(&mut scorer, &fixture.dataset(), &config, None).unwrap();
    assert_eq!(report.overall.correct, 0);
    assert_eq!(report.overall.correct_norm, Some(1));
    assert_eq!(report.overall.acc_norm, Some(1.0));
    assert_eq!(report.subject_mean_acc_norm, Some(1.0));
}

// ---------------------------------------------------------------------------------------------
// Cropping

#[test]
fn cropping_drops_examples_until_the_prompt_fits() {
    let fixture = Fixture::new();
    fixture
        .add("anatomy", "dev", &dev_rows())
        .add("anatomy", "test", "Short?,a,b,c,d,A\n");
    let data = fixture.dataset();
    let subject = data.load_subject("anatomy").unwrap();
    let question = &subject.test[0];
    let with = |shots: usize| {
        let examples: Vec<&McQuestion> = subject.dev[..shots].iter().collect();
        build_context(Protocol::Harness, "anatomy", &examples, question)
    };
    // One token per character: the model reads context + " A" - 1 = context + 1 characters.
    let needs = |shots: usize| with(shots).chars().count() + 1;

    let run = |window: usize| {
        let dump_path = fixture.root.join(format!("dump-{window}.jsonl"));
        let mut dump = PromptDump::create(&dump_path).unwrap();
        let mut scorer = StubScorer::new(window, |_| -1.0);
        let report =
            evaluate_multiple_choice(&mut scorer, &data, &McConfig::default(), Some(&mut dump))
                .unwrap();
        dump.finish().unwrap();
        (report, read_dump(&dump_path).remove(0))
    };

    // Exactly two examples fit: the first two dev rows are kept, as evaluate.py's k -= 1 does.
    let (report, line) = run(needs(2));
    assert_eq!(line["shots"], 2);
    assert_eq!(line["context"].as_str().unwrap(), with(2));
    assert_eq!(
        (
            report.prompts_cropped,
            report.examples_dropped,
            report.prompts_truncated
        ),
        (1, 3, 0)
    );
    assert_eq!(report.subjects[0].mean_shots, 2.0);
    let (_, line) = run(needs(3) - 1);
    assert_eq!(line["shots"], 2);

    // Everything fits.
    let (report, line) = run(needs(5));
    assert_eq!(line["shots"], 5);
    assert_eq!((report.prompts_cropped, report.prompts_truncated), (0, 0));

    // Not even the bare question fits: no examples, and the prompt is marked as truncated.
    let (report, line) = run(needs(0) - 1);
    assert_eq!(line["shots"], 0);
    assert_eq!(line["truncated"], true);
    assert_eq!(
        (
            report.prompts_cropped,
            report.examples_dropped,
            report.prompts_truncated
        ),
        (1, 5, 1)
    );
    assert!(
        report
            .to_markdown()
            .contains("1 did not fit even without examples")
    );
}

#[test]
fn paper_protocol_keeps_every_example_and_scores_with_half_the_window() {
    let fixture = Fixture::new();
    fixture
        .add("anatomy", "dev", &dev_rows())
        .add("anatomy", "val", &dev_rows())
        .add("anatomy", "test", "Short?,a,b,c,d,A\n");
    let data = fixture.dataset();
    let dump_path = fixture.root.join("paper.jsonl");
    let mut dump = PromptDump::create(&dump_path).unwrap();
    // A 100-"token" context: prompts are scored with 50, GPT-NeoX's max_position_embeddings // 2.
    let mut scorer = StubScorer::new(100, |_| -1.0);
    let config = McConfig {
        protocol: Protocol::Paper,
        ..McConfig::default()
    };
    let report = evaluate_multiple_choice(&mut scorer, &data, &config, Some(&mut dump)).unwrap();
    dump.finish().unwrap();
    assert!(
        scorer.windows.iter().all(|&w| w == 50),
        "{:?}",
        scorer.windows
    );
    let line = read_dump(&dump_path).remove(0);
    // Five worked examples are far longer than 50 characters; none is dropped, the front is cut.
    assert_eq!(line["shots"], 5);
    assert_eq!(line["truncated"], true);
    assert_eq!(
        (
            report.max_input_tokens,
            report.prompts_cropped,
            report.examples_dropped,
            report.prompts_truncated
        ),
        (50, 0, 0, 1)
    );
    assert!(
        report.to_markdown().contains("Window: 50 tokens"),
        "{}",
        report.to_markdown()
    );
    // The harness protocol with the same scorer uses the whole context and drops examples.
    let mut scorer = StubScorer::new(100, |_| -1.0);
    let report =
        evaluate_multiple_choice(&mut scorer, &fixture.dataset(), &McConfig::default(), None)
            .unwrap();
    assert!(
        scorer.windows.iter().all(|&w| w == 100),
        "{:?}",
        scorer.windows
    );
    assert_eq!((report.max_input_tokens, report.prompts_cropped), (100, 1));
}

// ---------------------------------------------------------------------------------------------
// The real MMLU copy

#[test]
fn category_mapping_covers_all_57_subjects_of_the_real_mmlu() {
    let ours: BTreeSet<&str> = MMLU_SUBJECTS.iter().map(|(name, _)| *name).collect();
    assert_eq!(ours.len(), 57);
    // The crate's directory at run time: a test binary reused from a target directory shared
    // with another checkout would carry that checkout's path.
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    let root = Path::new(&crate_dir).join("../../../shared/data/mmlu");
    if !root.join("data/test").is_dir() {
        eprintln!("skipped: {} is absent", root.display());
        return;
    }
    let dataset = McDataset::open(&root).unwrap();
    let theirs: BTreeSet<&str> = dataset.subjects().iter().map(String::as_str).collect();
    assert_eq!(ours, theirs);
    assert!(dataset.subjects().iter().all(|s| category_of(s).is_some()));
    // Every file parses; counts from the copy's README (285 dev, 14,042 test rows).
    let (mut dev, mut test) = (0, 0);
    for subject in dataset.subjects() {
        let data = dataset.load_subject(subject).unwrap();
        assert!(data.val.is_none());
        dev += data.dev.len();
        test += data.test.len();
    }
    assert_eq!((dev, test), (285, 14_042));
}

// ---------------------------------------------------------------------------------------------
// The model-backed scorer and perplexity

fn micro_config(vocab_size: usize, max_seq_len: usize) -> ModelConfig {
    ModelConfig {
        vocab_size,
        n_layers: 2,
        d_model: 32,
        n_heads: 4,
        d_ff: 128,
        max_seq_len,
        rotary_pct: 0.25,
        rotary_base: 10_000.0,
        layer_norm_eps: 1e-5,
    }
}

fn micro_model(vocab_size: usize, max_seq_len: usize, seed: u64) -> GptNeoX<B> {
    let device = cpu_device();
    micro_config(vocab_size, max_seq_len)
        .init_seeded::<B>(&device, seed)
        .unwrap()
}

/// Log-probabilities of every next token, computed on the host in f64 from one unbatched,
/// unpadded forward pass: `[position][token]`.
fn host_log_probs(model: &GptNeoX<B>, tokens: &[u32]) -> Vec<Vec<f64>> {
    let ids: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
    let input =
        Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, tokens.len()]), &cpu_device());
    let logits = model.forward(input);
    let [_, seq, vocab] = logits.dims();
    let values: Vec<f64> = logits.into_data().iter::<f64>().collect();
    (0..seq)
        .map(|position| {
            let row = &values[position * vocab..(position + 1) * vocab];
            let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let log_sum = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            row.iter().map(|v| v - log_sum).collect()
        })
        .collect()
}

fn tokenizer_for_tests() -> tokenizers::Tokenizer {
    let texts: Vec<String> = (0..200)
        .map(|i| format!("Question: which planet {i} is largest? Answer: Jupiter, Mars or Venus. The sky {i}."))
        .collect();
    mixlab_data::tokenizer::train_bpe(300, texts.iter()).unwrap()
}

#[test]
fn model_scorer_matches_a_hand_computation_from_the_logits() {
    let tokenizer = tokenizer_for_tests();
    let vocab = tokenizer.get_vocab_size(true);
    let model = micro_model(vocab, 32, 7);
    let requests = vec![
        LogLikelihoodRequest::new("Question: which planet is largest? Answer:", " Jupiter"),
        LogLikelihoodRequest::new("Question: which planet is largest? Answer:", " Mars"),
        LogLikelihoodRequest::new("Question: which planet is largest? Answer:", " A"),
        LogLikelihoodRequest::new("Question: which planet is largest? Answer:", " B"),
        // The same input as the request before: one shared row.
        LogLikelihoodRequest::new("Question: which planet is largest? Answer:", " B"),
        // Trailing space of the context moves into the continuation.
        LogLikelihoodRequest::new("The sky ", "is Venus."),
        // Longer than the 32-token window: cut at the front.
        LogLikelihoodRequest::new(
            "Question: which planet 1 is largest? Answer: Jupiter, Mars or Venus. ".repeat(4),
            "The sky",
        ),
        LogLikelihoodRequest::new("", "Mars or Venus"),
        // A continuation longer than the window: scored over consecutive windows.
        LogLikelihoodRequest::new("The sky", " Jupiter, Mars or Venus.".repeat(8)),
    ];
    let mut scorer = ModelScorer::new(model.clone(), tokenizer.clone(), cpu_device())
        .unwrap()
        .with_batch_size(3);
    let scores = scorer.score(&requests, 32).unwrap();

    let encode = |text: &str| tokenizer.encode(text, false).unwrap().get_ids().to_vec();
    for (index, (request, score)) in requests.iter().zip(&scores).enumerate() {
        let context = request.context.trim_end();
        let continuation = format!(
            "{}{}",
            &request.context[context.len()..],
            request.continuation
        );
        let (context_ids, continuation_ids) = if context.is_empty() {
            (
                vec![tokenizer.token_to_id("<|endoftext|>").unwrap()],
                encode(&continuation),
            )
        } else {
            let context_ids = encode(context);
            let whole = encode(&format!("{context}{continuation}"));
            let split = context_ids.len();
            (context_ids, whole[split..].to_vec())
        };
        let mut full = context_ids;
        full.extend(&continuation_ids);
        let (len, window) = (full.len(), 32);
        let first_target = len - continuation_ids.len();
        let mut expected = 0.0;
        let mut greedy = true;
        for target in first_target..len {
            // Blocks of `window` targets counted from the end; the block ending before `end`
            // reads full[start..end - 1]. A request that fits is one block with start 0.
            let end = len - window * ((len - 1 - target) / window);
            let start = (end - 1).saturating_sub(window);
            let log_probs = host_log_probs(&model, &full[start..end - 1]);
            let row = &log_probs[target - 1 - start];
            let token = full[target] as usize;
            expected += row[token];
            let best = (0..row.len())
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap();
            greedy &= best == token;
        }
        let start = len.saturating_sub(window + 1);
        assert!(
            (score.log_likelihood - expected).abs() < 1e-4,
            "request {index}: {} vs {expected}",
            score.log_likelihood
        );
        assert_eq!(score.is_greedy, Some(greedy), "request {index}");
        assert_eq!(
            score.continuation_tokens,
            continuation_ids.len(),
            "request {index}"
        );
        assert_eq!(score.truncated, start > 0, "request {index}");
    }
    assert!(scores[6].truncated);
    assert!(
        scores[8].truncated && scores[8].continuation_tokens > 32,
        "{:?}",
        scores[8]
    );
    assert_eq!(scores[3], scores[4]);
    let stats = scorer.stats();
    assert_eq!(stats.requests, 9);
    // Nine requests; the long continuation needs two rows, the repeated request shares one.
    assert_eq!(stats.rows, 9, "{stats:?}");

    // Scoring one request at a time gives the same answers as the batch.
    for (request, batched) in requests.iter().zip(&scores) {
        let alone = scorer.score(std::slice::from_ref(request), 32).unwrap()[0];
        assert!((alone.log_likelihood - batched.log_likelihood).abs() < 1e-4);
        assert_eq!(alone.is_greedy, batched.is_greedy);
    }
}

/// The `paper` protocol's window for a model with `max_position_embeddings = 1024`: GPT-NeoX's
/// evaluation adapter reads `(context + continuation)[-(512 + 1):][:-1]`, so a long request is
/// scored on exactly the last 513 tokens of context + continuation minus the final one, and a
/// short one is unchanged.
#[test]
fn paper_window_reads_the_last_513_tokens_minus_the_final_one() {
    let tokenizer = tokenizer_for_tests();
    let model = micro_model(tokenizer.get_vocab_size(true), 1024, 11);
    let window = Protocol::Paper.window(model.config().max_seq_len);
    assert_eq!(window, 512);
    let mut scorer = ModelScorer::new(model.clone(), tokenizer.clone(), cpu_device()).unwrap();
    let encode = |text: &str| tokenizer.encode(text, false).unwrap().get_ids().to_vec();
    let long_context =
        "Question: which planet 3 is largest? Answer: Jupiter, Mars or Venus. ".repeat(30);
    let cases = [
        (long_context.trim_end().to_owned(), " Jupiter"),
        (
            "Question: which planet is largest? Answer:".to_owned(),
            " Mars",
        ),
    ];
    for (context, continuation) in cases {
        let request = LogLikelihoodRequest::new(context.as_str(), continuation);
        let score = scorer
            .score(std::slice::from_ref(&request), window)
            .unwrap()[0];
        let context_ids = encode(&context);
        let whole = encode(&format!("{context}{continuation}"));
        let continuation_ids = whole[context_ids.len()..].to_vec();
        let len = whole.len();
        let long = len > 513;
        // The adapter's input: the last 513 tokens (all of them when shorter), minus the last.
        let input = &whole[len.saturating_sub(513)..len - 1];
        assert_eq!(input.len(), if long { 512 } else { len - 1 });
        let log_probs = host_log_probs(&model, input);
        let expected: f64 = (0..continuation_ids.len())
            .map(|i| {
                let position = input.len() - continuation_ids.len() + i;
                log_probs[position][continuation_ids[i] as usize]
            })
            .sum();
        assert!(
            (score.log_likelihood - expected).abs() < 1e-4,
            "{len} tokens: {} vs {expected}",
            score.log_likelihood
        );
        assert_eq!(score.truncated, long, "{len} tokens");
        if long {
            // Not the model's whole 1024-token context: the score differs from reading it all.
            let all = host_log_probs(&model, &whole[..len - 1]);
            let with_all: f64 = (0..continuation_ids.len())
                .map(|i| all[len - 1 - continuation_ids.len() + i][continuation_ids[i] as usize])
                .sum();
            assert!(
                len - 1 <= 1024,
                "the long case fits the model's context: {len}"
            );
            assert!(
                (with_all - expected).abs() > 1e-6,
                "{with_all} vs {expected}"
            );
        }
    }
    // A window larger than the model's context is refused, naming the field.
    let e = scorer
        .score(&[LogLikelihoodRequest::new("a", " b")], 1025)
        .unwrap_err()
        .to_string();
    assert!(e.contains("window"), "{e}");
}

#[test]
fn multiple_choice_runs_end_to_end_with_a_model() {
    let fixture = Fixture::new();
    fixture.add("astronomy", "dev", &dev_rows()).add(
        "astronomy",
        "test",
        &simple_rows("Test", ["Jupiter", "Mars", "Venus", "sky"], 6),
    );
    let tokenizer = tokenizer_for_tests();
    let model = micro_model(tokenizer.get_vocab_size(true), 64, 3);
    let mut scorer = ModelScorer::new(model, tokenizer, cpu_device())
        .unwrap()
        .with_batch_size(4);
    for protocol in Protocol::ALL {
        let dump_path = fixture.root.join(format!("{protocol}.jsonl"));
        let mut dump = PromptDump::create(&dump_path).unwrap();
        let config = McConfig {
            protocol,
            questions_per_call: 4,
            ..McConfig::default()
        };
        let report =
            evaluate_multiple_choice(&mut scorer, &fixture.dataset(), &config, Some(&mut dump))
                .unwrap();
        dump.finish().unwrap();
        assert_eq!(report.overall.questions, 6);
        // A 64-token window cannot hold five worked examples: `harness` and `continuation`
        // drop examples; `paper` keeps them and scores the last 32 tokens (half the context).
        let window = if protocol == Protocol::Paper {
            assert_eq!((report.prompts_cropped, report.prompts_truncated), (0, 6));
            assert_eq!(report.max_input_tokens, 32);
            32
        } else {
            assert_eq!(report.prompts_cropped, 6, "{protocol}");
            assert_eq!(report.max_input_tokens, 64);
            64
        };
        let lines = read_dump(&dump_path);
        let check = &mut scorer;
        for line in &lines {
            let context = line["context"].as_str().unwrap();
            let lls = line["log_likelihoods"].as_array().unwrap();
            if protocol == Protocol::Paper {
                assert_eq!(line["shots"], 5);
            }
            for (continuation, ll) in line["continuations"].as_array().unwrap().iter().zip(lls) {
                let request = LogLikelihoodRequest::new(context, continuation.as_str().unwrap());
                assert!(
                    line["truncated"] == true || check.input_tokens(&request).unwrap() <= window
                );
                let alone = check.score(&[request], window).unwrap()[0].log_likelihood;
                assert!((alone - ll.as_f64().unwrap()).abs() < 1e-4);
            }
        }
    }
}

fn jsonl(docs: &[(String, &str)]) -> String {
    docs.iter()
        .map(|(text, domain)| {
            serde_json::json!({"text": text, "meta": {"pile_set_name": domain}}).to_string() + "\n"
        })
        .collect()
}

fn corpus_docs(n: usize, offset: usize) -> Vec<(String, &'static str)> {
    let mut docs = Vec::new();
    for i in offset..offset + n {
        docs.push((
            format!("alpha beta gamma {i} alpha delta epsilon. "),
            "Alpha",
        ));
        docs.push((
            format!("one two three four five {i} six seven eight nine"),
            "Numbers",
        ));
    }
    docs
}

#[test]
fn perplexity_equals_a_hand_computation_from_per_token_nll() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    write_file(&corpus.join("train/00.jsonl"), &jsonl(&corpus_docs(80, 0)));
    write_file(&corpus.join("val.jsonl"), &jsonl(&corpus_docs(30, 1000)));
    write_file(&corpus.join("test.jsonl"), &jsonl(&corpus_docs(3, 2000)));
    let out = tmp.path().join("dataset");
    let seq_len = 12;
    let mut prepare = PrepareConfig::new(
        vec![corpus],
        out.clone(),
        TokenizerSource::Train { vocab_size: 300 },
        seq_len,
    );
    prepare.row_group_bytes = 4 * (seq_len + 1) * 2;
    prepare_dataset(&prepare).unwrap();
    let store = DomainStore::open(&out, &OpenOptions::default()).unwrap();
    let vocab = store.manifest().vocab_size;
    let model = micro_model(vocab, 16, 11);
    let device = cpu_device();

    let config = PerplexityConfig {
        max_sequences_per_domain: Some(5),
        batch_size: 3,
        ..PerplexityConfig::default()
    };
    let report = evaluate_perplexity(&model, &device, &store, Split::Val, &config).unwrap();
    assert_eq!(report.domains.len(), 2);

    let hand = |domain: &str, cap: Option<u64>| -> (f64, u64, u64) {
        let (mut sum, mut tokens, mut sequences) = (0.0, 0, 0);
        for sequence in store.iter_split(domain, Split::Val, cap).unwrap() {
            let sequence = sequence.unwrap();
            let log_probs = host_log_probs(&model, &sequence[..seq_len]);
            for (position, &target) in sequence[1..].iter().enumerate() {
                sum -= log_probs[position][target as usize];
            }
            tokens += seq_len as u64;
            sequences += 1;
        }
        (sum, tokens, sequences)
    };
    let mut perplexities = Vec::new();
    let (mut all_nll, mut all_tokens) = (0.0, 0);
    for domain in &report.domains {
        let (sum, tokens, sequences) = hand(&domain.domain, Some(5));
        assert_eq!((domain.sequences, domain.tokens), (5, 5 * seq_len as u64));
        assert_eq!((sequences, tokens), (domain.sequences, domain.tokens));
        let mean = sum / tokens as f64;
        assert!(
            (domain.mean_nll - mean).abs() < 1e-5,
            "{}: {} vs {mean}",
            domain.domain,
            domain.mean_nll
        );
        assert!((domain.perplexity - mean.exp()).abs() / mean.exp() < 1e-5);
        perplexities.push(mean.exp());
        all_nll += sum;
        all_tokens += tokens;
    }
    let mean_perplexity = perplexities.iter().sum::<f64>() / perplexities.len() as f64;
    assert!((report.mean_perplexity - mean_perplexity).abs() / mean_perplexity < 1e-5);
    let weighted = all_nll / all_tokens as f64;
    assert!((report.token_weighted_nll - weighted).abs() < 1e-5);
    assert!((report.token_weighted_perplexity - weighted.exp()).abs() / weighted.exp() < 1e-5);
    // A random model of a 300-token vocabulary is near uniform: perplexity within a factor 2 of 300.
    assert!(
        (150.0..600.0).contains(&report.mean_perplexity),
        "{}",
        report.mean_perplexity
    );

    // Each sequence's losses do not depend on the others in its batch (the forward pass is
    // per row or per sequence, and the sums run on the host in sequence order), so the report
    // has the same bits at every batch size, one sequence at a time included.
    for batch_size in [1, 2, 5] {
        let other = PerplexityConfig {
            batch_size,
            ..config.clone()
        };
        let again = evaluate_perplexity(&model, &device, &store, Split::Val, &other).unwrap();
        assert_eq!(again, report, "batch size {batch_size}");
    }

    // No cap: every stored sequence of the one requested domain.
    let all = PerplexityConfig {
        max_sequences_per_domain: None,
        batch_size: 4,
        domains: vec!["Numbers".into()],
        progress: false,
    };
    let report = evaluate_perplexity(&model, &device, &store, Split::Val, &all).unwrap();
    let stored = store.manifest().domain("Numbers").unwrap().splits[&Split::Val].sequences;
    assert!(stored > 5);
    let (sum, tokens, _) = hand("Numbers", None);
    assert_eq!(report.domains[0].sequences, stored);
    assert!((report.domains[0].mean_nll - sum / tokens as f64).abs() < 1e-5);
    assert!(report.to_markdown().contains("| Numbers |"));

    // A model with a shorter context than the dataset's sequences is refused.
    let short = micro_model(vocab, 8, 1);
    let error = evaluate_perplexity(&short, &device, &store, Split::Val, &config).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("longer than the model's max_seq_len of 8"),
        "{error}"
    );
}

/// A batch larger than one CPU pass holds (`ModelBackend::loss_positions_per_pass`: 512
/// positions, 42 sequences of 12) is scored in parts with the same bits as each sequence alone,
/// ragged sequences (padded at the end, after their last real position) included.
#[test]
fn large_batches_are_scored_in_parts_with_the_same_bits() {
    let device = cpu_device();
    let model = micro_model(50, 16, 5);
    let sequences: Vec<Vec<u32>> = (0..100u32)
        .map(|i| {
            let len = if i % 7 == 3 { 6 } else { 13 };
            (0..len).map(|j| (i * 31 + j * 17) % 50).collect()
        })
        .collect();
    let together = sequence_nll_sums(&model, &device, &sequences);
    assert_eq!(together.len(), sequences.len());
    for (sequence, sum) in sequences.iter().zip(&together) {
        let alone = sequence_nll_sums(&model, &device, std::slice::from_ref(sequence));
        assert_eq!(alone[0].to_bits(), sum.to_bits());
    }
}

#[test]
fn prompt_dump_write_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let error = PromptDump::create(&dir.path().join("missing/dir/dump.jsonl")).unwrap_err();
    assert!(
        error.to_string().contains("missing/dir/dump.jsonl"),
        "{error}"
    );
}
