//! What the tests share.

use mixlab_data::synthetic::DomainKind;
use mixlab_mixing::MixerRegistry;

use crate::method::{ablation_methods, reproduce_methods};
use crate::plan::{DatasetInfo, Plan, PlanKind};
use crate::preset::preset;

/// The mixers the paper's methods use: the built-in registry the command line uses too.
pub fn mixers() -> MixerRegistry {
    mixlab_mixers::registry()
}

/// The plan of `kind` at preset `preset_name` on the built-in synthetic corpus's 11 domains,
/// seed 42, as `reproduce` or `ablate-exploration` builds it (no data behind it).
pub fn synthetic_plan(kind: PlanKind, preset_name: &str) -> Plan {
    let preset = preset(preset_name).expect("known");
    let domains: Vec<String> = DomainKind::ALL
        .iter()
        .map(|d| d.name().to_string())
        .collect();
    let methods = match kind {
        PlanKind::Reproduce => reproduce_methods(&preset, domains.len()),
        PlanKind::AblateExploration => ablation_methods(&preset, domains.len()),
    };
    Plan {
        kind,
        preset,
        dataset: DatasetInfo {
            path: "data/x".into(),
            prepare: None,
            kind: "synthetic".into(),
            domains,
            note: String::new(),
        },
        mc: None,
        seeds: vec![42],
        methods,
    }
}
