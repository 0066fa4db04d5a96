//! mixlab's training step against PyTorch's on the same weights and batches.
//!
//! The smoke configuration (the `tiny` model on the built-in synthetic corpus, 16 sequences of
//! 128 tokens in 4 micro-batches) with a static mixer trains 10 steps from a random start; a
//! second run starts from that run's `final/` (`--init-from`) for 50 steps and dumps its batches
//! (`--dump-batches`); `benches/pytorch_reference.py` replays them with HF transformers'
//! GPTNeoXForCausalLM, torch.optim.AdamW, clip_grad_norm_ and LambdaLR from the same weights.
//! Every step's loss and gradient norm, and every final weight tensor, must agree to 1e-4
//! relative.
//!
//! Runs when `$PYTHON` (default `python3`, as for `just bench-pytorch`) imports torch, transformers and numpy, and
//! says why it skipped otherwise.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::SmokeRun;
use serde_json::Value;

mod common;

/// Agreement required of every step's loss and gradient norm and of every final tensor.
const TOLERANCE: f64 = 1e-4;

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Why the reference cannot run here, or `None` when it can.
fn missing_python() -> Option<String> {
    let python = python();
    match Command::new(&python)
        .args(["-c", "import torch, transformers, numpy, tomllib"])
        .output()
    {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "`{python}` cannot import torch, transformers, numpy and tomllib ({}); set PYTHON to an interpreter that can",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        )),
        Err(e) => Some(format!("`{python}` does not run ({e})")),
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(cmd: &mut Command) -> String {
    let output = cmd.output().expect("spawn");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{cmd:?} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The smoke configuration (16 sequences in 4 micro-batches) with a static mixer, `steps` long.
fn smoke_config(data: &Path, out: &Path, name: &str, steps: u64) -> String {
    common::smoke_config(
        data,
        out,
        &SmokeRun {
            name,
            mixer: "kind = \"static\"\nweights = { temperature = 1.0 }",
            batch_size: 16,
            micro_batches: 4,
            steps,
            seed: 42,
        },
    )
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn relative(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-30)
}

/// Every tensor of a safetensors file as f32 values, by name.
fn tensors(path: &Path) -> BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .filter(|(name, _)| !name.ends_with(".attention.bias") && !name.ends_with(".inv_freq"))
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let values = view
                .data()
                .chunks(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (name, values)
        })
        .collect()
}

