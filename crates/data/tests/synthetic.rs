//! Tests of the built-in synthetic corpus: determinism, layout, the prepare-data round trip, the
//! domains' documented properties, and the multiple-choice set's ground truth.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use mixlab_data::synthetic::code::parse_program;
use mixlab_data::synthetic::knowledge::{Attribute, OCCUPATIONS};
use mixlab_data::synthetic::{
    DomainKind, DomainSpec, McSubject, SyntheticConfig, SyntheticCorpus, SyntheticReport, Truth,
    generate_corpus,
};
use mixlab_data::{Manifest, PrepareConfig, Split, TokenizerSource, prepare_dataset};

/// Small enough for a test (≈230 KB of training text), large enough for every domain to have
/// many documents and complete 64-token sequences in every split.
const TEST_SCALE: f64 = 0.02;

fn small(seed: u64) -> SyntheticConfig {
    SyntheticConfig::with_seed_and_scale(seed, TEST_SCALE)
}

fn generate(config: &SyntheticConfig, dir: &Path) -> SyntheticReport {
    generate_corpus(config, dir, false).unwrap()
}

/// All files under `dir`, relative path → bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

/// (domain, text) of every line of a `.jsonl.zst` file, in order.
fn read_split(path: &Path) -> Vec<(String, String)> {
    let mut text = String::new();
    zstd::stream::read::Decoder::new(std::fs::File::open(path).unwrap())
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
            assert_eq!(keys.len(), 2, "only text and meta: {line}");
            (
                v["meta"]["pile_set_name"].as_str().unwrap().to_string(),
                v["text"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn split_path(dir: &Path, split: Split) -> PathBuf {
    match split {
        Split::Train => dir.join("train/00.jsonl.zst"),
        Split::Val => dir.join("val.jsonl.zst"),
        Split::Test => dir.join("test.jsonl.zst"),
    }
}

fn docs_of(dir: &Path, split: Split, kind: DomainKind) -> Vec<String> {
    read_split(&split_path(dir, split))
        .into_iter()
        .filter(|(d, _)| d == kind.name())
        .map(|(_, t)| t)
        .collect()
}

#[test]
fn same_seed_gives_identical_files_and_different_seeds_differ() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    generate(&small(7), &a);
    generate(&small(7), &b);
    generate(&small(8), &c);
    let (ta, tb, tc) = (tree(&a), tree(&b), tree(&c));
    assert!(ta.len() >= 3 + 9 + 2, "{:?}", ta.keys().collect::<Vec<_>>());
    assert_eq!(ta, tb, "same seed, same bytes");
    // Another seed: different documents in every domain, and different questions.
    for split in Split::ALL {
        for kind in DomainKind::ALL {
            let da: HashSet<String> = docs_of(&a, split, kind).into_iter().collect();
            let dc: HashSet<String> = docs_of(&c, split, kind).into_iter().collect();
            assert!(
                da.intersection(&dc).count() * 2 < da.len(),
                "{kind} {split}: seeds share documents"
            );
        }
    }
    for (path, bytes) in &ta {
        if path.starts_with("mc/data") {
            assert_ne!(Some(bytes), tc.get(path), "{}", path.display());
        }
    }
    // Nothing is left besides the three outputs (no partial directories).
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 3);
}

#[test]
fn every_domain_is_in_every_split_as_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("corpus");
    let report = generate(&small(1), &out);
    let info: SyntheticReport =
        serde_json::from_slice(&std::fs::read(out.join("corpus-info.json")).unwrap()).unwrap();
    assert_eq!(info, report);
    let saved: SyntheticConfig =
        serde_json::from_slice(&std::fs::read(out.join("synthetic-config.json")).unwrap()).unwrap();
    assert_eq!(saved, small(1));
    assert_eq!(report.domains.len(), DomainKind::ALL.len());
    for split in Split::ALL {
        let mut counts: HashMap<String, (u64, u64)> = HashMap::new();
        for (domain, text) in read_split(&split_path(&out, split)) {
            let e = counts.entry(domain).or_default();
            e.0 += 1;
            e.1 += text.len() as u64;
        }
        assert_eq!(counts.len(), DomainKind::ALL.len(), "{split}: {counts:?}");
        for d in &report.domains {
            let s = d.splits[&split];
            assert_eq!(
                counts[&d.name],
                (s.documents, s.bytes),
                "{} {split}",
                d.name
            );
            assert!(s.documents >= 8, "{} {split}: {}", d.name, s.documents);
            let target = small(1).target_bytes(d.kind, split).unwrap();
            assert!(
                s.bytes >= target,
                "{} {split}: {} < {target}",
                d.name,
                s.bytes
            );
        }
    }
    // Sizes follow the specs: the tiny domain is the smallest (at this scale it is held up only
    // by `min_documents`), the hard Markov domain the largest.
    let train =
        |k: DomainKind| report.domains.iter().find(|d| d.kind == k).unwrap().splits[&Split::Train];
    assert_eq!(
        train(DomainKind::TinyRecipes).documents,
        small(1).min_documents
    );
    for kind in DomainKind::ALL {
        assert!(
            train(DomainKind::TinyRecipes).bytes <= train(kind).bytes,
            "{kind}"
        );
        assert!(
            train(DomainKind::MarkovHard).bytes >= train(kind).bytes,
            "{kind}"
        );
    }
    // Interleaved: the first tenth of the training file already has every domain but the tiny one.
    let lines = read_split(&split_path(&out, Split::Train));
    let head: HashSet<&str> = lines[..lines.len() / 10]
        .iter()
        .map(|(d, _)| d.as_str())
        .collect();
    assert!(head.len() >= DomainKind::ALL.len() - 1, "{head:?}");
}

