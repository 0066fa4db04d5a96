//! What each run of a plan is expected to cost, so that the scheduler starts the chains with the
//! most work first (on 2 cores, `quick`'s Aioli run alone is a fifth of the plan's work).
//!
//! Only the order of the runs depends on it, never a number they compute.

use mixlab_mixing::{DomainSet, MixerContext, MixerRegistry};

use crate::method::Method;
use crate::plan::Plan;

/// A training step's forward and backward pass, in forward passes (the backward pass's two
/// products per forward product).
const STEP_PASSES: u64 = 3;

/// A run's expected work in tokens through a forward pass: its training steps (forward and
/// backward), the reference model's forward pass for a method that trains against one (DoReMi's
/// proxy), and its validations, periodic and those its mixer asks for (Aioli's probes), at most
/// `eval_max_sequences` per domain, and the test perplexity of a reported run. Multiple choice
/// is left out (every reported run pays the same), and so is a mixer's own arithmetic (ADO's
/// fits: a few percent of a run).
pub(super) fn expected_work(plan: &Plan, method: &Method, mixers: &MixerRegistry) -> u64 {
    let p = &plan.preset;
    let seq = p.seq_len as u64;
    let step_tokens = p.batch_size as u64 * seq;
    let domains = plan.dataset.domains.len() as u64;
    let mut work = STEP_PASSES * p.steps * step_tokens;
    if method.reference_model.is_some() {
        work += p.steps * step_tokens;
    }
    work += validations(plan, method, mixers) * domains * p.eval_max_sequences * seq;
    if method.reported {
        work += domains * p.test_max_sequences * seq;
    }
    work
}

/// The validations a run makes: one after every `eval_interval`-th step and the last, and one
/// wherever the mixer asks (the trainer measures once when both fall on a step). The mixer is
/// built from the method's table on the plan's domains, with a uniform mixture for weights that
/// come from another run (which may not exist yet); a mixer that cannot be built so (one that
/// needs the data's token counts, say) counts the periodic validations only.
fn validations(plan: &Plan, method: &Method, mixers: &MixerRegistry) -> u64 {
    let steps = plan.preset.steps;
    let interval = plan.preset.eval_interval;
    let periodic =
        |step: u64| interval > 0 && step > 0 && (step.is_multiple_of(interval) || step == steps);
    let mut table = method.mixer.clone();
    for key in method.dataset_weights.keys() {
        table.insert(key.clone(), "uniform".into());
    }
    let mixer = DomainSet::new(plan.dataset.domains.iter().cloned())
        .ok()
        .and_then(|domains| mixers.build(&table, &MixerContext::new(domains)).ok())
        .filter(|mixer| mixer.needs_validation());
    (0..=steps)
        .filter(|&step| periodic(step) || mixer.as_ref().is_some_and(|m| m.wants_validation(step)))
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::PlanKind;
    use crate::testing::{mixers, synthetic_plan};

    /// `quick` (160 steps of 16 × 128 tokens, 11 domains, validations of 16 sequences per domain
    /// every 16 steps, test perplexity on 64): a fixed mixture's run is its training, ten
    /// validations and the test; DoReMi's proxy adds the reference model's forward pass and has
    /// no test; Aioli adds the validations its schedule asks for.
    #[test]
    fn the_work_counts_training_reference_and_validations() {
        let (plan, mixers) = (synthetic_plan(PlanKind::Reproduce, "quick"), mixers());
        let work = |id: &str| expected_work(&plan, plan.method(id).expect(id), &mixers);
        let step = 16 * 128;
        let validation = 11 * 16 * 128;
        let test = 11 * 64 * 128;
        assert_eq!(work("tpw"), 3 * 160 * step + 10 * validation + test);
        assert_eq!(work("doremi"), work("tpw"));
        assert_eq!(work("doremi-proxy"), 4 * 160 * step + 10 * validation);
        // Aioli at this budget: rounds of 40 steps opening with 2 sweeps of one-step probes over
        // the 11 domains. It asks after steps 0, 40, 80, 120 and 160 (a round's start) and after
        // each probe (steps 1-22 of each round): 5 + 4 · 22 = 93. Of the periodic validations
        // (16, 32, …, 160) 32, 64, 112 and 144 fall outside those: 97 in all, as many as the
        // `eval` and `mixer-eval` lines of a `quick` Aioli run's metrics (10 and 87).
        assert_eq!(work("aioli"), 3 * 160 * step + 97 * validation + test);
    }
}
