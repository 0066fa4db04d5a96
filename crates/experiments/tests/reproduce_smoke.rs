//! `reproduce --preset smoke` end to end: every method trains and is evaluated, the report has
//! every table and figure, its numbers are the ones in the run files, a rerun resumes instead of
//! retraining, and `ablate-exploration` writes its report.
//!
//! The synthetic corpus is generated and prepared once under the target directory's test scratch
//! space, so later test runs reuse it.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn experiments() -> Command {
    Command::new(env!("CARGO_BIN_EXE_experiments"))
}

/// Kept between test runs (generating and preparing take a while); named by the
/// multiple-choice version so that a corpus from an older mixlab in a reused target directory
/// is not mistaken for this one's.
fn data_root() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "reproduce-smoke-data-mc{}",
        mixlab_data::synthetic::MULTIPLE_CHOICE_VERSION
    ))
}

/// Both tests generate and prepare the same corpus on first use: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("remove old output");
    }
    dir
}

fn run(cmd: &mut Command) -> String {
    let output = cmd.output().expect("spawn experiments");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{cmd:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The metrics.jsonl validation lines of a run: (step, mean perplexity).
fn val_curve(run: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .expect("metrics")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON line"))
        .filter(|v| v["type"] == "eval" && v["split"] == "val")
        .map(|v| {
            (
                v["step"].as_u64().expect("step"),
                v["mean_perplexity"].as_f64().expect("ppl"),
            )
        })
        .collect()
}

const REPORTED: [(&str, &str); 9] = [
    ("tpw", "TPW"),
    ("doremi-256k", "DoReMi-256k"),
    ("doremi-50k", "DoReMi-50k"),
    ("odm-paper", "ODM"),
    ("odm-code", "ODM (code rule)"),
    ("ado", "ADO"),
    ("aioli", "Aioli"),
    ("uniform", "Uniform"),
    ("doremi", "DoReMi (mixlab)"),
];

#[test]
fn smoke_reproduction_report_matches_its_runs_and_resumes() {
    let _serial = serial();
    let out = fresh_dir("reproduce-smoke");
    let args = |cmd: &mut Command| {
        cmd.arg("reproduce")
            .arg("--preset")
            .arg("smoke")
            .arg("--out")
            .arg(&out)
            .arg("--data-root")
            .arg(data_root());
    };
    let mut first = experiments();
    args(&mut first);
    run(&mut first);

    let report = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    let numbers = read_json(&out.join("report.json"));
    for heading in [
        "## Figure 1: validation perplexity",
        "## Figure 3: test perplexity per domain",
        "## Figure 4: ODM sampling distribution",
        "## Figure 4: ODM (code rule) sampling distribution",
        "## Figure 4: ADO sampling distribution",
        "## Figure 4: Aioli sampling distribution",
        "## Table 1: 5-shot multiple choice",
        "## The paper's numbers beside this run's",
        "## The paper's claims at this scale",
        "## Wall time and mixer overhead",
        "## Seeds",
    ] {
        assert!(report.contains(heading), "report.md lacks {heading:?}");
    }
    // Aioli's validations are timed as its own cost, and only Aioli has the column's number.
    let aioli_timing = read_json(&out.join("runs/aioli/seed-42/timing.json"));
    assert!(
        aioli_timing["seconds"]["mixer-validation"]
            .as_f64()
            .expect("timed")
            > 0.0
    );
    let tpw_timing = read_json(&out.join("runs/tpw/seed-42/timing.json"));
    assert!(tpw_timing["seconds"].get("mixer-validation").is_none());
    assert!(report.contains("| of which mixer validations |"));
    for figure in [
        "fig1-val-perplexity.svg",
        "fig3-test-perplexity.svg",
        "fig4-odm-paper-cumulative.svg",
        "fig4-odm-paper-weights.svg",
        "fig4-odm-code-cumulative.svg",
        "fig4-odm-code-weights.svg",
        "fig4-ado-cumulative.svg",
        "fig4-ado-weights.svg",
        "fig4-aioli-cumulative.svg",
        "fig4-aioli-weights.svg",
    ] {
        let svg = std::fs::read_to_string(out.join(figure)).expect(figure);
        assert!(
            svg.starts_with("<svg") || svg.starts_with("<?xml"),
            "{figure}"
        );
        assert!(
            report.contains(&format!("({figure})")),
            "report.md does not show {figure}"
        );
    }
    assert!(
        out.join("runs/doremi-proxy/seed-42/mixer-output-weights.toml")
            .is_file(),
        "the DoReMi proxy wrote its averaged weights"
    );

    let methods = numbers["methods"].as_array().expect("methods");
    assert_eq!(methods.len(), REPORTED.len());
    // The paper's claims: each row has a verdict; with one seed, the first (ODM reaches TPW's
    // final validation perplexity) is a direction, read from the two final perplexities.
    let claims = numbers["claims"].as_array().expect("claims");
    assert_eq!(claims.len(), 5, "{claims:?}");
    let final_val = |id: &str| {
        methods.iter().find(|m| m["id"] == id).expect("method")["final_val_ppl"]["mean"]
            .as_f64()
            .expect("mean")
    };
    let expected = if final_val("odm-paper") < final_val("tpw") {
        "same_direction_one_seed"
    } else {
        "opposite_direction_one_seed"
    };
    assert_eq!(claims[0]["verdict"], expected, "{}", claims[0]);
    assert!(
        claims.iter().all(|c| c["verdict"] != "not_measured"),
        "{claims:?}"
    );
    for (id, label) in REPORTED {
        let run = out.join("runs").join(id).join("seed-42");
        let m = methods
            .iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("{id} missing from report.json"));
        // Figure 1: the final validation perplexity is the last eval line of metrics.jsonl.
        let curve = val_curve(&run);
        assert_eq!(curve.last().expect("val").0, 12, "{id}");
        let final_val = curve.last().expect("val").1;
        assert_eq!(m["final_val_ppl"]["mean"].as_f64(), Some(final_val), "{id}");
        assert!(
            report.contains(&format!("| {label} | {final_val:.3} |")),
            "{id}: final val ppl {final_val:.3} not in report.md"
        );
        // Figure 3: the average test perplexity is test-ppl.json's.
        let test = read_json(&run.join("test-ppl.json"));
        let avg = test["mean_perplexity"].as_f64().expect("mean");
        assert_eq!(m["test_avg_ppl"]["mean"].as_f64(), Some(avg), "{id}");
        assert!(report.contains(&format!("**{avg:.3}**")), "{id}: {avg:.3}");
        // Table 1: every protocol.
        for protocol in ["harness", "paper", "continuation"] {
            let mc = read_json(&run.join(format!("mc-{protocol}.json")));
            let acc = mc["overall"]["acc"].as_f64().expect("acc");
            assert_eq!(m["mc"][protocol]["acc"]["mean"].as_f64(), Some(acc));
            // The chance test pools the same counts (one seed: the run's own).
            for field in ["correct", "questions"] {
                assert_eq!(
                    m["mc"][protocol]["pooled"][field], mc["overall"][field],
                    "{id} {protocol} {field}"
                );
            }
            assert!(
                report.contains(&format!("{:.2}%", 100.0 * acc)),
                "{id} {protocol}"
            );
        }
        // Wall time was recorded for training and every evaluation.
        let timing = read_json(&run.join("timing.json"));
        for phase in ["train", "test", "mc-harness", "mc-paper", "mc-continuation"] {
            assert!(
                timing["seconds"][phase].as_f64().expect(phase) > 0.0,
                "{id} {phase}"
            );
        }
    }
    // Fewer iterations, recomputed from the two curves.
    let tpw_final = val_curve(&out.join("runs/tpw/seed-42"))
        .last()
        .expect("val")
        .1;
    let odm = val_curve(&out.join("runs/odm-paper/seed-42"));
    let expected = odm.iter().find(|(_, v)| *v <= tpw_final).map(|(s, _)| *s);
    let row = numbers["fewer_iterations"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|f| f["odm"] == "odm-paper" && f["baseline"] == "tpw")
        .expect("ODM vs TPW");
    assert_eq!(row["step"].as_u64(), expected);
    assert_eq!(row["target"].as_f64(), Some(tpw_final));

    // A rerun resumes: nothing retrains, and an interrupted run continues from its checkpoint.
    let uniform = out.join("runs/uniform/seed-42");
    let metrics_before = std::fs::read_to_string(uniform.join("metrics.jsonl")).expect("metrics");
    for f in ["summary.json", "test-ppl.json", "mc-harness.json"] {
        std::fs::remove_file(uniform.join(f)).expect(f);
    }
    std::fs::remove_dir_all(uniform.join("final")).expect("final");
    let tpw_metrics = std::fs::metadata(out.join("runs/tpw/seed-42/metrics.jsonl"))
        .and_then(|m| m.modified())
        .expect("mtime");
    let mut again = experiments();
    args(&mut again);
    run(&mut again);
    assert_eq!(
        std::fs::read_to_string(uniform.join("metrics.jsonl")).expect("metrics"),
        metrics_before,
        "the resumed run's metrics equal the uninterrupted ones"
    );
    assert!(uniform.join("summary.json").is_file() && uniform.join("mc-harness.json").is_file());
    assert_eq!(
        std::fs::metadata(out.join("runs/tpw/seed-42/metrics.jsonl"))
            .and_then(|m| m.modified())
            .expect("mtime"),
        tpw_metrics,
        "a finished run is not retrained"
    );
    // The resumed run's final model scores exactly as before (resume is bit-exact on CPU).
    let renumbered = read_json(&out.join("report.json"));
    for (before, after) in methods
        .iter()
        .zip(renumbered["methods"].as_array().expect("methods"))
    {
        for field in ["final_val_ppl", "test_avg_ppl", "mc"] {
            assert_eq!(before[field], after[field], "{} {field}", before["id"]);
        }
    }

    // The last checkpoint holds the final weights: eval-mc scores it exactly as the final model.
    let tpw = out.join("runs/tpw/seed-42");
    let step = tpw.join("checkpoints/step-12");
    let plan = read_json(&out.join("plan.json"));
    let mc_data = PathBuf::from(plan["mc"]["data"].as_str().expect("mc data"));
    let scored = out.join("tpw-step-12-mc");
    run(experiments()
        .args([
            "eval-mc",
            "--protocol",
            "continuation",
            "--limit",
            "4",
            "--model-dir",
        ])
        .arg(&step)
        .arg("--data")
        .arg(&mc_data)
        .arg("--out-dir")
        .arg(&scored));
    let from_checkpoint = read_json(&scored.join("mmlu-continuation.json"));
    let from_final = read_json(&tpw.join("mc-continuation.json"));
    assert_eq!(from_checkpoint["overall"], from_final["overall"]);
    let refused = experiments()
        .args(["eval-mc", "--model-dir"])
        .arg(&step)
        .arg("--data")
        .arg(&mc_data)
        .output()
        .expect("spawn");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("pass --out-dir"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // `report DIR` re-renders from the files alone.
    std::fs::remove_file(out.join("report.md")).expect("remove");
    run(experiments().arg("report").arg(&out));
    assert!(out.join("report.md").is_file());

    // Another plan in the same directory is refused, naming what differs.
    let output = experiments()
        .args(["reproduce", "--preset", "smoke", "--steps", "13", "--out"])
        .arg(&out)
        .arg("--data-root")
        .arg(data_root())
        .output()
        .expect("spawn");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("different plan") && stderr.contains("preset"),
        "{stderr}"
    );

    users_reproduction_leaves_results_alone(&out);
}

/// Every file under `dir` with its bytes, by path relative to `dir`.
fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read");
                files.insert(path.strip_prefix(dir).expect("under").to_path_buf(), bytes);
            }
        }
    }
    files
}

