//! The Python package (`crates/python`) built with maturin and its tests run, when the Python
//! named by `$PYTHON` (default `python3`) has maturin and numpy; otherwise the test says it
//! skipped.
//!
//! - `crates/python/tests/test_mixlab.py` replays the committed runs of `results/quick`
//!   through mixers built in Python and compares every step's weights with what mixlab's
//!   trainer logged; with torch installed, it also checks `mixlab.torch`'s per-domain feedback
//!   by hand and across two gloo ranks.
//! - `crates/python/tests/test_data.py` gets a fresh ODM run here (`train --dump-batches`) and
//!   checks that `mixlab.DataStream`, given the run's logged weights, yields exactly its batches,
//!   and, with torch, that `mixlab.torch.MixedDataset` under a DataLoader yields them too, with
//!   any number of workers, on a rank of two, and after a resume.
//! - `crates/python/tests/test_example.py` trains `examples/pytorch/train_odm.py` on that run's
//!   dataset in one process and under `torchrun` with two ranks, kills one and resumes it
//!   (skips, saying so, without torch and transformers).

use std::path::{Path, PathBuf};
use std::process::Command;

use common::SmokeRun;

mod common;

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn run(cmd: &mut Command) -> String {
    let output = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
fn the_python_package_builds_and_decides_and_draws_as_mixlab_does() {
    let python = python();
    let ready = Command::new(&python)
        .args(["-c", "import maturin, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ready {
        eprintln!(
            "skipped: `{python}` cannot import maturin and numpy (pip install maturin numpy, or set PYTHON to an interpreter that can)"
        );
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let scratch = tmp.join("python-package");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch).unwrap();
    }
    let (wheels, site) = (scratch.join("wheels"), scratch.join("site"));
    // The package's own target directory beside the workspace's: its pyo3 build differs.
    run(Command::new(&python)
        .args(["-m", "maturin", "build", "--release", "-m"])
        .arg(root.join("crates/python/Cargo.toml"))
        .arg("-o")
        .arg(&wheels)
        .arg("-i")
        .arg(&python)
        .env("CARGO_TARGET_DIR", tmp.join("../python")));
    let wheel = std::fs::read_dir(&wheels)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .expect("maturin wrote a wheel");
    run(Command::new(&python)
        .args(["-m", "pip", "install", "--no-deps", "--target"])
        .arg(&site)
        .arg(&wheel));
    for file in ["_mixlab.pyi", "torch.py", "data.py", "py.typed"] {
        assert!(
            site.join("mixlab").join(file).is_file(),
            "{file} is in the wheel"
        );
    }
    let out = run(Command::new(&python)
        .arg("crates/python/tests/test_mixlab.py")
        .current_dir(&root)
        .env("PYTHONPATH", &site));
    assert!(out.contains("\nOK"), "{out}");
    // Only the torch tests may skip (an interpreter without torch); never a replay.
    assert!(!out.contains("is absent"), "a replay was skipped:\n{out}");
    eprintln!("{out}");

    // A run that dumps its batches, for the data stream to reproduce.
    let data = tmp.join("pytorch-reference-data");
    let run_dir = scratch.join("run");
    let config = scratch.join("run.toml");
    let dump = scratch.join("batches.npy");
    // ODM, so the weights move from step to step.
    let odm = "kind = \"odm\"\nrule = \"paper\"\nwarmup_steps = 2\ninitial_weights = { temperature = 1.0 }";
    let run_config = common::smoke_config(
        &data,
        &run_dir,
        &SmokeRun {
            name: "python-data",
            mixer: odm,
            batch_size: 8,
            micro_batches: 4,
            steps: 12,
            seed: 5,
        },
    );
    std::fs::write(&config, run_config).unwrap();
    run(Command::new(env!("CARGO_BIN_EXE_experiments"))
        .args(["train", "--config"])
        .arg(&config)
        .arg("--dump-batches")
        .arg(&dump));
    let out = run(Command::new(&python)
        .arg("crates/python/tests/test_data.py")
        .current_dir(&root)
        .env("PYTHONPATH", &site)
        .env("MIXLAB_DATASET", data.join("prepared-v4096-s128"))
        .env("MIXLAB_RUN", &run_dir)
        .env("MIXLAB_DUMP", &dump));
    assert!(out.contains("\nOK"), "{out}");
    // Only the torch dataset's tests may skip, on an interpreter without torch.
    assert_eq!(
        out.matches("skipped '").count(),
        out.matches("skipped 'torch is not installed").count(),
        "{out}"
    );
    eprintln!("{out}");

    // The PyTorch example under torchrun: two ranks, one process, a kill and a resume.
    let out = run(Command::new(&python)
        .arg("crates/python/tests/test_example.py")
        .current_dir(&root)
        .env("PYTHONPATH", &site)
        .env("MIXLAB_DATASET", data.join("prepared-v4096-s128")));
    assert!(out.contains("\nOK"), "{out}");
    eprintln!("{out}");
}