#[test]
fn round_trips_through_prepare_data() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    let report = generate(&small(3), &corpus);
    let out = tmp.path().join("dataset");
    let config = PrepareConfig::new(
        vec![corpus],
        out.clone(),
        TokenizerSource::Train { vocab_size: 512 },
        64,
    );
    prepare_dataset(&config).unwrap();
    let manifest = Manifest::load(&out).unwrap();
    let mut names = manifest.domain_names();
    names.sort();
    let mut expected: Vec<String> = DomainKind::ALL
        .iter()
        .map(|k| k.name().to_string())
        .collect();
    expected.sort();
    assert_eq!(names, expected);
    for d in &report.domains {
        let m = manifest.domain(&d.name).unwrap();
        for split in Split::ALL {
            let stats = &m.splits[&split];
            assert_eq!(
                stats.documents, d.splits[&split].documents,
                "{} {split}",
                d.name
            );
            assert_eq!(stats.bytes, d.splits[&split].bytes, "{} {split}", d.name);
            assert!(
                stats.sequences > 0,
                "{} {split} has no complete sequence",
                d.name
            );
        }
    }
}

/// Shannon entropy in bits of the empirical distribution of `items`.
fn entropy<'a>(items: impl Iterator<Item = &'a str>) -> (f64, usize) {
    let mut counts: HashMap<&str, u64> = HashMap::new();
    let mut n = 0u64;
    for w in items {
        *counts.entry(w).or_default() += 1;
        n += 1;
    }
    let h = counts
        .values()
        .map(|&c| c as f64 / n as f64)
        .map(|p| -p * p.log2())
        .sum();
    (h, counts.len())
}