/// A newcomer's `reproduce` in a repository layout whose `results/smoke` is a committed
/// reference (the top-level files of the reproduction in `reference`): it trains under
/// `runs/reproduce-smoke`, changes nothing under `results/`, and its report puts its numbers
/// beside the reference's, identical on this CPU and commit. Then a run that is not finished
/// leaves the report partial instead of refusing it.
fn users_reproduction_leaves_results_alone(reference: &Path) {
    let repo = fresh_dir("reproduce-newcomer");
    let committed = repo.join("results/smoke");
    std::fs::create_dir_all(&committed).expect("mkdir");
    for entry in std::fs::read_dir(reference).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            std::fs::copy(&path, committed.join(path.file_name().expect("name"))).expect("copy");
        }
    }
    let before = snapshot(&repo.join("results"));
    let output = experiments()
        .current_dir(&repo)
        .args(["reproduce", "--preset", "smoke", "--methods", "tpw,uniform"])
        .arg("--data-root")
        .arg(data_root())
        .output()
        .expect("spawn");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("results directory: runs/reproduce-smoke"),
        "{stderr}"
    );
    assert_eq!(snapshot(&repo.join("results")), before, "results/ changed");
    let mine = repo.join("runs/reproduce-smoke");
    let report = std::fs::read_to_string(mine.join("report.md")).expect("report.md");
    assert!(
        report.contains("## Beside the committed reference (`results/smoke`)"),
        "{report}"
    );
    assert!(
        report.contains("2 of 2 method(s) identical to the reference."),
        "{report}"
    );
    let numbers = read_json(&mine.join("report.json"));
    let rows = numbers["reference"]["rows"].as_array().expect("rows");
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["tpw", "uniform"]);
    for row in rows {
        assert_eq!(row["agreement"], "identical", "{row}");
        assert_eq!(row["this"], row["reference"], "{row}");
    }

    // `uniform` without its test perplexity: the report shows TPW and lists uniform.
    std::fs::remove_file(mine.join("runs/uniform/seed-42/test-ppl.json")).expect("remove");
    let output = experiments()
        .current_dir(&repo)
        .arg("report")
        .arg("runs/reproduce-smoke")
        .output()
        .expect("spawn");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = std::fs::read_to_string(mine.join("report.md")).expect("report.md");
    assert!(
        report.contains("**Partial results.**")
            && report.contains("uniform seed 42 (trained, evaluations missing)"),
        "{report}"
    );
    let numbers = read_json(&mine.join("report.json"));
    let shown: Vec<&str> = numbers["methods"]
        .as_array()
        .expect("methods")
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(shown, ["tpw"]);
    assert_eq!(numbers["left_out"], serde_json::json!(["uniform"]));
    assert_eq!(snapshot(&repo.join("results")), before, "results/ changed");
}

