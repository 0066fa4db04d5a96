//! End-to-end tests of mixlab-data: prepare small corpora written here, then sample from them.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use mixlab_data::corpus::BadLinePolicy;
use mixlab_data::{
    DomainStore, OpenOptions, PrepareConfig, SamplerCursor, Split, TokenDtype, TokenizerSource,
    prepare_dataset,
};

fn line(text: &str, domain: &str) -> String {
    serde_json::json!({"text": text, "meta": {"pile_set_name": domain}}).to_string() + "\n"
}

/// Three domains with distinct vocabularies, so tokens reveal which domain a sequence came from.
fn docs(n: usize, offset: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for i in offset..offset + n {
        out.push((
            format!("alpha beta gamma {i} alpha delta. "),
            "Alpha".to_string(),
        ));
        out.push((
            format!("one two three four five {i} six seven eight"),
            "Numbers Domain".to_string(),
        ));
        out.push((
            format!("def f{i}(x): return x * {i}\n"),
            "Code (py)".to_string(),
        ));
    }
    out
}

fn write_jsonl(path: &Path, docs: &[(String, String)], extra: &str) {
    let mut f = std::fs::File::create(path).unwrap();
    for (t, d) in docs {
        f.write_all(line(t, d).as_bytes()).unwrap();
    }
    f.write_all(extra.as_bytes()).unwrap();
}

/// A Pile-layout corpus: train/00.jsonl, val.jsonl.zst, test.jsonl.
fn pile_corpus(dir: &Path) -> PathBuf {
    let root = dir.join("corpus");
    std::fs::create_dir_all(root.join("train")).unwrap();
    write_jsonl(&root.join("train/00.jsonl"), &docs(120, 0), "");
    let val: String = docs(10, 1000).iter().map(|(t, d)| line(t, d)).collect();
    std::fs::write(
        root.join("val.jsonl.zst"),
        zstd::encode_all(val.as_bytes(), 3).unwrap(),
    )
    .unwrap();
    write_jsonl(&root.join("test.jsonl"), &docs(10, 2000), "");
    root
}

fn config(input: PathBuf, out: PathBuf, seq_len: usize) -> PrepareConfig {
    let mut c = PrepareConfig::new(
        vec![input],
        out,
        TokenizerSource::Train { vocab_size: 300 },
        seq_len,
    );
    // Tiny row groups so that samplers cross many chunks and windows.
    c.row_group_bytes = 8 * (seq_len + 1) * 2;
    c.row_groups_per_shard = 3;
    c
}

#[test]
fn prepares_pile_layout_and_packs_per_domain_with_eod() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = pile_corpus(tmp.path());
    let out = tmp.path().join("ds");
    let report = prepare_dataset(&config(corpus, out.clone(), 16)).unwrap();
    let m = &report.manifest;
    assert_eq!(
        m.domain_names(),
        vec!["Alpha", "Code (py)", "Numbers Domain"]
    );
    assert_eq!(m.eod_id, 0);
    assert_eq!(m.token_dtype, TokenDtype::U16);
    for d in &m.domains {
        assert_eq!(d.splits[&Split::Train].documents, 120);
        assert_eq!(d.splits[&Split::Val].documents, 10);
        assert_eq!(d.splits[&Split::Test].documents, 10);
        assert!(
            d.splits[&Split::Train].shards.len() > 1,
            "several shards expected"
        );
    }
    assert!(out.join("train/code-py/part-00000.parquet").is_file());

    // Rebuild each domain's token stream from the corpus and compare with what was stored.
    let store = DomainStore::open(&out, &OpenOptions::default()).unwrap();
    let tok = tokenizers::Tokenizer::from_file(store.tokenizer_path()).unwrap();
    for d in &m.domains {
        let mut expected = Vec::new();
        for (t, dom) in docs(120, 0) {
            if dom == d.name {
                expected.extend(
                    tok.encode(t.as_str(), false)
                        .unwrap()
                        .get_ids()
                        .iter()
                        .copied(),
                );
                expected.push(0);
            }
        }
        let seqs: Vec<Vec<u32>> = store
            .iter_split(&d.name, Split::Train, None)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let stats = &d.splits[&Split::Train];
        assert_eq!(seqs.len() as u64, stats.sequences);
        assert_eq!(stats.tokens, expected.len() as u64);
        // Stride seq_len, window seq_len + 1: sequence i covers stream[16 i ..= 16 i + 16].
        for (i, s) in seqs.iter().enumerate() {
            assert_eq!(s.len(), 17);
            assert_eq!(
                &s[..],
                &expected[16 * i..16 * i + 17],
                "domain {} seq {i}",
                d.name
            );
        }
        // What is left after the last full sequence is dropped and counted.
        assert_eq!(
            stats.dropped_tokens,
            expected.len() as u64 - 16 * seqs.len() as u64
        );
        assert!(stats.dropped_tokens < 17);
    }
}

