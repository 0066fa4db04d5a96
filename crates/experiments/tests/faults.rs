//! The fault campaign (`just faults`; ignored by default, a few minutes): a smoke-sized
//! training run meets the faults a long run meets, several times each, and one table says how
//! many it survived. Survived means the run finished with every step's losses, validation and
//! domain draws equal to an uninterrupted run (or, for a fault that must be refused, that it
//! was refused with the right message and nothing was changed); lost counts the tries where a
//! run could not be finished identically.
//!
//! ```text
//! cargo test --release -p experiments --test faults -- --ignored --nocapture   # FAULT_TRIES=N
//! ```
//!
//! Each fault also has a quick test that runs in CI: reproduce_smoke.rs (Ctrl-C, two writers,
//! kill -9) and crates/train/tests/train_loop.rs (a full disk, a flipped byte).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn experiments() -> Command {
    Command::new(env!("CARGO_BIN_EXE_experiments"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("faults")
        .join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("remove old output");
    }
    dir
}

/// What a run computed: each metrics line without its timings.
fn computed(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            serde_json::json!([
                v["type"],
                v["step"],
                v["loss"],
                v["domains_drawn"],
                v["domain_loss"],
                v["mean_perplexity"]
            ])
        })
        .collect()
}

fn has_checkpoint(run: &Path) -> bool {
    std::fs::read_dir(run.join("checkpoints")).is_ok_and(|steps| {
        steps
            .flatten()
            .any(|s| s.path().join("state.json").is_file())
    })
}

/// The newest complete checkpoint of `run`.
fn newest_checkpoint(run: &Path) -> Option<PathBuf> {
    let mut steps: Vec<(u64, PathBuf)> = std::fs::read_dir(run.join("checkpoints"))
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("step-")?.parse().ok()?;
            e.path()
                .join("state.json")
                .is_file()
                .then(|| (step, e.path()))
        })
        .collect();
    steps.sort();
    steps.pop().map(|(_, p)| p)
}

struct Campaign {
    config: PathBuf,
    reference: PathBuf,
}

