//! One ODM mixer step: read the sampling weights, then observe a step of 8 micro-batches
//! (the paper's G = 8), for K = 22 (The Pile) and K = 1000 domains and each rule.
//!
//! Run with `cargo bench -p mixlab-mixer-odm`.

// criterion_group! generates a public function without a doc comment.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use mixlab_mixer_odm::{OdmConfig, OdmMixer, OdmRule};
use mixlab_mixing::{DomainSet, Mixer, MixerContext, StepFeedback, WeightSpec};

fn step(c: &mut Criterion) {
    let mut group = c.benchmark_group("odm_weights_plus_observe");
    for k in [22usize, 1000] {
        for rule in [OdmRule::Paper, OdmRule::ReferenceCode, OdmRule::Exp3] {
            let domains = DomainSet::new((0..k).map(|i| format!("domain-{i}"))).expect("distinct");
            let config = OdmConfig::new(rule).with_initial_weights(WeightSpec::Uniform);
            let mut mixer = OdmMixer::new(config, &MixerContext::new(domains)).expect("valid");
            let mut feedback = StepFeedback::new(k);
            for g in 0..8 {
                feedback.add_loss((g * 7919) % k, 2.5 + g as f64 * 0.1, 60, 61_440);
            }
            // Start past the warm-up and the ε = 1/K phase, as in most of a run.
            let mut t = 10_000u64;
            group.bench_function(BenchmarkId::new(rule.name(), k), |b| {
                b.iter(|| {
                    black_box(mixer.weights()[0]);
                    t += 1;
                    mixer
                        .observe(t, black_box(&feedback))
                        .expect("valid feedback");
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, step);
criterion_main!(benches);