#[test]
fn smoke_ablation_writes_its_report() {
    let _serial = serial();
    let out = fresh_dir("ablate-smoke");
    run(experiments()
        .args([
            "ablate-exploration",
            "--preset",
            "smoke",
            "--methods",
            "default,eps-inv-k",
            "--out",
        ])
        .arg(&out)
        .arg("--data-root")
        .arg(data_root()));
    let report = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    for needle in [
        "paper: decaying eps, alpha 0.9, micro-batch",
        "eps = 1/K",
        "steps to the default's final",
        "(ablation-val-perplexity.svg)",
        "(ablation-weight-entropy.svg)",
    ] {
        assert!(report.contains(needle), "report.md lacks {needle:?}");
    }
    assert!(!report.contains("eps = 0"), "eps-0 was not asked for yet");
    // ε = 1/K is all exploration: the policy is uniform, so its entropy is ln K at every step.
    let k = read_json(&out.join("report.json"))["domains"]
        .as_array()
        .expect("domains")
        .len() as f64;
    let metrics =
        std::fs::read_to_string(out.join("runs/eps-inv-k/seed-42/metrics.jsonl")).expect("metrics");
    let last: Value = metrics
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
        .rfind(|v| v["type"] == "train")
        .expect("train line");
    let weights: Vec<f64> = last["next_weights"]
        .as_object()
        .expect("weights")
        .values()
        .map(|w| w.as_f64().expect("number"))
        .collect();
    assert!(
        weights.iter().all(|w| (w - 1.0 / k).abs() < 1e-12),
        "{weights:?}"
    );

    // The comparison grows by a method: the finished runs are kept as they are, the new one runs
    // and joins the report.
    let default_metrics = out.join("runs/default/seed-42/metrics.jsonl");
    let before = std::fs::read(&default_metrics).expect("metrics");
    let output = experiments()
        .args([
            "ablate-exploration",
            "--preset",
            "smoke",
            "--methods",
            "default,eps-inv-k,eps-0",
            "--out",
        ])
        .arg(&out)
        .arg("--data-root")
        .arg(data_root())
        .output()
        .expect("spawn");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("adding eps-0"), "{stderr}");
    assert_eq!(
        before,
        std::fs::read(&default_metrics).expect("metrics"),
        "a finished run was retrained"
    );
    let plan = read_json(&out.join("plan.json"));
    assert_eq!(plan["methods"].as_array().expect("methods").len(), 3);
    let report = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(
        report.contains("eps = 0"),
        "report.md lacks the added method"
    );
}