impl Campaign {
    fn train(&self, dir: &Path, extra: &[&str]) -> Command {
        let mut cmd = experiments();
        cmd.arg("train")
            .arg("--config")
            .arg(&self.config)
            .arg("--out")
            .arg(dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    /// Resumes `dir` (or starts it again when it has no checkpoint) until it finishes.
    fn finish(&self, dir: &Path) -> Output {
        let extra: &[&str] = if has_checkpoint(dir) {
            &["--resume"]
        } else {
            if dir.exists() {
                std::fs::remove_dir_all(dir).expect("remove");
            }
            &[]
        };
        self.train(dir, extra).output().expect("spawn")
    }

    fn identical(&self, dir: &Path) -> bool {
        computed(dir) == computed(&self.reference)
    }
}

/// A run whose checkpoints every 6 steps give a fault something to resume from: the smoke
/// preset's TPW run (its config, written by `reproduce`) made 24 steps long.
fn campaign() -> Campaign {
    let root = scratch("setup");
    let out = root.join("reproduce");
    let status = experiments()
        .args([
            "reproduce",
            "--preset",
            "smoke",
            "--methods",
            "tpw",
            "--out",
        ])
        .arg(&out)
        .arg("--data-root")
        .arg(root.join("data"))
        .stdout(Stdio::null())
        .status()
        .expect("spawn");
    assert!(status.success());
    let text = std::fs::read_to_string(out.join("runs/tpw/seed-42/config.toml")).expect("config");
    assert!(text.contains("\nsteps = 12\n"), "{text}");
    let config = root.join("faults.toml");
    std::fs::write(&config, text.replace("\nsteps = 12\n", "\nsteps = 24\n")).expect("write");
    let campaign = Campaign {
        config,
        reference: root.join("uninterrupted"),
    };
    let output = campaign
        .train(&campaign.reference, &[])
        .output()
        .expect("spawn");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    campaign
}

/// One row of the table.
struct Row {
    fault: &'static str,
    tries: usize,
    survived: usize,
    lost: usize,
    note: String,
}

/// kill -9 at pseudo-random moments (a fixed sequence, so a failure can be replayed), then
/// resume until finished.
fn kill_nine(c: &Campaign, tries: usize) -> Row {
    let (mut survived, mut lost) = (0, 0);
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for t in 0..tries {
        let dir = scratch(&format!("kill-9-{t}"));
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let wait = Duration::from_millis(2_000 + (x >> 33) % 20_000);
        let mut child = c.train(&dir, &[]).spawn().expect("spawn");
        let started = Instant::now();
        while started.elapsed() < wait && child.try_wait().expect("wait").is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        let output = c.finish(&dir);
        if output.status.success() && c.identical(&dir) {
            survived += 1;
        } else {
            lost += 1;
            eprintln!(
                "kill -9 try {t} after {wait:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    Row {
        fault: "kill -9 at a random moment, then resume",
        tries,
        survived,
        lost,
        note: "killed 2-22 s into a 24-step run".into(),
    }
}

/// A second writer (`train --resume`) while the first trains: refused with the holder's PID,
/// and the first finishes as if alone.
fn two_writers(c: &Campaign, tries: usize) -> Row {
    let (mut survived, mut lost) = (0, 0);
    for t in 0..tries {
        let dir = scratch(&format!("two-writers-{t}"));
        let mut first = c.train(&dir, &[]).spawn().expect("spawn");
        while !has_checkpoint(&dir) && first.try_wait().expect("wait").is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let second = c.train(&dir, &["--resume"]).output().expect("spawn");
        let message = String::from_utf8_lossy(&second.stderr);
        let refused = !second.status.success() && message.contains(&format!("pid {}", first.id()));
        let finished = first.wait().expect("wait").success();
        if refused && finished && c.identical(&dir) {
            survived += 1;
        } else {
            lost += 1;
            eprintln!("two writers try {t}: refused {refused}, finished {finished}: {message}");
        }
    }
    Row {
        fault: "a second writer (train --resume) on a running run",
        tries,
        survived,
        lost,
        note: "refused with the holder's PID; the first run unchanged".into(),
    }
}

/// A full disk: the run's directory on a 32 MiB tmpfs holds one checkpoint (22 MB) but not a
/// second; after the space is grown, `--resume` finishes. Needs permission to mount.
fn full_disk(c: &Campaign) -> Row {
    let mount = scratch("full-disk");
    std::fs::create_dir_all(&mount).expect("mkdir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=32m", "tmpfs"])
        .arg(&mount)
        .output()
        .is_ok_and(|o| o.status.success());
    if !mounted {
        return Row {
            fault: "a full disk during a checkpoint",
            tries: 0,
            survived: 0,
            lost: 0,
            note: "skipped: this machine does not let the test mount a tmpfs (the injected-ENOSPC test in crates/train covers it)".into(),
        };
    }
    let dir = mount.join("run");
    let failed = c.train(&dir, &[]).output().expect("spawn");
    let message = String::from_utf8_lossy(&failed.stderr).into_owned();
    let named = !failed.status.success()
        && message.contains("no space left on device")
        && message.contains("the last complete checkpoint is step-");
    let grown = Command::new("mount")
        .args(["-o", "remount,size=256m"])
        .arg(&mount)
        .status()
        .is_ok_and(|s| s.success());
    let output = c.finish(&dir);
    let ok = named && grown && output.status.success() && c.identical(&dir);
    if !ok {
        eprintln!("full disk: named {named}, grown {grown}: {message}");
    }
    let _ = Command::new("umount").arg(&mount).status();
    Row {
        fault: "a full disk during a checkpoint (32 MiB tmpfs)",
        tries: 1,
        survived: usize::from(ok),
        lost: usize::from(!ok),
        note: "the error names the cause, the file and the checkpoint to resume from".into(),
    }
}

/// A flipped byte in the newest checkpoint's model file: `--resume` names the file, sets the
/// checkpoint aside as `damaged-step-N` and continues from the one before, to the same end.
/// The campaign's config keeps one checkpoint; this fault needs two (6 and 12), so it runs the
/// same config with `keep = 2` (which changes nothing the run computes).
fn flipped_byte(c: &Campaign) -> Row {
    let dir = scratch("flipped-byte");
    let text = std::fs::read_to_string(&c.config).expect("config");
    assert!(
        text.contains("\nkeep = 1\n"),
        "the campaign config keeps one checkpoint"
    );
    let keep_two = Campaign {
        config: c.config.with_file_name("faults-keep-2.toml"),
        reference: c.reference.clone(),
    };
    std::fs::write(
        &keep_two.config,
        text.replace("\nkeep = 1\n", "\nkeep = 2\n"),
    )
    .expect("write");
    let c = &keep_two;
    let output = c
        .train(&dir, &["--max-steps", "12"])
        .output()
        .expect("spawn");
    assert!(output.status.success());
    let newest = newest_checkpoint(&dir).expect("a checkpoint");
    let model = newest.join("model.mpk");
    let mut bytes = std::fs::read(&model).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&model, bytes).expect("write");
    let output = c.train(&dir, &["--resume"]).output().expect("spawn");
    let message = String::from_utf8_lossy(&output.stderr).into_owned();
    let named = message.contains("is corrupt")
        && message.contains(&model.display().to_string())
        && message.contains("set aside");
    let ok = named && output.status.success() && c.identical(&dir);
    if !ok {
        eprintln!("flipped byte: named {named}: {message}");
    }
    Row {
        fault: "a flipped byte in a checkpoint's model file",
        tries: 1,
        survived: usize::from(ok),
        lost: usize::from(!ok),
        note: "named and set aside; resumed from the checkpoint before".into(),
    }
}

#[test]
#[ignore = "the fault campaign takes minutes: just faults"]
fn fault_campaign() {
    let tries: usize = std::env::var("FAULT_TRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let c = campaign();
    let rows = [
        kill_nine(&c, tries),
        two_writers(&c, tries),
        full_disk(&c),
        flipped_byte(&c),
    ];
    println!("\n| fault | tries | survived | lost | note |\n|---|---:|---:|---:|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.fault, r.tries, r.survived, r.lost, r.note
        );
    }
    assert!(rows.iter().all(|r| r.lost == 0), "a fault was not survived");
}
