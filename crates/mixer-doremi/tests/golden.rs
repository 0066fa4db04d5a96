//! Golden values of the DoReMi update: K = 3 domains (A, B, C), six steps replayed from
//! `tests/data/golden_feedback.jsonl` (per-domain sums of per-token clipped excess losses and
//! token counts; some domains absent from some steps) through `mixlab_mixing::replay`, for
//! two configs and both averages (`average = "paper"`: α_1 … α_T; `"code"`: α_0 … α_T);
//! plus K = 2 with a domain absent at step 1 (its λ is still ln(vocab)).
//! DoReMi has no warm-up in its reference code, so none is tested here.
//!
//! Expected numbers were computed independently with this Python 3 script (plain floats, the
//! update of odm-facts.md §4 / `DoReMiTrainer.update_domain_weights` and `write_weights`
//! written out directly; it also writes the feedback file), `python3 doremi_golden.py`:
//!
//! ```text
//! # Independent computation of the DoReMi golden values (odm-facts.md §4; doremi/trainer.py
//! # update_domain_weights + write_weights). Weights printed after step t; step 0 = before feedback.
//! from math import exp, log
//! import json
//!
//! NAMES = ["A", "B", "C"]
//! K = 3
//! VOCAB = 50277
//! # step -> {domain index: (sum of per-token clipped excess losses, tokens)}
//! FEED = {
//!     1: {0: (500.0, 1000), 1: (150.0, 500), 2: (1600.0, 2000)},
//!     2: {0: (400.0, 1000), 1: (150.0, 500), 2: (1800.0, 2000)},
//!     3: {0: (450.0, 1000), 1: (100.0, 500), 2: (1400.0, 2000)},
//!     4: {1: (175.0, 500), 2: (1200.0, 2000)},
//!     5: {0: (300.0, 1000), 1: (125.0, 500), 2: (1300.0, 2000)},
//!     6: {0: (500.0, 1000), 1: (50.0, 500)},
//! }
//!
//! def run(sampling, eta, c, feed=FEED, k=K, average="paper"):
//!     s = [x / sum(sampling) for x in sampling]
//!     alpha = list(s)               # train_domain_weights start at the config weights
//!     avg = list(s)
//!     lam = [log(VOCAB)] * k        # perdomain_scores start at log(vocab size)
//!     # "paper" (Algorithm 1) averages alpha_1..alpha_T; "code": train.py registers
//!     # update_counter = 1 with avg = alpha_0 and write_weights increments it before averaging.
//!     n = 1 if average == "code" else 0
//!     def loss_weights():
//!         q = [a / si for a, si in zip(alpha, s)]
//!         return [x / sum(q) for x in q]
//!     out = [(0, list(alpha), list(avg), list(lam), loss_weights())]
//!     for t in sorted(feed):
//!         for i, (tot, tok) in feed[t].items():
//!             lam[i] = tot / tok
//!         logits = [log(a) + eta * l for a, l in zip(alpha, lam)]
//!         z = [exp(x) for x in logits]
//!         soft = [x / sum(z) for x in z]
//!         alpha = [(1 - c) * x + c / k for x in soft]
//!         n += 1
//!         avg = [(a * (n - 1) + w) / n for a, w in zip(avg, alpha)]
//!         out.append((t, list(alpha), list(avg), list(lam), loss_weights()))
//!     return out
//!
//! for name, rows in [("nonuniform", run([0.5, 0.3, 0.2], 1.0, 1e-3)),
//!                    ("uniform_eta_half", run([1.0, 1.0, 1.0], 0.5, 1e-4)),
//!                    # K = 2, domain 1 absent at step 1: its excess loss is still log(VOCAB).
//!                    ("initial_lambda", run([1.0, 1.0], 1.0, 1e-3, {1: {0: (500.0, 1000)},
//!                                                                   2: {1: (300.0, 1000)}}, 2))]:
//!     print(f"// {name}: (step, alpha, average alpha, lambda, loss weights)")
//!     for t, a, v, l, lw in rows:
//!         f = lambda xs: "[" + ", ".join(repr(x) for x in xs) + "]"
//!         print(f"    ({t}, {f(a)}, {f(v)}, {f(l)}, {f(lw)}),")
//!
//! # The code's average; alpha, lambda and the loss weights are those of the paper's rows.
//! for name, rows in [("nonuniform", run([0.5, 0.3, 0.2], 1.0, 1e-3, average="code")),
//!                    ("uniform_eta_half", run([1.0, 1.0, 1.0], 0.5, 1e-4, average="code"))]:
//!     print(f"// {name}, average = code: (step, average alpha)")
//!     for t, a, v, l, lw in rows:
//!         print(f"    ({t}, [{', '.join(repr(x) for x in v)}]),")
//!
//! with open("doremi_feedback.jsonl", "w") as f:
//!     f.write(json.dumps({"domains": NAMES, "vocab_size": VOCAB}) + "\n")
//!     for t in sorted(FEED):
//!         fb = {NAMES[i]: {"loss_sum": 3.0, "loss_count": 1, "sequences": 2, "tokens": tok,
//!                          "excess_loss_sum": tot, "excess_tokens": tok}
//!               for i, (tot, tok) in FEED[t].items()}
//!         f.write(json.dumps({"step": t, "feedback": fb}) + "\n")
//! ```
//!
//! Matching means every value within 1e-12 (the Rust softmax subtracts the maximum first,
//! which changes only the last bits).