/// What a run computed, without its timings: each training step's loss and domains, and each
/// validation's perplexity.
fn computed(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .expect("metrics")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON line"))
        .map(|v| {
            serde_json::json!([
                v["step"],
                v["loss"],
                v["domains_drawn"],
                v["domain_loss"],
                v["mean_perplexity"]
            ])
        })
        .collect()
}

#[test]
fn parallel_runs_compute_what_sequential_runs_do() {
    let _serial = serial();
    // The DoReMi chain (reference, proxy, final run) must wait for each other; uniform runs
    // beside them.
    let methods = "uniform,doremi";
    let mut outs = Vec::new();
    for jobs in [1, 3] {
        let out = fresh_dir(&format!("reproduce-smoke-jobs{jobs}"));
        run(experiments()
            .args(["reproduce", "--preset", "smoke", "--methods", methods])
            .args(["--jobs", &jobs.to_string(), "--out"])
            .arg(&out)
            .arg("--data-root")
            .arg(data_root()));
        outs.push(out);
    }
    for id in ["tpw", "doremi-proxy", "doremi", "uniform"] {
        let runs: Vec<PathBuf> = outs
            .iter()
            .map(|o| o.join("runs").join(id).join("seed-42"))
            .collect();
        let sequential = computed(&runs[0]);
        assert!(
            sequential.len() >= 12,
            "{id}: {} metrics lines",
            sequential.len()
        );
        assert_eq!(
            sequential,
            computed(&runs[1]),
            "{id}: losses differ with --jobs 3"
        );
    }
    let reports: Vec<Value> = outs
        .iter()
        .map(|o| read_json(&o.join("report.json")))
        .collect();
    let methods: Vec<&Vec<Value>> = reports
        .iter()
        .map(|r| r["methods"].as_array().expect("methods"))
        .collect();
    assert_eq!(
        methods[0].len(),
        3,
        "uniform, TPW (the reference) and DoReMi are reported"
    );
    for (a, b) in methods[0].iter().zip(methods[1]) {
        for field in ["id", "final_val_ppl", "test_avg_ppl", "mc"] {
            assert_eq!(a[field], b[field], "{} {field}", a["id"]);
        }
    }

    let nowhere = fresh_dir("reproduce-smoke-jobs0");
    let refused = experiments()
        .args(["reproduce", "--preset", "smoke", "--jobs", "0", "--out"])
        .arg(&nowhere)
        .arg("--data-root")
        .arg(&nowhere)
        .output()
        .expect("spawn");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--jobs must be at least 1"));
    assert!(!nowhere.exists(), "a refused command writes nothing");

    ctrl_c_stops_and_the_same_command_resumes("uniform,doremi", &outs[0]);
}

