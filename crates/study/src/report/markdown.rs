//! The report as Markdown, with its figures: the reproduction's sections in the paper's order,
//! and the exploration ablation's.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::Result;
use mixlab_eval::Protocol;
use mixlab_plot::{BarGroup, GroupedBarChart, LineChart, Marker, Series};

use super::numbers::{FewerIterations, McNumbers, ReportNumbers, first_reach, is_odm, is_online};
use super::stats::{CHANCE_ALPHA, t_critical_95};
use super::svg;
use crate::plan::Plan;
use crate::timing::MIXER_VALIDATION;

/// The header every report starts with: what ran, on what, and how to rerun it.
fn header(out: &Path, plan: &Plan, n: &ReportNumbers, title: &str, md: &mut String) {
    let p = &plan.preset;
    let commands = std::fs::read_to_string(out.join("commands.txt")).unwrap_or_default();
    let _ = writeln!(md, "# {title}\n");
    // `--steps` changes a preset's length, not its description.
    let resized = crate::preset::preset(&p.name)
        .ok()
        .filter(|named| named.steps != p.steps)
        .map(|named| {
            format!(
                " Here run for {} steps instead of its {} (`--steps`).",
                p.steps, named.steps
            )
        })
        .unwrap_or_default();
    let _ = writeln!(
        md,
        "Preset `{}`: {}.{resized}\n\n- Model `{}`; {} steps of {} sequences ({} micro-batches) x {} tokens; peak learning rate {}, {}% warm-up, cosine to {}x.\n- Data: `{}` ({} domains, {}).\n- Validation every {} steps on at most {} sequences per domain; test perplexity on at most {} sequences per domain.\n- Seeds: {}.\n- Device: {}.\n",
        p.name,
        p.about,
        p.model,
        p.steps,
        p.batch_size,
        p.micro_batches,
        p.seq_len,
        p.peak_lr,
        100.0 * p.warmup_fraction,
        p.min_lr_ratio,
        plan.dataset.path.display(),
        plan.dataset.domains.len(),
        plan.dataset.kind,
        p.eval_interval,
        p.eval_max_sequences,
        p.test_max_sequences,
        n.seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        p.device,
    );
    let _ = writeln!(md, "{}\n", plan.dataset.note);
    if !n.unfinished.is_empty() {
        let seeds = n
            .seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let methods = if n.left_out.is_empty() {
            String::new()
        } else {
            format!(
                " Methods in no table, as none of them has finished on these seeds: {}.",
                n.left_out.join(", ")
            )
        };
        let _ = writeln!(
            md,
            "**Partial results.** The plan has {} seed(s) and {} reported method(s); this report uses seed(s) {seeds} and the {} method(s) finished on them.{methods} Not finished, and left out: {}. Running the plan's command again continues them.\n",
            plan.seeds.len(),
            plan.reported().len(),
            n.methods.len(),
            n.unfinished.join(", ")
        );
    }
    if !commands.is_empty() {
        let _ = writeln!(
            md,
            "Produced by (each invocation; a later one resumes the plan in `plan.json`):\n\n```sh\n{}```\n\nEvery run's exact config is `runs/<method>/seed-<seed>/config.toml`; `experiments report {}` re-renders this file from the run files.\n",
            commands,
            out.display()
        );
    }
}

/// A Markdown table header: a left-aligned first column, then right-aligned number columns.
fn table_header<S: AsRef<str>>(md: &mut String, first: &str, columns: &[S]) {
    let _ = write!(md, "| {first} |");
    for c in columns {
        let _ = write!(md, " {} |", c.as_ref());
    }
    let _ = write!(md, "\n|---|");
    for _ in columns {
        let _ = write!(md, "---:|");
    }
    let _ = writeln!(md);
}

