//! The ADO mixer: the history, the periodic fits and the per-step policy.

use mixlab_mixing::{
    DomainSet, Mixer, MixerConfig, MixerContext, MixingError, StepFeedback, check_state_header,
    check_step, exact_float, named_values,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::fit::fit_all;
use crate::history::History;
use crate::law::LawParams;
use crate::policy::{clip_min_probability, instant_distribution};
use crate::{AdoConfig, AdoError, CountMode};

/// Adaptive Data Optimization over a fixed set of domains.
///
/// `observe(t, ..)` is the code's `update(itr = t − 1)` followed by `curr_dist(itr)`; afterwards
/// `weights()` is the distribution for step t + 1:
/// - the history prior h ← γ h + (1 − γ) c / Σc with c the step's sequences per domain, every step;
/// - a history row: the step's sequences, and each domain's mean loss term (carried over from
///   the previous row when the domain was not drawn, the step's mean loss in the first row);
/// - at iterations that are multiples of `update_interval` from `start_step` on, every
///   domain's law is refitted (kept only if all parameters are finite);
/// - from `start_step` on, once a law exists: ρ = clip(instant distribution), the policy
///   π = s π̄ + (1 − s) ρ with π̄ the running mean, π̄ ← (1 − 1/t) π̄ + ρ / t;
///   before that the policy stays the prior.
#[derive(Debug, Clone)]
pub struct AdoMixer {
    config: AdoConfig,
    domains: DomainSet,
    prior: Vec<f64>,
    weights: Vec<f64>,
    /// π̄, the running mean of ρ (the code's `p_avg`).
    average: Vec<f64>,
    /// h, the smoothed share of sequences per domain (the code's `p_history`).
    history_prior: Vec<f64>,
    laws: Option<Vec<LawParams>>,
    history: History,
    /// Sequences per domain over the whole history (derived from `history`).
    seen: Vec<u64>,
    fits: u64,
    rejected_fits: u64,
    last_step: Option<u64>,
    /// Scratch buffers, so that a step between fits allocates only its history row.
    counts: Vec<u64>,
    losses: Vec<f64>,
    n: Vec<f64>,
    rho: Vec<f64>,
}

/// The checkpointed state. Floats are exact strings; the config is its JSON text, compared
/// exactly on restore.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdoState {
    kind: String,
    config: String,
    domains: DomainSet,
    #[serde(with = "exact_float::vec")]
    weights: Vec<f64>,
    #[serde(with = "exact_float::vec")]
    average: Vec<f64>,
    #[serde(with = "exact_float::vec")]
    history_prior: Vec<f64>,
    /// (a, e, α) per domain, flattened, when fitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    laws: Option<LawsState>,
    history: History,
    fits: u64,
    rejected_fits: u64,
    last_step: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(transparent)]
