//! Property tests of mixlab-mixing's building blocks: weight tables always resolve to a
//! probability vector aligned with the domains, feedback survives the flat all-reduce and the
//! JSON-lines format, and static mixers checkpoint exactly.

use mixlab_mixing::{
    DomainSet, FeedbackLine, FeedbackRecord, MixerConfig, MixerContext, StaticConfig, StepFeedback,
    WeightSpec, WeightTable, parse_feedback_line,
};
use proptest::prelude::*;

fn names(k: usize) -> Vec<String> {
    (0..k).map(|i| format!("domain {i}")).collect()
}

proptest! {
    #[test]
    fn tables_resolve_to_a_distribution_in_domain_order(
        weights in proptest::collection::vec(0.0f64..1e6, 1..30),
        rotate in 0usize..30,
    ) {
        prop_assume!(weights.iter().any(|&w| w > 0.0));
        let k = weights.len();
        let domains = DomainSet::new(names(k)).expect("distinct");
        // The table lists the domains in another order than the dataset.
        let mut entries: Vec<(String, f64)> = names(k).into_iter().zip(weights.iter().copied()).collect();
        entries.rotate_left(rotate % k);
        let resolved = WeightTable::new("t", entries).expect("distinct").resolve(&domains, false).expect("valid");
        let total: f64 = weights.iter().sum();
        prop_assert!((resolved.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        for (r, w) in resolved.iter().zip(&weights) {
            prop_assert!((r - w / total).abs() < 1e-12);
        }
    }

    #[test]
    fn temperature_weights_are_a_distribution(
        counts in proptest::collection::vec(0u64..u64::MAX, 1..30),
        temperature in 0.01f64..100.0,
    ) {
        prop_assume!(counts.iter().any(|&c| c > 0));
        let ctx = MixerContext::new(DomainSet::new(names(counts.len())).expect("distinct"))
            .with_token_counts(counts.clone())
            .expect("one count per domain");
        let w = WeightSpec::Temperature(temperature).resolve(&ctx, false).expect("valid");
        prop_assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        for (wi, c) in w.iter().zip(&counts) {
            prop_assert!(wi.is_finite() && *wi >= 0.0);
            prop_assert_eq!(*c == 0, *wi == 0.0);
        }
    }

    #[test]
    fn feedback_survives_flat_reduce_and_json_lines(
        draws in proptest::collection::vec(
            proptest::option::of((1u64..5, 0.0f64..50.0, 0u64..10_000, 0.0f64..10.0)), 1..20),
        step in 1u64..1_000_000,
    ) {
        let k = draws.len();
        let domains = DomainSet::new(names(k)).expect("distinct");
        let mut fb = StepFeedback::new(k);
        for (i, d) in draws.iter().enumerate() {
            if let Some((count, loss, tokens, excess)) = d {
                for _ in 0..*count {
                    fb.add_loss(i, *loss, 1, *tokens);
                }
                if *tokens > 0 {
                    fb.add_excess_loss(i, *excess * *tokens as f64, *tokens);
                }
            }
        }
        let mut flat = Vec::new();
        fb.write_flat(&mut flat);
        let mut back = StepFeedback::new(k);
        back.read_flat(&flat).expect("same length");
        prop_assert_eq!(&back, &fb);

        let line = FeedbackRecord::from_step(step, &fb, &domains).to_json_line();
        let FeedbackLine::Step(record) = parse_feedback_line(&line).expect("parses") else {
            return Err(TestCaseError::fail("not a step line"));
        };
        prop_assert_eq!(record.step, step);
        let mut parsed = StepFeedback::new(k);
        record.to_step_feedback(&domains, &mut parsed).expect("valid");
        for (a, b) in parsed.domains().iter().zip(fb.domains()) {
            prop_assert_eq!(a.loss_count, b.loss_count);
            prop_assert_eq!(a.tokens, b.tokens);
            prop_assert_eq!(a.excess_tokens, b.excess_tokens);
            // JSON numbers may lose the last bit in serde_json's default parser.
            prop_assert!((a.loss_sum - b.loss_sum).abs() <= 1e-12 * b.loss_sum.abs().max(1.0));
            prop_assert!((a.excess_loss_sum - b.excess_loss_sum).abs() <= 1e-12 * b.excess_loss_sum.abs().max(1.0));
        }
    }

    #[test]
    fn static_state_restores_through_text(weights in proptest::collection::vec(0.001f64..1.0, 1..30)) {
        let k = weights.len();
        let ctx = MixerContext::new(DomainSet::new(names(k)).expect("distinct"));
        let config = StaticConfig {
            weights: WeightSpec::Inline(names(k).into_iter().zip(weights).collect()),
            renormalize: false,
        };
        let mut m = config.build(&ctx).expect("valid");
        m.observe(3, &StepFeedback::new(k)).expect("valid");
        let text = serde_json::to_string(&m.state().expect("state")).expect("json");
        let mut fresh = config.build(&ctx).expect("valid");
        fresh.restore_state(&serde_json::from_str(&text).expect("json")).expect("same weights, bit for bit");
        prop_assert_eq!(fresh.weights(), m.weights());
    }
}