pub(super) fn reproduce_report(
    out: &Path,
    plan: &Plan,
    n: &ReportNumbers,
    md: &mut String,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    header(
        out,
        plan,
        n,
        "Reproduction: ODM vs DoReMi vs The Pile weights vs uniform",
        md,
    );
    let _ = writeln!(md, "## Methods\n\n| method | what |\n|---|---|");
    for m in plan.reported() {
        let _ = writeln!(md, "| {} | {} |", m.label, m.about);
    }
    let _ = writeln!(md);

    // The mixtures themselves: static weights, and ODM's average policy.
    let _ = writeln!(
        md,
        "## The mixtures\n\nSampling weights per domain: the fixed weights of the static methods (DoReMi (mixlab): the proxy's averaged weights) and, for the online methods (ODM, ADO), the share of sequences each drew over the whole run (its mean policy).\n"
    );
    let labels: Vec<&str> = n.methods.iter().map(|m| m.label.as_str()).collect();
    table_header(md, "domain", &labels);
    for d in &n.domains {
        let _ = write!(md, "| {d} |");
        for m in &n.methods {
            let w = if is_online(plan, &m.id) {
                m.cumulative_share.get(d)
            } else {
                m.final_weights.get(d)
            };
            let _ = write!(md, " {:.4} |", w.copied().unwrap_or(f64::NAN));
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md);

    // Figure 1 and the fewer-iterations numbers.
    let mut fig1 = LineChart::new(
        "Average validation perplexity (unweighted over domains)",
        "step",
        "perplexity",
    );
    fig1.log_y = true;
    for m in &n.methods {
        fig1.series.push(Series {
            label: m.label.clone(),
            points: m.val_curve.iter().map(|&(s, v)| (s as f64, v)).collect(),
            dashed: !is_online(plan, &m.id),
        });
    }
    for f in n
        .fewer_iterations
        .iter()
        .filter(|f| f.odm == "odm-paper" && f.baseline == "tpw")
    {
        if let Some(step) = f.step {
            fig1.markers.push(Marker {
                x: step as f64,
                label: "ODM reaches TPW's final".into(),
            });
        }
    }
    svg(out, "fig1-val-perplexity.svg", &fig1.to_svg(), written)?;
    let _ = writeln!(
        md,
        "## Figure 1: validation perplexity\n\n![Figure 1](fig1-val-perplexity.svg)\n"
    );
    let _ = writeln!(md, "| method | final validation perplexity |\n|---|---:|");
    for m in &n.methods {
        let _ = writeln!(md, "| {} | {} |", m.label, m.final_val_ppl.show(3));
    }
    let _ = writeln!(
        md,
        "\nFewer iterations (odm-facts.md §3.1): the first evaluated step where the ODM curve reaches a baseline's final value, as 1 − step/{} (evaluations every {} steps bound the resolution).\n",
        plan.preset.steps, plan.preset.eval_interval
    );
    let _ = writeln!(
        md,
        "| ODM | baseline | baseline final | ODM reaches it at | fewer iterations | final gap |\n|---|---|---:|---:|---:|---:|"
    );
    let label = |id: &str| {
        n.methods
            .iter()
            .find(|m| m.id == id)
            .map_or(id.to_string(), |m| m.label.clone())
    };
    for f in &n.fewer_iterations {
        let _ = writeln!(
            md,
            "| {} | {} | {:.3} | {} | {} | {:+.1}% |",
            label(&f.odm),
            label(&f.baseline),
            f.target,
            f.step.map_or("not reached".into(), |s| format!("step {s}")),
            f.fewer.map_or("—".into(), |x| format!("{:.1}%", 100.0 * x)),
            100.0 * f.final_gap
        );
    }
    let _ = writeln!(md);

    // Figure 3.
    let have_test = n.methods.iter().all(|m| m.test_avg_ppl.is_some());
    if have_test {
        let mut fig3 = GroupedBarChart::new(
            "Test perplexity per domain",
            "perplexity",
            labels.iter().copied(),
        );
        fig3.log_y = true;
        let mut groups = vec![BarGroup {
            label: "Average".into(),
            values: n
                .methods
                .iter()
                .map(|m| m.test_avg_ppl.as_ref().map(|s| s.mean))
                .collect(),
            errors: n
                .methods
                .iter()
                .map(|m| m.test_avg_ppl.as_ref().and_then(|s| s.std))
                .collect(),
        }];
        for d in &n.domains {
            groups.push(BarGroup {
                label: d.clone(),
                values: n
                    .methods
                    .iter()
                    .map(|m| m.test_domain_ppl.get(d).copied())
                    .collect(),
                errors: Vec::new(),
            });
        }
        fig3.groups = groups;
        svg(out, "fig3-test-perplexity.svg", &fig3.to_svg(), written)?;
        let _ = writeln!(
            md,
            "## Figure 3: test perplexity per domain\n\n![Figure 3](fig3-test-perplexity.svg)\n"
        );
        table_header(md, "domain", &labels);
        let _ = write!(md, "| **Average** |");
        for m in &n.methods {
            let _ = write!(
                md,
                " **{}** |",
                m.test_avg_ppl.as_ref().map_or("—".into(), |s| s.show(3))
            );
        }
        let _ = writeln!(md);
        for d in &n.domains {
            let _ = write!(md, "| {d} |");
            for m in &n.methods {
                let _ = write!(
                    md,
                    " {} |",
                    m.test_domain_ppl
                        .get(d)
                        .map_or("—".into(), |v| format!("{v:.3}"))
                );
            }
            let _ = writeln!(md);
        }
        let _ = writeln!(
            md,
            "\nBest / middle / worst test perplexity, counted over domains (ties share the rank):\n\n| method | best | middle | worst | among the paper's four (TPW, DoReMi-256k, DoReMi-50k, ODM) |\n|---|---:|---:|---:|---|"
        );
        for m in &n.methods {
            if let Some([b, mid, w]) = m.buckets {
                let paper = m
                    .paper_buckets
                    .map_or("—".into(), |[b, m, w]| format!("{b} / {m} / {w}"));
                let _ = writeln!(md, "| {} | {b} | {mid} | {w} | {paper} |", m.label);
            }
        }
        let _ = writeln!(
            md,
            "\nThe paper (Fig. 3, 22 domains, four methods): TPW 7/8/7, DoReMi-50k 3/17/2, ODM 9/9/4.\n"
        );
    }

    // Figure 4, for each online method (ODM's exploration first).
    let k = n.domains.len();
    if k > 1 && n.methods.iter().any(|m| is_odm(plan, &m.id)) {
        // ε_t = min(1/K, sqrt(ln K / (K t))) stays at 1/K (a uniform policy) while t ≤ K ln K.
        let uniform_until = (k as f64 * (k as f64).ln()).floor() as u64;
        let last = mixlab_mixer_odm::exploration_rate(k, plan.preset.steps);
        let _ = writeln!(
            md,
            "ODM's exploration with K = {k} domains: ε_t = 1/K, which makes the policy exactly uniform, until step {uniform_until} (K ln K); at the last step, {} of the probability mass is still uniform exploration (K·ε_t = {:.3}; the paper, K = 22 at step 100,000: 0.026). Short runs therefore keep ODM close to uniform by construction.\n",
            format_args!("{:.1}%", 100.0 * k as f64 * last),
            k as f64 * last
        );
    }
    let tpw = n.methods.iter().find(|m| m.id == "tpw");
    for m in n.methods.iter().filter(|m| is_online(plan, &m.id)) {
        let mut fig4 = LineChart::new(
            format!("{}: cumulative sampling distribution", m.label),
            "step",
            "share of sequences drawn so far",
        );
        for (i, d) in n.domains.iter().enumerate() {
            fig4.series.push(Series {
                label: d.clone(),
                points: m
                    .cumulative_curve
                    .iter()
                    .map(|(s, v)| (*s as f64, v[i]))
                    .collect(),
                dashed: false,
            });
        }
        let name = format!("fig4-{}-cumulative.svg", m.id);
        svg(out, &name, &fig4.to_svg(), written)?;
        let mut series = Vec::new();
        let mut cols: Vec<&BTreeMap<String, f64>> = Vec::new();
        if let Some(t) = tpw {
            // ODM starts from TPW; ADO from the token-proportional prior, which is TPW's
            // analogue off the Pile (and close to TPW on it).
            series.push(
                if is_odm(plan, &m.id) {
                    "TPW (initial policy)"
                } else {
                    "TPW"
                }
                .to_string(),
            );
            cols.push(&t.final_weights);
        }
        series.push(format!("{} final π", m.label));
        cols.push(&m.final_weights);
        series.push(format!("{} mean π (cumulative share)", m.label));
        cols.push(&m.cumulative_share);
        let mut bars = GroupedBarChart::new(
            format!("{}: final weights vs TPW", m.label),
            "weight",
            series.clone(),
        );
        bars.groups = n
            .domains
            .iter()
            .map(|d| BarGroup {
                label: d.clone(),
                values: cols.iter().map(|c| c.get(d).copied()).collect(),
                errors: Vec::new(),
            })
            .collect();
        let bars_name = format!("fig4-{}-weights.svg", m.id);
        svg(out, &bars_name, &bars.to_svg(), written)?;
        let _ = writeln!(
            md,
            "## Figure 4: {} sampling distribution\n\n![Figure 4: cumulative distribution]({name})\n\n![Figure 4: final weights]({bars_name})\n",
            m.label
        );
        let mut columns = series.clone();
        columns.push("change vs TPW".into());
        table_header(md, "domain", &columns);
        for d in &n.domains {
            let _ = write!(md, "| {d} |");
            for c in &cols {
                let _ = write!(md, " {:.4} |", c.get(d).copied().unwrap_or(f64::NAN));
            }
            let change = tpw
                .and_then(|t| Some(m.cumulative_share.get(d)? - t.final_weights.get(d)?))
                .map_or("—".into(), |x| format!("{x:+.4}"));
            let _ = writeln!(md, " {change} |");
        }
        let _ = writeln!(md);
    }

    // Table 1.
    if let Some(mc) = &plan.mc {
        let source = if mc.source == "mmlu" {
            format!("MMLU from `{}`", mc.data.display())
        } else {
            format!(
                "the synthetic corpus's own multiple-choice set (`{}`; its subjects are learnable only from specific domains, docs/default-corpus.md)",
                mc.data.display()
            )
        };
        let limit = mc
            .limit_per_subject
            .map_or("all test questions".into(), |l| {
                format!("at most {l} test questions per subject")
            });
        let _ = writeln!(
            md,
            "## Table 1: 5-shot multiple choice\n\nOn {source}, {limit}. `harness`: today's lm-evaluation-harness prompt, letters scored; `paper`: lm-evaluation-harness 0.3.0 as the paper ran it, answer texts scored (acc and length-normalised acc_norm); `continuation`: today's harness `mmlu_continuation`, the question without its options and answer texts scored (the cloze form small models are measured with). Chance is 25%.\n"
        );
        let subjects: Vec<String> = n
            .methods
            .iter()
            .find_map(|m| {
                m.mc.get("harness")
                    .map(|x| x.subjects.keys().cloned().collect())
            })
            .unwrap_or_default();
        let per_subject = subjects.len() <= 8;
        // A cell's accuracy with the above-chance marker of its pooled counts.
        let cell = |x: Option<&McNumbers>| {
            x.map_or("—".into(), |x| {
                format!("{}{}", x.acc.show_pct(2), x.pooled.marker())
            })
        };
        let _ = writeln!(
            md,
            "| method | harness acc | paper acc | paper acc_norm | continuation acc | continuation acc_norm |\n|---|---:|---:|---:|---:|---:|"
        );
        let norm = |x: Option<&McNumbers>| {
            x.and_then(|x| x.acc_norm.as_ref())
                .map_or("—".into(), |x| x.show_pct(2))
        };
        for m in &n.methods {
            let (p, c) = (m.mc.get("paper"), m.mc.get("continuation"));
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                m.label,
                cell(m.mc.get("harness")),
                cell(p),
                norm(p),
                cell(c),
                norm(c),
            );
        }
        if per_subject {
            let _ = write!(md, "\nPer subject (acc):\n\n| method |");
            for s in &subjects {
                for protocol in Protocol::ALL {
                    let _ = write!(md, " {s} ({protocol}) |");
                }
            }
            let _ = write!(md, "\n|---|");
            for _ in &subjects {
                let _ = write!(md, "---:|---:|---:|");
            }
            let _ = writeln!(md);
            for m in &n.methods {
                let _ = write!(md, "| {} |", m.label);
                for s in &subjects {
                    for protocol in Protocol::ALL.map(Protocol::as_str) {
                        let x = m.mc.get(protocol);
                        let v = x.and_then(|x| x.subjects.get(s));
                        let mark = x
                            .and_then(|x| x.pooled_subjects.get(s))
                            .map_or("", |t| t.marker());
                        let _ = write!(
                            md,
                            " {} |",
                            v.map_or("—".into(), |v| format!("{:.2}%{mark}", 100.0 * v))
                        );
                    }
                }
                let _ = writeln!(md);
            }
        }
        let _ = writeln!(
            md,
            "\n`*`: above chance (25%) at p < {CHANCE_ALPHA}, by an exact one-sided binomial test on the correct answers pooled over the seeds; a cell without it cannot be told from guessing."
        );
        if let Some(q) = n
            .methods
            .first()
            .and_then(|m| m.mc.get("harness"))
            .map(|x| x.questions)
        {
            let se = (0.25f64 * 0.75 / q as f64).sqrt();
            let _ = writeln!(
                md,
                "\n{q} questions per method and seed: one standard error of an accuracy near chance is {:.1} points.\n",
                100.0 * se
            );
        }
    } else {
        let _ = writeln!(
            md,
            "## Table 1: 5-shot multiple choice\n\nNot run: no multiple-choice set for this dataset (pass `--mmlu DIR`).\n"
        );
    }

    paper_comparison(plan, n, md);
    crate::claims::markdown(n, md);
    timing_table(n, md);
    seed_spread(n, md);
    Ok(())
}