#[test]
fn large_vocabulary_is_stored_as_u32() {
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::pre_tokenizers::whitespace::Whitespace;
    let tmp = tempfile::tempdir().unwrap();
    let mut vocab: HashMap<String, u32> = HashMap::new();
    vocab.insert("<|endoftext|>".into(), 0);
    vocab.insert("<unk>".into(), 1);
    for i in 0..70_000u32 {
        vocab.insert(format!("w{i}"), i + 2);
    }
    let model = WordLevel::builder()
        .vocab(vocab.into_iter().collect())
        .unk_token("<unk>".into())
        .build()
        .unwrap();
    let mut tok = tokenizers::Tokenizer::new(model);
    tok.with_pre_tokenizer(Some(Whitespace {}));
    let tok_path = tmp.path().join("big.json");
    tok.save(&tok_path, false).unwrap();

    let corpus = tmp.path().join("c.jsonl");
    let text: String = (0..40)
        .map(|i| format!("w{} w69999 ", 65_000 + i))
        .collect();
    write_jsonl(&corpus, &vec![(text, "D".to_string()); 30], "");
    let mut c = config(corpus, tmp.path().join("ds"), 8);
    c.tokenizer = TokenizerSource::File(tok_path);
    c.holdout_min_documents = 1;
    let report = prepare_dataset(&c).unwrap();
    assert_eq!(report.manifest.token_dtype, TokenDtype::U32);
    let store = DomainStore::open(&tmp.path().join("ds"), &OpenOptions::default()).unwrap();
    let first = store
        .iter_split("D", Split::Train, Some(1))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(&first[..3], &[65_002, 70_001, 65_003]);
}

#[test]
fn bad_lines_error_or_are_counted_and_failed_runs_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("c.jsonl");
    write_jsonl(
        &corpus,
        &docs(30, 0),
        "{\"text\": 3, \"meta\": {\"pile_set_name\": \"Alpha\"}}\n",
    );
    let out = tmp.path().join("ds");
    let err = prepare_dataset(&config(corpus.clone(), out.clone(), 8))
        .unwrap_err()
        .to_string();
    assert!(err.contains("c.jsonl:91:"), "{err}");
    assert!(err.contains("not a string"), "{err}");
    // The failed (interrupted) run left no output and no partial directory behind.
    assert!(!out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("c.jsonl")]);

    let mut c = config(corpus, out.clone(), 8);
    c.on_bad_line = BadLinePolicy::Skip;
    let report = prepare_dataset(&c).unwrap();
    let skipped = &report.manifest.skipped_lines[&Split::Train];
    assert_eq!(skipped.count, 1);
    assert_eq!(skipped.examples[0].line, 91);
    // Without own val/test files, every domain still gets its minimum hold-out.
    for d in &report.manifest.domains {
        assert!(d.splits[&Split::Val].documents >= 5);
        assert!(d.splits[&Split::Test].documents >= 5);
        let total: u64 = d.splits.values().map(|s| s.documents).sum();
        assert_eq!(total, 30);
    }
    // An existing output is refused unless overwriting.
    assert!(
        prepare_dataset(&c)
            .unwrap_err()
            .to_string()
            .contains("already exists")
    );
}

#[test]
fn store_refuses_mismatched_tokenizer_and_seq_len() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = pile_corpus(tmp.path());
    let out = tmp.path().join("ds");
    prepare_dataset(&config(corpus, out.clone(), 16)).unwrap();
    let store = DomainStore::open(&out, &OpenOptions::default()).unwrap();
    let sha = store.manifest().tokenizer_sha256.clone();
    let ok = OpenOptions {
        expected_tokenizer_sha256: Some(sha.clone()),
        expected_seq_len: Some(16),
    };
    DomainStore::open(&out, &ok).unwrap();
    let wrong = OpenOptions {
        expected_tokenizer_sha256: Some("00".repeat(32)),
        ..Default::default()
    };
    let e = DomainStore::open(&out, &wrong).unwrap_err().to_string();
    assert!(e.contains("tokenizer_sha256"), "{e}");
    let e = DomainStore::open(
        &out,
        &OpenOptions {
            expected_seq_len: Some(32),
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("seq_len"), "{e}");
    assert!(
        store
            .sampler("Nope", Split::Train, 0)
            .unwrap_err()
            .to_string()
            .contains("not in this dataset")
    );
    // A tokenizer file edited after preparation no longer matches the manifest.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(out.join("tokenizer.json"))
        .unwrap();
    f.write_all(b" ").unwrap();
    let e = DomainStore::open(&out, &OpenOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("changed after preparation"), "{e}");
}