/// Whether any run under `out` has a complete checkpoint.
fn has_checkpoint(out: &Path) -> bool {
    let Ok(methods) = std::fs::read_dir(out.join("runs")) else {
        return false;
    };
    methods.flatten().any(|m| {
        std::fs::read_dir(m.path().join("seed-42/checkpoints")).is_ok_and(|steps| {
            steps
                .flatten()
                .any(|s| s.path().join("state.json").is_file())
        })
    })
}

/// SIGINT to a running `reproduce --jobs 2` (the parent passes it on to its children) after a
/// run's first checkpoint: exit status 130, a message naming where each run stopped and the
/// command that resumes, no error; the same command then finishes, and every run equals the
/// uninterrupted one in `uninterrupted`.
fn ctrl_c_stops_and_the_same_command_resumes(methods: &str, uninterrupted: &Path) {
    let out = fresh_dir("reproduce-smoke-sigint");
    let command = || {
        let mut cmd = experiments();
        cmd.args(["reproduce", "--preset", "smoke", "--methods", methods])
            .args(["--jobs", "2", "--out"])
            .arg(&out)
            .arg("--data-root")
            .arg(data_root());
        cmd
    };
    let child = command()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while !has_checkpoint(&out) {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint after 10 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("stopped; the runs under way continue from their last checkpoint:")
            && stderr.contains(" (seed 42): step ")
            && stderr.contains("resume with:\n  ")
            && stderr.contains("reproduce --preset smoke --methods uniform,doremi --jobs 2"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("Error") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    run(&mut command());
    for id in ["tpw", "doremi-proxy", "doremi", "uniform"] {
        let run = |o: &Path| o.join("runs").join(id).join("seed-42");
        assert_eq!(
            computed(&run(uninterrupted)),
            computed(&run(&out)),
            "{id}: a run stopped by Ctrl-C and resumed differs"
        );
    }
}

/// Waits (up to ten minutes) until `run` has a complete checkpoint.
fn wait_for_checkpoint(run: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    let done = || {
        std::fs::read_dir(run.join("checkpoints")).is_ok_and(|steps| {
            steps
                .flatten()
                .any(|s| s.path().join("state.json").is_file())
        })
    };
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{}: no checkpoint after 10 minutes",
            run.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The train steps of a run's metrics.jsonl, in file order.
fn train_steps(run: &Path) -> Vec<u64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .expect("metrics")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON line"))
        .filter(|v| v["type"] == "train")
        .map(|v| v["step"].as_u64().expect("step"))
        .collect()
}

/// A second writer of a results directory or a run directory is refused at once, naming the
/// holder's PID, and changes nothing; the lock dies with its holder (kill -9), after which the
/// same `train --resume` continues exactly as an uninterrupted run.
#[test]
fn one_writer_per_directory() {
    let _serial = serial();
    let out = fresh_dir("reproduce-smoke-two-writers");
    let reproduce = || {
        let mut cmd = experiments();
        cmd.args(["reproduce", "--preset", "smoke", "--methods", "tpw"])
            .args(["--jobs", "1", "--out"])
            .arg(&out)
            .arg("--data-root")
            .arg(data_root())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        cmd
    };
    let mut first = reproduce().spawn().expect("spawn");
    let run_dir = out.join("runs/tpw/seed-42");
    wait_for_checkpoint(&run_dir);
    let second = reproduce().output().expect("spawn");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    assert!(
        stderr.contains("is being written by another process")
            && stderr.contains(&format!("pid {}", first.id())),
        "{stderr}"
    );
    assert!(first.wait().expect("wait").success());
    assert_eq!(train_steps(&run_dir), (1..=12).collect::<Vec<u64>>());

    // `train` on a run directory: the same smoke run, made longer so that it is still training
    // when the second writer comes.
    let scratch = fresh_dir("train-two-writers");
    std::fs::create_dir_all(&scratch).expect("mkdir");
    let config = scratch.join("long.toml");
    let text = std::fs::read_to_string(run_dir.join("config.toml")).expect("config");
    assert!(text.contains("\nsteps = 12\n"), "{text}");
    std::fs::write(&config, text.replace("\nsteps = 12\n", "\nsteps = 400\n")).expect("write");
    let train = |dir: &Path, extra: &[&str]| {
        let mut cmd = experiments();
        cmd.arg("train")
            .arg("--config")
            .arg(&config)
            .arg("--out")
            .arg(dir)
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        cmd
    };
    let killed = scratch.join("killed");
    let mut holder = train(&killed, &[]).spawn().expect("spawn");
    wait_for_checkpoint(&killed);
    let refused = train(&killed, &["--resume"]).output().expect("spawn");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", holder.id())), "{stderr}");
    holder.kill().expect("kill -9");
    holder.wait().expect("wait");
    // Killed a few steps after its first checkpoint (step 6), well before step 18.
    let resumed = train(&killed, &["--resume", "--max-steps", "18"])
        .output()
        .expect("spawn");
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let whole = scratch.join("whole");
    let uninterrupted = train(&whole, &["--max-steps", "18"])
        .output()
        .expect("spawn");
    assert!(uninterrupted.status.success());
    assert_eq!(train_steps(&killed), (1..=18).collect::<Vec<u64>>());
    assert_eq!(computed(&killed), computed(&whole), "resume after kill -9");
}