/// The paper's numbers (odm-facts.md §3) beside this run's.
fn paper_comparison(plan: &Plan, n: &ReportNumbers, md: &mut String) {
    // (row, Table 1 MMLU, Fig. 1 final validation perplexity [fig-decoded], Fig. 3 average test
    // perplexity [fig-decoded]).
    const PAPER: [(&str, &str, f64, f64, f64); 4] = [
        ("The Pile Weights", "tpw", 0.27469, 13.35, 13.77),
        ("DoReMi-256k", "doremi-256k", 0.27596, 13.48, 13.88),
        ("DoReMi-50k", "doremi-50k", 0.27887, 12.99, 13.41),
        ("ODM", "odm-paper", 0.28416, 12.68, 13.17),
    ];
    let p = &plan.preset;
    let tokens = p.steps * (p.batch_size * p.seq_len) as u64;
    let _ = writeln!(
        md,
        "## The paper's numbers beside this run's\n\nThe paper trains a 1B-parameter model for 100,000 steps of 480 x 1024 tokens (49.2B tokens) on all 22 Pile domains and scores MMLU. This run: model `{}`, {} steps, {} tokens per run, {} domains of `{}`. Perplexities of different tokenizers, data and scales are not comparable in value; compare the orderings and the relative gaps.\n",
        p.model,
        p.steps,
        tokens,
        plan.dataset.domains.len(),
        plan.dataset.kind
    );
    let _ = writeln!(
        md,
        "| method | paper: MMLU (lm-eval 0.3.0) | this run: MC, paper protocol | this run: MC, harness | paper: final val ppl | this run | paper: test ppl | this run |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (row, id, mmlu, val, test) in PAPER {
        let m = n.methods.iter().find(|m| m.id == id);
        let _ = writeln!(
            md,
            "| {row} | {:.2}% | {} | {} | {val:.2} | {} | {test:.2} | {} |",
            100.0 * mmlu,
            m.and_then(|m| m.mc.get("paper"))
                .map_or("—".into(), |x| x.acc.show_pct(2)),
            m.and_then(|m| m.mc.get("harness"))
                .map_or("—".into(), |x| x.acc.show_pct(2)),
            m.map_or("—".into(), |m| m.final_val_ppl.show(3)),
            m.and_then(|m| m.test_avg_ppl.as_ref())
                .map_or("—".into(), |s| s.show(3)),
        );
    }
    let find = |base: &str| {
        n.fewer_iterations
            .iter()
            .find(|f| f.odm == "odm-paper" && f.baseline == base)
    };
    let show = |f: Option<&FewerIterations>| {
        f.map_or("—".into(), |f| {
            let fewer = f.fewer.map_or("baseline's final not reached".into(), |x| {
                format!("{:.1}% fewer iterations", 100.0 * x)
            });
            format!("{fewer}, final {:+.1}%", 100.0 * f.final_gap)
        })
    };
    let _ = writeln!(
        md,
        "\n| ODM vs | paper | this run |\n|---|---|---|\n| TPW | 30% fewer iterations, final val −4.8% | {} |\n| DoReMi-50k | 19% fewer iterations, final val −2.4% | {} |\n| DoReMi-256k | (≈30% decoded), final val −4.9% (decoded −5.9%) | {} |\n",
        show(find("tpw")),
        show(find("doremi-50k")),
        show(find("doremi-256k")),
    );
}

