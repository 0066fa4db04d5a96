//! The Aioli mixer: the round state machine over probes and validations.

use mixlab_mixing::{
    DomainSet, Mixer, MixerContext, MixingError, StepFeedback, check_state_header, check_step,
    check_validation_losses, exact_float, math::softmax_into, named_values,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::interaction::{column_sums, estimate, normalize, probe_weights};
use crate::rng::SplitMix64;
use crate::schedule::{Checkpoint, Phase, Schedule};
use crate::{AioliConfig, AioliError, UpdateRule};

/// Aioli over a fixed set of domains.
///
/// The trainer asks [`wants_validation`](Mixer::wants_validation) after every step; Aioli asks
/// at each round's start and after each probe, and learns only from those validations (the
/// training feedback of [`observe`](Mixer::observe) is checked and otherwise unused, as in the
/// reference). A round's validations, in order:
/// - at its start: draw the round's probe order (`lp_rounds` permutations of the domains) and
///   keep the losses ℓ;
/// - after probe j (domain d = order\[j\]): G\[i\]\[d\] += ℓ_i − ℓ'_i for every domain i with a loss
///   in both (a domain without validation data adds nothing), ℓ ← ℓ';
/// - after the last probe: A = estimate(G) (normalised), the update (`ema` or
///   `multiplicative`) gives the round's mixture p, trained until the round ends.
///
/// A validation is refused unless it is the one Aioli asked for after the last observed step,
/// and a step is refused while an asked-for validation is missing, so a trainer that skips one
/// fails loudly instead of learning from the wrong losses.
#[derive(Debug, Clone)]
pub struct AioliMixer {
    config: AioliConfig,
    domains: DomainSet,
    schedule: Schedule,
    prior: Vec<f64>,
    /// ln of the update's base: uniform (zeros) or the prior.
    base_log: Vec<f64>,
    /// The distribution for the next step.
    weights: Vec<f64>,
    /// The latest round's mixture p and its unnormalised logarithm.
    learned: Option<Learned>,
    /// Ā, the EMA of A (`update = "ema"`), K × K row-major.
    smoothed: Option<Vec<f64>>,
    /// The latest round's A after normalisation.
    last_estimate: Option<Vec<f64>>,
    /// The round whose probes are under way.
    round: Option<RoundProgress>,
    rounds_done: u64,
    rng: SplitMix64,
    last_step: Option<u64>,
    /// The last step whose validation was received (0: the untrained model's).
    last_validation: Option<u64>,
    /// Scratch for column sums.
    columns: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq)]
