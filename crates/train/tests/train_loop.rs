//! End-to-end tests of the training loop on a tiny model and a small dataset made here.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::tensor::{Int, Tensor, TensorData};
use mixlab_data::{DomainStore, PrepareConfig, Split, TokenizerSource, prepare_dataset};
use mixlab_mixer_odm::{OdmConfig, exploration_rate};
use mixlab_mixing::{MixerEntry, MixerRegistry, StaticConfig};
use mixlab_model::{CpuDevice, CpuTrainBackend, DeviceSpec, GptNeoX, ModelConfig};
use mixlab_train::config::EvalConfig;
use mixlab_train::{
    DomainValidation, RunOptions, TrainConfig, TrainError, Validate, ValidationError,
    ValidationReport, mixer_context, open_dataset, train,
};
use serde_json::Value;

type B = CpuTrainBackend;

/// The validation these tests hand the loop (mixlab-train has no evaluation crate; the CLI
/// passes mixlab-eval's perplexity): the mean NLL of each domain's first
/// `max_sequences_per_domain` validation sequences, in one batch per domain.
struct MeanNll;

impl<Bk: mixlab_model::ModelBackend> Validate<Bk> for MeanNll {
    fn validate(
        &self,
        model: &GptNeoX<Bk>,
        device: &Bk::Device,
        store: &DomainStore,
        settings: &EvalConfig,
    ) -> Result<ValidationReport, ValidationError> {
        let seq = store.manifest().seq_len;
        let mut domains = Vec::new();
        for domain in store.domain_names() {
            let sequences = store
                .iter_split(&domain, Split::Val, Some(settings.max_sequences_per_domain))?
                .collect::<Result<Vec<Vec<u32>>, _>>()?;
            if sequences.is_empty() {
                continue;
            }
            let n = sequences.len();
            let tokens: Vec<i64> = sequences.iter().flatten().map(|&t| i64::from(t)).collect();
            let batch =
                Tensor::<Bk, 2, Int>::from_data(TensorData::new(tokens, [n, seq + 1]), device);
            let nll = model.per_token_nll(
                batch.clone().narrow(1, 0, seq),
                batch.narrow(1, 1, seq),
                None,
            );
            let sum: f64 = nll.into_data().iter::<f64>().sum();
            let count = (n * seq) as u64;
            let mean_nll = sum / count as f64;
            domains.push(DomainValidation {
                domain,
                mean_nll,
                perplexity: mean_nll.exp(),
                tokens: count,
            });
        }
        let k = domains.len() as f64;
        let tokens: u64 = domains.iter().map(|d| d.tokens).sum();
        let token_weighted_nll = domains
            .iter()
            .map(|d| d.mean_nll * d.tokens as f64)
            .sum::<f64>()
            / tokens as f64;
        Ok(ValidationReport {
            mean_nll: domains.iter().map(|d| d.mean_nll).sum::<f64>() / k,
            mean_perplexity: domains.iter().map(|d| d.perplexity).sum::<f64>() / k,
            token_weighted_nll,
            token_weighted_perplexity: token_weighted_nll.exp(),
            domains,
        })
    }
}

fn registry() -> MixerRegistry {
    let mut r = MixerRegistry::new();
    r.register(MixerEntry::of::<StaticConfig>()).unwrap();
    r.register(MixerEntry::of::<OdmConfig>()).unwrap();
    r
}

/// Four Pile-named domains of different difficulty, so losses (and ODM's rewards) differ.
fn write_corpus(dir: &Path) -> PathBuf {
    let path = dir.join("corpus.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    let words = [
        "river", "stone", "light", "north", "glass", "paper", "storm", "field",
    ];
    let mut x: u64 = 12345;
    let mut next = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) as usize
    };
    for i in 0..240 {
        let docs = [
            (format!("def f{0}(x): return x + {0}", i % 7), "Github"),
            (
                format!("{} + {} = {}", i % 10, i % 9, i % 10 + i % 9),
                "DM Mathematics",
            ),
            (
                (0..12)
                    .map(|_| words[next() % words.len()])
                    .collect::<Vec<_>>()
                    .join(" "),
                "Pile-CC",
            ),
            (
                "\\begin{theorem} Let x be a point. \\end{theorem}".to_string(),
                "ArXiv",
            ),
        ];
        for (text, domain) in docs {
            let line = serde_json::json!({"text": text, "meta": {"pile_set_name": domain}});
            writeln!(f, "{line}").unwrap();
        }
    }
    path
}

fn dataset(dir: &Path) -> PathBuf {
    let corpus = write_corpus(dir);
    let out = dir.join("ds");
    let c = PrepareConfig::new(
        vec![corpus],
        out.clone(),
        TokenizerSource::Train { vocab_size: 300 },
        16,
    );
    prepare_dataset(&c).unwrap();
    out
}

fn tiny_model() -> ModelConfig {
    let mut m = ModelConfig::tiny();
    m.n_layers = 2;
    m.d_model = 32;
    m.n_heads = 2;
    m.d_ff = 128;
    m
}

fn config(dataset: &Path, out: &Path, mixer: &str, steps: u64) -> TrainConfig {
    let text = format!(
        r#"
name = "test"
out_dir = "{out}"
[data]
dataset = "{dataset}"
[model]
config = {model}
[mixer]
{mixer}
[training]
batch_size = 8
micro_batches = 4
steps = {steps}
seed = 7
[schedule]
peak_lr = 3e-3
warmup_fraction = 0.1
min_lr_ratio = 0.1
[eval]
interval = 6
max_sequences_per_domain = 8
batch_size = 8
[checkpoint]
interval = 0
keep = 2
"#,
        out = out.display(),
        dataset = dataset.display(),
        model = toml::Value::try_from(tiny_model()).unwrap(),
    );
    let c: TrainConfig = toml::from_str(&text).unwrap();
    c.validate().unwrap();
    c
}

const ODM: &str = "kind = \"odm\"\nrule = \"paper\"\nwarmup_steps = 4\ninitial_weights = \"tpw\"\nrenormalize = true";
const TPW: &str = "kind = \"static\"\nweights = \"tpw\"\nrenormalize = true";

fn run(config: &TrainConfig, options: &RunOptions) -> Result<mixlab_train::RunSummary, TrainError> {
    let store = open_dataset(config)?;
    let ctx = mixer_context(&store)?;
    let mixer = registry().build(&config.mixer, &ctx)?;
    train::<B>(
        config,
        store,
        mixer,
        None,
        Some(&MeanNll),
        // One CPU device per worker (`training.devices`).
        &vec![CpuDevice::default(); config.training.workers()],
        options,
    )
}

