//! ADO's steps between refits (read the sampling weights, observe a step of 8 micro-batches),
//! for K = 22 (The Pile) and K = 1000 domains, and one domain's refit on 100 and 1000 points.
//!
//! Run with `cargo bench -p mixlab-mixer-ado`.

// criterion_group! generates a public function without a doc comment.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
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
        // 31 steps, fitted at the last (code iteration 30 = step 31): the measured steps are
        // between refits, with the laws in place, as nearly every step of a run is.
        let mut mixer = AdoMixer::new(config(k), &MixerContext::new(domains)).expect("valid");
        for t in 1..=31 {
            mixer.observe(t, &feedback(k, t)).expect("valid feedback");
        }
        assert!(mixer.laws().is_some(), "fitted before the measured step");
        // The 29 steps up to the next refit (step 61), each observed once per iteration on a
        // clone made outside the measurement: the history grows as in a run (amortised), and
        // the time per step is the iteration's time / 29.
        let steps: Vec<StepFeedback> = (32..=60).map(|t| feedback(k, t)).collect();
        group.throughput(Throughput::Elements(steps.len() as u64));
        group.bench_function(BenchmarkId::new("between-fits-29-steps", k), |b| {
            b.iter_batched(
                || mixer.clone(),
                |mut m| {
                    for (t, fb) in (32..).zip(&steps) {
                        black_box(m.weights()[0]);
                        m.observe(t, black_box(fb)).expect("valid feedback");
                    }
                    m
                },
                BatchSize::SmallInput,
            )
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