struct LawsState(#[serde(with = "exact_float::vec")] Vec<f64>);

impl AdoMixer {
    /// Builds the mixer for `ctx.domains`; the config is validated first.
    pub fn new(config: AdoConfig, ctx: &MixerContext) -> mixlab_mixing::Result<Self> {
        let config = config.validate()?;
        let k = ctx.domains.len();
        if config.min_probability * k as f64 > 1.0 {
            return Err(AdoError::FloorTooHigh {
                min_probability: config.min_probability,
                domains: k,
            }
            .into());
        }
        let prior = config.prior.resolve(ctx, config.renormalize)?;
        Ok(Self {
            domains: ctx.domains.clone(),
            weights: prior.clone(),
            average: prior.clone(),
            history_prior: prior.clone(),
            prior,
            laws: None,
            history: History::new(k),
            seen: vec![0; k],
            fits: 0,
            rejected_fits: 0,
            last_step: None,
            counts: vec![0; k],
            losses: vec![0.0; k],
            n: vec![0.0; k],
            rho: vec![0.0; k],
            config,
        })
    }

    /// The resolved configuration.
    pub fn config(&self) -> &AdoConfig {
        &self.config
    }

    /// The fitted laws in domain order, once a fit has succeeded.
    pub fn laws(&self) -> Option<&[LawParams]> {
        self.laws.as_deref()
    }

    /// The prior μ in domain order.
    pub fn prior(&self) -> &[f64] {
        &self.prior
    }

    /// Fits performed so far (accepted or not).
    pub fn fits(&self) -> u64 {
        self.fits
    }

    /// The code's `curr_dist(itr)` once laws exist: ρ, then the smoothed policy.
    fn adapt(&mut self, itr: u64) {
        let Some(laws) = &self.laws else {
            return;
        };
        match self.config.count {
            CountMode::Shared => {
                let total = self.seen.iter().sum::<u64>() as f64;
                self.n.fill(total);
            }
            CountMode::Domain => {
                for (n, &c) in self.n.iter_mut().zip(&self.seen) {
                    *n = c.max(1) as f64;
                }
            }
        }
        instant_distribution(
            laws,
            &self.n,
            &self.prior,
            &self.history_prior,
            self.config.exponent_floor,
            &mut self.rho,
        );
        clip_min_probability(&mut self.rho, self.config.min_probability);
        let s = self.config.policy_smoothing;
        let w = 1.0 / (itr + 1) as f64;
        let mut sum = 0.0;
        for k in 0..self.rho.len() {
            self.weights[k] = s * self.average[k] + (1.0 - s) * self.rho[k];
            self.average[k] = (1.0 - w) * self.average[k] + w * self.rho[k];
            sum += self.weights[k];
        }
        // The code's loader renormalises the policy before drawing from it.
        for p in &mut self.weights {
            *p /= sum;
        }
    }
}

impl Mixer for AdoMixer {
    fn kind(&self) -> &'static str {
        AdoConfig::KIND
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
        let domains = feedback.domains();
        let total: u64 = domains.iter().map(|d| d.sequences).sum();
        let terms: u64 = domains.iter().map(|d| d.loss_count).sum();
        if total == 0 || terms == 0 {
            return Err(AdoError::EmptyStep { step }.into());
        }
        // Nothing below can fail: the state changes from here on.
        let itr = step - 1;
        let gamma = self.config.history_decay;
        let step_mean = domains.iter().map(|d| d.loss_sum).sum::<f64>() / terms as f64;
        let previous = self.history.last_losses();
        for (k, d) in domains.iter().enumerate() {
            self.counts[k] = d.sequences;
            self.losses[k] = match (d.loss_mean(), previous) {
                (Some(mean), _) => mean,
                (None, Some(prev)) => prev[k],
                (None, None) => step_mean,
            };
            let share = d.sequences as f64 / total as f64;
            self.history_prior[k] = gamma * self.history_prior[k] + (1.0 - gamma) * share;
            self.seen[k] += d.sequences;
        }
        self.history.push(&self.counts, &self.losses);
        if self.config.fits_at(itr) {
            self.fits += 1;
            match fit_all(&self.history, &self.config) {
                Some(laws) => self.laws = Some(laws),
                None => self.rejected_fits += 1,
            }
        }
        if itr >= self.config.start_step {
            self.adapt(itr);
        }
        self.last_step = Some(step);
        Ok(())
    }

    fn state(&self) -> mixlab_mixing::Result<Value> {
        let kind = self.kind();
        let state = AdoState {
            kind: kind.to_owned(),
            config: serde_json::to_string(&self.config)
                .map_err(|e| MixingError::state(kind, e.to_string()))?,
            domains: self.domains.clone(),
            weights: self.weights.clone(),
            average: self.average.clone(),
            history_prior: self.history_prior.clone(),
            laws: self
                .laws
                .as_ref()
                .map(|l| LawsState(l.iter().flat_map(|p| p.to_array()).collect())),
            history: self.history.clone(),
            fits: self.fits,
            rejected_fits: self.rejected_fits,
            last_step: self.last_step,
        };
        serde_json::to_value(state).map_err(|e| MixingError::state(kind, e.to_string()))
    }

    fn restore_state(&mut self, state: &Value) -> mixlab_mixing::Result<()> {
        let kind = self.kind();
        let s: AdoState = serde_json::from_value(state.clone())
            .map_err(|e| MixingError::state(kind, e.to_string()))?;
        check_state_header(
            kind,
            &self.domains,
            &self.config,
            &s.kind,
            &s.domains,
            &s.config,
        )?;
        let k = self.domains.len();
        let bad = |m: String| MixingError::from(AdoError::BadState(m));
        s.history.check(k).map_err(bad)?;
        mixlab_mixing::check_distribution(&self.domains, &s.weights, "checkpointed ADO weights")?;
        for (name, v) in [("average", &s.average), ("history_prior", &s.history_prior)] {
            if v.len() != k || v.iter().any(|x| !(x.is_finite() && *x >= 0.0)) {
                return Err(bad(format!(
                    "{name} is not {k} finite non-negative numbers"
                )));
            }
        }
        let laws = match s.laws {
            None => None,
            Some(LawsState(flat)) => {
                if flat.len() != 3 * k || flat.iter().any(|x| !x.is_finite()) {
                    return Err(bad(format!(
                        "laws are not {k} finite (a, e, alpha) triples"
                    )));
                }
                Some(
                    flat.chunks(3)
                        .map(|c| LawParams::from_array([c[0], c[1], c[2]]))
                        .collect(),
                )
            }
        };
        if s.history.rows() as u64 > s.last_step.unwrap_or(0) {
            return Err(bad(format!(
                "{} history rows but the last step is {:?}",
                s.history.rows(),
                s.last_step
            )));
        }
        self.history = s.history;
        self.history.totals_by_domain(&mut self.seen);
        self.weights = s.weights;
        self.average = s.average;
        self.history_prior = s.history_prior;
        self.laws = laws;
        self.fits = s.fits;
        self.rejected_fits = s.rejected_fits;
        self.last_step = s.last_step;
        Ok(())
    }

    fn internals(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("fits".into(), Value::from(self.fits));
        m.insert("rejected_fits".into(), Value::from(self.rejected_fits));
        m.insert(
            "history_prior".into(),
            Value::Object(named_values(&self.domains, &self.history_prior)),
        );
        if let Some(laws) = &self.laws {
            let per_domain = |f: fn(&LawParams) -> f64| {
                Value::Object(named_values(
                    &self.domains,
                    &laws.iter().map(f).collect::<Vec<_>>(),
                ))
            };
            m.insert("law_a".into(), per_domain(|l| l.a));
            m.insert("law_e".into(), per_domain(|l| l.e));
            m.insert("law_alpha".into(), per_domain(|l| l.alpha));
        }
        m
    }
}