#[test]
fn random_domain_is_max_entropy_and_duplicate_domain_repeats() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("corpus");
    let config = SyntheticConfig {
        domains: vec![
            // ≈60k words: the plug-in entropy estimate is then biased by only ~0.01 bits.
            DomainSpec {
                kind: DomainKind::RandomTokens,
                train_bytes: 450_000,
            },
            DomainSpec {
                kind: DomainKind::NearDuplicates,
                train_bytes: 200_000,
            },
            DomainSpec {
                kind: DomainKind::MarkovEasy,
                train_bytes: 200_000,
            },
        ],
        ..SyntheticConfig::default()
    };
    generate(&config, &out);
    let corpus = SyntheticCorpus::new(&config).unwrap();

    let random = docs_of(&out, Split::Train, DomainKind::RandomTokens);
    let (h, distinct) = entropy(random.iter().flat_map(|d| d.split_whitespace()));
    let vocab = corpus.random_vocab_size();
    let log_v = (vocab as f64).log2();
    assert_eq!(distinct, vocab);
    assert!(
        (h - log_v).abs() < 0.03,
        "random domain: {h} bits vs log2({vocab}) = {log_v}"
    );
    assert_eq!(
        corpus.entropy_bits_per_word(DomainKind::RandomTokens),
        Some(log_v)
    );
    // Pairs of consecutive words are as unpredictable: no structure to learn.
    let words: Vec<&str> = random.iter().flat_map(|d| d.split_whitespace()).collect();
    let next_given_prev: HashMap<&str, HashSet<&str>> =
        words.windows(2).fold(HashMap::new(), |mut m, w| {
            m.entry(w[0]).or_default().insert(w[1]);
            m
        });
    let mean_successors = next_given_prev.values().map(|s| s.len()).sum::<usize>() as f64
        / next_given_prev.len() as f64;
    assert!(mean_successors > 40.0, "{mean_successors}");
    // The easy Markov chain, for contrast, has 4 successors per word and far lower entropy.
    let easy = docs_of(&out, Split::Train, DomainKind::MarkovEasy);
    let (h_easy, _) = entropy(easy.iter().flat_map(|d| d.split_whitespace()));
    assert!(h_easy < log_v - 3.0, "{h_easy}");

    let dups = docs_of(&out, Split::Train, DomainKind::NearDuplicates);
    let unique: HashSet<&String> = dups.iter().collect();
    let mut by_title: HashMap<&str, Vec<&String>> = HashMap::new();
    for d in &dups {
        by_title
            .entry(d.lines().next().unwrap())
            .or_default()
            .push(d);
    }
    assert!(by_title.len() <= 16, "{} distinct pages", by_title.len());
    assert!(dups.len() >= 10 * by_title.len(), "{} docs", dups.len());
    assert!(
        unique.len() * 2 < dups.len() + by_title.len() * 20,
        "{} unique of {}",
        unique.len(),
        dups.len()
    );
    for (title, docs) in &by_title {
        // The most frequent version is the original page; every other is at most 3 words off.
        let mut freq: HashMap<&String, usize> = HashMap::new();
        for d in docs {
            *freq.entry(d).or_default() += 1;
        }
        let original = freq.iter().max_by_key(|(d, c)| (**c, d.len())).unwrap().0;
        let base: Vec<&str> = original.split(' ').collect();
        for d in docs {
            let words: Vec<&str> = d.split(' ').collect();
            assert_eq!(words.len(), base.len(), "{title}");
            let changed = words.iter().zip(&base).filter(|(a, b)| a != b).count();
            assert!(changed <= 3, "{title}: {changed} words changed");
        }
    }
    // Validation documents are near-duplicates of training documents too.
    let val_titles: HashSet<String> = docs_of(&out, Split::Val, DomainKind::NearDuplicates)
        .iter()
        .map(|d| d.lines().next().unwrap().to_string())
        .collect();
    assert!(val_titles.iter().all(|t| by_title.contains_key(t.as_str())));
}

