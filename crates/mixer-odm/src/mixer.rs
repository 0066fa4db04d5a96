//! The ODM mixer: one state machine for the three rules.

use mixlab_mixing::math::{log_add_exp, softmax_into};
use mixlab_mixing::{
    DomainFeedback, DomainSet, Mixer, MixerConfig, MixerContext, MixingError, StepFeedback,
    check_state_header, check_step, exact_float, named_values,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{LossAggregation, OdmConfig, OdmError, OdmRule};

/// The exploration rate ε_t = min(1/K, sqrt(ln K / (K t))) of Seldin et al. (2013), with
/// ε_0 = 1/K (Algorithm 1's initialisation). `t` is the global training step.
pub fn exploration_rate(num_domains: usize, t: u64) -> f64 {
    let k = num_domains as f64;
    if t == 0 {
        return 1.0 / k;
    }
    (1.0 / k).min((k.ln() / (k * t as f64)).sqrt())
}

/// Online Data Mixing over a fixed set of domains.
///
/// `weights()` after `observe(t, ..)` is the policy for step t + 1:
/// - during the warm-up (t + 1 ≤ `warmup_steps`) it is the initial weights;
/// - `paper`: π_{t+1} = (1 − K ε_{t+1}) softmax(ε_t R) + ε_{t+1}, every step after the warm-up
///   (so the first post-warm-up step, with R = 0, is uniform, as Algorithm 1 gives);
/// - `reference-code` and `exp3`: recomputed by each update at step t > warm-up with ε_t, as
///   the released code's `group_update(iteration = t)` does; until the first update the policy
///   is the initial weights.
#[derive(Debug, Clone)]
pub struct OdmMixer {
    config: OdmConfig,
    rule: OdmRule,
    alpha: f64,
    aggregation: LossAggregation,
    reward_scale: f64,
    domains: DomainSet,
    initial: Vec<f64>,
    weights: Vec<f64>,
    /// paper: smoothed importance-weighted loss; exp3: cumulative importance-weighted reward;
    /// reference-code: ln of the smoothed exp(mean loss), `-inf` while a domain was never drawn
    /// (log space keeps exp(loss) from overflowing for any finite loss).
    rewards: Vec<f64>,
    /// New rewards of the step being observed, before they are committed.
    scratch: Vec<f64>,
    /// The code rules' stored ε (1/K until the first update; then ε of the last update step).
    code_eps: f64,
    /// ε of the current policy (its floor), `None` while the policy is the initial weights.
    exploration: Option<f64>,
    last_step: Option<u64>,
    updates: u64,
}

/// The checkpointed state. Floats are exact strings (see `mixlab_mixing::exact_float`); the
/// config is kept as its JSON text so that comparing it on restore is exact too.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OdmState {
    kind: String,
    config: String,
    domains: DomainSet,
    #[serde(with = "exact_float::vec")]
    weights: Vec<f64>,
    #[serde(with = "exact_float::vec")]
    rewards: Vec<f64>,
    #[serde(with = "exact_float::scalar")]
    code_eps: f64,
    #[serde(with = "exact_float::option")]
    exploration: Option<f64>,
    last_step: Option<u64>,
    updates: u64,
}

impl OdmMixer {
    /// Builds the mixer for `ctx.domains`; the config is validated and resolved first.
    pub fn new(config: OdmConfig, ctx: &MixerContext) -> mixlab_mixing::Result<Self> {
        let config = config.validate()?;
        let k = ctx.domains.len();
        if let Some(eps) = config.exploration
            && eps > 1.0 / k as f64
        {
            return Err(OdmError::Exploration {
                value: eps,
                max: Some(1.0 / k as f64),
            }
            .into());
        }
        let initial = config.initial_weights.resolve(ctx, config.renormalize)?;
        let rule = config.rule;
        let mut mixer = Self {
            rule,
            alpha: config.alpha.unwrap_or(0.0),
            aggregation: config.loss_aggregation.unwrap_or(LossAggregation::Sum),
            reward_scale: config.reward_scale.unwrap_or(1.0),
            domains: ctx.domains.clone(),
            weights: initial.clone(),
            initial,
            rewards: vec![
                if rule == OdmRule::ReferenceCode {
                    f64::NEG_INFINITY
                } else {
                    0.0
                };
                k
            ],
            scratch: vec![0.0; k],
            code_eps: exploration_rate(k, 0),
            exploration: None,
            last_step: None,
            updates: 0,
            config,
        };
        if rule == OdmRule::Paper {
            mixer.paper_policy(1);
        }
        Ok(mixer)
    }

