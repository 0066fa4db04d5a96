//! Golden values of the three ODM rules: K = 3 domains (A, B, C), initial weights
//! (0.5, 0.3, 0.2), warm-up of 100 steps, and six recorded steps 99..=104 (two in the warm-up,
//! four updates), replayed from `tests/data/golden_feedback.jsonl` through
//! `mixlab_mixing::replay` exactly as `experiments replay-mixer` does.
//!
//! Expected numbers were computed independently with this Python 3 script (plain floats, the
//! formulas of odm-facts.md §1.1 and §1.2 written out directly; it also writes the feedback
//! file), `python3 odm_golden.py`:
//!
//! ```text
//! # Independent computation of the ODM golden values (odm-facts.md §1.1, §1.2; issue 3).
//! # Semantics: weights printed after step t are the policy for step t+1; step 0 = before any feedback.
//! from math import exp, log, sqrt
//!
//! K = 3
//! INIT = [0.5, 0.3, 0.2]
//! W = 100  # warmup_steps
//! ALPHA = 0.9
//! # step -> {domain index: [micro-batch losses]}
//! FEED = {
//!     99: {0: [3.2, 3.0], 1: [2.9], 2: [3.5]},
//!     100: {0: [3.1], 1: [2.8, 2.7], 2: [3.4]},
//!     101: {0: [3.0, 2.9, 3.1], 2: [3.3]},
//!     102: {0: [2.9], 1: [2.6], 2: [3.2, 3.3]},
//!     103: {0: [2.8], 1: [2.5], 2: [3.1, 3.1]},
//!     104: {2: [3.0, 3.0, 3.0, 3.0]},
//! }
//!
//! def eps(t):
//!     return 1 / K if t == 0 else min(1 / K, sqrt(log(K) / (K * t)))
//!
//! def agg(losses, how):
//!     s = 0.0
//!     for x in losses:
//!         s += x
//!     return s if how == "sum" else s / len(losses)
//!
//! def paper(how):
//!     R = [0.0] * K
//!     def policy(t):  # Algorithm 1: pi_t = (1 - K eps_t) softmax(eps_{t-1} R) + eps_t
//!         if t <= W:
//!             return list(INIT)
//!         z = [exp(eps(t - 1) * r) for r in R]
//!         s = sum(z)
//!         return [(1 - K * eps(t)) * zi / s + eps(t) for zi in z]
//!     pi = policy(1)
//!     out = [(0, pi, list(R))]
//!     for t in sorted(FEED):
//!         if t > W:
//!             for i, ls in FEED[t].items():
//!                 R[i] = ALPHA * R[i] + (1 - ALPHA) * agg(ls, how) / pi[i]
//!         pi = policy(t + 1)
//!         out.append((t, pi, list(R)))
//!     return out
//!
//! def reference_code():
//!     # SmoothedMeanWeightUpdater.group_update, called at iteration t > W.
//!     R = [0.0] * K
//!     e = 1 / K
//!     pi = list(INIT)
//!     out = [(0, pi, list(R))]
//!     for t in sorted(FEED):
//!         if t > W:
//!             e_prev, e = e, eps(t)
//!             for i, ls in FEED[t].items():
//!                 R[i] = ALPHA * R[i] + (1 - ALPHA) * exp(agg(ls, "mean"))
//!             tot = sum(r * e_prev for r in R)
//!             w = [r * e_prev * (1 - K * e) / tot + e for r in R]
//!             pi = [x / sum(w) for x in w]
//!         out.append((t, pi, list(R)))
//!     return out
//!
//! def exp3(scale=10.0):
//!     # Exp3WeightUpdater, one update per drawn domain per step with that step's pi.
//!     R = [0.0] * K
//!     e = 1 / K
//!     pi = list(INIT)
//!     out = [(0, pi, list(R))]
//!     for t in sorted(FEED):
//!         if t > W:
//!             for i, ls in FEED[t].items():
//!                 R[i] += (agg(ls, "mean") / scale) / pi[i]
//!             e_prev, e = e, eps(t)
//!             tot = sum(exp(r * e_prev) for r in R)
//!             w = [exp(r * e_prev) * (1 - K * e) / tot + e for r in R]
//!             pi = [x / sum(w) for x in w]
//!         out.append((t, pi, list(R)))
//!     return out
//!
//! for name, rows in [("paper_sum", paper("sum")), ("paper_mean", paper("mean")),
//!                    ("reference_code", reference_code()), ("exp3", exp3())]:
//!     print(f"// {name}: (step, [weights A, B, C], [rewards A, B, C])")
//!     for t, pi, R in rows:
//!         print(f"    ({t}, [{', '.join(repr(x) for x in pi)}], [{', '.join(repr(x) for x in R)}]),")
//!
//! # The feedback file the Rust test replays (loss sums and means exactly as computed above).
//! NAMES = ["A", "B", "C"]
//! import json
//! with open("golden_feedback.jsonl", "w") as f:
//!     f.write(json.dumps({"domains": NAMES}) + "\n")
//!     for t in sorted(FEED):
//!         fb = {NAMES[i]: {"loss_sum": agg(ls, "sum"), "loss_mean": agg(ls, "mean"),
//!                          "loss_count": len(ls), "sequences": 4 * len(ls), "tokens": 4096 * len(ls)}
//!               for i, ls in FEED[t].items()}
//!         f.write(json.dumps({"step": t, "feedback": fb}) + "\n")
//! ```
//!
//! Matching means |weight − expected| ≤ 1e-12 and |reward − expected| ≤ 1e-12·max(1, |expected|)
//! (the Rust code subtracts the softmax maximum and keeps the reference-code reward in log
//! space, which changes only the last bits).