fn timing_table(n: &ReportNumbers, md: &mut String) {
    // A column for the validations a mixer asked for, only when a method has any, so reports
    // without such a mixer read as before.
    let validating = n
        .methods
        .iter()
        .any(|m| m.seconds.get(MIXER_VALIDATION).is_some_and(|&s| s > 0.0));
    let (extra_text, extra_head, extra_rule) = if validating {
        (
            " A mixer that learns from validation losses (Aioli) asks for validations beyond the periodic ones; `of which mixer validations` is their part of `train`.",
            " of which mixer validations |",
            "---:|",
        )
    } else {
        ("", "", "")
    };
    let _ = writeln!(
        md,
        "## Wall time and mixer overhead\n\nSeconds summed over {} seed(s). `train` includes the periodic validation; the overhead is the time in the mixer (`observe` and the policy) over the time of the training steps, from each step's timing in metrics.jsonl (the paper: 0.000007%).{extra_text}\n\n| method | train s | test ppl s | MC s | total s | mixer overhead |{extra_head}\n|---|---:|---:|---:|---:|---:|{extra_rule}",
        n.seeds.len()
    );
    let mut total = 0.0;
    for m in &n.methods {
        let get = |k: &str| m.seconds.get(k).copied().unwrap_or(0.0);
        let mc: f64 = Protocol::ALL.iter().map(|p| get(&format!("mc-{p}"))).sum();
        let sum = get("train") + get("test") + mc;
        total += sum;
        let extra = if !validating {
            String::new()
        } else if get(MIXER_VALIDATION) > 0.0 {
            format!(
                " {:.0} ({:.0}% of train) |",
                get(MIXER_VALIDATION),
                100.0 * get(MIXER_VALIDATION) / get("train").max(f64::MIN_POSITIVE)
            )
        } else {
            " — |".to_owned()
        };
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.5}% |{extra}",
            m.label,
            get("train"),
            get("test"),
            mc,
            sum,
            100.0 * m.mixer_overhead
        );
    }
    let _ = writeln!(
        md,
        "\nAll reported methods together: {:.1} minutes of run time, summed over runs (plus any unreported runs, such as the DoReMi proxy); runs that went in parallel (`--jobs`) overlap, so the wall time of such a plan is shorter.\n",
        total / 60.0
    );
}

