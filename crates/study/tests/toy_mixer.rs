//! A new mixer reaches the comparison with one registration line and one method: a toy mixer
//! defined here (not in any mixlab crate) is registered beside the built-in ones, described as a
//! method file, planned, trained next to TPW at the smoke preset, and shown in the report.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use mixlab_mixing::{
    DomainSet, Mixer, MixerConfig, MixerContext, MixerEntry, MixerRegistry, MixingError, ParamDoc,
    StaticConfig, StepFeedback, check_distribution, check_step,
};
use mixlab_study::{
    ChildCommand, PlanKind, PlanRequest, RunSettings, build_plan, report, run_plan,
};
use serde::{Deserialize, Serialize};

/// `kind = "toy"`: sample each domain in proportion to its last mean loss, mixed with uniform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToyConfig {
    /// Share of the uniform distribution in the mixture.
    #[serde(default = "default_floor")]
    floor: f64,
}

fn default_floor() -> f64 {
    0.5
}

impl MixerConfig for ToyConfig {
    const KIND: &'static str = "toy";
    const SUMMARY: &'static str = "Weights in proportion to each domain's last mean loss";
    const PARAMS: &'static [ParamDoc] = &[ParamDoc {
        name: "floor",
        type_name: "float",
        default: "0.5",
        doc: "Share of the uniform distribution in the mixture.",
    }];

    fn build(&self, ctx: &MixerContext) -> mixlab_mixing::Result<Box<dyn Mixer>> {
        if !(0.0..=1.0).contains(&self.floor) {
            return Err(MixingError::config("toy", "`floor` must be in [0, 1]"));
        }
        let k = ctx.domains.len();
        Ok(Box::new(Toy {
            domains: ctx.domains.clone(),
            floor: self.floor,
            losses: vec![1.0; k],
            weights: vec![1.0 / k as f64; k],
            last_step: None,
        }))
    }
}

#[derive(Debug)]
struct Toy {
    domains: DomainSet,
    floor: f64,
    losses: Vec<f64>,
    weights: Vec<f64>,
    last_step: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct ToyState {
    losses: Vec<f64>,
    last_step: Option<u64>,
}

impl Toy {
    fn update_weights(&mut self) {
        let k = self.losses.len() as f64;
        let total: f64 = self.losses.iter().sum();
        self.weights = self
            .losses
            .iter()
            .map(|l| self.floor / k + (1.0 - self.floor) * l / total)
            .collect();
    }
}

impl Mixer for Toy {
    fn kind(&self) -> &'static str {
        ToyConfig::KIND
    }

    fn domains(&self) -> &DomainSet {
        &self.domains
    }

    fn weights(&self) -> &[f64] {
        &self.weights
    }

    fn observe(&mut self, step: u64, feedback: &StepFeedback) -> mixlab_mixing::Result<()> {
        check_step(self.last_step, step)?;
        feedback.validate(&self.domains)?;
        for (loss, f) in self.losses.iter_mut().zip(feedback.domains()) {
            if let Some(mean) = f.loss_mean() {
                *loss = mean;
            }
        }
        self.update_weights();
        check_distribution(&self.domains, &self.weights, "toy weights")?;
        self.last_step = Some(step);
        Ok(())
    }

    fn state(&self) -> mixlab_mixing::Result<serde_json::Value> {
        serde_json::to_value(ToyState {
            losses: self.losses.clone(),
            last_step: self.last_step,
        })
        .map_err(|e| MixingError::state("toy", e.to_string()))
    }

    fn restore_state(&mut self, state: &serde_json::Value) -> mixlab_mixing::Result<()> {
        let s: ToyState = serde_json::from_value(state.clone())
            .map_err(|e| MixingError::state("toy", e.to_string()))?;
        self.losses = s.losses;
        self.last_step = s.last_step;
        self.update_weights();
        Ok(())
    }
}

/// The smoke corpus, shared with the command line's reproduce tests (the same target
/// directory's scratch space; test binaries run one at a time).
fn data_root() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "reproduce-smoke-data-mc{}",
        mixlab_data::synthetic::MULTIPLE_CHOICE_VERSION
    ))
}

#[test]
fn a_toy_mixer_runs_through_the_comparison_and_joins_the_report() {
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("study-toy-mixer");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch).expect("remove old output");
    }
    std::fs::create_dir_all(&scratch).expect("mkdir");

    // The registry of a program that knows the toy mixer: the built-in ones and one line.
    let mut mixers = MixerRegistry::new();
    for entry in [
        MixerEntry::of::<StaticConfig>(),
        MixerEntry::of::<mixlab_mixer_odm::OdmConfig>(),
        MixerEntry::of::<mixlab_mixer_doremi::DoremiConfig>(),
        MixerEntry::of::<ToyConfig>(),
    ] {
        mixers.register(entry).expect("distinct kinds");
    }

    // The method: data, as a user writes it.
    let file = scratch.join("toy.toml");
    std::fs::write(
        &file,
        "id = \"toy\"\nlabel = \"Toy (loss-proportional)\"\nabout = \"a test's mixer\"\n\n[mixer]\nkind = \"toy\"\nfloor = 0.25\n",
    )
    .expect("write the method file");

    let mut request = PlanRequest::new(PlanKind::Reproduce);
    request.preset = "smoke".into();
    request.methods = vec!["tpw".into(), "toy".into()];
    request.method_files = vec![file];
    request.data_root = data_root();
    let plan = build_plan(&request, &mixers).expect("a plan");
    let ids: Vec<&str> = plan.methods.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["tpw", "toy"]);

    let out = scratch.join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let settings = RunSettings {
        jobs: 1,
        stop: Arc::new(AtomicBool::new(false)),
        mixers,
        // Not used with one job (a child would need a program that registers the toy mixer).
        child: ChildCommand {
            program: PathBuf::from("unused"),
            args: Vec::new(),
        },
    };
    mixlab_study::save_plan(&out, &plan).expect("plan saved");
    run_plan(&plan, &out, &settings).expect("the runs train");
    report::write_report(&out, None).expect("the report renders");

    // The toy mixer trained: its weights moved off uniform, toward the domains with more loss.
    let metrics =
        std::fs::read_to_string(out.join("runs/toy/seed-42/metrics.jsonl")).expect("metrics");
    let last: serde_json::Value = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON"))
        .rfind(|v| v["type"] == "train")
        .expect("a training line");
    assert_eq!(last["step"], 12);
    let weights: Vec<f64> = last["next_weights"]
        .as_object()
        .expect("weights")
        .values()
        .map(|w| w.as_f64().expect("a number"))
        .collect();
    let k = weights.len() as f64;
    assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    assert!(
        weights.iter().any(|w| (w - 1.0 / k).abs() > 1e-6),
        "{weights:?}"
    );

    let report = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(
        report.contains("Toy (loss-proportional)"),
        "the report lacks the toy method"
    );
    assert!(report.contains("TPW"));
}