/// An independent evaluator of the arithmetic questions' text: `+ - * /` with precedence and
/// parentheses over integers, and `a*x + b = c` solved for x.
fn solve_arithmetic_text(question: &str) -> i64 {
    for (prefix, suffix) in [("Solve ", " for x."), ("Find x if ", ".")] {
        if let Some(eq) = question
            .strip_prefix(prefix)
            .and_then(|q| q.strip_suffix(suffix))
            && eq.contains("*x")
        {
            let (lhs, c) = eq.split_once(" = ").unwrap();
            let (a, b) = lhs.split_once("*x + ").unwrap();
            let (a, b, c): (i64, i64, i64) =
                (a.parse().unwrap(), b.parse().unwrap(), c.parse().unwrap());
            assert_eq!((c - b) % a, 0, "{question}");
            return (c - b) / a;
        }
    }
    let expr = ["What is ", "Calculate ", "Evaluate ", "Work out "]
        .iter()
        .find_map(|p| question.strip_prefix(p))
        .unwrap_or_else(|| panic!("unknown form: {question}"));
    let expr = &expr[..expr.len() - 1];
    let tokens: Vec<String> = expr
        .replace('(', " ( ")
        .replace(')', " ) ")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    fn sum(t: &[String], i: &mut usize) -> i64 {
        let mut v = product(t, i);
        while *i < t.len() && (t[*i] == "+" || t[*i] == "-") {
            let op = t[*i].clone();
            *i += 1;
            let r = product(t, i);
            v = if op == "+" { v + r } else { v - r };
        }
        v
    }
    fn product(t: &[String], i: &mut usize) -> i64 {
        let mut v = atom(t, i);
        while *i < t.len() && (t[*i] == "*" || t[*i] == "/") {
            let op = t[*i].clone();
            *i += 1;
            let r = atom(t, i);
            v = if op == "*" {
                v * r
            } else {
                assert_eq!(v % r, 0);
                v / r
            };
        }
        v
    }
    fn atom(t: &[String], i: &mut usize) -> i64 {
        *i += 1;
        if t[*i - 1] == "(" {
            let v = sum(t, i);
            assert_eq!(t[*i], ")");
            *i += 1;
            v
        } else {
            t[*i - 1].parse().unwrap()
        }
    }
    let mut i = 0;
    let v = sum(&tokens, &mut i);
    assert_eq!(i, tokens.len(), "{question}");
    v
}

fn check_subject(corpus: &SyntheticCorpus, subject: &McSubject) {
    let kb = corpus.knowledge_base();
    let splits = [
        (&subject.dev, true),
        (&subject.val, true),
        (&subject.test, false),
    ];
    let mut seen = HashSet::new();
    for (rows, few_shot) in splits {
        for q in rows {
            assert!(
                seen.insert(q.question.clone()),
                "{}: repeated question {}",
                subject.name,
                q.question
            );
            let distinct: HashSet<&String> = q.choices.iter().collect();
            assert_eq!(distinct.len(), 4, "{:?}", q.choices);
            let correct = &q.choices[q.answer];
            match &q.truth {
                Truth::Arithmetic(p) => {
                    assert_eq!(q.question, p.canonical_question());
                    assert_eq!(*correct, p.answer().to_string());
                    assert_eq!(
                        solve_arithmetic_text(&q.question),
                        p.answer(),
                        "{}",
                        q.question
                    );
                    assert!(p.level() <= 2);
                    for c in &q.choices {
                        assert!(c.parse::<i64>().unwrap() >= 0, "{c}");
                    }
                }
                Truth::CodeOutput(program) => {
                    let src = q
                        .question
                        .strip_prefix("What does this program print?\n")
                        .unwrap();
                    let parsed = parse_program(src).unwrap();
                    assert_eq!(&parsed, program);
                    let output = parsed.run().unwrap().output;
                    assert_eq!(output.len(), 1);
                    assert_eq!(*correct, output[0].to_string());
                    for c in &q.choices {
                        c.parse::<i64>().unwrap();
                    }
                }
                Truth::Fact(fact) => {
                    let person = &kb.people[fact.person];
                    assert_eq!(q.question, fact.attribute.question(&person.name));
                    assert_eq!(*correct, kb.answer(fact.person, fact.attribute));
                    // Few-shot examples come from quizzed people, test questions from held-out ones.
                    assert_eq!(person.quizzed, few_shot, "{}", person.name);
                    for c in &q.choices {
                        let same_type = match fact.attribute {
                            Attribute::BirthCity => kb.cities.iter().any(|x| &x.name == c),
                            Attribute::BirthYear => {
                                (1700..2000).contains(&c.parse::<i32>().unwrap())
                            }
                            Attribute::Occupation => OCCUPATIONS.contains(&c.as_str()),
                            Attribute::Employer => kb.organizations.iter().any(|o| &o.name == c),
                        };
                        assert!(same_type, "{c} is not a {:?}", fact.attribute);
                    }
                }
            }
        }
    }
}