use std::path::Path;

use mixlab_mixer_odm::{LossAggregation, OdmConfig, OdmMixer, OdmRule};
use mixlab_mixing::{FeedbackLog, MixerContext, WeightSpec, replay, replay_context};
use serde_json::Value;

/// (step, weights after the step, rewards after the step); step 0 is before any feedback.
type Row = (u64, [f64; 3], [f64; 3]);

/// Output of the script for `paper_sum`.
const PAPER_SUM: [Row; 7] = [
    (0, [0.5, 0.3, 0.2], [0.0, 0.0, 0.0]),
    (99, [0.5, 0.3, 0.2], [0.0, 0.0, 0.0]),
    (
        100,
        [0.3333333333333333, 0.3333333333333333, 0.3333333333333333],
        [0.0, 0.0, 0.0],
    ),
    (
        101,
        [0.35796099158170924, 0.3132393906429199, 0.3287996177753709],
        [2.6999999999999997, 0.0, 0.9899999999999998],
    ),
    (
        102,
        [0.34840012436798196, 0.3095695503846514, 0.3420303252473667],
        [3.240144140898111, 0.8300360930544312, 2.8678879428687973],
    ),
    (
        103,
        [0.34085066791478247, 0.3067547068495571, 0.3523946252356605],
        [3.719803377924057, 1.554605449789627, 4.393803912557442],
    ),
    (
        104,
        [0.3227403350340575, 0.2909477856188756, 0.3863118793470669],
        [3.719803377924057, 1.554605449789627, 7.3596967975257925],
    ),
];

/// Output of the script for `paper_mean`.
const PAPER_MEAN: [Row; 7] = [
    (0, [0.5, 0.3, 0.2], [0.0, 0.0, 0.0]),
    (99, [0.5, 0.3, 0.2], [0.0, 0.0, 0.0]),
    (
        100,
        [0.3333333333333333, 0.3333333333333333, 0.3333333333333333],
        [0.0, 0.0, 0.0],
    ),
    (
        101,
        [
            0.33771480421830263,
            0.32306084303880794,
            0.33922435274288937,
        ],
        [0.8999999999999998, 0.0, 0.9899999999999998],
    ),
    (
        102,
        [0.33699291028801803, 0.32300053366570813, 0.340006556046274],
        [1.668712725582917, 0.8048019610001675, 1.84906800830225],
    ),
    (
        103,
        [0.3364675952143722, 0.3230170045808616, 0.3405154002047662],
        [2.332719466929108, 1.498314294146989, 2.575908332600429],
    ),
    (
        104,
        [0.3329259656260081, 0.31969601027706956, 0.34737802409692237],
        [2.332719466929108, 1.498314294146989, 3.199334921223794],
    ),
];

/// Output of the script for `reference_code`.
const REFERENCE_CODE: [Row; 7] = [
    (0, [0.5, 0.3, 0.2], [0.0, 0.0, 0.0]),
    (99, [0.5, 0.3, 0.2], [0.0, 0.0, 0.0]),
    (100, [0.5, 0.3, 0.2], [0.0, 0.0, 0.0]),
    (
        101,
        [0.40889779658895986, 0.06021447609103523, 0.5308877273200049],
        [2.0085536923187663, 0.0, 2.7112638920657877],
    ),
    (
        102,
        [0.357544418876098, 0.17045738205571836, 0.4719981990681836],
        [3.6251128600311953, 1.3463738035001689, 5.019171494578515],
    ),
    (
        103,
        [0.3459177673473253, 0.20139857561915148, 0.4526836570335233],
        [4.90706625113778, 2.429985819220499, 6.737049473264827],
    ),
    (
        104,
        [0.321104104370689, 0.18896575697214968, 0.4899301386571614],
        [4.90706625113778, 2.429985819220499, 8.071898218257111],
    ),
];