    /// The resolved configuration.
    pub fn config(&self) -> &OdmConfig {
        &self.config
    }

    /// The estimated rewards R_i in domain order (reference-code: the smoothed exp(loss),
    /// which may be `inf` for losses beyond ~709; the mixer itself works in log space).
    pub fn rewards(&self) -> Vec<f64> {
        match self.rule {
            OdmRule::ReferenceCode => self.rewards.iter().map(|r| r.exp()).collect(),
            _ => self.rewards.clone(),
        }
    }

    /// ε of the current policy, or `None` while the policy is the initial weights.
    pub fn exploration(&self) -> Option<f64> {
        self.exploration
    }

    /// Number of reward updates so far (steps after the warm-up).
    pub fn updates(&self) -> u64 {
        self.updates
    }

    fn aggregate(&self, d: &DomainFeedback) -> f64 {
        match self.aggregation {
            LossAggregation::Sum => d.loss_sum,
            LossAggregation::Mean => d.loss_sum / d.loss_count as f64,
        }
    }

    /// The reward update of domain `i` for this rule, without writing it.
    fn new_reward(&self, i: usize, d: &DomainFeedback, step: u64) -> Result<f64, OdmError> {
        let loss = self.aggregate(d);
        let pi = self.weights[i];
        let domain = || self.domains.name(i).unwrap_or("?").to_owned();
        if pi <= 0.0 && self.rule != OdmRule::ReferenceCode {
            return Err(OdmError::ZeroProbabilityDraw {
                domain: domain(),
                step,
            });
        }
        let r = match self.rule {
            OdmRule::Paper => self.alpha * self.rewards[i] + (1.0 - self.alpha) * loss / pi,
            OdmRule::Exp3 => self.rewards[i] + (loss / self.reward_scale) / pi,
            // ln(α R + (1 − α) e^L) = logaddexp(ln α + ln R, ln(1 − α) + L).
            OdmRule::ReferenceCode => log_add_exp(
                self.alpha.ln() + self.rewards[i],
                (1.0 - self.alpha).ln() + loss,
            ),
        };
        if r.is_finite() {
            Ok(r)
        } else {
            Err(OdmError::RewardOverflow {
                domain: domain(),
                step,
                loss,
            })
        }
    }

    /// Algorithm 1's policy for step `t`.
    fn paper_policy(&mut self, t: u64) {
        if t <= self.config.warmup_steps {
            self.weights.copy_from_slice(&self.initial);
            self.exploration = None;
            return;
        }
        let k = self.domains.len();
        let eps = self
            .config
            .exploration
            .unwrap_or_else(|| exploration_rate(k, t));
        let eps_prev = exploration_rate(k, t - 1);
        // R is finite, so the softmax always exists.
        softmax_into(&self.rewards, eps_prev, &mut self.weights);
        let mass = 1.0 - k as f64 * eps;
        for w in &mut self.weights {
            *w = mass * *w + eps;
        }
        self.exploration = Some(eps);
    }

    /// The released code's policy after its update at step `t`.
    fn code_policy(&mut self, t: u64) {
        let k = self.domains.len();
        let eps_prev = self.code_eps;
        self.code_eps = exploration_rate(k, t);
        let eps = self.config.exploration.unwrap_or(self.code_eps);
        let has_distribution = match self.rule {
            // R_i / Σ_j R_j = softmax(ln R); ε_prev cancels in the code's expression.
            OdmRule::ReferenceCode => softmax_into(&self.rewards, 1.0, &mut self.weights),
            _ => softmax_into(&self.rewards, eps_prev, &mut self.weights),
        };
        if !has_distribution {
            // No domain drawn since the warm-up: Σ R = 0 (the code would divide by zero), so
            // keep the current policy.
            return;
        }
        let mass = 1.0 - k as f64 * eps;
        let mut sum = 0.0;
        for w in &mut self.weights {
            *w = mass * *w + eps;
            sum += *w;
        }
        // The code renormalises (`pi = w / sum(w)`); the sum is 1 up to rounding.
        for w in &mut self.weights {
            *w /= sum;
        }
        self.exploration = Some(eps);
    }
}

