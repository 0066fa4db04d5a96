//! The [`Mixer`] trait: the seam between the trainer and a data-mixing strategy.

use std::fmt;

use crate::{DomainSet, MixingError, Result, StepFeedback, WeightTable};

/// A data-mixing strategy: a small state machine over the domains of a dataset.
///
/// The trainer holds it as `Box<dyn Mixer>` and, for every optimizer step `t = 1, 2, ...`:
/// 1. reads [`weights`](Self::weights) (and [`loss_weights`](Self::loss_weights)) to plan step `t`,
/// 2. trains, collecting per-domain sums and counts into a [`StepFeedback`],
/// 3. calls [`observe(t, &feedback)`](Self::observe); afterwards `weights()` is the distribution
///    for step `t + 1`.
///
/// A mixer with [`loss_weights`](Self::loss_weights) is observed *before* step `t`'s gradient:
/// the trainer measures step `t`'s feedback with a forward pass without gradients, calls
/// `observe(t)`, and weights step `t`'s loss with `loss_weights()` as they are afterwards (DoReMi's
/// Algorithm 1 trains θ_t on L(θ_{t−1}, α_t)). This costs one extra forward pass per step, for
/// such mixers only.
///
/// A mixer owns no model, no data and no random-number generator of the trainer: it is a pure
/// function of its configuration and the feedback it has observed, so its whole state can be
/// checkpointed with [`state`](Self::state) and resumed with [`restore_state`](Self::restore_state).
pub trait Mixer: Send + fmt::Debug {
    /// The registry tag of this mixer (`"static"`, `"odm"`, `"doremi"`, ...).
    fn kind(&self) -> &'static str;

    /// The domains, in the order of every weight and feedback vector.
    fn domains(&self) -> &DomainSet;

    /// The sampling distribution for the next step: one probability per domain, summing to 1.
    fn weights(&self) -> &[f64];

    /// The mixture the mixer has learned so far: what `weights()` returns, except for a mixer
    /// that sometimes samples another mixture to learn from it (Aioli's probes), which returns
    /// the mixture it would train on. The trainer reports it as the run's final weights.
    fn policy(&self) -> &[f64] {
        self.weights()
    }

    /// Per-domain multipliers for the training loss (a DoReMi proxy's objective), or `None`
    /// for the plain mean loss. The trainer weights each token's loss by its domain's entry and
    /// divides by the sum of the weights over the batch's tokens. They are read after
    /// [`observe`](Self::observe) of the same step (see the trait's documentation), and the
    /// trainer logs them as that step's `loss_weights`.
    fn loss_weights(&self) -> Option<&[f64]> {
        None
    }

    /// Whether [`observe`](Self::observe) needs the reference model's excess losses
    /// (`excess_loss_sum`, `excess_tokens`) in the feedback.
    fn needs_reference_model(&self) -> bool {
        false
    }

    /// Whether this mixer learns from the model's per-domain validation losses (Aioli measures
    /// the effect of its probe mixtures on held-out loss). A run without validation is then
    /// refused before it starts.
    fn needs_validation(&self) -> bool {
        false
    }

    /// Whether the mixer wants the per-domain validation losses of the model as it is after
    /// step `step` (0: before the first step). The trainer asks after `observe(step)` (and
    /// before step 1 for `step = 0`); if so, it measures the model on the validation split and
    /// calls [`observe_validation`](Self::observe_validation) before reading the weights of
    /// step `step + 1`. Only mixers with [`needs_validation`](Self::needs_validation) are asked.
    fn wants_validation(&self, _step: u64) -> bool {
        false
    }

    /// Learns from the model's mean validation loss per domain (nats per token, domain order;
    /// `None` for a domain without validation data) after step `step`, as requested by
    /// [`wants_validation`](Self::wants_validation). Check the losses with
    /// [`check_validation_losses`] before changing any state.
    fn observe_validation(&mut self, step: u64, _losses: &[Option<f64>]) -> Result<()> {
        Err(MixingError::Validation {
            kind: self.kind().to_owned(),
            step,
            message: "this mixer does not learn from validation losses".into(),
        })
    }

    /// Learns from the feedback of step `step` (1-based, strictly increasing across calls).
    ///
    /// Invalid feedback (a negative, NaN or infinite loss) is rejected with an error before any
    /// state changes, so a failed call leaves the mixer as it was.
    fn observe(&mut self, step: u64, feedback: &StepFeedback) -> Result<()>;

    /// The complete state, for a checkpoint. Restoring it into a mixer built from the same
    /// configuration and continuing gives bit-identical weights to never having stopped.
    fn state(&self) -> Result<serde_json::Value>;

    /// Restores a state written by [`state`](Self::state) of a mixer with the same configuration
    /// and domains; anything else is an error.
    fn restore_state(&mut self, state: &serde_json::Value) -> Result<()>;

    /// Internal quantities worth logging or replaying (rewards, exploration rate, ...), keyed
    /// by name. Not for the hot path: it allocates.
    fn internals(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }

    /// A weight table this mixer produces for a later static run (DoReMi: its averaged domain
    /// weights), if it produces one.
    fn output_table(&self) -> Option<WeightTable> {
        None
    }
}

