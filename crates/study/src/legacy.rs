//! The form methods were saved in before they were data (plans written up to commit c3027fb,
//! the committed results among them): `"kind": {"kind": "static" | "odm" | "doremi-proxy",
//! ...}`. Read only, and converted into exactly the [`Method`] today's catalogue builds for the
//! same settings, so a saved plan resumes and compares equal to a new one.

use mixlab_mixer_odm::OdmRule;
use mixlab_train::Granularity;
use serde::Deserialize;

use crate::method::{Method, OdmSettings, PlanWeights, doremi_proxy};

/// A method as saved before methods were data.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyMethod {
    id: String,
    label: String,
    about: String,
    reported: bool,
    paper_row: Option<String>,
    kind: LegacyKind,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
enum LegacyKind {
    Static {
        weights: LegacyWeights,
    },
    Odm {
        rule: OdmRule,
        warmup_steps: u64,
        alpha: Option<f64>,
        exploration: Option<f64>,
        granularity: Granularity,
        warmup_granularity: Option<Granularity>,
    },
    DoremiProxy {
        reference: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum LegacyWeights {
    Tpw,
    Uniform,
    Table(String),
    ProxyOutput(String),
}

impl LegacyMethod {
    /// The same method in today's form.
    pub fn into_method(self) -> Method {
        let paper_row = self.paper_row.as_deref();
        let mut method = match self.kind {
            LegacyKind::Static { weights } => {
                let weights = match weights {
                    LegacyWeights::Tpw => PlanWeights::Tpw,
                    LegacyWeights::Uniform => PlanWeights::Uniform,
                    LegacyWeights::Table(name) => PlanWeights::Table(name),
                    LegacyWeights::ProxyOutput(id) => PlanWeights::OutputOf(id),
                };
                Method::fixed(&self.id, &self.label, &self.about, paper_row, weights)
            }
            LegacyKind::Odm {
                rule,
                warmup_steps,
                alpha,
                exploration,
                granularity,
                warmup_granularity,
            } => OdmSettings {
                rule,
                warmup_steps,
                alpha,
                exploration,
                granularity,
                warmup_granularity,
            }
            .method(&self.id, &self.label, &self.about, paper_row),
            LegacyKind::DoremiProxy { reference } => {
                doremi_proxy(&self.id, &self.label, &self.about, &reference)
            }
        };
        method.reported = self.reported;
        method
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::method::{ablation_methods, reproduce_methods};
    use crate::plan::{Plan, PlanKind};
    use crate::preset::preset;

    /// Every committed results directory with a plan, and its plan.
    fn committed_plans() -> Vec<(PathBuf, Plan)> {
        let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results");
        let mut plans = Vec::new();
        for entry in std::fs::read_dir(results).expect("results/ is in the repository") {
            let dir = entry.expect("entry").path();
            if dir.join("plan.json").is_file() {
                let plan = Plan::load(&dir).expect("a committed plan loads");
                plans.push((dir, plan));
            }
        }
        plans
    }

    /// Every committed plan (saved in the old form) reads back as the methods today's catalogue
    /// builds for its preset, so the committed references compare equal to a new run's plan.
    #[test]
    fn committed_plans_convert_to_todays_methods() {
        let mut checked = 0;
        for (dir, plan) in committed_plans() {
            let p = preset(&plan.preset.name).expect("a known preset");
            let p = if plan.preset.steps == p.steps {
                p
            } else {
                p.with_steps(plan.preset.steps).expect("valid steps")
            };
            let all = match plan.kind {
                PlanKind::Reproduce => reproduce_methods(&p, plan.dataset.domains.len()),
                PlanKind::AblateExploration => ablation_methods(&p, plan.dataset.domains.len()),
            };
            for m in &plan.methods {
                let built = all
                    .iter()
                    .find(|b| b.id == m.id)
                    .expect("a catalogue method");
                assert_eq!(m.mixer, built.mixer, "{}: {}", dir.display(), m.id);
                assert_eq!(m.dataset_weights, built.dataset_weights, "{}", m.id);
                assert_eq!(m.training, built.training, "{}", m.id);
                assert_eq!(m.reference_model, built.reference_model, "{}", m.id);
                assert_eq!(m.reported, built.reported, "{}", m.id);
                checked += 1;
            }
        }
        assert!(checked >= 20, "only {checked} committed methods found");
    }

    /// Every committed run's `config.toml` states the mixer and training it ran with; the plan
    /// as data gives every one of them the same config today.
    #[test]
    fn committed_runs_get_the_same_configs() {
        let mut checked = 0;
        for (dir, plan) in committed_plans() {
            for m in &plan.methods {
                for &seed in &plan.seeds {
                    let run = Plan::run_dir(&dir, &m.id, seed).join("config.toml");
                    let Ok(text) = std::fs::read_to_string(&run) else {
                        continue;
                    };
                    let body: String = text
                        .lines()
                        .filter(|l| !l.starts_with('#'))
                        .collect::<Vec<_>>()
                        .join("\n");
                    let committed: toml::Table = toml::from_str(&body).expect("a config");
                    // Paths are as the command that made the run named them (its `--out`).
                    let out_dir = committed["out_dir"].as_str().expect("out_dir");
                    let out = Path::new(out_dir)
                        .ancestors()
                        .nth(3)
                        .expect("<out>/runs/<id>/seed-<s>");
                    let ours = plan.train_config(out, m, seed).expect("a config");
                    let committed_mixer = committed["mixer"].as_table().expect("[mixer]");
                    if m.id == "doremi-proxy" {
                        // The serialised typed config states every field: the proxy's table
                        // gained `renormalize = false` (and, since some committed runs, `average
                        // = "code"`), each the default, so the resolved configs are the same.
                        let registry = crate::testing::mixers();
                        let resolve = |t: &toml::Table| registry.resolve(t).expect("resolves");
                        assert_eq!(
                            resolve(&ours.mixer),
                            resolve(committed_mixer),
                            "{}",
                            run.display()
                        );
                    } else {
                        assert_eq!(&ours.mixer, committed_mixer, "{}", run.display());
                    }
                    let training = toml::Table::try_from(&ours.training).expect("toml");
                    for key in ["granularity", "warmup_granularity", "warmup_steps"] {
                        assert_eq!(
                            training.get(key),
                            committed["training"].get(key),
                            "{}: {key}",
                            run.display()
                        );
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked >= 20, "only {checked} committed runs found");
    }
}
