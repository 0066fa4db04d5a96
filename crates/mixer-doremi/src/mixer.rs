//! The DoReMi mixer.

use mixlab_mixing::math::softmax_into;
use mixlab_mixing::{
    DomainSet, Mixer, MixerConfig, MixerContext, MixingError, StepFeedback, WeightTable,
    check_distribution, check_state_header, check_step, exact_float, named_values,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Average, DoremiConfig, DoremiError};

/// DoReMi's proxy-side state: fixed sampling weights, the Group-DRO domain weights α_t, their
/// running average and the last per-domain excess losses λ.
///
/// `weights()` is the fixed sampling distribution; `loss_weights()` are α_i / s_i normalised to
/// sum 1, which the trainer applies per token (dividing by the batch's total weight, as
/// `DoReMiTrainer.training_step` does).
#[derive(Debug, Clone)]
pub struct DoremiMixer {
    config: DoremiConfig,
    domains: DomainSet,
    sampling: Vec<f64>,
    domain_weights: Vec<f64>,
    average: Vec<f64>,
    excess: Vec<f64>,
    loss_weights: Vec<f64>,
    /// Scratch for the softmax, so that `observe` does not allocate.
    scratch: Vec<f64>,
    updates: u64,
    last_step: Option<u64>,
}

/// The checkpointed state; floats as exact strings, the config as its JSON text.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DoremiState {
    kind: String,
    config: String,
    domains: DomainSet,
    #[serde(with = "exact_float::vec")]
    domain_weights: Vec<f64>,
    #[serde(with = "exact_float::vec")]
    average: Vec<f64>,
    #[serde(with = "exact_float::vec")]
    excess: Vec<f64>,
    updates: u64,
    last_step: Option<u64>,
}

impl DoremiMixer {
    /// Builds the mixer for `ctx.domains`; the initial λ comes from the config or
    /// ln(`ctx.vocab_size`).
    pub fn new(config: DoremiConfig, ctx: &MixerContext) -> mixlab_mixing::Result<Self> {
        let config = config.validate()?;
        let sampling = config.sampling_weights.resolve(ctx, config.renormalize)?;
        if let Some(i) = sampling.iter().position(|&w| w <= 0.0) {
            return Err(DoremiError::ZeroSamplingWeight {
                domain: ctx.domains.name(i).unwrap_or("?").to_owned(),
            }
            .into());
        }
        let initial_excess = match (config.initial_excess_loss, ctx.vocab_size) {
            (Some(l), _) => l,
            (None, Some(v)) if v > 0 => (v as f64).ln(),
            (None, _) => return Err(DoremiError::NoVocabulary.into()),
        };
        let k = ctx.domains.len();
        let mut mixer = Self {
            config,
            domains: ctx.domains.clone(),
            domain_weights: sampling.clone(),
            average: sampling.clone(),
            sampling,
            excess: vec![initial_excess; k],
            loss_weights: vec![0.0; k],
            scratch: vec![0.0; k],
            updates: 0,
            last_step: None,
        };
        mixer.update_loss_weights();
        Ok(mixer)
    }

    /// The current domain weights α_t.
    pub fn domain_weights(&self) -> &[f64] {
        &self.domain_weights
    }

    /// The running average of α (α_0 before the first update): DoReMi's output. With
    /// `average = "code"` it includes α_0, with `"paper"` it starts at α_1 (see [`Average`]).
    pub fn average_domain_weights(&self) -> &[f64] {
        &self.average
    }

    /// The last per-domain excess losses λ.
    pub fn excess_losses(&self) -> &[f64] {
        &self.excess
    }

    /// Number of updates (observed steps).
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// The averaged domain weights as a weight table, for a static run.
    pub fn average_table(&self) -> WeightTable {
        WeightTable::from_weights(
            match self.config.average {
                Average::Code => format!(
                    "DoReMi average domain weights over {} steps (reference code's average, α_0 included)",
                    self.updates
                ),
                Average::Paper => format!(
                    "DoReMi average domain weights over {} steps (paper's average, α_0 left out)",
                    self.updates
                ),
            },
            &self.domains,
            &self.average,
        )
    }

    fn update_loss_weights(&mut self) {
        let mut sum = 0.0;
        for ((lw, a), s) in self
            .loss_weights
            .iter_mut()
            .zip(&self.domain_weights)
            .zip(&self.sampling)
        {
            *lw = a / s;
            sum += *lw;
        }
        for lw in &mut self.loss_weights {
            *lw /= sum;
        }
    }
}