fn seed_spread(n: &ReportNumbers, md: &mut String) {
    if n.seeds.len() < 2 {
        let _ = writeln!(
            md,
            "## Seeds\n\nOne seed: no estimate of the seed-to-seed spread, so no difference above can be called significant. Rerun with `--seeds 3` (or more) for mean ± std.\n"
        );
        return;
    }
    let _ = writeln!(
        md,
        "## Seeds\n\nMean ± sample std over {seeds} seeds. A difference \"exceeds the spread\" when a two-sided two-sample t-test (pooled variance) rejects equal means at the 5% level; with {seeds} seeds per method that needs a gap of {:.2} standard errors of the difference.\n",
        t_critical_95(2 * n.seeds.len() - 2),
        seeds = n.seeds.len()
    );
    let yes = |x: Option<bool>| match x {
        Some(true) => "yes",
        Some(false) => "no",
        None => "—",
    };
    // Every method against TPW (the paper's reference point), then ODM against the others.
    for base_id in ["tpw", "odm-paper"] {
        let Some(base) = n.methods.iter().find(|m| m.id == base_id) else {
            continue;
        };
        let _ = writeln!(
            md,
            "| method − {} | final val ppl | exceeds the spread | test ppl | exceeds the spread |\n|---|---:|---|---:|---|",
            base.label
        );
        for m in n
            .methods
            .iter()
            .filter(|m| m.id != base_id && !(base_id == "odm-paper" && m.id == "tpw"))
        {
            let test = match (&m.test_avg_ppl, &base.test_avg_ppl) {
                (Some(a), Some(b)) => (format!("{:+.3}", a.mean - b.mean), a.differs_from(b)),
                _ => ("—".into(), None),
            };
            let _ = writeln!(
                md,
                "| {} | {:+.3} | {} | {} | {} |",
                m.label,
                m.final_val_ppl.mean - base.final_val_ppl.mean,
                yes(m.final_val_ppl.differs_from(&base.final_val_ppl)),
                test.0,
                yes(test.1)
            );
        }
        let _ = writeln!(md);
    }
}