use std::path::Path;

use mixlab_mixer_doremi::{Average, DoremiConfig, DoremiMixer};
use mixlab_mixing::{
    DomainSet, FeedbackLog, Mixer, MixerContext, StepFeedback, WeightSpec, replay, replay_context,
};
use serde_json::Value;

/// (step, α, average α, λ, loss weights) after the step; step 0 is before any feedback.
type Row<const K: usize> = (u64, [f64; K], [f64; K], [f64; K], [f64; K]);

/// Output of the script for `nonuniform`.
const NONUNIFORM: [Row<3>; 7] = [
    (
        0,
        [0.5, 0.3, 0.2],
        [0.5, 0.3, 0.2],
        [10.825302995052983, 10.825302995052983, 10.825302995052983],
        [0.3333333333333333, 0.3333333333333333, 0.3333333333333333],
    ),
    (
        1,
        [0.4921651890489699, 0.24194005270401595, 0.2658947582470142],
        [0.4921651890489699, 0.24194005270401595, 0.2658947582470142],
        [0.5, 0.3, 0.8],
        [0.31546310381803877, 0.25846051170810824, 0.4260763844738529],
    ),
    (
        2,
        [
            0.42807298962416945,
            0.19059309401732444,
            0.38133391635850616,
        ],
        [0.46011908933656964, 0.21626657336067018, 0.3236143373027602],
        [0.4, 0.3, 0.9],
        [0.2519465172523831, 0.18695902884918392, 0.561094453898433],
    ),
    (
        3,
        [0.4014449261431409, 0.13941853612416202, 0.4591365377326971],
        [0.4405610349387601, 0.19065056094850077, 0.36878840411273917],
        [0.45, 0.2, 0.7],
        [0.2253219285940677, 0.13042076839392225, 0.6442573030120101],
    ),
    (
        4,
        [0.3783066157822577, 0.11910865060794172, 0.5025847336098005],
        [0.4249974301496345, 0.17276508336336102, 0.4022374864870045],
        [0.45, 0.35, 0.6],
        [0.20635474344496385, 0.10828357216475608, 0.6853616843902801],
    ),
    (
        5,
        [0.31401677777702075, 0.09427888960497671, 0.5917043326180024],
        [0.40280129967511175, 0.15706784461168416, 0.4401308557132041],
        [0.3, 0.25, 0.65],
        [0.161000468601951, 0.08056334607939977, 0.7584361853186493],
    ),
    (
        6,
        [0.29497951028176134, 0.0596319584065132, 0.6453885313117255],
        [0.3848310014428867, 0.14082853024415568, 0.4743404683129577],
        [0.5, 0.1, 0.65],
        [0.14691404045306355, 0.049499324779438, 0.8035866347674984],
    ),
];

/// Output of the script for `uniform_eta_half`.
const UNIFORM_ETA_HALF: [Row<3>; 7] = [
    (
        0,
        [0.3333333333333333, 0.3333333333333333, 0.3333333333333333],
        [0.3333333333333333, 0.3333333333333333, 0.3333333333333333],
        [10.825302995052983, 10.825302995052983, 10.825302995052983],
        [0.3333333333333333, 0.3333333333333333, 0.3333333333333333],
    ),
    (
        1,
        [0.32608715017749323, 0.2950590271073726, 0.3788538227151342],
        [0.32608715017749323, 0.2950590271073726, 0.3788538227151342],
        [0.5, 0.3, 0.8],
        [0.32608715017749323, 0.2950590271073726, 0.3788538227151342],
    ),
    (
        2,
        [0.2982865266016544, 0.2567449955993239, 0.4449684777990217],
        [0.31218683838957384, 0.27590201135334824, 0.4119111502570779],
        [0.4, 0.3, 0.9],
        [0.2982865266016544, 0.2567449955993239, 0.4449684777990217],
    ),
    (
        3,
        [
            0.28986223229581715,
            0.22018563328270974,
            0.48995213442147306,
        ],
        [
            0.30474530302498826,
            0.25732988532980205,
            0.43792481164520963,
        ],
        [0.45, 0.2, 0.7],
        [
            0.28986223229581715,
            0.22018563328270976,
            0.48995213442147306,
        ],
    ),
    (
        4,
        [0.28213119484555743, 0.20387005034363273, 0.5139987548108098],
        [
            0.29909177598013054,
            0.24396492658325972,
            0.45694329743660966,
        ],
        [0.45, 0.35, 0.6],
        [0.28213119484555743, 0.20387005034363273, 0.5139987548108098],
    ),
    (
        5,
        [0.2580700680218766, 0.18188885727734036, 0.560041074700783],
        [
            0.29088743438847975,
            0.23154971272207586,
            0.47756285288944433,
        ],
        [0.3, 0.25, 0.65],
        [0.2580700680218766, 0.1818888572773404, 0.560041074700783],
    ),
    (
        6,
        [0.25535902240240693, 0.14736770471494695, 0.5972732728826461],
        [0.2849660323908009, 0.21751937805422103, 0.49751458955497796],
        [0.5, 0.1, 0.65],
        [0.25535902240240693, 0.14736770471494695, 0.5972732728826461],
    ),
];