/// The checks every stateful mixer makes before restoring a checkpointed state: the state was
/// written by the same kind of mixer, over the same domains, with the same config (compared as
/// its JSON serialisation, which is what the state stores).
pub fn check_state_header(
    kind: &str,
    domains: &DomainSet,
    config: &impl serde::Serialize,
    saved_kind: &str,
    saved_domains: &DomainSet,
    saved_config: &str,
) -> Result<()> {
    if saved_kind != kind {
        return Err(MixingError::state(
            kind,
            format!("the checkpoint holds a `{saved_kind}` mixer"),
        ));
    }
    if saved_domains != domains {
        return Err(MixingError::state(
            kind,
            format!(
                "the checkpoint's domains ({}) differ from the dataset's",
                saved_domains.describe()
            ),
        ));
    }
    let config =
        serde_json::to_string(config).map_err(|e| MixingError::state(kind, e.to_string()))?;
    if saved_config != config {
        return Err(MixingError::state(
            kind,
            format!(
                "the checkpoint was written with the config {saved_config}, this mixer has {config}"
            ),
        ));
    }
    Ok(())
}

/// Checks that `step` may follow `last` (the last observed step): steps count from 1 and
/// strictly increase. Gaps are allowed (a resumed or sub-sampled run).
pub fn check_step(last: Option<u64>, step: u64) -> Result<()> {
    if step == 0 {
        return Err(MixingError::StepZero);
    }
    match last {
        Some(last) if step <= last => Err(MixingError::StepOrder { step, last }),
        _ => Ok(()),
    }
}

/// Checks that `weights` is a probability vector over `domains` (finite, non-negative, sum 1
/// within 1e-9); the error names the first offending domain.
pub fn check_distribution(domains: &DomainSet, weights: &[f64], origin: &str) -> Result<()> {
    if weights.len() != domains.len() {
        return Err(MixingError::FeedbackShape {
            expected: domains.len(),
            got: weights.len(),
        });
    }
    for (i, &w) in weights.iter().enumerate() {
        if !w.is_finite() || w < 0.0 {
            return Err(MixingError::InvalidWeight {
                origin: origin.to_owned(),
                domain: domains.name(i).unwrap_or("?").to_owned(),
                value: w,
            });
        }
    }
    let sum: f64 = weights.iter().sum();
    if (sum - 1.0).abs() > 1e-9 {
        return Err(MixingError::parse(
            origin,
            format!("weights sum to {sum}, not 1"),
        ));
    }
    Ok(())
}

/// Checks validation losses handed to mixer `kind`: one per domain, each absent or a finite,
/// non-negative number; the error names the first offending domain.
pub fn check_validation_losses(
    kind: &str,
    domains: &DomainSet,
    step: u64,
    losses: &[Option<f64>],
) -> Result<()> {
    let error = |message: String| MixingError::Validation {
        kind: kind.to_owned(),
        step,
        message,
    };
    if losses.len() != domains.len() {
        return Err(error(format!(
            "{} losses for {} domains",
            losses.len(),
            domains.len()
        )));
    }
    for (i, loss) in losses.iter().enumerate() {
        if let Some(l) = loss
            && !(l.is_finite() && *l >= 0.0)
        {
            return Err(error(format!(
                "domain {:?} has the loss {l}",
                domains.name(i).unwrap_or("?")
            )));
        }
    }
    Ok(())
}

/// Maps each weight to its domain name, for logs and replay output.
pub fn named_values(
    domains: &DomainSet,
    values: &[f64],
) -> serde_json::Map<String, serde_json::Value> {
    domains
        .names()
        .iter()
        .zip(values)
        .map(|(n, &v)| (n.clone(), serde_json::Value::from(v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_start_at_one_and_increase() {
        check_step(None, 1).expect("first step");
        check_step(None, 99).expect("resumed run may start later");
        check_step(Some(3), 5).expect("gap");
        assert!(matches!(check_step(None, 0), Err(MixingError::StepZero)));
        assert!(matches!(
            check_step(Some(3), 3),
            Err(MixingError::StepOrder { step: 3, last: 3 })
        ));
    }

    #[test]
    fn validation_losses_are_checked() {
        let d = DomainSet::new(["a", "b"]).expect("valid");
        check_validation_losses("k", &d, 3, &[Some(2.0), None]).expect("valid");
        let e = check_validation_losses("k", &d, 3, &[Some(2.0), Some(f64::NAN)])
            .expect_err("NaN")
            .to_string();
        assert!(e.contains("after step 3") && e.contains("\"b\""), "{e}");
        assert!(check_validation_losses("k", &d, 3, &[Some(1.0)]).is_err());
    }

    #[test]
    fn distributions_are_checked() {
        let d = DomainSet::new(["a", "b"]).expect("valid");
        check_distribution(&d, &[0.25, 0.75], "t").expect("valid");
        assert!(check_distribution(&d, &[0.5, 0.6], "t").is_err());
        assert!(check_distribution(&d, &[1.5, -0.5], "t").is_err());
        assert!(check_distribution(&d, &[1.0], "t").is_err());
        let named = named_values(&d, &[0.25, 0.75]);
        assert_eq!(named["b"], serde_json::json!(0.75));
    }
}