#[test]
fn fifty_steps_equal_pytorchs_adamw_clip_and_schedule() {
    if let Some(reason) = missing_python() {
        eprintln!("skipped: {reason}");
        return;
    }
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pytorch-reference");
    // The corpus and its preparation are kept between test runs; the runs are not.
    let data = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pytorch-reference-data");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).unwrap();
    }
    std::fs::create_dir_all(&tmp).unwrap();
    let experiments = env!("CARGO_BIN_EXE_experiments");

    // A start that is not the random initialisation: 10 steps of the same configuration.
    let start = tmp.join("start");
    let start_toml = tmp.join("start.toml");
    std::fs::write(&start_toml, smoke_config(&data, &start, "start", 10)).unwrap();
    run(Command::new(experiments)
        .args(["train", "--config"])
        .arg(&start_toml));

    let run_dir = tmp.join("run");
    let run_toml = tmp.join("run.toml");
    let batches = tmp.join("batches.npy");
    std::fs::write(&run_toml, smoke_config(&data, &run_dir, "run", 50)).unwrap();
    run(Command::new(experiments)
        .args(["train", "--config"])
        .arg(&run_toml)
        .arg("--init-from")
        .arg(start.join("final"))
        .arg("--dump-batches")
        .arg(&batches));

    // The resolved config records the initial weights and their hash.
    let resolved: toml::Table = std::fs::read_to_string(run_dir.join("config.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let sha = mixlab_data::sha256_file(&start.join("final/model.safetensors")).unwrap();
    assert_eq!(
        resolved["model"]["init_sha256"].as_str(),
        Some(sha.as_str()),
        "{resolved:?}"
    );

    let reference = tmp.join("reference");
    run(Command::new(python())
        .arg(repo_root().join("benches/pytorch_reference.py"))
        .arg("--init")
        .arg(start.join("final"))
        .arg("--batches")
        .arg(&batches)
        .arg("--config")
        .arg(run_dir.join("config.toml"))
        .arg("--out")
        .arg(&reference));

    let ours: Vec<Value> = lines(&run_dir.join("metrics.jsonl"))
        .into_iter()
        .filter(|l| l["type"] == "train")
        .collect();
    let theirs = lines(&reference.join("steps.jsonl"));
    assert_eq!(ours.len(), 50);
    assert_eq!(theirs.len(), 50);
    let mut worst = [0.0f64; 3];
    for (a, b) in ours.iter().zip(&theirs) {
        let step = a["step"].as_u64().unwrap();
        assert_eq!(b["step"].as_u64(), Some(step));
        let lr = relative(a["lr"].as_f64().unwrap(), b["lr"].as_f64().unwrap());
        assert!(lr < 1e-12, "step {step}: lr {a} vs {b}");
        let loss = relative(a["loss"].as_f64().unwrap(), b["loss"].as_f64().unwrap());
        // Against clip_grad_norm_'s own value and against the norm summed in float64: torch
        // sums squares in float32 and is itself a few 1e-5 off the exact norm.
        let ours_norm = a["grad_norm"].as_f64().unwrap();
        let norm = relative(ours_norm, b["grad_norm"].as_f64().unwrap());
        let exact = relative(ours_norm, b["grad_norm_exact"].as_f64().unwrap());
        assert!(
            loss <= TOLERANCE && norm <= TOLERANCE && exact <= TOLERANCE,
            "step {step}: mixlab loss {} grad norm {ours_norm}, PyTorch loss {} grad norm {} (exact {}); relative {loss:.2e}, {norm:.2e}, {exact:.2e}",
            a["loss"],
            b["loss"],
            b["grad_norm"],
            b["grad_norm_exact"]
        );
        worst = [worst[0].max(loss), worst[1].max(norm), worst[2].max(exact)];
    }
    // The run must have trained: a replay of a frozen model would agree trivially.
    let first = ours[0]["loss"].as_f64().unwrap();
    let last = ours[49]["loss"].as_f64().unwrap();
    assert!(last < first - 0.05, "loss {first} -> {last}");

    let ours = tensors(&run_dir.join("final/model.safetensors"));
    let theirs = tensors(&reference.join("final/model.safetensors"));
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>()
    );
    let start = tensors(&start.join("final/model.safetensors"));
    // Key-bias entries outside the rotary dimensions have no gradient: rounding noise, which
    // Adam rescales, moves them differently on each side (ModelConfig's
    // qkv_bias_entry_has_no_gradient), so they are bounded, not compared.
    let model =
        mixlab_model::ModelConfig::read_hf_config(&run_dir.join("final/config.json")).unwrap();
    let unconstrained = |i: usize| model.qkv_bias_entry_has_no_gradient(i);
    let mut worst_tensor = (String::new(), 0.0f64);
    let mut noise = 0.0f32;
    for (name, a) in &ours {
        let b = &theirs[name];
        let free = |i: usize| name.ends_with(".attention.query_key_value.bias") && unconstrained(i);
        let compared = |values: &[f32]| -> Vec<f64> {
            (0..values.len())
                .filter(|&i| !free(i))
                .map(|i| f64::from(values[i]))
                .collect()
        };
        for i in (0..a.len()).filter(|&i| free(i)) {
            noise = noise.max((a[i] - b[i]).abs());
        }
        let (a, b, s) = (compared(a), compared(b), compared(&start[name]));
        let diff: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            .sqrt();
        let scale: f64 = b.iter().map(|y| y.powi(2)).sum::<f64>().sqrt();
        let rel = diff / scale.max(1e-30);
        assert!(
            rel <= TOLERANCE,
            "{name}: final weights differ by {rel:.2e} relative (L2)"
        );
        if rel > worst_tensor.1 {
            worst_tensor = (name.clone(), rel);
        }
        // ... and every tensor moved, far more than the two sides differ.
        let moved: f64 = a
            .iter()
            .zip(&s)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(
            moved > 100.0 * diff,
            "{name}: moved {moved:.3e}, differs {diff:.3e}"
        );
    }
    // Rounding noise amplified by Adam stays small in absolute terms (the entries start at
    // about 1e-5 and the peak learning rate is 2e-3).
    assert!(
        noise < 1e-2,
        "key-bias entries without gradient differ by {noise}"
    );
    eprintln!(
        "50 steps: loss within {:.2e}, grad norm within {:.2e} of clip_grad_norm_'s and {:.2e} of the exact one, final weights within {:.2e} ({}) relative of PyTorch's; the key-bias entries without gradient within {noise:.2e} absolute",
        worst[0], worst[1], worst[2], worst_tensor.1, worst_tensor.0
    );
}