#[test]
fn every_multiple_choice_answer_is_correct_by_construction() {
    let corpus = SyntheticCorpus::new(&SyntheticConfig::default()).unwrap();
    let subjects = corpus.multiple_choice();
    let names: Vec<&str> = subjects.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["arithmetic", "encyclopedia_facts", "code_output"]);
    for subject in &subjects {
        assert_eq!(subject.dev.len(), 5, "{}", subject.name);
        assert_eq!(subject.val.len(), 20, "{}", subject.name);
        assert_eq!(subject.test.len(), 150, "{}", subject.name);
        check_subject(&corpus, subject);
        // Each letter is correct for a quarter of the test rows.
        let mut letters = [0usize; 4];
        for q in &subject.test {
            letters[q.answer] += 1;
        }
        assert!(
            letters.iter().max().unwrap() - letters.iter().min().unwrap() <= 1,
            "{letters:?}"
        );
        // No choice-only shortcut: picking the k-th smallest number, or the longest/shortest
        // string, is right for about a quarter of the questions, not more.
        let n = subject.test.len() as f64;
        for k in 0..4 {
            let by_rank = subject
                .test
                .iter()
                .filter(|q| {
                    let mut sorted = q.choices.clone();
                    match q.choices[0].parse::<i64>() {
                        Ok(_) => sorted.sort_by_key(|c| c.parse::<i64>().unwrap()),
                        Err(_) => sorted.sort_by_key(|c| (c.len(), c.clone())),
                    }
                    sorted[k] == q.choices[q.answer]
                })
                .count() as f64;
            assert!(
                by_rank / n < 0.36,
                "{}: picking rank {k} scores {}",
                subject.name,
                by_rank / n
            );
        }
    }
}

#[test]
fn a_corpus_with_an_older_multiple_choice_set_is_named_as_stale() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("corpus");
    let report = generate(&small(3), &out);
    assert_eq!(
        report.multiple_choice_version,
        mixlab_data::synthetic::MULTIPLE_CHOICE_VERSION
    );
    mixlab_data::synthetic::check_multiple_choice_version(&out).unwrap();
    // A corpus-info.json from before the version existed reads as version 1.
    let info = out.join("corpus-info.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&info).unwrap()).unwrap();
    json.as_object_mut()
        .unwrap()
        .remove("multiple_choice_version");
    std::fs::write(&info, json.to_string()).unwrap();
    let err = mixlab_data::synthetic::check_multiple_choice_version(&out)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("corpus-info.json") && err.contains("version 1") && err.contains("version 2"),
        "{err}"
    );
}

/// A rule that never reads the question cannot beat chance on the numeric subjects. The
/// strongest such rule a trained model can learn is the answer prior: pick the option seen most
/// often as an answer. It is fitted on one seed's questions and scored on another's. With near
/// misses as distractors (answer ± 1, ± 2, as this set once had) the rule scored 36-37% on
/// `arithmetic` and `code_output`; with sibling answers the options are exchangeable and it
/// stays at 25% up to sampling noise (1,500 questions: one standard error 1.1 points).
#[test]
fn the_answer_prior_alone_scores_chance() {
    let subjects = |seed: u64| {
        let mut config = SyntheticConfig::with_seed_and_scale(seed, TEST_SCALE);
        config.multiple_choice.test_rows = 1500;
        SyntheticCorpus::new(&config).unwrap().multiple_choice()
    };
    let (fit, score) = (subjects(11), subjects(12));
    for name in ["arithmetic", "code_output"] {
        let get = |set: &[McSubject]| set.iter().find(|s| s.name == name).unwrap().clone();
        let (fit, score) = (get(&fit), get(&score));
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for q in fit.dev.iter().chain(&fit.val).chain(&fit.test) {
            *seen.entry(q.choices[q.answer].as_str()).or_default() += 1;
        }
        let count = |c: &str| seen.get(c).copied().unwrap_or(0);
        let right = score
            .test
            .iter()
            .filter(|q| {
                // Ties go to the earliest letter, and letters are balanced.
                let pick = (0..4)
                    .max_by_key(|&i| (count(&q.choices[i]), std::cmp::Reverse(i)))
                    .unwrap();
                pick == q.answer
            })
            .count();
        let acc = right as f64 / score.test.len() as f64;
        assert!(score.test.len() >= 1400, "{name}: {}", score.test.len());
        assert!(
            (0.20..0.30).contains(&acc),
            "{name}: the answer prior scores {acc:.3}"
        );
    }
}