pub(super) fn ablation_report(
    out: &Path,
    plan: &Plan,
    n: &ReportNumbers,
    md: &mut String,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    header(
        out,
        plan,
        n,
        "Ablation: ODM's exploration, smoothing and sampling granularity",
        md,
    );
    let k = plan.dataset.domains.len();
    let target = n
        .methods
        .iter()
        .find(|m| m.id == "default")
        .map(|m| m.final_val_ppl.mean);
    let _ = writeln!(
        md,
        "All variants use the paper's rule (Algorithm 1) with a {}-step TPW warm-up; each changes one thing. A fixed ε replaces only the uniform share K·ε; the softmax temperature keeps the decaying ε_(t−1), so ε = 0 still learns and ε = 1/K is exactly uniform.\n",
        plan.preset.odm_paper_warmup
    );
    let _ = writeln!(
        md,
        "| variant | what | final val ppl | steps to the default's final | final weight entropy (max ln K = {:.3}) |\n|---|---|---:|---:|---:|",
        (k as f64).ln()
    );
    for m in &n.methods {
        let about = plan.method(&m.id).map_or("", |x| x.about.as_str());
        let reach = target
            .and_then(|t| first_reach(&m.val_curve, t))
            .map_or("not reached".into(), |s| format!("{s}"));
        let h = m.entropy.last().map_or(f64::NAN, |x| x.1);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.3} |",
            m.label,
            about,
            m.final_val_ppl.show(3),
            reach,
            h
        );
    }
    let _ = writeln!(
        md,
        "\nSteps to target: the first evaluated step (every {} steps) where the variant's average validation perplexity is at or below the default variant's final value.\n",
        plan.preset.eval_interval
    );
    let mut fig = LineChart::new("Average validation perplexity", "step", "perplexity");
    fig.log_y = true;
    let mut ent = LineChart::new(
        "Entropy of the sampling distribution",
        "step",
        "entropy (nats)",
    );
    for m in &n.methods {
        fig.series.push(Series {
            label: m.label.clone(),
            points: m.val_curve.iter().map(|&(s, v)| (s as f64, v)).collect(),
            dashed: false,
        });
        ent.series.push(Series {
            label: m.label.clone(),
            points: m.entropy.iter().map(|&(s, v)| (s as f64, v)).collect(),
            dashed: false,
        });
    }
    svg(out, "ablation-val-perplexity.svg", &fig.to_svg(), written)?;
    svg(out, "ablation-weight-entropy.svg", &ent.to_svg(), written)?;
    let _ = writeln!(
        md,
        "![validation perplexity](ablation-val-perplexity.svg)\n\n![weight entropy](ablation-weight-entropy.svg)\n"
    );
    timing_table(n, md);
    Ok(())
}
