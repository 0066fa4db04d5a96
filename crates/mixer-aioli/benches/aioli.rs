//! Aioli's own cost, for K = 22 (The Pile) and K = 1000 domains: one whole round (a validation
//! at its start, K one-step probes each followed by a validation, the O(K²) estimate and
//! update, then exploit steps), and an exploit step alone (read the weights, observe).
//! The validations themselves are the trainer's work and are not measured here: the mixer
//! receives their losses.
//!
//! Run with `cargo bench -p mixlab-mixer-aioli`.

// criterion_group! generates a public function without a doc comment.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mixlab_mixer_aioli::{AioliConfig, AioliMixer};
use mixlab_mixing::{DomainSet, Mixer, MixerContext, StepFeedback};

/// Exploit steps per round in the benchmark.
const EXPLOIT: u64 = 100;

/// One sweep of one-step probes, then `EXPLOIT` steps on the learned mixture.
fn config(k: usize) -> AioliConfig {
    AioliConfig {
        lp_rounds: 1,
        lp_steps: 1,
        update_steps: k as u64 + EXPLOIT,
        ..AioliConfig::default()
    }
}

fn feedback(k: usize, t: u64) -> StepFeedback {
    let mut feedback = StepFeedback::new(k);
    for g in 0..8u64 {
        let d = ((g as usize + t as usize * 8) * 7919) % k;
        feedback.add_loss(d, 2.5 + 3.0 / (1.0 + t as f64 / 10.0), 60, 61_440);
    }
    feedback
}

fn losses(k: usize, step: u64) -> Vec<Option<f64>> {
    (0..k)
        .map(|i| Some(3.0 + (i % 7) as f64 * 0.1 + 2.0 / (1.0 + step as f64 / 50.0)))
        .collect()
}

/// Observes `step` and hands over the validation Aioli asks for after it.
fn advance(m: &mut AioliMixer, k: usize, step: u64, fb: &StepFeedback) {
    m.observe(step, fb).expect("valid feedback");
    if m.wants_validation(step) {
        m.observe_validation(step, &losses(k, step))
            .expect("valid losses");
    }
}

fn round(c: &mut Criterion) {
    let mut group = c.benchmark_group("aioli_round");
    group.sample_size(20);
    for k in [22usize, 1000] {
        let domains = DomainSet::new((0..k).map(|i| format!("domain-{i}"))).expect("distinct");
        let mut mixer = AioliMixer::new(config(k), &MixerContext::new(domains)).expect("valid");
        let per_round = k as u64 + EXPLOIT;
        // One round done, so the measured one updates an existing EMA, as nearly every round.
        mixer
            .observe_validation(0, &losses(k, 0))
            .expect("round start");
        let steps: Vec<StepFeedback> = (1..=2 * per_round).map(|t| feedback(k, t)).collect();
        for t in 1..=per_round {
            advance(&mut mixer, k, t, &steps[t as usize - 1]);
        }
        assert_eq!(mixer.rounds_done(), 1);
        group.throughput(Throughput::Elements(per_round));
        group.bench_function(BenchmarkId::new("steps-per-round", format!("K={k}")), |b| {
            b.iter_batched(
                || mixer.clone(),
                |mut m| {
                    for t in per_round + 1..=2 * per_round {
                        black_box(m.weights()[0]);
                        advance(&mut m, k, t, black_box(&steps[t as usize - 1]));
                    }
                    assert_eq!(m.rounds_done(), 2);
                    m
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn exploit_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("aioli_exploit_step");
    for k in [22usize, 1000] {
        let domains = DomainSet::new((0..k).map(|i| format!("domain-{i}"))).expect("distinct");
        let mut mixer = AioliMixer::new(config(k), &MixerContext::new(domains)).expect("valid");
        mixer
            .observe_validation(0, &losses(k, 0))
            .expect("round start");
        // Up to the first exploit step.
        for t in 1..=k as u64 {
            advance(&mut mixer, k, t, &feedback(k, t));
        }
        let steps: Vec<StepFeedback> = (1..=EXPLOIT - 1)
            .map(|i| feedback(k, k as u64 + i))
            .collect();
        group.throughput(Throughput::Elements(steps.len() as u64));
        group.bench_function(BenchmarkId::new("steps", format!("K={k}")), |b| {
            b.iter_batched(
                || mixer.clone(),
                |mut m| {
                    for (t, fb) in (k as u64 + 1..).zip(&steps) {
                        black_box(m.weights()[0]);
                        m.observe(t, black_box(fb)).expect("valid");
                    }
                    m
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, round, exploit_step);
criterion_main!(benches);
