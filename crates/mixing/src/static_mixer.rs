//! The static mixer: a fixed distribution (uniform, a named or file table, temperature-scaled
//! token counts). The paper's TPW, DoReMi-256k and DoReMi-50k baselines are static mixers.

use serde::{Deserialize, Serialize};

use crate::mixer::{check_distribution, check_step};
use crate::{
    DomainSet, Mixer, MixerConfig, MixerContext, MixingError, ParamDoc, Result, StepFeedback,
    WeightSpec,
};

/// Config of `kind = "static"`.
///
/// ```toml
/// kind = "static"
/// weights = "tpw"        # or "uniform", { file = "w.toml" }, { temperature = 2.0 }, { inline = {...} }
/// renormalize = false
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    /// The fixed sampling weights (see [`WeightSpec`] for the forms).
    pub weights: WeightSpec,
    /// Drop table domains the dataset lacks and renormalise over the rest (logged); if false
    /// such a table is an error.
    #[serde(default)]
    pub renormalize: bool,
}

impl MixerConfig for StaticConfig {
    const KIND: &'static str = "static";
    const SUMMARY: &'static str = "Fixed sampling weights: uniform, a paper table, a table file, or temperature-scaled token counts";
    const PARAMS: &'static [ParamDoc] = &[
        ParamDoc {
            name: "weights",
            type_name: "\"uniform\" | table name | { file } | { temperature } | { inline }",
            default: "required",
            doc: "The distribution. Tables: tpw, doremi-256k, doremi-50k, doremi-1b, odm-final, odm-mean, \
                  doremi-baseline-256k; { temperature = T } gives p_i ∝ tokens_i^(1/T).",
        },
        ParamDoc {
            name: "renormalize",
            type_name: "bool",
            default: "false",
            doc: "Drop table domains the dataset lacks (e.g. the mini-pile's 14 of 22) and renormalise, with a log line.",
        },
    ];

    fn build(&self, ctx: &MixerContext) -> Result<Box<dyn Mixer>> {
        let weights = self.weights.resolve(ctx, self.renormalize)?;
        Ok(Box::new(StaticMixer::new(ctx.domains.clone(), weights)?))
    }
}

/// A mixer whose sampling distribution never changes.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticMixer {
    domains: DomainSet,
    weights: Vec<f64>,
    last_step: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StaticState {
    kind: String,
    domains: DomainSet,
    #[serde(with = "crate::exact_float::vec")]
    weights: Vec<f64>,
    last_step: Option<u64>,
}

impl StaticMixer {
    /// A static mixer over `domains` with the probability vector `weights` (domain order).
    pub fn new(domains: DomainSet, weights: Vec<f64>) -> Result<Self> {
        check_distribution(&domains, &weights, "static mixer weights")?;
        Ok(Self {
            domains,
            weights,
            last_step: None,
        })
    }
}

impl Mixer for StaticMixer {
    fn kind(&self) -> &'static str {
        StaticConfig::KIND
    }

    fn domains(&self) -> &DomainSet {
        &self.domains
    }

    fn weights(&self) -> &[f64] {
        &self.weights
    }

    fn observe(&mut self, step: u64, feedback: &StepFeedback) -> Result<()> {
        // Nothing is learned, but bad feedback is still a bug worth surfacing early.
        check_step(self.last_step, step)?;
        feedback.validate(&self.domains)?;
        self.last_step = Some(step);
        Ok(())
    }

    fn state(&self) -> Result<serde_json::Value> {
        serde_json::to_value(StaticState {
            kind: self.kind().to_owned(),
            domains: self.domains.clone(),
            weights: self.weights.clone(),
            last_step: self.last_step,
        })
        .map_err(|e| MixingError::state(self.kind(), e.to_string()))
    }

    fn restore_state(&mut self, state: &serde_json::Value) -> Result<()> {
        let s: StaticState = serde_json::from_value(state.clone())
            .map_err(|e| MixingError::state(self.kind(), e.to_string()))?;
        if s.kind != self.kind() || s.domains != self.domains || s.weights != self.weights {
            return Err(MixingError::state(
                self.kind(),
                "the checkpoint was written with other domains or weights than this config gives",
            ));
        }
        self.last_step = s.last_step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NamedTable, parse_config};

    #[test]
    fn every_param_is_documented_and_accepted() {
        let config = StaticConfig {
            weights: WeightSpec::Uniform,
            renormalize: false,
        };
        let table = toml::Table::try_from(&config).expect("serialises");
        let keys: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut documented: Vec<&str> = StaticConfig::PARAMS.iter().map(|p| p.name).collect();
        documented.sort_unstable();
        assert_eq!(keys, documented);
        assert_eq!(
            parse_config::<StaticConfig>(&table).expect("parses back"),
            config
        );
    }

    #[test]
    fn named_table_is_normalised_and_fixed() {
        let ctx = MixerContext::new(DomainSet::pile());
        let config = StaticConfig {
            weights: WeightSpec::Named(NamedTable::OdmMean),
            renormalize: false,
        };
        let mut m = config.build(&ctx).expect("builds");
        let before = m.weights().to_vec();
        assert!((before.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((before[19] - 0.0549 / 1.0002).abs() < 1e-12, "PhilPapers");
        let mut fb = StepFeedback::new(22);
        fb.add_loss(0, 3.0, 1, 1);
        m.observe(1, &fb).expect("valid");
        assert_eq!(m.weights(), &before[..]);
        assert!(m.observe(1, &fb).is_err(), "same step twice");
        fb.add_loss(1, f64::NAN, 1, 1);
        assert!(m.observe(2, &fb).is_err(), "NaN loss");
    }

    #[test]
    fn state_round_trip_and_mismatch() {
        let ctx = MixerContext::new(DomainSet::new(["a", "b"]).expect("valid"));
        let mut m = StaticConfig {
            weights: WeightSpec::Uniform,
            renormalize: false,
        }
        .build(&ctx)
        .expect("builds");
        m.observe(4, &StepFeedback::new(2)).expect("valid");
        let state = m.state().expect("state");
        let mut fresh = StaticConfig {
            weights: WeightSpec::Uniform,
            renormalize: false,
        }
        .build(&ctx)
        .expect("builds");
        fresh.restore_state(&state).expect("same config");
        assert!(
            fresh.observe(4, &StepFeedback::new(2)).is_err(),
            "resumed after step 4"
        );
        fresh.observe(5, &StepFeedback::new(2)).expect("next step");
        let mut other = StaticConfig {
            weights: WeightSpec::Inline([("a".to_owned(), 1.0), ("b".to_owned(), 3.0)].into()),
            renormalize: false,
        }
        .build(&ctx)
        .expect("builds");
        assert!(other.restore_state(&state).is_err());
    }

    #[test]
    fn single_domain() {
        let ctx = MixerContext::new(DomainSet::new(["only"]).expect("valid"));
        let m = StaticConfig {
            weights: WeightSpec::Uniform,
            renormalize: false,
        }
        .build(&ctx)
        .expect("K = 1");
        assert_eq!(m.weights(), &[1.0]);
    }
}