/// Every tensor of a safetensors file (all f32 here), by name.
fn safetensors_f32(path: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    header
        .into_iter()
        .filter(|(name, _)| name != "__metadata__")
        .map(|(name, info)| {
            assert_eq!(info["dtype"], "F32", "{name}");
            let [a, b] = [0, 1].map(|i| info["data_offsets"][i].as_u64().unwrap() as usize);
            let values = data[a..b]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (name, values)
        })
        .collect()
}

/// `training.devices = ["cpu", "cpu"]`: two workers share each step's micro-batches (threads on
/// the CPU, a model copy each, gradients summed on the first). The run equals the one-device
/// run but for the order of floating-point sums: every step's loss, every mixer weight and
/// every final parameter within 1e-5 relative; a 2-worker run resumed from a mid-run
/// checkpoint equals the uninterrupted 2-worker run exactly.
#[test]
fn two_workers_train_as_one_device_does_and_resume_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let steps = 20;
    let one = tmp.path().join("one");
    run(&config(&ds, &one, ODM, steps), &RunOptions::default()).unwrap();
    let two_config = |out: &Path| {
        let mut c = config(&ds, out, ODM, steps);
        c.training.devices = vec![DeviceSpec::Cpu, DeviceSpec::Cpu];
        c.validate().unwrap();
        c
    };
    let two = tmp.path().join("two");
    run(&two_config(&two), &RunOptions::default()).unwrap();
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * a.abs().max(b.abs()).max(1e-12);
    let (a, b) = (train_lines(&one), train_lines(&two));
    assert_eq!(a.len(), steps as usize);
    assert_eq!(a.len(), b.len());
    let mut moved = false;
    for (x, y) in a.iter().zip(&b) {
        let step = &x["step"];
        assert_eq!(x["domains_drawn"], y["domains_drawn"], "step {step}");
        let (lx, ly) = (x["loss"].as_f64().unwrap(), y["loss"].as_f64().unwrap());
        assert!(close(lx, ly), "step {step}: loss {lx} vs {ly}");
        for (name, w) in x["weights"].as_object().unwrap() {
            let (wx, wy) = (w.as_f64().unwrap(), y["weights"][name].as_f64().unwrap());
            assert!(close(wx, wy), "step {step} {name}: weight {wx} vs {wy}");
        }
        moved |= x["weights"] != a[0]["weights"];
    }
    assert!(
        moved,
        "ODM moved its weights, so they were compared while they moved"
    );
    let (pa, pb) = (
        safetensors_f32(&one.join("final/model.safetensors")),
        safetensors_f32(&two.join("final/model.safetensors")),
    );
    assert_eq!(pa.keys().collect::<Vec<_>>(), pb.keys().collect::<Vec<_>>());
    // Key-bias entries outside the rotary dimensions have no gradient, only rounding noise
    // that Adam rescales (ModelConfig::qkv_bias_entry_has_no_gradient): bounded, not compared.
    let model = tiny_model();
    let (mut differs, mut noise) = (0, 0f32);
    for (name, x) in &pa {
        let scale = x.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
        for (i, (u, v)) in x.iter().zip(&pb[name]).enumerate() {
            if name.ends_with("query_key_value.bias") && model.qkv_bias_entry_has_no_gradient(i) {
                noise = noise.max((u - v).abs());
                continue;
            }
            let d = (*u as f64 - *v as f64).abs();
            assert!(
                d <= 1e-5 * scale.max(1e-6),
                "{name}[{i}]: {u} vs {v} (largest |value| {scale})"
            );
            differs += usize::from(u != v);
        }
    }
    assert!(
        noise < 1e-2,
        "key-bias entries without gradient differ by {noise}"
    );
    eprintln!(
        "two workers: {differs} final parameters differ in their last bits from one device's; the key-bias entries without gradient by up to {noise:.1e}"
    );

    // Resume: 8 steps, a stop with a checkpoint, then the rest.
    let split = tmp.path().join("two-split");
    let c = two_config(&split);
    let first = run(
        &c,
        &RunOptions {
            max_steps: Some(8),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(first.steps, 8);
    let resumed = RunOptions {
        resume: true,
        ..Default::default()
    };
    assert!(run(&c, &resumed).unwrap().finished);
    assert_eq!(
        without_timing(metrics(&split)),
        without_timing(metrics(&two)),
        "the resumed 2-worker run differs from the uninterrupted one"
    );
    assert_eq!(
        std::fs::read(split.join("final/model.safetensors")).unwrap(),
        std::fs::read(two.join("final/model.safetensors")).unwrap()
    );
    // Resuming it with one worker would change the sums' order: refused as another config.
    let mut one_worker = c.clone();
    one_worker.training.devices.clear();
    let e = run(&one_worker, &resumed).unwrap_err().to_string();
    assert!(e.contains("training.devices"), "{e}");
}

fn metrics(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn train_lines(dir: &Path) -> Vec<Value> {
    metrics(dir)
        .into_iter()
        .filter(|l| l["type"] == "train")
        .collect()
}

/// The lines without their wall-clock timings, which differ between any two runs.
fn without_timing(lines: Vec<Value>) -> Vec<Value> {
    lines
        .into_iter()
        .map(|mut l| {
            l.as_object_mut().unwrap().remove("timing");
            l
        })
        .collect()
}

#[test]
fn odm_and_tpw_learn_odm_moves_and_draws_follow_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let steps = 40;
    let mut chi2_terms: Vec<(f64, f64)> = Vec::new();
    for (name, mixer) in [("odm", ODM), ("tpw", TPW)] {
        let out = tmp.path().join(name);
        let summary = run(&config(&ds, &out, mixer, steps), &RunOptions::default()).unwrap();
        assert!(summary.finished);
        // Neither mixer asks for validations of its own.
        assert!(summary.mixer_validation_time.is_zero());
        let lines = train_lines(&out);
        assert_eq!(lines.len() as u64, steps);
        let loss = |r: std::ops::Range<usize>| {
            r.clone()
                .map(|i| lines[i]["loss"].as_f64().unwrap())
                .sum::<f64>()
                / r.len() as f64
        };
        let (first, last) = (loss(0..5), loss(35..40));
        assert!(
            last < 0.8 * first,
            "{name}: loss {first} -> {last} did not fall"
        );
        assert!(
            out.join("final/model.safetensors").is_file()
                || out.join("final").read_dir().unwrap().count() > 0
        );
        assert!(metrics(&out).iter().any(|l| l["type"] == "eval"));

        let domains: Vec<String> = lines[0]["weights"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let k = domains.len();
        let mut expected = vec![0.0; k];
        let mut observed = vec![0.0; k];
        for l in &lines {
            let w: Vec<f64> = domains
                .iter()
                .map(|d| l["weights"][d].as_f64().unwrap())
                .collect();
            for (e, p) in expected.iter_mut().zip(&w) {
                *e += 4.0 * p;
            }
            for mb in l["domains_drawn"].as_array().unwrap() {
                let mb = mb.as_array().unwrap();
                assert!(
                    mb.iter().all(|d| d == &mb[0]),
                    "micro-batch mixes domains: {mb:?}"
                );
                observed[domains
                    .iter()
                    .position(|d| d == mb[0].as_str().unwrap())
                    .unwrap()] += 1.0;
            }
        }
        chi2_terms.extend(expected.into_iter().zip(observed));

        if name == "odm" {
            // The metrics file replays: a fresh mixer fed its feedback lines reproduces the
            // weights the trainer logged after every step.
            let c = config(&ds, &out, mixer, steps);
            let store = open_dataset(&c).unwrap();
            let mut fresh = registry()
                .build(&c.mixer, &mixer_context(&store).unwrap())
                .unwrap();
            let log = mixlab_mixing::FeedbackLog::read(&out.join("metrics.jsonl")).unwrap();
            assert_eq!(log.steps.len() as u64, steps);
            let mut fb = mixlab_mixing::StepFeedback::new(fresh.domains().len());
            for ((_, record), line) in log.steps.iter().zip(&lines) {
                record.to_step_feedback(fresh.domains(), &mut fb).unwrap();
                fresh.observe(record.step, &fb).unwrap();
                for (i, d) in fresh.domains().names().iter().enumerate() {
                    // serde_json's default float parser may be 1 ulp off; the values are exact in the file.
                    let logged = line["next_weights"][d].as_f64().unwrap();
                    assert!(
                        (fresh.weights()[i] - logged).abs() <= 1e-12 * logged.abs(),
                        "{d}: {} vs {logged}",
                        fresh.weights()[i]
                    );
                }
            }
            let initial = &lines[0]["weights"];
            for l in &lines[..4] {
                assert_eq!(
                    &l["weights"], initial,
                    "the policy is stationary during warm-up"
                );
            }
            let after = &lines[steps as usize - 1]["next_weights"];
            assert_ne!(after, initial, "ODM's weights moved after warm-up");
            let eps = exploration_rate(k, steps + 1);
            for d in &domains {
                assert!(after[d].as_f64().unwrap() >= eps - 1e-12, "{d} below eps_t");
            }
        }
    }
    // Chi-square of draws against the weights used: 6 degrees of freedom (2 runs x 3);
    // the 99.99% quantile of chi-square(6) is 27.9.
    let chi2: f64 = chi2_terms
        .iter()
        .map(|(e, o)| (o - e).powi(2) / e.max(1e-9))
        .sum();
    assert!(
        chi2 < 27.9,
        "draws do not follow the weights: chi2 = {chi2}, {chi2_terms:?}"
    );
}

#[test]
fn resume_continues_bit_for_bit_for_odm_and_static() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    for (name, mixer) in [("odm", ODM), ("tpw", TPW)] {
        let full = tmp.path().join(format!("{name}-full"));
        run(&config(&ds, &full, mixer, 12), &RunOptions::default()).unwrap();

        let split = tmp.path().join(format!("{name}-split"));
        let c = config(&ds, &split, mixer, 12);
        let first = run(
            &c,
            &RunOptions {
                max_steps: Some(5),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(!first.finished);
        assert_eq!(first.steps, 5);
        // A crash mid-checkpoint leaves a directory without state.json: it must be ignored.
        std::fs::create_dir_all(split.join("checkpoints/step-9")).unwrap();
        let second = run(
            &c,
            &RunOptions {
                resume: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(second.finished);
        assert_eq!(second.steps_this_run, 7);
        assert_eq!(
            without_timing(metrics(&split)),
            without_timing(metrics(&full)),
            "{name}: resumed run differs from the uninterrupted one"
        );
    }
}

/// A parent process changes a child run's thread budget while it trains (`reproduce --jobs`);
/// the run must go on exactly as it would have. Here the budget flips between one and three
/// threads after every step (so steps and validations run in both pools, and on threads other
/// than the caller's), against a run in the process's own pool.
#[test]
fn a_thread_budget_changed_every_step_changes_no_number() {
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let plain = tmp.path().join("plain");
    run(&config(&ds, &plain, ODM, 12), &RunOptions::default()).unwrap();
    let budget = mixlab_train::ThreadBudget::new(1);
    let flip = budget.clone();
    let on_step = mixlab_train::StepHook(Arc::new(move |_: &mixlab_train::StepProgress| {
        flip.set(if flip.threads() == 1 { 3 } else { 1 });
    }));
    let out = tmp.path().join("flipping");
    let summary = run(
        &config(&ds, &out, ODM, 12),
        &RunOptions {
            threads: Some(budget.clone()),
            on_step: Some(on_step),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(summary.finished);
    assert_eq!(budget.threads(), 1, "twelve flips from one end at one");
    assert_eq!(
        without_timing(metrics(&out)),
        without_timing(metrics(&plain)),
        "a run whose thread count changed differs from one that kept the process's pool"
    );
    assert_eq!(
        std::fs::read(out.join("final/model.safetensors")).unwrap(),
        std::fs::read(plain.join("final/model.safetensors")).unwrap()
    );
}

#[test]
fn mismatched_or_missing_checkpoints_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let out = tmp.path().join("run");
    let c = config(&ds, &out, ODM, 6);
    run(
        &c,
        &RunOptions {
            max_steps: Some(3),
            ..Default::default()
        },
    )
    .unwrap();
    let mut other = c.clone();
    other.training.seed = 8;
    let e = run(
        &other,
        &RunOptions {
            resume: true,
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("training.seed: 7 -> 8"), "{e}");
    let e = run(&c, &RunOptions::default()).unwrap_err().to_string();
    assert!(e.contains("--resume"), "{e}");
    let fresh = config(&ds, &tmp.path().join("fresh"), ODM, 6);
    let e = run(
        &fresh,
        &RunOptions {
            resume: true,
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no complete checkpoint"), "{e}");
    // A corrupt state file is named.
    let ckpt = out.join("checkpoints/step-3/state.json");
    std::fs::write(&ckpt, "{ not json").unwrap();
    let e = run(
        &c,
        &RunOptions {
            resume: true,
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    // (state.json.sha256 finds it before the JSON parser does.)
    assert!(
        e.contains("every checkpoint is damaged")
            && e.contains(&ckpt.display().to_string())
            && e.contains("is corrupt"),
        "{e}"
    );
    assert!(out.join("checkpoints/damaged-step-3").is_dir());

    // A flipped byte in a tensor file is named, not loaded.
    std::fs::remove_dir_all(&out).unwrap();
    run(
        &c,
        &RunOptions {
            max_steps: Some(3),
            ..Default::default()
        },
    )
    .unwrap();
    let model = out.join("checkpoints/step-3/model.mpk");
    let mut bytes = std::fs::read(&model).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&model, bytes).unwrap();
    let e = run(
        &c,
        &RunOptions {
            resume: true,
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(&model.display().to_string()) && e.contains("is corrupt: its SHA-256 is"),
        "{e}"
    );
}

/// A flipped byte in any file of the newest checkpoint: `--resume` names the file, sets the
/// checkpoint aside and continues from the one before, ending where an uninterrupted run ends.
#[test]
fn a_damaged_checkpoint_is_set_aside_and_resume_falls_back_to_the_one_before() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let with_checkpoints = |out: &Path| {
        let mut c = config(&ds, out, ODM, 12);
        c.checkpoint.interval = 4;
        c
    };
    let full = tmp.path().join("full");
    run(&with_checkpoints(&full), &RunOptions::default()).unwrap();
    for file in ["model.mpk", "optim.mpk", "state.json", "state.json.sha256"] {
        let out = tmp.path().join(format!("flipped-{file}"));
        let c = with_checkpoints(&out);
        // Checkpoints at steps 4, 8 and 10 (the stop); `keep = 2` leaves 8 and 10.
        let first = run(
            &c,
            &RunOptions {
                max_steps: Some(10),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(first.steps, 10);
        let damaged = out.join("checkpoints/step-10").join(file);
        let mut bytes = std::fs::read(&damaged).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        std::fs::write(&damaged, bytes).unwrap();

        let resumed = run(
            &c,
            &RunOptions {
                resume: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(resumed.finished, "{file}");
        assert_eq!(resumed.resume.resumed_from, Some(8), "{file}");
        assert_eq!(resumed.steps_this_run, 4, "{file}");
        let [set_aside] = resumed.resume.set_aside.as_slice() else {
            panic!("{file}: {:?}", resumed.resume.set_aside);
        };
        assert_eq!(set_aside.step, 10);
        assert!(
            set_aside.reason.contains(file) && set_aside.reason.contains("is corrupt"),
            "{file}: {}",
            set_aside.reason
        );
        assert_eq!(set_aside.moved_to, out.join("checkpoints/damaged-step-10"));
        assert!(
            set_aside.moved_to.join(file).is_file(),
            "kept for inspection"
        );
        assert_eq!(
            without_timing(metrics(&out)),
            without_timing(metrics(&full)),
            "{file}: the run resumed past a damaged checkpoint differs from the uninterrupted one"
        );
    }
}

#[test]
fn non_finite_loss_stops_with_a_checkpoint_of_the_last_good_state() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let out = tmp.path().join("run");
    let mut c = config(&ds, &out, ODM, 200);
    // A learning rate this large without clipping overflows the weights within a few steps.
    c.schedule.peak_lr = 1e6;
    c.schedule.warmup_fraction = 0.0;
    c.optimizer.grad_clip = 0.0;
    c.eval.interval = 0;
    let err = run(&c, &RunOptions::default()).unwrap_err();
    let TrainError::NonFiniteLoss {
        step,
        domains,
        checkpoint,
        ..
    } = &err
    else {
        panic!("expected a non-finite loss, got {err}");
    };
    assert!(!domains.is_empty());
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(checkpoint).join("state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["step"].as_u64().unwrap(), step - 1);
    assert!(err.to_string().contains(&format!("step {step}")));
    assert_eq!(
        train_lines(&out).len() as u64,
        step - 1,
        "the bad step wrote no metrics"
    );
}

#[test]
fn sequence_granularity_mixes_domains_within_micro_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let out = tmp.path().join("run");
    let mut c = config(&ds, &out, "kind = \"static\"\nweights = \"uniform\"", 6);
    c.training.granularity = mixlab_train::Granularity::Sequence;
    c.eval.interval = 0;
    run(&c, &RunOptions::default()).unwrap();
    let mixed = train_lines(&out).iter().any(|l| {
        l["domains_drawn"].as_array().unwrap().iter().any(|mb| {
            let mb = mb.as_array().unwrap();
            mb.iter().any(|d| d != &mb[0])
        })
    });
    assert!(mixed);
}

#[test]
fn a_stop_request_checkpoints_and_exits_cleanly() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let out = tmp.path().join("run");
    let c = config(&ds, &out, ODM, 10);
    // What the SIGINT/SIGTERM handler of the CLI does: raise the flag.
    let stop = Arc::new(AtomicBool::new(true));
    let summary = run(
        &c,
        &RunOptions {
            stop: Some(stop),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!summary.finished);
    assert_eq!(summary.steps, 1);
    assert!(out.join("checkpoints/step-1/state.json").is_file());
    let resumed = run(
        &c,
        &RunOptions {
            resume: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(resumed.finished);
    assert_eq!(resumed.steps_this_run, 9);
}

#[test]
fn doremi_proxy_uses_a_reference_model_and_exports_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    // The reference model: a short uniform-mixture run, as DoReMi's step 1.
    let reference = tmp.path().join("reference");
    let mut c = config(
        &ds,
        &reference,
        "kind = \"static\"\nweights = \"uniform\"",
        8,
    );
    c.eval.interval = 0;
    run(&c, &RunOptions::default()).unwrap();
    let ref_dir = reference.join("final");

    let proxy = tmp.path().join("proxy");
    let mut c = config(
        &ds,
        &proxy,
        "kind = \"doremi\"\nsampling_weights = \"uniform\"",
        8,
    );
    c.eval.interval = 0;
    c.training.log_interval = 1;
    let mut r = registry();
    r.register(MixerEntry::of::<mixlab_mixer_doremi::DoremiConfig>())
        .unwrap();
    let store = open_dataset(&c).unwrap();
    let ctx = mixer_context(&store).unwrap();
    let mixer = r.build(&c.mixer, &ctx).unwrap();
    // Without the reference model the run is refused up front.
    let e = train::<B>(
        &c,
        open_dataset(&c).unwrap(),
        r.build(&c.mixer, &ctx).unwrap(),
        None,
        None,
        &[CpuDevice::default()],
        &RunOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("reference"), "{e}");
    let summary = train::<B>(
        &c,
        store,
        mixer,
        Some(&ref_dir),
        None,
        &[CpuDevice::default()],
        &RunOptions::default(),
    )
    .unwrap();
    assert!(summary.finished);
    let lines = train_lines(&proxy);
    // Every drawn domain got reference-model excess losses over all its tokens.
    for l in &lines {
        for (domain, f) in l["feedback"].as_object().unwrap() {
            if f["loss_count"].as_u64().unwrap() > 0 {
                assert_eq!(f["excess_tokens"], f["tokens"], "{domain}");
            }
        }
    }
    // DoReMi's domain weights moved away from uniform and were exported as a static table.
    let internals = &lines.last().unwrap()["mixer_internals"];
    assert!(!internals.as_object().unwrap().is_empty());
    let table = std::fs::read_to_string(proxy.join("mixer-output-weights.toml")).unwrap();
    assert!(table.contains("[weights]"), "{table}");

    // Step t's loss is weighted with α_t, the weights after observing step t's own excess
    // losses (DoReMi's Algorithm 1; the reference code updates α before the weighted loss):
    // replaying the logged feedback through a fresh mixer gives, right after step t's
    // feedback, exactly the loss weights the trainer logged as used by step t.
    let mut replayed = r.build(&c.mixer, &ctx).unwrap();
    let before = replayed.loss_weights().unwrap().to_vec();
    let domains = replayed.domains().clone();
    let mut feedback = mixlab_mixing::StepFeedback::new(domains.len());
    assert_eq!(lines.len(), 8, "one line per step");
    for l in &lines {
        let step = l["step"].as_u64().unwrap();
        let record: mixlab_mixing::FeedbackRecord = serde_json::from_value(serde_json::json!({
            "step": step,
            "feedback": l["feedback"],
        }))
        .unwrap();
        record.to_step_feedback(&domains, &mut feedback).unwrap();
        replayed.observe(step, &feedback).unwrap();
        let used = l["loss_weights"]
            .as_object()
            .expect("a proxy logs its loss weights");
        let after = replayed.loss_weights().unwrap();
        for (i, name) in domains.names().iter().enumerate() {
            // Within 1e-12: serde_json's default float parser may round the last bit of the
            // logged numbers differently (the weights before and after observing differ by far
            // more; see the check below).
            let used = used[name].as_f64().unwrap();
            assert!(
                (used - after[i]).abs() <= 1e-12 * after[i].abs(),
                "step {step}, {name}: used {used}, after observing {}",
                after[i]
            );
        }
    }
    // The check above can fail: at step 1 the weights before observing (α_0 = uniform) are
    // not those after it, since the domains' excess losses differ.
    let step1 = lines[0]["loss_weights"].as_object().unwrap();
    assert!(
        domains
            .names()
            .iter()
            .zip(&before)
            .any(|(name, b)| (step1[name].as_f64().unwrap() - b).abs() > 1e-6),
        "step 1 was weighted with α_0: {step1:?} vs {before:?}"
    );

    // With two workers (the loss-weighted gradient pass split, the losses measured first on
    // the model's device) the proxy computes the same run, up to the sums' order.
    let two = tmp.path().join("proxy-two");
    let mut c2 = c.clone();
    c2.out_dir = two.clone();
    c2.training.devices = vec![DeviceSpec::Cpu, DeviceSpec::Cpu];
    train::<B>(
        &c2,
        open_dataset(&c2).unwrap(),
        r.build(&c2.mixer, &ctx).unwrap(),
        Some(&ref_dir),
        None,
        &[CpuDevice::default(), CpuDevice::default()],
        &RunOptions::default(),
    )
    .unwrap();
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * a.abs().max(b.abs()).max(1e-12);
    for (x, y) in lines.iter().zip(&train_lines(&two)) {
        let step = &x["step"];
        let (lx, ly) = (x["loss"].as_f64().unwrap(), y["loss"].as_f64().unwrap());
        assert!(close(lx, ly), "step {step}: loss {lx} vs {ly}");
        for key in ["loss_weights", "weights"] {
            for (name, w) in x[key].as_object().unwrap() {
                let (wx, wy) = (w.as_f64().unwrap(), y[key][name].as_f64().unwrap());
                assert!(close(wx, wy), "step {step} {key} {name}: {wx} vs {wy}");
            }
        }
    }
}

/// Five training steps of `model_dir`'s weights on one fixed batch, as the loop runs them:
/// per-token NLL mean, backward, global-norm clip at 1.0, the loop's AdamW (decay on matrices
/// only). Returns the loss of each step.
fn five_steps<Ad: mixlab_model::TrainBackend>(model_dir: &Path, device: &Ad::Device) -> Vec<f64> {
    use burn::optim::{GradientsParams, Optimizer};
    use burn::tensor::{Int, Tensor, TensorData};
    let mut model = mixlab_model::GptNeoX::<Ad>::load_pretrained(model_dir, device).unwrap();
    let vocab = model.config().vocab_size as u64;
    let (batch, seq) = (4, 32);
    let mut x: u64 = 7;
    let tokens: Vec<i64> = (0..batch * (seq + 1))
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) % vocab) as i64
        })
        .collect();
    let all = Tensor::<Ad, 2, Int>::from_data(TensorData::new(tokens, [batch, seq + 1]), device);
    let (inputs, targets) = (all.clone().narrow(1, 0, seq), all.narrow(1, 1, seq));
    let mut optim =
        mixlab_train::optimizer::DecoupledAdamW::new(0.9, 0.95, 1e-8, 0.1).init::<Ad, _>();
    let mut losses = Vec::new();
    for _ in 0..5 {
        let loss = model
            .per_token_nll(inputs.clone(), targets.clone(), None)
            .mean();
        losses.push(loss.clone().into_data().iter::<f64>().next().unwrap());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let (grads, _) = mixlab_model::clip_grad_norm(&model, grads, 1.0);
        model = optim.step(1e-3, model, grads);
    }
    losses
}

/// Every backend of this build and machine trains like flex, the default: the same initial
/// weights (drawn on flex, saved, loaded into each backend), the same batch and five steps give
/// losses equal to 1e-4 relative. Backends this build or machine lacks are skipped with a line
/// saying so (libtorch: `--features tch`; CUDA: a GPU).
#[test]
fn backends_agree_on_five_training_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("init");
    let device = mixlab_model::cpu_device();
    tiny_model()
        .init_seeded::<mixlab_model::CpuBackend>(&device, 3)
        .unwrap()
        .save_pretrained(&dir)
        .unwrap();
    let flex = five_steps::<B>(&dir, &device);
    assert!(flex.iter().all(|l| l.is_finite()), "{flex:?}");
    // Five steps at lr 1e-3 on one batch must lower its loss: the steps really train.
    assert!(flex[4] < flex[0] - 0.01, "flex did not train: {flex:?}");
    let agree = |name: &str, other: &[f64]| {
        for (step, (a, b)) in flex.iter().zip(other).enumerate() {
            assert!(
                ((a - b) / a).abs() <= 1e-4,
                "{name} step {}: loss {b} vs flex {a} (all: {other:?} vs {flex:?})",
                step + 1
            );
        }
        eprintln!("{name}: five losses agree with flex to 1e-4: {other:?}");
    };

    #[cfg(feature = "tch")]
    agree(
        "tch-cpu",
        &five_steps::<mixlab_model::TchTrainBackend>(&dir, &mixlab_model::tch_cpu_device()),
    );
    #[cfg(not(feature = "tch"))]
    eprintln!(
        "skipped tch-cpu: this build lacks the `tch` feature (README, \"The libtorch CPU path\")"
    );

    if Path::new("/dev/nvidia0").exists() {
        let cuda = mixlab_model::cuda_device(0, mixlab_model::Precision::F32).unwrap();
        agree(
            "cuda",
            &five_steps::<mixlab_model::CudaTrainBackend>(&dir, &cuda),
        );
    } else {
        eprintln!("skipped cuda: no /dev/nvidia0 on this machine");
    }
}

/// A checkpoint write that fails on a full disk (injected: half the model file, then ENOSPC)
/// names the cause, the file and the checkpoint to resume from, leaves no temporary directory,
/// and `--resume` then finishes exactly as an uninterrupted run.
#[test]
fn a_full_disk_is_named_and_resume_finishes_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let with_checkpoints = |out: &Path| {
        let mut c = config(&ds, out, ODM, 12);
        c.checkpoint.interval = 4;
        c
    };
    let full = tmp.path().join("full");
    run(&with_checkpoints(&full), &RunOptions::default()).unwrap();

    let faulty = tmp.path().join("faulty");
    let c = with_checkpoints(&faulty);
    let error = run(
        &c,
        &RunOptions {
            fail_checkpoint_at: Some(8),
            ..Default::default()
        },
    )
    .unwrap_err();
    let message = error.to_string();
    let model_file = faulty.join("checkpoints/.step-8.tmp/model.mpk");
    assert!(
        message.contains("checkpoint step-8: no space left on device")
            && message.contains(&model_file.display().to_string())
            && message
                .contains("the last complete checkpoint is step-4, from which --resume continues"),
        "{message}"
    );
    assert!(
        !faulty.join("checkpoints/.step-8.tmp").exists(),
        "the half-written checkpoint was left behind"
    );
    let second = run(
        &c,
        &RunOptions {
            resume: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(second.finished);
    assert_eq!(second.steps_this_run, 8, "resumed from step 4");
    assert_eq!(
        without_timing(metrics(&faulty)),
        without_timing(metrics(&full)),
        "the run resumed after a full disk differs from the uninterrupted one"
    );
}

/// A mixer that learns from validation losses, as Aioli's probes do: it asks for the model's
/// per-domain validation losses before step 1 and after every `every`-th step, records them,
/// and samples the next steps in proportion to them.
mod probe {
    use mixlab_mixing::{
        DomainSet, Mixer, MixerConfig, MixerContext, MixingError, ParamDoc, Result, StepFeedback,
        check_step, check_validation_losses,
    };
    use serde::{Deserialize, Serialize};
    use serde_json::Value;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct ProbeConfig {
        /// Validate after every this-many steps (and before step 1).
        pub every: u64,
    }

    impl MixerConfig for ProbeConfig {
        const KIND: &'static str = "probe";
        const SUMMARY: &'static str = "test mixer: weights proportional to validation losses";
        const PARAMS: &'static [ParamDoc] = &[ParamDoc {
            name: "every",
            type_name: "integer",
            default: "required",
            doc: "Validate after every this-many steps.",
        }];
        fn build(&self, ctx: &MixerContext) -> Result<Box<dyn Mixer>> {
            let k = ctx.domains.len();
            Ok(Box::new(Probe {
                every: self.every,
                domains: ctx.domains.clone(),
                state: ProbeState {
                    domains: ctx.domains.names().to_vec(),
                    weights: vec![1.0 / k as f64; k],
                    received: Vec::new(),
                    last_step: None,
                },
            }))
        }
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct ProbeState {
        pub domains: Vec<String>,
        pub weights: Vec<f64>,
        /// (step, losses) of every validation received.
        pub received: Vec<(u64, Vec<Option<f64>>)>,
        pub last_step: Option<u64>,
    }

    #[derive(Debug)]
    struct Probe {
        every: u64,
        domains: DomainSet,
        state: ProbeState,
    }

    impl Mixer for Probe {
        fn kind(&self) -> &'static str {
            "probe"
        }
        fn domains(&self) -> &DomainSet {
            &self.domains
        }
        fn weights(&self) -> &[f64] {
            &self.state.weights
        }
        fn needs_validation(&self) -> bool {
            true
        }
        fn wants_validation(&self, step: u64) -> bool {
            step.is_multiple_of(self.every)
        }
        fn observe_validation(&mut self, step: u64, losses: &[Option<f64>]) -> Result<()> {
            check_validation_losses("probe", &self.domains, step, losses)?;
            let known: Vec<f64> = losses.iter().flatten().copied().collect();
            let mean = known.iter().sum::<f64>() / known.len() as f64;
            let raw: Vec<f64> = losses.iter().map(|l| l.unwrap_or(mean)).collect();
            let sum: f64 = raw.iter().sum();
            self.state.weights = raw.iter().map(|l| l / sum).collect();
            self.state.received.push((step, losses.to_vec()));
            Ok(())
        }
        fn observe(&mut self, step: u64, feedback: &StepFeedback) -> Result<()> {
            check_step(self.state.last_step, step)?;
            feedback.validate(&self.domains)?;
            self.state.last_step = Some(step);
            Ok(())
        }
        fn state(&self) -> Result<Value> {
            serde_json::to_value(&self.state)
                .map_err(|e| MixingError::state("probe", e.to_string()))
        }
        fn restore_state(&mut self, state: &Value) -> Result<()> {
            let saved: ProbeState = serde_json::from_value(state.clone())
                .map_err(|e| MixingError::state("probe", e.to_string()))?;
            if saved.domains != self.domains.names() {
                return Err(MixingError::state("probe", "other domains"));
            }
            self.state = saved;
            Ok(())
        }
        fn internals(&self) -> serde_json::Map<String, Value> {
            let mut m = serde_json::Map::new();
            m.insert(
                "received".into(),
                serde_json::to_value(&self.state.received).expect("JSON"),
            );
            m
        }
    }
}

/// The probe mixer passes mixlab-mixing's conformance kit, which hands validation losses to a
/// mixer that asks for them.
#[test]
fn the_probe_mixer_conforms() {
    mixlab_mixing::testing::assert_conforms::<probe::ProbeConfig>("kind = \"probe\"\nevery = 3");
}

/// A mixer that asks for validation losses gets them before step 1 and after the steps it
/// names, measured on the model as it is then: the losses it receives are those the loop
/// logs (a `mixer-eval` line, or the periodic `eval` line when one is due at the same step),
/// they steer its sampling, a resumed run continues exactly, and a run without validation is
/// refused before it starts.
#[test]
fn a_mixer_that_asks_for_validation_losses_gets_them() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let mut r = registry();
    r.register(MixerEntry::of::<probe::ProbeConfig>()).unwrap();
    let run_probe = |c: &TrainConfig, options: &RunOptions, validate: bool| {
        let store = open_dataset(c)?;
        let ctx = mixer_context(&store)?;
        let mixer = r.build(&c.mixer, &ctx)?;
        let v: Option<&dyn Validate<_>> = if validate { Some(&MeanNll) } else { None };
        train::<B>(c, store, mixer, None, v, &[CpuDevice::default()], options)
    };
    let full = tmp.path().join("probe-full");
    let c = config(&ds, &full, "kind = \"probe\"\nevery = 4", 12);
    let summary = run_probe(&c, &RunOptions::default(), true).unwrap();
    // The validations only the mixer asked for (0, 4 and 8) are timed as its cost.
    assert!(!summary.mixer_validation_time.is_zero());
    let lines = metrics(&full);
    let evals: Vec<(u64, &str)> = lines
        .iter()
        .filter(|l| l["type"] == "eval" || l["type"] == "mixer-eval")
        .map(|l| (l["step"].as_u64().unwrap(), l["type"].as_str().unwrap()))
        .collect();
    // Periodic every 6 steps; the mixer's at 0, 4, 8 and 12 (12 shares the periodic line).
    assert_eq!(
        evals,
        [
            (0, "mixer-eval"),
            (4, "mixer-eval"),
            (6, "eval"),
            (8, "mixer-eval"),
            (12, "eval")
        ]
    );
    // What the mixer received (in its internals on the train line after) is what was logged.
    let received =
        lines.iter().rev().find(|l| l["type"] == "train").unwrap()["mixer_internals"]["received"]
            .clone();
    let received = received.as_array().unwrap();
    assert_eq!(
        received.len(),
        4,
        "0, 4, 8 and 12: the step's line follows its validation"
    );
    // The header line lists the domains in the order of the mixer's vectors.
    let names: Vec<String> = lines[0]["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 4);
    for got in received {
        let step = got[0].as_u64().unwrap();
        let logged = lines
            .iter()
            .find(|l| l["step"] == step && l["type"] != "train")
            .unwrap();
        for (i, name) in names.iter().enumerate() {
            assert_eq!(
                got[1][i],
                logged["domains"][name.as_str()]["loss"],
                "step {step} {name}"
            );
        }
    }
    // The validations steer the sampling: from step 1 on the weights are not uniform.
    let first = lines.iter().find(|l| l["type"] == "train").unwrap();
    assert_ne!(first["weights"][names[0].as_str()], serde_json::json!(0.25));

    // Replayed offline from its metrics.jsonl (replay-mixer's engine): the validation lines
    // reach the mixer at the same steps, so every policy equals the one the run logged.
    let log = mixlab_mixing::FeedbackLog::read(&full.join("metrics.jsonl")).unwrap();
    assert_eq!(log.validations.len(), 5);
    let store = open_dataset(&c).unwrap();
    let mut mixer = r.build(&c.mixer, &mixer_context(&store).unwrap()).unwrap();
    let mut out = Vec::new();
    mixlab_mixing::replay(mixer.as_mut(), &log, &mut out).unwrap();
    let replayed: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for line in lines.iter().filter(|l| l["type"] == "train") {
        let step = line["step"].as_u64().unwrap() as usize;
        assert_eq!(
            replayed[step - 1]["weights"],
            line["weights"],
            "step {step}"
        );
        assert_eq!(
            replayed[step]["weights"], line["next_weights"],
            "step {step}"
        );
    }

    // Without its validation lines, the replay stops at the first step that needs one and
    // says so.
    let text = std::fs::read_to_string(full.join("metrics.jsonl")).unwrap();
    let kept: String = text
        .lines()
        .filter(|l| !l.contains("\"mixer-eval\""))
        .map(|l| format!("{l}\n"))
        .collect();
    let log = mixlab_mixing::FeedbackLog::parse(&kept, Path::new("m.jsonl")).unwrap();
    let mut mixer = r.build(&c.mixer, &mixer_context(&store).unwrap()).unwrap();
    let e = mixlab_mixing::replay(mixer.as_mut(), &log, &mut Vec::new())
        .expect_err("no validation at step 0")
        .to_string();
    assert!(e.contains("m.jsonl") && e.contains("after step 0"), "{e}");

    // Stopped after 5 steps and resumed: the same lines.
    let split = tmp.path().join("probe-split");
    let c = config(&ds, &split, "kind = \"probe\"\nevery = 4", 12);
    let stop = RunOptions {
        max_steps: Some(5),
        ..Default::default()
    };
    run_probe(&c, &stop, true).unwrap();
    let resume = RunOptions {
        resume: true,
        ..Default::default()
    };
    run_probe(&c, &resume, true).unwrap();
    assert_eq!(
        without_timing(metrics(&split)),
        without_timing(metrics(&full))
    );

    // Without validation: refused, naming the mixer.
    let none = tmp.path().join("probe-none");
    let mut c = config(&ds, &none, "kind = \"probe\"\nevery = 4", 12);
    c.eval.interval = 0;
    let e = run_probe(&c, &RunOptions::default(), false)
        .expect_err("no validation")
        .to_string();
    assert!(e.contains("probe") && e.contains("validation"), "{e}");
}

/// The `[steps, micro-batches, sequences, seq_len + 1]` shape and the token ids of a batch
/// dump, read as NumPy would: the header's length is in bytes 8-9 after the magic.
fn read_dump(path: &Path) -> ([usize; 4], Vec<u32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let start = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!(start % 64, 0, "NumPy aligns the data to 64 bytes");
    let header = std::str::from_utf8(&bytes[10..start]).unwrap();
    assert!(header.contains("'descr': '<u4'"), "{header}");
    let dims: Vec<usize> = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap()
        .split(',')
        .map(|d| d.trim().parse().unwrap())
        .collect();
    let data: Vec<u32> = bytes[start..]
        .chunks(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let shape = [dims[0], dims[1], dims[2], dims[3]];
    assert_eq!(data.len(), shape.iter().product::<usize>());
    (shape, data)
}

/// Initial weights for the test model on `store`'s tokenizer, drawn with `seed`, saved as an
/// HF directory with the dataset's tokenizer beside them (what a run's `final/` holds).
fn init_dir(dir: &Path, store: &DomainStore, model: ModelConfig, seed: u64) -> PathBuf {
    let device = mixlab_model::cpu_device();
    model
        .with_vocab_size(store.manifest().vocab_size)
        .with_max_seq_len(store.manifest().seq_len)
        .init_seeded::<mixlab_model::CpuBackend>(&device, seed)
        .unwrap()
        .save_pretrained(dir)
        .unwrap();
    std::fs::copy(store.tokenizer_path(), dir.join("tokenizer.json")).unwrap();
    dir.to_path_buf()
}

/// A run with `init_from` starts from the directory's weights, records their SHA-256 in its
/// config, and its batch dump holds exactly the batches it trained on: the directory's model,
/// evaluated on the dump's first step, gives the run's first loss.
#[test]
fn init_from_starts_from_the_directory_and_the_dump_holds_the_trained_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let out = tmp.path().join("run");
    let mut c = config(&ds, &out, TPW, 4);
    let store = open_dataset(&c).unwrap();
    let init = init_dir(&tmp.path().join("init"), &store, tiny_model(), 99);
    c.model.init_from = Some(init.clone());
    let dump = tmp.path().join("batches.npy");
    run(
        &c,
        &RunOptions {
            dump_batches: Some(dump.clone()),
            ..Default::default()
        },
    )
    .unwrap();

    let resolved = TrainConfig::load(&out.join("config.toml")).unwrap();
    let sha = mixlab_data::sha256_file(&init.join("model.safetensors")).unwrap();
    assert_eq!(resolved.model.init_sha256.as_deref(), Some(sha.as_str()));
    assert_eq!(resolved.model.init_from.as_deref(), Some(init.as_path()));

    let (shape, tokens) = read_dump(&dump);
    let seq = store.manifest().seq_len;
    assert_eq!(shape, [4, 4, 2, seq + 1]);
    let device = CpuDevice::default();
    let model = GptNeoX::<mixlab_model::CpuBackend>::load_pretrained(&init, &device).unwrap();
    let step_tokens = shape[1] * shape[2] * shape[3];
    let batch = Tensor::<mixlab_model::CpuBackend, 2, Int>::from_data(
        TensorData::new(
            tokens[..step_tokens]
                .iter()
                .map(|&t| i64::from(t))
                .collect::<Vec<_>>(),
            [shape[1] * shape[2], seq + 1],
        ),
        &device,
    );
    let nll = model.per_token_nll(
        batch.clone().narrow(1, 0, seq),
        batch.narrow(1, 1, seq),
        None,
    );
    let loss = nll.into_data().iter::<f64>().sum::<f64>() / (shape[1] * shape[2] * seq) as f64;
    let first = train_lines(&out)[0]["loss"].as_f64().unwrap();
    assert!(
        ((loss - first) / first).abs() < 1e-6,
        "the initial weights on the dumped step 1 give {loss}, the run logged {first}"
    );
    // As many sequences as the run's lines say it drew.
    let drawn: usize = train_lines(&out)
        .iter()
        .map(|l| {
            l["domains_drawn"]
                .as_array()
                .unwrap()
                .iter()
                .map(|mb| mb.as_array().unwrap().len())
                .sum::<usize>()
        })
        .sum();
    assert_eq!(drawn, shape[0] * shape[1] * shape[2]);

    // A second run may not overwrite the dump, and is refused before it writes anything.
    let again = tmp.path().join("again");
    let e = run(
        &config(&ds, &again, TPW, 4),
        &RunOptions {
            dump_batches: Some(dump.clone()),
            ..Default::default()
        },
    )
    .expect_err("the dump exists")
    .to_string();
    assert!(
        e.contains("already exists") && e.contains("batches.npy"),
        "{e}"
    );
    assert!(!again.join("metrics.jsonl").exists() && !again.join("config.toml").exists());
}

/// Weights of another shape, another tokenizer, or another hash than the config pins are
/// refused before anything is written, with the field named.
#[test]
fn init_from_refuses_another_shape_tokenizer_or_hash() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let out = tmp.path().join("run");
    let base = config(&ds, &out, TPW, 4);
    let store = open_dataset(&base).unwrap();
    let refused = |c: &TrainConfig| {
        let e = run(c, &RunOptions::default())
            .expect_err("refused")
            .to_string();
        assert!(!out.join("metrics.jsonl").exists(), "{e}");
        e
    };

    let mut wider = tiny_model();
    wider.d_ff *= 2;
    let mut c = base.clone();
    c.model.init_from = Some(init_dir(&tmp.path().join("wide"), &store, wider, 1));
    let e = refused(&c);
    assert!(
        e.contains("model.init_from")
            && e.contains(
                "d_ff (HF intermediate_size): the run's model has 128, the directory 256"
            ),
        "{e}"
    );

    let other = init_dir(&tmp.path().join("other-tok"), &store, tiny_model(), 1);
    std::fs::write(other.join("tokenizer.json"), "{}").unwrap();
    c.model.init_from = Some(other);
    let e = refused(&c);
    assert!(
        e.contains("is not the tokenizer the dataset was prepared with"),
        "{e}"
    );

    c.model.init_from = Some(init_dir(&tmp.path().join("good"), &store, tiny_model(), 1));
    c.model.init_sha256 = Some("0".repeat(64));
    let e = refused(&c);
    assert!(
        e.contains("model.init_sha256") && e.contains(&"0".repeat(64)),
        "{e}"
    );

    c.model.init_from = Some(tmp.path().join("nowhere"));
    let e = refused(&c);
    assert!(e.contains("nowhere") && e.contains("config.json"), "{e}");
}

/// A run started from `init_from` and stopped resumes without the directory (the checkpoint
/// holds the weights, the checkpoint's config the hash), and its dump then equals the dump and
/// the metrics of an uninterrupted run.
#[test]
fn a_resumed_run_continues_its_dump_without_the_init_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let probe = config(&ds, &tmp.path().join("probe"), TPW, 6);
    let store = open_dataset(&probe).unwrap();
    let init = init_dir(&tmp.path().join("init"), &store, tiny_model(), 5);
    let with_init = |out: &Path| {
        let mut c = config(&ds, out, TPW, 6);
        c.model.init_from = Some(init.clone());
        c
    };
    let (full, split) = (tmp.path().join("full"), tmp.path().join("split"));
    let (full_dump, split_dump) = (tmp.path().join("full.npy"), tmp.path().join("split.npy"));
    run(
        &with_init(&full),
        &RunOptions {
            dump_batches: Some(full_dump.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    run(
        &with_init(&split),
        &RunOptions {
            max_steps: Some(3),
            dump_batches: Some(split_dump.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    // The stopped run's dump is a readable array of its 3 steps.
    let (shape, _) = read_dump(&split_dump);
    assert_eq!(shape[0], 3);
    let copy = tmp.path().join("init-moved");
    std::fs::rename(&init, &copy).unwrap();
    let resumed = run(
        &with_init(&split),
        &RunOptions {
            resume: true,
            dump_batches: Some(split_dump.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(resumed.finished);
    assert_eq!(
        std::fs::read(&split_dump).unwrap(),
        std::fs::read(&full_dump).unwrap()
    );
    assert_eq!(
        without_timing(metrics(&split)),
        without_timing(metrics(&full))
    );
    // A dump that starts only at the resume would miss steps 1-3.
    std::fs::rename(&copy, &init).unwrap();
    let late = tmp.path().join("late");
    run(
        &with_init(&late),
        &RunOptions {
            max_steps: Some(3),
            ..Default::default()
        },
    )
    .unwrap();
    let e = run(
        &with_init(&late),
        &RunOptions {
            resume: true,
            dump_batches: Some(tmp.path().join("late.npy")),
            ..Default::default()
        },
    )
    .expect_err("no dump to continue")
    .to_string();
    assert!(
        e.contains("late.npy") && e.contains("does not exist"),
        "{e}"
    );
}