/// Output of the script for `initial_lambda`.
const INITIAL_LAMBDA: [Row<2>; 3] = [
    (
        0,
        [0.5, 0.5],
        [0.5, 0.5],
        [10.825302995052983, 10.825302995052983],
        [0.5, 0.5],
    ),
    (
        1,
        [0.0005327588865516313, 0.9994672411134483],
        [0.0005327588865516313, 0.9994672411134483],
        [0.5, 10.825302995052983],
        [0.0005327588865516314, 0.9994672411134484],
    ),
    (
        2,
        [0.001149985791684471, 0.9988500142083154],
        [0.0008413723391180512, 0.9991586276608819],
        [0.5, 0.3],
        [0.0011499857916844713, 0.9988500142083155],
    ),
];

/// Output of the script for `nonuniform, average = code`: (step, average α).
const NONUNIFORM_CODE_AVERAGE: [(u64, [f64; 3]); 7] = [
    (0, [0.5, 0.3, 0.2]),
    (
        1,
        [0.49608259452448494, 0.27097002635200795, 0.2329473791235071],
    ),
    (
        2,
        [0.47341272622437974, 0.2441777155737801, 0.28240955820184016],
    ),
    (
        3,
        [
            0.45542077620407007,
            0.21798792071137557,
            0.32659130308455436,
        ],
    ),
    (
        4,
        [0.4399979441197076, 0.1982120666906888, 0.3617899891896036],
    ),
    (
        5,
        [0.41900108306259315, 0.1808898705097368, 0.40010904642767003],
    ),
    (
        6,
        [0.4012837155224743, 0.1635673116378477, 0.43514897283967796],
    ),
];

/// Output of the script for `uniform_eta_half, average = code`: (step, average α).
const UNIFORM_ETA_HALF_CODE_AVERAGE: [(u64, [f64; 3]); 7] = [
    (
        0,
        [0.3333333333333333, 0.3333333333333333, 0.3333333333333333],
    ),
    (
        1,
        [0.3297102417554133, 0.31419618022035295, 0.35609357802423375],
    ),
    (
        2,
        [0.31923567003749365, 0.2950457853466766, 0.3857185446158297],
    ),
    (
        3,
        [0.3118923106020745, 0.27633074733068486, 0.4117769420672405],
    ),
    (
        4,
        [0.30594008745077106, 0.26183860793327446, 0.4322213046159543],
    ),
    (
        5,
        [
            0.29796175087928867,
            0.24851364949061874,
            0.45352459963009245,
        ],
    ),
    (
        6,
        [0.2918756468111627, 0.2340642288083799, 0.47406012438045725],
    ),
];

/// `expected` with its averages replaced by the code's.
fn with_code_average(expected: &[Row<3>], code: &[(u64, [f64; 3])]) -> Vec<Row<3>> {
    expected
        .iter()
        .zip(code)
        .map(|(row, (step, average))| {
            assert_eq!(row.0, *step);
            (row.0, row.1, *average, row.3, row.4)
        })
        .collect()
}