#[test]
fn facts_asked_are_stated_in_training_text_but_never_in_question_form() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("corpus");
    let config = small(5);
    generate(&config, &out);
    let corpus = SyntheticCorpus::new(&config).unwrap();
    let subjects = corpus.multiple_choice();
    let facts = subjects
        .iter()
        .find(|s| s.name == "encyclopedia_facts")
        .unwrap();
    assert!(facts.test.len() >= 40, "{}", facts.test.len());
    check_subject(&corpus, facts);
    let train = docs_of(&out, Split::Train, DomainKind::Encyclopedia);
    assert!(
        train.iter().any(|d| d.contains("\nQuestion: ")),
        "the question format is taught"
    );
    let all: Vec<String> = Split::ALL
        .iter()
        .flat_map(|&s| read_split(&split_path(&out, s)).into_iter().map(|(_, t)| t))
        .collect();
    let kb = corpus.knowledge_base();
    for q in &facts.test {
        let Truth::Fact(fact) = &q.truth else {
            panic!()
        };
        let name = &kb.people[fact.person].name;
        let answer = &q.choices[q.answer];
        // A person article (not a city or organisation article) names one person only.
        let person_article = |d: &&String| !d.starts_with("The ") && !d.contains(" is a city in ");
        assert!(
            train
                .iter()
                .filter(person_article)
                .any(|d| d.contains(name.as_str()) && d.contains(answer.as_str())),
            "no training article states {answer} for {name}"
        );
        assert!(
            !all.iter().any(|d| d.contains(&q.question)),
            "`{}` appears verbatim",
            q.question
        );
    }
}

#[test]
fn multiple_choice_csv_parses_back_with_quoting() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("corpus");
    let config = small(11);
    generate(&config, &out);
    let subjects = SyntheticCorpus::new(&config).unwrap().multiple_choice();
    let mut quoted_newline = false;
    for s in &subjects {
        for (split, rows) in [("dev", &s.dev), ("val", &s.val), ("test", &s.test)] {
            let path = out.join(format!("mc/data/{split}/{}_{split}.csv", s.name));
            let raw = std::fs::read_to_string(&path).unwrap();
            assert!(!raw.contains('\r'));
            quoted_newline |= raw.contains("print?\n");
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_path(&path)
                .unwrap();
            let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
            assert_eq!(records.len(), rows.len(), "{}", path.display());
            for (r, q) in records.iter().zip(rows.iter()) {
                assert_eq!(r.len(), 6);
                assert_eq!(&r[0], q.question);
                for i in 0..4 {
                    assert_eq!(&r[1 + i], q.choices[i]);
                }
                assert_eq!(r[5].to_string(), q.answer_letter().to_string());
            }
        }
    }
    assert!(
        quoted_newline,
        "multi-line code questions are written as quoted fields"
    );
}