impl Mixer for DoremiMixer {
    fn kind(&self) -> &'static str {
        DoremiConfig::KIND
    }

    fn domains(&self) -> &DomainSet {
        &self.domains
    }

    fn weights(&self) -> &[f64] {
        &self.sampling
    }

    fn loss_weights(&self) -> Option<&[f64]> {
        Some(&self.loss_weights)
    }

    fn needs_reference_model(&self) -> bool {
        true
    }

    fn observe(&mut self, step: u64, feedback: &StepFeedback) -> mixlab_mixing::Result<()> {
        check_step(self.last_step, step)?;
        feedback.validate(&self.domains)?;
        for (lambda, d) in self.excess.iter_mut().zip(feedback.domains()) {
            if let Some(mean) = d.excess_loss_mean() {
                *lambda = mean;
            }
        }
        // log α' = log α + η λ; α = (1 − c) softmax(log α') + c/K.
        for ((logit, a), lambda) in self
            .scratch
            .iter_mut()
            .zip(&self.domain_weights)
            .zip(&self.excess)
        {
            *logit = a.ln() + self.config.eta * lambda;
        }
        let k = self.domains.len() as f64;
        let c = self.config.smoothing;
        // Some α_i > 0 always (they sum to 1), so some logit is finite and the softmax exists;
        // with c = 0 an underflowed α_i = 0 stays 0 (ln 0 = -inf), as in the reference code.
        softmax_into(&self.scratch, 1.0, &mut self.domain_weights);
        for a in &mut self.domain_weights {
            *a = (1.0 - c) * *a + c / k;
        }
        // write_weights: avg = (avg · (n − 1) + α) / n, where n counts the terms averaged. The
        // code's counter starts at 1 with avg = α_0, so after T updates n = T + 1 and α_0 is
        // one of the terms; the paper's average has n = T terms, α_1 … α_T (at n = 1 the old
        // average, α_0, gets weight 0).
        self.updates += 1;
        let n = match self.config.average {
            Average::Code => self.updates + 1,
            Average::Paper => self.updates,
        } as f64;
        for (avg, a) in self.average.iter_mut().zip(&self.domain_weights) {
            *avg = (*avg * (n - 1.0) + a) / n;
        }
        self.update_loss_weights();
        self.last_step = Some(step);
        Ok(())
    }

    fn state(&self) -> mixlab_mixing::Result<Value> {
        let kind = self.kind();
        let state = DoremiState {
            kind: kind.to_owned(),
            config: serde_json::to_string(&self.config)
                .map_err(|e| MixingError::state(kind, e.to_string()))?,
            domains: self.domains.clone(),
            domain_weights: self.domain_weights.clone(),
            average: self.average.clone(),
            excess: self.excess.clone(),
            updates: self.updates,
            last_step: self.last_step,
        };
        serde_json::to_value(state).map_err(|e| MixingError::state(kind, e.to_string()))
    }

    fn restore_state(&mut self, state: &Value) -> mixlab_mixing::Result<()> {
        let kind = self.kind();
        let s: DoremiState = serde_json::from_value(state.clone())
            .map_err(|e| MixingError::state(kind, e.to_string()))?;
        // Checkpoints written before the `average` option (and before the trainer weighted step
        // t with α_t) have no `average` in their config: their average left out α_0 and their
        // proxy trained with α_{t−1}, so continuing them would mix two definitions.
        if serde_json::from_str::<Value>(&s.config)
            .ok()
            .is_some_and(|c| c.get("average").is_none())
        {
            return Err(MixingError::state(
                kind,
                "the checkpoint predates DoReMi's `average` option and the α_t loss weighting \
                 (its proxy weighted step t with α_(t-1) and averaged α_1 … α_T); train the proxy \
                 again from the start",
            ));
        }
        check_state_header(
            kind,
            &self.domains,
            &self.config,
            &s.kind,
            &s.domains,
            &s.config,
        )?;
        check_distribution(
            &self.domains,
            &s.domain_weights,
            "checkpointed DoReMi domain weights",
        )?;
        check_distribution(
            &self.domains,
            &s.average,
            "checkpointed DoReMi average weights",
        )?;
        if s.excess.len() != self.domains.len()
            || s.excess.iter().any(|l| !(l.is_finite() && *l >= 0.0))
        {
            return Err(MixingError::state(
                kind,
                "excess losses must be K finite non-negative numbers",
            ));
        }
        self.domain_weights = s.domain_weights;
        self.average = s.average;
        self.excess = s.excess;
        self.updates = s.updates;
        self.last_step = s.last_step;
        self.update_loss_weights();
        Ok(())
    }

    fn internals(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(
            "domain_weights".into(),
            Value::Object(named_values(&self.domains, &self.domain_weights)),
        );
        m.insert(
            "average_domain_weights".into(),
            Value::Object(named_values(&self.domains, &self.average)),
        );
        m.insert(
            "excess_losses".into(),
            Value::Object(named_values(&self.domains, &self.excess)),
        );
        m.insert("updates".into(), Value::from(self.updates));
        m
    }

    fn output_table(&self) -> Option<WeightTable> {
        Some(self.average_table())
    }
}
