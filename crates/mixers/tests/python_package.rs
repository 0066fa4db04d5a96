//! The Python package (`crates/python`) built with maturin and its tests run, when the Python
//! named by `$PYTHON` (default `python3`) has maturin; otherwise the test says it skipped.
//!
//! The tests (`crates/python/tests/test_mixlab.py`) replay the committed runs of
//! `results/quick` through mixers built in Python and compare every step's weights with what
//! mixlab's trainer logged; with torch installed, they also check `mixlab.torch`'s per-domain
//! feedback by hand and across two gloo ranks.

use std::path::{Path, PathBuf};
use std::process::Command;

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
fn the_python_package_builds_and_replays_committed_runs() {
    let python = python();
    let has_maturin = Command::new(&python)
        .args(["-m", "maturin", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_maturin {
        eprintln!(
            "skipped: `{python} -m maturin` does not run (pip install maturin, or set PYTHON to an interpreter that has it)"
        );
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("python-package");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch).unwrap();
    }
    let (wheels, site) = (scratch.join("wheels"), scratch.join("site"));
    // The package's own target directory beside the workspace's: its pyo3 build differs.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../python");
    run(Command::new(&python)
        .args(["-m", "maturin", "build", "--release", "-m"])
        .arg(root.join("crates/python/Cargo.toml"))
        .arg("-o")
        .arg(&wheels)
        .arg("-i")
        .arg(&python)
        .env("CARGO_TARGET_DIR", &target));
    let wheel = std::fs::read_dir(&wheels)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .expect("maturin wrote a wheel");
    run(Command::new(&python)
        .args(["-m", "pip", "install", "--no-deps", "--target"])
        .arg(&site)
        .arg(&wheel));
    assert!(
        site.join("mixlab/_mixlab.pyi").is_file() && site.join("mixlab/torch.py").is_file(),
        "the type stub and mixlab.torch are in the wheel"
    );
    let out = run(Command::new(&python)
        .arg("crates/python/tests/test_mixlab.py")
        .current_dir(&root)
        .env("PYTHONPATH", &site));
    assert!(out.contains("\nOK"), "{out}");
    // Only the torch tests may skip (an interpreter without torch); never a replay.
    assert!(!out.contains("is absent"), "a replay was skipped:\n{out}");
    eprintln!("{out}");
}