#[test]
fn documents_have_their_documented_structure() {
    let corpus = SyntheticCorpus::new(&small(2)).unwrap();
    // Arithmetic: every answer is right.
    for doc in corpus.documents(DomainKind::Arithmetic, Split::Train, 30) {
        let lines: Vec<&str> = doc.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len() % 2, 0);
        for pair in lines.chunks(2) {
            let q = pair[0].strip_prefix("Question: ").unwrap();
            let a: i64 = pair[1].strip_prefix("Answer: ").unwrap().parse().unwrap();
            assert_eq!(solve_arithmetic_text(q), a, "{q}");
        }
    }
    // Code: every `// output:` line is what the program before it prints.
    let mut programs = 0;
    for doc in corpus.documents(DomainKind::ToyCode, Split::Val, 30) {
        let mut src = String::new();
        for line in doc.lines() {
            if let Some(out) = line.strip_prefix("// output:") {
                let printed: Vec<i64> = parse_program(&src).unwrap().run().unwrap().output;
                let expected: Vec<i64> =
                    out.split_whitespace().map(|v| v.parse().unwrap()).collect();
                assert_eq!(printed, expected, "{src}");
                src.clear();
                programs += 1;
            } else {
                src.push_str(line);
                src.push('\n');
            }
        }
    }
    assert!(programs >= 90);
    // E-mail: the greeting names the recipient, the signature the sender.
    for doc in corpus.documents(DomainKind::Emails, Split::Train, 50) {
        let header = |name: &str| {
            doc.lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap()
                .to_string()
        };
        let (from, to) = (header("From: "), header("To: "));
        let first = |addr: &str| {
            let f = addr.split('.').next().unwrap();
            let mut c = f.chars();
            c.next()
                .unwrap()
                .to_uppercase()
                .chain(c)
                .collect::<String>()
        };
        // Header block, greeting, body, closing + signature (then, in a reply, the quote).
        let parts: Vec<&str> = doc.split("\n\n").collect();
        assert_eq!(parts[1], format!("{},", first(&to)), "{doc}");
        assert_eq!(
            parts[3].lines().nth(1),
            Some(first(&from).as_str()),
            "{doc}"
        );
    }
    // Chat: a message addressed to `nick:` answers someone who spoke before, and the clock never
    // goes back.
    let mut addressed = 0;
    for doc in corpus.documents(DomainKind::ChatLogs, Split::Test, 30) {
        let mut last = 0;
        let mut speakers: HashSet<&str> = HashSet::new();
        for line in doc.lines().skip(1) {
            let t = &line[1..6];
            let minutes = t[..2].parse::<u32>().unwrap() * 60 + t[3..].parse::<u32>().unwrap();
            assert!(minutes >= last, "{doc}");
            last = minutes;
            let Some(rest) = line[8..].strip_prefix('<') else {
                continue;
            };
            let (speaker, message) = rest.split_once("> ").unwrap();
            if let Some((nick, _)) = message.split_once(": ")
                && !nick.contains(' ')
            {
                assert!(
                    speakers.contains(nick),
                    "{nick} addressed before speaking in {doc}"
                );
                addressed += 1;
            }
            speakers.insert(speaker);
        }
    }
    assert!(addressed > 100);
    // Legal: sections are numbered 1, 2, 3, ... and the roles are the preamble's.
    for doc in corpus.documents(DomainKind::LegalClauses, Split::Train, 10) {
        let headings: Vec<u32> = doc
            .lines()
            .filter_map(|l| {
                let (n, rest) = l.split_once(". ")?;
                let heading =
                    !rest.is_empty() && rest.chars().all(|c| c.is_ascii_uppercase() || c == ' ');
                if heading { n.parse().ok() } else { None }
            })
            .collect();
        assert_eq!(
            headings,
            (1..=headings.len() as u32).collect::<Vec<_>>(),
            "{doc}"
        );
        assert!(headings.len() >= 3);
    }
}

#[test]
fn resizing_one_domain_leaves_the_others_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let base = small(4);
    let mut bigger = base.clone();
    bigger
        .domains
        .iter_mut()
        .find(|d| d.kind == DomainKind::MarkovEasy)
        .unwrap()
        .train_bytes *= 3;
    generate(&base, &a);
    generate(&bigger, &b);
    for kind in DomainKind::ALL {
        let (da, db) = (
            docs_of(&a, Split::Train, kind),
            docs_of(&b, Split::Train, kind),
        );
        if kind == DomainKind::MarkovEasy {
            assert!(db.len() > 2 * da.len());
            assert_eq!(
                da[..],
                db[..da.len()],
                "a bigger domain extends the same stream"
            );
        } else {
            assert_eq!(da, db, "{kind}");
        }
    }
}

