//! One ADO step between refits (read the sampling weights, observe a step of 8 micro-batches),
//! and one refit of every domain's law, for K = 22 (The Pile) and K = 1000 domains.
//!
//! Run with `cargo bench -p mixlab-mixer-ado`.

// criterion_group! generates a public function without a doc comment.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use mixlab_mixer_ado::{AdoConfig, AdoMixer, fit_law, law::FitData, law::LawParams};
use mixlab_mixing::{DomainSet, Mixer, MixerContext, StepFeedback, WeightSpec};

/// ADO with its schedule shortened so that the laws exist after 30 steps; the floor scaled
/// so that K · floor ≤ 1 (the reference's 0.01 suits up to 100 domains).
fn config(k: usize) -> AdoConfig {
    AdoConfig {
        prior: WeightSpec::Uniform,
        ignore_steps: 0,
        start_step: 30,
        update_interval: 30,
        smoothing_window: 11,
        fit_stride: 3,
        min_probability: (0.01f64).min(0.1 / k as f64),
        ..AdoConfig::default()
    }
}

fn feedback(k: usize, t: u64) -> StepFeedback {
    let mut feedback = StepFeedback::new(k);
    for g in 0..8u64 {
        let d = ((g as usize + t as usize * 8) * 7919) % k;
        feedback.add_loss(
            d,
            2.5 + 3.0 / (1.0 + t as f64 / 10.0) + g as f64 * 0.01,
            60,
            61_440,
        );
    }
    feedback
}

fn step(c: &mut Criterion) {
    let mut group = c.benchmark_group("ado_weights_plus_observe");
    for k in [22usize, 1000] {
        let domains = DomainSet::new((0..k).map(|i| format!("domain-{i}"))).expect("distinct");
        let config = AdoConfig {
            // No refit inside the measured steps: they are measured separately below.
            update_interval: 1_000_000,
            start_step: 30,
            ..config(k)
        };
        let mut mixer = AdoMixer::new(config, &MixerContext::new(domains)).expect("valid");
        let mut t = 0u64;
        group.bench_function(BenchmarkId::new("between-fits", k), |b| {
            b.iter(|| {
                black_box(mixer.weights()[0]);
                t += 1;
                mixer
                    .observe(t, black_box(&feedback(k, t)))
                    .expect("valid feedback");
            })
        });
    }
    group.finish();
}

fn refit(c: &mut Criterion) {
    // One domain's fit over the 512 starts, on 100 and 1000 points of a noisy law: a refit
    // costs this times K, divided by the cores.
    let mut group = c.benchmark_group("ado_fit_one_domain");
    group.sample_size(10);
    let law = LawParams {
        a: 1.2,
        e: 0.7,
        alpha: 0.3,
    };
    for points in [100usize, 1000] {
        let data = FitData::new((1..=points).map(|i| {
            let n = 480.0 * 10.0 * i as f64;
            let noise = 1.0 + 0.003 * (((i * 7919) % 13) as f64 / 6.0 - 1.0);
            (n, law.loss(n) * noise)
        }));
        group.bench_function(BenchmarkId::new("points", points), |b| {
            b.iter(|| black_box(fit_law(black_box(&data))))
        });
    }
    group.finish();
}

criterion_group!(benches, step, refit);
criterion_main!(benches);