#[test]
fn samplers_are_deterministic_wrap_epochs_and_resume_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = pile_corpus(tmp.path());
    let out = tmp.path().join("ds");
    prepare_dataset(&config(corpus, out.clone(), 16)).unwrap();
    let store = DomainStore::open(&out, &OpenOptions::default()).unwrap();
    let domain = "Numbers Domain";
    let all: Vec<Vec<u32>> = store
        .iter_split(domain, Split::Train, None)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let n = all.len();
    assert!(n > 40, "need several row groups, have {n} sequences");

    let draw = |seed: u64, k: usize| {
        let mut s = store
            .sampler_with_window(domain, Split::Train, seed, 2)
            .unwrap();
        (0..k)
            .map(|_| s.next_sequence().unwrap())
            .collect::<Vec<_>>()
    };
    let a = draw(7, 3 * n);
    assert_eq!(a, draw(7, 3 * n), "same seed, same order");
    assert_ne!(a[..n], draw(8, n)[..], "another seed, another order");

    // Each epoch is a permutation of the domain's sequences, and epochs are reshuffled.
    let mut first: Vec<_> = a[..n].to_vec();
    let mut second: Vec<_> = a[n..2 * n].to_vec();
    assert_ne!(first, second);
    let mut sorted_all = all.clone();
    sorted_all.sort();
    first.sort();
    second.sort();
    assert_eq!(first, sorted_all);
    assert_eq!(second, sorted_all);
    assert_ne!(a[..n].to_vec(), all, "shuffled, not stored order");

    let mut s = store
        .sampler_with_window(domain, Split::Train, 7, 2)
        .unwrap();
    for _ in 0..n {
        s.next_sequence().unwrap();
    }
    assert_eq!(s.epoch(), 0);
    s.next_sequence().unwrap();
    assert_eq!(s.epoch(), 1);

    // Resume at several cut points, including mid-window and across an epoch boundary.
    for cut in [0, 1, 5, n - 1, n, n + 9] {
        let mut s = store
            .sampler_with_window(domain, Split::Train, 7, 2)
            .unwrap();
        for _ in 0..cut {
            s.next_sequence().unwrap();
        }
        let cursor: SamplerCursor =
            serde_json::from_str(&serde_json::to_string(&s.cursor()).unwrap()).unwrap();
        let mut resumed = store
            .sampler_with_window(domain, Split::Train, 7, 2)
            .unwrap();
        resumed.set_cursor(cursor).unwrap();
        let rest: Vec<_> = (0..n + 3)
            .map(|_| resumed.next_sequence().unwrap())
            .collect();
        assert_eq!(rest, a[cut..cut + n + 3].to_vec(), "resume at {cut}");
    }
    // Skipping is reading without the rows: interleaved skips and reads, across windows and
    // an epoch boundary, give the reads' sequences of the uninterrupted order.
    let mut s = store
        .sampler_with_window(domain, Split::Train, 7, 2)
        .unwrap();
    for (i, expected) in a[..2 * n + 5].iter().enumerate() {
        if i % 3 == 2 {
            assert_eq!(
                &s.next_sequence().unwrap(),
                expected,
                "read {i} after skips"
            );
        } else {
            s.skip_sequence();
        }
    }
    assert_eq!(s.epoch(), 2);
    let mut s = store.sampler(domain, Split::Train, 7).unwrap();
    assert!(
        s.set_cursor(SamplerCursor {
            epoch: 0,
            position: n as u64 + 100
        })
        .is_err()
    );

    // The eval iterator respects its cap and stored order.
    let capped: Vec<_> = store
        .iter_split(domain, Split::Train, Some(5))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(capped, all[..5].to_vec());
}

#[test]
fn mini_pile_prepares_with_14_domains_and_pyarrow_reads_it() {
    // The crate's directory at run time: a test binary reused from a target directory shared
    // with another checkout would carry that checkout's path.
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    let mini = Path::new(&crate_dir).join("../../../shared/data/mini-pile");
    if !mini.join("train").is_dir() {
        eprintln!(
            "SKIPPED: {} is absent (the shared mini-pile is only on the workplace machines)",
            mini.display()
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("mini");
    let mut c = PrepareConfig::new(
        vec![mini],
        out.clone(),
        TokenizerSource::Train { vocab_size: 2048 },
        128,
    );
    // A 4 MB sample trains the vocabulary quickly; every document is still tokenized.
    c.tokenizer_train_bytes = 4_000_000;
    let report = prepare_dataset(&c).unwrap();
    let m = &report.manifest;
    assert_eq!(m.domains.len(), 14);
    for d in &m.domains {
        for split in Split::ALL {
            assert!(
                d.splits[&split].sequences > 0,
                "{} has no {split} sequences",
                d.name
            );
        }
    }
    let shard = out.join(&m.domains[0].splits[&Split::Val].shards[0].file);
    let rows = m.domains[0].splits[&Split::Val].shards[0].rows;
    let script = format!(
        "import pyarrow.parquet as pq; t = pq.read_table('{}'); assert t.num_rows == {rows}, t.num_rows; assert len(t.column('tokens')[0]) == 129; print('ok')",
        shard.display()
    );
    match std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
    {
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("No module named 'pyarrow'") => {
            eprintln!("SKIPPED pyarrow check: python3 has no pyarrow");
        }
        Ok(o) => assert!(
            o.status.success(),
            "pyarrow failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(_) => eprintln!("SKIPPED pyarrow check: no python3"),
    }
}