struct Learned {
    weights: Vec<f64>,
    log_weights: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoundProgress {
    round: u64,
    /// The probed domain of each probe, `lp_rounds` permutations one after another.
    order: Vec<usize>,
    /// ℓ: the losses of the last validation (`None`: no validation data).
    previous: Vec<Option<Exact>>,
    /// G, summed over the probes so far.
    #[serde(with = "exact_float::vec")]
    gain: Vec<f64>,
    probes_done: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
struct Exact(#[serde(with = "exact_float::scalar")] f64);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
struct ExactVec(#[serde(with = "exact_float::vec")] Vec<f64>);

/// The checkpointed state. Floats are exact strings; the config is its JSON text, compared
/// exactly on restore.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AioliState {
    kind: String,
    config: String,
    domains: DomainSet,
    #[serde(with = "exact_float::vec")]
    weights: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    learned: Option<ExactVec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    learned_log: Option<ExactVec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    smoothed: Option<ExactVec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_estimate: Option<ExactVec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    round: Option<RoundProgress>,
    rounds_done: u64,
    /// SplitMix64's state, as a decimal string (JSON numbers above 2⁵³ are not portable).
    rng: String,
    last_step: Option<u64>,
    last_validation: Option<u64>,
}

impl AioliMixer {
    /// Builds the mixer for `ctx.domains`; the config is validated first.
    pub fn new(config: AioliConfig, ctx: &MixerContext) -> mixlab_mixing::Result<Self> {
        let config = config.validate()?;
        let k = ctx.domains.len();
        config.validate_for(k)?;
        let prior = config.prior.resolve(ctx, config.renormalize)?;
        let base_log = if config.start_from_prior {
            prior.iter().map(|p| p.ln()).collect()
        } else {
            vec![0.0; k]
        };
        Ok(Self {
            domains: ctx.domains.clone(),
            schedule: Schedule {
                prior_steps: config.prior_steps,
                update_steps: config.update_steps,
                lp_steps: config.lp_steps,
                probes: config.lp_rounds * k as u64,
            },
            weights: prior.clone(),
            prior,
            base_log,
            learned: None,
            smoothed: None,
            last_estimate: None,
            round: None,
            rounds_done: 0,
            rng: SplitMix64::new(config.seed),
            last_step: None,
            last_validation: None,
            columns: vec![0.0; k],
            config,
        })
    }

    /// The resolved configuration.
    pub fn config(&self) -> &AioliConfig {
        &self.config
    }

    /// The round structure.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The prior in domain order.
    pub fn prior(&self) -> &[f64] {
        &self.prior
    }

    /// Rounds whose estimate has updated the mixture.
    pub fn rounds_done(&self) -> u64 {
        self.rounds_done
    }

    /// The latest estimate of A (after normalisation), K × K row-major: entry (i, j) is the
    /// drop of domain i's validation loss per unit of domain j in the mixture.
    pub fn interaction(&self) -> Option<&[f64]> {
        self.last_estimate.as_deref()
    }

    /// The latest round's learned mixture (what its exploit steps train on).
    pub fn learned(&self) -> Option<&[f64]> {
        self.learned.as_ref().map(|l| l.weights.as_slice())
    }

    /// The probe order of the round under way.
    pub fn probe_order(&self) -> Option<&[usize]> {
        self.round.as_ref().map(|r| r.order.as_slice())
    }

    fn k(&self) -> usize {
        self.domains.len()
    }

    /// The validation asked for after the last observed step and not yet received.
    fn pending_validation(&self) -> Option<u64> {
        let step = self.last_step.unwrap_or(0);
        (self.schedule.checkpoint_after(step).is_some() && self.last_validation != Some(step))
            .then_some(step)
    }

    /// Sets `weights` to the mixture of training step `step`; `Err` names what is missing.
    fn refresh(&mut self, step: u64) -> Result<(), String> {
        match self.schedule.phase(step) {
            Phase::Prior => self.weights.copy_from_slice(&self.prior),
            Phase::Probe { round, probe } => match &self.round {
                Some(r) if r.round == round => {
                    let j = r.order[probe as usize];
                    probe_weights(self.k(), self.config.one_hot_factor, j, &mut self.weights);
                }
                _ => {
                    return Err(format!(
                        "step {step} is a probe of round {round}, which has not started"
                    ));
                }
            },
            Phase::Exploit { round } => match &self.learned {
                Some(l) if self.rounds_done == round + 1 => {
                    self.weights.copy_from_slice(&l.weights)
                }
                _ => {
                    return Err(format!(
                        "step {step} trains round {round}'s mixture, and {} rounds are done",
                        self.rounds_done
                    ));
                }
            },
        }
        Ok(())
    }

    /// The end of a round's probes: A, its normalisation, the update.
    fn finish_round(&mut self, mut gain: Vec<f64>) {
        let k = self.k();
        let c = &self.config;
        estimate(&mut gain, k, c.lp_rounds, c.one_hot_factor, c.diagonal);
        if c.normalize {
            normalize(&mut gain);
        }
        let first = self.rounds_done == 0;
        let log_base = match (c.update, &self.learned) {
            (UpdateRule::Multiplicative, Some(l)) if !first => l.log_weights.clone(),
            _ => self.base_log.clone(),
        };
        match c.update {
            UpdateRule::Ema => {
                let smoothed = match self.smoothed.take() {
                    Some(mut s) if !first => {
                        for (s, a) in s.iter_mut().zip(&gain) {
                            *s = (1.0 - c.ema) * a + c.ema * *s;
                        }
                        s
                    }
                    _ => gain.clone(),
                };
                column_sums(&smoothed, k, &mut self.columns);
                self.smoothed = Some(smoothed);
            }
            UpdateRule::Multiplicative => column_sums(&gain, k, &mut self.columns),
        }
        let log_weights: Vec<f64> = log_base
            .iter()
            .zip(&self.columns)
            .map(|(b, s)| b + c.eta * s)
            .collect();
        let mut weights = vec![0.0; k];
        // The base has at least one finite entry (a prior sums to 1), so softmax exists.
        softmax_into(&log_weights, 1.0, &mut weights);
        self.learned = Some(Learned {
            weights,
            log_weights,
        });
        self.last_estimate = Some(gain);
        self.rounds_done += 1;
    }

    fn validation_error(step: u64, message: impl Into<String>) -> MixingError {
        AioliError::Validation {
            step,
            message: message.into(),
        }
        .into()
    }

    /// Whether a restored state can continue: what the next step needs is there.
    fn check_consistent(&self) -> Result<(), String> {
        let k = self.k();
        let square = |name: &str, m: &Option<Vec<f64>>| match m {
            Some(m) if m.len() != k * k || m.iter().any(|x| !x.is_finite()) => {
                Err(format!("{name} is not {k} x {k} finite numbers"))
            }
            _ => Ok(()),
        };
        square("smoothed", &self.smoothed)?;
        square("last_estimate", &self.last_estimate)?;
        if let Some(l) = &self.learned
            && (l.log_weights.len() != k || l.log_weights.iter().any(|x| x.is_nan()))
        {
            return Err(format!("learned_log is not {k} numbers"));
        }
        if let Some(r) = &self.round {
            let mut sorted = r.order.clone();
            sorted.sort_unstable();
            let sweeps = self.config.lp_rounds as usize;
            if r.order.len() != sweeps * k
                || sorted.iter().enumerate().any(|(i, &d)| d != i / sweeps)
            {
                return Err(format!(
                    "the probe order is not {sweeps} permutations of {k} domains"
                ));
            }
            if r.previous.len() != k
                || r.gain.len() != k * k
                || r.gain.iter().any(|g| !g.is_finite())
            {
                return Err(format!("the round's losses or G do not have {k} domains"));
            }
            if r.probes_done >= self.schedule.probes || r.round != self.rounds_done {
                return Err(format!(
                    "round {} with {} probes done does not follow {} rounds done",
                    r.round, r.probes_done, self.rounds_done
                ));
            }
        }
        if self.learned.is_some() != (self.rounds_done > 0) {
            return Err(format!(
                "{} rounds done but learned mixture {:?}",
                self.rounds_done,
                self.learned.is_some()
            ));
        }
        if let (Some(v), last) = (self.last_validation, self.last_step.unwrap_or(0))
            && v > last
        {
            return Err(format!(
                "a validation after step {v}, past the last step {last}"
            ));
        }
        if self.pending_validation().is_none() {
            self.clone().refresh(self.last_step.unwrap_or(0) + 1)?;
        }
        Ok(())
    }
}

impl Mixer for AioliMixer {
    fn kind(&self) -> &'static str {
        "aioli"
    }

    fn domains(&self) -> &DomainSet {
        &self.domains
    }

    fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// The latest round's learned mixture (the prior before the first round completes): what
    /// the exploit steps train on, whatever the next step's probe is.
    fn policy(&self) -> &[f64] {
        match &self.learned {
            Some(l) => &l.weights,
            None => &self.prior,
        }
    }

    fn needs_validation(&self) -> bool {
        true
    }

    fn wants_validation(&self, step: u64) -> bool {
        self.schedule.checkpoint_after(step).is_some()
    }

    fn observe_validation(
        &mut self,
        step: u64,
        losses: &[Option<f64>],
    ) -> mixlab_mixing::Result<()> {
        check_validation_losses(self.kind(), &self.domains, step, losses)?;
        let last = self.last_step.unwrap_or(0);
        if step != last {
            return Err(Self::validation_error(
                step,
                format!("Aioli expects the validation after the last observed step, {last}"),
            ));
        }
        if self.last_validation == Some(step) {
            return Err(Self::validation_error(step, "received twice"));
        }
        let Some(checkpoint) = self.schedule.checkpoint_after(step) else {
            return Err(Self::validation_error(step, "Aioli did not ask for it"));
        };
        if losses.iter().all(Option::is_none) {
            return Err(Self::validation_error(
                step,
                "no domain has validation data, and Aioli learns only from validation losses",
            ));
        }
        let k = self.k();
        match checkpoint {
            Checkpoint::RoundStart { round } => {
                if round != self.rounds_done || self.round.is_some() {
                    return Err(Self::validation_error(
                        step,
                        format!(
                            "round {round} starts, but {} rounds are complete",
                            self.rounds_done
                        ),
                    ));
                }
                let order: Vec<usize> = (0..self.config.lp_rounds)
                    .flat_map(|_| self.rng.permutation(k))
                    .collect();
                self.round = Some(RoundProgress {
                    round,
                    order,
                    previous: losses.iter().map(|l| l.map(Exact)).collect(),
                    gain: vec![0.0; k * k],
                    probes_done: 0,
                });
            }
            Checkpoint::AfterProbe { round, probe } => {
                let Some(r) = self
                    .round
                    .as_mut()
                    .filter(|r| r.round == round && r.probes_done == probe)
                else {
                    return Err(Self::validation_error(
                        step,
                        format!(
                            "probe {probe} of round {round} ends, but that probe is not under way"
                        ),
                    ));
                };
                let j = r.order[probe as usize];
                for (i, (before, after)) in r.previous.iter().zip(losses).enumerate() {
                    if let (Some(Exact(b)), Some(a)) = (before, after) {
                        r.gain[i * k + j] += b - a;
                    }
                }
                r.previous = losses.iter().map(|l| l.map(Exact)).collect();
                r.probes_done += 1;
                if r.probes_done == self.schedule.probes {
                    let gain = std::mem::take(&mut r.gain);
                    self.round = None;
                    self.finish_round(gain);
                }
            }
        }
        self.last_validation = Some(step);
        self.refresh(step + 1)
            .map_err(|m| MixingError::from(AioliError::BadState(m)))
    }

    fn observe(&mut self, step: u64, feedback: &StepFeedback) -> mixlab_mixing::Result<()> {
        check_step(self.last_step, step)?;
        feedback.validate(&self.domains)?;
        if let Some(pending) = self.pending_validation() {
            return Err(AioliError::MissingValidation {
                step,
                pending,
                next: pending + 1,
            }
            .into());
        }
        let from = self.last_step.unwrap_or(0) + 1;
        if let Some(skipped) = (from..step).find(|&s| self.schedule.checkpoint_after(s).is_some()) {
            return Err(AioliError::MissingValidation {
                step,
                pending: skipped,
                next: skipped + 1,
            }
            .into());
        }
        self.last_step = Some(step);
        // After a step Aioli validates at, the validation sets the next mixture.
        if self.schedule.checkpoint_after(step).is_none() {
            self.refresh(step + 1)
                .map_err(|m| MixingError::from(AioliError::BadState(m)))?;
        }
        Ok(())
    }

    fn state(&self) -> mixlab_mixing::Result<Value> {
        let kind = self.kind();
        let state = AioliState {
            kind: kind.to_owned(),
            config: serde_json::to_string(&self.config)
                .map_err(|e| MixingError::state(kind, e.to_string()))?,
            domains: self.domains.clone(),
            weights: self.weights.clone(),
            learned: self.learned.as_ref().map(|l| ExactVec(l.weights.clone())),
            learned_log: self
                .learned
                .as_ref()
                .map(|l| ExactVec(l.log_weights.clone())),
            smoothed: self.smoothed.clone().map(ExactVec),
            last_estimate: self.last_estimate.clone().map(ExactVec),
            round: self.round.clone(),
            rounds_done: self.rounds_done,
            rng: self.rng.state.to_string(),
            last_step: self.last_step,
            last_validation: self.last_validation,
        };
        serde_json::to_value(state).map_err(|e| MixingError::state(kind, e.to_string()))
    }

    fn restore_state(&mut self, state: &Value) -> mixlab_mixing::Result<()> {
        let kind = self.kind();
        let s: AioliState = serde_json::from_value(state.clone())
            .map_err(|e| MixingError::state(kind, e.to_string()))?;
        check_state_header(
            kind,
            &self.domains,
            &self.config,
            &s.kind,
            &s.domains,
            &s.config,
        )?;
        let bad = |m: String| MixingError::from(AioliError::BadState(m));
        mixlab_mixing::check_distribution(&self.domains, &s.weights, "checkpointed Aioli weights")?;
        let learned = match (s.learned, s.learned_log) {
            (None, None) => None,
            (Some(ExactVec(w)), Some(ExactVec(log))) => {
                mixlab_mixing::check_distribution(
                    &self.domains,
                    &w,
                    "checkpointed Aioli learned mixture",
                )?;
                Some(Learned {
                    weights: w,
                    log_weights: log,
                })
            }
            _ => {
                return Err(bad(
                    "learned and learned_log must be both present or both absent".into(),
                ));
            }
        };
        let rng = s
            .rng
            .parse::<u64>()
            .map_err(|e| bad(format!("rng {:?}: {e}", s.rng)))?;
        let mut restored = self.clone();
        restored.weights = s.weights;
        restored.learned = learned;
        restored.smoothed = s.smoothed.map(|v| v.0);
        restored.last_estimate = s.last_estimate.map(|v| v.0);
        restored.round = s.round;
        restored.rounds_done = s.rounds_done;
        restored.rng = SplitMix64 { state: rng };
        restored.last_step = s.last_step;
        restored.last_validation = s.last_validation;
        restored.check_consistent().map_err(bad)?;
        *self = restored;
        Ok(())
    }

    fn internals(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("rounds".into(), Value::from(self.rounds_done));
        let next = self.last_step.unwrap_or(0) + 1;
        let phase = match self.schedule.phase(next) {
            Phase::Prior => "prior",
            Phase::Probe { .. } => "probe",
            Phase::Exploit { .. } => "exploit",
        };
        m.insert("phase".into(), Value::from(phase));
        if let (Phase::Probe { round, probe }, Some(r)) = (self.schedule.phase(next), &self.round)
            && r.round == round
        {
            let d = r.order[probe as usize];
            m.insert(
                "probe_domain".into(),
                Value::from(self.domains.name(d).unwrap_or("?")),
            );
        }
        if let Some(a) = &self.last_estimate {
            let mut columns = vec![0.0; self.k()];
            column_sums(a, self.k(), &mut columns);
            m.insert(
                "a_colsum".into(),
                Value::Object(named_values(&self.domains, &columns)),
            );
        }
        m
    }
}