/// Output of the script for `exp3`.
const EXP3: [Row; 7] = [
    (0, [0.5, 0.3, 0.2], [0.0, 0.0, 0.0]),
    (99, [0.5, 0.3, 0.2], [0.0, 0.0, 0.0]),
    (100, [0.5, 0.3, 0.2], [0.0, 0.0, 0.0]),
    (
        101,
        [0.31327427024312027, 0.2674023119309309, 0.4193234178259488],
        [0.6, 0.0, 1.6499999999999997],
    ),
    (
        102,
        [0.3312643939382722, 0.3223715914892618, 0.34636401457246596],
        [1.5257064098336004, 0.9723176965917824, 2.425058072561308],
    ),
    (
        103,
        [0.33135252820150607, 0.3213941216101737, 0.34725335018832026],
        [2.3709526998776043, 1.747820273742187, 3.32007021861998],
    ),
    (
        104,
        [0.32641672411746575, 0.316675428526292, 0.35690784735624226],
        [2.3709526998776043, 1.747820273742187, 4.183992769222605],
    ),
];

fn config(rule: OdmRule) -> OdmConfig {
    OdmConfig::new(rule)
        .with_warmup(100)
        .with_initial_weights(WeightSpec::Inline(
            [
                ("A".to_owned(), 0.5),
                ("B".to_owned(), 0.3),
                ("C".to_owned(), 0.2),
            ]
            .into(),
        ))
}

fn replay_golden(config: OdmConfig) -> Vec<Value> {
    // The crate's directory at run time: a test binary reused from a target directory shared
    // with another checkout would carry that checkout's path.
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    let path = Path::new(&crate_dir).join("tests/data/golden_feedback.jsonl");
    let log = FeedbackLog::read(&path).expect("golden feedback file");
    let ctx = replay_context(&log, MixerContext::new(mixlab_mixing::DomainSet::pile()))
        .expect("the file has a header");
    let mut mixer = OdmMixer::new(config, &ctx).expect("valid config");
    let mut out = Vec::new();
    replay(&mut mixer, &log, &mut out).expect("replays");
    String::from_utf8(out)
        .expect("utf8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

fn check(lines: &[Value], expected: &[Row]) {
    assert_eq!(lines.len(), expected.len());
    for (line, (step, weights, rewards)) in lines.iter().zip(expected) {
        assert_eq!(line["step"].as_u64(), Some(*step));
        for (i, name) in ["A", "B", "C"].into_iter().enumerate() {
            let w = line["weights"][name].as_f64().expect("weight");
            assert!(
                (w - weights[i]).abs() <= 1e-12,
                "step {step}, weight of {name}: {w} vs {}",
                weights[i]
            );
            let r = line["internals"]["rewards"][name].as_f64().expect("reward");
            assert!(
                (r - rewards[i]).abs() <= 1e-12 * rewards[i].abs().max(1.0),
                "step {step}, reward of {name}: {r} vs {}",
                rewards[i]
            );
        }
        let sum: f64 = weights.iter().sum();
        assert!((sum - 1.0).abs() < 1e-12);
    }
}

#[test]
fn paper_rule_with_summed_losses() {
    check(&replay_golden(config(OdmRule::Paper)), &PAPER_SUM);
}

#[test]
fn paper_rule_with_mean_losses() {
    let mut c = config(OdmRule::Paper);
    c.loss_aggregation = Some(LossAggregation::Mean);
    check(&replay_golden(c), &PAPER_MEAN);
}

#[test]
fn reference_code_rule() {
    check(
        &replay_golden(config(OdmRule::ReferenceCode)),
        &REFERENCE_CODE,
    );
}

#[test]
fn exp3_rule() {
    check(&replay_golden(config(OdmRule::Exp3)), &EXP3);
}

#[test]
fn exploration_is_reported_after_the_warm_up_only() {
    let lines = replay_golden(config(OdmRule::Paper));
    assert!(
        lines[1]["internals"]["exploration"].is_null(),
        "step 99: policy for step 100 is warm-up"
    );
    // After step 100 the policy is for step 101: ε_101 = sqrt(ln 3 / 303).
    let eps = lines[2]["internals"]["exploration"].as_f64().expect("ε");
    assert!((eps - (3f64.ln() / 303.0).sqrt()).abs() < 1e-15);
    // The reference code's never-drawn domain B sits exactly at the floor ε_101 after step 101.
    let code = replay_golden(config(OdmRule::ReferenceCode));
    let b = code[3]["weights"]["B"].as_f64().expect("weight");
    assert!((b - (3f64.ln() / 303.0).sqrt()).abs() < 1e-15);
    assert!(
        code[3]["internals"]["log_rewards"]["B"].is_null(),
        "R_B = 0"
    );
}