fn replay_golden(config: DoremiConfig) -> Vec<Value> {
    // The crate's directory at run time: a test binary reused from a target directory shared
    // with another checkout would carry that checkout's path.
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    let path = Path::new(&crate_dir).join("tests/data/golden_feedback.jsonl");
    let log = FeedbackLog::read(&path).expect("golden feedback file");
    let ctx = replay_context(&log, MixerContext::new(DomainSet::pile())).expect("header");
    assert_eq!(
        ctx.vocab_size,
        Some(50277),
        "the header carries the vocabulary size"
    );
    let mut mixer = DoremiMixer::new(config, &ctx).expect("valid config");
    let mut out = Vec::new();
    replay(&mut mixer, &log, &mut out).expect("replays");
    String::from_utf8(out)
        .expect("utf8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

fn close(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= 1e-12,
        "{what}: {actual} vs {expected}"
    );
}

fn check(lines: &[Value], expected: &[Row<3>], sampling: [f64; 3]) {
    assert_eq!(lines.len(), expected.len());
    for (line, (step, alpha, average, lambda, loss_weights)) in lines.iter().zip(expected) {
        assert_eq!(line["step"].as_u64(), Some(*step));
        let internals = &line["internals"];
        for (i, name) in ["A", "B", "C"].into_iter().enumerate() {
            let get = |v: &Value| v[name].as_f64().expect("a number");
            let at = |what: &str| format!("step {step}, {what} of {name}");
            close(get(&internals["domain_weights"]), alpha[i], &at("alpha"));
            close(
                get(&internals["average_domain_weights"]),
                average[i],
                &at("average"),
            );
            close(get(&internals["excess_losses"]), lambda[i], &at("lambda"));
            close(
                get(&line["loss_weights"]),
                loss_weights[i],
                &at("loss weight"),
            );
            // The proxy samples from fixed weights.
            close(get(&line["weights"]), sampling[i], &at("sampling weight"));
        }
    }
}

fn nonuniform_config(average: Average) -> DoremiConfig {
    DoremiConfig {
        sampling_weights: WeightSpec::Inline(
            [
                ("A".to_owned(), 0.5),
                ("B".to_owned(), 0.3),
                ("C".to_owned(), 0.2),
            ]
            .into(),
        ),
        average,
        ..DoremiConfig::default()
    }
}

fn uniform_eta_half_config(average: Average) -> DoremiConfig {
    DoremiConfig {
        eta: 0.5,
        smoothing: 1e-4,
        average,
        ..DoremiConfig::default()
    }
}

#[test]
fn nonuniform_sampling_default_hyper_parameters_paper_average() {
    let config = nonuniform_config(Average::Paper);
    check(&replay_golden(config), &NONUNIFORM, [0.5, 0.3, 0.2]);
}

#[test]
fn nonuniform_sampling_default_hyper_parameters_code_average() {
    assert_eq!(
        DoremiConfig::default().average,
        Average::Code,
        "the reference code's average is the default"
    );
    let expected = with_code_average(&NONUNIFORM, &NONUNIFORM_CODE_AVERAGE);
    check(
        &replay_golden(nonuniform_config(Average::Code)),
        &expected,
        [0.5, 0.3, 0.2],
    );
}

#[test]
fn uniform_sampling_eta_one_half_paper_average() {
    let third = 1.0 / 3.0;
    check(
        &replay_golden(uniform_eta_half_config(Average::Paper)),
        &UNIFORM_ETA_HALF,
        [third, third, third],
    );
}

#[test]
fn uniform_sampling_eta_one_half_code_average() {
    let third = 1.0 / 3.0;
    let expected = with_code_average(&UNIFORM_ETA_HALF, &UNIFORM_ETA_HALF_CODE_AVERAGE);
    check(
        &replay_golden(uniform_eta_half_config(Average::Code)),
        &expected,
        [third, third, third],
    );
}

#[test]
fn a_domain_absent_at_the_start_has_excess_loss_ln_vocab() {
    let domains = DomainSet::new(["d0", "d1"]).expect("valid");
    let ctx = MixerContext::new(domains).with_vocab_size(50277);
    let config = DoremiConfig {
        average: Average::Paper,
        ..DoremiConfig::default()
    };
    let mut m = DoremiMixer::new(config, &ctx).expect("valid");
    let steps: [(usize, f64, u64); 2] = [(0, 500.0, 1000), (1, 300.0, 1000)];
    let check_row = |m: &DoremiMixer, row: &Row<2>| {
        for i in 0..2 {
            close(m.domain_weights()[i], row.1[i], "alpha");
            close(m.average_domain_weights()[i], row.2[i], "average");
            close(m.excess_losses()[i], row.3[i], "lambda");
            close(
                m.loss_weights().expect("DoReMi has loss weights")[i],
                row.4[i],
                "loss weight",
            );
        }
    };
    check_row(&m, &INITIAL_LAMBDA[0]);
    for (j, (domain, excess_sum, tokens)) in steps.into_iter().enumerate() {
        let mut fb = StepFeedback::new(2);
        fb.add_loss(domain, 3.0, 1, tokens);
        fb.add_excess_loss(domain, excess_sum, tokens);
        m.observe(j as u64 + 1, &fb).expect("valid");
        check_row(&m, &INITIAL_LAMBDA[j + 1]);
    }
}