#[test]
fn refuses_to_clobber_and_validates_config() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("corpus");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let err = generate_corpus(&small(1), &out, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        std::fs::read_to_string(out.join("keep.txt")).unwrap(),
        "mine"
    );
    generate_corpus(&small(1), &out, true).unwrap();
    assert!(!out.join("keep.txt").exists());
    assert!(out.join("train/00.jsonl.zst").is_file());

    let mut bad = small(1);
    bad.scale = 0.0;
    assert!(
        generate_corpus(&bad, &tmp.path().join("x"), false)
            .unwrap_err()
            .to_string()
            .contains("`scale`")
    );
    let mut bad = small(1);
    bad.domains.push(bad.domains[0].clone());
    assert!(SyntheticCorpus::new(&bad).is_err());
    assert!(!tmp.path().join("x").exists());
    // A config file with an unknown field is refused.
    let text = serde_json::to_string(&small(1))
        .unwrap()
        .replacen('{', "{\"sedd\":1,", 1);
    assert!(serde_json::from_str::<SyntheticConfig>(&text).is_err());
}

/// The default sizes keep their promise: at scale 1.0 and a 4,096-token BPE every domain but the
/// tiny one has at least 200k training tokens, the tiny one a few thousand. Prints generation and
/// preparation speed (the numbers in docs/default-corpus.md).
#[test]
#[ignore = "full-size corpus, about a minute on 2 cores; run with --ignored"]
fn default_scale_gives_every_domain_enough_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    let start = std::time::Instant::now();
    let report = generate(&SyntheticConfig::default(), &corpus);
    let generate_secs = start.elapsed().as_secs_f64();
    let mb = report.total_bytes() as f64 / 1e6;
    eprintln!(
        "generated {mb:.2} MB in {generate_secs:.2}s ({:.1} MB/s)",
        mb / generate_secs
    );
    let out = tmp.path().join("dataset");
    let config = PrepareConfig::new(
        vec![corpus],
        out.clone(),
        TokenizerSource::Train { vocab_size: 4096 },
        128,
    );
    let start = std::time::Instant::now();
    let prepared = prepare_dataset(&config).unwrap();
    eprintln!(
        "prepared in {:.1}s (tokenizer {:.1}s)",
        start.elapsed().as_secs_f64(),
        prepared.tokenizer_time.as_secs_f64()
    );
    let manifest = Manifest::load(&out).unwrap();
    let mut failures = Vec::new();
    for d in &report.domains {
        let m = manifest.domain(&d.name).unwrap();
        let train = &m.splits[&Split::Train];
        eprintln!(
            "{:<16} {:>9} bytes {:>8} tokens {:>5} seqs  val {:>6} test {:>6} tokens  {:.2} bytes/token",
            d.name,
            train.bytes,
            train.tokens,
            train.sequences,
            m.splits[&Split::Val].tokens,
            m.splits[&Split::Test].tokens,
            train.bytes as f64 / train.tokens as f64
        );
        let enough = if d.kind == DomainKind::TinyRecipes {
            train.tokens < 20_000
        } else {
            train.tokens >= 200_000
        };
        if !enough || m.splits[&Split::Val].sequences < 10 {
            failures.push(d.name.clone());
        }
    }
    assert!(failures.is_empty(), "wrong sizes: {failures:?}");
}

#[test]
fn every_domain_has_its_own_pile_analogue_and_round_trips_by_name() {
    let analogues: std::collections::BTreeSet<&str> =
        DomainKind::ALL.iter().map(|d| d.pile_analogue()).collect();
    assert_eq!(analogues.len(), DomainKind::ALL.len(), "{analogues:?}");
    for d in DomainKind::ALL {
        assert_eq!(DomainKind::from_name(d.name()), Some(d));
    }
    assert_eq!(DomainKind::from_name("Pile-CC"), None);
}
