//! A method of the user's own, as data (`reproduce --method-file`), runs next to the built-in
//! ones, trains exactly as the built-in method it copies, and joins the report.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn experiments() -> Command {
    Command::new(env!("CARGO_BIN_EXE_experiments"))
}

/// The smoke corpus, shared with the other reproduce tests (test binaries run one at a time).
fn data_root() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "reproduce-smoke-data-mc{}",
        mixlab_data::synthetic::MULTIPLE_CHOICE_VERSION
    ))
}

/// Every training line of a run's metrics without its timings: loss, domains drawn, weights.
fn training(run: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).expect("metrics.jsonl");
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
        .filter(|v| v["type"] == "train")
        .map(|mut v| {
            let line = v.as_object_mut().expect("object");
            line.remove("timing");
            v
        })
        .collect()
}

#[test]
fn a_method_file_runs_beside_the_built_in_methods_and_joins_the_report() {
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("method-file");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch).expect("remove old output");
    }
    std::fs::create_dir_all(&scratch).expect("mkdir");
    // ODM's paper rule as the smoke preset's `odm-paper` runs it (12 steps: a 1-step warm-up),
    // written as a user would.
    let file = scratch.join("my-odm.toml");
    std::fs::write(
        &file,
        r#"id = "my-odm"
label = "My ODM"
about = "ODM's paper rule, written as a method file"

[mixer]
kind = "odm"
rule = "paper"
warmup_steps = 1

[dataset_weights]
initial_weights = "tpw"
"#,
    )
    .expect("write the method file");
    let out = scratch.join("out");
    let output = experiments()
        .args([
            "reproduce",
            "--preset",
            "smoke",
            "--methods",
            "odm-paper,my-odm",
        ])
        .arg("--method-file")
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .arg("--data-root")
        .arg(data_root())
        .arg("--jobs")
        .arg("1")
        .output()
        .expect("spawn experiments");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");

    // Same settings, same seed: the same run, step for step.
    let built_in = training(&out.join("runs/odm-paper/seed-42"));
    let ours = training(&out.join("runs/my-odm/seed-42"));
    assert_eq!(built_in.len(), 12);
    assert_eq!(ours, built_in);

    // The report shows it as a method, with ODM's figures.
    let report = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(
        report.contains("My ODM"),
        "report.md lacks the method file's label"
    );
    assert!(out.join("fig4-my-odm-cumulative.svg").is_file());
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("plan.json")).expect("plan"))
            .expect("JSON");
    let ids: Vec<&str> = plan["methods"]
        .as_array()
        .expect("methods")
        .iter()
        .map(|m| m["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["odm-paper", "my-odm"]);

    // Resuming without the file is another plan, and the error says which field differs.
    let output = experiments()
        .args(["reproduce", "--preset", "smoke", "--methods", "odm-paper"])
        .arg("--out")
        .arg(&out)
        .arg("--data-root")
        .arg(data_root())
        .output()
        .expect("spawn experiments");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("methods"), "{stderr}");

    // A method file with a mistake is refused before anything runs, naming file and key.
    std::fs::write(
        &file,
        "id = \"bad\"\nlabel = \"Bad\"\nabout = \"x\"\n[mixer]\nkind = \"odm\"\nrule = \"papr\"\n",
    )
    .expect("write");
    let output = experiments()
        .args(["reproduce", "--preset", "smoke", "--methods", "bad"])
        .arg("--method-file")
        .arg(&file)
        .arg("--out")
        .arg(scratch.join("bad-out"))
        .arg("--data-root")
        .arg(data_root())
        .output()
        .expect("spawn experiments");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("my-odm.toml") && stderr.contains("papr"),
        "{stderr}"
    );
    assert!(
        !scratch.join("bad-out").exists(),
        "a refused plan wrote its directory"
    );
}