impl Mixer for OdmMixer {
    fn kind(&self) -> &'static str {
        OdmConfig::KIND
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
        let learn = step > self.config.warmup_steps;
        if learn {
            // Compute every new reward before writing any, so that a rejected step leaves the
            // state untouched; the scratch buffer keeps this allocation-free.
            for (i, d) in feedback.domains().iter().enumerate() {
                if d.drawn() {
                    self.scratch[i] = self.new_reward(i, d, step)?;
                }
            }
            for (i, d) in feedback.domains().iter().enumerate() {
                if d.drawn() {
                    self.rewards[i] = self.scratch[i];
                }
            }
            self.updates += 1;
        }
        self.last_step = Some(step);
        match self.rule {
            OdmRule::Paper => self.paper_policy(step + 1),
            OdmRule::ReferenceCode | OdmRule::Exp3 if learn => self.code_policy(step),
            OdmRule::ReferenceCode | OdmRule::Exp3 => {}
        }
        Ok(())
    }

    fn state(&self) -> mixlab_mixing::Result<Value> {
        let kind = self.kind();
        let state = OdmState {
            kind: kind.to_owned(),
            config: serde_json::to_string(&self.config)
                .map_err(|e| MixingError::state(kind, e.to_string()))?,
            domains: self.domains.clone(),
            weights: self.weights.clone(),
            rewards: self.rewards.clone(),
            code_eps: self.code_eps,
            exploration: self.exploration,
            last_step: self.last_step,
            updates: self.updates,
        };
        serde_json::to_value(state).map_err(|e| MixingError::state(kind, e.to_string()))
    }

    fn restore_state(&mut self, state: &Value) -> mixlab_mixing::Result<()> {
        let kind = self.kind();
        let s: OdmState = serde_json::from_value(state.clone())
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
        if s.weights.len() != k || s.rewards.len() != k {
            return Err(MixingError::state(
                kind,
                "weights or rewards have the wrong length",
            ));
        }
        for (i, &r) in s.rewards.iter().enumerate() {
            // Only the reference-code rule (log space) has a legitimate -inf: R = 0.
            let log_zero = self.rule == OdmRule::ReferenceCode && r == f64::NEG_INFINITY;
            if !r.is_finite() && !log_zero {
                return Err(OdmError::BadStateReward {
                    domain: self.domains.name(i).unwrap_or("?").to_owned(),
                    value: r,
                }
                .into());
            }
        }
        mixlab_mixing::check_distribution(&self.domains, &s.weights, "checkpointed ODM weights")?;
        self.weights = s.weights;
        self.rewards = s.rewards;
        self.code_eps = s.code_eps;
        self.exploration = s.exploration;
        self.last_step = s.last_step;
        self.updates = s.updates;
        Ok(())
    }

    fn internals(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("rule".into(), Value::from(self.rule.name()));
        m.insert(
            "rewards".into(),
            Value::Object(named_values(&self.domains, &self.rewards())),
        );
        if self.rule == OdmRule::ReferenceCode {
            let logs: Map<String, Value> = self
                .domains
                .names()
                .iter()
                .zip(&self.rewards)
                .map(|(n, &r)| (n.clone(), r.is_finite().then_some(r).into()))
                .collect();
            m.insert("log_rewards".into(), Value::Object(logs));
        }
        m.insert("exploration".into(), self.exploration.into());
        m.insert("updates".into(), Value::from(self.updates));
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exploration_rate_matches_the_digest_table() {
        // odm-facts.md §1.1: K = 22.
        for (t, expected) in [
            (1000, 0.01185),
            (2000, 0.00838),
            (10_000, 0.00375),
            (100_000, 0.00119),
        ] {
            let eps = exploration_rate(22, t);
            assert!((eps - expected).abs() < 5e-6, "t = {t}: {eps}");
        }
        assert_eq!(exploration_rate(22, 0), 1.0 / 22.0);
        assert_eq!(
            exploration_rate(22, 68),
            1.0 / 22.0,
            "1/K while t <= K ln K ≈ 68"
        );
        assert!(exploration_rate(22, 69) < 1.0 / 22.0);
        assert_eq!(exploration_rate(1, 5), 0.0, "ln 1 = 0");
    }
}
